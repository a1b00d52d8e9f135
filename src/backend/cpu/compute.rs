//! Per-run compute settings for the CPU: matmul precision, KV cache dtype and the thread pool a
//! run uses.
//!
//! A [`Compute`] is built once (by the CLI from `--precision`/`--threads`, by the C ABI from a
//! model's params) and wraps each run: the work goes to its own rayon pool when a thread count is
//! given (so two models in one process can use different counts, and nothing touches rayon's global
//! pool), and [`precision`](super::precision) answers the run's precision on the thread doing it
//! ([`kv_dtype`] its KV cache dtype, which engines made during the run default to).
//! The run's parallel sections go to a spinning team of as many threads (see `team.rs`).

use std::sync::Arc;

use super::kv_half::KvDtype;
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
    kv_dtype: KvDtype,
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
            kv_dtype: KvDtype::F32,
            pool,
            team: None,
        };
        c.team = Team::new(c.threads()).map(Arc::new);
        Ok(c)
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The KV cache dtype of engines made during a run (see [`kv_dtype`]).
    pub fn kv_dtype(&self) -> KvDtype {
        self.kv_dtype
    }

    /// These settings with KV caches made during a run stored as `d` (see [`kv_dtype`]).
    pub fn with_kv_dtype(mut self, d: KvDtype) -> Compute {
        self.kv_dtype = d;
        self
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
        let (p, d) = (self.precision, self.kv_dtype);
        let team = self.team.as_deref();
        let body = move || {
            with_kv_dtype(d, || {
                with_precision(p, || match team {
                    Some(t) => t.enlist(f),
                    None => f(),
                })
            })
        };
        match &self.pool {
            Some(pool) => pool.install(body),
            None => body(),
        }
    }
}

thread_local! {
    /// This thread's KV dtype while a [`Compute::run`] is in progress.
    static KV_DTYPE_HERE: std::cell::Cell<KvDtype> = const { std::cell::Cell::new(KvDtype::F32) };
}

/// The KV cache dtype of the [`Compute::run`] in progress on this thread (f32 outside a run):
/// the default of `EngineConfig::kv_dtype`.
pub fn kv_dtype() -> KvDtype {
    KV_DTYPE_HERE.with(std::cell::Cell::get)
}

/// Runs `f` with [`kv_dtype`] answering `d` on this thread (restored afterwards, also on panic).
fn with_kv_dtype<R>(d: KvDtype, f: impl FnOnce() -> R) -> R {
    struct Restore(KvDtype);
    impl Drop for Restore {
        fn drop(&mut self) {
            KV_DTYPE_HERE.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(KV_DTYPE_HERE.with(|c| c.replace(d)));
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_sets_pool_size_and_precision_for_its_duration() {
        let before = super::super::precision();
        let c = Compute::new(Precision::Fast, 3, "threads")
            .unwrap()
            .with_kv_dtype(KvDtype::Bf16);
        let got = c.run(|| {
            (
                rayon::current_num_threads(),
                super::super::team::threads(),
                super::super::precision(),
                kv_dtype(),
            )
        });
        assert_eq!(got, (3, 3, Precision::Fast, KvDtype::Bf16));
        assert_eq!(kv_dtype(), KvDtype::F32);
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
