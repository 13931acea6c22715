"""The run's journal: append-only JSON lines, flushed and fsynced per event, read back to resume.

One file per run (`<state>/runs/<run_id>/journal.jsonl`). Every event has `seq`, `ts` (unix seconds) and
`event`; what else it carries is listed in docs/runbooks.md. A torn last line (the engine killed while
writing) is ignored when reading.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
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


@dataclass
class Progress:
    """What a journal says a run has done: the basis of `resume`."""

    start: dict[str, Any]
    done_steps: set[str] = field(default_factory=set)
    done_hosts: dict[str, list[str]] = field(default_factory=dict)  # step -> hosts finished, in order
    started_hosts: dict[str, list[str]] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    approved: set[str] = field(default_factory=set)
    failing: dict[str, Any] | None = None  # the failure that started the rollback phase
    rolled_back: set[str] = field(default_factory=set)  # "step" or "step@host" rollbacks that finished
    end: dict[str, Any] | None = None

    @property
    def run_id(self) -> str:
        return str(self.start["run_id"])


def progress(events: list[dict[str, Any]]) -> Progress:
    if not events or events[0]["event"] != "run_start":
        raise RunbookError("the journal does not begin with run_start")
    p = Progress(start=events[0])
    for ev in events[1:]:
        kind, step, host = ev["event"], str(ev.get("step")), ev.get("host")
        if kind == "step_end" and ev.get("ok"):
            if host is None:
                p.done_steps.add(step)
            else:
                p.done_hosts.setdefault(step, []).append(host)
        elif kind == "step_start" and host is not None:
            lst = p.started_hosts.setdefault(step, [])
            if host not in lst:
                lst.append(host)
        elif kind == "memo":
            p.memory[ev["key"]] = ev["value"]
        elif kind == "approval" and ev.get("approved"):
            p.approved.add(step)
        elif kind == "run_failing":
            p.failing = ev
        elif kind == "rollback_end" and ev.get("ok"):
            p.rolled_back.add(step if host is None else f"{step}@{host}")
        elif kind == "run_end":
            p.end = ev
    return p


def tail(lines: list[str], n: int = OUTPUT_TAIL_LINES) -> list[str]:
    return lines[-n:]


def iter_runs(runs_dir: Path) -> Iterator[tuple[str, Path]]:
    if not runs_dir.is_dir():
        return
    for d in sorted(runs_dir.iterdir()):
        j = d / "journal.jsonl"
        if j.is_file():
            yield d.name, j
