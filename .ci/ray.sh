#!/usr/bin/env bash
# Distributed synthesis on Ray (issue 31): installs the Python package with its pinned Ray
# (`pip install ./bindings/python[ray]`) into a temporary venv and runs bindings/python/tests/
# test_ray.py: a local two-node Ray cluster (loopback, 1 CPU per node) synthesizing 12 problems
# with the tiny model over 2 workers while one worker is SIGKILLed, a rerun that computes nothing,
# `eval`, and a poison problem; trees compared with `rstar mcts` (target/debug/rstar).
# Expects `cargo build` done.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
t0=$SECONDS

. .ci/tiny.sh
find_tiny

work=$(mktemp -d /tmp/rstar-ray.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "== ray: venv, pip install ./bindings/python[ray] (pinned Ray from PyPI)"
python3 -m venv "$work/py"
"$work/py/bin/pip" install -q --disable-pip-version-check pytest
RSTAR_LIB="$root/target/debug/librstar.so" "$work/py/bin/pip" install -q \
    --disable-pip-version-check "./bindings/python[ray]"
echo "== ray: two-node cluster tests ($((SECONDS - t0)) s so far)"
# From the temp dir, so that `import rstar` is the installed package; Ray without its dashboard
# and usage reporting, bound to loopback by the test's cluster.
(cd "$work" && env -u LD_LIBRARY_PATH RSTAR_REQUIRE_RAY=1 RSTAR_BIN="$root/target/debug/rstar" \
    RAY_USAGE_STATS_ENABLED=0 "$work/py/bin/python" -m pytest -q -s -rs -p no:cacheprovider \
    "$root/bindings/python/tests/test_ray.py")
echo "== ray: all passed in $((SECONDS - t0)) s"
