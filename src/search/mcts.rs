//! MCTS over many problems in lock-step (spec 3.3-3.6, 4), independent of the LLM: a [`Policy`]
//! proposes step texts, a [`ValueModel`] scores partial solutions, a [`StepRunner`] runs programs.
//!
//! One rollout per problem: descend from the root by UCT, one level per loop iteration; a problem
//! whose current node is a leaf joins the batch of expansions (one [`Policy::propose`] call for all
//! problems), its children are created (duplicates merged, answer-child rule, code executed in one
//! batch, error and depth limits), valued and backed up, and the problem continues from its best
//! new child, for at most `max_depth` iterations.

use serde::{Deserialize, Serialize};

pub use crate::data::problems::Problem;
use crate::data::prompts::{self, POLICY_PROMPT};
use crate::error::{Error, Result};
use crate::exec::{ExecResult, Executor};
use crate::grade;
use crate::search::tree::{End, NodeId, Tree, TOO_MANY_CODE_ERRORS, TOO_MANY_STEPS};
use crate::steps::{self, tags, FailureRule, StepKind, StepOutcome};

/// How values are assigned (spec 3.5, 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Rounds 1-2: terminal answers get ±1 from the grader, backed up to the root; no PPM.
    TerminalGuided,
    /// Rounds 3-4: as terminal-guided, plus each new non-terminal node gets the PPM value as one
    /// pseudo-visit that is not propagated.
    PpmAugmented,
    /// Test time: no ground truth; terminal answers are valued by the PPM (0 without one) and
    /// that value is backed up; non-terminal nodes get the PPM pseudo-visit when a PPM is given.
    Inference,
}

/// What happens to the other candidates when an expansion produced an answer step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnswerChildren {
    /// Spec 3.3c: keep only the first answer output and drop all other outputs.
    OnlyFirstAnswer,
    /// Keep the first answer output and every non-answer output (spec 3.6's wording).
    OneAnswerPlusCode,
}

/// Every knob of the search. Defaults follow the paper where paper and code differ (spec 7.5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MctsConfig {
    pub mode: Mode,
    /// Rollouts per problem: 16 (paper, rounds 2-4; 8 in round 1); the code ships 48.
    pub rollouts: usize,
    /// Candidates per expansion: 8 (paper); the code uses 12 for data, 32 at test time.
    pub width: usize,
    /// Loop iterations per rollout and deepest non-terminal node.
    pub max_depth: usize,
    pub c_puct: f64,
    /// A node is terminal when this many consecutive steps failed (1: any error kills).
    pub errors_threshold: u32,
    /// How a failing step is recognised: the paper's "the code runs" (execution) by default,
    /// the reference's "error" substring as an option.
    pub failure_rule: FailureRuleCfg,
    pub answer_children: AnswerChildren,
    pub positive_reward: f64,
    pub negative_reward: f64,
    /// PPM value = tanh(raw / value_scale) (code); the paper's tanh head is scale 1.
    pub value_scale: f64,
    pub max_step_tokens: usize,
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: usize,
    pub seed: u64,
    pub stop: Vec<String>,
    /// Prompt before the partial solution; `{question}` is replaced (policy-SLM format, with
    /// the two newlines of inference).
    pub prompt_template: String,
    /// Seconds per executed program.
    pub exec_timeout_s: f64,
    /// Which search runs at test time (`rstar eval`, `rstar solve`, the C solver); `rstar mcts`
    /// always runs MCTS.
    pub search: Strategy,
    /// Step beam search: nodes kept per step (B1, 8 in `sft_eval_bs`); `width` is the samples
    /// per beam node (B2).
    pub beam_width: usize,
    /// Best-of-N: complete trajectories sampled per run (N).
    pub best_of: usize,
    /// Where the policy and the PPM run: `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Independent runs per problem at test time (seed varied per run); each MCTS run contributes
    /// its highest-value answer, beam / best-of-N runs every answer they reach.
    pub runs: usize,
    /// Votes use the `vote_size` highest-valued trajectories (spec 7.4 `eval_maj.py --top_n`);
    /// 0 = all.
    pub vote_size: usize,
}

/// The test-time search (spec 3.4, 3.7, 1.4 greedy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// MCTS, `rollouts` per run.
    Mcts,
    /// Step-level beam search: `beam_width` nodes, `width` samples each, ranked by PPM value.
    Beam,
    /// `best_of` trajectories, one sample per step, the answer with the highest value wins.
    BestOfN,
    /// One trajectory at temperature 0, stopping only at `<end_of_code>` / `<end_of_answer>`
    /// (`sft_eval_greedy.yaml`).
    Greedy,
}

