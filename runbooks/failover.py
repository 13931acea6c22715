"""Failover: a delegate's primary node dies, its hot standby takes over signing, and nothing was signed twice.

A delegate with a hot standby (inventory group `standbys`, `node_standby_of: <delegate host>`; the lab's
`lab up --standby node3`) runs two nodes with one delegate key: the primary signs, the standby follows the
chain and signs nothing. The drill (docs/failover.md):

1. **check-pair**: which of the two signs now (the roles swap with every failover: the victim is whichever is
   primary), the standby in step with the chain, the primary's key in recent certificates.
2. **fault**: kill -9 the primary (`mode=kill`), or demote it (`mode=switchover`: a planned handover, e.g.
   before maintenance of the primary's host). A killed primary is made a standby at once while it is down
   (`iotex-node set-standby`, or `admin demote` if something started it meanwhile), so that whatever starts it
   next (alertd's restart-node, a person, a reboot) starts a standby.
3. **promote**: `iotex-node admin promote --force` on the standby. `--force` skips only the node's "heard the
   key lately" guard (the drill has just stopped the primary); the node's fence still holds: it signs nothing
   at a height its key's other holder can have signed (docs/node.md, "Hot standby").
4. **verify-signing**: the key's precommit in a certificate at or above the fence, within `sign_within_s` of
   the fault.
5. **back-as-standby** (`restore`): the old primary started again; it answers as a standby, in step.
6. **verify-no-double-sign**: a check, not an alarm: over every block from the drill's start, each height
   whose certificate carries the key is in exactly one of the two nodes' signing records (`iotex-node admin
   signed`), and no height is in both.

Measures: time from the fault to the first block the new primary signed, the delegate's missed proposer slots
(target <= `max_missed`), the fence, and with `tps` > 0 the transfers accepted meanwhile that never became
final (target 0). Rollback: the roles before the drill (the old primary started, in step, given the key back;
the standby demoted); if the old primary does not come back the standby signs: the delegate always ends with
one signer.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from iotex_ops.errors import OpsError
from iotex_ops.network import Delegate
from iotex_ops.nodeapi import Block, NodeApiError
from iotex_ops.runbook import Check, CheckResult, Param, Runbook, RunContext, Step
from iotex_ops.traffic import BackgroundLoad

MODES = ("kill", "switchover")
API_TIMEOUT_S = 1.0
# the no-double-sign check reads the blocks from this many heights before the drill's start on
LOOKBACK_BLOCKS = 20
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
    del d, s
    return problems


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


def start_load(ctx: RunContext) -> None:
    tps = float(ctx.params["tps"])
    apis = [d.api_url for d in ctx.delegates]
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
    else:
        doc = p.admin("demote")
        ctx.remember("fault_at", t)
        ctx.remember("fault_height", max(height, int(doc.get("finalized_height", 0))))
        ctx.event("primary_demoted", host=p.name, height=height)
        ctx.log(f"{p.name} demoted at height {height}")


def restore_pair(ctx: RunContext) -> None:
    """Rollback: the roles as they were before the drill (the old primary signing, the other its standby) when
    the old primary comes back in step; else whichever can sign does, so the delegate always has one signer."""
    p = _by_name(ctx, str(ctx.recall("primary")))
    s = _by_name(ctx, str(ctx.recall("standby")))
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
    if not p.service_status().alive:
        p.service("start")
        ctx.log(f"{p.name} started again, as a standby")


def old_primary_is_standby(ctx: RunContext) -> CheckResult:
    p = _by_name(ctx, str(ctx.recall("primary")))
    doc = _status(p)
    top = _tip(ctx)
    h = None if doc is None else int(doc.get("finalized_height", 0))
    ok = _role(doc) == "standby" and h is not None and h >= top - 1
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
    return bool(ctx.params["restore"])


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
    summary="Kill a delegate's primary node, promote its hot standby, verify it signs in time and no height was signed twice",
    params=(
        Param(
            "delegate",
            str,
            default="",
            help="the delegate (inventory host) whose pair is drilled; default: the first with a standby",
        ),
        Param("mode", str, default="kill", choices=MODES, help="kill: SIGKILL the primary; switchover: demote it (planned)"),
        Param("sign_within_s", float, default=10.0, minimum=0, help="target: fault -> first block the new primary signed"),
        Param("max_missed", int, default=2, minimum=0, help="target: the delegate's missed proposer slots"),
        Param("restore", bool, default=True, help="start the old primary again, as the standby"),
        Param("tps", float, default=0.0, minimum=0, help="background transfers/s during the drill (0: none); lost ones fail it"),
        Param("accounts_file", str, default="", help="funded accounts for the load (default: the lab's)"),
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
            "kill -9 the primary (or demote it) and make it a standby while it is down",
            destructive=True,
            rollback=restore_pair,
            rollback_description="start the old primary and give it the key back (the roles before the drill)",
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
            "start the old primary again: it follows as the standby",
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
