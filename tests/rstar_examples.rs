//! The rStar samples (committed in tests/fixtures/rstar-examples) classify and execute as the
//! reference did: the IndentationError sample fails, the positive samples pass with the recorded
//! output, and each final answer grades equal to the output its code printed. Without Python
//! with sympy the execution test prints SKIPPED (`RSTAR_REQUIRE_PYTHON=1`: fails instead).

mod common;

use rstar::exec::{ExecConfig, Executor};
use rstar::grade::{equal, extract_answer};
use rstar::steps::{assemble_program, classify, FailureRule, StepKind, StepOutcome};

fn recorded_output(text: &str) -> Option<&str> {
    let s = text.find("<output>")? + "<output>".len();
    let e = text[s..].find("<end_of_output>")? + s;
    Some(&text[s..e])
}

#[test]
fn rm_pairs_execute_like_the_reference() {
    let path = common::fixtures().join("rstar-examples/rm_data_examples.json");
    let ex = match Executor::new(ExecConfig {
        workers: 2,
        ..ExecConfig::default()
    }) {
        Ok(e) => e,
        Err(e) => return common::python_missing(&e.to_string()).unwrap_or(()),
    };
    let items: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json");
    let mut checked = 0;
    for it in &items {
        let prompt = it["prompt"].as_str().unwrap_or_default();
        // the partial solution in the prompt is the ancestors' text
        let prefix = prompt
            .split_once("<|assistant|>:")
            .map(|(_, p)| p)
            .unwrap_or("");
        for side in ["pos", "neg"] {
            let text = it[side].as_str().unwrap_or_default();
            // the step's code part: everything before the output block (observation is system-added)
            let code_part = text.split("<output>").next().unwrap_or(text);
            let kind = classify(code_part);
            let ancestors: Vec<&str> = if prefix.trim().is_empty() {
                vec![]
            } else {
                vec![prefix]
            };
            let program = assemble_program(&ancestors, code_part);
            let r = ex.run(&program);
            let o = StepOutcome::from_exec(&r, FailureRule::Execution);
            match recorded_output(text) {
                Some(obs) => {
                    assert_eq!(kind, StepKind::LastCode);
                    let ref_failed = obs.to_lowercase().contains("error");
                    assert_eq!(o.failed, ref_failed, "{side}: {obs:?} vs {o:?}\n{program}");
                    if !ref_failed {
                        assert_eq!(o.observation, obs.trim(), "{side}: observation");
                    } else {
                        assert!(
                            o.observation
                                .starts_with(obs.split(" (").next().unwrap_or(obs)),
                            "{o:?}"
                        );
                    }
                    if let Some(ans) = text.find("<answer>").map(|i| &text[i..]) {
                        assert_eq!(classify(ans), StepKind::Answer);
                        assert!(extract_answer(ans).is_some());
                    }
                }
                None => {
                    assert_eq!(kind, StepKind::Code);
                    assert!(
                        !o.failed,
                        "{side} intermediate step failed: {o:?}\n{program}"
                    );
                }
            }
            checked += 1;
        }
    }
    eprintln!("checked {checked} rStar rm samples");
    assert!(checked >= 10);
}

#[test]
fn sft_examples_classify_and_extract() {
    let path = common::fixtures().join("rstar-examples/sft_data_examples.json");
    let items: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json");
    let (mut answers, mut numeric) = (Vec::new(), 0);
    for it in &items {
        let resp = it["response"].as_str().unwrap_or_default();
        let steps: Vec<&str> = resp.split_inclusive("<end_of_step>").collect();
        for s in &steps[..steps.len() - 1] {
            assert_eq!(classify(s), StepKind::Code);
        }
        let tail = steps[steps.len() - 1];
        let (code, answer) = tail.split_once("<output>").expect("output block");
        assert_eq!(classify(code), StepKind::LastCode);
        let ans = answer
            .split_once("<answer>")
            .map(|(_, a)| a)
            .expect("answer");
        assert_eq!(classify(ans), StepKind::Answer);
        let extracted = extract_answer(ans).expect("boxed");
        // The boxed answer is what the last code printed, when that is a number.
        let printed = recorded_output(tail).expect("output").trim();
        if printed.parse::<f64>().is_ok() {
            assert!(
                equal(&extracted, printed),
                "{extracted:?} vs printed {printed:?}"
            );
            numeric += 1;
        }
        answers.push(extracted);
    }
    assert!(numeric >= 5, "only {numeric} numeric answers");
    // Different answers of different problems grade unequal.
    for (i, a) in answers.iter().enumerate() {
        for b in &answers[i + 1..] {
            if a != b {
                assert!(!equal(a, b), "{a:?} graded equal to {b:?}");
            }
        }
    }
}
