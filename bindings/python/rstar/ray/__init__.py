"""Distributed synthesis and evaluation on Ray: many machines, one resumable output, nothing lost
when a worker dies.

The driver owns the queue of problems and is the only writer of the output. Each Ray actor holds
one loaded :class:`rstar.Solver` (models loaded once per actor) and runs the problems the driver
hands it (``in_flight`` tasks of ``batch`` problems at a time) through
``Solver.run_problems``, which returns the very line ``rstar mcts`` (annotation) or ``rstar eval``
(inference) would write for each problem: search seeds are keyed by the problem's dataset
position, so where a problem runs does not change its line. An actor that dies (its process is
killed, its node goes away) has its in-flight problems put back on the queue and is replaced; a
problem that was in flight on ``max_retries + 1`` dead workers is reported failed (a poison
input), and the run goes on. Correctness does not rest on Ray's retries: actors are created with
``max_restarts=0`` and ``max_task_retries=0``, and the driver does the bookkeeping.

Library use (inside your own Ray program, or locally)::

    import rstar.ray as rr
    spec = rr.SolverSpec(policy="models/tiny/policy", ppm="models/tiny/ppm",
                         mode="annotation")
    for r in rr.run(problems, spec, workers=4):       # problems: dicts {question, answer}
        print(r.index, r.failed or json.loads(r.line)["solved"])

``run`` yields results as they finish (any order); :func:`synthesize` and :func:`evaluate` are
the file-level runs behind ``python -m rstar.ray synth|eval`` (resumable JSONL, fsynced per line);
:class:`BatchSolver` is a callable class for Ray Data's ``map_batches`` with an actor pool.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Set, Tuple

import ray
import ray.exceptions

from .output import JsonlOutput, load_problems

__all__ = [
    "SolverSpec",
    "Result",
    "RunStats",
    "run",
    "synthesize",
    "evaluate",
    "BatchSolver",
    "JsonlOutput",
    "load_problems",
    "init",
]

#: A problem as the workers take it: its dataset position and its problem-file record.
Item = Tuple[int, Dict[str, Any]]


@dataclass
class SolverSpec:
    """What each worker loads: the arguments of :class:`rstar.Solver`. Paths must exist on every
    node (``config`` is text, shipped to the workers). ``threads`` 0: chosen by the run."""

    policy: Optional[str] = None
    ppm: Optional[str] = None
    #: Search configuration text (TOML or JSON) or None.
    config: Optional[str] = None
    mode: str = "annotation"
    threads: int = 0
    executor_workers: int = 0
    device: Optional[str] = None
    precision: str = "exact"
    weak_sandbox: bool = False
    #: Test hook: a worker whose problem's question contains this text exits at once (a poison
    #: input that kills its process). Set from ``RSTAR_RAY_TEST_EXIT_ON`` by the command line.
    exit_on: Optional[str] = None


@dataclass
class Result:
    """One finished problem: ``line`` is its output line (JSON text), or ``failed`` the reason it
    was given up on."""

    index: int
    line: Optional[str] = None
    failed: Optional[str] = None
    tries: int = 0
    question: str = ""


@dataclass
class RunStats:
    """What a run did so far (``run(..., stats=...)`` fills it in)."""

    total: int = 0
    done: int = 0
    failed: int = 0
    workers_started: int = 0
    workers_lost: int = 0
    requeued: int = 0
    started_at: float = field(default_factory=time.monotonic)
    #: When the first worker had its solver loaded (None before).
    first_ready_at: Optional[float] = None


class _Worker:
    """A Ray actor holding one loaded solver."""

    def __init__(self, spec: Dict[str, Any]):
        import rstar

        self.spec = SolverSpec(**spec)
        s = self.spec
        self.solver = rstar.Solver(
            s.policy,
            s.ppm,
            s.config,
            mode=s.mode,
            threads=s.threads,
            executor_workers=s.executor_workers or max(1, s.threads),
            device=s.device,
            precision=s.precision,
            weak_sandbox=s.weak_sandbox,
        )

    def info(self) -> Dict[str, Any]:
        """The worker's process and node (for logs, and for tests that kill it)."""
        return {
            "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id(),
            "threads": self.spec.threads,
        }

    def run(self, items: List[Item]) -> List[str]:
        if self.spec.exit_on and any(self.spec.exit_on in _question(r) for _, r in items):
            os._exit(17)  # the test hook: die as a crashing input would
        return self.solver.run_problems(items)


def _question(record: Dict[str, Any]) -> str:
    return str(record.get("question", record.get("problem", "")))


