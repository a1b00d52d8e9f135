//! Step-level beam search, best-of-N, greedy and test-time answers (spec 3.4, 3.7, 7.4) with a
//! scripted policy, value model and executor: which nodes each search expands, which it prunes,
//! which answer each vote picks, all computed by hand from the script.

mod common;

use common::scripted::{values, Runner, Script};
use rstar::search::eval::{self, Accuracy};
use rstar::search::{
    run_search, Aggregate, Models, Policy, Problem, SearchConfig, SearchStats, StepRequest,
    Strategy, Tree,
};

const A: &str = "<code>\na = 3\n<end_of_step>";
const B: &str = "<code>\nb = 4\n<end_of_step>";
const C: &str = "<code>\nc = 5\n<end_of_step>";
const D: &str = "<code>\nd = 6\n<end_of_step>";
const E: &str = "<code>\ne = 7\n<end_of_step>";
const BAD: &str = "<code>\nFAIL\n<end_of_step>";
const RIGHT: &str = "<answer>The answer is \\boxed{4}.<end_of_answer>";
const WRONG: &str = "<answer>The answer is \\boxed{5}.<end_of_answer>";

fn problem() -> Problem {
    Problem {
        id: 0,
        question: "What is 3 + 1?".into(),
        answer: None,
    }
}

/// Runs `cfg.search` on the one problem.
fn go(
    cfg: &SearchConfig,
    pol: &mut dyn Policy,
    vm: Option<&mut dyn rstar::search::ValueModel>,
) -> (Tree, SearchStats) {
    let mut stats = SearchStats::default();
    let mut models = Models {
        policy: pol,
        value: vm,
        runner: &Runner,
    };
    let mut trees =
        run_search(&[problem()], cfg, &mut models, &mut stats, &mut |_, _| true).unwrap();
    (trees.remove(0), stats)
}

fn tag_of(t: &Tree, text_path: &[&str]) -> Option<String> {
    let want = text_path.concat();
    t.nodes
        .iter()
        .enumerate()
        .find(|(i, _)| *i != 0 && t.solution(*i) == want)
        .map(|(_, n)| n.tag.clone())
}

#[test]
fn beam_keeps_the_top_valued_and_answers_shrink_the_beam() {
    let mut pol = Script::new(&[
        ("", &[A, B, C]),
        (A, &[WRONG, D]),
        (B, &[D, E]),
        (&format!("{B}{E}"), &[RIGHT]),
    ]);
    let mut vm = values(&[
        (A, 0.5),
        (B, 0.9),
        (C, 0.1),
        (D, 0.2),
        (E, 0.7),
        (WRONG, 0.3),
        (RIGHT, 0.8),
    ]);
    let cfg = SearchConfig {
        search: Strategy::Beam,
        beam_width: 2,
        width: 3,
        max_depth: 6,
        ..SearchConfig::default()
    };
    let (t, _) = go(&cfg, &mut pol, Some(&mut vm));
    let t = &t;
    // Depth 0: root -> A .5, B .9, C .1; beam of 2 = [B, A] (by value).
    // Depth 1: B -> D .2, E .7 (the third sample duplicates D); A -> WRONG only (answer-child
    // rule), which leaves the beam and shrinks it to 1; the beam is [E].
    // Depth 2: E -> RIGHT, the beam is empty.
    assert_eq!(
        pol.log,
        vec![String::new(), B.into(), A.into(), format!("{B}{E}")]
    );
    assert!(tag_of(t, &[C, D]).is_none() && tag_of(t, &[B, D, D]).is_none());
    let answers: Vec<(&str, Option<f64>)> = t
        .answers()
        .map(|(_, n)| (n.final_answer.as_deref().unwrap(), n.value))
        .collect();
    assert_eq!(answers, vec![("5", Some(0.3)), ("4", Some(0.8))]);
    // Every new child was valued: 3 + 3 + 1.
    assert_eq!(vm.1, 7);
    let best = t.best_answer().unwrap();
    assert_eq!(t.solution(best), format!("{B}{E}{RIGHT}"));
    // The beam's trajectories are all its answers.
    let tr = eval::trajectories(t, 0, Strategy::Beam, Aggregate::Last, Some("4"));
    assert_eq!(tr.len(), 2);
    assert_eq!(
        tr.iter().map(|x| x.correct).collect::<Vec<_>>(),
        vec![Some(false), Some(true)]
    );
}

