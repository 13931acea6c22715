"""Remediations run through the runbook engine, each a run in the service's own run store (its state dir)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iotex_ops import inventory as inventory_mod
from iotex_ops import network as network_mod
from iotex_ops.errors import OpsError
from iotex_ops.remediation.service import Outcome
from iotex_ops.runbook import Engine, ParamError, Runbook, RunbookError, loader
from iotex_ops.runbook import params as params_mod
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
    _inventory_seen: tuple[int, tuple[str, ...]] | None = None  # (mtime, delegate names) of the inventory
    runs: RunStore = field(init=False)

    def __post_init__(self) -> None:
        self._books = loader.discover(self.runbook_dirs)
        self.runs = RunStore(self.state_dir)

    def known(self, runbook: str) -> bool:
        return runbook in self._books

    def check(self, runbook: str, params: dict[str, Any]) -> str | None:
        """Why a run would be refused before it starts: the runbook is not installed, its parameters are
        refused, or its `host` parameter names no delegate of the inventory (read again when the file changes)."""
        if runbook not in self._books:
            return f"runbook {runbook} is not installed where alertd runs"
        try:
            typed = params_mod.validate(self._books[runbook], params)
        except ParamError as exc:
            return str(exc)
        host = typed.get("host")
        if isinstance(host, str) and host:
            try:
                names = self._delegates()
            except OpsError as exc:
                return f"the inventory {self.inventory} cannot be read: {exc}"
            if host not in names:
                return f"host {host!r} is not a delegate of the inventory {self.inventory} (its delegates: {', '.join(names)})"
        return None

    def network_free(self) -> bool:
        """Whether the network's lock is free of drills now (a deferred remediation may start at once)."""
        from iotex_ops.runbook.lock import NetworkLock

        try:
            inv = inventory_mod.load(self.inventory)
        except OpsError:
            return False
        first = inv.raw_vars[inv.delegates[0].name] if inv.delegates else {}
        locks = Path(str(first.get("iotex_ops_lock_dir") or self.runs.locks_dir)).expanduser()
        return NetworkLock(locks, network_mod.network_id(inv)).free()

    def _delegates(self) -> tuple[str, ...]:
        try:  # an inventory is a file or a directory of them: any change reloads it
            files = [self.inventory, *(self.inventory.rglob("*") if self.inventory.is_dir() else ())]
            stamp = max(f.stat().st_mtime_ns for f in files)
        except OSError:
            stamp = -1
        if self._inventory_seen is None or self._inventory_seen[0] != stamp:
            self._inventory_seen = (stamp, tuple(h.name for h in inventory_mod.load(self.inventory).delegates))
        return self._inventory_seen[1]

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
