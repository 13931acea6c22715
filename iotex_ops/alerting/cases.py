"""`promtool test rules` cases for the generated rules, built from the same settings.

Each alert gets a case where it fires, with its exact labels and annotations, and cases where it must not
(a blip shorter than its `for`, a lag under the threshold, a planned pause): so the thresholds that are
deployed are the ones that are tested. Watchdog fires always, by design: it has no quiet case.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from iotex_ops.alerting.rules import ALERTD_JOB, NODE_JOB, AlertSpec, alert_specs, stall_samples
from iotex_ops.alerting.settings import Settings, fmt_duration

HOSTS = ("d1", "d2")
ADDRESSES = {"d1": "io1delegateone", "d2": "io1delegatetwo"}
ALERTD_INSTANCE = "alertd.example:9095"
DISK_SIZE = 1_000_000_000


@dataclass
class Case:
    """A scenario: series of values (None: no sample, "stale": gone), and what must fire at which step."""

    name: str
    series: dict[str, list[Any]] = field(default_factory=dict)
    checks: list[tuple[str, int, list[tuple[dict[str, str], float]]]] = field(default_factory=list)

    def add(self, metric: str, labels: Mapping[str, str], values: Iterable[Any]) -> None:
        inner = ", ".join(f'{k}="{v}"' for k, v in labels.items())
        self.series[f"{metric}{{{inner}}}"] = list(values)

    def expect(self, alert: str, step: int, *firing: tuple[dict[str, str], float]) -> None:
        self.checks.append((alert, step, list(firing)))


def node(host: str) -> dict[str, str]:
    """The labels Prometheus gives a delegate's series: the scrape target's."""
    return {"job": NODE_JOB, "instance": f"{host}.example:14014", "delegate": host, "host": host}


def _steps(seconds: float, interval: float) -> int:
    return max(1, math.ceil(seconds / interval - 1e-9))


def _notation(values: list[Any]) -> str:
    """promtool's series notation, with runs of a value as `v+0xN` (N+1 samples)."""
    out: list[str] = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[i]:
            j += 1
        v = values[i]
        token = "_" if v is None else v if isinstance(v, str) else repr(v)
        if j > i and v is not None and v != "stale":
            out.append(f"{token}+0x{j - i}")
        else:
            out.extend([token] * (j - i + 1))
        i = j + 1
    return " ".join(out)


def expand(template: str, labels: Mapping[str, str], value: float) -> str:
    """The Go templates of the generated annotations, as Prometheus renders them (only the forms used there)."""
    out = re.sub(
        r"\{\{ with \$labels\.(\w+) \}\}(.*?)\{\{ \. \}\}(.*?)\{\{ end \}\}",
        lambda m: f"{m[2]}{labels[m[1]]}{m[3]}" if labels.get(m[1]) else "",
        template,
    )
    out = re.sub(r'\{\{ printf "%\.(\d)f" \$value \}\}', lambda m: f"{value:.{int(m[1])}f}", out)
    out = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m[1], ""), out)
    if "{{" in out:
        raise AssertionError(f"a template form expand() does not know: {out!r}")
    return out


def _flat(value: Any, n: int) -> list[Any]:
    return [value] * n


