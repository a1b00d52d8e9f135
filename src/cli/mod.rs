//! The `rstar` command line: argument parsing and printing only; all logic lives in the library.
//!
//! Each subcommand has its own file with a clap `Args` struct and a `run(args) -> rstar::Result<()>`.
//! Errors print as one line `error: ...` on stderr and exit with code 2.

use clap::{Parser, Subcommand};

pub mod forward;
pub mod generate;
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
    /// Print the logits of every input position as JSON (exact f32 precision).
    Forward(forward::ForwardArgs),
    /// Generate a continuation of a prompt (streams text, or prints JSON with --json).
    Generate(generate::GenerateArgs),
    /// Train a policy (sft) or a process preference model (ppm); saves a Hugging Face directory.
    Train(train::TrainArgs),
}

/// Runs the parsed command.
pub fn dispatch(cli: Cli) -> rstar::Result<()> {
    match cli.command {
        Command::Forward(a) => forward::run(a),
        Command::Generate(a) => generate::run(a),
        Command::Train(a) => train::run(a),
    }
}
