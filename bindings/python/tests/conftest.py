"""Fixtures shared by the rstar package's tests (test_rstar.py, test_ray.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The tiny model (a directory with policy/, ppm/, search.toml and heldout.jsonl):
    ``$RSTAR_TINY_MODEL``, else the repository's models/tiny; skips the test when neither has it."""
    for d in (os.environ.get("RSTAR_TINY_MODEL"), REPO / "models/tiny"):
        if d and (Path(d) / "policy/config.json").is_file():
            return Path(d)
    pytest.skip("SKIPPED: no tiny model (set RSTAR_TINY_MODEL)")
