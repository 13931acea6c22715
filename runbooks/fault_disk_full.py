"""Fault drill: fill a delegate's data volume to its limit; the node must pause its writes (never corrupt its
database, never die in a loop) and come back by itself once space returns.

`iotex-ops runbook run fault-disk-full --yes [-e host=node3] [-e hold_s=4]`. The machine's real disk is never
filled: the victim's data directory gets a volume of its own, a size-limited tmpfs, for the drill.

1. volume (destructive; root on the host): stop the node; move `<home>/data` aside, mount a tmpfs of the data's
   size + the node's guard (`min_free_disk_mb`, default 64) + `headroom_mb` over `<home>/data`, copy the data in,
   start the node; verified endorsing again;
2. fill: a file on that volume leaves half the guard free: the node must pause writes (`writes_paused` in
   GET /v1/chain and /readyz, `iotex_node_writes_paused` 1) while it keeps answering, and its peers finalize;
   after `hold_s`, the volume is filled to its last byte (the full volume the guard exists to avoid): the
   node must still answer, with writes paused, not dead;
3. free: the file goes; the node must resume writes, sync what it missed and endorse again by itself (no
   restart);
4. restore the volume (destructive): stop the node, `iotex-node db check` (every page, every block, the state
   root) on the drill's volume, copy the data back to the disk, unmount, start; verified endorsing.

Rollback: the fill file is removed; the volume step's rollback stops the node, copies the data back (when the
volume holds it), unmounts and starts the node. Measures: pause_s (volume filled -> writes paused), resume_s
(space back -> endorsing again), the heights, the integrity check. Needs root on the host (mount); the
local lab runs as the user who started it.
"""

from __future__ import annotations

import json
import shlex
import time
from typing import Any

from iotex_ops.errors import OpsError
from iotex_ops.network import Delegate
from iotex_ops.runbook import Check, CheckResult, Param, Runbook, RunContext, Step, checks

API_TIMEOUT_S = 1.0
STOP_WAIT_S = 45.0
DEFAULT_GUARD_MB = 64  # the node's default min_free_disk_mb
FILL = "fault-disk-full.fill"


def target(ctx: RunContext) -> Delegate:
    host = str(ctx.params["host"]) or ctx.delegates[-1].name
    return ctx.network.delegate(host)


def _paths(d: Delegate) -> tuple[str, str]:
    return f"{d.home}/data", f"{d.home}/data.fault-disk-full"


def preflight(ctx: RunContext) -> list[str]:
    host = str(ctx.params["host"])
    names = [d.name for d in ctx.delegates]
    if host and host not in names:
        return [f"{host!r} is not a delegate of {ctx.network.inventory.path}; its delegates: {', '.join(names)}"]
    if len(names) < 4:
        return [f"the chain must keep finalizing without {host or names[-1]}: at least 4 delegates, not {len(names)}"]
    d = target(ctx)
    res = d.run("id -u; command -v mount fallocate >/dev/null && echo tools", timeout=15, check=False)
    lines = res.stdout.split()
    if not lines or lines[0] != "0":
        return [f"{d.name}: mounting the drill's volume needs root on the host (it runs as uid {lines[0] if lines else '?'})"]
    if "tools" not in lines:
        return [f"{d.name}: mount and fallocate are needed on the host"]
    _data, aside = _paths(d)
    if d.run(f"test -e {shlex.quote(aside)}", timeout=15, check=False).ok:
        return [f"{d.name}: {aside} exists: a previous drill did not finish; put it back by hand first"]
    return []


def _wait_stopped(d: Delegate) -> None:
    deadline = time.monotonic() + STOP_WAIT_S
    while True:
        st = d.service_status()
        if not st.alive and st.state in ("stopped", "failed"):
            return
        if time.monotonic() > deadline:
            raise OpsError(f"{d.name}: the node did not stop within {STOP_WAIT_S:g}s ({st.state}, {st.detail})")
        time.sleep(0.1)


def _stop(d: Delegate) -> None:
    d.service("stop", timeout=STOP_WAIT_S + 15)
    _wait_stopped(d)


def _guard_mb(d: Delegate) -> int:
    res = d.run(f"grep -E '^min_free_disk_mb *=' {shlex.quote(d.home + '/config.toml')} || true", timeout=15)
    text = res.stdout.strip()
    return int(text.split("=", 1)[1]) if text else DEFAULT_GUARD_MB


def _mounted(d: Delegate, path: str) -> bool:
    return d.run(f"mountpoint -q {shlex.quote(path)}", timeout=15, check=False).ok


