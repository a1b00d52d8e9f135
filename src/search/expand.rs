//! One expansion step, shared by MCTS and the step-level searches (spec 3.3, 3.6): the policy
//! proposes candidates for many leaves at once, the kept ones become children, their code runs in
//! one batch, each child is judged (answer, error threshold, depth), terminals are graded or
//! valued, and values are backed up.

use crate::data::problems::Problem;
use crate::error::{Error, Result};
use crate::exec::ExecResult;
use crate::grade;
use crate::search::api::{
    AnswerChildren, Mode, Models, ScoreRequest, SearchConfig, SearchStats, StepRequest, StepRunner,
};
use crate::search::tree::{
    End, NodeId, Tree, CONTEXT_LIMIT, NO_STEP, TOO_MANY_CODE_ERRORS, TOO_MANY_STEPS,
};
use crate::steps::{StepFormat, StepKind, StepOutcome};

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
/// (first kept), then the answer-child rule; `format` tells answers apart.
pub fn keep_candidates(texts: &[String], rule: AnswerChildren, format: StepFormat) -> Vec<usize> {
    let mut keep: Vec<usize> = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        if !keep.iter().any(|&k| texts[k] == *t) {
            keep.push(i);
        }
    }
    let is_answer = |i: &usize| format.classify(&texts[*i]) == StepKind::Answer;
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

/// Whether `problem` generated `budget` tokens or more since `start` (never with budget 0).
pub(crate) fn over_budget(
    policy: &dyn crate::search::api::Policy,
    problem: u64,
    start: crate::search::api::TokenCount,
    budget: u64,
) -> bool {
    budget > 0 && policy.problem_tokens(problem).since(start).generated >= budget
}

/// One expansion step over many problems: what it reads and the trees it grows.
pub(crate) struct Expansion<'a> {
    pub problems: &'a [Problem],
    /// One tree per problem, in the same order.
    pub trees: &'a mut [Tree],
    pub cfg: &'a SearchConfig,
    /// New non-terminal children get the value model's pseudo-visit.
    pub value_open: bool,
}

/// A child created by an expansion.
struct New {
    tree: usize,
    node: NodeId,
    /// Its request and candidate index in the policy's answer.
    req: usize,
    cand: usize,
    /// Its program's index in the executed batch (code steps).
    program: Option<usize>,
}

/// Expands `leaves` (tree index, node) with `cfg.width` candidates each: children created, run,
/// judged, graded (annotation modes) or valued (inference), and backed up.
pub(crate) fn expand(
    x: &mut Expansion<'_>,
    leaves: &[(usize, NodeId)],
    models: &mut Models<'_, '_>,
    stats: &mut SearchStats,
) -> Result<()> {
    let texts = x.propose(leaves, models, stats)?;
    let (created, programs) = x.create_children(leaves, &texts, stats);
    let results = run_programs(&programs, models.runner, stats)?;
    let mut to_value: Vec<usize> = Vec::new(); // indices into `created`
    for (c, new) in created.iter().enumerate() {
        let full = models.policy.context_full(new.req, new.cand);
        let appended = x.judge(new, &results, full);
        models
            .policy
            .adopt(new.req, new.cand, new.node, &appended)?;
        if x.score_terminal(new) {
            to_value.push(c);
        }
    }
    models.policy.end_expansion()?;
    let values = x.value(&created, &to_value, models, stats)?;
    x.back_up(&created, &to_value, values);
    Ok(())
}

/// Runs the new code steps in one batch; results in program order.
fn run_programs(
    programs: &[String],
    runner: &dyn StepRunner,
    stats: &mut SearchStats,
) -> Result<Vec<ExecResult>> {
    let t1 = std::time::Instant::now();
    let results = if programs.is_empty() {
        Vec::new()
    } else {
        runner.run_many(programs)
    };
    stats.exec_seconds += t1.elapsed().as_secs_f64();
    stats.executions += programs.len() as u64;
    if results.len() != programs.len() {
        return Err(Error::Internal(
            "executor answered a different number of programs".into(),
        ));
    }
    Ok(results)
}

