"""Rebuild node: a delegate whose node lags far behind or whose database is corrupted gets a fresh copy of
the chain from a healthy peer, and is verified caught up and endorsing.

Started by `iotex-ops alertd` on DelegateLagging (host=<the delegate>), or by hand:
`iotex-ops runbook run rebuild-node -e host=node2 [-e peer=node0] --yes`.

1. diagnose: a node that answers, is in step with its peers and endorses is left alone; a paused, standby
   or halted one is refused (the node keeps those controls across a restore: a person decides);
2. choose the peer: the answering delegate with the highest finalized height (or `peer`);
3. `iotex-node snapshot` on the peer, through its admin channel while it runs (it keeps finalizing), into
   `<peer home>/snapshots/` (the node writes it, and systemd's ProtectSystem lets it write in its home only);
4. the snapshot and its .sha256 go to `<target home>/snapshots/` through the controller (one copy when both
   hosts are this machine), then leave the peer;
5. stop the target (SIGKILL first if it is frozen);
6. `iotex-node restore`: it checks the copy (sha256, integrity, genesis, state root), backs the current
   database up in `<home>/backups/`, keeps the node's own signing records. When the current database is
   unreadable the node refuses without `--force` (its signing records are unknown): the runbook then adds
   `--force`, and step 7 keeps the node stopped until the network has finalized two blocks past the height
   it stood at when the node stopped, so it can never sign again a height it may have signed (a node signs
   at most one height above the network's finalized tip). The same holds when there was no database.
7. start; 8. verify it answers, is within max_lag of its peers, finalizes and endorses a new block.

Rollback (a step after the restore failed): the previous database is put back with `iotex-node restore`
from the backup (which keeps the newest signing records), and the node is started again only if it was
running before the run; a database that was unreadable (kept raw as `backups/chain-unreadable-*.db`) or
absent is not put back: the node keeps the restored one, and stays stopped if its signing records were
lost. Snapshot files are removed from both hosts in every case.
"""

from __future__ import annotations

import json
import shlex
import time
from typing import Any

from iotex_ops.errors import OpsError
from iotex_ops.hosts import copy_between
from iotex_ops.network import Delegate
from iotex_ops.runbook import Check, CheckResult, Param, Runbook, RunContext, Step

API_TIMEOUT_S = 1.0
# signing heights the network must finalize past the stop height before a node without its records starts
SIGNING_MARGIN = 2
STOP_WAIT_S = 45.0  # supervisord's stopwaitsecs and systemd's TimeoutStopSec are 30 s


def target(ctx: RunContext) -> Delegate:
    return ctx.network.delegate(str(ctx.params["host"]))


def peers_top(ctx: RunContext, d: Delegate) -> int | None:
    cs = ctx.network.chains(ctx.network.peers_of(d.name), API_TIMEOUT_S)
    return max((int(c["finalized_height"]) for c in cs.values() if c), default=None)


def preflight(ctx: RunContext) -> list[str]:
    host, peer = str(ctx.params["host"]), str(ctx.params["peer"])
    names = [d.name for d in ctx.delegates]
    if host not in names:
        return [f"{host!r} is not a delegate of {ctx.network.inventory.path}; its delegates: {', '.join(names)}"]
    if peer and peer not in names:
        return [f"peer {peer!r} is not a delegate of {ctx.network.inventory.path}; its delegates: {', '.join(names)}"]
    if peer == host:
        return [f"the peer must be another delegate than {host}, whose chain it rebuilds"]
    if len(names) < 2:
        return [f"{host} has no peer to take a snapshot from"]
    return []


def _snapshot_path(home: str, ctx: RunContext) -> str:
    return f"{home}/snapshots/rebuild-{ctx.params['host']}-{ctx.run_id}.db"


def _remove_snapshot(ctx: RunContext, d: Delegate, path: str) -> None:
    """Remove a snapshot and its sidecars; a failure is logged, not raised (leftovers are a nuisance, not a danger)."""
    q = shlex.quote(path)
    try:
        d.run(f"rm -f {q} {q}.sha256 {q}.manifest.json", timeout=30)
    except OpsError as exc:
        ctx.log(f"{d.name}: could not remove {path} (remove it by hand): {exc}")


