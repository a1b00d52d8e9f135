//! The sandboxed Python executor: a pool of warm worker processes that run model-written code.
//!
//! Owns: choosing the interpreter ([`find_python`]: `RSTAR_PYTHON`, then [`ExecConfig::python`],
//! then the venv made by `rstar setup-python`, then `python3`), starting and replacing workers,
//! the job queue, and the non-blocking API ([`Executor::submit`] -> [`Ticket`] with
//! [`Ticket::poll`] / [`Ticket::wait`]), plus [`Executor::run`] and [`Executor::run_many`].
//!
//! Each worker is `python -I worker.py` (the script is embedded with `include_str!`) started with
//! an empty environment. Its zygote process pre-imports math, sympy, numpy and scipy (those
//! installed), warms up sympy, and then forks a fresh child per snippet and does nothing else, so
//! forking stays cheap (see the header of `worker.py` for where the time goes); snippets share
//! nothing but the copy-on-write warm heap. The child's sandbox (see the header of `worker.py`): a new PID
//! namespace (everything the snippet started dies with it) inside the worker's own PID and mount
//! namespaces with a private `/proc`, a user namespace when not root, a new session,
//! PR_SET_PDEATHSIG, closed descriptors, scrubbed environment, private temporary cwd,
//! RLIMIT_CPU/AS/FSIZE/CORE/NPROC (plus a pids cgroup where one can be made), Landlock read
//! confinement to the interpreter's files and write confinement to the temp dir, a seccomp
//! syscall allow-list (no sockets of any family), no capabilities (an unprivileged uid when root
//! and the interpreter stays readable), and optionally a fresh network namespace
//! ([`ExecConfig::net_ns`]; off by default: ~4 ms per snippet, and seccomp already refuses sockets).
//!
//! Fail closed: each worker reports which layers are active ([`SandboxReport`]); with
//! [`SandboxMode::Strict`] (the default) a missing required layer makes [`Executor::new`] fail with
//! [`Error::Sandbox`] naming the layer and why, and a child that cannot enter a layer refuses to run
//! the snippet. [`SandboxMode::Weak`] runs anyway; every [`ExecResult`] carries the mode.
//!
//! A failing snippet is data ([`ExecResult`] with `ok == false` and an `error`), never an
//! [`Error`]. `Error::Exec` is reserved for the executor itself (no interpreter, no sympy, a
//! worker that cannot start).

pub mod python;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use python::{default_venv_dir, find_python, venv_python};

use crate::{Error, Result};

const WORKER_PY: &str = include_str!("worker.py");

/// Settings of an [`Executor`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ExecConfig {
    /// Interpreter to run; `None` means [`find_python`]'s search (`RSTAR_PYTHON` still wins).
    pub python: Option<PathBuf>,
    /// Number of warm workers, i.e. snippets running at once. 0 means the number of CPUs.
    pub workers: usize,
    /// Wall-clock limit per snippet, seconds.
    pub timeout_s: f64,
    /// Address-space limit per snippet, bytes (0: none).
    pub memory_bytes: u64,
    /// Bytes of stdout kept; a snippet printing more fails with `OutputLimitError`.
    pub output_cap: usize,
    /// Process limit for a snippet and what it forks.
    pub max_processes: u32,
    /// Also give each snippet a fresh network namespace (when permitted; ~4 ms each).
    pub net_ns: bool,
    /// Fail at start-up when the interpreter cannot import sympy.
    pub require_sympy: bool,
    /// Refuse to run code when a required sandbox layer is missing (`strict`, the default), or
    /// run with whatever layers could be set up (`weak`, visible in every result).
    pub sandbox: SandboxMode,
}

/// How strictly the executor insists on its sandbox layers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxMode {
    /// Every required layer active, else no code runs.
    #[default]
    Strict,
    /// Caller opted into weaker isolation: missing layers are reported, not enforced.
    Weak,
}

impl SandboxMode {
    /// `"strict"` or `"weak"`.
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxMode::Strict => "strict",
            SandboxMode::Weak => "weak",
        }
    }
}

impl std::str::FromStr for SandboxMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "strict" => Ok(SandboxMode::Strict),
            "weak" => Ok(SandboxMode::Weak),
            _ => Err(Error::InvalidArgument(format!(
                "sandbox mode must be `strict` or `weak`, got `{s}`"
            ))),
        }
    }
}

/// One sandbox layer as a worker reported it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SandboxLayer {
    pub active: bool,
    /// A strict executor refuses to run code without it.
    pub required: bool,
    /// What it does, or why it is not active.
    pub detail: String,
}

