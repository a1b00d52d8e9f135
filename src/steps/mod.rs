//! The step protocol of code-augmented chain of thought (spec sections 1-2.4).
//!
//! Owns: the tag strings ([`tags`]), what kind of node a generated step is ([`classify`] ->
//! [`StepKind`]), the program a node runs ([`assemble_program`]: the current code block's
//! ancestors plus the new step, tags removed, fenced the way the reference's `extract_program`
//! does), the observation the model sees ([`format_observation`]: float rounding, 1024-char
//! truncation, and [`output_block`]), and whether a step failed ([`StepOutcome::from_exec`],
//! from the execution result itself, with the reference's "error"-substring rule available as
//! [`FailureRule::ErrorSubstring`]).
//!
//! Two formats share that shape ([`StepFormat`]): rStar's native tags (this module) and the
//! tool-integrated format of chat models writing fenced Python ([`tool`]); the search asks the
//! format, never the tags.
//!
//! Everything here is pure string work; running the program is [`crate::exec`]'s job and
//! reading the final answer out of an answer step is [`crate::grade::extract_answer`]'s.

pub mod tool;

use serde::{Deserialize, Serialize};

use crate::exec::ExecResult;

/// Which step protocol the policy writes (config key `step_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepFormat {
    /// rStar's tags (`<code>`, `<end_of_step>`, ...), for models fine-tuned on them.
    #[default]
    #[serde(alias = "rstar")]
    Native,
    /// Reasoning + one fenced ```` ```python ```` block per step ([`tool`]), for chat models.
    Tool,
}

impl StepFormat {
    /// What kind of node a generated step is.
    pub fn classify(self, text: &str) -> StepKind {
        match self {
            StepFormat::Native => classify(text),
            StepFormat::Tool => tool::classify(text),
        }
    }

    /// The program a new code step runs; `ancestors` are (text, failed) from the root's child
    /// down to the parent.
    pub fn program(self, ancestors: &[(&str, bool)], step: &str) -> String {
        match self {
            StepFormat::Native => {
                let texts: Vec<&str> = ancestors.iter().map(|a| a.0).collect();
                assemble_program(&texts, step)
            }
            StepFormat::Tool => tool::assemble_program(ancestors, step),
        }
    }

    /// The part of a program's stdout that belongs to the new step.
    pub fn own_output(self, stdout: &str) -> &str {
        match self {
            StepFormat::Native => stdout,
            StepFormat::Tool => tool::own_output(stdout),
        }
    }

    /// The text appended after an executed step (empty when the model does not see its output:
    /// native code steps before the last; tool shows every step's), given whether the branch
    /// ends here on errors (native then closes the block and shows the error, as the reference).
    pub fn appended(self, step: &str, kind: StepKind, observation: &str, ends: bool) -> String {
        match self {
            StepFormat::Tool => tool::output_block(step, observation),
            StepFormat::Native if ends => {
                let close = if step.contains(tags::END_OF_CODE) {
                    ""
                } else {
                    tags::END_OF_CODE
                };
                format!("{close}{}", output_block(observation))
            }
            StepFormat::Native if kind == StepKind::LastCode => output_block(observation),
            StepFormat::Native => String::new(),
        }
    }

    /// The format's stop strings.
    pub fn stop(self) -> Vec<String> {
        let s: &[&str] = match self {
            StepFormat::Native => tags::STOP,
            StepFormat::Tool => tool::STOP,
        };
        s.iter().map(|s| s.to_string()).collect()
    }

    /// The stop strings of greedy decoding: native stops only at the end of a code block or an
    /// answer (spec 1.4); tool steps already are whole blocks.
    pub fn greedy_stop(self) -> Vec<String> {
        match self {
            StepFormat::Native => vec![tags::END_OF_CODE.into(), tags::END_OF_ANSWER.into()],
            StepFormat::Tool => self.stop(),
        }
    }
}

