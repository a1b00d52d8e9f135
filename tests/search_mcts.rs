//! MCTS rules (spec 3.2-3.6, 4) with a scripted policy, value model and executor: UCT choices,
//! Q-values after known rollouts, duplicate and answer-child rules, error and depth limits, both
//! annotation modes and inference, and the backup rule as an invariant over whole trees.

mod common;

use common::scripted::{values, Runner, Script};
use rstar::search::tree::{TOO_MANY_CODE_ERRORS, TOO_MANY_STEPS};
use rstar::search::{
    keep_candidates, search, AnswerChildren, End, Mode, Models, Problem, SearchConfig, SearchStats,
    Tree, ValueModel,
};
use rstar::steps::StepFormat;

fn problem(answer: &str) -> Problem {
    Problem {
        id: 0,
        question: "What is 3 + 1?".into(),
        answer: Some(answer.into()),
    }
}

fn cfg(mode: Mode, rollouts: usize, width: usize) -> SearchConfig {
    SearchConfig {
        mode,
        rollouts,
        width,
        ..SearchConfig::default()
    }
}

fn run(
    p: &[Problem],
    c: &SearchConfig,
    pol: &mut Script,
    val: Option<&mut dyn ValueModel>,
) -> Vec<Tree> {
    let mut stats = SearchStats::default();
    try_run(p, c, pol, val, &mut stats).unwrap()
}

fn try_run(
    p: &[Problem],
    c: &SearchConfig,
    pol: &mut Script,
    value: Option<&mut dyn ValueModel>,
    stats: &mut SearchStats,
) -> rstar::Result<Vec<Tree>> {
    let mut models = Models {
        policy: pol,
        value,
        runner: &Runner,
    };
    search(p, c, &mut models, stats, &mut |_, _| true)
}

fn node<'t>(t: &'t Tree, tag: &str) -> &'t rstar::search::Node {
    t.nodes
        .iter()
        .find(|n| n.tag == tag)
        .unwrap_or_else(|| panic!("no node {tag}"))
}

const A: &str = "<code>\na = 3\n<end_of_step>";
const B: &str = "<code>\nb = 4\n<end_of_step>";
const C: &str = "<code>\nc = 5\n<end_of_step>";
const RIGHT: &str = "<answer>The answer is \\boxed{4}.<end_of_answer>";
const WRONG: &str = "<answer>The answer is \\boxed{5}.<end_of_answer>";

#[test]
fn uct_formula_unvisited_ties_terminals_and_exhaustion() {
    let mut t = Tree::new("q");
    let a = t.add_child(0, "a");
    let b = t.add_child(0, "b");
    let c = t.add_child(0, "c");
    // Nothing visited: every score is 0 and the first child wins.
    assert_eq!(t.uct(a, 2.0), 0.0);
    assert_eq!(t.select_child(0, 2.0), Some(a));
    t.nodes[0].visit_count = 10;
    (t.nodes[a].visit_count, t.nodes[a].value_sum) = (5, 2.5);
    (t.nodes[b].visit_count, t.nodes[b].value_sum) = (1, -1.0);
    let ua = 0.5 + 2.0 * (10f64.ln() / 5.0).sqrt();
    let ub = -1.0 + 2.0 * 10f64.ln().sqrt();
    assert!((t.uct(a, 2.0) - ua).abs() < 1e-12);
    assert!((t.uct(b, 2.0) - ub).abs() < 1e-12);
    // The exploration term makes the rarely visited, worse child win; unvisited c scores 0.
    assert_eq!(t.uct(c, 2.0), 0.0);
    assert_eq!(t.select_child(0, 2.0), Some(b));
    // With c = 0 it is pure Q.
    assert_eq!(t.select_child(0, 0.0), Some(a));
    // Terminal children are skipped; all terminal makes the parent terminal.
    t.nodes[b].end = Some(End::Answer);
    assert_eq!(t.select_child(0, 2.0), Some(a));
    t.nodes[a].end = Some(End::Errors);
    t.nodes[c].end = Some(End::Depth);
    assert_eq!(t.select_child(0, 2.0), None);
    assert_eq!(t.nodes[0].end, Some(End::Exhausted));
    // update_recursive reaches the root; update alone does not; `value` is the first value.
    let mut t = Tree::new("q");
    let a = t.add_child(0, "a");
    let aa = t.add_child(a, "aa");
    assert_eq!(t.nodes[aa].tag, "0.1.1");
    t.update(a, 0.25);
    t.update_recursive(aa, -1.0);
    assert_eq!((t.nodes[0].visit_count, t.nodes[0].value_sum), (1, -1.0));
    assert_eq!((t.nodes[a].visit_count, t.nodes[a].value), (2, Some(0.25)));
    assert!((t.nodes[a].q_value() + 0.375).abs() < 1e-12);
}