#[test]
fn best_of_n_samples_n_then_one_per_step_and_values_only_answers() {
    let mut pol = Script::new(&[
        ("", &[A, B, C]),
        (A, &[WRONG]),
        (B, &[D]),
        (&format!("{B}{D}"), &[RIGHT]),
        (C, &[BAD]),
    ]);
    let mut vm = values(&[(WRONG, 0.3), (RIGHT, 0.6)]);
    let cfg = SearchConfig {
        search: Strategy::BestOfN,
        best_of: 3,
        width: 99, // unused by best-of-N
        ..SearchConfig::default()
    };
    let (t, stats) = go(&cfg, &mut pol, Some(&mut vm));
    let t = &t;
    assert_eq!(
        pol.log,
        vec![
            String::new(),
            A.into(),
            B.into(),
            C.into(),
            format!("{B}{D}")
        ]
    );
    // Root: 3 samples; then 1 per trajectory; C's BAD step fails and ends that trajectory.
    assert_eq!(stats.candidates, 3 + 3 + 1);
    assert_eq!(vm.1, 2, "only the two answers are valued");
    // No pseudo-visits: A holds only WRONG's backed-up value, C (above BAD's local -1) none.
    let a = t.nodes.iter().find(|n| n.text == A).unwrap();
    assert_eq!((a.visit_count, a.value), (1, Some(0.3)));
    let c = t.nodes.iter().find(|n| n.text == C).unwrap();
    assert_eq!((c.visit_count, c.value), (0, None));
    let best = t.best_answer().unwrap();
    assert_eq!(t.nodes[best].final_answer.as_deref(), Some("4"));
}

#[test]
fn greedy_is_one_trajectory_at_temperature_zero() {
    let cfg = SearchConfig {
        search: Strategy::Greedy,
        ..SearchConfig::default()
    }
    .resolved();
    assert_eq!(cfg.temperature, 0.0);
    assert_eq!(cfg.stop, vec!["<end_of_code>", "<end_of_answer>"]);
    let mut pol = Script::new(&[("", &[A, B]), (A, &[RIGHT, WRONG])]);
    let (t, _) = go(&cfg, &mut pol, None);
    let trees = [t];
    // One sample per step: A (the first), then RIGHT.
    assert_eq!(trees[0].nodes.len(), 3);
    assert_eq!(pol.log, vec![String::new(), A.to_string()]);
    assert_eq!(
        trees[0].nodes[2].final_answer.as_deref(),
        Some("4"),
        "{:?}",
        trees[0].nodes
    );
}

/// Answers with the next root step of a queue (one per run), then an answer for any path.
struct PerRun {
    roots: Vec<&'static str>,
}

