//! The engine-backed [`Policy`] and [`ValueModel`]: every node keeps its own engine sequence,
//! forked from its parent's (no prefix is recomputed), and all expansions of one search step, across
//! every problem, are decoded together in one [`Engine::run`].
//!
//! Node sequences hold the generated ids themselves (plus the encoded output block of a last code
//! step), not a re-tokenisation of the node texts as the reference does.

use std::collections::HashMap;
use std::sync::Arc;

use crate::data::prompts;
use crate::engine::ppm::{Ppm, Scorer};
use crate::engine::{
    Engine, EngineConfig, EngineStats, FinishReason, GenerateParams, LoadedModel, Request,
    SamplingParams, SeqId,
};
use crate::error::{Error, Result};
use crate::search::api::{Policy, ScoreRequest, SearchConfig, StepRequest, TokenCount, ValueModel};
use crate::search::tree::NodeId;
use crate::steps::{tool, StepFormat};
use crate::tokenizer::{ChatMessage, Tokenizer};

/// A proposed candidate's sequence, its generated token count and whether it ended at the
/// model's context limit.
type Candidate = (SeqId, usize, bool);

/// How a question becomes the policy's (and the PPM's) prompt.
#[derive(Debug, Clone)]
struct Prompt {
    template: String,
    format: StepFormat,
    few_shot: bool,
}

impl Prompt {
    fn of(cfg: &SearchConfig) -> Prompt {
        Prompt {
            template: cfg.prompt_template.clone(),
            format: cfg.step_format,
            few_shot: cfg.few_shot,
        }
    }

    /// The prompt text of a question and whether the tokenizer adds its special tokens to it:
    /// native, the filled template (special tokens added); tool, the chat of the optional
    /// few-shot exchange and the filled template as the user message, rendered by the model's
    /// chat template with the generation prompt (which holds its own special tokens).
    fn text(&self, tok: &Tokenizer, question: &str) -> Result<(String, bool)> {
        let user = prompts::fill(&self.template, question);
        if self.format == StepFormat::Native {
            return Ok((user, true));
        }
        let mut msgs: Vec<ChatMessage> = Vec::new();
        if self.few_shot {
            for (role, text) in tool::few_shot() {
                msgs.push(ChatMessage::new(role, &text));
            }
        }
        msgs.push(ChatMessage::new("user", &user));
        let text = tok.apply_chat_template(&msgs, true).map_err(|e| {
            Error::InvalidArgument(format!("step_format = \"tool\" needs a chat model: {e}"))
        })?;
        Ok((text, false))
    }

    /// The prompt's ids.
    fn ids(&self, tok: &Tokenizer, question: &str) -> Result<Vec<u32>> {
        let (text, special) = self.text(tok, question)?;
        tok.encode(&text, special)
    }
}

/// The policy model on an [`Engine`].
pub struct EnginePolicy {
    engine: Engine,
    params: GenerateParams,
    prompt: Prompt,
    nodes: HashMap<(u64, NodeId), SeqId>,
    /// Per request of the last propose call: its problem and its candidates' sequences with
    /// their generated token counts.
    pending: Vec<(u64, Vec<Option<Candidate>>)>,
    /// Generated tokens so far.
    pub generated_tokens: u64,
    /// Tokens of the trees' unique content: each root prompt once, plus every adopted node's
    /// generated and appended tokens (engine `tokens_computed / tree_tokens` measures recompute
    /// and discarded candidates).
    pub tree_tokens: u64,
    /// Tokens per problem.
    per_problem: HashMap<u64, TokenCount>,
}

impl EnginePolicy {
    pub fn new(lm: Arc<LoadedModel>, engine_cfg: EngineConfig, cfg: &SearchConfig) -> Result<Self> {
        let prompt = Prompt::of(cfg);
        // The prompt renders (a tool-format policy has a chat template) before any search.
        prompt.ids(lm.tokenizer()?, "")?;
        Ok(EnginePolicy {
            engine: Engine::new(lm, engine_cfg)?,
            params: GenerateParams {
                max_new_tokens: cfg.max_step_tokens,
                sampling: SamplingParams {
                    temperature: cfg.temperature,
                    top_k: cfg.top_k,
                    top_p: cfg.top_p,
                    seed: 0,
                },
                stop: cfg.stop.clone(),
                stop_token_ids: Vec::new(),
                ignore_eos: false,
            },
            prompt,
            nodes: HashMap::new(),
            pending: Vec::new(),
            generated_tokens: 0,
            tree_tokens: 0,
            per_problem: HashMap::new(),
        })
    }