/// Which sandbox layers a worker has (keys: `user_namespace`, `pid_namespace`,
/// `mount_namespace`, `landlock`, `seccomp`, `no_new_privs`, `capabilities`, `rlimits`,
/// `process_limit`, `uid_drop`, `pids_cgroup`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SandboxReport {
    pub mode: SandboxMode,
    pub layers: std::collections::BTreeMap<String, SandboxLayer>,
    /// Set when the worker refuses to run code (strict mode, a required layer missing).
    pub refused: Option<String>,
}

impl SandboxReport {
    /// Required layers that are not active, by name.
    pub fn missing(&self) -> Vec<(&str, &SandboxLayer)> {
        self.layers
            .iter()
            .filter(|(_, l)| l.required && !l.active)
            .map(|(k, l)| (k.as_str(), l))
            .collect()
    }
}

impl Default for ExecConfig {
    fn default() -> Self {
        ExecConfig {
            python: None,
            workers: 0,
            timeout_s: 10.0,
            memory_bytes: 2 << 30,
            output_cap: 1 << 20,
            max_processes: 32,
            net_ns: false,
            require_sympy: true,
            sandbox: SandboxMode::Strict,
        }
    }
}

/// What happened to one snippet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecResult {
    /// Ran to the end without exception and exited with status 0.
    pub ok: bool,
    /// Captured stdout (at most [`ExecConfig::output_cap`] bytes).
    pub stdout: String,
    /// Captured stderr (warnings), at most 64 KiB.
    #[serde(default)]
    pub stderr: String,
    /// `"<ExceptionType>: <message>"` or the reason it was stopped; `None` when `ok`.
    pub error: Option<String>,
    /// Exit status when it exited normally.
    #[serde(default)]
    pub exit: Option<i32>,
    /// Terminating signal when it was killed.
    #[serde(default)]
    pub signal: Option<i32>,
    #[serde(default)]
    pub timed_out: bool,
    /// Wall time in the worker, milliseconds.
    #[serde(default)]
    pub elapsed_ms: f64,
    /// The sandbox mode it ran under (`weak`: the caller accepted missing layers).
    #[serde(default)]
    pub sandbox: SandboxMode,
}

impl ExecResult {
    fn failed(reason: impl Into<String>) -> Self {
        ExecResult {
            ok: false,
            stdout: String::new(),
            stderr: String::new(),
            error: Some(reason.into()),
            exit: None,
            signal: None,
            timed_out: false,
            elapsed_ms: 0.0,
            sandbox: SandboxMode::Strict,
        }
    }
}

/// What a worker reported about itself at start-up.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub python: String,
    /// Module name -> importable.
    pub modules: std::collections::BTreeMap<String, bool>,
    /// Which sandbox layers are active.
    #[serde(default)]
    pub sandbox: SandboxReport,
}

/// A submitted snippet; redeem with [`Ticket::wait`] or check with [`Ticket::poll`].
#[derive(Debug)]
pub struct Ticket {
    rx: Receiver<ExecResult>,
    done: Option<ExecResult>,
}

impl Ticket {
    /// The result if it is ready, without blocking.
    pub fn poll(&mut self) -> Option<&ExecResult> {
        if self.done.is_none() {
            self.done = self.rx.try_recv().ok();
        }
        self.done.as_ref()
    }

    /// Blocks until the result is ready.
    pub fn wait(mut self) -> ExecResult {
        if let Some(r) = self.done.take() {
            return r;
        }
        self.rx
            .recv()
            .unwrap_or_else(|_| ExecResult::failed("ExecutorError: the executor shut down"))
    }
}

struct Job {
    code: String,
    timeout_s: f64,
    reply: Sender<ExecResult>,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

/// A pool of warm Python workers. Cheap to share behind `&`: submit from any thread.
pub struct Executor {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    config: ExecConfig,
    info: WorkerInfo,
    python: PathBuf,
}

/// Lines of a worker's stderr kept for its start-up error.
const STDERR_LINES: usize = 12;

/// Why a worker did not start: it exited before its hello (exit status and stderr tail), or
/// anything else (no interpreter, a timeout, a bad hello).
enum StartError {
    Exited(String),
    Other(Error),
}

/// One live worker process and the thread reading its replies.
struct Worker {
    child: Child,
    /// `None` once closed (the worker's signal to exit by itself).
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    reader: Option<JoinHandle<()>>,
}

impl Worker {
    /// [`Worker::try_start`], once more when the first worker exits before its hello (seen once
    /// in CI under a parallel test load; its stderr was not kept then): a worker that cannot
    /// start at all fails both times, and the error carries both tails of its stderr.
    fn start(python: &PathBuf, slot: usize, cfg: &ExecConfig) -> Result<(Worker, WorkerInfo)> {
        match Worker::try_start(python, slot, cfg) {
            Err(StartError::Exited(first)) => {
                Worker::try_start(python, slot, cfg).map_err(|e| match e {
                    StartError::Exited(again) => Error::Exec(format!(
                        "Python worker `{}` exited before it started, twice (is it Python 3.9+?): {first}; then: {again}",
                        python.display()
                    )),
                    StartError::Other(e) => e,
                })
            }
            Err(StartError::Other(e)) => Err(e),
            Ok(w) => Ok(w),
        }
    }

