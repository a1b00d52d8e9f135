//! The tool-integrated step format end to end with a scripted chat policy and the real sandboxed
//! executor: each step's block runs after every earlier block, only its own output comes back
//! in an ```output block, the answer comes from \boxed{}; a failing program, a step without a
//! block or answer, and a path at the context limit end their branch with the right reason.

mod common;

use common::scripted::Script;
use rstar::exec::{ExecConfig, Executor};
use rstar::search::eval::{self, NoAnswer};
use rstar::search::{
    run_search, End, Models, Policy, Problem, SearchConfig, SearchStats, StepRequest, Strategy,
    Tree,
};
use rstar::steps::StepFormat;

const S1: &str = "In May she sold half as many as in April.\n```python\napril = 48\nmay = april // 2\nprint(may)\n```\n```output";
const OUT1: &str = "\n24\n```\n";
const S2: &str =
    "Now add both months.\n```python\ntotal = april + may\nprint(total)\n```\n```output";
const OUT2: &str = "\n72\n```\n";
const ANSWER: &str = "Natalia sold \\boxed{72} clips altogether.";

fn natalia() -> Problem {
    Problem {
        id: 0,
        question: "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?".into(),
        answer: Some("72".into()),
    }
}

fn tool_cfg(search: Strategy) -> SearchConfig {
    SearchConfig {
        search,
        step_format: StepFormat::Tool,
        max_depth: 6,
        ..SearchConfig::default()
    }
    .resolved()
}

fn run(cfg: &SearchConfig, pol: &mut dyn Policy) -> Option<Tree> {
    if !common::executor_available() {
        return None;
    }
    let exec = Executor::new(ExecConfig::default()).unwrap();
    let mut models = Models {
        policy: pol,
        value: None,
        runner: &exec,
    };
    let mut stats = SearchStats::default();
    let mut trees =
        run_search(&[natalia()], cfg, &mut models, &mut stats, &mut |_, _| true).unwrap();
    Some(trees.remove(0))
}

#[test]
fn greedy_tool_steps_run_cumulatively_and_answer() {
    let cfg = tool_cfg(Strategy::Greedy);
    assert_eq!(cfg.stop, vec!["```output".to_string()]);
    let s1_done = format!("{S1}{OUT1}");
    let s2_done = format!("{S2}{OUT2}");
    let mut pol = Script::new(&[
        ("", &[S1]),
        (&s1_done, &[S2]),
        (&format!("{s1_done}{s2_done}"), &[ANSWER]),
    ]);
    let Some(t) = run(&cfg, &mut pol) else { return };
    let (id, node) = t.answers().next().expect("an answer");
    assert_eq!(node.final_answer.as_deref(), Some("72"));
    // The second block ran after the first (it uses `april` and `may`) and shows only its own
    // output, not the first block's print again.
    let path = t.path(id);
    assert_eq!(path.len(), 3);
    assert_eq!(t.nodes[path[0]].observation.as_deref(), Some("24"));
    assert_eq!(t.nodes[path[1]].observation.as_deref(), Some("72"));
    assert_eq!(t.solution(id), format!("{s1_done}{s2_done}{ANSWER}"));
}

#[test]
fn a_failing_program_and_a_step_without_block_end_their_branch() {
    let bad = "Use the total.\n```python\nprint(totl)\n```\n```output";
    let chatter = "I am not sure what to do next.";
    let mut pol = Script::new(&[("", &[bad, chatter])]);
    let cfg = SearchConfig {
        width: 2,
        best_of: 2,
        ..tool_cfg(Strategy::BestOfN)
    };
    let Some(t) = run(&cfg, &mut pol) else { return };
    let kids = &t.root().children;
    assert_eq!(kids.len(), 2);
    let b = &t.nodes[kids[0]];
    assert_eq!(b.end, Some(End::Errors));
    assert!(b.failure.as_deref().unwrap().contains("NameError"), "{b:?}");
    // The model sees the error in its own output convention.
    assert!(
        b.text
            .ends_with("```output\nNameError: name 'totl' is not defined\n```\n"),
        "{}",
        b.text
    );
    assert_eq!(t.nodes[kids[1]].end, Some(End::Unparsed));
    assert_eq!(t.answers().count(), 0);
}

