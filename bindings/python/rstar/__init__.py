"""Python bindings of librstar: rStar-Math (search-based math reasoning with small language
models) through the library's C ABI, with ctypes.

    import rstar
    solver = rstar.Solver()                      # the default model, its PPM and settings
    sol = solver.solve("What is 15% of 80?")
    print(sol.answer, sol.to_dict()["trajectories"][0]["solution"])
    rstar.grade("\\frac{1}{2}", "0.5")           # True

The GIL is released while the library works (every ctypes foreign call releases it), so other
Python threads run during a solve; ``Solver.cancel()`` may be called from any of them. Callbacks
(progress, streamed text, a code runner) run with the GIL held; an exception raised in one
cancels the call and is re-raised from it.
"""

from __future__ import annotations

import ctypes
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from . import _lib

__all__ = [
    "RstarError",
    "Model",
    "Solver",
    "Solution",
    "SolverProgress",
    "Trainer",
    "TrainProgress",
    "EvolveEvent",
    "evolve",
    "grade",
    "extract_answer",
    "exec_code",
    "version",
]

PathLike = Union[str, "os.PathLike[str]"]

STATUS_NAMES = {
    0: "OK",
    1: "INVALID_ARGUMENT",
    2: "IO",
    3: "FORMAT",
    4: "UNSUPPORTED",
    5: "TOKENIZER",
    6: "EXEC",
    7: "CANCELLED",
    8: "OUT_OF_MEMORY",
    9: "DEVICE",
    100: "INTERNAL",
}
CANCELLED = 7


class RstarError(Exception):
    """A failed librstar call: ``status`` (the C ``rstar_status``), ``status_name`` and the
    library's message."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{message} [{STATUS_NAMES.get(status, status)}]")
        self.status = status
        self.status_name = STATUS_NAMES.get(status, str(status))
        self.message = message


def _check(st: int) -> None:
    if st != 0:
        raise RstarError(st, (_lib.last_error() or b"").decode("utf-8", "replace"))


def _b(s: Optional[Union[str, "os.PathLike[str]"]]) -> Optional[bytes]:
    return None if s is None else os.fsencode(s) if not isinstance(s, str) else s.encode()


def _take_string(p: ctypes.c_void_p) -> Optional[str]:
    """The library string at ``p`` as str, freed."""
    if not p.value:
        return None
    try:
        return ctypes.string_at(p.value).decode("utf-8")
    finally:
        _lib.string_free(p.value)


class _Pending:
    """The first exception a callback raised, re-raised after the C call returns."""

    def __init__(self) -> None:
        self.error: Optional[BaseException] = None

    def guard(self, f: Callable[[], Any], on_error: Any) -> Any:
        try:
            return f()
        except BaseException as e:  # noqa: BLE001 - re-raised by reraise()
            if self.error is None:
                self.error = e
            return on_error

    def reraise(self) -> None:
        if self.error is not None:
            e, self.error = self.error, None
            raise e


def _defaults(cls: Any, fill: Callable[[Any], None]) -> Any:
    """A params struct filled by its ``rstar_*_default_params``, with ``struct_size`` set first
    so that a newer library fills only the fields this package's struct has."""
    p = cls()
    p.struct_size = ctypes.sizeof(cls)
    fill(ctypes.byref(p))
    return p


def version() -> str:
    """The library's version, e.g. ``"0.1.0"``."""
    return _lib.version().decode()


def grade(pred: str, answer: str) -> bool:
    """Whether a predicted answer equals the reference answer, as the search grades (numbers,
    fractions, percentages, LaTeX, intervals, equations, multiple choice). Symmetric."""
    eq = ctypes.c_bool(False)
    _check(_lib.grade(pred.encode(), answer.encode(), ctypes.byref(eq)))
    return bool(eq.value)


def extract_answer(text: str) -> Optional[str]:
    """The final answer of a solution text (the last ``\\boxed{...}`` or "The answer is ..."),
    or None."""
    out = ctypes.c_void_p()
    _check(_lib.extract_answer(text.encode(), ctypes.byref(out)))
    return _take_string(out)


