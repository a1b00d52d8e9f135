"""``python -m rstar.ray synth|eval``: ``rstar mcts`` / ``rstar eval`` spread over Ray actors.

    python -m rstar.ray synth --policy P [--ppm Q] [--config S.toml] --data FILE --out OUT.jsonl \\
        [--workers N] [--threads T] [--address ADDR]
    python -m rstar.ray eval  [--policy P] [--ppm Q] [--config S.toml] --data FILE --out R.jsonl ...

Without ``--address`` a local Ray instance starts (127.0.0.1, no dashboard unless
``--dashboard``); ``--address auto`` or ``HOST:PORT`` joins a cluster. The summary is one JSON
line on stdout (eval: then the accuracy line of ``rstar eval``); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import List, Optional

from . import SolverSpec, evaluate, init, synthesize


def parse(argv: Optional[List[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m rstar.ray", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    for name, help_ in (("synth", "MCTS data synthesis (rstar mcts): search trees to --out"),
                        ("eval", "evaluation (rstar eval): per-problem results to --out")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--policy", help="policy model directory or .gguf (synth: required)",
                       required=name == "synth")
        p.add_argument("--ppm", help="process preference model directory")
        p.add_argument("--config", help="search settings file (TOML or JSON), read here and "
                       "shipped to the workers")
        p.add_argument("--data", required=True, help="problem file (JSON list or JSONL)")
        p.add_argument("--out", required=True, help="output JSONL (resumed when it exists)")
        p.add_argument("--workers", type=int, default=2, help="Ray actors (default 2)")
        p.add_argument("--threads", type=int, default=0,
                       help="threads (and reserved CPUs) per actor; 0: cluster CPUs / workers")
        p.add_argument("--max-retries", type=int, default=2,
                       help="a problem whose worker died more than this often is written as "
                       "failed (OUT's .failed.jsonl)")
        p.add_argument("--batch", type=int, default=1, help="problems per task (lock-step)")
        p.add_argument("--in-flight", type=int, default=1, help="tasks queued per actor")
        p.add_argument("--retry-failed", action="store_true",
                       help="rerun problems the failures file lists")
        p.add_argument("--address", help="Ray cluster to join (auto, HOST:PORT)")
        p.add_argument("--dashboard", action="store_true",
                       help="start Ray's dashboard with the local instance (127.0.0.1)")
        p.add_argument("--device", help="compute device of the workers (cpu, cuda:0)")
        p.add_argument("--precision", choices=("exact", "fast"), default="exact")
        p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return ap.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    a = parse(argv)
    abspath = lambda p: None if p is None else os.path.abspath(p)  # noqa: E731
    spec = SolverSpec(
        policy=abspath(a.policy),
        ppm=abspath(a.ppm),
        config=Path(a.config).read_text() if a.config else None,
        threads=a.threads,
        device=a.device,
        precision=a.precision,
        exit_on=os.environ.get("RSTAR_RAY_TEST_EXIT_ON") or None,
    )
    init(a.address, dashboard=a.dashboard, log_to_driver=not a.quiet)
    run = synthesize if a.command == "synth" else evaluate
    summary = run(a.data, a.out, spec, workers=a.workers, max_retries=a.max_retries,
                  batch=a.batch, in_flight=a.in_flight, retry_failed=a.retry_failed,
                  quiet=a.quiet)
    print(json.dumps(summary), flush=True)
    if a.command == "eval":
        acc = summary["accuracy"]
        n = max(1, acc["problems"])
        print(f"problems {acc['problems']} | pass@1 {acc['pass1'] / n:.4f} | "
              f"maj@k {acc['majority'] / n:.4f} | ppm-weighted@k {acc['weighted'] / n:.4f} | "
              f"ppm-best {acc['ppm_best'] / n:.4f} | any {acc['any'] / n:.4f}")
    return 3 if summary["failed"] else 0  # finished, with problems given up on


if __name__ == "__main__":
    sys.exit(main())