#[test]
fn duplicates_merged_and_one_answer_child() {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let outs = s(&[A, A, WRONG, B, RIGHT, A]);
    assert_eq!(
        keep_candidates(&outs, AnswerChildren::OnlyFirstAnswer, StepFormat::Native),
        vec![2]
    );
    assert_eq!(
        keep_candidates(&outs, AnswerChildren::OneAnswerPlusCode, StepFormat::Native),
        vec![0, 2, 3]
    );
    assert_eq!(
        keep_candidates(
            &s(&[B, A, B, C]),
            AnswerChildren::OnlyFirstAnswer,
            StepFormat::Native
        ),
        vec![0, 1, 3]
    );
}

#[test]
fn terminal_guided_q_values_after_known_rollouts() {
    let mut pol = Script::new(&[
        ("", &[A, A, B]),
        (A, &[RIGHT, WRONG, C]),
        (B, &[WRONG, WRONG, WRONG]),
    ]);
    let trees = run(
        &[problem("4")],
        &cfg(Mode::TerminalGuided, 5, 3),
        &mut pol,
        None,
    );
    let t = &trees[0];
    // Rollout 1: root expanded into A, B (duplicate A merged); both unvisited, A wins the tie;
    // A's expansion keeps only its first answer (correct: +1 up to the root); A is exhausted.
    // Rollout 2: B (the only non-terminal child); its wrong answer gives −1 to B and the root.
    // Rollout 3: every child of the root is terminal: nothing more is expanded.
    assert_eq!(pol.log, vec!["".to_string(), A.into(), B.into()]);
    assert_eq!(t.nodes.len(), 5);
    let (a, b) = (node(t, "0.1"), node(t, "0.2"));
    assert_eq!((a.text.as_str(), b.text.as_str()), (A, B));
    let right = node(t, "0.1.1");
    assert_eq!(right.final_answer.as_deref(), Some("4"));
    assert_eq!(right.correct, Some(true));
    assert_eq!((right.visit_count, right.q_value()), (1, 1.0));
    assert_eq!(
        (a.visit_count, a.q_value(), a.end),
        (1, 1.0, Some(End::Exhausted))
    );
    let wrong = node(t, "0.2.1");
    assert_eq!((wrong.correct, wrong.q_value()), (Some(false), -1.0));
    assert_eq!((b.visit_count, b.q_value()), (1, -1.0));
    assert_eq!((t.root().visit_count, t.root().q_value()), (2, 0.0));
    assert_eq!(t.root().end, Some(End::Exhausted));
    // Code children ran and recorded their observation (not shown for a plain code step).
    assert_eq!(a.observation.as_deref(), Some("7"));
    common::check_backup_invariant(&t.to_rstar_json(), false);
}

#[test]
fn uct_prefers_unvisited_sibling_over_negative_q() {
    // A keeps a code child beside its wrong answer, so A stays selectable with Q = −1.
    let mut pol = Script::new(&[("", &[A, B, C]), (A, &[C, WRONG]), (B, &[RIGHT])]);
    let mut c = cfg(Mode::TerminalGuided, 2, 2);
    c.answer_children = AnswerChildren::OneAnswerPlusCode;
    c.max_depth = 2;
    let trees = run(&[problem("4")], &c, &mut pol, None);
    let t = &trees[0];
    // Rollout 1 expands the root, then A (children: C code, wrong answer) and stops after
    // max_depth = 2 iterations. Rollout 2: A has Q = −1 (N_root = 1 so no exploration), B and C
    // score 0: B, the first of them, is expanded.
    assert_eq!(pol.log, vec!["".to_string(), A.into(), B.into()]);
    assert_eq!(node(t, "0.1").q_value(), -1.0);
    assert_eq!(node(t, "0.2.1").correct, Some(true));
    assert_eq!((t.root().visit_count, t.root().value_sum), (2, 0.0));
    common::check_backup_invariant(&t.to_rstar_json(), false);
}