    pub fn stats(&self) -> EngineStats {
        self.engine.stats()
    }

    /// Samples by `cfg` from now on (step tokens, temperature, top-k/p, stop strings): a sweep
    /// runs several strategies on one loaded policy.
    pub fn configure(&mut self, cfg: &SearchConfig) {
        self.params.max_new_tokens = cfg.max_step_tokens;
        self.params.sampling.temperature = cfg.temperature;
        self.params.sampling.top_k = cfg.top_k;
        self.params.sampling.top_p = cfg.top_p;
        self.params.stop = cfg.stop.clone();
    }

    fn encode(&self, text: &str, special: bool) -> Result<Vec<u32>> {
        self.engine.model().tokenizer()?.encode(text, special)
    }

    /// The node's sequence; the root's (or an unknown node's) is built from its text.
    fn node_seq(&mut self, r: &StepRequest<'_>) -> Result<SeqId> {
        if let Some(&s) = self.nodes.get(&(r.problem, r.node)) {
            return Ok(s);
        }
        let mut ids = self
            .prompt
            .ids(self.engine.model().tokenizer()?, r.question)?;
        let path = r.path.concat();
        if !path.is_empty() {
            ids.extend(self.encode(&path, false)?);
        }
        let s = self.engine.add(&ids)?;
        self.tree_tokens += ids.len() as u64;
        self.per_problem.entry(r.problem).or_default().computed += ids.len() as u64;
        self.nodes.insert((r.problem, r.node), s);
        Ok(s)
    }
}

impl Policy for EnginePolicy {
    fn propose(&mut self, reqs: &[StepRequest<'_>], n: usize) -> Result<Vec<Vec<String>>> {
        self.end_expansion()?;
        let max_ctx = self.engine.model().model.config.max_position_embeddings;
        let mut requests = Vec::with_capacity(reqs.len() * n);
        // Parents that fill the context get `n` empty steps (which the search ends as too deep);
        // their candidates are still forks, so adoption is the same for every candidate.
        let mut full = vec![false; reqs.len()];
        let mut parent_len = vec![0; reqs.len()];
        for (j, r) in reqs.iter().enumerate() {
            let parent = self.node_seq(r)?;
            parent_len[j] = self.engine.tokens(parent)?.len();
            full[j] = parent_len[j] >= max_ctx;
            let mut seqs = Vec::with_capacity(n);
            for i in 0..n {
                let seq = self.engine.fork(parent)?;
                let mut params = self.params.clone();
                params.sampling.seed = r.seed.wrapping_add(i as u64);
                if !full[j] {
                    requests.push(Request { seq, params });
                }
                seqs.push(Some((seq, 0, full[j])));
            }
            self.pending.push((r.problem, seqs));
        }
        let outs = self.engine.run(&requests, &mut |_, _| true)?;
        let mut texts: Vec<Vec<String>> = Vec::with_capacity(reqs.len());
        let mut it = outs.into_iter();
        for (r, _) in reqs.iter().enumerate() {
            let mut v = Vec::with_capacity(n);
            if full[r] {
                v.resize(n, String::new());
                texts.push(v);
                continue;
            }
            for (k, o) in it.by_ref().take(n).enumerate() {
                self.generated_tokens += o.ids.len() as u64;
                let t = self.per_problem.entry(reqs[r].problem).or_default();
                t.generated += o.ids.len() as u64;
                t.computed += o.ids.len() as u64;
                if let Some(Some(c)) = self.pending[r].1.get_mut(k) {
                    c.1 = o.ids.len();
                    c.2 = o.finish_reason == FinishReason::Length
                        && parent_len[r] + o.ids.len() >= max_ctx;
                }
                // The reference re-appends the stop string that ended the step.
                v.push(o.text + o.stop_string.as_deref().unwrap_or(""));
            }
            texts.push(v);
        }
        Ok(texts)
    }

    fn adopt(&mut self, req: usize, cand: usize, node: NodeId, appended: &str) -> Result<()> {
        let (problem, (seq, generated, _)) = self
            .pending
            .get_mut(req)
            .and_then(|(p, v)| Some((*p, v.get_mut(cand)?.take()?)))
            .ok_or_else(|| Error::Internal(format!("no candidate {cand} of request {req}")))?;
        self.tree_tokens += generated as u64;
        if !appended.is_empty() {
            let ids = self.encode(appended, false)?;
            self.tree_tokens += ids.len() as u64;
            self.per_problem.entry(problem).or_default().computed += ids.len() as u64;
            self.engine.append(seq, &ids)?;
        }
        self.nodes.insert((problem, node), seq);
        Ok(())
    }

    fn end_expansion(&mut self) -> Result<()> {
        for (_, seqs) in std::mem::take(&mut self.pending) {
            for (s, _, _) in seqs.into_iter().flatten() {
                self.engine.remove(s)?;
            }
        }
        Ok(())
    }

    fn tokens_generated(&self) -> u64 {
        self.generated_tokens
    }

    fn problem_tokens(&self, problem: u64) -> TokenCount {
        self.per_problem.get(&problem).copied().unwrap_or_default()
    }

    fn context_full(&self, req: usize, cand: usize) -> bool {
        matches!(
            self.pending.get(req).and_then(|(_, v)| v.get(cand)),
            Some(Some((_, _, true)))
        )
    }

    fn release(&mut self, problem: u64) {
        let keys: Vec<_> = self
            .nodes
            .keys()
            .filter(|k| k.0 == problem)
            .copied()
            .collect();
        for k in keys {
            if let Some(s) = self.nodes.remove(&k) {
                let _ = self.engine.remove(s);
            }
        }
    }
}

/// The PPM on a [`Scorer`]: value = tanh(raw / scale) of prompt + partial solution.
pub struct PpmValue {
    scorer: Scorer,
    lm: Arc<LoadedModel>,
    prompt: Prompt,
    scale: f64,
}

impl PpmValue {
    pub fn new(ppm: Arc<Ppm>, engine_cfg: EngineConfig, cfg: &SearchConfig) -> Result<Self> {
        let lm = ppm.lm.clone();
        lm.tokenizer()?;
        Ok(PpmValue {
            scorer: Scorer::new(ppm, engine_cfg)?,
            lm,
            prompt: Prompt::of(cfg),
            scale: cfg.value_scale,
        })
    }

