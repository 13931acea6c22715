"""Failover: a delegate's primary node dies, its hot standby takes over signing, and nothing was signed twice.

A delegate with a hot standby (inventory group `standbys`, `node_standby_of: <delegate host>`; the lab's
`lab up --standby node3`) runs two nodes with one delegate key: the primary signs, the standby follows the
chain and signs nothing. The drill (docs/failover.md):

1. **check-pair**: which of the two signs now (the roles swap with every failover: the victim is whichever is
   primary), the standby in step with the chain, the primary's key in recent certificates.
2. **fault**: kill -9 the primary (`mode=kill`), or demote it (`mode=switchover`: a planned handover, e.g.
   before maintenance of the primary's host), or cut it off every peer while it runs (`mode=partition`, the
   netns lab: blackhole routes in its namespace to every other delegate and the standby, and strict
   reverse-path filtering so that nothing they send arrives either; it still answers the controller). A
   killed primary is made a standby at once while it is down (`iotex-node set-standby`, or `admin demote` if
   something started it meanwhile), so that whatever starts it next (alertd's restart-node, a person, a
   reboot) starts a standby.
3. **promote**: `iotex-node admin promote --force` on the standby. `--force` skips only the node's "heard the
   key lately" guard (the drill has just stopped the primary); the node's fence still holds: it signs nothing
   at a height its key's other holder can have signed (docs/node.md, "Hot standby").
4. **verify-signing**: the key's precommit in a certificate at or above the fence, within `sign_within_s` of
   the fault.
5. **back-as-standby** (`restore`): the old primary started again; it answers as a standby, in step. In
   partition mode (always): the cut-off primary is demoted through its admin API (`demote_before_heal`, fence
   first) and then the routes are removed; it catches up as the standby. With `demote_before_heal=false` the
   drill relies on the node's own guard (it demotes itself when it finds its key signed at or above its fence),
   and keeps the partition at least GUARD_PARTITION_S (4 s) from the cut: the guard needs 2.5 s without peers
   to notice it was cut off (docs/failover.md).
6. **verify-no-double-sign**: a check, not an alarm: over every block from the drill's start, each height
   whose certificate carries the key is in exactly one of the two nodes' signing records (`iotex-node admin
   signed`), and no height is in both.

Measures: time from the fault to the first block the new primary signed, the delegate's missed proposer slots
(target <= `max_missed`), the fence, and with `tps` > 0 the transfers accepted meanwhile that never became
final (target 0). Rollback: the roles before the drill (the old primary started, in step, given the key back;
the standby demoted); if the old primary does not come back the standby signs: the delegate always ends with
one signer. In partition mode the rollback removes the routes first, whatever else fails.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from iotex_ops.errors import OpsError
from iotex_ops.faults import edge
from iotex_ops.network import Delegate
from iotex_ops.nodeapi import Block, NodeApiError
from iotex_ops.runbook import Check, CheckResult, Param, Runbook, RunContext, Step
from iotex_ops.traffic import BackgroundLoad

MODES = ("kill", "switchover", "partition")
API_TIMEOUT_S = 1.0
# the no-double-sign check reads the blocks from this many heights before the drill's start on
LOOKBACK_BLOCKS = 20
# A cut-off primary's own guard (demote_before_heal=false) works only once it has noticed the cut: a node that
# knows of a second holder of its key and heard no peer for 2.5 s (iotex_node.node.ISOLATION_S) holds its
# signatures after the heal until it sees whether its key signs elsewhere. A shorter partition is not a drill
# of that guard but a race with it (on a fast machine the steps before the heal took 2.3 s and the healed
# primary signed the fence height beside its successor), so the drill keeps such a partition this long.
GUARD_PARTITION_S = 4.0
# loads started by a run (not journaled: a resumed run measures no load)
_LOADS: dict[str, BackgroundLoad] = {}


# --- the pair ---------------------------------------------------------------------------------------


def _delegate_name(ctx: RunContext) -> str:
    name = str(ctx.params["delegate"])
    if name:
        for sb in ctx.network.standbys:  # a standby's host names its delegate (an alert about a promoted standby)
            if sb.name == name and sb.vars.get("node_standby_of"):
                return str(sb.vars["node_standby_of"])
        return name
    for d in ctx.delegates:
        if ctx.network.standby_of(d.name) is not None:
            return d.name
    raise OpsError(f"no delegate of {ctx.network.inventory.path} has a hot standby (inventory group `standbys`)")


def _hosts(ctx: RunContext) -> tuple[Delegate, Delegate]:
    """(the delegate's host, its standby's host), whatever their roles are now."""
    name = _delegate_name(ctx)
    d = ctx.network.delegate(name)
    s = ctx.network.standby_of(name)
    if s is None:
        raise OpsError(f"delegate {name} has no hot standby in {ctx.network.inventory.path} (group `standbys`)")
    return d, s


def _by_name(ctx: RunContext, name: str) -> Delegate:
    d, s = _hosts(ctx)
    return d if d.name == name else s


def _status(d: Delegate) -> dict[str, Any] | None:
    try:
        return d.admin("status", timeout=10)
    except OpsError:
        return None


def _role(doc: dict[str, Any] | None) -> str | None:
    if doc is None:
        return None
    return str(doc.get("role") or ("standby" if doc.get("standby") else "primary"))


def _observer(ctx: RunContext) -> Delegate:
    """A delegate other than the pair, to read the chain from."""
    name = _delegate_name(ctx)
    for d in ctx.delegates:
        if d.name != name and d.try_chain(API_TIMEOUT_S) is not None:
            return d
    raise OpsError("no other delegate answers: cannot read the chain")


def _tip(ctx: RunContext) -> int:
    return int(_observer(ctx).chain()["finalized_height"])


def preflight(ctx: RunContext) -> list[str]:
    try:
        d, s = _hosts(ctx)
    except OpsError as exc:
        return [str(exc)]
    problems = []
    if len(ctx.delegates) < 4:
        problems.append(
            f"a failover drill needs at least 4 delegates (the chain finalizes without one); {len(ctx.delegates)} here"
        )
    if str(ctx.params["mode"]) == "partition":
        # either of the pair can be the primary: both must be cut apart from every other host
        problems += edge.partition_refusal("failover mode=partition", [d, s], [*ctx.delegates, *ctx.network.standbys])
    return problems


def peer_addresses(victim: Delegate, hosts: list[Delegate]) -> list[str]:
    """Every address the partition cuts `victim` off: the other delegates' and the standbys' (its own pair's
    too), sorted, without its own."""
    mine = str(victim.spec.ansible_host)
    return sorted({str(h.spec.ansible_host) for h in hosts if h.name != victim.name} - {mine})


def _all_hosts(ctx: RunContext) -> list[Delegate]:
    return [*ctx.delegates, *ctx.network.standbys]


# --- steps ------------------------------------------------------------------------------------------


def check_pair(ctx: RunContext) -> None:
    d, s = _hosts(ctx)
    docs = {x.name: _status(x) for x in (d, s)}
    roles = {n: _role(doc) for n, doc in docs.items()}
    primaries = [n for n, r in roles.items() if r == "primary"]
    standbys = [n for n, r in roles.items() if r == "standby"]
    if len(primaries) != 1 or len(standbys) != 1:
        raise OpsError(f"delegate {d.name} needs one primary and one standby; roles now: {roles} (None: not answering)")
    primary, standby = primaries[0], standbys[0]
    doc = docs[primary] or {}
    ctx.remember("primary", primary)
    ctx.remember("standby", standby)
    ctx.remember("address", str(doc.get("address", "")))
    ctx.remember("start_height", _tip(ctx))
    ctx.log(f"{primary} signs for {d.name} ({doc.get('address')}); {standby} is its hot standby")


def standby_in_sync(ctx: RunContext) -> CheckResult:
    s = _by_name(ctx, str(ctx.recall("standby")))
    c = s.try_chain(API_TIMEOUT_S)
    top = _tip(ctx)
    h = None if c is None else int(c["finalized_height"])
    ok = h is not None and h >= top - 1 and bool(c and c.get("standby"))
    return CheckResult(ok, {"standby_height": h, "top": top}, "" if ok else f"{s.name} at {h}, the chain at {top}")


def primary_signs(ctx: RunContext) -> CheckResult:
    addr = str(ctx.recall("address"))
    top = _tip(ctx)
    recent = _observer(ctx).api.blocks(max(1, top - 4), top, timeout=3)
    signed = [b.height for b in recent if addr in b.voters]
    return CheckResult(bool(signed), {"signed_recently": signed}, "" if signed else f"{addr} in none of blocks {top - 4}..{top}")


def load_apis(delegates: list[Delegate], mode: str, pair: str) -> list[str]:
    """Where the drill's load submits: every delegate; in partition mode not the pair's delegate host, which
    may be the one cut off: it would accept transfers that it cannot relay (nor re-gossips once healed)."""
    return [d.api_url for d in delegates if not (mode == "partition" and d.name == pair)]


def start_load(ctx: RunContext) -> None:
    tps = float(ctx.params["tps"])
    apis = load_apis(list(ctx.delegates), str(ctx.params["mode"]), _delegate_name(ctx))
    load = BackgroundLoad(apis, _accounts_file(ctx), tps=tps, max_seconds=900).start()
    _LOADS[ctx.run_id] = load
    ctx.remember("load_started_at", time.time())
    ctx.log(f"background load: {tps:g} transfers/s through {len(apis)} delegates")
    ctx.wait(2.0)  # a baseline before the fault


def stop_load(ctx: RunContext) -> None:
    load = _LOADS.pop(ctx.run_id, None)
    if load is not None:
        load.stop()


def _accounts_file(ctx: RunContext) -> Path:
    from iotex_ops.lab import lab as lab_mod

    found = lab_mod.funded_accounts_file(str(ctx.params["accounts_file"]), ctx.network.inventory.path)
    if found is None:
        raise OpsError("failover: tps > 0 needs funded accounts: pass -e accounts_file=PATH (a lab has them)")
    return found


def _make_standby(d: Delegate) -> str:
    """Make a (stopped) node a standby before anything starts it; a running one is demoted."""
    res = d.node_cli(["set-standby", "--home", d.home], check=False, timeout=30)
    if res.exit_code == 0:
        return "set-standby (offline)"
    d.admin("demote")
    return "admin demote (it was running)"


def fault(ctx: RunContext) -> None:
    p = _by_name(ctx, str(ctx.recall("primary")))
    mode = str(ctx.params["mode"])
    height = _tip(ctx)
    t = time.time()
    if mode == "kill":
        p.service("kill")
        ctx.remember("fault_at", t)
        ctx.remember("fault_height", height)
        ctx.event("primary_killed", host=p.name, height=height)
        how = _make_standby(p)
        ctx.log(f"{p.name} killed (SIGKILL) at height {height}; made a standby while down: {how}")
    elif mode == "partition":
        _partition(ctx, p, height, t)
    else:
        doc = p.admin("demote")
        ctx.remember("fault_at", t)
        ctx.remember("fault_height", max(height, int(doc.get("finalized_height", 0))))
        ctx.event("primary_demoted", host=p.name, height=height)
        ctx.log(f"{p.name} demoted at height {height}")


def _partition(ctx: RunContext, p: Delegate, height: int, t: float) -> None:
    peers = peer_addresses(p, _all_hosts(ctx))
    # remembered before anything is cut: the rollback heals them all, whatever part of the cut was made
    ctx.remember("cut_peers", peers)
    ctx.remember("rp_filter_before", edge.drop_inbound(p))
    cut = edge.partition(p, peers)
    ctx.remember("fault_at", t)
    # the tip it knew: its own finalized height once cut off (it can finalize nothing more), or the network's
    doc = _status(p) or {}
    known = max(height, int(doc.get("finalized_height", 0)))
    ctx.remember("fault_height", known)
    ctx.event("primary_partitioned", host=p.name, height=known, peers=cut)
    ctx.log(f"{p.name} cut off its peers {', '.join(cut)} at height {known} (blackhole routes, reverse-path filter); "
            "it runs on, as a primary that hears nobody")  # fmt: skip


def _heal(ctx: RunContext, p: Delegate) -> None:
    peers = ctx.recall("cut_peers")
    edge.heal(p, [str(a) for a in peers] if peers is not None else peer_addresses(p, _all_hosts(ctx)))
    before = ctx.recall("rp_filter_before")
    if before is not None:
        edge.restore_inbound(p, int(before))
    ctx.remember("healed_at", time.time())
    ctx.event("partition_healed", host=p.name)


def restore_pair(ctx: RunContext) -> None:
    """Rollback: the roles as they were before the drill (the old primary signing, the other its standby) when
    the old primary comes back in step; else whichever can sign does, so the delegate always has one signer.
    In partition mode the routes go first, whatever happens, and the standby, if promoted, stops before the old
    primary catches up (the one that hands the key back stops first)."""
    p = _by_name(ctx, str(ctx.recall("primary")))
    s = _by_name(ctx, str(ctx.recall("standby")))
    if str(ctx.params["mode"]) == "partition":
        try:
            _heal(ctx, p)
        except OpsError as exc:
            with contextlib.suppress(OpsError):
                if _role(_status(s)) != "primary":
                    s.admin("promote", "--force")
            raise OpsError(f"{p.name}: its routes could not be removed ({exc}); {s.name} signs for the delegate") from None
        ctx.log(f"{p.name}: routes to its peers removed")
        if _role(_status(s)) == "primary":
            s.admin("demote")
            ctx.log(f"{s.name} demoted")
    if not p.service_status().alive:
        p.service("start")
    deadline = time.monotonic() + 30
    in_step = False
    while time.monotonic() < deadline:
        c = p.try_chain(API_TIMEOUT_S)
        if c is not None and int(c["finalized_height"]) >= _tip(ctx) - 1:
            in_step = True
            break
        time.sleep(0.3)
    if not in_step:
        if _role(_status(s)) != "primary":
            s.admin("promote", "--force")
        raise OpsError(f"{p.name} did not come back in step within 30 s: {s.name} signs for the delegate")
    if _role(_status(s)) == "primary":
        s.admin("demote")
        ctx.log(f"{s.name} demoted")
    c = s.try_chain(API_TIMEOUT_S)
    _in_step(p, int(c["finalized_height"]) if c else _tip(ctx))
    p.admin("promote", "--force")  # above its own fence: nothing it or the other signed is signed again
    ctx.log(f"{p.name} signs again, {s.name} is its standby (the roles before the drill)")


def _in_step(new: Delegate, old_height: int, timeout: float = 10.0) -> None:
    """Wait until `new` has finalized `old_height` (what the node it takes over from had finalized): its fence
    counts from its own tip, and the other holder may have signed one height above its tip."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c = new.try_chain(API_TIMEOUT_S)
        if c is not None and int(c["finalized_height"]) >= old_height:
            return
        time.sleep(0.05)
    raise OpsError(f"{new.name} did not reach height {old_height} within {timeout:.0f}s: not promoting it")