/// Serde-friendly mirror of [`FailureRule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureRuleCfg {
    Execution,
    ErrorSubstring,
    Either,
}

impl From<FailureRuleCfg> for FailureRule {
    fn from(f: FailureRuleCfg) -> FailureRule {
        match f {
            FailureRuleCfg::Execution => FailureRule::Execution,
            FailureRuleCfg::ErrorSubstring => FailureRule::ErrorSubstring,
            FailureRuleCfg::Either => FailureRule::Either,
        }
    }
}

impl Default for MctsConfig {
    fn default() -> Self {
        MctsConfig {
            mode: Mode::TerminalGuided,
            rollouts: 16,
            width: 8,
            max_depth: 16,
            c_puct: 2.0,
            errors_threshold: 1,
            failure_rule: FailureRuleCfg::Execution,
            answer_children: AnswerChildren::OnlyFirstAnswer,
            positive_reward: 1.0,
            negative_reward: -1.0,
            value_scale: 5.0,
            max_step_tokens: 2048,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
            stop: tags::STOP.iter().map(|s| s.to_string()).collect(),
            prompt_template: POLICY_PROMPT.into(),
            exec_timeout_s: 10.0,
            search: Strategy::Mcts,
            beam_width: 8,
            best_of: 8,
            runs: 1,
            vote_size: 8,
            device: "cpu".into(),
        }
    }
}

impl MctsConfig {
    /// Rejects values the search cannot run with.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::InvalidArgument(m.into()));
        if self.width == 0 {
            return bad("width must be at least 1");
        }
        if self.max_depth == 0 {
            return bad("max_depth must be at least 1");
        }
        if self.errors_threshold == 0 {
            return bad("errors_threshold must be at least 1");
        }
        if !(self.c_puct.is_finite() && self.c_puct >= 0.0) {
            return bad("c_puct must be a finite number >= 0");
        }
        if !(self.value_scale.is_finite() && self.value_scale > 0.0) {
            return bad("value_scale must be > 0");
        }
        if self.max_step_tokens == 0 {
            return bad("max_step_tokens must be at least 1");
        }
        if self.beam_width == 0 || self.best_of == 0 || self.runs == 0 {
            return bad("beam_width, best_of and runs must be at least 1");
        }
        if !(self.exec_timeout_s.is_finite() && self.exec_timeout_s > 0.0) {
            return bad("exec_timeout_s must be > 0");
        }
        self.device()?;
        Ok(())
    }

    /// The parsed `device`.
    pub fn device(&self) -> Result<crate::backend::Device> {
        self.device
            .parse()
            .map_err(|e| Error::InvalidArgument(format!("device: {e}")))
    }

    /// The configuration the search actually runs with: greedy forces temperature 0 and the
    /// greedy stop strings (spec 1.2, 1.4).
    pub fn resolved(&self) -> MctsConfig {
        let mut c = self.clone();
        if c.search == Strategy::Greedy {
            c.temperature = 0.0;
            c.stop = vec![tags::END_OF_CODE.into(), tags::END_OF_ANSWER.into()];
        }
        c
    }

    /// The configuration of test-time run `run`: the seed moves per run.
    pub fn for_run(&self, run: usize) -> MctsConfig {
        MctsConfig {
            seed: self
                .seed
                .wrapping_add((run as u64).wrapping_mul(0x1_0000_0001)),
            ..self.clone()
        }
    }

    /// The prompt for a question.
    pub fn prompt(&self, question: &str) -> String {
        prompts::fill(&self.prompt_template, question)
    }
}

/// A node to expand.
#[derive(Debug, Clone)]
pub struct StepRequest<'a> {
    pub problem: u64,
    pub node: NodeId,
    pub question: &'a str,
    /// Texts from the root's child to the node.
    pub path: Vec<&'a str>,
    /// Candidate i samples with `seed + i`.
    pub seed: u64,
}

/// A node to value: the partial solution up to and including it.
#[derive(Debug, Clone)]
pub struct ScoreRequest<'a> {
    pub problem: u64,
    pub node: NodeId,
    pub question: &'a str,
    pub path: Vec<&'a str>,
}

