"""fault-kill: kill -9 one delegate's node, chosen at random among the opted-in delegates, and measure how
the automation answers: the alert (DelegateDown), the page (to the drill route), alertd's restart-node, the
victim finalizing and signing again. The drill does not restart the node itself: alertd must. If it has not
within `recover_s`, or a stop condition fires, the rollback starts the node.

`iotex-ops runbook run fault-kill --yes [-e host=node2] [-e seed=7]`, or in `iotex-ops gameday run`.
docs/gameday.md.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from iotex_ops.errors import OpsError
from iotex_ops.faults import Fault, FaultDrill, edge
from iotex_ops.network import Delegate
from iotex_ops.runbook import RunContext


def inject(ctx: RunContext, d: Delegate) -> dict[str, Any]:
    pid = edge.kill(d)
    at = time.time()
    ctx.log(f"{d.name}: node process {pid} killed with SIGKILL")
    return {"pid": pid, "at": at}


def end(ctx: RunContext, d: Delegate, state: Mapping[str, Any]) -> str:
    st = d.service_status()
    if st.alive and st.pid != state.get("pid"):
        return f"running again as pid {st.pid} ({st.detail}): nothing to end"
    if st.alive:
        return f"pid {st.pid} still alive"
    try:
        d.service("start")
    except OpsError as exc:
        return f"the service does not start: {exc}"
    return "started again by the drill's rollback (alertd had not)"


RUNBOOK = FaultDrill(
    Fault(
        "fault-kill", "kill -9 a randomly chosen opted-in delegate's node; alertd must restart it", inject, end, doc=__doc__ or ""
    )
).runbook()
