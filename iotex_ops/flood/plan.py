"""The flood drill's plan and verdict: pure (no I/O), so that what a flood may do and how it is judged is
tested without a node.

A plan says which attacks run against one delegate, how many of each and for how long; every count has a
ceiling here (MAX_*), whatever the caller asks, and the target must be on loopback or a private (lab
namespace) address. The verdict turns what the drill measured into one line per criterion of the drill
(docs/runbooks.md, "flood").
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from iotex_ops.errors import OpsError

ATTACKS = (
    "connections",  # many concurrent keep-alive API connections, each asking as fast as it is answered
    "slowloris",  # request headers a byte at a time
    "oversized",  # bodies past max_body_bytes, and a declared body that never arrives
    "malformed",  # unparseable request lines and headers, bodies that are not JSON
    "batch",  # /v1/actions/batch at its limit (2000 actions) with bad signatures
    "bad_signatures",  # valid-looking transfers whose signature is not the sender's
    "spam_funded",  # the lowest fee from many funded accounts
    "spam_empty",  # zero and minimum fees from accounts that hold nothing
    "p2p_garbage",  # P2P handshakes with garbage and oversized frames
    "p2p_idle",  # P2P sockets that connect and say nothing
    "forged_consensus",  # an authenticated peer sending votes signed by no delegate
    "lying_peer",  # an authenticated peer claiming a height far ahead, then going silent
)
MAX_DURATION_S = 120.0
MAX_CONNECTIONS = 2000
MAX_SLOW = 1000
MAX_SOURCES = 32
MAX_SPAM = 20_000
MAX_P2P_SOCKETS = 500
MAX_REQUESTS = 200_000  # all HTTP requests of one flood, across attacks
MAX_RPS = 20_000.0


class FloodError(OpsError):
    """A flood plan that is out of bounds or aimed outside the lab."""


@dataclass(frozen=True)
class FloodPlan:
    """What to send at one delegate (`api_host:api_port`, `p2p_host:p2p_port`) for `duration_s`."""

    api_host: str
    api_port: int
    p2p_host: str
    p2p_port: int
    duration_s: float = 20.0
    attacks: tuple[str, ...] = ATTACKS
    connections: int = 200
    slow_clients: int = 100
    spam: int = 2000  # lowest-fee transfers from the funded spam accounts, all told
    spam_empty: int = 500
    p2p_sockets: int = 100
    sources: tuple[str, ...] = field(default=())  # source addresses (127.0.0.x) the attackers bind to
    max_requests: int = 50_000
    max_rps: float = 300.0  # HTTP requests a second, all attacks together (a bound on the flood's rate too)
    request_timeout_s: float = 15.0  # an API answer later than this is a hang (the node's body timeout is 10 s)

    def check(self) -> FloodPlan:
        unknown = [a for a in self.attacks if a not in ATTACKS]
        if unknown:
            raise FloodError(f"unknown attack(s) {', '.join(unknown)}; the attacks are {', '.join(ATTACKS)}")
        if not 0 < self.duration_s <= MAX_DURATION_S:
            raise FloodError(f"a flood lasts (0, {MAX_DURATION_S:g}] s, not {self.duration_s:g}")
        for name, value, ceiling in (
            ("connections", self.connections, MAX_CONNECTIONS),
            ("slow_clients", self.slow_clients, MAX_SLOW),
            ("spam", self.spam, MAX_SPAM),
            ("spam_empty", self.spam_empty, MAX_SPAM),
            ("p2p_sockets", self.p2p_sockets, MAX_P2P_SOCKETS),
            ("max_requests", self.max_requests, MAX_REQUESTS),
            ("sources", len(self.sources), MAX_SOURCES),
        ):
            if not 0 <= value <= ceiling:
                raise FloodError(f"{name} must be in [0, {ceiling}], not {value}")
        for host in (self.api_host, self.p2p_host, *self.sources):
            if not in_lab(host):
                raise FloodError(f"{host!r} is neither loopback nor a private (lab) address: a flood stays in the lab")
        if not 0 < self.max_rps <= MAX_RPS:
            raise FloodError(f"max_rps must be in (0, {MAX_RPS:g}], not {self.max_rps:g}")
        if not 0 < self.request_timeout_s <= 60:
            raise FloodError("request_timeout_s must be in (0, 60]")
        return self

    def scaled(self, factor: float) -> FloodPlan:
        """The same plan with every count times `factor` (at least 1 where it was not 0)."""

        def s(n: int) -> int:
            return 0 if n == 0 else max(1, round(n * factor))

        return replace(
            self,
            connections=s(self.connections),
            slow_clients=s(self.slow_clients),
            spam=s(self.spam),
            spam_empty=s(self.spam_empty),
            p2p_sockets=s(self.p2p_sockets),
        )


def in_lab(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost"
    return ip.is_loopback or ip.is_private


def loopback_sources(target: str, n: int, first: int = 10) -> tuple[str, ...]:
    """`n` loopback source addresses (127.0.0.`first`..) when the target is on loopback, else none (the
    attackers then connect from the lab host's own address)."""
    try:
        loop = ipaddress.ip_address(target).is_loopback
    except ValueError:
        loop = target == "localhost"
    if not loop:
        return ()
    return tuple(f"127.0.0.{first + i}" for i in range(min(n, MAX_SOURCES)))


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100, nearest rank) of `values`, None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, math.ceil(q / 100 * len(ordered)) - 1)
    return ordered[min(k, len(ordered) - 1)]


