"""Flood: while honest transfers flow at a steady rate, flood ONE delegate with what a DDoS bounty throws at a
node (iotex_ops/flood/: many API connections, slow headers, oversized and malformed bodies, batches at their
limit with bad signatures, lowest-fee spam from funded accounts, zero-fee spam from empty ones, P2P garbage,
idle sockets, forged votes, lying and idle peers), bounded in count and time, and verify that the node and
the chain shrug it off:

- the chain keeps finalizing, with at most one missed slot during the flood;
- honest transfers' p99 submit->final stays under 2x its value measured just before, in the same run;
- every honest transfer that was accepted becomes final;
- the flooded node's RSS and open files stay bounded;
- the API pushes back with 429 or 503 and Retry-After, never another 5xx, never hangs;
- the node is healthy (ready, finalizing with its peers) within 5 s after the flood stops.

The honest transfers pay twice the minimum fee (a fee market: under spam at the minimum fee, paying more is
how a real user gets in); the spam pays the minimum. Honest and spam accounts are disjoint halves of the
funded accounts. On a loopback lab the attackers connect from 127.0.0.10.. (the node sees them as clients
other than the honest load's 127.0.0.1), elsewhere from the inventory's `iotex_flood_sources` if it has them
(the netns lab's extra bridge addresses: its API proxy sees them as clients other than the controller).
`iotex-ops runbook run flood --yes [-e host=node4 -e flood_s=20]`.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from iotex_ops.errors import OpsError
from iotex_ops.flood import ATTACKS, FloodPlan, Limits, judge, loopback_sources, missed_slots, percentile
from iotex_ops.flood import attacks as flood_attacks
from iotex_ops.flood.watch import Watch
from iotex_ops.network import Delegate
from iotex_ops.nodeapi import NodeApiError
from iotex_ops.runbook import Check, CheckResult, Param, Runbook, RunContext, Step, checks
from iotex_ops.traffic import BackgroundLoad, read_accounts


def _target(ctx: RunContext) -> Delegate:
    name = str(ctx.params["host"]) or ctx.delegates[-1].name
    return ctx.network.delegate(name)


def _accounts_file(ctx: RunContext) -> Path:
    from iotex_ops.lab import lab as lab_mod

    found = lab_mod.funded_accounts_file(str(ctx.params["accounts_file"]), ctx.network.inventory.path)
    if found is None:
        raise OpsError("flood: no funded accounts: pass -e accounts_file=PATH (a lab has them in its state)")
    return found


def preflight(ctx: RunContext) -> list[str]:
    problems = []
    names = [d.name for d in ctx.delegates]
    host = str(ctx.params["host"])
    if host and host not in names:
        problems.append(f"{host!r} is not a delegate; the delegates: {', '.join(names)}")
    if len(names) < 2:
        problems.append("the flood needs a second delegate to watch the chain from")
    attacks = _attacks(ctx)
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown:
        problems.append(f"unknown attack(s) {', '.join(unknown)}; the attacks: {', '.join(ATTACKS)}")
    try:
        keys = read_accounts(_accounts_file(ctx), at_least=4)
        if len(keys) < 4:
            problems.append("at least 4 funded accounts are needed")
    except OpsError as exc:
        problems.append(str(exc))
    return problems


def _attacks(ctx: RunContext) -> tuple[str, ...]:
    raw = str(ctx.params["attacks"]).strip()
    return ATTACKS if raw in ("", "all") else tuple(a.strip() for a in raw.split(",") if a.strip())


def _sampler(d: Delegate) -> Any:
    pid = int(d.admin("status").get("pid", 0))
    cmd = f"grep VmRSS /proc/{pid}/status; ls /proc/{pid}/fd | wc -l"

    def sample() -> tuple[float, int] | None:
        try:
            out = d.host.run(cmd, timeout=3, check=False).stdout.split()
            return int(out[1]) / 1024, int(out[-1])
        except (OpsError, IndexError, ValueError):
            return None

    return sample


def _peers_of(d: Delegate) -> Any:
    def peers() -> int | None:
        try:
            return d.api.chain(timeout=1).peers
        except NodeApiError:
            return None

    return peers


def _height_of(d: Delegate) -> Any:
    def status_of(h: str) -> int | None:
        try:
            st = d.api.action(h, timeout=3)
        except NodeApiError:
            return None
        return st.receipt.height if st is not None and st.final and st.receipt else None

    return status_of


def _fates(d: Delegate, hashes: list[str]) -> dict[str, Any]:
    """How the accepted transfers ended: final, displaced (with the node's reason), or lost."""

    def one(h: str) -> tuple[str, str | None]:
        try:
            st = d.api.action(h, timeout=3)
        except NodeApiError:
            return "lost", None
        if st is not None and st.final:
            return "final", None
        if st is not None and st.status == "rejected":
            return "displaced", st.code
        return "lost", None

    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(one, hashes))
    codes: dict[str, int] = {}
    for _kind, code in got:
        if code:
            codes[code] = codes.get(code, 0) + 1
    lost = [h for h, (k, _) in zip(hashes, got, strict=True) if k == "lost"]
    displaced = sum(k == "displaced" for k, _ in got)
    return {"lost": len(lost), "displaced": displaced, "codes": codes, "examples": lost[:5]}


