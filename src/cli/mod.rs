//! The `rstar` command line: argument parsing and printing only; all logic lives in the library.
//!
//! Each subcommand has its own file with a clap `Args` struct and a `run(args) -> rstar::Result<()>`.
//! Errors print as one line `error: ...` on stderr and exit with code 2.

use clap::{Parser, Subcommand};

pub mod bench;
pub mod convert;
pub mod eval;
pub mod evolve;
pub mod exec;
pub mod extract;
pub mod fetch;
pub mod forward;
pub mod gen_problems;
pub mod generate;
pub mod grade;
pub mod init_model;
pub mod mcts;
pub mod perplexity;
pub mod progress;
pub mod quantize;
pub mod score;
pub mod search_args;
pub mod setup_python;
pub mod solve;
pub mod train;

#[derive(Parser, Debug)]
#[command(
    name = "rstar",
    version,
    about = "librstar: search-based math reasoning with small language models"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the logits of every input position as JSON (exact f32 precision by default).
    Forward(forward::ForwardArgs),
    /// Generate a continuation of a prompt (streams text, or prints JSON with --json).
    Generate(generate::GenerateArgs),
    /// Score a sequence with a process reward model (raw value head output).
    Score(score::ScoreArgs),
    /// Grade predicted answers against reference answers.
    Grade(grade::GradeArgs),
    /// Run Python code from stdin in the sandboxed executor.
    Exec(exec::ExecArgs),
    /// Benchmarks.
    Bench(bench::BenchArgs),
    /// Perplexity of a model on a text file, computed as llama.cpp's llama-perplexity does.
    Perplexity(perplexity::PerplexityArgs),
    /// Create the Python venv (sympy, numpy, scipy) the executor uses.
    SetupPython(setup_python::SetupPythonArgs),
    /// Train a policy (sft) or a process preference model (ppm); saves a Hugging Face directory.
    Train(train::TrainArgs),
    /// Convert a GGUF file into a Hugging Face model directory.
    Convert(convert::ConvertArgs),
    /// Quantize an HF model directory or a GGUF file into a GGUF file llama.cpp loads.
    Quantize(quantize::QuantizeArgs),
    /// MCTS data synthesis: one annotated tree per problem, appended to a resumable JSONL file.
    Mcts(mcts::MctsArgs),
    /// Solve one question at test time (mcts, beam, best-of-n or greedy) and print the answer.
    Solve(solve::SolveArgs),
    /// Extract the SFT set (sft) or PPM preference pairs (pairs) from `rstar mcts` trees.
    Extract(extract::ExtractArgs),
    /// Self-evolution rounds: MCTS, extraction, policy SFT, PPM training, evaluation (resumable).
    Evolve(evolve::EvolveArgs),
    /// Generate math word problems of graded difficulty (with code-augmented solutions).
    GenProblems(gen_problems::GenProblemsArgs),
    /// A new small model from scratch: BPE tokenizer trained on a problem file + random Qwen2 weights.
    InitModel(init_model::InitModelArgs),
    /// Accuracy over a problem file: pass@1, maj@k, PPM-weighted@k, PPM-best; per-problem JSONL.
    Eval(eval::EvalArgs),
    /// Download the pinned real-model assets (default model, test vocabularies) into the cache.
    FetchAssets(fetch::FetchArgs),
}

/// `--precision exact|fast`, `--kv-dtype f32|f16|bf16`, `--quant-load in-place|expand` and
/// `--threads N`, shared by the commands that run a model.
#[derive(clap::Args, Debug, Clone)]
pub struct ComputeArgs {
    /// Matmul precision: exact (f32 activations) or fast (bf16 activations where supported; on
    /// quantized GGUF weights, 8-bit activations and integer dot products).
    #[arg(long, default_value = "exact")]
    pub precision: rstar::backend::cpu::Precision,
    /// KV cache element type: f32, or f16/bf16 (half the memory, K/V rounded; CPU only).
    #[arg(long, default_value = "f32")]
    pub kv_dtype: rstar::backend::cpu::KvDtype,
    /// Quantized GGUF weights: in-place (ggml blocks read from the file mapping, the default) or
    /// expand (dequantized to f32 at load: 6-8x the memory, the dense f32 kernels). The
    /// environment variable RSTAR_GGUF_EXPAND=1 (or =0) overrides this flag.
    #[arg(long, value_name = "in-place|expand")]
    pub quant_load: Option<rstar::engine::QuantLoad>,
    /// Compute threads (0: one per CPU).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

impl ComputeArgs {
    /// `--quant-load`, in place when not given.
    pub fn quant_load(&self) -> rstar::engine::QuantLoad {
        self.quant_load.unwrap_or_default()
    }

    /// The run's settings; `Compute::run` applies them.
    pub fn build(&self) -> rstar::Result<rstar::backend::cpu::Compute> {
        Ok(
            rstar::backend::cpu::Compute::new(self.precision, self.threads, "--threads")?
                .with_kv_dtype(self.kv_dtype),
        )
    }
}

/// Runs the parsed command.
pub fn dispatch(cli: Cli) -> rstar::Result<()> {
    match cli.command {
        Command::Forward(a) => forward::run(a),
        Command::Generate(a) => generate::run(a),
        Command::Score(a) => score::run(a),
        Command::Grade(a) => grade::run(a),
        Command::Exec(a) => exec::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Perplexity(a) => perplexity::run(a),
        Command::SetupPython(a) => setup_python::run(a),
        Command::Train(a) => train::run(a),
        Command::Convert(a) => convert::run(a),
        Command::Quantize(a) => quantize::run(a),
        Command::FetchAssets(a) => fetch::run(a),
        Command::Mcts(a) => mcts::run(a),
        Command::Solve(a) => solve::run(a),
        Command::Extract(a) => extract::run(a),
        Command::Evolve(a) => evolve::run(a),
        Command::GenProblems(a) => gen_problems::run(a),
        Command::InitModel(a) => init_model::run(a),
        Command::Eval(a) => eval::run(a),
    }
}
