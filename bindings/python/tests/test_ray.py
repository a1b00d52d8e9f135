"""Distributed synthesis on a local two-node Ray cluster (``ray.cluster_utils.Cluster``, loopback
only, one CPU per node) with the tiny model (``$RSTAR_TINY_MODEL``, else
models/tiny): ``python -m rstar.ray synth`` over 2 workers while one worker process is
SIGKILLed mid-run; then a rerun that must compute nothing; then a poison problem that kills every
worker it reaches and must end up in the failures file while the run goes on.

The trees are checked against what the search guarantees (each problem exactly once; per node
``q_value = value_sum / visit_count`` in [-1, 1]; answer terminals carry the reward +1 / -1 of
their grade, invalid terminals -1) and against an independent single-process ``rstar mcts`` run
on the same problems (``$RSTAR_BIN``): the same lines, byte for byte.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

# Every node and the drivers on 127.0.0.1 only (Ray otherwise uses the machine's address).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
try:
    from ray.cluster_utils import Cluster
except ImportError:
    if os.environ.get("RSTAR_REQUIRE_RAY"):
        raise
    pytest.skip("SKIPPED: ray is not installed (pip install ./bindings/python[ray]; .ci/ray.sh)",
                allow_module_level=True)

SMALL = {"rollouts": 2, "width": 2, "max_depth": 4, "max_step_tokens": 48}
PROBLEMS = 12


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    yield c
    c.shutdown()


@pytest.fixture(scope="module")
def setup(tmp_path_factory, model_dir: Path) -> Dict[str, Path]:
    """The problems (the tiny model's held-out file, or its problem format) and a search
    configuration: the model's own settings with a small search."""
    model = model_dir
    d = tmp_path_factory.mktemp("ray")
    held = model / "heldout.jsonl"
    lines = held.read_text().splitlines()[:PROBLEMS] if held.is_file() else [
        json.dumps({"question": f"What is {a} plus {a + 1}?", "answer": str(2 * a + 1)})
        for a in range(PROBLEMS)
    ]
    assert len(lines) == PROBLEMS
    (d / "problems.jsonl").write_text("\n".join(lines) + "\n")
    own = (model / "search.toml").read_text() if (model / "search.toml").is_file() else ""
    keep = [l for l in own.splitlines() if l.split("=")[0].strip() not in SMALL]
    (d / "search.toml").write_text(
        "\n".join(keep + [f"{k} = {v}" for k, v in SMALL.items()]) + "\n"
    )
    return {"dir": d, "model": model, "data": d / "problems.jsonl", "config": d / "search.toml"}


def synth_cmd(s: Dict[str, Path], out: Path, address: str, *extra: str) -> List[str]:
    m = s["model"]
    return [sys.executable, "-m", "rstar.ray", "synth", "--policy", str(m / "policy"),
            "--ppm", str(m / "ppm"), "--config", str(s["config"]), "--data", str(s["data"]),
            "--out", str(out), "--workers", "2", "--address", address, *extra]


class Proc:
    """A child process whose stderr lines are collected as they come."""

    def __init__(self, cmd: List[str], env: Dict[str, str] = None):
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env={**os.environ, **(env or {})})
        self.err: List[str] = []
        self.t = threading.Thread(target=lambda: self.err.extend(iter(self.p.stderr.readline, "")))
        self.t.start()

    def pids(self) -> List[int]:
        return [int(m.group(1)) for l in list(self.err) for m in [re.search(r"worker up: pid (\d+)", l)] if m]

    def finish(self, timeout: float = 240) -> Tuple[int, dict]:
        out, _ = self.p.communicate(timeout=timeout)
        self.t.join()
        last = [l for l in out.splitlines() if l.startswith("{")]
        assert last, f"no summary; stderr:\n{''.join(self.err)[-3000:]}"
        return self.p.returncode, json.loads(last[-1])


def lines_of(path: Path) -> List[str]:
    return path.read_text().splitlines() if path.exists() else []