/// The tag strings of `rstar_deepthink/constants.py`.
pub mod tags {
    pub const CODE: &str = "<code>";
    pub const END_OF_STEP: &str = "<end_of_step>";
    pub const END_OF_CODE: &str = "<end_of_code>";
    pub const OUTPUT: &str = "<output>";
    pub const END_OF_OUTPUT: &str = "<end_of_output>";
    pub const ANSWER: &str = "<answer>";
    pub const END_OF_ANSWER: &str = "<end_of_answer>";
    /// Comment that introduces the last code step.
    pub const PRINT_FINAL_ANSWER: &str = "Now print the final answer";
    /// Stop strings of the MCTS configs (rounds 2-4 and evaluation).
    pub const STOP: &[&str] = &[END_OF_STEP, END_OF_CODE, END_OF_ANSWER];
    /// Every tag a program must not contain.
    pub const ALL: &[&str] = &[
        CODE,
        END_OF_STEP,
        END_OF_CODE,
        OUTPUT,
        END_OF_OUTPUT,
        ANSWER,
        END_OF_ANSWER,
    ];
}

/// What a generated step is (spec 1.2, `rstar_step_result_unwrap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepKind {
    /// Ends with `<end_of_step>`: code that must run; its output is not shown.
    Code,
    /// Ends with `<end_of_code>`: the program is complete; its output is appended.
    LastCode,
    /// Contains `boxed`: a terminal node carrying the final answer.
    Answer,
    /// Generation stopped at EOS or max_tokens without a tag; the reference treats it as code.
    Unterminated,
}

impl StepKind {
    /// Whether the step is executed (everything except answers).
    pub fn is_code(self) -> bool {
        !matches!(self, StepKind::Answer)
    }
}

/// Classifies one generated step (the node text, stop string re-appended).
pub fn classify(text: &str) -> StepKind {
    if text.contains("boxed") {
        return StepKind::Answer;
    }
    let t = text.trim_end();
    if t.ends_with(tags::END_OF_CODE) || t.ends_with(tags::END_OF_OUTPUT) {
        StepKind::LastCode
    } else if t.ends_with(tags::END_OF_STEP) {
        StepKind::Code
    } else if t.contains(tags::END_OF_CODE) {
        StepKind::LastCode
    } else {
        StepKind::Unterminated
    }
}

/// Whether an ancestor's text closes an earlier code block (collection stops there).
fn closes_block(text: &str) -> bool {
    text.contains(tags::END_OF_OUTPUT) || text.contains(tags::END_OF_CODE)
}

/// The program to run for a new step, given the texts of its ancestors from the root down to
/// its parent (spec 2.2). Ancestors that are answers, that belong to an earlier code block, or
/// whose appended observation shows a `TimeoutError` are left out; the pieces are joined with
/// newlines, `<end_of_step>` is removed, and only the part between `<code>` and `<end_of_code>`
/// is kept (text on the tag lines themselves is kept too, unlike the reference which drops it).
/// Finally the reference's input cleaning: strip backticks, whitespace and a leading `python`.
pub fn assemble_program<S: AsRef<str>>(ancestors: &[S], step: &str) -> String {
    let mut pieces: Vec<&str> = vec![step];
    for a in ancestors.iter().rev() {
        let a = a.as_ref();
        if closes_block(a) {
            break;
        }
        if classify(a) == StepKind::Answer || a.contains("TimeoutError") {
            continue;
        }
        pieces.push(a);
    }
    pieces.reverse();
    let joined = pieces.join("\n").replace(tags::END_OF_STEP, "");
    clean_code(&extract_code_block(&joined))
}

/// Keeps the text between the last `<code>` and the following `<end_of_code>` (either may be
/// absent), with any other tag removed.
pub fn extract_code_block(text: &str) -> String {
    let start = text
        .rfind(tags::CODE)
        .map(|i| i + tags::CODE.len())
        .unwrap_or(0);
    let body = &text[start..];
    let body = match body.find(tags::END_OF_CODE) {
        Some(end) => &body[..end],
        None => body,
    };
    let mut out = body.to_string();
    for t in tags::ALL {
        if out.contains(t) {
            out = out.replace(t, "");
        }
    }
    out
}

