//! Fork-join for the forward pass's parallel sections: a team of helper threads that spin between
//! sections, falling back to the rayon pool outside a [`super::Compute::run`].
//!
//! A decode step forks about 170 times (every matmul, and the attention), a few microseconds to a
//! few hundred each. A rayon worker that finds no work sleeps after a few dozen yields, so most
//! forks woke a sleeping thread (a futex call, then the scheduler's latency) while the forking
//! thread streamed weights alone: `perf stat` counted 123 context switches per batch-1 token.
//! Helpers here spin on an epoch counter for [`SPIN`] after each section, then park, like ggml's
//! polling thread pool. The team runs the sections of one [`super::Compute::run`] at a time: a
//! second run on the same `Compute` meanwhile (another C thread, say) uses rayon.

use std::cell::Cell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rayon::prelude::*;

/// How long an idle helper spins before it parks: longer than the gaps between a decode step's
/// sections (RMSNorm, RoPE, sampling: microseconds), short enough that a team waiting on the code
/// sandbox or a caller's callback gives its cores back almost at once.
const SPIN: Duration = Duration::from_millis(2);

/// One section: `f(i)` for every `i < n`. Member `t` of `T` owns the contiguous range
/// `t * n / T..(t + 1) * n / T` and walks it front to back, then takes what is left of the others'
/// (only its own with `once`). Contiguous ranges keep what a thread reads next where the hardware
/// prefetcher, which runs past the end of each task, already fetched it: handing out indices
/// round-robin made the 512-token `fast` prefill 8% slower than rayon's halving.
struct Section {
    /// Type-erased `&dyn Fn(usize) + Sync`, valid while `pending > 0` (see [`Team::run`]).
    f: *const (dyn Fn(usize) + Sync),
    n: usize,
    once: bool,
}

struct Shared {
    /// Bumped once per section (and once to stop); a helper works on every epoch it sees.
    epoch: AtomicU64,
    section: Mutex<Option<Section>>,
    /// Per member: the next index of its range, relative to the range's start.
    cursors: Box<[Padded]>,
    /// Helpers that have not yet finished the current section.
    pending: AtomicUsize,
    stop: AtomicBool,
    /// Parked helpers, and the lock and condition they park on.
    parked: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    /// A panic inside a helper's `f`, re-raised on the thread that forked.
    panic: Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

// SAFETY: the only non-thread-safe field is the section's `f` pointer, which points to a `Sync`
// closure and is dereferenced only while the forking thread keeps it alive (see `Team::run`).
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

/// `threads - 1` helper threads, members `1..threads` (the thread that forks is member 0).
pub(crate) struct Team {
    shared: Arc<Shared>,
    helpers: Vec<JoinHandle<()>>,
    /// Held by the thread whose [`super::Compute::run`] uses the team.
    busy: AtomicBool,
}

impl std::fmt::Debug for Team {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Team({} threads)", self.helpers.len() + 1)
    }
}

impl Team {
    /// A team of `threads` (the caller plus `threads - 1` helpers); `None` for one thread, or when
    /// the helpers cannot be started (the run then uses rayon).
    pub(crate) fn new(threads: usize) -> Option<Team> {
        if threads < 2 {
            return None;
        }
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            section: Mutex::new(None),
            cursors: (0..threads).map(|_| Padded(AtomicUsize::new(0))).collect(),
            pending: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            parked: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            panic: Mutex::new(None),
        });
        let mut helpers = Vec::with_capacity(threads - 1);
        for i in 0..threads - 1 {
            let s = shared.clone();
            let h = std::thread::Builder::new()
                .name(format!("rstar-team-{i}"))
                .spawn(move || helper(&s, i + 1));
            match h {
                Ok(h) => helpers.push(h),
                Err(_) => {
                    // Stop the ones already started; the run falls back to rayon.
                    drop(Team {
                        shared,
                        helpers,
                        busy: AtomicBool::new(false),
                    });
                    return None;
                }
            }
        }
        Some(Team {
            shared,
            helpers,
            busy: AtomicBool::new(false),
        })
    }

    /// Runs `body` with this team serving the parallel sections on this thread, if no other
    /// thread holds it; otherwise `body` runs with rayon.
    pub(crate) fn enlist<R>(&self, body: impl FnOnce() -> R) -> R {
        if self.busy.swap(true, Acquire) {
            return body();
        }
        struct Leave<'a>(&'a Team, Option<*const Team>);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                CURRENT.with(|c| c.set(self.1));
                self.0.busy.store(false, Release);
            }
        }
        let _leave = Leave(self, CURRENT.with(|c| c.replace(Some(self as *const Team))));
        body()
    }

    /// `f(i)` for every `i < n` on the team and this thread; returns when all are done. A panic in
    /// any `f` is re-raised here after every helper has left the section.
    fn run(&self, n: usize, once: bool, f: &(dyn Fn(usize) + Sync)) {
        let s = &*self.shared;
        // SAFETY: only the lifetime is erased. The pointer is stored for the helpers and cleared
        // before this function returns, and it returns (or unwinds) only after `pending` reached 0,
        // that is after every helper finished with this section.
        let f_static: *const (dyn Fn(usize) + Sync) = unsafe { std::mem::transmute(f) };
        *lock(&s.section) = Some(Section {
            f: f_static,
            n,
            once,
        });
        for c in s.cursors.iter() {
            c.0.store(0, Relaxed);
        }
        s.pending.store(self.helpers.len(), Relaxed);
        s.epoch.fetch_add(1, SeqCst);
        if s.parked.load(SeqCst) > 0 {
            let _g = lock(&s.lock);
            s.wake.notify_all();
        }
        let mine = catch_unwind(AssertUnwindSafe(|| claim(s, 0, n, once, f)));
        let mut spins = 0u32;
        while s.pending.load(Acquire) > 0 {
            pause(&mut spins);
        }
        *lock(&s.section) = None;
        if let Err(p) = mine {
            resume_unwind(p);
        }
        if let Some(p) = lock(&s.panic).take() {
            resume_unwind(p);
        }
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        let s = &*self.shared;
        s.stop.store(true, SeqCst);
        s.epoch.fetch_add(1, SeqCst);
        {
            let _g = lock(&s.lock);
            s.wake.notify_all();
        }
        for h in self.helpers.drain(..) {
            let _ = h.join();
        }
    }
}

