//! The `rstar` command line: argument parsing and printing only; all logic lives in the library.
//!
//! Each subcommand has its own file with a clap `Args` struct and a `run(args) -> rstar::Result<()>`.
//! Errors print as one line `error: ...` on stderr and exit with code 2.

use clap::{Parser, Subcommand};

pub mod convert;
pub mod fetch;
pub mod forward;
pub mod generate;

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
    /// Print the logits of every input position as JSON (exact f32 precision).
    Forward(forward::ForwardArgs),
    /// Generate a continuation of a prompt (streams text, or prints JSON with --json).
    Generate(generate::GenerateArgs),
    /// Convert a GGUF file into a Hugging Face model directory.
    Convert(convert::ConvertArgs),
    /// Download the pinned real-model assets (default model, test vocabularies) into the cache.
    FetchAssets(fetch::FetchArgs),
}

/// Runs the parsed command.
pub fn dispatch(cli: Cli) -> rstar::Result<()> {
    match cli.command {
        Command::Forward(a) => forward::run(a),
        Command::Generate(a) => generate::run(a),
        Command::Convert(a) => convert::run(a),
        Command::FetchAssets(a) => fetch::run(a),
    }
}