/// The reference's input cleaning: strip whitespace and backticks, then a leading `python`.
pub fn clean_code(code: &str) -> String {
    let t = code.trim_matches(|c: char| c.is_whitespace() || c == '`');
    let t = t.strip_prefix("python").unwrap_or(t);
    // A fenced block's first line may have been `python`; keep the rest's indentation intact.
    t.trim_start_matches(['\n', '\r']).trim_end().to_string()
}

/// Python's `str(float)` for a finite value.
pub fn py_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let a = x.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        // Python switches to exponent form: 1e-05, 1.5e+16.
        let s = format!("{x:e}");
        let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let e: i32 = exp.parse().unwrap_or(0);
        return format!("{mant}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
    }
    if x.fract() == 0.0 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

/// Observations longer than this are cut to the first and last [`OBS_HALF`] characters.
pub const OBS_LIMIT: usize = 1024;
/// See [`OBS_LIMIT`].
pub const OBS_HALF: usize = 512;

/// The observation shown to the model for an execution output (spec 2.3): surrounding
/// whitespace removed; a float rounded to 4 decimals when that is shorter; more than 1024
/// characters become the first 512 + `...` + the last 512.
pub fn format_observation(output: &str) -> String {
    let t = output.trim();
    let mut s = t.to_string();
    if let Ok(x) = t.replace('_', "").parse::<f64>() {
        if x.is_finite() && !t.is_empty() {
            let r = py_float_repr(round_half_even_4(x));
            if r.len() < t.len() {
                s = r;
            }
        }
    }
    truncate_middle(&s, OBS_LIMIT, OBS_HALF)
}

fn round_half_even_4(x: f64) -> f64 {
    let scaled = x * 1e4;
    if !scaled.is_finite() || scaled.abs() > 1e15 {
        return x;
    }
    let r = scaled.round();
    let r = if (scaled - scaled.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - scaled.signum()
    } else {
        r
    };
    r / 1e4
}

/// Cuts `s` to `half` leading + `...` + `half` trailing characters when it is longer than `limit`.
pub fn truncate_middle(s: &str, limit: usize, half: usize) -> String {
    let n = s.chars().count();
    if n <= limit {
        return s.to_string();
    }
    let head: String = s.chars().take(half).collect();
    let tail: String = s.chars().skip(n - half).collect();
    format!("{head}...{tail}")
}

/// The text appended to a last-code node: `"\n<output>" + obs + "<end_of_output>"`.
pub fn output_block(observation: &str) -> String {
    format!("\n{}{}{}", tags::OUTPUT, observation, tags::END_OF_OUTPUT)
}

/// How a step's failure is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailureRule {
    /// From the execution itself: an exception, a timeout, a signal or a non-zero exit.
    #[default]
    Execution,
    /// The reference rule: the observation contains "error", case-insensitively.
    ErrorSubstring,
    /// Failed by either rule.
    Either,
}

/// The verdict on one executed step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutcome {
    pub failed: bool,
    /// What the model sees: the error text on failure (as the reference), else the output;
    /// already passed through [`format_observation`].
    pub observation: String,
    /// Why it failed, when it did.
    pub reason: Option<String>,
}