def volume(ctx: RunContext) -> None:
    d = target(ctx)
    data, aside = _paths(d)
    guard = _guard_mb(d)
    used_mb = int(d.run(f"du -sm {shlex.quote(data)} | cut -f1", timeout=60).stdout.strip() or "0")
    size_mb = used_mb + guard + int(ctx.params["headroom_mb"])
    ctx.remember("victim", d.name)
    ctx.remember("guard_mb", guard)
    _stop(d)
    q, qa = shlex.quote(data), shlex.quote(aside)
    d.run(f"mv {q} {qa} && mkdir -m 0700 {q}", timeout=60)
    ctx.remember("moved", True)
    d.run(f"mount -t tmpfs -o size={size_mb}m,mode=0700 fault-disk-full {q}", timeout=30)
    ctx.remember("mounted", True)
    d.run(f"cp -a {qa}/. {q}/ && chown --reference={qa} {q}", timeout=600)
    d.service("start")
    ctx.event("volume", host=d.name, size_mb=size_mb, data_mb=used_mb, guard_mb=guard)
    ctx.log(f"{d.name}: {data} is now a {size_mb} MiB tmpfs ({used_mb} MiB of data, guard {guard} MiB); node started")


def _put_back(ctx: RunContext, d: Delegate) -> None:
    """The drill's volume goes: the node stopped, its data copied back to the disk, the tmpfs unmounted."""
    data, aside = _paths(d)
    q, qa = shlex.quote(data), shlex.quote(aside)
    _stop(d)
    if _mounted(d, data):
        d.run(f"rm -f {q}/{FILL}", timeout=30)
        d.run(f"cp -a {q}/. {qa}/ && umount {q}", timeout=600)
    if d.run(f"test -d {qa}", timeout=15, check=False).ok:
        d.run(f"rmdir {q} 2>/dev/null || rm -rf {q}; mv {qa} {q}", timeout=60)


def volume_back(ctx: RunContext) -> None:
    d = target(ctx)
    if not ctx.recall("moved"):
        return
    try:
        _put_back(ctx, d)
    finally:
        d.service("start")
    ctx.log(f"{d.name}: data back on the disk, the drill's volume unmounted, node started")


def _chain(d: Delegate) -> dict[str, Any] | None:
    return d.try_chain(timeout=API_TIMEOUT_S)


def _wait(what: str, probe: Any, timeout: float) -> tuple[Any, float]:
    t0 = time.monotonic()
    while True:
        got = probe()
        if got:
            return got, time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise OpsError(f"{what}: not within {timeout:g}s")
        time.sleep(0.1)


def _free_bytes(d: Delegate, path: str) -> int:
    return int(d.run(f"df -B1 --output=avail {shlex.quote(path)} | tail -1", timeout=15).stdout.strip())