/// The `qwen2.5` preset's configuration (greedy, tool format, `errors_threshold = 2`).
fn preset_cfg() -> SearchConfig {
    let table = serde_json::json!({ "preset": "qwen2.5" });
    let origin = std::path::Path::new("preset");
    let (cfg, _) = rstar::search::config::apply(
        &SearchConfig::default(),
        table.as_object().unwrap().clone(),
        origin,
    )
    .unwrap();
    cfg.resolved()
}

const BAD: &str = "Add both months.\n```python\nprint(totl)\n```\n```output";
const BAD_OUT: &str = "\nNameError: name 'totl' is not defined\n```\n";
const FIX: &str =
    "`totl` is not defined; compute it.\n```python\nprint(48 + 48 // 2)\n```\n```output";

#[test]
fn a_failing_programs_error_is_the_next_steps_output_and_the_model_fixes_it() {
    let cfg = preset_cfg();
    assert_eq!((cfg.search, cfg.errors_threshold), (Strategy::Greedy, 2));
    let bad_done = format!("{BAD}{BAD_OUT}");
    let fix_done = format!("{FIX}\n72\n```\n");
    // The script answers only when the error text is in the solution so far: the policy saw it.
    let mut pol = Script::new(&[
        ("", &[BAD]),
        (&bad_done, &[FIX]),
        (&format!("{bad_done}{fix_done}"), &[ANSWER]),
    ]);
    let Some(t) = run(&cfg, &mut pol) else { return };
    assert_eq!(
        pol.log,
        vec![
            String::new(),
            bad_done.clone(),
            format!("{bad_done}{fix_done}")
        ]
    );
    let (id, node) = t.answers().next().expect("an answer after the fix");
    assert_eq!(node.final_answer.as_deref(), Some("72"));
    let path = t.path(id);
    // The failed step stays in the tree with its error; it is not terminal.
    let failed = &t.nodes[path[0]];
    assert!(
        failed.failure.as_deref().unwrap().contains("NameError"),
        "{failed:?}"
    );
    assert_eq!(failed.end, None);
    // The fix ran without the failed block (else `totl` would fail it again).
    assert_eq!(t.nodes[path[1]].failure, None);
    assert_eq!(t.nodes[path[1]].observation.as_deref(), Some("72"));
    // Compliance counts the failed step as non-compliant.
    let mut ends = eval::Ends::default();
    ends.add(&t);
    assert_eq!((ends.steps, ends.compliant), (3, 2));
}

#[test]
fn failed_steps_in_a_row_end_the_path_at_errors_threshold() {
    let cfg = preset_cfg();
    let bad_done = format!("{BAD}{BAD_OUT}");
    let mut pol = Script::new(&[("", &[BAD]), (&bad_done, &[BAD])]);
    let Some(t) = run(&cfg, &mut pol) else { return };
    // Two proposals: the second failure ends the path, nothing is asked after it.
    assert_eq!(pol.log.len(), 2, "{:?}", pol.log);
    let first = &t.nodes[t.root().children[0]];
    let second = &t.nodes[first.children[0]];
    assert_eq!((first.end, second.end), (None, Some(End::Errors)));
    assert_eq!(second.consecutive_errors, 2);
    assert_eq!(t.answers().count(), 0);
    // "The programs failed" comes with the error that ended the path.
    assert_eq!(
        eval::last_error(&t).as_deref(),
        Some("NameError: name 'totl' is not defined")
    );
}

/// A policy whose every candidate ran into the context limit.
struct Full;

