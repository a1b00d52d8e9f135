//! The search API every mode shares (spec 3-4, 7.5): the [`Problem`]s searched, the
//! [`SearchConfig`] of MCTS, beam search, best-of-N and greedy, the model traits the search talks
//! through ([`Policy`], [`ValueModel`], [`StepRunner`]) with their requests, the [`Models`] a
//! search runs on and its [`SearchStats`].

use serde::{Deserialize, Serialize};

use crate::backend::Device;
pub use crate::data::problems::Problem;
use crate::data::prompts::{self, POLICY_PROMPT};
use crate::error::{Error, Result};
use crate::exec::{ExecResult, Executor};
use crate::search::tree::NodeId;
use crate::steps::{tags, FailureRule, StepFormat};

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
pub struct SearchConfig {
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
    /// Where the policy and the PPM run: `cpu`, `cuda` or `cuda:N` in a configuration file.
    #[serde(with = "device_text")]
    pub device: Device,
    /// How a GGUF policy's quantized tensors are held: `in-place` (ggml blocks from the file
    /// mapping) or `expand` (f32 at load); `RSTAR_GGUF_EXPAND` overrides it.
    pub quant_load: crate::engine::QuantLoad,
    /// Independent runs per problem at test time (seed varied per run); each MCTS run contributes
    /// its highest-value answer, beam / best-of-N runs every answer they reach.
    pub runs: usize,
    /// Votes use the `vote_size` highest-valued trajectories (spec 7.4 `eval_maj.py --top_n`);
    /// 0 = all.
    pub vote_size: usize,
    /// The step protocol the policy writes: `native` (rStar's tags; alias `rstar`) or `tool`
    /// (chat models writing fenced Python, prompted through their chat template).
    pub step_format: StepFormat,
    /// Tool format: put a worked example before the question in the chat.
    pub few_shot: bool,
    /// How a trajectory's step values make its score (best-of-N, maj, DVTS answers); any but
    /// `last` values every step.
    pub aggregate: Aggregate,
    /// Generated tokens per problem and run after which its search stops expanding (0 = no cap).
    pub budget_tokens: u64,
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
    /// Self-consistency (maj@k): `best_of` sampled trajectories, the most common answer wins.
    #[serde(rename = "maj", alias = "self-consistency")]
    Majority,
    /// Diverse verifier tree search: `best_of / width` independent subtrees from the root; each
    /// expands its one node with `width` samples and keeps the highest-valued child.
    Dvts,
}

impl Strategy {
    /// Whether the test-time answer is the majority vote (else the highest-valued trajectory).
    pub fn votes(self) -> bool {
        self == Strategy::Majority
    }
}

/// How best-of-N scores a trajectory from the value model's values of its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Aggregate {
    /// The answer step's value (only answers are valued).
    #[default]
    Last,
    /// The lowest step value.
    Min,
    /// The product of the steps' values mapped to [0, 1] by (v + 1) / 2.
    Product,
    /// The mean step value.
    Mean,
}

impl Aggregate {
    /// The score of a trajectory whose steps have `values` (root's child first; a step never
    /// valued counts 0); 0 for no steps.
    pub fn score(self, values: &[f64]) -> f64 {
        let Some(&last) = values.last() else {
            return 0.0;
        };
        match self {
            Aggregate::Last => last,
            Aggregate::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
            Aggregate::Product => values.iter().map(|v| (v + 1.0) / 2.0).product(),
            Aggregate::Mean => values.iter().sum::<f64>() / values.len() as f64,
        }
    }
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

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
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
            device: Device::Cpu,
            quant_load: crate::engine::QuantLoad::InPlace,
            step_format: StepFormat::Native,
            few_shot: true,
            aggregate: Aggregate::Last,
            budget_tokens: 0,
        }
    }
}

impl SearchConfig {
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
        Ok(())
    }

    /// The configuration the search actually runs with: the tool format's stop strings and user
    /// prompt in place of the native defaults (values set by hand are kept); greedy forces
    /// temperature 0 and the format's greedy stop strings (spec 1.2, 1.4).
    pub fn resolved(&self) -> SearchConfig {
        let mut c = self.clone();
        let native = SearchConfig::default();
        if c.step_format == StepFormat::Tool {
            if c.stop == native.stop {
                c.stop = c.step_format.stop();
            }
            if c.prompt_template == native.prompt_template {
                c.prompt_template = crate::steps::tool::USER_PROMPT.into();
            }
        }
        if c.search == Strategy::Greedy {
            c.temperature = 0.0;
            c.stop = c.step_format.greedy_stop();
        }
        c
    }

    /// The configuration of test-time run `run`: the seed moves per run.
    pub fn for_run(&self, run: usize) -> SearchConfig {
        SearchConfig {
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
    /// Tokens spent on `problem` so far (0 when unknown).
    fn problem_tokens(&self, _problem: u64) -> TokenCount {
        TokenCount::default()
    }
    /// Whether candidate `cand` of request `req` of the last [`Policy::propose`] ended at the
    /// model's context limit (its path cannot go on).
    fn context_full(&self, _req: usize, _cand: usize) -> bool {
        false
    }
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

/// Tokens a policy spent: `generated` (sampled) and `computed` (run through the model:
/// prompts, generated tokens and appended outputs, shared prefixes counted once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TokenCount {
    pub generated: u64,
    pub computed: u64,
}

impl TokenCount {
    /// `self - earlier`, for the tokens of one stretch of work.
    pub fn since(self, earlier: TokenCount) -> TokenCount {
        TokenCount {
            generated: self.generated.saturating_sub(earlier.generated),
            computed: self.computed.saturating_sub(earlier.computed),
        }
    }

    pub fn add(&mut self, o: TokenCount) {
        self.generated += o.generated;
        self.computed += o.computed;
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

/// [`Device`] in a configuration file: its text (`cpu`, `cuda`, `cuda:N`).
mod device_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::backend::Device;

    pub fn serialize<S: Serializer>(d: &Device, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(d)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Device, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