#[test]
fn error_threshold_and_depth_limit() {
    const BAD: &str = "<code>\nz = FAIL\n<end_of_step>";
    const BAD_LAST: &str = "print(FAIL)\n<end_of_code>";
    const NEXT: &str = "w = 2\n<end_of_step>";
    // Threshold 1: any failure is terminal, −1 on the node only; the error is shown.
    let mut pol = Script::new(&[("", &[BAD, A])]);
    let mut c = cfg(Mode::TerminalGuided, 1, 2);
    c.max_depth = 1;
    let t = &run(&[problem("4")], &c, &mut pol, None)[0];
    let bad = node(t, "0.1");
    assert_eq!(bad.end, Some(End::Errors));
    assert_eq!(bad.final_answer.as_deref(), Some(TOO_MANY_CODE_ERRORS));
    assert_eq!((bad.visit_count, bad.value_sum), (1, -1.0));
    assert!(bad
        .text
        .ends_with("<end_of_code>\n<output>NameError: name 'y' is not defined<end_of_output>"));
    assert_eq!(t.root().visit_count, 0);
    assert_eq!(node(t, "0.2").consecutive_errors, 0);
    common::check_backup_invariant(&t.to_rstar_json(), false);

    // Threshold 2: one failure continues (errors 1), a second in a row is terminal; a success
    // resets the count.
    let mut pol = Script::new(&[("", &[BAD]), (BAD, &[BAD_LAST, NEXT])]);
    let mut c = cfg(Mode::TerminalGuided, 1, 2);
    c.errors_threshold = 2;
    c.max_depth = 2;
    let t = &run(&[problem("4")], &c, &mut pol, None)[0];
    let first = node(t, "0.1");
    // Not terminal when created (it only became exhausted once both children failed).
    assert_eq!(
        (first.consecutive_errors, first.final_answer.as_deref()),
        (1, None)
    );
    assert_eq!((first.visit_count, first.end), (0, Some(End::Exhausted)));
    assert!(first.failure.as_deref().unwrap().contains("NameError"));
    let second = node(t, "0.1.1");
    assert_eq!(
        (second.consecutive_errors, second.end),
        (2, Some(End::Errors))
    );
    // The last code step already closed its block: only the output block is added.
    assert!(second.text.ends_with(
        "(FAIL)\n<end_of_code>\n<output>NameError: name 'y' is not defined<end_of_output>"
    ));
    // NEXT re-runs the whole block, BAD included, and so fails too.
    assert_eq!(node(t, "0.1.2").consecutive_errors, 2);
    // A step that opens a new block does not re-run the failing one: the count resets.
    let mut pol = Script::new(&[("", &[BAD]), (BAD, &[A])]);
    let t = &run(&[problem("4")], &c, &mut pol, None)[0];
    assert_eq!(
        (node(t, "0.1.1").consecutive_errors, node(t, "0.1.1").end),
        (0, None)
    );

    // Depth: children deeper than max_depth are invalid terminals.
    let mut pol = Script::new(&[]);
    let mut c = cfg(Mode::TerminalGuided, 3, 1);
    c.max_depth = 2;
    let t = &run(&[problem("4")], &c, &mut pol, None)[0];
    let deep = node(t, "0.1.1.1");
    assert_eq!((deep.depth, deep.end), (3, Some(End::Depth)));
    assert_eq!(deep.final_answer.as_deref(), Some(TOO_MANY_STEPS));
    assert_eq!((deep.visit_count, deep.value_sum), (1, -1.0));
    assert_eq!(node(t, "0.1.1").visit_count, 0);
    common::check_backup_invariant(&t.to_rstar_json(), false);
}

