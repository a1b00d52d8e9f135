//! Per-run compute settings for the CPU: matmul precision and the thread pool a run uses.
//!
//! A [`Compute`] is built once (by the CLI from `--precision`/`--threads`, by the C ABI from a
//! model's params) and wraps each run: the work goes to its own rayon pool when a thread count is
//! given (so two models in one process can use different counts, and nothing touches rayon's global
//! pool), and [`precision`](super::precision) answers the run's precision on the thread doing it.
//! The run's parallel sections go to a spinning team of as many threads (see `team.rs`).

use std::sync::Arc;

use super::simd::{with_precision, Precision};
use super::team::Team;
use crate::error::{Error, Result};

/// The most threads a `Compute` starts. Far more than any CPU this runs on has; a larger count is
/// a mistake, and tens of thousands of threads exhaust memory (starting them aborted the process).
const MAX_THREADS: usize = 1024;

/// Matmul precision plus an optional dedicated thread pool.
#[derive(Debug, Clone, Default)]
pub struct Compute {
    precision: Precision,
    /// None: rayon's global pool (one thread per CPU).
    pool: Option<Arc<rayon::ThreadPool>>,
    /// Serves the parallel sections of one run at a time (None: one thread, or a default
    /// `Compute`; sections then use rayon).
    team: Option<Arc<Team>>,
}

impl Compute {
    /// `threads == 0` means the global pool (one thread per CPU); `field` names the setting in
    /// errors (e.g. `--threads` or `params.threads`).
    /// A bad `RSTAR_KERNEL` is refused here (see [`super::simd::kernel_from_env`]).
    pub fn new(precision: Precision, threads: usize, field: &str) -> Result<Compute> {
        super::simd::kernel_from_env()?;
        if threads > MAX_THREADS {
            return Err(Error::InvalidArgument(format!(
                "{field} {threads}: at most {MAX_THREADS} threads"
            )));
        }
        let pool = if threads == 0 {
            None
        } else {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("rstar-compute-{i}"))
                .build()
                .map_err(|e| {
                    Error::InvalidArgument(format!("{field} {threads}: cannot start the pool: {e}"))
                })?;
            Some(Arc::new(pool))
        };
        let mut c = Compute {
            precision,
            pool,
            team: None,
        };
        c.team = Team::new(c.threads()).map(Arc::new);
        Ok(c)
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Threads the run uses.
    pub fn threads(&self) -> usize {
        self.pool
            .as_ref()
            .map_or_else(rayon::current_num_threads, |p| p.current_num_threads())
    }

    /// Runs `f` with this precision, its parallel sections served by the team (see `team.rs`): on
    /// the calling thread, or on a thread of this `Compute`'s own pool when it has one (so rayon
    /// work inside `f` also stays on that pool).
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let p = self.precision;
        let team = self.team.as_deref();
        let body = move || {
            with_precision(p, || match team {
                Some(t) => t.enlist(f),
                None => f(),
            })
        };
        match &self.pool {
            Some(pool) => pool.install(body),
            None => body(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_sets_pool_size_and_precision_for_its_duration() {
        let before = super::super::precision();
        let c = Compute::new(Precision::Fast, 3, "threads").unwrap();
        let got = c.run(|| {
            (
                rayon::current_num_threads(),
                super::super::team::threads(),
                super::super::precision(),
            )
        });
        assert_eq!(got, (3, 3, Precision::Fast));
        assert_eq!(c.threads(), 3);
        assert_eq!(super::super::precision(), before);
        let c = Compute::new(Precision::Fast, 0, "threads").unwrap();
        assert_eq!(c.run(super::super::precision), Precision::Fast);
        assert_eq!(
            c.run(super::super::team::threads),
            rayon::current_num_threads()
        );
        assert_eq!(super::super::precision(), before);
    }

    #[test]
    fn an_absurd_thread_count_is_refused() {
        let e = Compute::new(Precision::Exact, 100_000, "--threads").unwrap_err();
        assert!(e.to_string().contains("--threads 100000"), "{e}");
    }
}