thread_local! {
    /// The team serving this thread's parallel sections (set by [`Team::enlist`]).
    static CURRENT: Cell<Option<*const Team>> = const { Cell::new(None) };
    /// Set on the helpers, and on a forking thread while its section runs.
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// A mutex that other threads' panics do not poison (nothing guarded here can be left half-done).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One counter on its own cache line (128 bytes: the adjacent-line prefetcher pairs lines).
#[repr(align(128))]
struct Padded(AtomicUsize);

/// Member `me`'s share of a section (see [`Section`]).
fn claim(s: &Shared, me: usize, n: usize, once: bool, f: &(dyn Fn(usize) + Sync)) {
    let t = s.cursors.len();
    let ranges = if once { 1 } else { t };
    for r in (0..ranges).map(|d| (me + d) % t) {
        let (lo, hi) = (r * n / t, (r + 1) * n / t);
        loop {
            let i = lo + s.cursors[r].0.fetch_add(1, Relaxed);
            if i >= hi {
                break;
            }
            f(i);
        }
    }
}

/// One round of a spin-wait: a `pause` instruction, and from [`YIELD_AFTER`] rounds on also a
/// `sched_yield`, which returns at once on an idle core and hands the core over when more threads
/// than cores are runnable (two processes on the same cores, say), where pure spinning would burn
/// the time slices of the threads being waited for.
fn pause(spins: &mut u32) {
    std::hint::spin_loop();
    *spins = spins.wrapping_add(1);
    if *spins >= YIELD_AFTER {
        std::thread::yield_now();
    }
}

/// Spin rounds before [`pause`] also yields (a few microseconds: longer than most waits at the end
/// of a section).
const YIELD_AFTER: u32 = 4096;

fn helper(s: &Shared, me: usize) {
    INSIDE.with(|c| c.set(true));
    let mut seen = 0u64;
    loop {
        // Wait for the next epoch: spin, then park.
        let t0 = Instant::now();
        let mut spins = 0u32;
        loop {
            if s.epoch.load(Acquire) != seen {
                break;
            }
            pause(&mut spins);
            if spins.is_multiple_of(256) && t0.elapsed() > SPIN {
                let mut g = lock(&s.lock);
                s.parked.fetch_add(1, SeqCst);
                while s.epoch.load(SeqCst) == seen {
                    g = s.wake.wait(g).unwrap_or_else(|e| e.into_inner());
                }
                s.parked.fetch_sub(1, SeqCst);
                break;
            }
        }
        seen = s.epoch.load(Acquire);
        if s.stop.load(Acquire) {
            return;
        }
        let sec = lock(&s.section).as_ref().map(|c| (c.f, c.n, c.once));
        if let Some((f, n, once)) = sec {
            // SAFETY: the forking thread keeps the closure alive until `pending` is 0, which is
            // after this helper's decrement below.
            let f = unsafe { &*f };
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| claim(s, me, n, once, f))) {
                lock(&s.panic).get_or_insert(p);
            }
        }
        s.pending.fetch_sub(1, Release);
    }
}

/// Threads a parallel section on this thread runs on: the enlisted team's, else the rayon pool's.
pub fn threads() -> usize {
    match CURRENT.with(Cell::get) {
        // SAFETY: `enlist` keeps the team alive while `CURRENT` points to it.
        Some(t) => unsafe { &*t }.helpers.len() + 1,
        None => rayon::current_num_threads(),
    }
}

/// `f(i)` for every `i < n`, in parallel: on the team enlisted on this thread, else on the rayon
/// pool. Inline when `n < 2`, and inside a team section (on its helpers and on the forking thread
/// while the section runs).
pub fn par_for(n: usize, f: impl Fn(usize) + Sync) {
    if n < 2 || INSIDE.with(Cell::get) {
        (0..n).for_each(f);
        return;
    }
    if !on_team(|t| t.run(n, false, &f)) {
        (0..n).into_par_iter().for_each(&f);
    }
}

