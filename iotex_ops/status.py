"""Network status: one row per delegate, from its node API and from Prometheus.

Every field is gathered concurrently with short timeouts; a node that does not answer is a row saying
so (up: false), never an exception that hides the other rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.table import Table


from iotex_ops.nodeapi import NodeApiError, NodeClient
from iotex_ops.prom import Prometheus, PrometheusError


@dataclass(frozen=True)
class Endpoint:
    name: str
    host: str
    api_url: str


@dataclass(frozen=True)
class DelegateStatus:
    name: str
    host: str
    pid: int | None
    height: int | None
    finalized_height: int | None
    version: str | None
    protocol: int | None
    peers: int | None
    paused: bool | None
    halted: str | None
    last_block_age_s: float | None
    up: bool
    answering: bool
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _one(ep: Endpoint, pid_of: Callable[[Endpoint], int | None] | None, timeout: float) -> DelegateStatus:
    pid = None
    if pid_of is not None:
        try:
            pid = pid_of(ep)
        except Exception:  # a host that cannot tell its pid still gets a row
            pid = None
    try:
        # a status table waits no longer for a rate-limited node than for a silent one
        c = NodeClient(ep.api_url, name=ep.name, timeout=timeout, max_retry_wait=timeout).chain()
    except NodeApiError as exc:
        return DelegateStatus(ep.name, ep.host, pid, None, None, None, None, None, None, None, None, False, False, str(exc))
    ts = c.finalized_timestamp_ms
    age = max(0.0, time.time() - ts / 1000.0) if ts is not None else None
    return DelegateStatus(
        name=ep.name,
        host=ep.host,
        pid=pid,
        height=c.height,
        finalized_height=c.finalized_height,
        version=c.node_version,
        protocol=c.protocol_version,
        peers=c.peers,
        paused=c.paused,
        halted=c.halted,
        last_block_age_s=round(age, 3) if age is not None else None,
        up=True,
        answering=True,
    )


def prometheus_up(prometheus_url: str, timeout: float = 2.0) -> dict[str, bool]:
    """delegate label -> whether Prometheus's last scrape of it succeeded (empty if Prometheus is down)."""
    try:
        with Prometheus(prometheus_url, timeout=timeout, retries=0) as prom:
            rows = prom.query('up{job="iotex-node"}')
    except PrometheusError:
        return {}
    return {r["metric"].get("delegate", "?"): r["value"][1] == "1" for r in rows}


def collect(
    endpoints: list[Endpoint],
    *,
    prometheus_url: str | None = None,
    pid_of: Callable[[Endpoint], int | None] | None = None,
    timeout: float = 2.0,
) -> list[DelegateStatus]:
    with ThreadPoolExecutor(max_workers=min(32, max(1, len(endpoints)))) as pool:
        rows = list(pool.map(lambda ep: _one(ep, pid_of, timeout), endpoints))
    if prometheus_url:
        seen = prometheus_up(prometheus_url, timeout)
        # `up` is what Prometheus sees; without a Prometheus it falls back to "its API answered".
        rows = [DelegateStatus(**{**r.to_json(), "up": seen.get(r.name, False)}) for r in rows]
    return rows


def table(rows: list[DelegateStatus], title: str = "delegates") -> Table:
    from rich.table import Table

    t = Table(title=title)
    for col in ("delegate", "host", "pid", "height", "final", "version", "proto", "peers", "state", "last block", "up"):
        t.add_column(col)
    for r in rows:
        state = "down" if not r.answering else (f"halted: {r.halted}" if r.halted else ("paused" if r.paused else "ok"))
        t.add_row(
            r.name,
            r.host,
            str(r.pid or "-"),
            str(r.height if r.height is not None else "-"),
            str(r.finalized_height if r.finalized_height is not None else "-"),
            r.version or "-",
            str(r.protocol or "-"),
            str(r.peers if r.peers is not None else "-"),
            state,
            f"{r.last_block_age_s:.1f}s ago" if r.last_block_age_s is not None else "-",
            "[green]up[/green]" if r.up else "[red]down[/red]",
        )
    return t
