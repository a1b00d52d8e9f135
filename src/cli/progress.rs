//! The progress display of long dataset runs (`rstar mcts`, `rstar eval`): an indicatif bar on a
//! terminal, one log line per update otherwise, nothing with `--quiet`.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rstar::search::eval::Progress;

pub struct Display {
    bar: Option<ProgressBar>,
    log: bool,
    last: Progress,
}

impl Display {
    pub fn new(total: usize, quiet: bool) -> Display {
        let tty = std::io::stderr().is_terminal();
        let bar = (!quiet && tty).then(|| {
            let b = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} problems {elapsed_precise} | {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b
        });
        Display {
            bar,
            log: !quiet && !tty,
            last: Progress::default(),
        }
    }

    fn message(p: &Progress) -> String {
        let secs = p.elapsed_s.max(1e-9);
        format!(
            "{:.2} rollouts/s | {:.1} tok/s | solved {}/{}",
            p.rollouts as f64 / secs,
            p.tokens as f64 / secs,
            p.solved,
            p.done
        )
    }

    /// Shows `p`; always true (the CLI does not cancel).
    pub fn update(&mut self, p: &Progress) -> bool {
        if let Some(b) = &self.bar {
            b.set_length(p.total as u64);
            b.set_position(p.done as u64);
            b.set_message(Self::message(p));
        } else if self.log && p.done != self.last.done {
            eprintln!("[{}/{}] {}", p.done, p.total, Self::message(p));
        }
        self.last = *p;
        true
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