def check_trees(lines: List[str]) -> None:
    """Each problem exactly once, and the Q-values the search guarantees."""
    idx = [json.loads(l)["index"] for l in lines]
    assert sorted(idx) == list(range(PROBLEMS)), f"indices {sorted(idx)}"
    for l in lines:
        r = json.loads(l)
        assert r["rstar"], r["index"]
        for tag, n in r["rstar"].items():
            where = f"problem {r['index']} node {tag}"
            if n["visit_count"] == 0:
                assert n["q_value"] == 0.0, where
                continue
            assert abs(n["q_value"] - n["value_sum"] / n["visit_count"]) < 1e-9, where
            assert -1.0 <= n["q_value"] <= 1.0, where
            if n["end"] == "answer" and isinstance(n["correct"], bool):
                assert n["value"] == (1.0 if n["correct"] else -1.0), where
            if n["end"] in ("errors", "depth", "length", "unparsed"):
                assert n["value"] == -1.0, where


def test_synth_survives_a_killed_worker_and_resumes(cluster, setup) -> None:
    out = setup["dir"] / "trees.jsonl"
    t0 = time.monotonic()
    assert cluster.address.startswith("127.0.0.1:"), cluster.address
    proc = Proc(synth_cmd(setup, out, cluster.address))
    # Kill one worker once both are up and the first tree is written (others still to come).
    while (len(proc.pids()) < 2 or not lines_of(out)) and proc.p.poll() is None \
            and time.monotonic() - t0 < 180:
        time.sleep(0.05)
    pids = proc.pids()
    assert len(pids) == 2, f"workers {pids}; stderr:\n{''.join(proc.err)[-3000:]}"
    os.kill(pids[0], signal.SIGKILL)
    written_at_kill = len(lines_of(out))
    rc, summary = proc.finish()
    print(f"killed worker pid {pids[0]} with {written_at_kill}/{PROBLEMS} trees written; "
          f"summary {summary}; {time.monotonic() - t0:.1f} s")
    assert written_at_kill < PROBLEMS, "the kill came after the run: not mid-run"
    assert rc == 0 and summary["computed"] == PROBLEMS and summary["failed"] == 0, summary
    assert summary["workers_lost"] == 1 and summary["workers_started"] == 3, summary
    lines = lines_of(out)
    assert len(lines) == PROBLEMS, len(lines)
    check_trees(lines)
    before = out.read_bytes()

    # The rerun starts no worker, computes nothing and leaves the file byte for byte.
    rc, again = Proc(synth_cmd(setup, out, cluster.address)).finish()
    assert rc == 0 and again["computed"] == 0 and again["skipped"] == PROBLEMS, again
    assert again["workers_started"] == 0, again
    assert out.read_bytes() == before

    # An independent single-process run (`rstar mcts`) writes the same lines.
    rstar_bin = os.environ.get("RSTAR_BIN")
    if not rstar_bin:
        print("SKIPPED: the comparison with `rstar mcts` (set RSTAR_BIN)")
        return
    ref = setup["dir"] / "reference.jsonl"
    m = setup["model"]
    subprocess.run([rstar_bin, "mcts", "--policy", str(m / "policy"), "--ppm", str(m / "ppm"),
                    "--config", str(setup["config"]), "--data", str(setup["data"]),
                    "--out", str(ref), "--quiet"], check=True, timeout=240)
    assert sorted(lines_of(ref)) == sorted(lines)


def test_eval_matches_rstar_eval(cluster, setup) -> None:
    """``eval`` writes the per-problem results ``rstar eval`` writes (but for the wall time)."""
    d = setup["dir"]
    data = d / "eval.jsonl"
    data.write_text("\n".join(setup["data"].read_text().splitlines()[:4]) + "\n")
    out = d / "eval-results.jsonl"
    m = setup["model"]
    cmd = [sys.executable, "-m", "rstar.ray", "eval", "--policy", str(m / "policy"), "--ppm",
           str(m / "ppm"), "--config", str(setup["config"]), "--data", str(data), "--out",
           str(out), "--workers", "2", "--address", cluster.address]
    rc, summary = Proc(cmd).finish()
    assert rc == 0 and summary["computed"] == 4 and summary["accuracy"]["problems"] == 4, summary
    rstar_bin = os.environ.get("RSTAR_BIN")
    if not rstar_bin:
        print("SKIPPED: the comparison with `rstar eval` (set RSTAR_BIN)")
        return
    ref = d / "eval-reference.jsonl"
    subprocess.run([rstar_bin, "eval", "--policy", str(m / "policy"), "--ppm", str(m / "ppm"),
                    "--config", str(setup["config"]), "--data", str(data), "--out", str(ref),
                    "--quiet"], check=True, timeout=240, stdout=subprocess.DEVNULL)
    untimed = lambda ls: sorted(json.dumps({**json.loads(l), "seconds": 0}) for l in ls)  # noqa
    assert untimed(lines_of(out)) == untimed(lines_of(ref))


