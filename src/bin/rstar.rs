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
    // A panic is a bug, but it still ends as one line and exit code 2, like every other error.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal error (please report): {info}");
    }));
    match std::panic::catch_unwind(|| cli::dispatch(parsed)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
        Err(_) => std::process::exit(2),
    }
}
