"""Restart node: bring back a delegate node that crashed (its process is gone) or froze (alive, its API
silent), and verify that it answers, caught up with its peers, finalizes new blocks with them and endorses.

Started by `iotex-ops alertd` on DelegateDown (host=<the delegate>), or by hand:
`iotex-ops runbook run restart-node -e host=node2 --yes`. It runs unattended, so every step reads the node
afresh instead of trusting what an earlier step saw: a run resumed after a crash, or a service manager that
restarted the node meanwhile, leads to the same end. It acts on the process only:

- a node that is already healthy (answering, in step with its peers, finalizing) is not touched;
- a frozen node (ps STAT T: SIGSTOPped) ignores SIGTERM until continued, so a service stop would wait out
  the whole stop timeout (30 s): it gets SIGKILL, which is safe for this node (each block is one SQLite
  transaction, and what it signed is on disk before it sends it);
- a process that has run for HUNG_AFTER_S and still does not answer is hung: SIGKILL too;
- a node that answers but lags, or a process that is still starting, is left running: the verification
  says whether it catches up (a node that cannot is rebuild-node's case);
- a paused, standby or halted node is an operator's decision that a restart would not change: refused.

The whole alert-to-fixed budget is about 15 s, so the checks poll every 0.25 s, with 1 s API timeouts (a
frozen node accepts connections and never answers), and pass on the first new block the node finalizes
and signs with its peers.
"""

from __future__ import annotations

import time
from typing import Any

from iotex_ops.errors import OpsError
from iotex_ops.network import Delegate, ServiceStatus, Standing
from iotex_ops.runbook import Check, CheckResult, Param, Runbook, RunContext, Step

# A node process opens its database, connects to its peers and serves its API within a few seconds; one
# that has run this long without answering is hung, not starting.
HUNG_AFTER_S = 20
API_TIMEOUT_S = 1.0
# how many block intervals a node in step with its peers may take to finalize its next block
HEALTHY_WITHIN_INTERVALS = 3


def target(ctx: RunContext) -> Delegate:
    return ctx.network.delegate(str(ctx.params["host"]))


def preflight(ctx: RunContext) -> list[str]:
    host = str(ctx.params["host"])
    names = [d.name for d in ctx.delegates]
    if host not in names:
        return [f"{host!r} is not a delegate of {ctx.network.inventory.path}; its delegates: {', '.join(names)}"]
    return []


def look(ctx: RunContext, d: Delegate, since: int | None = None) -> tuple[ServiceStatus, Standing]:
    """The service and process, and the node among its peers (a frozen node's API is not asked: it would
    only cost the timeout)."""
    st = d.service_status()
    if st.frozen:
        peers = ctx.network.chains(ctx.network.peers_of(d.name), API_TIMEOUT_S)
        return st, Standing(d.name, None, {n: (c["finalized_height"] if c else None) for n, c in peers.items()})
    return st, ctx.network.standing(d.name, since=since, timeout=API_TIMEOUT_S)


def condition(st: ServiceStatus, s: Standing) -> str:
    """What is wrong, in one word: frozen | crashed | hung | starting | answering."""
    if st.frozen:
        return "frozen"
    if not st.alive and not s.answering:
        return "starting" if st.state == "starting" else "crashed"
    if not s.answering:
        return "hung" if st.uptime_s is None or st.uptime_s >= HUNG_AFTER_S else "starting"
    return "answering"


def finalizing_with_peers(ctx: RunContext, d: Delegate, s: Standing, max_lag: int) -> bool:
    """The node is within max_lag of its peers and finalizes its next block within a few block intervals."""
    if s.chain is None or s.lag is None or s.lag > max_lag or not s.chain.get("participating"):
        return False
    h0 = int(s.chain["finalized_height"])
    deadline = time.monotonic() + HEALTHY_WITHIN_INTERVALS * s.chain.get("block_interval_ms", 1000) / 1000
    while time.monotonic() < deadline:
        time.sleep(0.2)
        c = d.try_chain(API_TIMEOUT_S)
        if c is None:
            return False
        if c["finalized_height"] > h0:
            return True
    return False


def diagnose(ctx: RunContext) -> None:
    d, max_lag = target(ctx), int(ctx.params["max_lag"])
    st, s = look(ctx, d)
    what = condition(st, s)
    why = s.stopped_by_operator
    healthy = what == "answering" and why is None and finalizing_with_peers(ctx, d, s, max_lag)
    what = "healthy" if healthy else what
    ctx.event("diagnosis", host=d.name, condition=what, alive=st.alive, service=st.to_json(), **s.to_json())
    ctx.remember("condition", what)
    ctx.log(
        f"{d.name}: {what}; service {st.state} ({st.detail}), process "
        + (f"{st.pid} {st.process}, up {st.uptime_s}s" if st.alive else "gone" if st.pid is None else f"{st.pid} gone")
        + (f"; API at {s.height}, peers at {s.top}" if s.answering else "; API silent")
    )
    if why is not None:
        hint = "resume-delegate resumes an unexpected pause" if why == "paused" else "a person must decide"
        raise OpsError(f"{d.name} answers but is {why}: restarting it would not change that ({hint})")
    if healthy:
        ctx.log(f"{d.name} is already healthy: answering and finalizing with its peers; nothing to do")


def unhealthy(ctx: RunContext) -> bool:
    return ctx.recall("condition") != "healthy"


