"""Remediations run through the runbook engine, each with its journal under the service's state dir."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iotex_ops.errors import OpsError
from iotex_ops.remediation.service import Outcome
from iotex_ops.runbook import Engine, ParamError, Runbook, RunbookError, loader
from iotex_ops.runbook import journal as journal_mod
from iotex_ops.runbook.lock import NetworkLocked


@dataclass
class EngineRunner:
    inventory: Path
    state_dir: Path
    runbook_dirs: tuple[Path, ...] = ()
    report: bool = True
    _books: dict[str, Runbook] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._books = loader.discover(self.runbook_dirs)

    def known(self, runbook: str) -> bool:
        return runbook in self._books

    def _find(self, name: str) -> Runbook:
        if name not in self._books:
            raise RunbookError(f"no runbook {name!r}; known: {', '.join(sorted(self._books))}")
        return self._books[name]

    def _engine(self, on_step: Callable[[str], None]) -> Engine:
        def on_event(ev: dict[str, Any]) -> None:
            if ev.get("event") == "step_start":
                on_step(str(ev.get("step")) + (f"@{ev['host']}" if ev.get("host") else ""))

        # unattended: destructive steps are what the policy asked for, so no confirmation is asked
        return Engine(self.state_dir, yes=True, on_event=on_event, report=self.report)

    def journal(self, run_id: str) -> Path:
        return self.state_dir / "runs" / run_id / "journal.jsonl"

    def _outcome(self, call: Callable[[], Any], run_id: str) -> Outcome:
        try:
            res = call()
        except NetworkLocked as exc:
            return Outcome("deferred", str(exc))
        except ParamError as exc:
            return Outcome("refused", str(exc))
        except OpsError as exc:
            return Outcome("failed", str(exc), str(self.journal(run_id)))
        return Outcome(res.result, res.error or "", str(self.journal(run_id)))

    def run(self, run_id: str, runbook: str, params: dict[str, Any], on_step: Callable[[str], None]) -> Outcome:
        rb = self._find(runbook)
        run_dir = self.state_dir / "runs" / run_id
        if run_dir.exists() and not self.started(run_id):
            shutil.rmtree(run_dir)  # a start that died before its first journal line: nothing ran, start clean
        return self._outcome(lambda: self._engine(on_step).run(rb, self.inventory, params, run_id=run_id), run_id)

    def resume(self, run_id: str, on_step: Callable[[str], None]) -> Outcome:
        return self._outcome(lambda: self._engine(on_step).resume(run_id, self._find), run_id)

    def started(self, run_id: str) -> bool:
        path = self.journal(run_id)
        try:
            return bool(journal_mod.read(path))
        except (OSError, OpsError):
            return False

    def ended(self, run_id: str) -> Outcome | None:
        path = self.journal(run_id)
        if not path.is_file():
            return None
        try:
            prog = journal_mod.progress(journal_mod.read(path))
        except (OSError, OpsError):
            return None
        if prog.end is None:
            return None
        return Outcome(str(prog.end.get("result")), str(prog.end.get("error") or ""), str(path))
