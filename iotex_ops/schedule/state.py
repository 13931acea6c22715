"""What a person changed about schedules without editing the inventory: suspensions, in the state directory.

`<state>/schedules/<network>.json` (mode 0600, replaced atomically): for each suspended schedule, who
suspended it, when and why. The drills file stays what the team reviewed; `enabled: false` there is the
reviewed way to stop a schedule, a suspension the operator's quick one (Kubernetes CronJob's `suspend`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from iotex_ops.schedule.model import ScheduleError

_NETWORK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")


@dataclass(frozen=True)
class Suspension:
    name: str
    by: str
    at: str  # ISO time
    reason: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "by": self.by, "at": self.at, "reason": self.reason}


class ScheduleState:
    """The suspensions of one network's schedules."""

    def __init__(self, state_dir: Path, network: str) -> None:
        if not _NETWORK.match(network):
            raise ScheduleError(f"{network!r} is not a network name (letters, digits, . _ -)")
        self.network = network
        self.path = Path(state_dir).expanduser() / "schedules" / f"{network}.json"

    def _read(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ScheduleError(f"{self.path}: unreadable schedule state: {exc}") from None
        if not isinstance(doc, Mapping) or not isinstance(doc.get("suspended", {}), Mapping):
            raise ScheduleError(f'{self.path}: not a schedule state (expected {{"suspended": {{...}}}})')
        return dict(doc)

    def _write(self, doc: Mapping[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(doc, fh, indent=2, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One change at a time (two operators suspending at once both count): an flock beside the file."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.path.with_suffix(".lock"), "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def suspended(self) -> dict[str, Suspension]:
        out = {}
        for name, v in (self._read().get("suspended") or {}).items():
            v = v if isinstance(v, Mapping) else {}
            out[str(name)] = Suspension(str(name), str(v.get("by", "")), str(v.get("at", "")), str(v.get("reason", "")))
        return out

    def is_suspended(self, name: str) -> bool:
        return name in self.suspended()

    def suspend(self, name: str, *, by: str, now: datetime, reason: str = "") -> Suspension:
        """Suspend a schedule (again: the first suspension is kept, and returned)."""
        with self._locked():
            current = self.suspended()
            if name in current:
                return current[name]
            doc = self._read()
            s = Suspension(name, by, now.isoformat(), reason)
            self._write({**doc, "suspended": {**(doc.get("suspended") or {}), name: {"by": by, "at": s.at, "reason": reason}}})
            return s

    def resume(self, name: str) -> Suspension | None:
        """Lift a suspension: the one lifted, or None if it was not suspended."""
        with self._locked():
            current = self.suspended()
            if name not in current:
                return None
            doc = self._read()
            self._write({**doc, "suspended": {k: v for k, v in (doc.get("suspended") or {}).items() if k != name}})
            return current[name]