def test_batch_solver_for_ray_data(setup) -> None:
    """``BatchSolver`` (Ray Data ``map_batches``) on a batch of columns (numpy arrays when numpy
    is installed, as Ray Data's default format), rows out of order: each row's line is the one the
    library's own dataset run writes for its index."""
    try:
        import numpy as np
    except ImportError:
        np = None
    import rstar
    from rstar.ray import BatchSolver, SolverSpec

    m, d = setup["model"], setup["dir"]
    recs = [json.loads(l) for l in setup["data"].read_text().splitlines()[:2]]
    spec = SolverSpec(policy=str(m / "policy"), ppm=str(m / "ppm"),
                      config=setup["config"].read_text(), threads=1)
    arr = np.array if np else list
    batch = {"index": arr([1, 0]), "question": arr([r["question"] for r in recs[::-1]]),
             "answer": arr([str(r["answer"]) for r in recs[::-1]])}
    got = BatchSolver(spec)(batch)
    data, ref = d / "two.jsonl", d / "two-trees.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in recs))
    with rstar.Solver(m / "policy", m / "ppm", setup["config"].read_text(), mode="annotation",
                      threads=1) as s:
        s.run_dataset(data, ref)
    want = lines_of(ref)
    assert list(got["index"]) == [1, 0] and got["line"] == [want[1], want[0]]


def test_output_resumes_as_the_library_does(tmp_path: Path) -> None:
    """The rules of src/data/trees.rs `resume_point`: complete lines count, a torn last line
    (no newline, or not JSON) is cut off on open, a bad line before the last is an error naming
    it, a line without `index` too."""
    from rstar.ray.output import JsonlOutput

    f = tmp_path / "o.jsonl"
    f.write_bytes(b'{"index":3,"x":1}\n\n{"index":5}\n{"index":7,"tor')
    o = JsonlOutput(f)
    assert o.done == {3, 5} and f.read_bytes() == b'{"index":3,"x":1}\n\n{"index":5}\n'
    o.append('{"index":7}')
    o.close()
    assert f.read_bytes().endswith(b'{"index":5}\n{"index":7}\n')
    f.write_bytes(b'{"index":1}\n{"index":2,\n')
    assert JsonlOutput(f).done == {1} and f.read_bytes() == b'{"index":1}\n'
    for bad, what in ((b'{"index":1}\nnot json\n{"index":2}\n', "line 2"),
                      (b'{"index":1}\n{"i":2}\n', "line 2: field `index` missing")):
        f.write_bytes(bad)
        with pytest.raises(ValueError, match=what):
            JsonlOutput(f)


def test_poison_problem_is_recorded_failed_and_the_run_goes_on(cluster, setup) -> None:
    d = setup["dir"]
    data = d / "poison.jsonl"
    good = setup["data"].read_text().splitlines()[:3]
    poison = json.dumps({"question": "POISON: what is 1 + 1?", "answer": "2"})
    data.write_text("\n".join([good[0], poison, good[1], good[2]]) + "\n")
    out = d / "poison-trees.jsonl"
    cmd = synth_cmd({**setup, "data": data}, out, cluster.address, "--max-retries", "1")
    rc, summary = Proc(cmd, {"RSTAR_RAY_TEST_EXIT_ON": "POISON"}).finish()
    print(f"poison run: {summary}")
    assert rc == 3 and summary["failed"] == 1 and summary["computed"] == 3, summary
    # The poison killed its worker twice (max-retries 1): given up on, the rest done.
    assert summary["workers_lost"] == 2, summary
    assert sorted(json.loads(l)["index"] for l in lines_of(out)) == [0, 2, 3]
    failed = [json.loads(l) for l in lines_of(d / "poison-trees.failed.jsonl")]
    assert [(f["index"], f["tries"]) for f in failed] == [(1, 2)], failed
    assert "died 2 times" in failed[0]["reason"], failed
    # A rerun skips the failed problem (no worker killed again) unless told to retry it.
    rc, again = Proc(cmd, {"RSTAR_RAY_TEST_EXIT_ON": "POISON"}).finish()
    assert rc == 0 and again["computed"] == 0 and again["workers_started"] == 0, again