    /// Starts one worker: spawn the interpreter with a scrubbed environment, drain its pipes,
    /// and wait for its hello line (the sandbox layers it set up).
    fn try_start(
        python: &PathBuf,
        slot: usize,
        cfg: &ExecConfig,
    ) -> std::result::Result<(Worker, WorkerInfo), StartError> {
        let mut cmd = Command::new(python);
        cmd.arg("-I")
            .arg("-c")
            .arg(WORKER_PY)
            .env_clear()
            .env("RSTAR_WORKER_SLOT", slot.to_string())
            .env("RSTAR_WORKER_NPROC", cfg.max_processes.to_string())
            .env("OPENBLAS_NUM_THREADS", "1")
            .env("OMP_NUM_THREADS", "1")
            .env("MKL_NUM_THREADS", "1")
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LANG", "C.UTF-8")
            .env("RSTAR_SANDBOX", cfg.sandbox.as_str())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = spawn_retrying(&mut cmd).map_err(|e| {
                StartError::Other(Error::Exec(format!(
                    "cannot start Python interpreter `{}`: {e}; install python3 or run `rstar setup-python`, or set RSTAR_PYTHON",
                    python.display()
                )))
            })?;
        let (stdin, stdout, stderr) =
            match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
                (Some(i), Some(o), Some(e)) => (i, o, e),
                _ => {
                    return Err(StartError::Other(Error::Exec(
                        "worker pipes missing".into(),
                    )))
                }
            };
        let tail = drain_stderr(stderr);
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut w = Worker {
            child,
            stdin: Some(stdin),
            lines,
            reader: Some(reader),
        };
        let hello = w.await_hello(python, &tail)?;
        let info: WorkerInfo = serde_json::from_str(&hello).map_err(|e| {
            StartError::Other(Error::Exec(format!("bad hello from worker: {e}: {hello}")))
        })?;
        Ok((w, info))
    }

    /// The worker's first line, or why it never came (timeout, or the worker exited: its status
    /// and the last lines of its stderr).
    fn await_hello(
        &mut self,
        python: &Path,
        tail: &Mutex<VecDeque<String>>,
    ) -> std::result::Result<String, StartError> {
        match self.lines.recv_timeout(Duration::from_secs(120)) {
            Ok(l) => Ok(l),
            Err(RecvTimeoutError::Timeout) => {
                self.kill();
                Err(StartError::Other(Error::Exec(format!(
                    "Python worker `{}` did not start within 120 s (is it Python 3.9+?)",
                    python.display()
                ))))
            }
            Err(RecvTimeoutError::Disconnected) => {
                // Reaped here (or killed after a grace period); `wait` then returns the status.
                self.kill();
                let status = self
                    .child
                    .wait()
                    .map_or_else(|e| e.to_string(), |s| s.to_string());
                // Its stderr reader may still be taking the last lines: a moment for them.
                std::thread::sleep(Duration::from_millis(50));
                let lines = tail.lock().unwrap_or_else(|p| p.into_inner());
                let said = Vec::from(lines.clone()).join(" | ");
                Err(StartError::Exited(format!(
                    "{status}, stderr: {}",
                    if said.is_empty() { "(empty)" } else { &said }
                )))
            }
        }
    }

