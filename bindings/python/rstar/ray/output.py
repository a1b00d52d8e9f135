"""The files of a distributed run, by the library's rules: problem files read as
``rstar::data::load_problems`` reads them (ids are record positions), and resumable JSONL outputs
as ``rstar mcts`` keeps them (``src/data/trees.rs`` ``resume_point``, ``src/data/durable.rs``
``append_line``): a torn last line is cut off on open, a complete line without an ``index`` is
an error naming the line, every appended line is flushed and fsynced, and a failed write is cut
back so the file holds only whole lines."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Set, Tuple


def load_problems(path: os.PathLike) -> List[Tuple[int, Dict[str, Any]]]:
    """The records of a problem file (a JSON list, ``{"example": [...]}`` or JSONL; blank lines
    skipped) with their ids, the record positions. Fields are read by the library (the workers)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        whole = json.loads(text)
    except ValueError:
        whole = None
    if isinstance(whole, dict) and isinstance(whole.get("example"), list):
        whole = whole["example"]
    if isinstance(whole, list):
        records = whole
    else:
        records = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except ValueError as e:
                    raise ValueError(f"{path}: line {n}: {e}") from None
    for n, r in enumerate(records, 1):
        if not isinstance(r, dict):
            raise ValueError(f"{path}: record {n}: not a JSON object")
    return list(enumerate(records))


def resume_point(data: bytes, path: os.PathLike) -> Tuple[int, Set[int]]:
    """Where the complete records of an output file end (a torn last line dropped) and the
    indices they hold."""
    done: Set[int] = set()
    keep = start = 0
    line_no = 0
    while start < len(data):
        line_no += 1
        nl = data.find(b"\n", start)
        if nl < 0:
            break  # torn: no newline
        line, end = data[start:nl], nl + 1
        if line.strip():
            try:
                v = json.loads(line)
            except ValueError as e:
                if end == len(data):
                    break  # only the last line may be torn
                raise ValueError(f"{path}: line {line_no}: {e}") from None
            idx = v.get("index") if isinstance(v, dict) else None
            if not isinstance(idx, int) or isinstance(idx, bool) or idx < 0:
                raise ValueError(f"{path}: line {line_no}: field `index` missing")
            done.add(idx)
        keep = start = end
    return keep, done


class JsonlOutput:
    """An output file opened for resuming: ``done`` holds the indices already there; ``append``
    writes one whole line durably."""

    def __init__(self, path: os.PathLike):
        self.path = Path(path)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        data = b""
        while True:
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                break
            data += chunk
        keep, self.done = resume_point(data, self.path)
        if keep < len(data):
            os.ftruncate(self.fd, keep)
            os.fsync(self.fd)

    def append(self, line: str) -> None:
        """Appends ``line`` (a newline is added) and fsyncs; on a failed write the file is cut
        back to its previous end and the error raised."""
        data = (line.rstrip("\n") + "\n").encode("utf-8")
        end = os.lseek(self.fd, 0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]
            os.fsync(self.fd)
        except OSError:
            os.ftruncate(self.fd, end)
            raise
        idx = json.loads(data).get("index")
        if isinstance(idx, int):
            self.done.add(idx)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:
        self.close()