impl Expansion<'_> {
    /// Phase 1: the policy's candidate texts for every leaf (one call for all problems).
    fn propose(
        &self,
        leaves: &[(usize, NodeId)],
        models: &mut Models<'_, '_>,
        stats: &mut SearchStats,
    ) -> Result<Vec<Vec<String>>> {
        let t0 = std::time::Instant::now();
        let reqs: Vec<StepRequest> = leaves
            .iter()
            .map(|&(i, n)| StepRequest {
                problem: self.problems[i].id,
                node: n,
                question: &self.problems[i].question,
                path: self.trees[i].path_texts(n),
                seed: mix(self.cfg.seed, self.problems[i].id, n as u64),
            })
            .collect();
        let texts = models.policy.propose(&reqs, self.cfg.width)?;
        stats.policy_seconds += t0.elapsed().as_secs_f64();
        if texts.len() != leaves.len() {
            return Err(Error::Internal(
                "policy answered a different number of requests".into(),
            ));
        }
        stats.expansions += leaves.len() as u64;
        Ok(texts)
    }

    /// Phase 2: the kept candidates become children; their programs are collected.
    fn create_children(
        &mut self,
        leaves: &[(usize, NodeId)],
        texts: &[Vec<String>],
        stats: &mut SearchStats,
    ) -> (Vec<New>, Vec<String>) {
        let mut created: Vec<New> = Vec::new();
        let mut programs: Vec<String> = Vec::new();
        for (r, (&(i, leaf), outs)) in leaves.iter().zip(texts).enumerate() {
            stats.candidates += outs.len() as u64;
            let format = self.cfg.step_format;
            for k in keep_candidates(outs, self.cfg.answer_children, format) {
                let text = &outs[k];
                let kind = format.classify(text);
                let tree = &mut self.trees[i];
                // Native runs an unterminated step as code (the reference); tool does not.
                let runs = kind.is_code()
                    && !text.is_empty()
                    && (format == StepFormat::Native || kind != StepKind::Unterminated);
                let program = runs.then(|| {
                    let ancestors: Vec<(&str, bool)> = tree
                        .path(leaf)
                        .into_iter()
                        .map(|a| (tree.nodes[a].text.as_str(), tree.nodes[a].failure.is_some()))
                        .collect();
                    format.program(&ancestors, text)
                });
                let id = tree.add_child(leaf, text.clone());
                tree.nodes[id].kind = Some(kind);
                let program = if let Some(p) = program {
                    programs.push(p);
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
        (created, programs)
    }

    /// Phase 3: whether the child ends (answer, context limit, no step, error threshold, depth)
    /// and what its code printed; returns the text appended to the candidate (output block).
    /// `context_full`: the candidate ran into the policy's context limit.
    fn judge(&mut self, new: &New, results: &[ExecResult], context_full: bool) -> String {
        let cfg = self.cfg;
        let format = cfg.step_format;
        let tree = &mut self.trees[new.tree];
        let parent_errors = tree.nodes[tree.nodes[new.node].parent.unwrap_or(0)].consecutive_errors;
        let node = &mut tree.nodes[new.node];
        let mut appended = String::new();
        let program = new.program.map(|p| &results[p]);
        match (node.kind, program) {
            _ if context_full => node.finish(End::Length, CONTEXT_LIMIT),
            // The first token was EOS, or (tool format) neither a block nor an answer came.
            _ if node.text.is_empty() => node.finish(End::Unparsed, NO_STEP),
            (Some(StepKind::Answer), _) => {
                node.end = Some(End::Answer);
                node.final_answer = Some(grade::extract_answer(&node.text).unwrap_or_default());
            }
            (_, None) => node.finish(End::Unparsed, NO_STEP),
            (kind, Some(res)) => {
                let mut res = res.clone();
                res.stdout = format.own_output(&res.stdout).to_string();
                let out = StepOutcome::from_exec(&res, cfg.failure_rule.into());
                if out.failed {
                    node.consecutive_errors = parent_errors + 1;
                    node.failure = out.reason.clone();
                }
                let ends = node.consecutive_errors >= cfg.errors_threshold;
                let kind = kind.unwrap_or(StepKind::Unterminated);
                appended = format.appended(&node.text, kind, &out.observation, ends);
                if ends {
                    node.finish(End::Errors, TOO_MANY_CODE_ERRORS);
                }
                node.text.push_str(&appended);
                node.observation = Some(out.observation);
            }
        }
        if node.end.is_none() && node.depth > cfg.max_depth {
            node.finish(End::Depth, TOO_MANY_STEPS);
        }
        appended
    }

    /// Phase 4: an invalid terminal gets the negative reward; a valid one is graded and backed
    /// up (annotation modes). Returns whether the child waits for the value model (inference
    /// terminals; open children when `value_open`).
    fn score_terminal(&mut self, new: &New) -> bool {
        let cfg = self.cfg;
        let tree = &mut self.trees[new.tree];
        match tree.nodes[new.node].end {
            Some(e) if e.is_invalid() => {
                tree.update(new.node, cfg.negative_reward);
                false
            }
            Some(_) if cfg.mode == Mode::Inference => true,
            Some(_) => {
                let p = &self.problems[new.tree];
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
                false
            }
            None => self.value_open,
        }
    }

    /// Phase 5: the value model's values of `to_value` (0 without a value model).
    fn value(
        &self,
        created: &[New],
        to_value: &[usize],
        models: &mut Models<'_, '_>,
        stats: &mut SearchStats,
    ) -> Result<Vec<f64>> {
        let Some(vm) = models.value.as_mut().filter(|_| !to_value.is_empty()) else {
            return Ok(vec![0.0; to_value.len()]);
        };
        let t2 = std::time::Instant::now();
        let reqs: Vec<ScoreRequest> = to_value
            .iter()
            .map(|&c| {
                let n = &created[c];
                ScoreRequest {
                    problem: self.problems[n.tree].id,
                    node: n.node,
                    question: &self.problems[n.tree].question,
                    path: self.trees[n.tree].path_texts(n.node),
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
        Ok(v)
    }

    /// Phase 6: a terminal's value goes up to the root (inference); an open child's is the PPM's
    /// pseudo-visit on the node only.
    fn back_up(&mut self, created: &[New], to_value: &[usize], values: Vec<f64>) {
        for (&c, v) in to_value.iter().zip(values) {
            let n = &created[c];
            let tree = &mut self.trees[n.tree];
            let v = if v.is_finite() {
                v.clamp(-1.0, 1.0)
            } else {
                0.0
            };
            if tree.nodes[n.node].is_terminal() {
                tree.update_recursive(n.node, v);
            } else {
                tree.update(n.node, v);
            }
        }
    }
}
