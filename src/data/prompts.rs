//! The policy prompts, with one placeholder convention: `{question}` ([`PLACEHOLDER`]) stands
//! for the problem text in every template (search, training data, evolve, configuration files),
//! and [`fill`] is the one place that substitutes it.

use crate::error::{Error, Result};

/// The placeholder every prompt template holds.
pub const PLACEHOLDER: &str = "{question}";

/// The policy-SLM prompt of `sft_prompt.json` (spec 1.3), the one search runs with: two newlines
/// before `<|assistant|>` (inference).
pub const POLICY_PROMPT: &str =
    "<|user|>:\n{question}\n\n<|assistant|>: Let's think step by step and solve the problem with code.";

/// rStar-Math's SFT source template (`train/train_SFT.py`, `extra_rm_file.py`'s prefix): one
/// newline before `<|assistant|>`. `{query, response}` SFT records are rendered with it.
pub const SFT_PROMPT: &str =
    "<|user|>:\n{question}\n<|assistant|>: Let's think step by step and solve the problem with code.";

/// `template` with [`PLACEHOLDER`] replaced by `question`.
pub fn fill(template: &str, question: &str) -> String {
    template.replace(PLACEHOLDER, question)
}

/// Rejects a template without [`PLACEHOLDER`]; `what` names the setting in the error.
pub fn check(template: &str, what: &str) -> Result<()> {
    if template.contains(PLACEHOLDER) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{what} must contain {PLACEHOLDER}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_differ_only_in_the_newline_before_the_assistant() {
        assert_eq!(
            fill(POLICY_PROMPT, "Q"),
            fill(SFT_PROMPT, "Q").replacen("\n<|a", "\n\n<|a", 1)
        );
        assert!(check("no placeholder", "prompt_template").is_err());
        assert!(check(SFT_PROMPT, "prompt_template").is_ok());
    }
}