    pub fn stats(&self) -> EngineStats {
        self.scorer.stats()
    }
}

impl ValueModel for PpmValue {
    fn value(&mut self, reqs: &[ScoreRequest<'_>]) -> Result<Vec<f64>> {
        let tok = self.lm.tokenizer()?;
        let max_ctx = self.lm.model.config.max_position_embeddings;
        let seqs = reqs
            .iter()
            .map(|r| {
                let (prompt, special) = self.prompt.text(tok, r.question)?;
                // A path longer than the PPM's context is valued by its longest prefix that fits.
                let mut ids = tok.encode(&(prompt + &r.path.concat()), special)?;
                ids.truncate(max_ctx);
                Ok(ids)
            })
            .collect::<Result<Vec<_>>>()?;
        let raw = self.scorer.score(&seqs)?;
        Ok(raw
            .into_iter()
            .map(|x| (x as f64 / self.scale).tanh())
            .collect())
    }
}

/// The models a search runs on, loaded from their directories (or .gguf files) onto the config's
/// device: the policy, the PPM when given, and the executor with the config's timeout. `rstar
/// mcts`, `rstar solve` and the evolve driver all load through here.
pub fn load_models(
    policy: &std::path::Path,
    ppm: Option<&std::path::Path>,
    cfg: &SearchConfig,
) -> Result<(EnginePolicy, Option<PpmValue>, crate::exec::Executor)> {
    let (policy, value) = load_engines(policy, ppm, cfg)?;
    let exec =
        crate::exec::Executor::new(step_exec_config(cfg, crate::exec::ExecConfig::default()))?;
    Ok((policy, value, exec))
}

/// The executor settings of a search's steps: `base` with the config's per-step timeout. Without
/// sympy the search still runs (steps that import it fail like any other error); callers can
/// check `exec.info().modules` and say so.
pub fn step_exec_config(
    cfg: &SearchConfig,
    base: crate::exec::ExecConfig,
) -> crate::exec::ExecConfig {
    crate::exec::ExecConfig {
        timeout_s: cfg.exec_timeout_s,
        require_sympy: false,
        ..base
    }
}

/// The policy and the optional PPM of [`load_models`], without the executor.
pub fn load_engines(
    policy: &std::path::Path,
    ppm: Option<&std::path::Path>,
    cfg: &SearchConfig,
) -> Result<(EnginePolicy, Option<PpmValue>)> {
    cfg.validate()?;
    let device = cfg.device;
    let lm = Arc::new(LoadedModel::load_on_with(policy, device, cfg.quant_load)?);
    let policy = EnginePolicy::new(lm, EngineConfig::default(), cfg)?;
    let value = match ppm {
        Some(p) => Some(PpmValue::new(
            Arc::new(Ppm::load_on(p, device)?),
            EngineConfig::default(),
            cfg,
        )?),
        None => None,
    };
    Ok((policy, value))
}
