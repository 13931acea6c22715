"""The database backups a node keeps in HOME/backups/ (written before a rollback or a restore), and their
retention: `iotex-node backups list|prune`.

A backup is `chain-<tip>-<UTC stamp>.db` (or `chain-unreadable-<stamp>.db`), with a `-wal` beside it for a raw
copy. Retention keeps the `keep` newest whatever their age (a node that is rarely rolled back still has its
last backups), and of the others only those younger than `max_age_s`. The choice is a pure function of the
names and `now`, so it is tested without files; files are removed only by `prune`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from iotex_node.errors import NodeError
from iotex_node.fsutil import fsync_dir

BACKUPS_DIR = "backups"
_NAME = re.compile(r"chain-(?:[0-9]+|unreadable)-([0-9]{8}T[0-9]{6}Z)(?:-[0-9]+)?\.db")


class BackupError(NodeError):
    """A retention policy that would remove everything, or a backups directory that cannot be read."""


@dataclass(frozen=True)
class Backup:
    name: str
    taken: float  # seconds since 1970 (from the name: file times change when copied)
    size: int

    def to_json(self) -> dict[str, Any]:
        taken = datetime.fromtimestamp(self.taken, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"name": self.name, "taken": taken, "size": self.size}


def list_backups(home: Path) -> list[Backup]:
    """The backups in HOME/backups, oldest first (files not named like one are left out, and alone)."""
    d = Path(home) / BACKUPS_DIR
    if not d.is_dir():
        return []
    out: list[Backup] = []
    for p in d.iterdir():
        m = _NAME.fullmatch(p.name)
        if not m or not p.is_file():
            continue
        taken = datetime.strptime(m.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
        size = p.stat().st_size + sum(q.stat().st_size for q in [p.with_name(p.name + "-wal")] if q.is_file())
        out.append(Backup(p.name, taken, size))
    return sorted(out, key=lambda b: (b.taken, b.name))


def choose(backups: list[Backup], keep: int, max_age_s: float | None, now: float) -> tuple[list[Backup], list[Backup]]:
    """(kept, removed): the `keep` newest always; the older ones only while younger than max_age_s."""
    if keep < 1:
        raise BackupError(f"--keep {keep}: at least the newest backup is always kept (1 or more)")
    ordered = sorted(backups, key=lambda b: (b.taken, b.name), reverse=True)
    kept, removed = ordered[:keep], list[Backup]()
    for b in ordered[keep:]:
        (kept if max_age_s is not None and now - b.taken < max_age_s else removed).append(b)
    return sorted(kept, key=lambda b: b.taken), sorted(removed, key=lambda b: b.taken)


def prune(home: Path, keep: int, max_age_s: float | None, now: float, dry_run: bool = False) -> tuple[list[Backup], list[Backup]]:
    kept, removed = choose(list_backups(home), keep, max_age_s, now)
    if not dry_run and removed:
        d = Path(home) / BACKUPS_DIR
        for b in removed:
            for p in (d / b.name, d / (b.name + "-wal")):
                if p.exists():
                    os.unlink(p)
        fsync_dir(d)
    return kept, removed