def exec_code(code: str, timeout_s: float = 10.0, weak_sandbox: bool = False) -> Dict[str, Any]:
    """Runs one Python program in librstar's sandbox (a fresh worker). Returns ``{"ok",
    "output", "error", "timed_out", "elapsed_ms", "sandbox"}``; raises RstarError (EXEC) when
    no interpreter starts or, unless ``weak_sandbox``, a sandbox layer is missing."""
    p = _defaults(_lib.ExecParams, _lib.exec_default_params)
    p.timeout_s = timeout_s
    p.weak_sandbox = 1 if weak_sandbox else 0
    out = ctypes.c_void_p()
    _check(_lib.exec_(code.encode(), ctypes.byref(p), ctypes.byref(out)))
    return json.loads(_take_string(out) or "{}")


class _Handle:
    """An owned C handle, freed by ``close()``, the context manager or the garbage collector."""

    _free: Callable[[Any], int]

    def __init__(self) -> None:
        self._h = ctypes.c_void_p()

    def _ptr(self) -> ctypes.c_void_p:
        if not self._h.value:
            raise RstarError(1, f"this {type(self).__name__} is closed")
        return self._h

    def close(self) -> None:
        """Frees the handle now; later calls raise RstarError. Idempotent."""
        h = getattr(self, "_h", None)
        if h is not None and h.value:
            type(self)._free(h)
            self._h = ctypes.c_void_p()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


class Model(_Handle):
    """A loaded model: a Hugging Face directory or a .gguf file."""

    _free = staticmethod(_lib.model_free)

    def __init__(self, path: PathLike):
        super().__init__()
        _check(_lib.model_load(_b(path), ctypes.byref(self._h)))

    @property
    def vocab_size(self) -> int:
        n = ctypes.c_uint32()
        _check(_lib.model_vocab_size(self._ptr(), ctypes.byref(n)))
        return n.value

    def generate_result(
        self,
        prompt: str,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int = 0,
        stop: Sequence[str] = (),
        chat: bool = False,
        on_text: Optional[Callable[[str], Optional[bool]]] = None,
    ) -> Dict[str, Any]:
        """As :meth:`generate`, returning the full result: ``{"ids", "text", "finish_reason",
        "stop_string", "prompt_tokens", "tokens_per_second"}``."""
        p = _defaults(_lib.GenerateParams, _lib.generate_default_params)
        p.max_new_tokens, p.temperature, p.top_k = max_new_tokens, temperature, top_k
        p.top_p, p.seed = top_p, seed
        stops = (ctypes.c_char_p * max(1, len(stop)))(*[s.encode() for s in stop])
        p.stop = ctypes.cast(stops, ctypes.POINTER(ctypes.c_char_p)) if stop else None
        p.n_stop = len(stop)
        pending = _Pending()

        def call(text: int, n: int, _user: int) -> bool:
            piece = ctypes.string_at(text, n).decode("utf-8", "replace")
            return pending.guard(lambda: on_text(piece) is not False, False)  # type: ignore[misc]

        cb = _lib.TEXT_CALLBACK(call) if on_text else _lib.TEXT_CALLBACK()
        out = ctypes.c_void_p()
        st = _lib.model_generate_text(
            self._ptr(), prompt.encode(), chat, ctypes.byref(p), cb, None, ctypes.byref(out)
        )
        pending.reraise()
        _check(st)
        return json.loads(_take_string(out) or "{}")

    def generate(self, prompt: str, max_new_tokens: int = 256, **kw: Any) -> str:
        """Generates a continuation of ``prompt`` (greedy unless ``temperature`` > 0) and returns
        its text. ``on_text(piece)`` streams text as it is final; returning False cancels
        (RstarError CANCELLED). Other keywords: ``temperature``, ``top_k``, ``top_p``, ``seed``,
        ``stop``, ``chat`` (render through the model's chat template)."""
        return self.generate_result(prompt, max_new_tokens=max_new_tokens, **kw)["text"]


