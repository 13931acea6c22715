"""Where runs live, and what they were: the run store.

A store is a state directory (`$IOTEX_OPS_STATE_DIR`, default `~/.local/state/iotex-ops`; alertd has its own);
each run is a directory `<state>/runs/<run_id>/` laid out by `RunDir`:

    journal.jsonl     the run's events, append-only (events.py), the only record of what happened
    report.json       the report (report.py), written at the end of a run
    report.html
    ansible/          the artifacts of the playbooks the run ran (one directory per playbook run)
    ...               whatever a runbook keeps there (`ctx.run_dir`)

Nothing else builds these paths. The store opens a run's journal for the engine (`create`, `open`), and
answers questions about past runs from their journals through the one fold (state.py): one run's state,
and runs by runbook, by time, by result, or unfinished (resumable).
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from iotex_ops.errors import OpsError
from iotex_ops.runbook import events as events_mod
from iotex_ops.runbook.events import Event, Result
from iotex_ops.runbook.journal import Journal
from iotex_ops.runbook.model import RunbookError
from iotex_ops.runbook.state import RunState, fold

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+=-]{0,200}$")


def default_state_dir() -> Path:
    return Path(os.environ.get("IOTEX_OPS_STATE_DIR", "~/.local/state/iotex-ops")).expanduser()


@dataclass(frozen=True)
class RunDir:
    """The layout of one run's directory."""

    path: Path

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def journal(self) -> Path:
        return self.path / "journal.jsonl"

    @property
    def report_json(self) -> Path:
        return self.path / "report.json"

    @property
    def report_html(self) -> Path:
        return self.path / "report.html"

    @property
    def ansible(self) -> Path:
        """Where the run's playbooks keep their artifacts."""
        return self.path / "ansible"


class RunJournal:
    """A run's journal opened for writing: each event is stamped (seq, ts), written and fsynced, then folded
    into `state`, so that the engine always knows where the run stands (also what a resumed run did before)."""

    def __init__(self, run: RunDir) -> None:
        self.run = run
        self.path = run.journal
        self.state = fold(events_mod.load(self.path)) if self.path.exists() else RunState()
        self._journal = Journal(self.path)
        self._lock = threading.Lock()

    def append(self, ev: Event) -> Event:
        """Journal `ev`; returns it as it now is on disk (stamped, values as JSON gives them back)."""
        doc = events_mod.to_doc(ev)
        fields = {k: v for k, v in doc.items() if k not in ("seq", "ts", "event")}
        with self._lock:
            stamped = events_mod.from_doc(self._journal.write(doc["event"], **fields))
            self.state.apply(stamped)
        return stamped

    def snapshot(self) -> RunState:
        """A copy of the state, safe from the threads that still append."""
        with self._lock:
            return copy.deepcopy(self.state)

    def close(self) -> None:
        self._journal.close()


@dataclass(frozen=True)
class RunSummary:
    """One run, as a history query lists it."""

    run_id: str
    runbook: str
    user: str
    network: str
    inventory: str
    started_at: float
    ended_at: float | None  # its end; for an unfinished run, its last event
    result: Result | None  # None: no run_end (crashed, killed, or running now): `resume` continues it
    error: str | None
    duration_s: float | None  # the engine's own measure for a finished run; wall time otherwise
    rollback_phase: bool
    dir: RunDir

    @property
    def finished(self) -> bool:
        return self.result is not None

    @property
    def status(self) -> str:
        return str(self.result) if self.result is not None else "unfinished"

    @classmethod
    def of(cls, state: RunState, run: RunDir) -> RunSummary:
        start = state.start
        if start is None or state.started_at is None:
            raise RunbookError(f"{run.journal} does not begin with run_start")
        return cls(
            run_id=start.run_id or run.run_id,
            runbook=start.runbook,
            user=start.user,
            network=start.network,
            inventory=start.inventory,
            started_at=state.started_at,
            ended_at=state.ended_at,
            result=state.result,
            error=state.error,
            duration_s=state.end.duration_s if state.end else state.duration_s,
            rollback_phase=state.rollback_phase,
            dir=run,
        )


