"""Remediations run through the runbook engine, each a run in the service's own run store (its state dir)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iotex_ops import network as network_mod
from iotex_ops.errors import OpsError
from iotex_ops.remediation.service import Outcome
from iotex_ops.runbook import Engine, ParamError, Runbook, RunbookError, loader
from iotex_ops.runbook.events import Event, Result, StepStart
from iotex_ops.runbook.lock import NetworkLocked
from iotex_ops.runbook.store import RunStore


@dataclass
class EngineRunner:
    inventory: Path
    state_dir: Path
    runbook_dirs: tuple[Path, ...] = ()
    report: bool = True
    _books: dict[str, Runbook] = field(default_factory=dict)
    runs: RunStore = field(init=False)

    def __post_init__(self) -> None:
        self._books = loader.discover(self.runbook_dirs)
        self.runs = RunStore(self.state_dir)

    def known(self, runbook: str) -> bool:
        return runbook in self._books

    def _find(self, name: str) -> Runbook:
        if name not in self._books:
            raise RunbookError(f"no runbook {name!r}; known: {', '.join(sorted(self._books))}")
        return self._books[name]

    def _engine(self, on_step: Callable[[str], None]) -> Engine:
        def on_event(ev: Event) -> None:
            if isinstance(ev, StepStart):
                on_step(ev.where)

        # unattended: destructive steps are what the policy asked for, so no confirmation is asked; no maintenance
        # window: a remediation answers an alert, it never silences one (its page says what it does)
        return Engine(self.runs, yes=True, on_event=on_event, report=self.report, maintenance=None)

    def journal(self, run_id: str) -> Path:
        return self.runs.dir(run_id).journal

    def _outcome(self, call: Callable[[], Any], run_id: str) -> Outcome:
        try:
            res = call()
        except NetworkLocked as exc:
            return Outcome(Result.DEFERRED, str(exc))
        except ParamError as exc:
            return Outcome(Result.REFUSED, str(exc))
        except OpsError as exc:
            return Outcome(Result.FAILED, str(exc), str(self.journal(run_id)))
        return Outcome(res.result, res.error or "", str(self.journal(run_id)))

    def run(self, run_id: str, runbook: str, params: dict[str, Any], on_step: Callable[[str], None]) -> Outcome:
        rb = self._find(runbook)
        self.runs.discard(run_id)  # a start that died before its first journal line: nothing ran, start clean

        def go() -> Any:
            with network_mod.load(self.inventory) as net:
                return self._engine(on_step).run(rb, net, params, run_id=run_id)

        return self._outcome(go, run_id)

    def resume(self, run_id: str, on_step: Callable[[str], None]) -> Outcome:
        return self._outcome(lambda: self._engine(on_step).resume(run_id, self._find), run_id)

    def started(self, run_id: str) -> bool:
        return self.runs.started(run_id)

    def ended(self, run_id: str) -> Outcome | None:
        try:
            run = self.runs.summary(run_id)
        except (OSError, OpsError):
            return None
        if run.result is None:
            return None
        return Outcome(run.result, run.error or "", str(run.dir.journal))