@dataclass
class Solution:
    """The answer to one question (``Solver.solve``)."""

    question: str
    #: The PPM-best answer, or None.
    answer: Optional[str]
    pass1: Optional[str] = None
    majority: Optional[str] = None
    weighted: Optional[str] = None
    trajectories: List[Dict[str, Any]] = field(default_factory=list)
    stats: Dict[str, Any] = field(default_factory=dict)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> Dict[str, Any]:
        """The library's full result (also ``k``, ``engine`` counters)."""
        return dict(self.raw)


@dataclass
class SolverProgress:
    """Progress of ``Solver.run_dataset``."""

    done: int
    total: int
    solved: int
    rollouts: int
    tokens: int
    elapsed_secs: float


#: A code runner: ``(code, timeout_s) -> (ok, output, error)``.
CodeRunner = Callable[[str, float], Tuple[bool, str, Optional[str]]]


class Solver(_Handle):
    """A policy (+ optional PPM) with a search configuration.

    ``policy=None`` is the self-evolved default model with its PPM and search settings.
    ``config`` is the search configuration: a dict, or JSON/TOML text (keys of ``rstar
    --config``: ``search``, ``rollouts``, ``width``, ``temperature``, ...). ``mode`` is
    ``"inference"`` (test time) or ``"annotation"`` (MCTS data synthesis; needs ``policy``).
    ``code_runner(code, timeout_s) -> (ok, output, error)`` replaces the sandboxed executor.
    """

    _free = staticmethod(_lib.solver_free)

    def __init__(
        self,
        policy: Optional[PathLike] = None,
        ppm: Optional[PathLike] = None,
        config: Optional[Union[str, Mapping[str, Any]]] = None,
        *,
        device: Optional[str] = None,
        precision: str = "exact",
        threads: int = 0,
        executor_workers: int = 0,
        step_timeout_s: float = 0.0,
        step_memory_bytes: int = 0,
        mode: str = "inference",
        weak_sandbox: bool = False,
        code_runner: Optional[CodeRunner] = None,
    ):
        super().__init__()
        if precision not in ("exact", "fast"):
            raise ValueError("precision must be 'exact' or 'fast'")
        if mode not in ("inference", "annotation"):
            raise ValueError("mode must be 'inference' or 'annotation'")
        if config is not None and not isinstance(config, str):
            config = json.dumps(dict(config))
        p = _defaults(_lib.SolverParams, _lib.solver_default_params)
        p.policy, p.ppm, p.config, p.device = _b(policy), _b(ppm), _b(config), _b(device)
        p.precision = 0 if precision == "exact" else 1
        p.threads, p.executor_workers = threads, executor_workers
        p.step_timeout_s, p.step_memory_bytes = step_timeout_s, step_memory_bytes
        p.mode = 0 if mode == "inference" else 1
        p.weak_sandbox = 1 if weak_sandbox else 0
        self._pending = _Pending()
        self._runner = None
        if code_runner is not None:
            self._runner = _lib.CODE_RUNNER(self._code_runner_trampoline(code_runner))
            p.code_runner = self._runner
        _check(_lib.solver_new_with_params(ctypes.byref(p), ctypes.byref(self._h)))

    def _code_runner_trampoline(self, runner: CodeRunner) -> Callable[..., None]:
        pending = self._pending

        def call(code: int, n: int, timeout_s: float, result: int, _user: int) -> None:
            def run() -> None:
                ok, output, error = runner(ctypes.string_at(code, n).decode(), timeout_s)
                _lib.code_result_set(
                    result, bool(ok), (output or "").encode(), None if error is None else error.encode()
                )

            pending.guard(run, None)

        return call

    def solve(self, question: str) -> Solution:
        """Solves one question with the configured search; the GIL is released meanwhile."""
        out = ctypes.c_void_p()
        st = _lib.solver_solve(self._ptr(), question.encode(), ctypes.byref(out))
        self._pending.reraise()
        _check(st)
        d = json.loads(_take_string(out) or "{}")
        return Solution(
            question=d.get("question", question),
            answer=d.get("answer"),
            pass1=d.get("pass1"),
            majority=d.get("majority"),
            weighted=d.get("weighted"),
            trajectories=d.get("trajectories", []),
            stats=d.get("stats", {}),
            raw=d,
        )

    def run_dataset(
        self,
        path: PathLike,
        out: Optional[PathLike] = None,
        progress: Optional[Callable[[SolverProgress], Optional[bool]]] = None,
        limit: int = 0,
    ) -> Dict[str, Any]:
        """Runs a problem file (JSON list or JSONL of ``{question, answer}``). Inference mode:
        evaluates the first ``limit`` problems (0 = all), per-problem lines to ``out`` when
        given. Annotation mode: writes search trees to ``out`` (required), resuming a partial
        file. ``progress(p)`` returning False (or raising, e.g. KeyboardInterrupt) cancels.
        Returns the summary."""
        pending = _Pending()

        def call(p: Any, _user: int) -> bool:
            c = p.contents
            sp = SolverProgress(c.done, c.total, c.solved, c.rollouts, c.tokens, c.elapsed_secs)
            return pending.guard(lambda: progress(sp) is not False, False)  # type: ignore[misc]

        cb = _lib.SOLVER_CALLBACK(call) if progress else _lib.SOLVER_CALLBACK()
        summary = ctypes.c_void_p()
        st = _lib.solver_run_dataset(
            self._ptr(), _b(path), limit, _b(out), cb, None, ctypes.byref(summary)
        )
        pending.reraise()
        self._pending.reraise()
        _check(st)
        return json.loads(_take_string(summary) or "{}")

    def run_problems(self, problems: Sequence[Tuple[int, Mapping[str, Any]]]) -> List[str]:
        """Searches ``problems`` together and returns their output lines (JSON text, no
        newline), in order, for a caller that writes the output file itself (``rstar.ray``).
        Each problem is ``(index, record)``: its position in its dataset (seeds are keyed by it,
        so the line equals what ``run_dataset`` writes for it) and a problem-file record
        (``{"question", "answer"}``, GSM8K's or MATH's own fields). Annotation mode: the tree
        records of ``rstar mcts``; inference mode: the per-problem results of ``rstar eval``."""
        items = [{"index": int(i), "problem": dict(r)} for i, r in problems]
        out = ctypes.c_void_p()
        st = _lib.solver_run_problems(self._ptr(), json.dumps(items).encode(), ctypes.byref(out))
        self._pending.reraise()
        _check(st)
        return (_take_string(out) or "").splitlines()

    def cancel(self) -> None:
        """Stops the running (or the next) ``solve``/``run_dataset``; safe from any thread."""
        if self._h.value:
            _lib.solver_cancel(self._h)


