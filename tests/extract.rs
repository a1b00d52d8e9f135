//! `rstar extract` end to end: a hand-built tree file goes through the binary, and the SFT set and
//! pairs it writes load through the training data loader (`rstar train`'s path) with the texts
//! intact; the records have the field sets of rStar's released examples (committed in
//! tests/fixtures/rstar-examples).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use rstar::data::prompts::{self, SFT_PROMPT};
use rstar::data::training::{load_pairs, load_sft, TokenContext};
use rstar::tokenizer::Tokenizer;
use rstar::train::{Task, TrainConfig, Trainer};
use serde_json::{json, Value};

const Q: &str = "What is 6 times 7?";
const GOOD: &str = "<code>\n# Step 1: multiply the two numbers given in the question\nprint(6 * 7)\n<end_of_code>\n<output>42<end_of_output>";
const GOOD_ANSWER: &str =
    "\n<answer>From the result, we can see that the product is \\boxed{42}.<end_of_answer>";
const BAD: &str = "<code>\nprint(6 + 7)\n<end_of_code>\n<output>13<end_of_output>";
const BAD_ANSWER: &str = "\n<answer>\\boxed{13}<end_of_answer>";

/// root: GOOD (Q 1) -> correct answer; BAD (Q -1) -> wrong answer.
fn trees_file(dir: &Path) -> std::path::PathBuf {
    let line = common::two_branch_record(Q, "42", (GOOD, GOOD_ANSWER), (BAD, BAD_ANSWER, "13"));
    let p = dir.join("trees.jsonl");
    std::fs::write(&p, format!("{line}\n")).unwrap();
    p
}

fn extract(kind: &str, trees: &Path, out: &Path) {
    let o = Command::new(env!("CARGO_BIN_EXE_rstar"))
        .args(["extract", kind, "--trees"])
        .arg(trees)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

/// The field set of the first record of a shared example file, or None when it is absent.
fn example_keys(name: &str) -> Option<BTreeSet<String>> {
    let p = common::fixtures().join("rstar-examples").join(name);
    let text = std::fs::read_to_string(&p).ok()?;
    let v: Vec<Value> = serde_json::from_str(&text).ok()?;
    Some(keys(&v[0]))
}

#[test]
fn extracted_data_loads_for_training() {
    let dir = tempfile::tempdir().unwrap();
    let trees = trees_file(dir.path());
    let (sft, pairs) = (dir.path().join("sft.json"), dir.path().join("rm.json"));
    extract("sft", &trees, &sft);
    extract("pairs", &trees, &pairs);

    let sft_v: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&sft).unwrap()).unwrap();
    assert_eq!(
        sft_v,
        vec![json!({"query": Q, "response": format!("{GOOD}{GOOD_ANSWER}")})]
    );
    let pair_v: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&pairs).unwrap()).unwrap();
    let prompt = prompts::fill(SFT_PROMPT, Q);
    let (user, opener) = prompt.split_at(prompt.find("\n<|assistant|>").unwrap());
    assert_eq!(
        pair_v,
        vec![
            // The root's two children: GOOD vs BAD (margin 2).
            json!({"prompt": prompt, "pos": GOOD, "neg": BAD, "neg_count": 1, "pos_count": 1}),
            // Whole trajectories, prompt = the user turn (rm_data_examples.json's layout).
            json!({"prompt": user, "pos": format!("{opener}{GOOD}{GOOD_ANSWER}"),
                   "neg": format!("{opener}{BAD}{BAD_ANSWER}"), "neg_count": 1, "pos_count": 1}),
        ]
    );
    match (
        example_keys("sft_data_examples.json"),
        example_keys("rm_data_examples.json"),
    ) {
        (Some(s), Some(r)) => {
            assert_eq!(keys(&sft_v[0]), s);
            assert_eq!(keys(&pair_v[0]), r);
        }
        _ => panic!("tests/fixtures/rstar-examples: the example files are missing or malformed"),
    }

    // The training loader reads them back, token for token.
    let model = common::fixtures().join("models/qwen2-f32-v5");
    let tok = Tokenizer::from_dir(&model).unwrap();
    let cx = TokenContext {
        tokenizer: Some(&tok),
        eos: None,
        vocab_size: tok.vocab_size(),
        seq_len: 4096,
    };
    let s = load_sft(&sft, &cx).unwrap();
    assert_eq!((s.examples.len(), s.skipped), (1, 0));
    let text = tok.decode(&s.examples[0].ids, false).unwrap();
    assert_eq!(text, format!("{prompt}{GOOD}{GOOD_ANSWER}"));
    let p = load_pairs(&pairs, &cx).unwrap();
    assert_eq!((p.examples.len(), p.skipped), (2, 0));
    let e = &p.examples[0];
    let pos = tok
        .decode(&[&e.prefix[..], &e.pos].concat(), false)
        .unwrap();
    let neg = tok
        .decode(&[&e.prefix[..], &e.neg].concat(), false)
        .unwrap();
    assert_eq!(
        (pos, neg),
        (format!("{prompt}{GOOD}"), format!("{prompt}{BAD}"))
    );

    // And through the trainer `rstar train` uses.
    for (task, file) in [(Task::Sft, &sft), (Task::Ppm, &pairs)] {
        let cfg = TrainConfig {
            task,
            ..TrainConfig::default()
        };
        let mut tr = Trainer::new(&model, cfg).unwrap();
        assert!(tr.load_data(file).unwrap().0 >= 1);
    }
}

#[test]
fn malformed_tree_line_is_reported_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let trees = trees_file(dir.path());
    let mut text = std::fs::read_to_string(&trees).unwrap();
    text.push_str("{\"index\": 1, \"question\": \"x\"\n");
    std::fs::write(&trees, text).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_rstar"))
        .args(["extract", "sft", "--trees"])
        .arg(&trees)
        .arg("--out")
        .arg(dir.path().join("o.json"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("trees.jsonl") && err.contains("line 2"),
        "{err}"
    );
    assert!(!dir.path().join("o.json").exists());
}