def _healthy(d: Delegate, peer: Delegate) -> bool:
    try:
        c = d.api.chain(timeout=1)
        p = peer.api.chain(timeout=1)
        ready = d.api.get_json("/readyz", timeout=1)
    except NodeApiError:
        return False
    return bool(isinstance(ready, dict) and ready.get("status") == "ready" and c.finalized_height >= p.finalized_height - 1)


def flood(ctx: RunContext) -> None:
    target = _target(ctx)
    observer = next(d for d in ctx.delegates if d.name != target.name)
    keys = read_accounts(_accounts_file(ctx), at_least=4)
    half = len(keys) // 2
    honest, spam = keys[:half], keys[half:]
    chain = target.api.chain(timeout=5)
    min_fee = chain.min_fee or 1
    status = target.admin("status")
    p2p_host, _, p2p_port = str(status["p2p_listen"]).rpartition(":")
    api = urlsplit(target.api_url)
    api_host = api.hostname or "127.0.0.1"
    plan = FloodPlan(
        api_host=api_host,
        api_port=int(api.port or 80),
        p2p_host=p2p_host,
        p2p_port=int(p2p_port),
        duration_s=float(ctx.params["flood_s"]),
        attacks=_attacks(ctx),
        sources=loopback_sources(api_host, 8) or tuple(str(a) for a in ctx.network.var("iotex_flood_sources") or ())[:8],
        max_rps=float(ctx.params["rps"]),
    ).scaled(float(ctx.params["intensity"]))
    plan.check()
    spam_nonces = {k.address: observer.api.account(k.address, timeout=5).pending_nonce for k in spam}
    delegates = [d.operator for d in observer.api.delegates(timeout=5).candidates if d.active]
    tgt = flood_attacks.Target(
        chain.chain_id,
        min_fee,
        chain.genesis_hash or "",
        delegates,
        chain.finalized_height,
        [k.secret().hex() for k in spam],
        spam_nonces,
    )
    fd, tmp = tempfile.mkstemp(prefix="flood-honest-", suffix=".secret.json")
    stops: list[Any] = []
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump([k.secret().hex() for k in honest], fh)
        tps = float(ctx.params["tps"])
        apis = [d.api_url for d in ctx.delegates]
        watch = Watch(observer.api, _sampler(target), peers=_peers_of(target))
        stops.append(watch.stop)
        watch.start()
        load = BackgroundLoad(apis, Path(tmp), tps=tps, batch=max(1, int(tps // 4)), fee=2 * min_fee, max_seconds=600).start()
        try:
            t0 = time.time()
            ctx.wait(float(ctx.params["baseline_s"]))
            t1 = time.time()
            ctx.event("flood_start", host=target.name, attacks=list(plan.attacks), duration_s=plan.duration_s)
            tally = flood_attacks.run_niced(plan, tgt)
            t2 = time.time()
            ctx.event("flood_end", host=target.name, requests=tally.requests)
            deadline = time.monotonic() + 30
            while not _healthy(target, observer) and time.monotonic() < deadline:
                time.sleep(0.1)
            recovery = time.time() - t2 if _healthy(target, observer) else None
            ctx.wait(float(ctx.params["tail_s"]))
        finally:
            load.stop()
        lost = load.lost(since=t0, wait=60)
        fate = _fates(observer, [h for t, h in load.accepted if t >= t0])
        status_of = _height_of(observer)
        base = watch.latencies([a for a in load.accepted if t0 <= a[0] < t1], status_of)
        under = watch.latencies([a for a in load.accepted if t1 <= a[0] < t2], status_of)
    finally:
        for stop in stops:
            stop()
        Path(tmp).unlink(missing_ok=True)
    interval = (chain.block_interval_ms or 1000) / 1000
    span = observer.api.blocks(max(1, tgt.height))

    def missed(a: float, b: float) -> tuple[int, int]:
        inside = [x for x in span if a - interval <= x.timestamp <= b + interval]
        return missed_slots([y.timestamp - x.timestamp for x, y in itertools.pairwise(inside)], interval), len(inside)

    base_missed, _ = missed(t0, t1)
    flood_missed, flood_blocks = missed(t1, t2)
    in_flood = [x for x in span if t1 - interval <= x.timestamp <= t2 + interval]
    me = str(status.get("address", ""))
    rss_peak, fds_peak = watch.peak(t1, t2 + 5)
    measures = {
        "host": target.name,
        "baseline_p99_s": percentile(base, 99),
        "flood_p99_s": percentile(under, 99),
        "baseline_n": len(base),
        "flood_n": len(under),
        "missed_slots": flood_missed,
        "baseline_missed_slots": base_missed,
        "blocks_in_flood": flood_blocks,
        # what a failed verdict needs to be read: the slots the chain missed (the block after each gap: its round,
        # proposer, voters) and whether the flooded delegate kept endorsing (its precommit in the certificates)
        "gaps": _gaps(in_flood, interval, me),
        "target_fewest_peers": watch.fewest_peers(t1, t2),
        "target_endorsed": f"{sum(me in x.voters for x in in_flood)}/{len(in_flood)}",
        "accepted_honest": lost["accepted"],
        # not final and no reason why: lost. Not final with a reason (the honest load re-used a nonce after a
        # refusal, so another of its transfers took it): displaced, and its sender can learn why.
        "lost": fate["lost"],
        "displaced": fate["displaced"],
        "displaced_codes": fate["codes"],
        "lost_examples": fate["examples"],
        "rss_before_mb": round(watch.before(t1), 1),
        "rss_peak_mb": round(rss_peak, 1),
        "open_files_peak": fds_peak,
        "recovery_s": None if recovery is None else round(recovery, 2),
        **tally.as_dict(),
        "server_errors": 0,
        "refused_honest": dict(load.stats.by_reason),
    }
    ctx.remember("measures", measures)
    ctx.log(f"flood on {target.name}: {json.dumps({k: v for k, v in measures.items() if k != 'by_attack'})}")


def _gaps(blocks: list[Any], interval: float, target: str, most: int = 5) -> list[dict[str, Any]]:
    """The longest gaps between consecutive finalized blocks that cost a slot, longest first."""
    out = [
        {
            "height": y.height,
            "gap_s": round(y.timestamp - x.timestamp, 2),
            "round": y.round,
            "by_target": y.proposer == target,
            "voters": len(y.voters),
        }
        for x, y in itertools.pairwise(blocks)
        if y.timestamp - x.timestamp > interval * 1.5
    ]
    return sorted(out, key=lambda g: -g["gap_s"])[:most]


def _criterion(i: int) -> Any:
    def probe(ctx: RunContext) -> CheckResult:
        m = ctx.recall("measures") or {}
        c = judge(m, Limits(recovery_s=float(ctx.params["recovery_s"])))[i]
        return CheckResult(c.ok, c.value, "" if c.ok else f"{c.name}: {c.value} {c.detail}".strip())

    return probe


_NAMES = [c.name for c in judge({})]


def measure(ctx: RunContext) -> dict[str, Any]:
    m = dict(ctx.recall("measures") or {})
    m.pop("by_attack", None)
    m["count_429"] = int(dict(m.get("statuses", {})).get("429", 0))
    # of them, answered by a rate-limiting proxy in front of the node (the netns lab's api_proxy)
    m["proxy_429"] = int(dict(m.get("proxy_statuses", {})).get("429", 0))
    return m


RUNBOOK = Runbook(
    name="flood",
    summary="Flood one delegate (API, mempool, P2P, consensus) under honest load; the chain and its latency must hold",
    params=(
        Param("host", str, default="", help="the delegate to flood (default: the last one)"),
        Param("flood_s", float, default=20.0, help="seconds of flood", minimum=1),
        Param("baseline_s", float, default=15.0, help="seconds of honest load alone before the flood", minimum=1),
        Param("tail_s", float, default=3.0, help="seconds of honest load after the node is healthy again", minimum=0),
        Param("tps", float, default=20.0, help="honest transfers a second, through every delegate", minimum=1),
        Param("intensity", float, default=1.0, help="every attack's count times this", minimum=0.05),
        Param("rps", float, default=300.0, help="the flood's HTTP requests a second, all attacks together", minimum=1),
        Param("attacks", str, default="all", help=f"comma-separated among: {', '.join(ATTACKS)}"),
        Param("accounts_file", str, default="", help="funded accounts (default: the lab's)"),
        Param("recovery_s", float, default=5.0, help="the node must be healthy this soon after the flood", minimum=0.1),
    ),
    preflight=preflight,
    steady_state=(checks.finalizing(blocks=2, within=15), checks.agree()),
    steps=(
        Step("flood", flood, "honest load alone (baseline), then honest load under the flood, then recovery", timeout=900),
        Step(
            "verify",
            lambda ctx: None,
            "the chain, the honest transfers and the flooded node held",
            verify=tuple(Check(name, _criterion(i), timeout=5, interval=1) for i, name in enumerate(_NAMES)),
        ),
    ),
    measure=measure,
    out_of_consensus=0,
    # a flood may make the flooded node miss its slot once, lag a block, and fill its mempool with spam
    expected_alerts=("DelegateMissingSlots", "DelegateLagging", "MempoolBacklog"),
)