def promote(ctx: RunContext) -> None:
    s = _by_name(ctx, str(ctx.recall("standby")))
    _in_step(s, int(ctx.recall("fault_height")))
    doc = s.admin("promote", "--force")
    fence = (doc.get("result") or {}).get("fence", doc.get("sign_fence"))
    if not isinstance(fence, int):
        raise OpsError(f"{s.name}: promote answered without a signing fence (role {doc.get('role')!r})")
    ctx.remember("fence", fence)
    ctx.remember("promoted_at", time.time())
    ctx.event("standby_promoted", host=s.name, fence=fence)
    ctx.log(
        f"{s.name} promoted: signs from height {fence} on ({time.time() - float(ctx.recall('fault_at')):.2f}s after the fault)"
    )


def new_primary_signs(ctx: RunContext) -> CheckResult:
    """The new primary signs: its first precommit for a block that became final (its signing record, with the
    moment it signed), at or above the fence; and its key in a certificate from there (what the chain shows)."""
    addr, fence = str(ctx.recall("address")), int(ctx.recall("fence"))
    top = _tip(ctx)
    if top < fence:
        return CheckResult(False, {"top": top, "fence": fence}, f"the chain is at {top}, below the fence {fence}")
    s = _by_name(ctx, str(ctx.recall("standby")))
    rows = s.admin("signed", "--from", str(fence), "--to", str(top), timeout=10).get("signed", [])
    blocks = {b.height: b for b in _observer(ctx).api.blocks(fence, top, timeout=3)}

    def final_precommit(r: dict[str, Any]) -> bool:
        b = blocks.get(int(r["height"]))
        return r["kind"] == "precommit" and bool(r["value"]) and b is not None and b.hash == r["value"]

    first = next((r for r in rows if final_precommit(r)), None)
    certified = next((b for b in blocks.values() if addr in b.voters), None)
    if first is None or certified is None:
        value = {"top": top, "fence": fence, "signed_rows": len(rows)}
        return CheckResult(False, value, f"{s.name}: no final block signed at or above {fence} in a certificate yet")
    took = round(int(first["at_ms"]) / 1000 - float(ctx.recall("fault_at")), 3)
    ctx.remember("first_signed_height", int(first["height"]))
    ctx.remember("first_certified_height", certified.height)
    ctx.remember("time_to_signing_s", took)
    done: dict[str, Any] = {"first_signed_height": int(first["height"]), "first_certified_height": certified.height}
    return CheckResult(True, done | {"time_to_signing_s": took})