class _Slot:
    """One actor and its work in flight."""

    def __init__(self, actor: Any):
        self.actor = actor
        self.ready = False
        self.info: Dict[str, Any] = {}
        self.in_flight = 0


def init(address: Optional[str] = None, dashboard: bool = False, **kw: Any) -> None:
    """Connects to Ray unless already connected: ``address`` joins a cluster ("auto", or
    "HOST:PORT"); without it a local instance bound to 127.0.0.1 starts, without the dashboard
    unless ``dashboard``. (A cluster bound to loopback, e.g. several nodes on one machine, is
    joined with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` in the environment: Ray otherwise swaps
    127.0.0.1 for the machine's address.)"""
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, **kw)
    else:
        ray.init(
            include_dashboard=dashboard,
            dashboard_host="127.0.0.1",
            _node_ip_address="127.0.0.1",
            **kw,
        )


def default_threads(workers: int) -> int:
    """Threads per worker: the cluster's CPUs over the workers (at least 1). Each worker reserves
    that many CPUs, so Ray puts at most node CPUs / threads workers on a node."""
    cpus = float(ray.cluster_resources().get("CPU", 1))
    return max(1, int(cpus // max(1, workers)))


def run(
    problems: Iterable[Any],
    spec: SolverSpec,
    *,
    workers: int = 2,
    max_retries: int = 2,
    batch: int = 1,
    in_flight: int = 1,
    stats: Optional[RunStats] = None,
    on_event: Optional[Callable[[str], None]] = None,
    tick: Optional[Callable[[RunStats], None]] = None,
) -> Iterator[Result]:
    """Runs ``problems`` on ``workers`` Ray actors and yields one :class:`Result` per problem as
    it finishes. A problem is a problem-file record (``{"question", "answer"}``, GSM8K's or
    MATH's fields), indexed by its position, or an ``(index, record)`` pair. Needs Ray
    initialized (:func:`init`). ``on_event(text)`` gets worker starts and losses; ``tick(stats)``
    is called at least every second."""
    todo: Deque[Item] = deque(
        (p if isinstance(p, tuple) else (i, p)) for i, p in enumerate(problems)
    )
    st = stats or RunStats()
    st.total = st.total or len(todo)
    if not todo:
        return
    if spec.threads <= 0:
        spec = SolverSpec(**{**asdict(spec), "threads": default_threads(workers)})
    actor_cls = ray.remote(num_cpus=spec.threads, max_restarts=0, max_task_retries=0)(_Worker)
    sched = _Scheduler(actor_cls, spec, todo, st, max_retries, batch, in_flight, on_event)
    try:
        for _ in range(min(workers, len(todo))):
            sched.start()
        while sched.busy():
            sched.submit()
            yield from sched.collect(timeout=1.0)
            if tick:
                tick(st)
    finally:
        sched.shutdown()


class _Scheduler:
    """The driver's bookkeeping: the queue, the actors, what each has in flight, the tries."""

    def __init__(self, actor_cls, spec, todo, stats, max_retries, batch, in_flight, on_event):
        self.actor_cls, self.spec, self.todo, self.st = actor_cls, spec, todo, stats
        self.max_retries, self.batch, self.in_flight = max_retries, max(1, batch), max(1, in_flight)
        self.on_event = on_event or (lambda _t: None)
        self.slots: List[_Slot] = []
        self.waiting: Dict[Any, Tuple[_Slot, Optional[List[Item]]]] = {}
        self.deaths: Counter = Counter()
        self.start_failures = 0
        self.finished: Set[int] = set()

    def start(self) -> None:
        slot = _Slot(self.actor_cls.remote(asdict(self.spec)))
        self.slots.append(slot)
        self.waiting[slot.actor.info.remote()] = (slot, None)
        self.st.workers_started += 1

    def busy(self) -> bool:
        return bool(self.todo) or any(items for _, items in self.waiting.values())

    def submit(self) -> None:
        for slot in self.slots:
            while slot.ready and slot.in_flight < self.in_flight and self.todo:
                items = [self.todo.popleft() for _ in range(min(self.batch, len(self.todo)))]
                self.waiting[slot.actor.run.remote(items)] = (slot, items)
                slot.in_flight += 1

    def collect(self, timeout: float) -> Iterator[Result]:
        done, _ = ray.wait(list(self.waiting), num_returns=1, timeout=timeout)
        for ref in done:
            if ref not in self.waiting:  # dropped with its dead actor meanwhile
                continue
            slot, items = self.waiting.pop(ref)
            try:
                value = ray.get(ref)
            except ray.exceptions.RayTaskError as e:  # the solver raised: not a worker loss
                slot.in_flight -= 1
                yield from self._fail(items or [], _reason(e), 0)
            except ray.exceptions.RayError as e:  # the actor, its process or its node is gone
                yield from self._lost(slot, items, e)
            else:
                yield from self._finished(slot, items, value)

    def _finished(self, slot: _Slot, items: Optional[List[Item]], value: Any) -> Iterator[Result]:
        if items is None:
            slot.ready, slot.info, self.start_failures = True, value, 0
            self.st.first_ready_at = self.st.first_ready_at or time.monotonic()
            self.on_event(f"worker up: pid {value['pid']} on node {value['node'][:12]}, "
                          f"{value['threads']} threads")
            return
        slot.in_flight -= 1
        for (index, record), line in zip(items, value):
            if index in self.finished:  # cannot happen with one owner per problem; never write twice
                continue
            self.finished.add(index)
            self.st.done += 1
            yield Result(index, line=line, tries=self.deaths[index] + 1, question=_question(record))

    def _lost(self, slot: _Slot, items: Optional[List[Item]], err: Exception) -> Iterator[Result]:
        """A dead actor: every problem it had in flight goes back on the queue (or fails after
        too many deaths), and a new actor replaces it."""
        if slot not in self.slots:
            return
        self.slots.remove(slot)
        self.st.workers_lost += 1
        _kill(slot.actor)  # an unreachable one must not come back and run on
        lost = [items] + [it for r, (s, it) in list(self.waiting.items()) if s is slot]
        for r in [r for r, (s, _) in self.waiting.items() if s is slot]:
            del self.waiting[r]
        reason = _reason(err)
        self.on_event(f"worker lost (pid {slot.info.get('pid', '?')}): {reason}")
        if not slot.ready:
            self.start_failures += 1
            if self.start_failures > self.max_retries:
                raise RuntimeError(f"rstar.ray: workers fail to start: {reason}")
        for index, record in [it for group in lost if group for it in group]:
            self.deaths[index] += 1
            if self.deaths[index] > self.max_retries:
                why = f"its worker died {self.deaths[index]} times; last: {reason}"
                yield from self._fail([(index, record)], why, self.deaths[index])
            else:
                self.todo.appendleft((index, record))
                self.st.requeued += 1
        if self.todo or any(it for _, it in self.waiting.values()):
            self.start()

    def _fail(self, items: List[Item], reason: str, tries: int) -> Iterator[Result]:
        for index, record in items:
            if index in self.finished:
                continue
            self.finished.add(index)
            self.st.failed += 1
            yield Result(index, failed=reason, tries=tries, question=_question(record))

    def shutdown(self) -> None:
        for slot in self.slots:
            _kill(slot.actor)
        self.slots.clear()


def _kill(actor: Any) -> None:
    try:
        ray.kill(actor, no_restart=True)
    except Exception:  # noqa: BLE001 - already gone with its node
        pass


def _reason(e: BaseException) -> str:
    text = str(getattr(e, "cause", None) or e).strip().splitlines()
    return (text[-1] if text else type(e).__name__)[:500]


class Progress:
    """The one progress line on stderr: done / failed / rate / ETA (redrawn in place on a
    terminal, a new line every ``every_s`` seconds otherwise)."""

    def __init__(self, label: str, skipped: int = 0, every_s: float = 10.0, quiet: bool = False):
        self.label, self.skipped, self.every_s, self.quiet = label, skipped, every_s, quiet
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def line(self, st: RunStats) -> str:
        secs = max(1e-9, time.monotonic() - st.started_at)
        rate = (st.done + st.failed) / secs * 60
        left = st.total - st.done - st.failed
        eta = f"{left / rate:.1f} min" if rate > 0 else "?"
        return (f"{self.label}: {st.done}/{st.total} done, {st.failed} failed, "
                f"{self.skipped} skipped, {rate:.1f}/min, ETA {eta}, "
                f"{st.workers_started - st.workers_lost} workers ({st.workers_lost} lost)")

    def __call__(self, st: RunStats, final: bool = False) -> None:
        now = time.monotonic()
        if self.quiet or (not final and not self.tty and now - self.last < self.every_s):
            return
        self.last = now
        end = "\n" if final or not self.tty else ""
        sys.stderr.write(("\r\x1b[2K" if self.tty else "") + self.line(st) + end)
        sys.stderr.flush()

    def event(self, text: str) -> None:
        if not self.quiet:
            sys.stderr.write(("\r\x1b[2K" if self.tty else "") + f"{self.label}: {text}\n")
            sys.stderr.flush()


def _run_file(
    data: os.PathLike,
    out: os.PathLike,
    spec: SolverSpec,
    label: str,
    retry_failed: bool = False,
    quiet: bool = False,
    **kw: Any,
) -> Dict[str, Any]:
    """The file-level run: problems of ``data`` not yet in ``out`` (nor, unless
    ``retry_failed``, in its failures file) to ``out``, one fsynced line each."""
    out = Path(out)
    problems = load_problems(data)
    output = JsonlOutput(out)
    failures = JsonlOutput(failures_path(out))
    skip = output.done | (set() if retry_failed else failures.done)
    todo = [(i, r) for i, r in problems if i not in skip]
    st = RunStats(total=len(todo))
    progress = Progress(label, skipped=len(problems) - len(todo), quiet=quiet)
    try:
        for r in run(todo, spec, stats=st, on_event=progress.event, tick=progress, **kw):
            if r.line is not None:
                output.append(r.line)
            else:
                failures.append(json.dumps({"index": r.index, "question": r.question,
                                            "reason": r.failed, "tries": r.tries}))
    finally:
        progress(st, final=True)
        output.close()
        failures.close()
    now = time.monotonic()
    secs = now - st.started_at
    working = now - (st.first_ready_at or now)
    return {
        "problems": len(problems),
        "skipped": len(problems) - len(todo),
        "computed": st.done,
        "failed": st.failed,
        "workers_started": st.workers_started,
        "workers_lost": st.workers_lost,
        "requeued": st.requeued,
        "seconds": round(secs, 3),
        "per_minute": round(st.done / secs * 60, 3) if st.done else 0.0,
        # From the first loaded worker on: the rate without Ray's and the models' start-up.
        "per_minute_working": round(st.done / working * 60, 3) if st.done and working else 0.0,
        "out": str(out),
        "failures": str(failures_path(out)),
    }


def failures_path(out: os.PathLike) -> Path:
    """Where the problems given up on go: ``trees.jsonl`` -> ``trees.failed.jsonl``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.failed{out.suffix or '.jsonl'}")


def synthesize(data: os.PathLike, out: os.PathLike, spec: SolverSpec, **kw: Any) -> Dict[str, Any]:
    """``rstar mcts`` on Ray: the annotated search tree of every problem of ``data`` to ``out``
    (the JSONL ``rstar extract`` / ``rstar train`` read), resuming ``out``. Keywords: those of
    :func:`run`, ``retry_failed``, ``quiet``. Returns the run's summary."""
    spec = SolverSpec(**{**asdict(spec), "mode": "annotation"})
    return _run_file(data, out, spec, "synth", **kw)


def evaluate(data: os.PathLike, out: os.PathLike, spec: SolverSpec, **kw: Any) -> Dict[str, Any]:
    """``rstar eval`` on Ray: one result line per problem of ``data`` to ``out`` (resumed), and
    the accuracy over every line of ``out`` in the summary (``"accuracy"``)."""
    spec = SolverSpec(**{**asdict(spec), "mode": "inference"})
    summary = _run_file(data, out, spec, "eval", **kw)
    acc = Counter()
    for line in Path(out).read_text().splitlines():
        g = json.loads(line).get("graded") if line.strip() else None
        if g:
            acc["problems"] += 1
            acc.update(k for k, v in g.items() if v is True)
    summary["accuracy"] = {k: acc[k] for k in
                           ("problems", "pass1", "majority", "weighted", "ppm_best", "any")}
    return summary


class BatchSolver:
    """A callable class for Ray Data ``map_batches`` (one loaded solver per pool actor)::

        ds = ray.data.read_json("problems.jsonl")      # columns question, answer (+ index)
        out = ds.map_batches(BatchSolver, fn_constructor_args=(spec,), concurrency=4,
                             num_cpus=2, batch_size=8, batch_format="pandas")

    Each batch (pandas DataFrame or dict of columns) becomes a batch with columns ``index`` and
    ``line`` (the output line, JSON text). Rows are indexed by their ``index`` column when there is
    one (do add it: seeds are keyed by it), else by position in the batch. Ray Data retries failed
    batches itself; for exactly-once output files use :func:`synthesize`."""

    def __init__(self, spec: SolverSpec):
        self.worker = _Worker(asdict(spec))

    def __call__(self, batch: Any) -> Dict[str, List[Any]]:
        cols = {k: list(batch[k]) for k in batch.keys()}
        n = len(next(iter(cols.values()), []))
        rows = [{k: _plain(v[i]) for k, v in cols.items()} for i in range(n)]
        items = [(int(r.pop("index", i)), r) for i, r in enumerate(rows)]
        return {"index": [i for i, _ in items], "line": self.worker.run(items)}


def _plain(v: Any) -> Any:
    """A numpy scalar as the Python value (for json)."""
    return v.item() if hasattr(v, "item") else v
