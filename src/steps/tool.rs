//! The tool-integrated step format for chat models that write fenced Python (Qwen2.5-Math-Instruct's
//! tool-integrated reasoning): a step is some reasoning plus one ```` ```python ```` block;
//! generation stops at the fence that would open the output block ([`OUTPUT_FENCE`]); the
//! program of all earlier blocks of the trajectory plus the new one runs, and only what the new
//! block printed comes back ([`own_output`]), appended in the model's own convention
//! ([`output_block`]: ```` ```output\n...\n``` ````). A step without a block that holds
//! `\boxed{}` is the answer.
//!
//! Also the prompt pieces: the user message around the question ([`USER_PROMPT`]) and an
//! optional few-shot exchange ([`few_shot`]) to put before it in the chat.

use crate::steps::StepKind;

/// The fence that opens an output block: the stop string of the format.
pub const OUTPUT_FENCE: &str = "```output";
/// Stop strings of the tool format (every strategy).
pub const STOP: &[&str] = &[OUTPUT_FENCE];
/// Printed between the earlier blocks and the new one; stdout before it is the earlier blocks'.
pub const MARKER: &str = "<<rstar: output of the new block>>";

/// The user message of the tool format; `{question}` is replaced.
pub const USER_PROMPT: &str =
    "{question}\n\nSolve this with Python. In each step write one sentence of reasoning, then one \
```python block that computes from the numbers in the question and prints the result, and stop: \
its output will be shown to you in an ```output block. When you know the result, write the final \
answer (the value alone) once within \\boxed{}.";

/// The last ```` ```python ```` (or ```` ```py ````) block's code, up to its closing fence (or
/// the end of the text when unclosed), and whether it was closed.
pub fn code_block(text: &str) -> Option<(&str, bool)> {
    let start = text.rfind("```py")?;
    // The rest of the fence line is its language tag; the code starts on the next line.
    let body = text[start..].split_once('\n').map_or("", |(_, rest)| rest);
    Some(match body.find("```") {
        Some(end) => (&body[..end], true),
        None => (body, false),
    })
}

/// What a generated tool-format step is: a block that stopped at [`OUTPUT_FENCE`] is code (its
/// output is always appended: [`StepKind::LastCode`]); otherwise `\boxed` makes it the answer; a
/// closed block that ended at EOS is still code; anything else (reasoning alone, a block cut by
/// the token limit) parses as no step ([`StepKind::Unterminated`]).
pub fn classify(text: &str) -> StepKind {
    let block = code_block(text).filter(|(c, _)| !c.trim().is_empty());
    if block.is_some() && text.trim_end().ends_with(OUTPUT_FENCE) {
        StepKind::LastCode
    } else if text.contains("boxed") {
        StepKind::Answer
    } else if block.is_some_and(|(_, closed)| closed) {
        StepKind::LastCode
    } else {
        StepKind::Unterminated
    }
}

/// The program of a new step: the code blocks of the ancestors that ran without failing (in
/// order), a print of [`MARKER`], then the new step's block. `ancestors` are (text, failed) from
/// the root's child down to the parent.
pub fn assemble_program(ancestors: &[(&str, bool)], step: &str) -> String {
    let mut out = String::new();
    for (text, failed) in ancestors {
        if *failed || classify(text) != StepKind::LastCode {
            continue;
        }
        if let Some((code, _)) = code_block(text) {
            out.push_str(code.trim_end());
            out.push('\n');
        }
    }
    out.push_str(&format!("print({MARKER:?}, flush=True)\n"));
    out.push_str(code_block(step).map_or("", |b| b.0).trim_end());
    out
}

/// The new block's own stdout: what follows the [`MARKER`] line (all of it when absent).
pub fn own_output(stdout: &str) -> &str {
    match stdout.rfind(MARKER) {
        Some(i) => {
            let rest = &stdout[i + MARKER.len()..];
            rest.strip_prefix('\n').unwrap_or(rest)
        }
        None => stdout,
    }
}

/// The text appended to an executed step: the output block, opened unless the step already
/// ends with [`OUTPUT_FENCE`] (the re-appended stop string).
pub fn output_block(step: &str, observation: &str) -> String {
    let open = if step.trim_end().ends_with(OUTPUT_FENCE) {
        ""
    } else {
        "\n```output"
    };
    format!("{open}\n{observation}\n```\n")
}

/// The few-shot exchange put before the question: (user, assistant) turns, the assistant's in
/// the format itself with real outputs.
pub fn few_shot() -> Vec<(&'static str, String)> {
    let q = "A bakery sells muffins for $3 each and cookies for $1.50 each. Maria buys 4 muffins \
             and 6 cookies and pays with a $50 bill. How much change does she get?";
    let a = "First find what Maria spends on muffins and cookies.\n```python\nmuffins = 4 * 3\n\
             cookies = 6 * 1.50\nprint(muffins, cookies)\n```\n```output\n12 9.0\n```\n\
             Now subtract the total from $50.\n```python\nchange = 50 - (muffins + cookies)\n\
             print(change)\n```\n```output\n29.0\n```\nMaria gets \\boxed{29} dollars in change.";
    vec![
        ("user", USER_PROMPT.replace("{question}", q)),
        ("assistant", a.into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const S1: &str =
        "Half as many in May.\n```python\napril = 48\nmay = april // 2\nprint(may)\n```\n```output";
    const S2: &str = "Add them.\n```python\nprint(april + may)\n```\n```output";

    #[test]
    fn classify_steps() {
        assert_eq!(classify(S1), StepKind::LastCode);
        assert_eq!(classify("So \\boxed{72}."), StepKind::Answer);
        // A block that ended at EOS still runs; reasoning alone parses as no step.
        assert_eq!(classify("```python\nprint(1)\n```"), StepKind::LastCode);
        assert_eq!(classify("I think it is 72"), StepKind::Unterminated);
        assert_eq!(classify("```python\nx = (1 +"), StepKind::Unterminated);
        // boxed inside a block that stopped at the output fence: code first.
        assert_eq!(
            classify("```python\nprint('\\\\boxed{1}')\n```\n```output"),
            StepKind::LastCode
        );
    }

    #[test]
    fn program_has_every_earlier_good_block_then_the_marker() {
        let done = format!("{S1}\n24\n```\n");
        let bad = "```python\nFAIL\n```\n```output\nNameError\n```\n";
        let p = assemble_program(&[(&done, false), (bad, true)], S2);
        assert_eq!(
            p,
            format!(
                "april = 48\nmay = april // 2\nprint(may)\nprint({MARKER:?}, flush=True)\nprint(april + may)"
            )
        );
        assert_eq!(own_output(&format!("24\n{MARKER}\n72\n")), "72\n");
        assert_eq!(own_output("5\n"), "5\n");
    }

    #[test]
    fn output_block_follows_the_stop_fence() {
        assert_eq!(output_block(S1, "24"), "\n24\n```\n");
        assert_eq!(
            output_block("```python\nprint(1)\n```", "1"),
            "\n```output\n1\n```\n"
        );
    }
}