impl StepOutcome {
    /// Judges an execution result under `rule`.
    pub fn from_exec(r: &ExecResult, rule: FailureRule) -> StepOutcome {
        let raw = match (&r.error, r.ok) {
            (Some(e), false) => e.as_str(),
            _ => r.stdout.as_str(),
        };
        let observation = format_observation(raw);
        let exec_failed = !r.ok;
        let substring_failed = observation.to_lowercase().contains("error");
        let failed = match rule {
            FailureRule::Execution => exec_failed,
            FailureRule::ErrorSubstring => substring_failed,
            FailureRule::Either => exec_failed || substring_failed,
        };
        let reason = if !failed {
            None
        } else if exec_failed {
            Some(r.error.clone().unwrap_or_else(|| "execution failed".into()))
        } else {
            Some("the output contains \"error\"".into())
        };
        StepOutcome {
            failed,
            observation,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_kinds() {
        assert_eq!(classify("\n# Step 1\nx = 1\n<end_of_step>"), StepKind::Code);
        assert_eq!(classify("print(x)\n<end_of_code>"), StepKind::LastCode);
        assert_eq!(
            classify("<answer>So \\boxed{3}.<end_of_answer>"),
            StepKind::Answer
        );
        assert_eq!(classify("x = 1"), StepKind::Unterminated);
    }

    #[test]
    fn program_from_ancestors() {
        let anc = [
            "Let's think step by step and solve the problem with code.<code>\nimport math\nx = 2\n<end_of_step>",
            "\n\n# Step 2\ny = x + 1\n<end_of_step>",
        ];
        let p = assemble_program(
            &anc,
            "\n\n# Now print the final answer\nprint(y)\n<end_of_code>",
        );
        assert_eq!(p, "import math\nx = 2\n\n\n\n# Step 2\ny = x + 1\n\n\n\n# Now print the final answer\nprint(y)");
    }

    #[test]
    fn program_stops_at_previous_block_and_skips_timeouts() {
        let anc = [
            "<code>\na = 1\n<end_of_code>\n<output>1<end_of_output>",
            "<code>\nb = 2\n<end_of_step>",
            "\nc = 3\n<end_of_step>TimeoutError: ...",
        ];
        assert_eq!(
            assemble_program(&anc, "\nprint(b)\n<end_of_step>"),
            "b = 2\n\n\nprint(b)"
        );
    }

    #[test]
    fn clean_strips_fences() {
        assert_eq!(clean_code("```python\nprint(1)\n```"), "print(1)");
    }

    #[test]
    fn observation_rounding_and_truncation() {
        assert_eq!(format_observation("8.94427190999916\n"), "8.9443");
        assert_eq!(format_observation("16.0"), "16.0");
        assert_eq!(format_observation("4"), "4");
        assert_eq!(format_observation("[1, 2]"), "[1, 2]");
        assert_eq!(format_observation("0.1234567"), "0.1235");
        let long = "a".repeat(600) + &"b".repeat(600);
        let obs = format_observation(&long);
        assert_eq!(obs.len(), 1027);
        assert!(obs.starts_with(&"a".repeat(512)) && obs.ends_with(&"b".repeat(512)));
        assert_eq!(&obs[512..515], "...");
    }

    #[test]
    fn float_repr_like_python() {
        assert_eq!(py_float_repr(1e-5), "1e-05");
        assert_eq!(py_float_repr(1.5e16), "1.5e+16");
        assert_eq!(py_float_repr(84000.0), "84000.0");
        assert_eq!(py_float_repr(0.25), "0.25");
    }

    #[test]
    fn failure_rules() {
        let ok = ExecResult {
            ok: true,
            stdout: "error bars: 3\n".into(),
            stderr: String::new(),
            error: None,
            exit: Some(0),
            signal: None,
            timed_out: false,
            elapsed_ms: 1.0,
            sandbox: Default::default(),
        };
        assert!(!StepOutcome::from_exec(&ok, FailureRule::Execution).failed);
        assert!(StepOutcome::from_exec(&ok, FailureRule::ErrorSubstring).failed);
        let bad = ExecResult {
            ok: false,
            error: Some("NameError: name 'y' is not defined".into()),
            ..ok
        };
        let o = StepOutcome::from_exec(&bad, FailureRule::Execution);
        assert!(o.failed);
        assert_eq!(o.observation, "NameError: name 'y' is not defined");
    }
}