def fill(ctx: RunContext) -> None:
    d = target(ctx)
    data, _ = _paths(d)
    guard = int(ctx.recall("guard_mb") or DEFAULT_GUARD_MB) * 1024 * 1024
    peers = ctx.network.peers_of(d.name)
    free = _free_bytes(d, data)
    leave = max(guard // 2, 1 << 20)
    d.run(f"fallocate -l {max(0, free - leave)} {shlex.quote(data + '/' + FILL)}", timeout=60)
    t_fill = time.time()
    c, pause_s = _wait(f"{d.name} pausing its writes", lambda: (_chain(d) or {}).get("writes_paused"), 15)
    ctx.remember("pause_s", round(pause_s, 3))
    ctx.event("writes_paused", host=d.name, after_s=round(pause_s, 3), reason=c, free=_free_bytes(d, data))
    ctx.log(f"{d.name}: writes paused {pause_s:.2f}s after its volume was filled: {c}")
    paused_at = int((_chain(d) or {}).get("finalized_height") or 0)
    before = max(int(c2["finalized_height"]) for c2 in ctx.network.chains(peers, API_TIMEOUT_S).values() if c2)
    time.sleep(float(ctx.params["hold_s"]))
    # to the last byte: the node must still answer with its writes paused (nothing written, nothing lost)
    d.run(f"fallocate -l $(( $(stat -c %s {shlex.quote(data + '/' + FILL)}) + {_free_bytes(d, data)} )) "
          f"{shlex.quote(data + '/' + FILL)} || true", timeout=60)  # fmt: skip
    time.sleep(1.0)
    c = _chain(d)
    if c is None or not c.get("writes_paused"):
        raise OpsError(f"{d.name} on a full volume: {'does not answer' if c is None else 'writes not paused'}")
    after = max(int(c2["finalized_height"]) for c2 in ctx.network.chains(peers, API_TIMEOUT_S).values() if c2)
    ctx.remember("full", {"node_height": int(c["finalized_height"]), "paused_at": paused_at,
                          "peers_from": before, "peers_to": after, "free": _free_bytes(d, data),
                          "filled_at": t_fill})  # fmt: skip
    if after <= before:
        raise OpsError(f"the other delegates did not finalize while {d.name} was full (at {after})")
    ctx.log(f"{d.name}: volume full, node answering at {c['finalized_height']} with writes paused; peers {before} -> {after}")


def unfill(ctx: RunContext) -> None:
    d = target(ctx)
    data, _ = _paths(d)
    if _mounted(d, data):
        d.run(f"rm -f {shlex.quote(data + '/' + FILL)}", timeout=30)


def free(ctx: RunContext) -> None:
    unfill(ctx)
    ctx.remember("freed_at", time.time())
    ctx.log(f"{target(ctx).name}: space is back")


def endorsing(ctx: RunContext) -> CheckResult:
    d = target(ctx)
    c = _chain(d)
    if c is None:
        return CheckResult(False, None, "not answering")
    if c.get("writes_paused") or not c.get("participating"):
        return CheckResult(False, {"writes_paused": c.get("writes_paused")}, "writes still paused")
    tip = int(c["finalized_height"])
    for b in reversed(d.api.blocks(max(1, tip - 2), tip, timeout=5.0)):
        if c["address"] in b.voters:
            if ctx.recall("resume_s") is None and ctx.recall("freed_at"):
                ctx.remember("resume_s", round(time.time() - float(ctx.recall("freed_at")), 3))
            return CheckResult(True, {"endorsed": b.height})
    return CheckResult(False, {"tip": tip}, "its signature is in none of the last 3 certificates")


def restore_volume(ctx: RunContext) -> None:
    d = target(ctx)
    _stop(d)
    res = d.node_cli(["db", "check", "--home", d.home, "--json"], timeout=600, check=False)
    try:
        report = json.loads(res.stdout)
    except ValueError:
        report = {"ok": False, "problems": [res.tail(3)]}
    ctx.remember("db_check", {k: report.get(k) for k in ("ok", "problems", "height", "seconds", "bytes")})
    ctx.event("db_check", host=d.name, **ctx.recall("db_check"))
    try:
        _put_back(ctx, d)
    finally:
        d.service("start")
    if not report.get("ok"):
        raise OpsError(f"{d.name}: the database fails its integrity check after the drill: {report.get('problems')}")
    ctx.remember("moved", False)
    ctx.log(f"{d.name}: database whole at height {report.get('height')} ({report.get('seconds')}s check); data back on the disk")


def measure(ctx: RunContext) -> dict[str, Any]:
    return {
        "victim": ctx.recall("victim"),
        "pause_s": ctx.recall("pause_s"),
        "resume_s": ctx.recall("resume_s"),
        "full": ctx.recall("full"),
        "db_check": ctx.recall("db_check"),
    }


RUNBOOK = Runbook(
    name="fault-disk-full",
    summary="Fill one delegate's data volume (a tmpfs of its own): writes pause, nothing is corrupted, it comes back",
    params=(
        Param("host", str, default="", help="the victim delegate (default: the last one)"),
        Param("hold_s", float, default=4.0, help="how long the volume stays below the guard before it is filled up", minimum=0),
        Param("headroom_mb", int, default=32, help="the drill volume's size beyond the data and the guard", minimum=8),
    ),
    preflight=preflight,
    steady_state=(checks.finalizing(blocks=2, within=15),),
    steps=(
        Step(
            "volume",
            volume,
            "stop the node; its data onto a size-limited tmpfs of its own; start it",
            destructive=True,
            timeout=STOP_WAIT_S + 120,
            rollback=volume_back,
            rollback_description="stop the node, data back to the disk, unmount, start",
            verify=(Check("the victim endorses again on its drill volume", endorsing, timeout=60, interval=0.25),),
        ),
        Step(
            "fill",
            fill,
            "fill the volume below the guard, then to its last byte: writes paused, node answering",
            destructive=True,
            timeout=120,
            rollback=unfill,
            rollback_description="remove the fill file",
        ),
        Step(
            "free",
            free,
            "remove the fill: the node resumes writes, catches up and endorses by itself",
            verify=(Check("the victim resumed writes, caught up and endorses", endorsing, timeout=60, interval=0.25),),
        ),
        Step(
            "restore-volume",
            restore_volume,
            "stop; `iotex-node db check`; data back to the disk; unmount; start",
            destructive=True,
            timeout=STOP_WAIT_S + 660,
            verify=(Check("the victim endorses again on its own disk", endorsing, timeout=60, interval=0.25),),
        ),
    ),
    measure=measure,
    out_of_consensus=1,
)
