//! Every generated solution runs in the executor, prints what its output block says, and its
//! final answer grades equal to the generated answer. Skips (with the reason) when Python is
//! unavailable, unless RSTAR_REQUIRE_PYTHON=1.

mod common;

use std::process::Command;

use rstar::data::generate::generate;
use rstar::exec::{ExecConfig, Executor};
use rstar::grade::{equal, extract_answer};
use rstar::steps::{assemble_program, format_observation, tags};

#[test]
fn generated_solutions_execute_and_grade_equal() {
    let ex = match Executor::new(ExecConfig {
        workers: 2,
        ..ExecConfig::default()
    }) {
        Ok(e) => e,
        Err(e) => return common::python_missing(&e.to_string()).unwrap_or(()),
    };
    let mut problems = Vec::new();
    for level in 1..=4 {
        problems.extend(generate(level, 12, 11).unwrap());
    }
    let mut programs = Vec::new();
    for p in &problems {
        // The program: everything up to <end_of_code>, assembled as the search does.
        let code_end = p.response.find(tags::END_OF_CODE).unwrap() + tags::END_OF_CODE.len();
        programs.push(assemble_program::<&str>(&[], &p.response[..code_end]));
    }
    let results = ex.run_many(&programs);
    for (p, r) in problems.iter().zip(&results) {
        assert!(r.ok, "{}\n{}\n{:?}", p.question, p.response, r.error);
        let obs = format_observation(&r.stdout);
        let s = p.response.find(tags::OUTPUT).unwrap() + tags::OUTPUT.len();
        let e = p.response.find(tags::END_OF_OUTPUT).unwrap();
        assert_eq!(obs, &p.response[s..e], "{}", p.response);
        assert!(equal(obs.trim(), &p.answer), "{obs} vs {}", p.answer);
        let answer_part = &p.response[p.response.find(tags::ANSWER).unwrap()..];
        let boxed = extract_answer(answer_part).unwrap();
        assert!(equal(&boxed, &p.answer), "{boxed} vs {}", p.answer);
    }
}

#[test]
fn cli_writes_problems_that_load_as_data() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.jsonl");
    let o = Command::new(env!("CARGO_BIN_EXE_rstar"))
        .args([
            "gen-problems",
            "--level",
            "3",
            "--count",
            "5",
            "--seed",
            "2",
            "--solutions",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ps = rstar::data::load_problems(&out).unwrap();
    assert_eq!(ps.len(), 5);
    let text = std::fs::read_to_string(&out).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["query"], first["question"]);
    assert!(first["response"]
        .as_str()
        .unwrap()
        .starts_with("<code>\n# Step 1:"));
}