#[test]
fn ppm_augmented_pseudo_visit_not_propagated() {
    let mut pol = Script::new(&[
        ("", &[A, B, C]),
        (B, &[RIGHT]),
        (C, &[WRONG]),
        (A, &[WRONG]),
    ]);
    let mut vm = values(&[(A, 0.2), (B, 0.6), (C, -0.5)]);
    let trees = run(
        &[problem("4")],
        &cfg(Mode::PpmAugmented, 2, 3),
        &mut pol,
        Some(&mut vm),
    );
    let t = &trees[0];
    // The answer children are graded, not valued: only the three code children were valued.
    assert_eq!(vm.1, 3);
    // Rollout 1: the root's N is 0 so the choice is pure Q = the PPM value: B (0.6).
    assert_eq!(pol.log[1], B);
    let (a, b, c) = (node(t, "0.1"), node(t, "0.2"), node(t, "0.3"));
    // A: pseudo-visit 0.2, then (rollout 2) its wrong answer's −1.
    assert_eq!((a.visit_count, a.value, a.value_sum), (2, Some(0.2), -0.8));
    // B: pseudo-visit 0.6 then the correct answer's +1: Q = (0.6 + 1) / 2.
    assert_eq!(b.visit_count, 2);
    assert!((b.q_value() - 0.8).abs() < 1e-12);
    // The pseudo-visits never reached the root: only the answer's backup did.
    assert_eq!((t.root().visit_count, t.root().value_sum), (2, 0.0));
    // Rollout 2: root N = 1 (ln 1 = 0): pure Q among non-terminal A (0.2), C (−0.5): A.
    assert_eq!(pol.log[2], A);
    assert_eq!(c.visit_count, 1);
    common::check_backup_invariant(&t.to_rstar_json(), true);
}

#[test]
fn ppm_augmented_needs_a_value_model_and_annotation_needs_answers() {
    let mut pol = Script::new(&[]);
    let mut stats = SearchStats::default();
    let c = cfg(Mode::PpmAugmented, 1, 1);
    let e = try_run(&[problem("4")], &c, &mut pol, None, &mut stats);
    assert!(e.is_err());
    let p = Problem {
        answer: None,
        ..problem("4")
    };
    let c = cfg(Mode::TerminalGuided, 1, 1);
    assert!(try_run(&[p], &c, &mut pol, None, &mut stats).is_err());
    let c = SearchConfig {
        width: 0,
        ..SearchConfig::default()
    };
    assert!(try_run(&[problem("4")], &c, &mut pol, None, &mut stats).is_err());
}

#[test]
fn inference_values_terminals_with_the_ppm_and_propagates() {
    let mut pol = Script::new(&[("", &[A, B]), (A, &[WRONG]), (B, &[RIGHT])]);
    let mut vm = values(&[(A, 0.5), (B, 0.1), (WRONG, 0.3), (RIGHT, 0.9)]);
    let p = Problem {
        answer: None,
        ..problem("4")
    };
    let trees = run(&[p], &cfg(Mode::Inference, 3, 2), &mut pol, Some(&mut vm));
    let t = &trees[0];
    let w = node(t, "0.1.1");
    assert_eq!((w.value, w.correct), (Some(0.3), None));
    // A: its pseudo-visit 0.5 plus the propagated terminal value 0.3.
    assert_eq!(node(t, "0.1").visit_count, 2);
    assert!((node(t, "0.1").value_sum - 0.8).abs() < 1e-12);
    assert!((t.root().value_sum - 1.2).abs() < 1e-12);
    let best = t.best_answer().unwrap();
    assert_eq!(t.nodes[best].final_answer.as_deref(), Some("4"));
    common::check_backup_invariant(&t.to_rstar_json(), true);
}

#[test]
fn many_problems_in_lock_step_match_one_at_a_time() {
    let script: &[(&str, &[&str])] =
        &[("", &[A, B, C]), (A, &[C, WRONG]), (B, &[RIGHT]), (C, &[A])];
    let c = SearchConfig {
        answer_children: AnswerChildren::OneAnswerPlusCode,
        ..cfg(Mode::TerminalGuided, 4, 3)
    };
    let ps: Vec<Problem> = (0..3)
        .map(|i| Problem {
            id: i,
            question: format!("q{i}"),
            answer: Some(["4", "5", "6"][i as usize].into()),
        })
        .collect();
    let together = run(&ps, &c, &mut Script::new(script), None);
    for (i, p) in ps.iter().enumerate() {
        let alone = run(std::slice::from_ref(p), &c, &mut Script::new(script), None);
        assert_eq!(alone[0], together[i]);
        common::check_backup_invariant(&alone[0].to_rstar_json(), false);
    }
}