/// Proposes step texts (the policy model).
pub trait Policy {
    /// `n` candidate step texts for each request (stop tag re-appended), in request order.
    fn propose(&mut self, reqs: &[StepRequest<'_>], n: usize) -> Result<Vec<Vec<String>>>;
    /// Candidate `cand` of request `req` of the last [`Policy::propose`] became node `node`, whose
    /// final text is the candidate's text + `appended`.
    fn adopt(&mut self, _req: usize, _cand: usize, _node: NodeId, _appended: &str) -> Result<()> {
        Ok(())
    }
    /// The candidates of the last propose call that were not adopted can be released.
    fn end_expansion(&mut self) -> Result<()> {
        Ok(())
    }
    /// A problem's search is over.
    fn release(&mut self, _problem: u64) {}
    /// Tokens generated so far (for throughput reports; 0 when unknown).
    fn tokens_generated(&self) -> u64 {
        0
    }
}

/// Values partial solutions (the PPM): results in [-1, 1].
pub trait ValueModel {
    fn value(&mut self, reqs: &[ScoreRequest<'_>]) -> Result<Vec<f64>>;
}

/// Runs programs (the executor); results in input order.
pub trait StepRunner {
    fn run_many(&self, programs: &[String]) -> Vec<ExecResult>;
}

impl StepRunner for Executor {
    fn run_many(&self, programs: &[String]) -> Vec<ExecResult> {
        Executor::run_many(self, programs)
    }
}

/// Counters of one search.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct SearchStats {
    pub rollouts: u64,
    pub expansions: u64,
    pub candidates: u64,
    pub nodes: u64,
    pub executions: u64,
    pub valued: u64,
    pub policy_seconds: f64,
    pub exec_seconds: f64,
    pub value_seconds: f64,
    pub total_seconds: f64,
    /// `total - policy - exec - value`: tree walks, dedupe, grading, assembling programs.
    pub bookkeeping_seconds: f64,
}

impl SearchStats {
    /// Adds the wall time since `t0` to `total_seconds` and recomputes the bookkeeping share.
    pub(crate) fn finish(&mut self, t0: std::time::Instant) {
        self.total_seconds += t0.elapsed().as_secs_f64();
        self.bookkeeping_seconds =
            (self.total_seconds - self.policy_seconds - self.exec_seconds - self.value_seconds)
                .max(0.0);
    }
}

/// What a search runs on: the policy proposing steps, the value model (PPM) scoring them when
/// there is one, and the runner executing their code.
pub struct Models<'a, 'v> {
    pub policy: &'a mut dyn Policy,
    pub value: Option<&'a mut (dyn ValueModel + 'v)>,
    pub runner: &'a dyn StepRunner,
}

/// Searches all problems together; returns their trees in input order. `on_rollout(done, total)`
/// is called after each rollout; returning false cancels with [`Error::Cancelled`].
pub fn search(
    problems: &[Problem],
    cfg: &MctsConfig,
    models: &mut Models<'_, '_>,
    stats: &mut SearchStats,
    on_rollout: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Vec<Tree>> {
    cfg.validate()?;
    if cfg.mode != Mode::Inference {
        if let Some(p) = problems.iter().find(|p| p.answer.is_none()) {
            return Err(Error::InvalidArgument(format!(
                "problem {}: annotation modes need a ground-truth answer",
                p.id
            )));
        }
    }
    if cfg.mode == Mode::PpmAugmented && models.value.is_none() {
        return Err(Error::InvalidArgument(
            "ppm-augmented mode needs a value model (PPM)".into(),
        ));
    }
    let t_start = std::time::Instant::now();
    let mut trees: Vec<Tree> = problems.iter().map(|p| Tree::new(&p.question)).collect();
    for rollout in 0..cfg.rollouts {
        // Start at the root: its best child, or the root itself while it has none.
        let mut cur: Vec<Option<NodeId>> = trees
            .iter_mut()
            .map(|t| {
                if t.root().is_terminal() {
                    None
                } else if t.root().children.is_empty() {
                    Some(0)
                } else {
                    t.select_child(0, cfg.c_puct)
                }
            })
            .collect();
        for _ in 0..cfg.max_depth {
            let mut leaves = Vec::new();
            for (i, c) in cur.iter_mut().enumerate() {
                let Some(n) = *c else { continue };
                if trees[i].nodes[n].children.is_empty() {
                    leaves.push((i, n));
                } else {
                    *c = trees[i].select_child(n, cfg.c_puct);
                }
            }
            if leaves.is_empty() {
                if cur.iter().all(Option::is_none) {
                    break;
                }
                continue;
            }
            expand(
                problems,
                &mut trees,
                &leaves,
                cfg,
                cfg.mode != Mode::TerminalGuided,
                models,
                stats,
            )?;
            for &(i, n) in &leaves {
                cur[i] = trees[i].select_child(n, cfg.c_puct);
            }
        }
        stats.rollouts += problems.len() as u64;
        if !on_rollout(rollout + 1, cfg.rollouts) {
            return Err(Error::Cancelled);
        }
    }
    for p in problems {
        models.policy.release(p.id);
    }
    stats.finish(t_start);
    Ok(trees)
}

fn mix(seed: u64, a: u64, b: u64) -> u64 {
    // splitmix64 of the combined key: distinct per (seed, problem, node), stable across runs.
    let mut z = seed
        .wrapping_add(a.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(b.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    // Leave room for `seed + i` of the candidates.
    (z ^ (z >> 31)) & !0xFFFF
}

/// Which outputs of one expansion become children (indices into `texts`): identical texts merged
/// (first kept), then the answer-child rule.
pub fn keep_candidates(texts: &[String], rule: AnswerChildren) -> Vec<usize> {
    let mut keep: Vec<usize> = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        if !keep.iter().any(|&k| texts[k] == *t) {
            keep.push(i);
        }
    }
    let is_answer = |i: &usize| steps::classify(&texts[*i]) == StepKind::Answer;
    match keep.iter().copied().find(is_answer) {
        None => keep,
        Some(first) => match rule {
            AnswerChildren::OnlyFirstAnswer => vec![first],
            AnswerChildren::OneAnswerPlusCode => keep
                .into_iter()
                .filter(|i| *i == first || !is_answer(i))
                .collect(),
        },
    }
}

/// Expands `leaves` (tree index, node) with `cfg.width` candidates each: children created, run,
/// judged, graded (annotation modes) or valued (inference), and backed up. `value_open`: new
/// non-terminal children get the value model's pseudo-visit.
#[allow(clippy::too_many_arguments)]
pub(crate) fn expand(
    problems: &[Problem],
    trees: &mut [Tree],
    leaves: &[(usize, NodeId)],
    cfg: &MctsConfig,
    value_open: bool,
    models: &mut Models<'_, '_>,
    stats: &mut SearchStats,
) -> Result<()> {
    let t0 = std::time::Instant::now();
    let texts = {
        let reqs: Vec<StepRequest> = leaves
            .iter()
            .map(|&(i, n)| StepRequest {
                problem: problems[i].id,
                node: n,
                question: &problems[i].question,
                path: trees[i].path_texts(n),
                seed: mix(cfg.seed, problems[i].id, n as u64),
            })
            .collect();
        models.policy.propose(&reqs, cfg.width)?
    };
    stats.policy_seconds += t0.elapsed().as_secs_f64();
    if texts.len() != leaves.len() {
        return Err(Error::Internal(
            "policy answered a different number of requests".into(),
        ));
    }
    stats.expansions += leaves.len() as u64;
    // Create the children; collect the programs to run.
    struct New {
        tree: usize,
        node: NodeId,
        req: usize,
        cand: usize,
        program: Option<usize>,
    }
    let mut created: Vec<New> = Vec::new();
    let mut programs: Vec<String> = Vec::new();
    for (r, (&(i, leaf), outs)) in leaves.iter().zip(&texts).enumerate() {
        stats.candidates += outs.len() as u64;
        for k in keep_candidates(outs, cfg.answer_children) {
            let text = &outs[k];
            let kind = steps::classify(text);
            let tree = &mut trees[i];
            let ancestors = tree
                .path_texts(leaf)
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>();
            let id = tree.add_child(leaf, text.clone());
            tree.nodes[id].kind = Some(kind);
            let program = if kind.is_code() && !text.is_empty() {
                programs.push(steps::assemble_program(&ancestors, text));
                Some(programs.len() - 1)
            } else {
                None
            };
            created.push(New {
                tree: i,
                node: id,
                req: r,
                cand: k,
                program,
            });
        }
    }
    stats.nodes += created.len() as u64;
    let t1 = std::time::Instant::now();
    let results = if programs.is_empty() {
        Vec::new()
    } else {
        models.runner.run_many(&programs)
    };
    stats.exec_seconds += t1.elapsed().as_secs_f64();
    stats.executions += programs.len() as u64;
    if results.len() != programs.len() {
        return Err(Error::Internal(
            "executor answered a different number of programs".into(),
        ));
    }
    // Judge each child; note which need a value.
    let mut to_value: Vec<usize> = Vec::new(); // indices into `created`
    for (c, new) in created.iter().enumerate() {
        let tree = &mut trees[new.tree];
        let parent_errors = tree.nodes[tree.nodes[new.node].parent.unwrap_or(0)].consecutive_errors;
        let node = &mut tree.nodes[new.node];
        let mut appended = String::new();
        match node.kind {
            // No token could be generated (the path fills the policy's context, or the first
            // token was EOS): the path cannot go on.
            _ if node.text.is_empty() => {
                node.end = Some(End::Depth);
                node.final_answer = Some(TOO_MANY_STEPS.into());
            }
            Some(StepKind::Answer) => {
                node.end = Some(End::Answer);
                node.final_answer = Some(grade::extract_answer(&node.text).unwrap_or_default());
            }
            _ => {
                let res = &results[new.program.unwrap_or(0)];
                let out = StepOutcome::from_exec(res, cfg.failure_rule.into());
                if out.failed {
                    node.consecutive_errors = parent_errors + 1;
                    node.failure = out.reason.clone();
                }
                let last = node.kind == Some(StepKind::LastCode);
                if node.consecutive_errors >= cfg.errors_threshold {
                    // The reference closes the code block and shows the error.
                    if !node.text.contains(tags::END_OF_CODE) {
                        appended.push_str(tags::END_OF_CODE);
                    }
                    appended.push_str(&steps::output_block(&out.observation));
                    node.end = Some(End::Errors);
                    node.final_answer = Some(TOO_MANY_CODE_ERRORS.into());
                } else if last {
                    appended.push_str(&steps::output_block(&out.observation));
                }
                node.text.push_str(&appended);
                node.observation = Some(out.observation);
            }
        }
        if node.end.is_none() && node.depth > cfg.max_depth {
            node.end = Some(End::Depth);
            node.final_answer = Some(TOO_MANY_STEPS.into());
        }
        models
            .policy
            .adopt(new.req, new.cand, new.node, &appended)?;
        match node.end {
            Some(e) if e.is_invalid() => tree.update(new.node, cfg.negative_reward),
            Some(_) => {
                if cfg.mode == Mode::Inference {
                    to_value.push(c);
                } else {
                    let p = &problems[new.tree];
                    let pred = tree.nodes[new.node]
                        .final_answer
                        .clone()
                        .unwrap_or_default();
                    let ok = grade::equal(&pred, p.answer.as_deref().unwrap_or_default());
                    tree.nodes[new.node].correct = Some(ok);
                    let r = if ok {
                        cfg.positive_reward
                    } else {
                        cfg.negative_reward
                    };
                    tree.update_recursive(new.node, r);
                }
            }
            None => {
                if value_open {
                    to_value.push(c);
                }
            }
        }
    }
    models.policy.end_expansion()?;
    let values: Vec<f64> = match models.value.as_mut() {
        Some(vm) if !to_value.is_empty() => {
            let t2 = std::time::Instant::now();
            let reqs: Vec<ScoreRequest> = to_value
                .iter()
                .map(|&c| {
                    let n = &created[c];
                    ScoreRequest {
                        problem: problems[n.tree].id,
                        node: n.node,
                        question: &problems[n.tree].question,
                        path: trees[n.tree].path_texts(n.node),
                    }
                })
                .collect();
            let v = vm.value(&reqs)?;
            stats.value_seconds += t2.elapsed().as_secs_f64();
            stats.valued += reqs.len() as u64;
            if v.len() != reqs.len() {
                return Err(Error::Internal(
                    "value model answered a different count".into(),
                ));
            }
            v
        }
        _ => vec![0.0; to_value.len()],
    };
    for (&c, v) in to_value.iter().zip(values) {
        let n = &created[c];
        let tree = &mut trees[n.tree];
        let v = if v.is_finite() {
            v.clamp(-1.0, 1.0)
        } else {
            0.0
        };
        if tree.nodes[n.node].is_terminal() {
            // Inference: the terminal's value goes up to the root.
            tree.update_recursive(n.node, v);
        } else {
            // The PPM's pseudo-visit, on the node only.
            tree.update(n.node, v);
        }
    }
    Ok(())
}
