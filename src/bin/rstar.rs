//! The `rstar` binary: a thin shell over the library (see src/cli/).

#[path = "../cli/mod.rs"]
mod cli;

use clap::Parser;

fn main() {
    let parsed = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // --help and --version are not errors.
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    if let Err(e) = cli::dispatch(parsed) {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}