def within_target(ctx: RunContext) -> CheckResult:
    took = ctx.recall("time_to_signing_s")
    target = float(ctx.params["sign_within_s"])
    ok = took is not None and float(took) <= target
    return CheckResult(ok, {"time_to_signing_s": took, "target_s": target}, "" if ok else f"{took}s > the target {target}s")


def missed_within_budget(ctx: RunContext) -> CheckResult:
    missed = _missed_slots(ctx)
    ok = missed is not None and missed <= int(ctx.params["max_missed"])
    return CheckResult(ok, {"missed_slots": missed, "budget": int(ctx.params["max_missed"])})


def bring_back(ctx: RunContext) -> None:
    p = _by_name(ctx, str(ctx.recall("primary")))
    if str(ctx.params["mode"]) == "partition":
        # fence first (STONITH's order): the old primary stops signing before it can hear the network again
        if bool(ctx.params["demote_before_heal"]):
            try:
                p.admin("demote")
                ctx.remember("old_primary_demoted_by", "drill")
                ctx.log(f"{p.name} demoted through its admin API while still cut off")
            except OpsError as exc:
                ctx.log(f"{p.name} could not be demoted ({exc}): healing anyway, its own guard demotes it")
        else:
            cut_at = ctx.recall("fault_at")
            left = GUARD_PARTITION_S - (time.time() - float(cut_at)) if cut_at is not None else GUARD_PARTITION_S
            if left > 0:
                ctx.log(f"{p.name} stays cut off {left:.1f}s more: its guard notices a cut after 2.5s without peers")
                time.sleep(left)
        _heal(ctx, p)
        ctx.log(f"{p.name}: routes to its peers removed; it catches up as the standby")
        return
    if not p.service_status().alive:
        p.service("start")
        ctx.log(f"{p.name} started again, as a standby")