@dataclass
class TrainProgress:
    """Progress after an optimizer step."""

    epoch: int
    step: int
    total_steps: int
    loss: float
    grad_norm: float
    lr: float
    tokens: int
    tokens_per_sec: float
    elapsed_secs: float
    eta_secs: float


class Trainer(_Handle):
    """SFT of a policy or PPM training (``config["task"]``: "sft" or "ppm"), with the keys of ``rstar train
    --config`` plus ``data`` (dataset path) and ``state_dir`` (resumable state)."""

    _free = staticmethod(_lib.trainer_free)

    def __init__(self, model_dir: PathLike, config: Optional[Mapping[str, Any]] = None):
        super().__init__()
        cfg = json.dumps(dict(config or {})).encode()
        _check(_lib.trainer_new(_b(model_dir), cfg, ctypes.byref(self._h)))

    def load_data(self, path: PathLike) -> int:
        """Loads (replaces) the dataset; returns the number of usable examples."""
        n = ctypes.c_size_t()
        _check(_lib.trainer_load_data(self._ptr(), _b(path), ctypes.byref(n)))
        return n.value

    def _run(self, f: Callable[..., int], progress: Optional[Callable[[TrainProgress], Any]]) -> None:
        pending = _Pending()

        def call(p: Any, _user: int) -> bool:
            c = p.contents
            tp = TrainProgress(
                c.epoch, c.step, c.total_steps, c.loss, c.grad_norm, c.lr, c.tokens,
                c.tokens_per_sec, c.elapsed_secs, c.eta_secs,
            )
            return pending.guard(lambda: progress(tp) is not False, False)  # type: ignore[misc]

        cb = _lib.TRAIN_CALLBACK(call) if progress else _lib.TRAIN_CALLBACK()
        st = f(cb)
        pending.reraise()
        _check(st)

    def step(self, n: int = 1, progress: Optional[Callable[[TrainProgress], Any]] = None) -> None:
        """Runs up to ``n`` optimizer steps; ``progress`` returning False cancels."""
        self._run(lambda cb: _lib.trainer_step(self._ptr(), n, cb, None), progress)

    def epoch(self, progress: Optional[Callable[[TrainProgress], Any]] = None) -> None:
        """Runs the rest of the current epoch."""
        self._run(lambda cb: _lib.trainer_epoch(self._ptr(), cb, None), progress)

    @property
    def finished(self) -> bool:
        out = ctypes.c_bool()
        _check(_lib.trainer_finished(self._ptr(), ctypes.byref(out)))
        return bool(out.value)

    def save(self, directory: PathLike) -> None:
        """Saves the model as a Hugging Face directory."""
        _check(_lib.trainer_save(self._ptr(), _b(directory)))

    def cancel(self) -> None:
        """Stops the running step/epoch; safe from any thread."""
        if self._h.value:
            _lib.trainer_cancel(self._h)