def _give_to_node(d: Delegate, *paths: str) -> None:
    """Files this run made on a host belong to the node's user when the node runs as one (`iotex_user`):
    the node writes its snapshot into the directory, and must write the database a restore installed."""
    user = str(d.vars.get("iotex_user") or "")
    if user:
        group = str(d.vars.get("iotex_group") or user)
        d.run(f"chown {shlex.quote(f'{user}:{group}')} " + " ".join(shlex.quote(p) for p in paths), timeout=30)


# -- steps ------------------------------------------------------------------------------------------


def diagnose(ctx: RunContext) -> None:
    d, max_lag = target(ctx), int(ctx.params["max_lag"])
    s = ctx.network.standing(d.name, timeout=API_TIMEOUT_S)
    problems = s.problems(max_lag)
    ctx.event("diagnosis", host=d.name, healthy=not problems, problems=problems, **s.to_json())
    ctx.log(f"{d.name}: " + ("; ".join(problems) if problems else "healthy"))
    why = s.stopped_by_operator
    if why is not None:
        hint = "resume-delegate resumes an unexpected pause" if why == "paused" else "a person must decide"
        raise OpsError(f"{d.name} is {why}: a rebuild keeps that (it is the node's own record), so it would not help ({hint})")
    ctx.remember("healthy", not problems)
    if not problems:
        ctx.log(f"{d.name} is already healthy: answering, in step with its peers and endorsing; nothing to rebuild")


def unhealthy(ctx: RunContext) -> bool:
    return not ctx.recall("healthy")


def choose_peer(ctx: RunContext) -> None:
    d, wanted = target(ctx), str(ctx.params["peer"])
    candidates = [ctx.network.delegate(wanted)] if wanted else ctx.network.peers_of(d.name)
    cs = ctx.network.chains(candidates, timeout=2.0)
    answering = {n: c for n, c in cs.items() if c is not None}
    if not answering:
        who = f"peer {wanted} does not answer" if wanted else f"none of {d.name}'s peers ({', '.join(cs)}) answers"
        raise OpsError(f"{who} on its API: there is nothing to take a snapshot from")
    name = max(answering, key=lambda n: int(answering[n]["finalized_height"]))
    height = int(answering[name]["finalized_height"])
    ctx.remember("peer", name)
    ctx.event(
        "peer_chosen", host=d.name, peer=name, height=height, heights={n: c and c["finalized_height"] for n, c in cs.items()}
    )
    ctx.log(f"peer {name} at height {height}" + ("" if wanted else f" (the highest of {', '.join(sorted(answering))})"))


def snapshot(ctx: RunContext) -> None:
    peer = ctx.network.delegate(str(ctx.recall("peer")))
    path = _snapshot_path(peer.home, ctx)
    q = shlex.quote(path)
    # a resumed run may find its own half-made files: the snapshot command refuses an existing output
    peer.run(f"mkdir -p {shlex.quote(peer.home + '/snapshots')} && rm -f {q} {q}.sha256 {q}.manifest.json", timeout=30)
    _give_to_node(peer, peer.home + "/snapshots")
    res = peer.node_cli(["snapshot", "--home", peer.home, "--out", path, "--json"], timeout=900)
    doc = json.loads(res.stdout)
    info = {"peer": peer.name, "path": path, "height": doc["height"], "sha256": doc["sha256"], "bytes": doc["bytes"]}
    ctx.remember("snapshot", info)
    ctx.event("snapshot_taken", **info, online=doc.get("online"), seconds=doc.get("seconds"))
    ctx.log(f"{peer.name}: snapshot at height {doc['height']}, {doc['bytes']} bytes, in {doc.get('seconds')}s -> {path}")


def discard_snapshot(ctx: RunContext) -> None:
    snap = ctx.recall("snapshot")
    if not snap:
        return
    _remove_snapshot(ctx, ctx.network.delegate(str(snap["peer"])), str(snap["path"]))
    d = target(ctx)
    _remove_snapshot(ctx, d, _snapshot_path(d.home, ctx))
    ctx.log("snapshot files removed")