def old_primary_is_standby(ctx: RunContext) -> CheckResult:
    p = _by_name(ctx, str(ctx.recall("primary")))
    doc = _status(p)
    top = _tip(ctx)
    h = None if doc is None else int(doc.get("finalized_height", 0))
    ok = _role(doc) == "standby" and h is not None and h >= top - 1
    if ok and str(ctx.params["mode"]) == "partition" and ctx.recall("old_primary_demoted_by") is None:
        ctx.remember("old_primary_demoted_by", "itself")  # the node's guard: its key signed above its fence
    return CheckResult(ok, {"role": _role(doc), "height": h, "top": top})


def _signed_heights(d: Delegate, first: int, last: int) -> set[int] | None:
    """The heights `d` signed (its signing records), or None when its node does not run (restore=false)."""
    try:
        doc = d.admin("signed", "--from", str(first), "--to", str(last), timeout=30)
    except OpsError:
        return None
    return {int(r["height"]) for r in doc.get("signed", [])}


def no_double_sign(ctx: RunContext) -> CheckResult:
    """Every height from the drill's start whose certificate carries the key was signed by exactly one of
    the two holders (by their signing records), and no height by both."""
    addr = str(ctx.recall("address"))
    # from before the fault too: the old primary's last heights are where a double signature would be
    first = max(1, int(ctx.recall("start_height")) - LOOKBACK_BLOCKS)
    last = _tip(ctx)
    blocks = _observer(ctx).api.blocks(first, last, timeout=10)
    in_certs = {b.height for b in blocks if addr in b.voters}
    p = _by_name(ctx, str(ctx.recall("primary")))
    s = _by_name(ctx, str(ctx.recall("standby")))
    by_p, by_s = _signed_heights(p, first, last), _signed_heights(s, first, last)
    if by_s is None:
        return CheckResult(False, {"heights": [first, last]}, f"{s.name} does not answer: its signing records cannot be read")
    if by_p is None:
        # the old primary is down (restore=false): what can be proven without its records is that the new
        # primary signed nothing below its fence, and every certificate from the fence on is its own
        fence = int(ctx.recall("fence"))
        by_p = {h for h in in_certs if h < fence}
        below = sorted(h for h in by_s if h < fence)
        if below:
            return CheckResult(False, {"below_fence": below[:20]}, f"{s.name} signed below its fence {fence}: {below[:10]}")
    both = sorted(by_p & by_s)
    unexplained = sorted(in_certs - by_p - by_s)
    value = {
        "heights": [first, last],
        "blocks_read": len(blocks),
        "certified_with_key": len(in_certs),
        "signed_by": {p.name: len(by_p), s.name: len(by_s)},
        "signed_by_both": both[:20],
        "unexplained": unexplained[:20],
    }
    ctx.remember("double_signed_heights", len(both))
    detail = ""
    if both:
        detail = f"heights signed by both {p.name} and {s.name}: {both[:10]}"
    elif unexplained:
        detail = f"certificates carry {addr} at heights neither node recorded signing: {unexplained[:10]}"
    return CheckResult(not both and not unexplained, value, detail)


