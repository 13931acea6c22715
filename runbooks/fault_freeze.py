"""fault-freeze: SIGSTOP one delegate's node (chosen at random among the opted-in delegates) for `freeze_s`,
then SIGCONT it. A frozen node accepts connections and answers nothing: DelegateDown fires, and alertd's
restart-node kills the frozen process and starts a new one (docs/runbooks.md), usually before `freeze_s` is
up; the SIGCONT at the end then finds the process gone and says so. A stop condition (the chain stops
finalizing, an alert on another delegate, the missed-slot budget) sends SIGCONT at once.

`iotex-ops runbook run fault-freeze --yes [-e freeze_s=12] [-e host=node1]`, or in `iotex-ops gameday run`.
docs/gameday.md.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from iotex_ops.errors import OpsError
from iotex_ops.faults import Fault, FaultDrill, edge
from iotex_ops.network import Delegate
from iotex_ops.runbook import Param, RunContext

# DelegateDown fires ~2-3 s into a freeze; Alertmanager sends a new alert of a group it still holds (one that
# fired on that host within the last ~30 s) only at the group's next group_interval tick, 5 s at the lab's 1 s
# interval. A freeze that ends before the tick resolves the alert unsent: no page, no remediation to measure.
FREEZE_HELP = "how long the node stays frozen (under ~10 s it may end before the alert reaches anyone)"


def inject(ctx: RunContext, d: Delegate) -> dict[str, Any]:
    pid = edge.main_pid(d)
    if not edge.signal_pid(d, pid, "STOP"):
        raise OpsError(f"{d.name}: SIGSTOP to node process {pid} failed")
    at = time.time()
    ctx.log(f"{d.name}: node process {pid} frozen (SIGSTOP) for {ctx.params['freeze_s']}s")
    return {"pid": pid, "at": at}


def end(ctx: RunContext, d: Delegate, state: Mapping[str, Any]) -> str:
    pid = int(state["pid"])
    if edge.signal_pid(d, pid, "CONT"):
        return f"node process {pid} continued (SIGCONT)"
    st = d.service_status()
    return f"process {pid} is gone" + (f": running again as pid {st.pid} (restarted by alertd)" if st.alive else "")


RUNBOOK = FaultDrill(
    Fault(
        "fault-freeze",
        "SIGSTOP a randomly chosen opted-in delegate's node for freeze_s, then SIGCONT",
        inject,
        end,
        duration_param="freeze_s",
        params=(Param("freeze_s", float, default=12.0, help=FREEZE_HELP, minimum=0.5),),
        doc=__doc__ or "",
    )
).runbook()