def transfer(ctx: RunContext) -> None:
    snap, d = ctx.recall("snapshot"), target(ctx)
    peer = ctx.network.delegate(str(snap["peer"]))
    dest = _snapshot_path(d.home, ctx)
    if not ctx.recall("transferred"):
        t0 = time.monotonic()
        d.run(f"mkdir -p {shlex.quote(d.home + '/snapshots')}", timeout=30)
        staging = ctx.run_dir / "staging"
        # the .sha256 travels with it: the restore checks the copy against the peer's digest
        for suffix in ("", ".sha256"):
            copy_between(peer.host, snap["path"] + suffix, d.host, dest + suffix, staging)
        ctx.remember("transferred", True)
        ctx.log(f"{snap['bytes']} bytes from {peer.name} to {d.name}:{dest} in {time.monotonic() - t0:.2f}s")
    _remove_snapshot(ctx, peer, str(snap["path"]))


def _wait_stopped(d: Delegate, timeout: float = STOP_WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while True:
        st = d.service_status()
        if not st.alive and st.state in ("stopped", "failed"):
            return
        if time.monotonic() > deadline:
            raise OpsError(f"{d.name}: the node did not stop within {timeout:g}s (service {st.state}, {st.detail})")
        time.sleep(0.1)


def _stop(d: Delegate) -> str:
    st = d.service_status()
    how = "stopped"
    if st.frozen and st.pid is not None:
        # SIGSTOPped: it would not see SIGTERM before the stop timeout. The service manager may restart it
        # at once, so the stop below still runs.
        d.service("kill")
        how = f"frozen (pid {st.pid}): killed with SIGKILL, then stopped"
        if d.service_manager == "supervisord":
            # supervisord respawns it within milliseconds (autorestart=unexpected), and a SIGTERM that reaches
            # the child before it exec'ed the node is lost: the stop would then wait out stopwaitsecs (30 s).
            # Let the respawn settle (startsecs, 1 s) first.
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                now = d.service_status()
                if now.pid != st.pid and now.state != "starting":
                    break
                time.sleep(0.1)
    d.service("stop", timeout=STOP_WAIT_S + 15)
    _wait_stopped(d)
    return how


def stop(ctx: RunContext) -> None:
    d = target(ctx)
    if ctx.recall("was_running") is None:  # a resumed run keeps what the first attempt saw
        ctx.remember("was_running", d.service_status().alive)
    how = _stop(d)
    top = peers_top(ctx, d)
    # the node signs at most one height above the network's finalized tip: stopped now, it signed at most top+1
    ctx.remember("stopped_top", top)
    ctx.event("node_stopped", host=d.name, peers_top=top)
    ctx.log(f"{d.name}: {how}; its peers are at height {top}")


def start_again(ctx: RunContext) -> None:
    d = target(ctx)
    if not ctx.recall("was_running"):
        ctx.log(f"{d.name} was not running before this run: left stopped")
        return
    lost = ctx.recall("records_lost")
    if lost:
        ctx.log(f"{d.name}: left STOPPED: {lost}")
        raise OpsError(f"{d.name} left stopped: {lost}")
    d.service("start")
    ctx.log(f"{d.name}: started again ({d.service_status().detail})")


def _backups(d: Delegate) -> list[str]:
    """The node's database backups, oldest first."""
    res = d.run(f"ls -1tr {shlex.quote(d.home + '/backups')} 2>/dev/null || true", timeout=30)
    names = [ln.strip() for ln in res.stdout.splitlines()]
    return [n for n in names if n and not n.endswith(("-wal", "-shm", "-journal"))]


def _unreadable(stderr: str) -> bool:
    return "cannot be read" in stderr and "--force" in stderr


def restore(ctx: RunContext) -> None:
    d, force = target(ctx), bool(ctx.params["force"])
    src = _snapshot_path(d.home, ctx)
    if ctx.recall("restore") is None:
        before = ctx.recall("backups_before")
        if before is None:
            before = _backups(d)
            ctx.remember("backups_before", before)
        args = ["restore", "--home", d.home, "--from", src, "--json"]
        res = d.node_cli([*args, "--force"] if force else args, timeout=900, check=False)
        forced = force
        if not res.ok and not force and _unreadable(res.stderr):
            ctx.event("database_unreadable", host=d.name, error=res.tail(2, "stderr"))
            ctx.log(f"{d.name}: its database is unreadable: restoring with --force (its signing records are lost)")
            res = d.node_cli([*args, "--force"], timeout=900, check=False)
            forced = True
        if not res.ok:
            raise OpsError(f"{d.name}: iotex-node restore failed (exit {res.exit_code}): {res.tail(3)}")
        doc = json.loads(res.stdout)
        _give_to_node(d, str(doc["database"]))
        new = [b for b in _backups(d) if b not in before]
        previous = f"{d.home}/backups/{new[0]}" if new else doc.get("backup")
        info = {
            "height": doc["height"],
            "previous_height": doc.get("previous_height"),
            "previous_db": previous,
            "kept_meta": doc.get("kept_meta") or [],
            "warnings": doc.get("warnings") or [],
            "forced": forced,
        }
        ctx.remember("restore", info)
        ctx.event("restored", host=d.name, **info)
        ctx.log(f"{d.name}: restored at height {doc['height']} (was {doc.get('previous_height')}); previous database: {previous}")
        for w in info["warnings"]:
            ctx.log(f"{d.name}: warning: {w}")
    _remove_snapshot(ctx, d, src)


def put_back(ctx: RunContext) -> None:
    """Rollback of the restore: the previous database back in place, when there was a readable one."""
    info, d = ctx.recall("restore"), target(ctx)
    if not info:
        ctx.log(f"{d.name}: nothing was restored: nothing to put back")
        return
    prev = info.get("previous_db")
    lost = "privval" not in info["kept_meta"]
    if not prev or "chain-unreadable-" in str(prev):
        what = "there was no previous database" if not prev else f"the previous database was unreadable (raw copy: {prev})"
        ctx.log(f"{d.name}: {what}: not put back; the node keeps the restored one")
        if lost:
            bar = int(ctx.recall("stopped_top") or 0) + SIGNING_MARGIN
            ctx.remember("records_lost", f"its signing records were lost: start it once the network is past height {bar}")
        return
    _stop(d)
    res = d.node_cli(["restore", "--home", d.home, "--from", str(prev), "--json"], timeout=900)
    doc = json.loads(res.stdout)
    _give_to_node(d, str(doc["database"]))
    ctx.event("database_put_back", host=d.name, backup=prev, height=doc.get("height"))
    ctx.log(f"{d.name}: previous database {prev} put back (height {doc.get('height')}); the restored one is {doc.get('backup')}")


def start(ctx: RunContext) -> None:
    d, info = target(ctx), ctx.recall("restore") or {}
    if "privval" not in info.get("kept_meta", []):
        stopped = ctx.recall("stopped_top")
        if stopped is None:
            raise OpsError(f"{d.name}: its signing records are lost and the height it stopped at is unknown: start it by hand")
        bar = int(stopped) + SIGNING_MARGIN
        deadline = time.monotonic() + 60
        while (peers_top(ctx, d) or 0) < bar:
            if time.monotonic() > deadline:
                raise OpsError(
                    f"{d.name} has no signing records (restored with --force, or it had no database) and the network "
                    f"has not finalized height {bar} since it stopped at {stopped}: starting it could make it sign a "
                    f"height it already signed; start it by hand once its peers are past {bar}"
                )
            time.sleep(0.25)
        ctx.log(f"{d.name}: no signing records: the network is past height {bar}, so it cannot sign a height twice")
    try:
        d.service("start")
    except OpsError as exc:
        raise OpsError(f"{d.name}: the service does not start: {exc}\nlast log lines:\n{d.log_tail(10)}") from None
    top = peers_top(ctx, d)
    # back: it finalizes and signs a block above top+1 (a height it cannot have signed before it stopped)
    ctx.remember("since", None if top is None else top + 1)
    ctx.remember("started_at", time.time())
    ctx.log(f"{d.name}: started ({d.service_status().detail})")


def back(ctx: RunContext) -> CheckResult:
    """Caught up within max_lag of its peers, finalizing blocks above `since` and endorsing them."""
    d, since = target(ctx), ctx.recall("since")
    s = ctx.network.standing(d.name, since=since, timeout=API_TIMEOUT_S)
    problems = s.problems(int(ctx.params["max_lag"]), since)
    value: dict[str, Any] = s.to_json()
    if problems:
        if not s.answering:
            st = d.service_status()
            value["service"] = st.to_json()
            problems.append(f"service {st.state} ({st.detail})")
            if st.state in ("stopped", "failed"):
                problems.append("last log lines: " + " | ".join(d.log_tail(3).splitlines()))
        return CheckResult(False, value, f"{d.name}: " + "; ".join(problems))
    started = ctx.recall("started_at")
    if started is not None and ctx.recall("back_after_s") is None:
        ctx.remember("back_after_s", round(time.time() - float(started), 3))
    return CheckResult(True, value)


def measure(ctx: RunContext) -> dict[str, Any]:
    snap, info = ctx.recall("snapshot") or {}, ctx.recall("restore") or {}
    return {
        "rebuilt": bool(info),
        "peer": snap.get("peer"),
        "snapshot_height": snap.get("height"),
        "previous_height": info.get("previous_height"),
        "forced": info.get("forced"),
        "back_after_s": ctx.recall("back_after_s"),
    }


RUNBOOK = Runbook(
    name="rebuild-node",
    summary="Rebuild a lagging or corrupted delegate node from a healthy peer's snapshot, verify it catches up and endorses",
    params=(
        Param("host", str, help="the delegate whose node to rebuild (an inventory host of the delegates group)"),
        Param("peer", str, default="", help="the delegate to take the snapshot from (default: the highest answering one)"),
        Param(
            "force",
            bool,
            default=False,
            help="restore with --force from the first attempt (without it, --force is added only when the node's "
            "database proves unreadable; either way the node stays stopped until the network is past its heights)",
        ),
        Param("max_lag", int, default=3, help="blocks the node may be behind its peers' finalized height once back", minimum=0),
    ),
    preflight=preflight,
    steps=(
        Step("diagnose", diagnose, "is it lagging, not answering or not endorsing (healthy: done)", timeout=30),
        Step("choose-peer", choose_peer, "the answering peer with the highest finalized height", when=unhealthy, timeout=30),
        Step(
            "snapshot",
            snapshot,
            "`iotex-node snapshot` on the peer while it runs (admin channel)",
            when=unhealthy,
            timeout=900,
            rollback=discard_snapshot,
            rollback_description="remove the snapshot files from the peer and the target",
        ),
        Step(
            "transfer",
            transfer,
            "the snapshot and its sha256 to the target's home (through the controller)",
            when=unhealthy,
            timeout=900,
        ),
        Step(
            "stop",
            stop,
            "stop the target's node (SIGKILL first if frozen)",
            when=unhealthy,
            destructive=True,
            timeout=STOP_WAIT_S + 30,
            rollback=start_again,
            rollback_description="start the node again if it was running before (not if its signing records were lost)",
        ),
        Step(
            "restore",
            restore,
            "`iotex-node restore` (checks the copy, backs up the old database, keeps signing records; --force if unreadable)",
            when=unhealthy,
            destructive=True,
            timeout=900,
            rollback=put_back,
            rollback_description="put the previous database back from the restore's backup (unless it was unreadable or absent)",
        ),
        Step(
            "start",
            start,
            "start the node (without signing records: once the network is past its heights)",
            when=unhealthy,
            timeout=120,
        ),
        Step(
            "verify",
            lambda ctx: None,
            "the node answers, caught up within max_lag of its peers, finalizes and endorses a new block",
            verify=(Check("the node caught up and endorses new blocks with its peers", back, timeout=120, interval=0.25),),
        ),
    ),
    measure=measure,
    # blast radius (drill schedules): stops and restores the one delegate `host`
    out_of_consensus=1,
    lock_host_param="host",
)