    fn kill(&mut self) {
        // Closing stdin lets an idle worker exit by itself, reaping its zygote on the way; a
        // busy or hung one is killed after a short grace period (its zygote and snippet then
        // die by PR_SET_PDEATHSIG and are reaped by init).
        if self.stdin.take().is_some() {
            let until = Instant::now() + Duration::from_millis(500);
            while Instant::now() < until {
                match self.child.try_wait() {
                    Ok(None) => std::thread::sleep(Duration::from_millis(2)),
                    _ => break,
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(h) = self.reader.take() {
            let _ = h.join();
        }
    }

    /// Sends one job and waits for its reply; `Err` means the worker is unusable.
    fn exec(
        &mut self,
        id: u64,
        code: &str,
        timeout_s: f64,
        cfg: &ExecConfig,
    ) -> std::result::Result<ExecResult, String> {
        let cpu = timeout_s.ceil().max(1.0) + 1.0;
        let job = serde_json::json!({
            "id": id, "code": code, "timeout": timeout_s, "cpu": cpu,
            "mem": cfg.memory_bytes, "out_cap": cfg.output_cap,
            "nproc": cfg.max_processes, "net_ns": cfg.net_ns,
        });
        let mut line = job.to_string();
        line.push('\n');
        let stdin = self.stdin.as_mut().ok_or("worker stdin closed")?;
        stdin
            .write_all(line.as_bytes())
            .and_then(|_| stdin.flush())
            .map_err(|e| format!("worker stdin: {e}"))?;
        // The worker enforces the timeout itself; this guard only catches a hung or dead worker.
        let guard = Duration::from_secs_f64(timeout_s + 30.0);
        loop {
            match self.lines.recv_timeout(guard) {
                Ok(l) => {
                    let v: serde_json::Value =
                        serde_json::from_str(&l).map_err(|e| format!("bad reply: {e}"))?;
                    if v.get("id").and_then(|x| x.as_u64()) != Some(id) {
                        continue; // a stale reply from an abandoned job
                    }
                    return serde_json::from_value(v).map_err(|e| format!("bad reply: {e}"));
                }
                Err(RecvTimeoutError::Timeout) => return Err("worker stopped answering".into()),
                Err(RecvTimeoutError::Disconnected) => return Err("worker died".into()),
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Executor {
    /// Starts the pool; fails with `Error::Exec` if the interpreter is missing or lacks sympy
    /// (when [`ExecConfig::require_sympy`]).
    pub fn new(config: ExecConfig) -> Result<Executor> {
        let python = find_python(config.python.as_deref());
        let n = if config.workers == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            config.workers
        };
        if !config.timeout_s.is_finite() || config.timeout_s <= 0.0 {
            return Err(Error::InvalidArgument(format!(
                "timeout must be > 0, got {}",
                config.timeout_s
            )));
        }
        let (first, info) = Worker::start(&python, 0, &config)?;
        if let Some(refused) = &info.sandbox.refused {
            let (layer, reason) = info.sandbox.missing().first().map_or_else(
                || ("worker".to_string(), refused.clone()),
                |(k, l)| (k.to_string(), l.detail.clone()),
            );
            return Err(Error::Sandbox { layer, reason });
        }
        if config.require_sympy && !info.modules.get("sympy").copied().unwrap_or(false) {
            return Err(Error::Exec(format!(
                "Python `{}` ({}) cannot import sympy; run `rstar setup-python` (or `pip install sympy numpy scipy`) and/or set RSTAR_PYTHON",
                python.display(),
                info.python
            )));
        }
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
        });
        let mut threads = Vec::with_capacity(n);
        let mut first = Some(first);
        for slot in 0..n {
            let worker = match first.take() {
                Some(w) => w,
                None => Worker::start(&python, slot, &config)?.0,
            };
            let shared = Arc::clone(&shared);
            let cfg = config.clone();
            let py = python.clone();
            threads.push(std::thread::spawn(move || {
                serve(shared, worker, py, slot, cfg)
            }));
        }
        Ok(Executor {
            shared,
            threads,
            config,
            info,
            python,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &ExecConfig {
        &self.config
    }

    /// Number of workers (snippets that can run at once).
    pub fn worker_count(&self) -> usize {
        self.threads.len()
    }

    /// The interpreter in use.
    pub fn python(&self) -> &std::path::Path {
        &self.python
    }

    /// What the first worker reported (Python version, modules, sandbox layers).
    pub fn info(&self) -> &WorkerInfo {
        &self.info
    }

    /// The sandbox layers in force and the mode (also in every [`ExecResult::sandbox`]).
    pub fn sandbox(&self) -> &SandboxReport {
        &self.info.sandbox
    }

    /// Queues a snippet with the default timeout; returns at once.
    pub fn submit(&self, code: impl Into<String>) -> Ticket {
        self.submit_with_timeout(code, self.config.timeout_s)
    }

    /// Queues a snippet with its own wall-clock limit in seconds; returns at once.
    pub fn submit_with_timeout(&self, code: impl Into<String>, timeout_s: f64) -> Ticket {
        let (tx, rx) = mpsc::channel();
        let job = Job {
            code: code.into(),
            timeout_s: if timeout_s.is_finite() && timeout_s > 0.0 {
                timeout_s
            } else {
                self.config.timeout_s
            },
            reply: tx,
        };
        if let Ok(mut q) = self.shared.queue.lock() {
            q.jobs.push_back(job);
        }
        self.shared.ready.notify_one();
        Ticket { rx, done: None }
    }

    /// Runs one snippet and waits for it.
    pub fn run(&self, code: &str) -> ExecResult {
        self.submit(code).wait()
    }

    /// Runs many snippets concurrently; results in input order.
    pub fn run_many<S: AsRef<str>>(&self, codes: &[S]) -> Vec<ExecResult> {
        let tickets: Vec<Ticket> = codes.iter().map(|c| self.submit(c.as_ref())).collect();
        tickets.into_iter().map(Ticket::wait).collect()
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        if let Ok(mut q) = self.shared.queue.lock() {
            q.closed = true;
        }
        self.shared.ready.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The outcome of [`run_once`]: the JSON of `rstar exec --json` and the C ABI's `rstar_exec`.
#[derive(Debug, Clone, Serialize)]
pub struct OneShot {
    pub ok: bool,
    /// The snippet's stdout.
    pub output: String,
    pub error: Option<String>,
    pub timed_out: bool,
    pub elapsed_ms: f64,
    /// The layers in force and the mode (`weak`: the caller accepted missing layers).
    pub sandbox: SandboxReport,
}

/// Runs one snippet in a fresh single-worker executor with `config` (its `workers` ignored).
pub fn run_once(code: &str, config: ExecConfig) -> Result<OneShot> {
    let ex = Executor::new(ExecConfig {
        workers: 1,
        ..config
    })?;
    let r = ex.run(code);
    Ok(OneShot {
        ok: r.ok,
        output: r.stdout,
        error: r.error,
        timed_out: r.timed_out,
        elapsed_ms: r.elapsed_ms,
        sandbox: ex.sandbox().clone(),
    })
}

/// One dispatcher thread: owns a worker, feeds it jobs, replaces it when it dies.
fn serve(shared: Arc<Shared>, worker: Worker, python: PathBuf, slot: usize, cfg: ExecConfig) {
    let mut worker = Some(worker);
    let mut id: u64 = 0;
    loop {
        let job = {
            let Ok(mut q) = shared.queue.lock() else {
                return;
            };
            loop {
                if let Some(j) = q.jobs.pop_front() {
                    break j;
                }
                if q.closed {
                    return;
                }
                q = match shared.ready.wait(q) {
                    Ok(q) => q,
                    Err(_) => return,
                };
            }
        };
        id += 1;
        if worker.is_none() {
            worker = Worker::start(&python, slot, &cfg).ok().map(|(w, _)| w);
        }
        let started = Instant::now();
        let result = match worker.as_mut() {
            None => ExecResult::failed("ExecutorError: could not restart the Python worker"),
            Some(w) => match w.exec(id, &job.code, job.timeout_s, &cfg) {
                Ok(r) => r,
                Err(why) => {
                    // The snippet took its worker down (or the worker hung): replace it.
                    worker = None;
                    let mut r =
                        ExecResult::failed(format!("WorkerCrash: {why}; the worker was replaced"));
                    r.elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
                    r
                }
            },
        };
        let mut result = result;
        result.sandbox = cfg.sandbox;
        let _ = job.reply.send(result);
    }
}

/// `cmd.spawn()`, retried on "Text file busy": an interpreter (or wrapper script) just written is
/// still open for writing in a child that another thread of this process forked and has not yet
/// exec'd (the descriptor closes at its exec). That passes within milliseconds.
fn spawn_retrying(cmd: &mut Command) -> std::io::Result<std::process::Child> {
    const ETXTBSY: i32 = 26;
    let mut spawned = cmd.spawn();
    for attempt in 1..=5u64 {
        match &spawned {
            Err(e) if cfg!(target_os = "linux") && e.raw_os_error() == Some(ETXTBSY) => {
                std::thread::sleep(std::time::Duration::from_millis(10 * attempt));
                spawned = cmd.spawn();
            }
            _ => break,
        }
    }
    spawned
}

/// Keeps the last lines a worker writes to stderr (it writes there only when something went
/// wrong), draining the pipe for the worker's whole life so that it never fills.
fn drain_stderr(stderr: std::process::ChildStderr) -> Arc<Mutex<VecDeque<String>>> {
    let tail = Arc::new(Mutex::new(VecDeque::<String>::new()));
    let keep = Arc::clone(&tail);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let mut t = keep.lock().unwrap_or_else(|p| p.into_inner());
            if t.len() == STDERR_LINES {
                t.pop_front();
            }
            t.push_back(line.chars().take(400).collect());
        }
    });
    tail
}