def wait_gone(d: Delegate, pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = d.service_status()
        if st.pid != pid or not st.alive:
            return
        time.sleep(0.05)
    raise OpsError(f"{d.name}: process {pid} still alive {timeout:g}s after SIGKILL")


def stop_hard(ctx: RunContext) -> None:
    d = target(ctx)
    st, s = look(ctx, d)  # afresh: the service manager may have restarted it, or a resumed run is here
    what = condition(st, s)
    if what in ("frozen", "hung") and st.pid is not None:
        d.service("kill")
        wait_gone(d, st.pid)
        ctx.event("killed", host=d.name, pid=st.pid, condition=what)
        ctx.log(f"{d.name}: {what} process {st.pid} ({st.process}, up {st.uptime_s}s) killed with SIGKILL")
        return
    reason = {
        "crashed": "no process: nothing to stop",
        "starting": f"starting ({st.detail}" + (f", up {st.uptime_s}s" if st.uptime_s is not None else "") + "): left to finish",
        "answering": "answering: left running",
    }[what]
    ctx.log(f"{d.name}: {reason}")


def start(ctx: RunContext) -> None:
    d = target(ctx)
    st = d.service_status()
    if st.alive and not st.frozen:
        ctx.log(f"{d.name}: running again (pid {st.pid}, {st.detail}): started by its service manager")
    elif st.state == "starting":
        ctx.log(f"{d.name}: its service manager is starting it ({st.detail})")
    else:
        try:
            d.service("start")
        except OpsError as exc:
            raise OpsError(f"{d.name}: the service does not start: {exc}\nlast log lines:\n{d.log_tail(10)}") from None
        ctx.log(f"{d.name}: started ({d.service_status().detail})")
    # The node is back once it finalizes and signs a block above top+1: the old process may have signed
    # top+1 before it died or froze, and that signature must not pass for the new process's.
    peers = ctx.network.chains(ctx.network.peers_of(d.name), API_TIMEOUT_S)
    top = max((c["finalized_height"] for c in peers.values() if c), default=None)
    ctx.remember("since", None if top is None else top + 1)
    ctx.remember("started_at", time.time())


def back(ctx: RunContext) -> CheckResult:
    """The node answers, is within max_lag of its peers, has finalized a block above `since` and signed it."""
    d, max_lag, since = target(ctx), int(ctx.params["max_lag"]), ctx.recall("since")
    s = ctx.network.standing(d.name, since=since, timeout=API_TIMEOUT_S)
    problems = s.problems(max_lag, since)
    value: dict[str, Any] = s.to_json()
    stopped = s.back_but_stopped(max_lag, since)
    if stopped:
        # e.g. killed while a drill had paused every delegate: the pause outlived the process (an operator's
        # decision does), so it answers, in step, but does not sign until resumed (DelegatePausedUnexpectedly
        # -> resume-delegate). The restart worked; waiting out the check would only hold the host for a minute.
        if ctx.recall("stopped_by_operator") is None:
            ctx.remember("stopped_by_operator", stopped)
            ctx.log(f"{d.name} is back and in step, but {stopped}: it signs once resumed (resume-delegate)")
        value["stopped_by_operator"] = stopped
        return CheckResult(True, value)
    if not problems:
        started = ctx.recall("started_at")
        if started is not None and ctx.recall("back_after_s") is None:
            ctx.remember("back_after_s", round(time.time() - float(started), 3))
        return CheckResult(True, value)
    if not s.answering:
        st = d.service_status()
        value["service"] = st.to_json()
        problems.append(
            f"service {st.state} ({st.detail})" + (f", process {st.pid} {st.process}" if st.alive else ", no process")
        )
        if st.state in ("stopped", "failed"):
            problems.append("last log lines: " + " | ".join(d.log_tail(3).splitlines()))
    return CheckResult(False, value, f"{d.name}: " + "; ".join(problems))


def measure(ctx: RunContext) -> dict[str, Any]:
    return {
        "condition": ctx.recall("condition"),
        "back_after_s": ctx.recall("back_after_s"),
        "stopped_by_operator": ctx.recall("stopped_by_operator"),
    }


RUNBOOK = Runbook(
    name="restart-node",
    summary="Restart a crashed or frozen delegate node (SIGKILL if frozen), verify it finalizes and endorses with its peers",
    params=(
        Param("host", str, help="the delegate whose node to restart (an inventory host of the delegates group)"),
        Param("max_lag", int, default=3, help="blocks the node may be behind its peers' finalized height once back", minimum=0),
    ),
    preflight=preflight,
    # no steady state: the network is degraded by definition while this runs, and a strict check of it
    # would refuse the remedy exactly when it is needed (two of four delegates down stop the chain)
    steps=(
        Step("diagnose", diagnose, "record whether the process is alive and whether the node answers; healthy: done", timeout=30),
        Step(
            "stop-hard",
            stop_hard,
            "SIGKILL a frozen or hung process (a stop would wait out its timeout)",
            when=unhealthy,
            destructive=True,
            timeout=30,
        ),
        Step("start", start, "start the service unless its manager already did", when=unhealthy, timeout=90),
        Step(
            "verify",
            lambda ctx: None,
            "the node answers, is within max_lag of its peers, finalizes and endorses a new block",
            verify=(Check("the node finalizes and endorses new blocks with its peers", back, timeout=60, interval=0.25),),
        ),
    ),
    measure=measure,
    # blast radius (drill schedules): restarts the one delegate `host`
    out_of_consensus=1,
    lock_host_param="host",
)