impl Policy for Full {
    fn propose(&mut self, reqs: &[StepRequest<'_>], n: usize) -> rstar::Result<Vec<Vec<String>>> {
        Ok(vec![
            vec!["Let me compute\n```python\nx = (1 +".into(); n];
            reqs.len()
        ])
    }
    fn context_full(&self, _req: usize, _cand: usize) -> bool {
        true
    }
}

#[test]
fn the_context_limit_ends_a_path_with_finish_reason_length() {
    let cfg = tool_cfg(Strategy::Greedy);
    let Some(t) = run(&cfg, &mut Full) else {
        return;
    };
    let n = &t.nodes[t.root().children[0]];
    assert_eq!(n.end, Some(End::Length));
    assert_eq!(
        n.final_answer.as_deref(),
        Some(rstar::search::tree::CONTEXT_LIMIT)
    );
    // The problem's result says why it has no answer.
    let exec = Executor::new(ExecConfig::default()).unwrap();
    let mut models = Models {
        policy: &mut Full,
        value: None,
        runner: &exec,
    };
    let r = eval::solve_problems(
        &[natalia()],
        &cfg,
        &mut models,
        &mut SearchStats::default(),
        &mut |_, _| true,
    )
    .unwrap();
    assert_eq!(r[0].no_answer, Some(NoAnswer::ContextLimit));
    assert_eq!(r[0].ends.context_limit, 1);
}

/// Smoke run of a real chat model in the tool format (Qwen2.5-Coder-0.5B-Instruct Q4_K_M, fetched
/// by the asset switch): the prompt renders through its chat template, greedy steps are
/// generated and judged, and the solution either answers or says why not. Kept to a few dozen
/// tokens: the model's accuracy is measured by `rstar eval` (docs/evaluation.md), not here.
#[test]
fn qwen_writes_tool_steps_through_its_chat_template() {
    if !common::executor_available() {
        return;
    }
    let Some(_) = common::asset(&rstar::assets::QWEN_CODER_05B) else {
        return;
    };
    let gguf = rstar::assets::joined_file(&rstar::assets::QWEN_CODER_05B).unwrap();
    let overrides = serde_json::json!({
        "search": "greedy",
        "step_format": "tool",
        "max_depth": 2,
        "max_step_tokens": 24,
    });
    let mut solver = rstar::search::solver::Solver::new(rstar::search::solver::SolverOptions {
        policy: Some(gguf),
        overrides: overrides.as_object().unwrap().clone(),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(solver.config().stop, vec!["```output".to_string()]);
    let s = solver.solve(&natalia().question).unwrap();
    assert!(
        s.tokens.generated > 0 && s.tokens.generated <= 48,
        "{:?}",
        s.tokens
    );
    // The chat prompt (few-shot example included) is computed once, then the steps.
    assert!(
        s.tokens.computed > 200 + s.tokens.generated,
        "{:?}",
        s.tokens
    );
    let e = s.ends;
    assert!(e.answers + e.failed_programs + e.unparsed + e.context_limit + e.budget > 0);
    assert_eq!(s.answer.is_some(), s.no_answer.is_none(), "{s:?}");
}

/// The solver reports the sandbox layers its steps ran under (issue 32: "the solver stats expose
/// it"), in the typed result and in its JSON: a strict executor ran, so every required layer is
/// active and seccomp is among them.
#[test]
fn solution_reports_the_sandbox_layers() {
    if !common::executor_available() {
        return;
    }
    let mut solver = rstar::search::solver::Solver::new(rstar::search::solver::SolverOptions {
        policy: Some("tiny".into()),
        ..Default::default()
    })
    .unwrap();
    let s = solver.solve("What is 15% of 80?").unwrap();
    let sandbox = s
        .sandbox
        .as_ref()
        .expect("the built-in executor reports its sandbox");
    assert!(sandbox.missing().is_empty(), "{sandbox:?}");
    assert!(sandbox.layers["seccomp"].active, "{sandbox:?}");
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(
        json["sandbox"]["layers"]["seccomp"]["active"], true,
        "{json}"
    );
}