EVOLVE_STAGES = ("mcts", "extract", "sft", "ppm", "eval")
EVOLVE_KINDS = ("stage", "problems", "train", "round")


@dataclass
class EvolveEvent:
    """An event of :func:`evolve`: ``kind`` is "stage" (``skipped`` when done by an earlier run),
    "problems" (``done`` of ``total``), "train" (``train`` holds the step's progress) or "round"
    (``row`` holds the finished round's row of the per-round table)."""

    kind: str
    round: int
    stage: str
    skipped: bool = False
    done: int = 0
    total: int = 0
    train: Optional[TrainProgress] = None
    row: Optional[Dict[str, Any]] = None


def evolve(
    policy: PathLike,
    data: PathLike,
    workdir: PathLike,
    rounds: int = 2,
    config: Optional[Mapping[str, Any]] = None,
    eval_data: Optional[PathLike] = None,
    replay_data: Optional[PathLike] = None,
    threads: int = 0,
    precision: str = "exact",
    progress: Optional[Callable[[EvolveEvent], Any]] = None,
) -> List[Dict[str, Any]]:
    """Runs (or resumes, in ``workdir``) self-evolution rounds as ``rstar evolve`` does: MCTS
    synthesis, extraction, policy SFT, PPM training, evaluation. ``config`` holds the keys of
    ``rstar evolve --config``; ``progress`` returning False cancels (RstarError CANCELLED; calling
    again with the same ``workdir`` resumes). Returns the per-round table."""
    p = _defaults(_lib.EvolveParams, _lib.evolve_default_params)
    p.policy, p.data, p.workdir = _b(policy), _b(data), _b(workdir)
    p.eval_data, p.replay_data = _b(eval_data), _b(replay_data)
    p.rounds = rounds
    cfg = json.dumps(dict(config)).encode() if config is not None else None
    p.config = cfg
    p.threads = threads
    p.precision = {"exact": 0, "fast": 1}[precision]
    pending = _Pending()

    def call(e: Any, _user: int) -> bool:
        c = e.contents
        ev = EvolveEvent(EVOLVE_KINDS[c.kind], c.round, EVOLVE_STAGES[c.stage], bool(c.skipped), c.done, c.total)
        if ev.kind == "train":
            t = c.train
            ev.train = TrainProgress(
                t.epoch, t.step, t.total_steps, t.loss, t.grad_norm, t.lr, t.tokens,
                t.tokens_per_sec, t.elapsed_secs, t.eta_secs,
            )
        if ev.kind == "round":
            ev.row = json.loads(c.round_json.decode())
        return pending.guard(lambda: progress(ev) is not False, False)  # type: ignore[misc]

    cb = _lib.EVOLVE_CALLBACK(call) if progress else _lib.EVOLVE_CALLBACK()
    out = ctypes.c_void_p()
    st = _lib.evolve_run(ctypes.byref(p), cb, None, ctypes.byref(out))
    pending.reraise()
    _check(st)
    return json.loads(_take_string(out) or "[]")
