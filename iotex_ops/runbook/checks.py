"""Verifications runbooks compose: each returns a `Check` whose probe reads Prometheus or the nodes' APIs.

Probes never change anything. A probe that waits for something (growth within t) does the waiting itself,
so that its value is measured from when the check starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from iotex_ops.network import Delegate
from iotex_ops.nodeapi import NodeApiError
from iotex_ops.runbook.context import RunContext
from iotex_ops.runbook.model import Check, CheckResult

# -- reading the network ------------------------------------------------------------------------------


def chains(ctx: RunContext, delegates: Iterable[Delegate] | None = None) -> dict[str, dict[str, Any] | None]:
    """Every delegate's /v1/chain at once (None where the node does not answer): `Network.chains`."""
    return ctx.network.chains(delegates)


def finalized(ctx: RunContext, delegates: Iterable[Delegate] | None = None) -> dict[str, int | None]:
    return {n: (c["finalized_height"] if c else None) for n, c in chains(ctx, delegates).items()}


def top_height(ctx: RunContext) -> int:
    hs = [h for h in finalized(ctx).values() if h is not None]
    if not hs:
        raise NodeApiError("no delegate answers on its API")
    return max(hs)


def wait_for(what: str, predicate: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    """Poll until predicate() is truthy; its last value, or TimeoutError naming what did not happen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = predicate()
        except NodeApiError as exc:
            last = None
            err = str(exc)
        else:
            err = ""
        if last:
            return last
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout:g}s" + (f" ({err})" if err else ""))
        time.sleep(interval)


# -- checks -------------------------------------------------------------------------------------------


def finalizing(blocks: int = 2, within: float = 15.0, via_prometheus: bool = False) -> Check:
    """The chain's finalized height grows by `blocks` within `within` seconds."""

    def probe(ctx: RunContext) -> CheckResult:
        def height() -> int:
            if via_prometheus:
                rows = ctx.query("max(iotex_finalized_height)")
                if not rows:
                    raise NodeApiError("Prometheus has no iotex_finalized_height")
                return int(float(rows[0]["value"][1]))
            return top_height(ctx)

        h0 = height()
        t0 = time.monotonic()
        deadline = t0 + within
        h = h0
        while time.monotonic() < deadline:
            time.sleep(0.25 if not via_prometheus else 0.5)
            h = height()
            if h - h0 >= blocks:
                return CheckResult(True, {"from": h0, "to": h, "seconds": round(time.monotonic() - t0, 2)})
        return CheckResult(False, {"from": h0, "to": h}, f"finalized height grew by {h - h0} (< {blocks}) in {within:g}s")

    src = "Prometheus" if via_prometheus else "node APIs"
    return Check(f"finalized height grows by {blocks} within {within:g}s ({src})", probe, timeout=within * 2 + 5, interval=0.5)


def agree(delegates: str | None = None, timeout: float = 30.0) -> Check:
    """Every (selected) delegate answers and all have the same block hash at the lowest finalized height among them."""

    def probe(ctx: RunContext) -> CheckResult:
        ds = ctx.network.select(delegates)
        cs = chains(ctx, ds)
        down = [n for n, c in cs.items() if c is None]
        if down:
            return CheckResult(False, {"down": down}, f"not answering: {', '.join(down)}")
        h = min(c["finalized_height"] for c in cs.values() if c)
        if h == 0:
            return CheckResult(False, {"height": 0}, "no block finalized yet")
        with ThreadPoolExecutor(max_workers=max(1, len(ds))) as pool:
            hashes = dict(zip([d.name for d in ds], pool.map(lambda d: d.api.block(h, timeout=5.0).hash, ds), strict=True))
        distinct = set(hashes.values())
        if len(distinct) != 1:
            return CheckResult(False, {"height": h, "hashes": hashes}, f"delegates disagree at height {h}: FORK")
        return CheckResult(True, {"height": h, "hash": next(iter(distinct))[:16], "delegates": len(ds)})

    return Check("all delegates have the same hash at a common finalized height", probe, timeout=timeout, interval=1.0)


def versions(version_param: str = "version", timeout: float = 30.0) -> Check:
    """Every delegate's node reports the release version given by the parameter."""

    def probe(ctx: RunContext) -> CheckResult:
        want = str(ctx.params[version_param])
        got = {n: (c["node_version"] if c else None) for n, c in chains(ctx).items()}
        wrong = {n: v for n, v in got.items() if v != want}
        return CheckResult(not wrong, got, f"not on {want}: {wrong}" if wrong else "")

    return Check(f"every delegate runs release <{version_param}>", probe, timeout=timeout, interval=1.0)


def no_gap_longer_than(max_gap_s: float | Callable[[RunContext], float], since_key: str = "window_start_height") -> Check:
    """No gap between consecutive finalized blocks longer than `max_gap_s` from the height remembered under
    `since_key` to the tip (block timestamps, read from one delegate's API)."""

    def probe(ctx: RunContext) -> CheckResult:
        limit = max_gap_s(ctx) if callable(max_gap_s) else max_gap_s
        start = int(ctx.recall(since_key, 0))
        gaps = block_gaps(ctx, start)
        worst = max(gaps, key=lambda g: g[1], default=(start, 0.0))
        value = {"from": start, "blocks": len(gaps), "longest_gap_s": round(worst[1], 3), "at_height": worst[0]}
        if worst[1] > limit:
            return CheckResult(False, value, f"a gap of {worst[1]:.2f}s before block {worst[0]} (limit {limit:g}s)")
        return CheckResult(True, value)

    desc = "longest gap between finalized blocks within the limit" if callable(max_gap_s) else f"no gap > {max_gap_s:g}s"
    return Check(desc + " since the window began", probe, timeout=5.0, interval=1.0)


def block_gaps(ctx: RunContext, start: int) -> list[tuple[int, float]]:
    """[(height, seconds since the previous block)] for blocks start+1..tip, from the first answering delegate,
    read with the node's range read (one request per 1000 blocks, not one per block)."""
    for d in ctx.delegates:
        c = d.try_chain()
        if c is None:
            continue
        blocks = d.api.blocks(max(1, start), c["finalized_height"], timeout=10.0)
        stamps = {b.height: b.timestamp_ms for b in blocks}
        return [(h, (ms - stamps[h - 1]) / 1000) for h, ms in stamps.items() if h - 1 in stamps]
    raise NodeApiError("no delegate answers on its API")


def participating(timeout: float = 30.0) -> Check:
    """The step's delegate is synced, taking part, and its signature is in a recent block's certificate."""

    def probe(ctx: RunContext) -> CheckResult:
        d = ctx.delegate
        c = d.chain()
        if not c.get("participating") or c.get("paused") or c.get("halted"):
            return CheckResult(False, {"participating": c.get("participating"), "halted": c.get("halted")}, "not taking part yet")
        tip = c["finalized_height"]
        for b in reversed(d.api.blocks(max(1, tip - 2), tip, timeout=5.0)):
            if c["address"] in b.voters:
                return CheckResult(True, {"endorsed": b.height, "version": c.get("node_version")})
        return CheckResult(False, {"tip": tip}, "its signature is in none of the last 3 certificates")

    return Check("the delegate is back, synced and endorsing", probe, timeout=timeout, interval=0.3)


def all_propose_and_endorse(window: int = 40, timeout: float = 60.0) -> Check:
    """Over the last `window` finalized blocks, every delegate proposed at least one and endorsed at least one."""

    def probe(ctx: RunContext) -> CheckResult:
        cs = chains(ctx)
        if any(c is None for c in cs.values()):
            return CheckResult(False, None, "not every delegate answers")
        addresses = {c["address"]: n for n, c in cs.items() if c}
        d = ctx.delegates[0]
        tip = min(c["finalized_height"] for c in cs.values() if c)
        proposed: set[str] = set()
        endorsed: set[str] = set()
        for b in d.api.blocks(max(1, tip - window + 1), tip, timeout=5.0):
            proposed.add(b.proposer)
            endorsed |= set(b.voters)
        missing_p = sorted(n for a, n in addresses.items() if a not in proposed)
        missing_e = sorted(n for a, n in addresses.items() if a not in endorsed)
        value = {"blocks": min(window, tip), "not_proposed": missing_p, "not_endorsed": missing_e}
        ok = not missing_p and not missing_e
        return CheckResult(ok, value, "" if ok else f"not proposing: {missing_p}, not endorsing: {missing_e}")

    return Check(f"every delegate proposed and endorsed in the last {window} blocks", probe, timeout=timeout, interval=2.0)


def all_stopped_at_one_height(steady_for: float = 2.0, timeout: float = 30.0) -> Check:
    """Every delegate answers, none finalizes for `steady_for` seconds, and all agree on one height and hash."""

    def probe(ctx: RunContext) -> CheckResult:
        first = chains(ctx)
        if any(c is None for c in first.values()):
            return CheckResult(False, None, "not every delegate answers")
        time.sleep(steady_for)
        second = chains(ctx)
        if any(c is None for c in second.values()):
            return CheckResult(False, None, "not every delegate answers")
        heights = {n: c["finalized_height"] for n, c in second.items() if c}
        moved = [n for n, c in first.items() if c and heights[n] != c["finalized_height"]]
        hashes = {c["finalized_hash"] for c in second.values() if c}
        value = {"heights": heights}
        if moved:
            return CheckResult(False, value, f"still finalizing: {', '.join(moved)}")
        if len(set(heights.values())) != 1 or len(hashes) != 1:
            return CheckResult(False, value, "stopped, but not at one height and hash")
        return CheckResult(True, {"height": next(iter(heights.values())), "hash": next(iter(hashes))[:16]})

    return Check(f"the chain stopped: no delegate finalizes for {steady_for:g}s, all at one height and hash", probe, timeout)


def prometheus_sees_all(timeout: float = 30.0) -> Check:
    """Prometheus scrapes every delegate (up == 1)."""

    def probe(ctx: RunContext) -> CheckResult:
        rows = ctx.query('up{job="iotex-node"}')
        up = {r["metric"].get("instance", "?"): r["value"][1] == "1" for r in rows}
        n_up = sum(up.values())
        ok = n_up >= len(ctx.delegates)
        return CheckResult(ok, {"up": n_up, "targets": len(up)}, "" if ok else f"{n_up}/{len(ctx.delegates)} targets up")

    return Check("Prometheus scrapes every delegate", probe, timeout=timeout, interval=1.0)
