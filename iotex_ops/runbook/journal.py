"""Journals: append-only JSON lines, flushed and fsynced per event, read back after a crash.

A run's journal (`<state>/runs/<run_id>/journal.jsonl`, see store.py) holds the typed events of events.py;
alertd keeps its own decisions in one too. Every line has `seq`, `ts` (unix seconds) and `event`. A torn
last line (the writer killed mid-write) is ignored when reading.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from iotex_ops.runbook.model import RunbookError

OUTPUT_TAIL_LINES = 20


def _default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, set | frozenset | tuple):
        return list(o)
    return repr(o)


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        existing = read(path) if path.exists() else []
        self._seq = existing[-1]["seq"] if existing else 0
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8")
        if existing and not path.read_bytes().endswith(b"\n"):
            self._file.write("\n")  # a torn last line stays torn; the next event starts clean

    def write(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append one event; returns it as it was written (as `read` will give it back)."""
        with self._lock:
            self._seq += 1
            doc = {"seq": self._seq, "ts": round(time.time(), 3), "event": event, **fields}
            line = json.dumps(doc, default=_default, separators=(",", ":"))
            self._file.write(line + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())
            written: dict[str, Any] = json.loads(line)
            return written

    def close(self) -> None:
        with self._lock:
            self._file.close()


def read(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise RunbookError(f"no journal at {path}") from None
    out = []
    for line in lines:
        try:
            doc = json.loads(line)
        except ValueError:
            continue  # a line torn by a crash
        if isinstance(doc, dict) and "event" in doc:
            out.append(doc)
    return out


def tail(lines: list[str], n: int = OUTPUT_TAIL_LINES) -> list[str]:
    return lines[-n:]
