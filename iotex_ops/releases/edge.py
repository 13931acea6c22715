"""The watcher's edges on a real network: the delegates' versions, the engine, and pages through the Pager queue."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from iotex_ops.errors import OpsError


class EngineRollout:
    """Drills through the engine on the inventory's network (its lock, steady state and rollbacks), as the
    scheduler runs them; `maintenance="auto"`: silences and change events when the inventory has them."""

    def __init__(self, inventory: str | Path, state: Path, report: bool = False) -> None:
        self.inventory, self.state, self.report = str(inventory), Path(state), report
        self.last: Any = None  # the last run's RunResult (its measures: missed slots, longest gap)

    def __repr__(self) -> str:
        return f"EngineRollout({self.inventory!r})"

    def running(self) -> dict[str, str | None]:
        from iotex_ops import network

        with network.load(self.inventory) as net:
            out: dict[str, str | None] = {}
            for d in net.delegates:
                c = d.try_chain()
                out[d.name] = str(c["node_version"]) if c else None
            return out

    def release_dir(self) -> Path:
        from iotex_ops import network

        with network.load(self.inventory) as net:
            d = net.release_dir
        if d is None:
            raise OpsError(f"{self.inventory}: the inventory sets no node_release_dir (where the drills take artifacts)")
        d.mkdir(parents=True, exist_ok=True)
        return d

    def run(self, runbook: str, params: dict[str, Any]) -> tuple[str, str, str | None]:
        from iotex_ops import network
        from iotex_ops.runbook import Engine, loader
        from iotex_ops.runbook.lock import NetworkLocked
        from iotex_ops.runbook.store import RunStore

        rb = loader.find(runbook)
        try:
            with network.load(self.inventory) as net:
                res = self.last = Engine(RunStore(self.state), yes=True, report=self.report).run(rb, net, params)
        except NetworkLocked as exc:
            return "", "deferred", str(exc)
        except OpsError as exc:
            return "", "failed", str(exc)
        return res.run_id, str(res.result), res.error


class PagerNotify:
    """Change events and pages of the watcher through the durable Pager queue of the inventory's PagerDuty
    settings (the same the drills' change events use); None from `from_inventory` when it has none."""

    def __init__(self, announcer: Any, pager_factory: Any) -> None:
        self._announcer, self._pager_factory = announcer, pager_factory

    def __repr__(self) -> str:
        return "PagerNotify(routing_key=***)"

    @classmethod
    def from_inventory(cls, inventory: str | Path, state: Path) -> PagerNotify | None:
        from iotex_ops import network
        from iotex_ops.paging.pager import Pager
        from iotex_ops.runbook.store import RunStore
        from iotex_ops.schedule import maintenance

        with network.load(str(inventory)) as net:
            ann = maintenance._announcer(net, RunStore(state))
        if ann is None:
            return None

        def factory() -> Pager:
            return Pager(ann.db.with_name(ann.db.stem + "-releases.db"), ann._key, ann.url, ann.ca_file, backoff_max_s=2.0)

        return cls(ann, factory)

    def change(self, event: Mapping[str, Any]) -> None:
        self._announcer.change(event)

    def _send(self, event: Mapping[str, Any]) -> None:
        pager = self._pager_factory()
        try:
            pager.enqueue(event)
            pager.flush(10.0)
        finally:
            pager.close()

    def trigger(self, dedup_key: str, summary: str, source: str, severity: str, details: dict[str, Any], links: Any = ()) -> None:
        from iotex_ops.paging import events

        ev = events.trigger(summary, source, severity=severity, dedup_key=dedup_key, custom_details=details,
                            links=list(links), client="iotex-ops release watcher", component="iotex-node")  # fmt: skip
        self._send(ev)

    def resolve(self, dedup_key: str) -> None:
        from iotex_ops.paging import events

        self._send(events.resolve(dedup_key))
