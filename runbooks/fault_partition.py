"""fault-partition: cut one delegate off the others' P2P traffic for `partition_s`, then heal it.

Netns lab (and hosts where the drill may change routes as root): in the delegate's own network namespace, a
blackhole route to each peer's address drops every packet to its peers, so no P2P connection survives either
way; the controller (another address) still reaches it over SSH and its API, so the drill sees it and heals
it (`ip route del`). The node keeps running, falls behind, and catches up by itself once healed
(DelegateLagging / DelegateMissingSlots on the way).

Local lab: every delegate shares the machine's loopback and network namespace, the node has no admin control
that drops its peers, and a filter on loopback would touch the host's own networking: refused in preflight.
Run it on the netns lab (`iotex-ops lab up --hosts netns`, root).

`iotex-ops runbook run fault-partition --yes [-e partition_s=10]`. docs/gameday.md.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from iotex_ops.faults import Fault, FaultDrill, edge
from iotex_ops.network import Delegate
from iotex_ops.runbook import Param, RunContext


def preflight(ctx: RunContext) -> list[str]:
    # any delegate may be the victim: every one must be in a namespace of its own
    return edge.partition_refusal("fault-partition", list(ctx.delegates), list(ctx.delegates))


def inject(ctx: RunContext, d: Delegate) -> dict[str, Any]:
    peers = sorted({str(p.spec.ansible_host) for p in ctx.network.peers_of(d.name)})
    cut = edge.partition(d, peers)
    at = time.time()
    ctx.log(f"{d.name}: cut off its peers {', '.join(cut)} (blackhole routes) for {ctx.params['partition_s']}s")
    return {"peers": cut, "at": at}


def end(ctx: RunContext, d: Delegate, state: Mapping[str, Any]) -> str:
    peers = [str(a) for a in state.get("peers", [])]
    edge.heal(d, peers)
    return f"routes to its peers {', '.join(peers)} restored"


RUNBOOK = FaultDrill(
    Fault(
        "fault-partition",
        "cut a randomly chosen opted-in delegate's P2P traffic for partition_s (netns lab), then heal it",
        inject,
        end,
        duration_param="partition_s",
        params=(Param("partition_s", float, default=10.0, help="how long the delegate stays cut off", minimum=1),),
        preflight=preflight,
        doc=__doc__ or "",
    )
).runbook()