def cases(s: Settings) -> list[Case]:
    """Every scenario for the alerts these settings produce."""
    i = s.interval_s
    names = {a.name for a in alert_specs(s)}
    out: list[Case] = []
    d1, d2 = node("d1"), node("d2")

    def up(c: Case, n: int, down: dict[str, list[Any]] | None = None) -> None:
        for h in HOSTS:
            c.add("up", node(h), (down or {}).get(h, _flat(1, n)))

    # DelegateDown
    k = _steps(s.delegate_down_for, i)
    c = Case("DelegateDown fires when a node stops answering for monitoring_alert_delegate_down_for")
    up(c, k + 4, {"d1": [1, *_flat(0, k + 3)]})
    c.expect("DelegateDown", k + 2, (d1, 0))
    out.append(c)
    m = max(1, k - 1)
    c = Case("DelegateDown stays quiet for a blip shorter than monitoring_alert_delegate_down_for")
    up(c, m + 4, {"d1": [1, *_flat(0, m), *_flat(1, 3)]})
    c.expect("DelegateDown", m)
    c.expect("DelegateDown", m + 1)
    out.append(c)

    # DelegateLagging
    k = _steps(s.lag_for, i)
    lag = s.lag_blocks + 5
    c = Case("DelegateLagging fires when a node stays more than monitoring_alert_lag_blocks behind")
    up(c, k + 3)
    c.add("iotex_finalized_height", d1, _flat(100, k + 3))
    c.add("iotex_finalized_height", d2, _flat(100 + lag, k + 3))
    c.expect("DelegateLagging", k + 1, (d1, lag))
    out.append(c)
    c = Case("DelegateLagging stays quiet at monitoring_alert_lag_blocks behind")
    up(c, k + 3)
    c.add("iotex_finalized_height", d1, _flat(100, k + 3))
    c.add("iotex_finalized_height", d2, _flat(100 + s.lag_blocks, k + 3))
    c.expect("DelegateLagging", k + 1)
    out.append(c)

    # DelegateMissingSlots: both nodes count d1's missed slots under d1's operator address
    def slots(c: Case, n: int, counts: list[int]) -> None:
        up(c, n)
        for h in HOSTS:
            c.add("iotex_node_info", {**node(h), "address": ADDRESSES[h], "version": "1.0.0", "protocol": "1"}, _flat(1, n))
            c.add("iotex_missed_slots_total", {**node(h), "exported_delegate": ADDRESSES["d1"]}, counts)

    c = Case("DelegateMissingSlots fires for the host whose address misses more than monitoring_alert_missed_slots")
    slots(c, 5, [0, 0, *_flat(s.missed_slots + 3, 3)])
    labels = {"address": ADDRESSES["d1"], "delegate": "d1", "host": "d1"}
    c.expect("DelegateMissingSlots", 3, (labels, s.missed_slots + 3))
    out.append(c)
    c = Case("DelegateMissingSlots stays quiet without missed slots in the window")
    slots(c, 5, _flat(7, 5))
    c.expect("DelegateMissingSlots", 3)
    out.append(c)

    if "PeersLow" in names:
        k = _steps(s.peers_for, i)
        c = Case("PeersLow fires when a node keeps fewer than monitoring_alert_peers_min peers")
        up(c, k + 3)
        c.add("iotex_peers", d1, _flat(s.peers_min - 1, k + 3))
        c.add("iotex_peers", d2, _flat(s.peers_min, k + 3))
        c.expect("PeersLow", k + 1, (d1, s.peers_min - 1))
        out.append(c)
        m = max(1, k - 1)
        c = Case("PeersLow stays quiet when peers come back within monitoring_alert_peers_for")
        up(c, m + 3)
        c.add("iotex_peers", d1, [s.peers_min, *_flat(s.peers_min - 1, m), s.peers_min, s.peers_min])
        c.expect("PeersLow", m)
        c.expect("PeersLow", m + 1)
        out.append(c)

    # DelegatePausedUnexpectedly
    k = _steps(s.paused_for, i)
    c = Case("DelegatePausedUnexpectedly fires for a pause longer than monitoring_alert_paused_for")
    up(c, k + 3)
    c.add("iotex_node_paused", d1, _flat(1, k + 3))
    c.add("iotex_node_halted", d1, _flat(0, k + 3))
    c.expect("DelegatePausedUnexpectedly", k + 1, (d1, 1))
    out.append(c)
    m = max(1, k - 1)
    c = Case("DelegatePausedUnexpectedly stays quiet for a planned hold shorter than monitoring_alert_paused_for")
    up(c, m + 3)
    c.add("iotex_node_paused", d1, [0, *_flat(1, m), 0, 0])
    c.add("iotex_node_halted", d1, _flat(0, m + 3))
    c.expect("DelegatePausedUnexpectedly", m)
    c.expect("DelegatePausedUnexpectedly", m + 1)
    out.append(c)
    c = Case("DelegatePausedUnexpectedly stays quiet on a node halted for an upgrade")
    up(c, k + 3)
    c.add("iotex_node_paused", d1, _flat(1, k + 3))
    c.add("iotex_node_halted", d1, _flat(1, k + 3))
    c.expect("DelegatePausedUnexpectedly", k + 1)
    out.append(c)

    # MempoolBacklog
    k = _steps(s.mempool_for, i)
    c = Case("MempoolBacklog fires when the mempool stays above monitoring_alert_mempool_max")
    up(c, k + 3)
    c.add("iotex_mempool_actions", d1, _flat(s.mempool_max + 1, k + 3))
    c.add("iotex_mempool_actions", d2, _flat(s.mempool_max, k + 3))
    c.expect("MempoolBacklog", k + 1, (d1, s.mempool_max + 1))
    out.append(c)
    m = max(1, k - 1)
    c = Case("MempoolBacklog stays quiet for a burst shorter than monitoring_alert_mempool_for")
    up(c, m + 3)
    c.add("iotex_mempool_actions", d1, [0, *_flat(s.mempool_max + 1, m), 0, 0])
    c.expect("MempoolBacklog", m)
    c.expect("MempoolBacklog", m + 1)
    out.append(c)

    # DiskSpaceLow
    k = _steps(s.disk_for, i)
    low = int(DISK_SIZE * s.disk_free_ratio / 2)
    c = Case("DiskSpaceLow fires when free space stays under monitoring_alert_disk_free_ratio")
    up(c, k + 3)
    c.add("iotex_disk_size_bytes", d1, _flat(DISK_SIZE, k + 3))
    c.add("iotex_disk_free_bytes", d1, _flat(low, k + 3))
    c.expect("DiskSpaceLow", k + 1, (d1, 100 * low / DISK_SIZE))
    out.append(c)
    c = Case("DiskSpaceLow stays quiet above monitoring_alert_disk_free_ratio")
    up(c, k + 3)
    c.add("iotex_disk_size_bytes", d1, _flat(DISK_SIZE, k + 3))
    c.add("iotex_disk_free_bytes", d1, _flat(int(DISK_SIZE * (1 + s.disk_free_ratio) / 2), k + 3))
    c.expect("DiskSpaceLow", k + 1)
    out.append(c)

    # ChainStalled: heights move for 3 samples, then stop
    k = _steps(s.chain_stalled_for, i)
    n = k + 9
    stalled = [1, 2, *_flat(3, n - 2)]
    c = Case("ChainStalled fires when no delegate finalizes for monitoring_alert_chain_stalled_for")
    up(c, n)
    for h in HOSTS:
        c.add("iotex_finalized_height", node(h), stalled)
    c.expect("ChainStalled", k + 6, ({}, 0))
    out.append(c)
    c = Case("ChainStalled fires when no delegate answers")
    up(c, n, {h: _flat(0, n) for h in HOSTS})
    c.expect("ChainStalled", k + 6, ({}, 0))
    out.append(c)
    c = Case("ChainStalled stays quiet while blocks are finalized")
    up(c, n)
    for h in HOSTS:
        c.add("iotex_finalized_height", node(h), list(range(1, n + 1)))
    c.expect("ChainStalled", k + 6)
    out.append(c)
    c = Case("ChainStalled stays quiet before the first block")
    up(c, n)
    for h in HOSTS:
        c.add("iotex_finalized_height", node(h), _flat(0, n))
    c.expect("ChainStalled", k + 6)
    out.append(c)
    fresh = stall_samples(s) - 2
    c = Case("ChainStalled stays quiet until Prometheus has watched for the whole window")
    up(c, fresh + 3)
    for h in HOSTS:
        c.add("iotex_finalized_height", node(h), _flat(3, fresh + 3))
    c.expect("ChainStalled", fresh)
    out.append(c)
    c = Case("ChainStalled stays quiet while the delegates are paused on purpose")
    up(c, n)
    for h in HOSTS:
        c.add("iotex_finalized_height", node(h), stalled)
        c.add("iotex_node_paused", node(h), [0, 0, *_flat(1, n - 2)])
    c.expect("ChainStalled", k + 6)
    out.append(c)

    # VersionSkew: a rolling upgrade replaces each node's iotex_node_info series
    k = _steps(s.version_skew_for, i)

    def info(c: Case, host: str, version: str, values: list[Any]) -> None:
        c.add("iotex_node_info", {**node(host), "address": ADDRESSES[host], "version": version, "protocol": "1"}, values)

    c = Case("VersionSkew fires when two versions run longer than monitoring_alert_version_skew_for")
    up(c, k + 3)
    info(c, "d1", "1.0.0", _flat(1, k + 3))
    info(c, "d2", "1.0.1", _flat(1, k + 3))
    c.expect("VersionSkew", k + 1, ({}, 2))
    out.append(c)
    m = max(1, k - 1)
    c = Case("VersionSkew stays quiet during a rolling upgrade shorter than monitoring_alert_version_skew_for")
    up(c, m + 4)
    info(c, "d2", "1.0.0", [1, "stale"])
    info(c, "d2", "1.0.1", [None, *_flat(1, m + 3)])
    info(c, "d1", "1.0.0", [*_flat(1, m + 1), "stale"])
    info(c, "d1", "1.0.1", [*_flat(None, m + 1), *_flat(1, 3)])
    c.expect("VersionSkew", m)
    c.expect("VersionSkew", m + 1)
    out.append(c)

    c = Case("Watchdog always fires")
    up(c, 3)
    c.expect("Watchdog", 1, ({}, 1))
    out.append(c)

    if "RemediationServiceDown" in names:
        k = _steps(s.alertd_down_for, i)
        alertd = {"job": ALERTD_JOB, "instance": ALERTD_INSTANCE}
        c = Case("RemediationServiceDown fires when alertd stops answering")
        up(c, k + 4)
        c.add("up", alertd, [1, *_flat(0, k + 3)])
        c.expect("RemediationServiceDown", k + 2, (alertd, 0))
        out.append(c)
        c = Case("RemediationServiceDown fires when alertd is not scraped at all")
        up(c, k + 3)
        c.expect("RemediationServiceDown", k + 1, ({"job": ALERTD_JOB}, 1))
        out.append(c)
        m = max(1, k - 1)
        c = Case("RemediationServiceDown stays quiet for a blip shorter than monitoring_alert_alertd_down_for")
        up(c, m + 4)
        c.add("up", alertd, [1, *_flat(0, m), *_flat(1, 3)])
        c.expect("RemediationServiceDown", m)
        c.expect("RemediationServiceDown", m + 1)
        out.append(c)

        # AlertUnhandled re-raises a firing DelegateDown once alertd has been down long enough
        kd = _steps(s.delegate_down_for, i)
        n = kd + k + 8
        at = kd + k + 5
        c = Case("AlertUnhandled re-raises a page-worthy alert while alertd is down")
        up(c, n, {"d1": [1, *_flat(0, n - 1)], "d2": _flat(1, n)})
        c.add("up", alertd, _flat(0, n))
        c.expect("AlertUnhandled", at, ({**d1, "original_alertname": "DelegateDown", "severity": "error"}, 1))
        out.append(c)
        c = Case("AlertUnhandled stays quiet while alertd is up")
        up(c, n, {"d1": [1, *_flat(0, n - 1)], "d2": _flat(1, n)})
        c.add("up", alertd, _flat(1, n))
        c.expect("AlertUnhandled", at)
        out.append(c)
        km = _steps(s.mempool_for, i)
        c = Case("AlertUnhandled does not re-raise warnings")
        up(c, km + k + 8)
        c.add("iotex_mempool_actions", d1, _flat(s.mempool_max + 1, km + k + 8))
        c.add("up", alertd, _flat(0, km + k + 8))
        c.expect("AlertUnhandled", km + k + 5)
        out.append(c)
    return out


def rule_tests(s: Settings, rules_file: str = "rules.yml") -> dict[str, Any]:
    """The `promtool test rules` file for the rules of these settings."""
    specs = {a.name: a for a in alert_specs(s)}
    interval = fmt_duration(s.interval_s)
    tests = []
    for case in cases(s):
        tests.append(
            {
                "name": case.name,
                "interval": interval,
                "input_series": [{"series": k, "values": _notation(v)} for k, v in case.series.items()],
                "alert_rule_test": [
                    {
                        "eval_time": fmt_duration(step * s.interval_s),
                        "alertname": alert,
                        "exp_alerts": [_expected(specs[alert], labels, value, s.docs_url) for labels, value in firing],
                    }
                    for alert, step, firing in case.checks
                ],
            }
        )
    return {"rule_files": [rules_file], "evaluation_interval": interval, "tests": tests}


def _expected(spec: AlertSpec, labels: dict[str, str], value: float, docs_url: str) -> dict[str, Any]:
    all_labels = {**labels, "severity": expand(spec.severity, labels, value)}
    return {
        "exp_labels": all_labels,
        "exp_annotations": {k: expand(v, all_labels, value) for k, v in spec.annotations(docs_url).items()},
    }