@dataclass(frozen=True)
class Limits:
    """What the drill holds the flooded node to."""

    p99_factor: float = 2.0  # honest p99 submit->final under the flood, at most this times the baseline's
    p99_floor_s: float = 0.5  # ... or the baseline plus this, when the baseline is tiny (timer granularity)
    missed_slots: int = 1
    rss_growth_mb: float = 300.0  # the flooded node's RSS above its value before the flood
    open_files: int = 4096
    recovery_s: float = 5.0


@dataclass(frozen=True)
class Criterion:
    name: str
    ok: bool
    value: Any
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "value": self.value, "detail": self.detail}


def judge(m: Mapping[str, Any], limits: Limits = Limits()) -> list[Criterion]:
    """One criterion per promise of the drill, from the drill's measures `m`:
    baseline_p99_s, flood_p99_s, missed_slots, lost, accepted_honest, rss_before_mb, rss_peak_mb,
    open_files_peak, statuses (code -> count, what the attackers got), retry_after_missing, hangs, server_errors
    (5xx other than 503), recovery_s."""
    out: list[Criterion] = []
    base, flood = m.get("baseline_p99_s"), m.get("flood_p99_s")
    if base is None or flood is None:
        out.append(
            Criterion("honest p99 under 2x the baseline", False, {"baseline": base, "flood": flood}, "no latency measured")
        )
    else:
        bound = max(base * limits.p99_factor, base + limits.p99_floor_s)
        out.append(
            Criterion(
                f"honest p99 under {limits.p99_factor:g}x the baseline",
                flood <= bound,
                {"baseline_s": round(base, 3), "flood_s": round(flood, 3), "bound_s": round(bound, 3)},
            )
        )
    missed = int(m.get("missed_slots", 0))
    out.append(Criterion(f"missed slots at most {limits.missed_slots}", missed <= limits.missed_slots, missed))
    lost, accepted = int(m.get("lost", 0)), int(m.get("accepted_honest", 0))
    # displaced: not final, with the node's reason (GET /v1/actions/{hash}); evicted by the spam would be the
    # flood's doing, so it fails the criterion like a loss
    evicted = int(dict(m.get("displaced_codes", {})).get("evicted", 0))
    seen = {"accepted": accepted, "lost": lost, "displaced": int(m.get("displaced", 0)), "evicted": evicted}
    out.append(Criterion("no honest accepted transfer lost", lost == 0 and evicted == 0 and accepted > 0, seen))
    growth = float(m.get("rss_peak_mb", 0)) - float(m.get("rss_before_mb", 0))
    out.append(
        Criterion(
            f"flooded node's RSS grows under {limits.rss_growth_mb:g} MB",
            growth < limits.rss_growth_mb,
            {"before_mb": m.get("rss_before_mb"), "peak_mb": m.get("rss_peak_mb")},
        )
    )
    fds = int(m.get("open_files_peak", 0))
    out.append(Criterion(f"open files under {limits.open_files}", fds < limits.open_files, fds))
    statuses = {int(k): int(v) for k, v in dict(m.get("statuses", {})).items()}
    pushed_back = statuses.get(429, 0) + statuses.get(503, 0)
    bad5xx = int(m.get("server_errors", 0)) + sum(v for k, v in statuses.items() if k >= 500 and k != 503)
    missing = int(m.get("retry_after_missing", 0))
    hangs = int(m.get("hangs", 0))
    out.append(
        Criterion(
            "429/503 with Retry-After under pressure, no other 5xx, no hang",
            pushed_back > 0 and bad5xx == 0 and missing == 0 and hangs == 0,
            {
                "429": statuses.get(429, 0),
                "503": statuses.get(503, 0),
                "other_5xx": bad5xx,
                "no_retry_after": missing,
                "hangs": hangs,
            },
        )
    )
    rec = m.get("recovery_s")
    out.append(
        Criterion(
            f"healthy within {limits.recovery_s:g} s after the flood",
            rec is not None and rec <= limits.recovery_s,
            rec,
        )
    )
    return out


def missed_slots(gaps: Sequence[float], interval_s: float) -> int:
    """Slots without a finalized block, from the gaps between consecutive finalized blocks' timestamps: a
    gap of k intervals (rounded, 1.5x tolerance on the first) is k - 1 missed slots."""
    missed = 0
    for g in gaps:
        if g > interval_s * 1.5:
            missed += max(1, round(g / interval_s) - 1)
    return missed
