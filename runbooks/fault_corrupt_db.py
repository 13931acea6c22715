"""Fault drill: damage the database of a stopped delegate; the node must refuse to start naming the file (no
silent crash loop), and the rebuild-node runbook's steps must restore it from a peer.

`iotex-ops runbook run fault-corrupt-db --yes -e host=node3 [-e how=pages|truncate]`.

1. stop the victim (destructive);
2. damage (destructive): `pages` overwrites 16 pages spread over `<home>/data/chain.db` with random bytes (its
   header page stays, so SQLite still opens it); `truncate` cuts the file to half its size;
3. start: the node must refuse within `detect_s` (it runs SQLite's quick_check at start: exit status 3, which
   systemd does not restart, and one line naming the file: `error: database ... is damaged ...`);
4. the rebuild-node runbook's steps, as they are (runbooks/rebuild_node.py): choose the peer, snapshot it,
   transfer, stop, restore (with --force when the damaged file's signing records cannot be read: the node then
   starts only once the network is past the heights it may have signed), start, verify back and endorsing;
5. `iotex-node db check` on the rebuilt node: every page, every block, the state root.

Rollback: rebuild-node's own (its previous database is not put back when unreadable, which this one is: the
damaged file stays in `<home>/backups/`). Measures: detect_s (start -> refused), back_after_s (rebuild-node's),
the refusal's log line, the check.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import time
from typing import Any

from iotex_ops.errors import OpsError
from iotex_ops.network import Delegate
from iotex_ops.runbook import Param, Runbook, RunContext, Step, checks, loader

DAMAGED_PAGES = 16
PAGE = 4096


# rebuild-node's module (runbooks/rebuild_node.py, beside this file): its steps are reused as they are
rebuild = loader.sibling(__file__, "rebuild_node")


def target(ctx: RunContext) -> Delegate:
    return ctx.network.delegate(str(ctx.params["host"]))


def preflight(ctx: RunContext) -> list[str]:
    problems: list[str] = rebuild.preflight(ctx)
    if problems:
        return problems
    if len(ctx.delegates) < 4:
        return [f"the chain must keep finalizing without {ctx.params['host']}: at least 4 delegates"]
    return []


def _db(d: Delegate) -> str:
    return f"{d.home}/data/chain.db"


def stop(ctx: RunContext) -> None:
    d = target(ctx)
    ctx.remember("was_running", True)  # rebuild-node's rollback starts it again (when its records survive)
    rebuild._stop(d)
    ctx.remember("stopped_top", rebuild.peers_top(ctx, d))
    ctx.log(f"{d.name}: stopped")


def damage(ctx: RunContext) -> None:
    d, how = target(ctx), str(ctx.params["how"])
    db = shlex.quote(_db(d))
    size = int(d.run(f"stat -c %s {db}", timeout=15).stdout.strip())
    # a whole copy first: a run that fails before rebuild-node's steps have restored the node puts it back
    d.run(f"for f in {db} {db}-wal; do [ ! -e $f ] || cp -p $f $f.pre-fault; done", timeout=120)
    pages = size // PAGE
    if how == "truncate":
        d.run(f"truncate -s {size // 2} {db}", timeout=30)
        hit: list[int] = []
    else:
        step = max(1, (pages - 2) // DAMAGED_PAGES)
        hit = list(range(2, max(3, pages - 1), step))[:DAMAGED_PAGES]
        script = "; ".join(f"dd if=/dev/urandom of={db} bs={PAGE} seek={p} count=1 conv=notrunc status=none" for p in hit)
        d.run(script, timeout=60)
    ctx.remember("damage", {"how": how, "bytes": size, "pages": pages, "damaged_pages": hit})
    ctx.event("damaged", host=d.name, how=how, bytes=size, pages=pages, damaged_pages=hit)
    ctx.log(f"{d.name}: {_db(d)} damaged ({how}: {len(hit) or 'half the file'} of {pages} pages)")


def undamage(ctx: RunContext) -> None:
    """Put the copy taken before the damage back (over whatever is there: a rebuilt file is as good, and a
    damaged one is not) and start the node: a failed run never leaves its victim unable to start."""
    d = target(ctx)
    db = shlex.quote(_db(d))
    if d.run(f"[ -e {db}.pre-fault ]", check=False, timeout=15).ok:
        with contextlib.suppress(OpsError):
            d.service("stop", timeout=30)
        d.run(f"rm -f {db}-wal {db}-shm; for f in {db} {db}-wal; do [ ! -e $f.pre-fault ] || mv $f.pre-fault $f; done",
              timeout=120)  # fmt: skip
        ctx.log(f"{d.name}: its database from before the damage put back")
    with contextlib.suppress(OpsError):
        d.service("start", timeout=30)


def start_refused(ctx: RunContext) -> None:
    d = target(ctx)
    t0 = time.monotonic()
    with contextlib.suppress(OpsError):  # the service manager saw it exit at once: what this step expects
        d.service("start", timeout=30)
    deadline = t0 + float(ctx.params["detect_s"])
    while True:
        st = d.service_status()
        if not st.alive and st.state in ("stopped", "failed"):
            break
        if time.monotonic() > deadline:
            raise OpsError(f"{d.name} started on a damaged database ({st.state}, {st.detail}): it must refuse")
        time.sleep(0.1)
    detect_s = round(time.monotonic() - t0, 3)
    tail = d.log_tail(20)
    line = next((ln for ln in reversed(tail.splitlines()) if "damaged" in ln), "")
    ctx.remember("detect_s", detect_s)
    ctx.remember("refusal", line[-400:])
    ctx.event("start_refused", host=d.name, after_s=detect_s, line=line[-400:])
    if _db(d) not in line or "Traceback" in tail:
        raise OpsError(f"{d.name} did not name its damaged database in one line; last log lines:\n{tail}")
    ctx.log(f"{d.name}: refused to start in {detect_s:.2f}s: {line.strip()[-200:]}")


def db_check(ctx: RunContext) -> None:
    d = target(ctx)
    res = d.node_cli(["db", "check", "--home", d.home, "--json"], timeout=600, check=False)
    try:
        report = json.loads(res.stdout)
    except ValueError:
        raise OpsError(f"{d.name}: iotex-node db check failed (exit {res.exit_code}): {res.tail(3)}") from None
    ctx.remember("db_check", {k: report.get(k) for k in ("ok", "problems", "height", "seconds", "bytes")})
    if not report.get("ok"):
        raise OpsError(f"{d.name}: the rebuilt database fails its check: {report.get('problems')}")
    ctx.log(f"{d.name}: rebuilt database whole at height {report.get('height')} ({report.get('seconds')}s check)")
    db = shlex.quote(_db(d))
    d.run(f"rm -f {db}.pre-fault {db}-wal.pre-fault", timeout=30)  # the copy taken before the damage: not needed


def measure(ctx: RunContext) -> dict[str, Any]:
    info = ctx.recall("restore") or {}
    return {
        "victim": ctx.params["host"],
        "damage": ctx.recall("damage"),
        "detect_s": ctx.recall("detect_s"),
        "refusal": ctx.recall("refusal"),
        "forced": info.get("forced"),
        "back_after_s": ctx.recall("back_after_s"),
        "db_check": ctx.recall("db_check"),
    }


_steps = {s.name: s for s in rebuild.RUNBOOK.steps}

RUNBOOK = Runbook(
    name="fault-corrupt-db",
    summary="Damage a stopped delegate's database: it refuses to start naming the file; rebuild-node restores it",
    params=(
        Param("host", str, help="the victim delegate (an inventory host of the delegates group)"),
        Param("how", str, default="pages", choices=("pages", "truncate"), help="overwrite pages, or truncate the file"),
        Param("detect_s", float, default=20.0, help="how long the node may take to refuse its damaged database", minimum=1),
        # rebuild-node's own parameters
        Param("peer", str, default="", help="the delegate to take the snapshot from (default: the highest answering one)"),
        Param("force", bool, default=False, help="restore with --force from the first attempt"),
        Param("max_lag", int, default=3, help="blocks the node may be behind its peers once back", minimum=0),
    ),
    preflight=preflight,
    steady_state=(checks.finalizing(blocks=2, within=15),),
    steps=(
        Step("stop-victim", stop, "stop the victim's node", destructive=True, timeout=rebuild.STOP_WAIT_S + 30),
        Step(
            "damage",
            damage,
            "copy its chain.db aside, then overwrite pages of it (or truncate it)",
            destructive=True,
            timeout=150,
            rollback=undamage,
            rollback_description="put the copy back and start the node",
        ),
        Step("start-refused", start_refused, "start it: it must refuse, naming the damaged file, and stay down", timeout=60),
        *(_steps[n] for n in ("choose-peer", "snapshot", "transfer", "stop", "restore", "start", "verify")),
        Step(
            "db-check", db_check, "`iotex-node db check` on the rebuilt node: every page, block and the state root", timeout=620
        ),
    ),
    measure=measure,
    out_of_consensus=1,
)
