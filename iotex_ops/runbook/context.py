"""What a runbook's actions and checks get: the network, the parameters, the journal, Prometheus.

Side effects go through here so that they are journaled: `ctx.log` lines become the step's output tail,
`ctx.remember` values survive a crash (a resumed run gets them back), `ctx.playbook` runs Ansible with its
artifacts under the run's directory.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from iotex_ops.errors import OpsError
from iotex_ops.network import Delegate, Network
from iotex_ops.prom import Prometheus, PrometheusError
from iotex_ops.runbook.events import Event, Mark, Memo
from iotex_ops.runbook.store import RunDir

if TYPE_CHECKING:
    from iotex_ops.ansible import PlaybookResult


class PrometheusUnavailable(PrometheusError):
    """The inventory names no Prometheus (iotex_prometheus_url), or it does not answer."""


class EventSink(Protocol):
    """Where a context's events go: the run's journal (through the engine, so that its live view sees them)."""

    def append(self, ev: Event) -> Event: ...


@dataclass
class _Shared:
    memory: dict[str, Any]
    lock: threading.Lock = field(default_factory=threading.Lock)
    prometheus: Any = None
    # set by the engine when the run is aborted (a stop condition): a step's `ctx.wait` ends at once
    cancel: threading.Event | None = None


@dataclass
class RunContext:
    run_id: str
    runbook: str
    params: Mapping[str, Any]
    network: Network
    journal: EventSink | None  # None in a dry run and a preflight
    run_dir: Path
    shared: _Shared
    delegate_: Delegate | None = None
    step: str | None = None
    lines: list[str] = field(default_factory=list)

    # -- views --

    def on(self, d: Delegate | None, step: str | None = None) -> RunContext:
        """The context of one host in a step (its own output lines)."""
        return replace(self, delegate_=d, step=step if step is not None else self.step, lines=[])

    @property
    def delegate(self) -> Delegate:
        if self.delegate_ is None:
            raise OpsError(f"step {self.step} runs once, not per host: it has no ctx.delegate")
        return self.delegate_

    @property
    def delegates(self) -> list[Delegate]:
        return self.network.delegates

    # -- journaled side effects --

    def log(self, message: str) -> None:
        stamp = datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]
        self.lines.append(f"{stamp} {message}")

    def remember(self, key: str, value: Any) -> None:
        with self.shared.lock:
            self.shared.memory[key] = value
        if self.journal is not None:
            self.journal.append(Memo(step=self.step, key=key, value=value))

    def recall(self, key: str, default: Any = None) -> Any:
        with self.shared.lock:
            return self.shared.memory.get(key, default)

    def event(self, name: str, **fields: Any) -> None:
        """A named moment for the report (e.g. `chain_halted`), with values."""
        if self.journal is not None:
            self.journal.append(Mark(step=self.step, name=name, values=fields))

    def playbook(
        self, playbook: str, *, limit: str | None = None, extravars: dict[str, Any] | None = None, timeout: float = 600
    ) -> PlaybookResult:
        from iotex_ops.ansible import run_playbook

        where = f" --limit {limit}" if limit else ""
        self.log(f"ansible-playbook {playbook}{where} {sorted((extravars or {}).items())}")
        res = run_playbook(
            playbook,
            self.network.inventory.path,
            limit=limit,
            extravars=extravars,
            runs_dir=RunDir(self.run_dir).ansible,
            timeout=timeout,
        )
        self.log(f"{playbook}: {res.status}, changed {res.changed}")
        return res

    # -- Prometheus --

    @property
    def prometheus(self) -> Prometheus:
        with self.shared.lock:
            if self.shared.prometheus is None:
                url = self.network.prometheus_url
                if not url:
                    raise PrometheusUnavailable(
                        "the inventory sets no iotex_prometheus_url: checks that query Prometheus cannot run"
                    )
                self.shared.prometheus = Prometheus(url)
            prom: Prometheus = self.shared.prometheus
            return prom

    def query(self, promql: str) -> list[dict[str, Any]]:
        try:
            return self.prometheus.query(promql)
        except PrometheusUnavailable:
            raise
        except PrometheusError as exc:
            raise _unavailable(exc) from None

    def query_range(self, promql: str, start: float, end: float, step: float = 1.0) -> list[dict[str, Any]]:
        try:
            return self.prometheus.query_range(promql, start, end, step)
        except PrometheusUnavailable:
            raise
        except PrometheusError as exc:
            raise _unavailable(exc) from None

    def wait(self, seconds: float) -> None:
        """Sleep `seconds`, or less when the run is aborted meanwhile (a stop condition): then it raises, so
        that a step holding for a while gives way to the rollback at once instead of sleeping its hold out."""
        cancel = self.shared.cancel
        if cancel is None:
            time.sleep(seconds)
        elif cancel.wait(seconds):
            raise OpsError(f"{self.runbook}: the run was aborted while {self.step or 'a step'} waited")


def _unavailable(exc: PrometheusError) -> PrometheusUnavailable:
    return PrometheusUnavailable(str(exc), url=exc.url, query=exc.query, reason=exc.reason, unreachable=exc.unreachable)