impl Policy for PerRun {
    fn propose(&mut self, reqs: &[StepRequest<'_>], n: usize) -> rstar::Result<Vec<Vec<String>>> {
        Ok(reqs
            .iter()
            .map(|_| vec![self.roots.remove(0).to_string(); n])
            .collect())
    }
}

#[test]
fn runs_vote_with_grader_clusters() {
    const RIGHT2: &str = "<answer>So \\boxed{4.0}.<end_of_answer>";
    let mut vm = values(&[(RIGHT, 0.2), (WRONG, 0.9), (RIGHT2, 0.3)]);
    let cfg = SearchConfig {
        search: Strategy::Mcts,
        rollouts: 2,
        width: 1,
        runs: 3,
        vote_size: 0,
        ..SearchConfig::default()
    };
    let mut pol = PerRun {
        roots: vec![RIGHT, WRONG, RIGHT2],
    };
    let p = Problem {
        answer: Some("4".into()),
        ..problem()
    };
    let mut stats = SearchStats::default();
    let mut steps = Vec::new();
    let mut models = Models {
        policy: &mut pol,
        value: Some(&mut vm),
        runner: &Runner,
    };
    let r = eval::solve_problems(&[p], &cfg, &mut models, &mut stats, &mut |d, t| {
        steps.push((d, t));
        true
    })
    .unwrap()
    .remove(0);
    // Each run: one answer child at the root (rollout 2 finds the root exhausted).
    assert_eq!(steps, vec![(1, 6), (2, 6), (3, 6), (4, 6), (5, 6), (6, 6)]);
    let got: Vec<(usize, &str, f64)> = r
        .trajectories
        .iter()
        .map(|t| (t.run, t.answer.as_str(), t.value))
        .collect();
    assert_eq!(got, vec![(0, "4", 0.2), (1, "5", 0.9), (2, "4.0", 0.3)]);
    // pass@1: run 0's answer 4. Majority: {4.0, 4} (2 votes; votes go in value order, so the
    // representative is 4.0). Weighted: 0.5 vs 0.9 -> 5. PPM-best: 5 (0.9).
    assert_eq!(r.pass1.as_deref(), Some("4"));
    assert_eq!(r.votes.majority.as_deref(), Some("4.0"));
    assert_eq!(r.votes.weighted.as_deref(), Some("5"));
    assert_eq!(r.votes.ppm_best.as_deref(), Some("5"));
    let g = r.graded.unwrap();
    assert!(g.pass1 && g.majority && !g.weighted && !g.ppm_best && g.any);
    let mut acc = Accuracy::default();
    acc.add(&g);
    assert_eq!((acc.rate(acc.majority), acc.rate(acc.ppm_best)), (1.0, 0.0));
    // vote_size 1 keeps only the top-valued trajectory: every vote is 5.
    let r1 = eval::result(&problem(), r.trajectories.clone(), r.ends, 1);
    assert_eq!(r1.votes.majority.as_deref(), Some("5"));
    assert_eq!(r1.votes.k, 1);
}

#[test]
fn dvts_grows_independent_subtrees_keeping_each_ones_best_child() {
    let mut pol = Script::new(&[
        ("", &[A, B]),
        (A, &[D, BAD]),
        (B, &[E, C]),
        (&format!("{A}{D}"), &[RIGHT]),
        (&format!("{B}{E}"), &[WRONG]),
    ]);
    let mut vm = values(&[
        (A, 0.1),
        (B, 0.2),
        (C, 0.7),
        (D, 0.1),
        (E, 0.8),
        (RIGHT, 0.7),
        (WRONG, 0.9),
    ]);
    // 4 trajectories' worth, 2 samples per node: 2 subtrees.
    let cfg = SearchConfig {
        search: Strategy::Dvts,
        best_of: 4,
        width: 2,
        ..SearchConfig::default()
    };
    let (t, _) = go(&cfg, &mut pol, Some(&mut vm));
    // Both root samples start a subtree (B first: higher value). B's keeps E over C (0.8 >
    // 0.7); A's keeps D (BAD failed), although a beam of 2 would have kept E and C instead;
    // each subtree then ends at its answer.
    assert_eq!(
        pol.log,
        vec![
            String::new(),
            B.into(),
            A.into(),
            format!("{B}{E}"),
            format!("{A}{D}")
        ]
    );
    let answers: Vec<&str> = t
        .answers()
        .map(|(_, n)| n.final_answer.as_deref().unwrap())
        .collect();
    assert_eq!(answers, vec!["5", "4"]);
}

#[test]
fn best_of_n_scores_trajectories_by_the_chosen_aggregate() {
    let script = || Script::new(&[("", &[A, B]), (A, &[RIGHT]), (B, &[WRONG])]);
    // RIGHT's path: A .9, RIGHT .2; WRONG's path: B .1, WRONG .5.
    let vals = [(A, 0.9), (RIGHT, 0.2), (B, 0.1), (WRONG, 0.5)];
    let mut best = Vec::new();
    for agg in [
        Aggregate::Last,
        Aggregate::Min,
        Aggregate::Product,
        Aggregate::Mean,
    ] {
        let cfg = SearchConfig {
            search: Strategy::BestOfN,
            best_of: 2,
            aggregate: agg,
            ..SearchConfig::default()
        };
        let mut pol = script();
        let mut vm = values(&vals);
        let mut models = Models {
            policy: &mut pol,
            value: Some(&mut vm),
            runner: &Runner,
        };
        let r = eval::solve_problems(
            &[problem()],
            &cfg,
            &mut models,
            &mut SearchStats::default(),
            &mut |_, _| true,
        )
        .unwrap();
        let v: Vec<f64> = r[0].trajectories.iter().map(|t| t.value).collect();
        best.push((r[0].votes.ppm_best.clone().unwrap(), v, vm.1));
        assert_eq!(cfg.aggregate, agg);
    }
    // last: .2 vs .5; min: .2 vs .1; product: .95 * .6 vs .55 * .75; mean: .55 vs .3.
    let want = [
        ("5", [0.2, 0.5]),
        ("4", [0.2, 0.1]),
        ("4", [0.57, 0.4125]),
        ("4", [0.55, 0.3]),
    ];
    for ((got, v, _), (ans, wv)) in best.iter().zip(want) {
        assert_eq!(got, ans);
        assert!(
            (v[0] - wv[0]).abs() < 1e-12 && (v[1] - wv[1]).abs() < 1e-12,
            "{v:?}"
        );
    }
    // `last` values only the answers; the others value every step.
    assert_eq!(best[0].2, 2);
    assert_eq!(best[1].2, 4);
}

#[test]
fn maj_votes_over_its_samples() {
    let mut pol = Script::new(&[
        ("", &[A, B, C]),
        (A, &[RIGHT]),
        (B, &[WRONG]),
        (C, &[RIGHT]),
    ]);
    let mut vm = values(&[(WRONG, 0.9)]);
    let cfg = SearchConfig {
        search: Strategy::Majority,
        best_of: 3,
        ..SearchConfig::default()
    };
    assert!(cfg.search.votes());
    let mut models = Models {
        policy: &mut pol,
        value: Some(&mut vm),
        runner: &Runner,
    };
    let r = eval::solve_problems(
        &[problem()],
        &cfg,
        &mut models,
        &mut SearchStats::default(),
        &mut |_, _| true,
    )
    .unwrap();
    assert_eq!(r[0].trajectories.len(), 3);
    assert_eq!(r[0].votes.majority.as_deref(), Some("4"));
    assert_eq!(r[0].votes.ppm_best.as_deref(), Some("5"));
}

/// The script, charging 10 generated tokens per candidate.
struct Counting(Script, u64);

impl Policy for Counting {
    fn propose(&mut self, reqs: &[StepRequest<'_>], n: usize) -> rstar::Result<Vec<Vec<String>>> {
        self.1 += 10 * (reqs.len() * n) as u64;
        self.0.propose(reqs, n)
    }
    fn problem_tokens(&self, _problem: u64) -> rstar::search::TokenCount {
        rstar::search::TokenCount {
            generated: self.1,
            computed: self.1,
        }
    }
}

#[test]
fn a_token_budget_stops_the_search_and_says_so() {
    // The default step `x = 1` forever: only the budget (25 tokens: 3 steps) ends it.
    let cfg = SearchConfig {
        search: Strategy::Greedy,
        budget_tokens: 25,
        ..SearchConfig::default()
    };
    let mut pol = Counting(Script::new(&[]), 0);
    let mut models = Models {
        policy: &mut pol,
        value: None,
        runner: &Runner,
    };
    let r = eval::solve_problems(
        &[problem()],
        &cfg,
        &mut models,
        &mut SearchStats::default(),
        &mut |_, _| true,
    )
    .unwrap();
    assert_eq!(r[0].tokens.generated, 30);
    assert_eq!(r[0].ends.budget, 1);
    assert_eq!(r[0].no_answer, Some(eval::NoAnswer::BudgetExhausted));
    assert_eq!(pol.0.log.len(), 3);
}