/// `f(i)` once on each thread `i` of the team enlisted on this thread, else of the rayon pool (as
/// `rayon::broadcast`): for measurements that must load every thread at once.
pub fn broadcast(f: impl Fn(usize) + Sync) {
    if INSIDE.with(Cell::get) {
        return f(0);
    }
    if !on_team(|t| t.run(t.helpers.len() + 1, true, &f)) {
        rayon::broadcast(|c| f(c.index()));
    }
}

/// Runs `go` on the team enlisted on this thread, marking the thread inside a section meanwhile;
/// false when there is none.
fn on_team(go: impl FnOnce(&Team)) -> bool {
    let Some(team) = CURRENT.with(Cell::get) else {
        return false;
    };
    struct Out;
    impl Drop for Out {
        fn drop(&mut self) {
            INSIDE.with(|c| c.set(false));
        }
    }
    INSIDE.with(|c| c.set(true));
    let _out = Out;
    // SAFETY: `enlist` keeps the team alive while `CURRENT` points to it.
    go(unsafe { &*team });
    true
}

/// `f(c, chunk)` for every `len`-element chunk of `a` (the last may be shorter), via [`par_for`].
pub fn par_chunks_mut<T: Send>(a: &mut [T], len: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let len = len.max(1);
    let total = a.len();
    struct Base<T>(*mut T);
    // SAFETY: the chunks handed out below are disjoint, so sharing the base pointer across the
    // section's threads hands each element to one thread only.
    unsafe impl<T: Send> Sync for Base<T> {}
    let base = Base(a.as_mut_ptr());
    let base = &base;
    par_for(total.div_ceil(len), move |c| {
        let start = c * len;
        let end = (start + len).min(total);
        // SAFETY: `start..end` lies inside `a`, which stays mutably borrowed for the whole call,
        // and each `c` (so each range) is visited exactly once.
        let chunk = unsafe { std::slice::from_raw_parts_mut(base.0.add(start), end - start) };
        f(c, chunk)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_index_once_on_the_team_and_on_rayon() {
        let team = Team::new(3).expect("team");
        for enlisted in [true, false] {
            for n in [0, 1, 2, 7, 1000] {
                let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                let go = || {
                    par_for(n, |i| {
                        hits[i].fetch_add(1, Relaxed);
                    })
                };
                if enlisted {
                    team.enlist(go)
                } else {
                    go()
                }
                assert!(hits.iter().all(|h| h.load(Relaxed) == 1), "n {n}");
            }
        }
        // Many sections in a row, with helpers parking in between.
        let mut v = vec![0u32; 100];
        team.enlist(|| {
            for r in 0..200 {
                par_chunks_mut(&mut v, 7, |_, c| c.iter_mut().for_each(|x| *x += 1));
                if r % 50 == 0 {
                    std::thread::sleep(SPIN * 2);
                }
            }
        });
        assert!(v.iter().all(|&x| x == 200));
    }

    #[test]
    fn a_panic_in_a_section_reaches_the_caller_and_the_team_still_works() {
        let team = Team::new(2).expect("team");
        let r = catch_unwind(AssertUnwindSafe(|| {
            team.enlist(|| par_for(64, |i| assert!(i != 40, "boom")))
        }));
        assert!(r.is_err());
        let sum = AtomicUsize::new(0);
        team.enlist(|| {
            par_for(10, |i| {
                sum.fetch_add(i, Relaxed);
            })
        });
        assert_eq!(sum.load(Relaxed), 45);
    }

    #[test]
    fn broadcast_runs_once_on_every_thread() {
        let team = Team::new(3).expect("team");
        for enlisted in [true, false] {
            let seen = Mutex::new(Vec::new());
            let go = || {
                broadcast(|i| {
                    // Long enough that one thread could otherwise take two indices.
                    std::thread::sleep(Duration::from_millis(5));
                    lock(&seen).push((i, std::thread::current().id()));
                })
            };
            if enlisted {
                team.enlist(go)
            } else {
                go()
            }
            let mut seen = seen.into_inner().unwrap();
            let threads = if enlisted {
                3
            } else {
                rayon::current_num_threads()
            };
            seen.sort_by_key(|s| s.0);
            assert_eq!(
                seen.iter().map(|s| s.0).collect::<Vec<_>>(),
                (0..threads).collect::<Vec<_>>()
            );
            let ids: std::collections::HashSet<_> = seen.iter().map(|s| s.1).collect();
            assert_eq!(ids.len(), threads, "enlisted {enlisted}");
        }
    }

    #[test]
    fn nested_sections_run_inline() {
        let team = Team::new(2).expect("team");
        let sum = AtomicUsize::new(0);
        team.enlist(|| {
            par_for(4, |_| {
                par_for(5, |j| {
                    sum.fetch_add(j, Relaxed);
                })
            });
        });
        assert_eq!(sum.load(Relaxed), 40);
    }
}