class RunStore:
    """The runs under one state directory."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or default_state_dir()).expanduser()

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r})"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def locks_dir(self) -> Path:
        """Where runs take their network's lock unless the inventory says otherwise (`iotex_ops_lock_dir`)."""
        return self.root / "locks"

    def dir(self, run_id: str) -> RunDir:
        if not _RUN_ID.match(run_id) or run_id in (".", ".."):
            raise RunbookError(f"{run_id!r} is not a run id (letters, digits, . _ @ + = -)")
        return RunDir(self.runs_dir / run_id)

    # -- one run --

    def exists(self, run_id: str) -> bool:
        """Its directory exists (it may have no journal yet: a start that died before its first event)."""
        return self.dir(run_id).path.exists()

    def started(self, run_id: str) -> bool:
        """Its journal holds at least one event."""
        try:
            return bool(events_mod.load(self.dir(run_id).journal))
        except (OSError, OpsError):
            return False

    def create(self, run_id: str) -> RunJournal:
        """The journal of a new run; refused if the run exists already."""
        run = self.dir(run_id)
        if run.path.exists():
            raise RunbookError(f"run {run_id} exists already ({run.path}): `iotex-ops runbook resume {run_id}` continues it")
        return RunJournal(run)

    def open(self, run_id: str) -> RunJournal:
        """The journal of an existing run, to append to (a resume)."""
        self._known(run_id)
        return RunJournal(self.dir(run_id))

    def discard(self, run_id: str) -> bool:
        """Remove a run that never started (no event journaled): True if there was one to remove."""
        run = self.dir(run_id)
        if not run.path.exists() or self.started(run_id):
            return False
        shutil.rmtree(run.path)
        return True

    def events(self, run_id: str) -> list[Event]:
        return events_mod.load(self._known(run_id).journal)

    def state(self, run_id: str) -> RunState:
        """What the run's journal says: RunbookError if there is no such run or it has no run_start."""
        state = fold(self.events(run_id))
        if state.start is None:
            raise RunbookError(f"the journal of run {run_id} does not begin with run_start")
        return state

    def summary(self, run_id: str) -> RunSummary:
        return RunSummary.of(fold(self.events(run_id)), self.dir(run_id))

    def _known(self, run_id: str) -> RunDir:
        run = self.dir(run_id)
        if not run.journal.is_file():
            recent = self.ids()[-5:]
            raise RunbookError(f"no run {run_id!r} under {self.runs_dir}" + (f"; recent: {', '.join(recent)}" if recent else ""))
        return run

    # -- history --

    def ids(self) -> list[str]:
        """Every run with a journal, by name (run ids begin with their UTC start time)."""
        if not self.runs_dir.is_dir():
            return []
        return sorted(d.name for d in self.runs_dir.iterdir() if RunDir(d).journal.is_file())

    def __iter__(self) -> Iterator[RunSummary]:
        """Every readable run, oldest first (a journal that cannot be read is left out)."""
        rows = []
        for run_id in self.ids():
            try:
                rows.append(self.summary(run_id))
            except (OSError, OpsError):
                continue
        return iter(sorted(rows, key=lambda r: (r.started_at, r.run_id)))

    def runs(
        self,
        *,
        runbook: str | None = None,
        since: float | None = None,
        until: float | None = None,
        result: Result | str | None = None,
        finished: bool | None = None,
        last: int | None = None,
    ) -> list[RunSummary]:
        """Runs, oldest first: of a runbook; going on at some time in [since, until] (unix seconds: started
        by `until`, and ended, or for an unfinished run last heard of, at or after `since`); that ended with
        `result`; finished or not; only the `last` N of those."""
        want = Result(result) if result is not None else None
        out = []
        for r in self:
            if runbook is not None and r.runbook != runbook:
                continue
            if until is not None and r.started_at > until:
                continue
            if since is not None and (r.ended_at if r.ended_at is not None else r.started_at) < since:
                continue
            if want is not None and r.result != want:
                continue
            if finished is not None and r.finished != finished:
                continue
            out.append(r)
        return out[-last:] if last else out

    def unfinished(self, runbook: str | None = None) -> list[RunSummary]:
        """Runs without an end (crashed, killed, or running now): what `resume` continues."""
        return self.runs(runbook=runbook, finished=False)