# --- measures ---------------------------------------------------------------------------------------


def _missed_slots(ctx: RunContext) -> int | None:
    """The delegate's proposer slots that passed without its block, from the fault to its first signed block."""
    addr = str(ctx.recall("address"))
    start, end = ctx.recall("fault_height"), ctx.recall("first_signed_height")
    if start is None or end is None:
        return None
    obs = _observer(ctx)
    blocks: list[Block] = obs.api.blocks(int(start) + 1, int(end), timeout=5)
    order: dict[int, tuple[str, ...]] = {}
    missed = 0
    for b in blocks:
        if b.epoch not in order:
            order[b.epoch] = obs.api.delegates(b.epoch, timeout=5).active
        active = order[b.epoch]
        missed += sum(1 for r in range(b.round) if active and active[(b.height + r) % len(active)] == addr)
    return missed


def measure(ctx: RunContext) -> dict[str, Any]:
    out: dict[str, Any] = {
        "delegate": _delegate_name(ctx),
        "mode": ctx.params["mode"],
        "old_primary": ctx.recall("primary"),
        "new_primary": ctx.recall("standby"),
        "fault_height": ctx.recall("fault_height"),
        "fence": ctx.recall("fence"),
        "first_signed_height": ctx.recall("first_signed_height"),
        "first_certified_height": ctx.recall("first_certified_height"),
        "time_to_signing_s": ctx.recall("time_to_signing_s"),
        "double_signed_heights": ctx.recall("double_signed_heights"),
    }
    if ctx.params["mode"] == "partition":
        out["cut_peers"] = ctx.recall("cut_peers")
        out["old_primary_demoted_by"] = ctx.recall("old_primary_demoted_by")
        healed, at = ctx.recall("healed_at"), ctx.recall("fault_at")
        out["partitioned_s"] = round(float(healed) - float(at), 3) if healed is not None and at is not None else None
    try:
        out["missed_slots"] = _missed_slots(ctx)
    except (OpsError, NodeApiError) as exc:
        out["missed_slots"] = None
        out["missed_slots_error"] = str(exc)
    load = _LOADS.pop(ctx.run_id, None)
    if load is not None:
        load.stop()
        since = float(ctx.recall("load_started_at") or 0.0)
        lost = load.lost(since=since, wait=30.0, from_height=int(ctx.recall("start_height") or 0) + 1)
        out["lost_actions"], out["accepted_actions"] = lost["lost"], lost["accepted"]
        out["load"] = {k: v for k, v in lost.items() if k != "examples"}
    return out


def _with_load(ctx: RunContext) -> bool:
    return float(ctx.params["tps"]) > 0


def _restore(ctx: RunContext) -> bool:
    # a partition is always healed: the old primary runs, cut off, until the routes go
    return bool(ctx.params["restore"]) or str(ctx.params["mode"]) == "partition"


def _no_loss(ctx: RunContext) -> CheckResult:
    """With load: every transfer accepted since the load began is final (checked before the measures)."""
    load = _LOADS.get(ctx.run_id)
    if load is None:
        return CheckResult(True, {"load": None})
    since = float(ctx.recall("load_started_at") or 0.0)
    lost = load.lost(since=since, until=time.time() - 3.0, wait=2.0, from_height=int(ctx.recall("start_height")) + 1)
    ctx.remember("lost_actions", lost["lost"])
    ok = lost["lost"] == 0
    return CheckResult(ok, {"lost": lost["lost"], "accepted": lost["accepted"]}, "" if ok else f"e.g. {lost['examples'][:2]}")


RUNBOOK = Runbook(
    name="failover",
    summary=(
        "Kill (or partition) a delegate's primary node, promote its hot standby, verify it signs in time and no height "
        "was signed twice"
    ),
    params=(
        Param(
            "delegate",
            str,
            default="",
            help="the delegate (inventory host) whose pair is drilled; default: the first with a standby",
        ),
        Param(
            "mode",
            str,
            default="kill",
            choices=MODES,
            help="kill: SIGKILL the primary; switchover: demote it (planned); partition: cut it off its peers (netns lab)",
        ),
        Param("sign_within_s", float, default=10.0, minimum=0, help="target: fault -> first block the new primary signed"),
        Param("max_missed", int, default=2, minimum=0, help="target: the delegate's missed proposer slots"),
        Param("restore", bool, default=True, help="start the old primary again, as the standby"),
        Param("tps", float, default=0.0, minimum=0, help="background transfers/s during the drill (0: none); lost ones fail it"),
        Param("accounts_file", str, default="", help="funded accounts for the load (default: the lab's)"),
        Param(
            "demote_before_heal",
            bool,
            default=True,
            help="partition: demote the cut-off primary through its admin API before healing (false: its own guard)",
        ),
    ),
    preflight=preflight,
    steps=(
        Step(
            "check-pair",
            check_pair,
            "find the primary and the standby; the standby in step, the primary signing",
            verify=(
                Check("the standby is in step with the chain", standby_in_sync, timeout=30, interval=0.5),
                Check("the primary's key is in recent certificates", primary_signs, timeout=30, interval=0.5),
            ),
        ),
        Step(
            "load",
            start_load,
            "background transfers at tps",
            when=_with_load,
            rollback=stop_load,
            rollback_description="stop the load",
        ),
        Step(
            "fault",
            fault,
            "kill -9 the primary (or demote it, or cut it off its peers) and make it a standby while it is down",
            destructive=True,
            rollback=restore_pair,
            rollback_description=(
                "heal a partition first; start the old primary and give it the key back (the roles before the drill)"
            ),
            phase="primary down",
        ),
        Step("promote", promote, "promote the standby (admin promote --force: the fence still holds)", phase="promoted"),
        Step(
            "verify-signing",
            lambda ctx: None,
            "the new primary signs within the target, with at most max_missed missed slots",
            verify=(
                Check("the new primary's precommit is in a certificate", new_primary_signs, timeout=60, interval=0.25),
                Check("it signed within sign_within_s of the fault", within_target, timeout=1, interval=0.5),
                Check("missed slots within max_missed", missed_within_budget, timeout=5, interval=1),
            ),
        ),
        Step(
            "back-as-standby",
            bring_back,
            "start the old primary again (partition: demote it, then heal): it follows as the standby",
            when=_restore,
            verify=(Check("the old primary answers as a standby, in step", old_primary_is_standby, timeout=60, interval=0.5),),
        ),
        Step(
            "verify-no-double-sign",
            lambda ctx: None,
            "from every block's certificate and both nodes' signing records: no height signed by both",
            verify=(
                Check("no height signed by both holders of the key", no_double_sign, timeout=20, interval=2),
                Check("no accepted transfer lost", _no_loss, timeout=45, interval=3),
            ),
        ),
    ),
    measure=measure,
    out_of_consensus=1,
    expected_alerts=("DelegateDown", "DelegateMissingSlots", "DelegateLagging", "PeersLow"),
)
