"""Signed releases, release channels and update policies (docs/releases.md).

- `channel`: a channel tree (a directory, or the same served over HTTP) of artifacts and signed manifests:
  `publish`, `Source` (read, fetch an artifact verified against its manifest), `listing`;
- `policy`: a network's `releases.yml` (`UpdatePolicy`) and `decide` (pure: roll, ask, schedule, hold, wait);
- `watcher`: `Watcher.tick` sees a new release, applies the policy, starts the drill or asks for approval, and
  records it (`Ledger`); `edge`: the engine and the pager behind it on a real network.

The signing itself (keys, the manifest format, verification and the replay floor) is the node's public
`iotex_node.signed_release`, so that the delegate's `iotex-node release install --signed` checks the same bytes.
"""

from __future__ import annotations

from iotex_ops.releases.channel import ChannelError, Source, listing, publish
from iotex_ops.releases.policy import Decision, PolicyError, UpdatePolicy, decide
from iotex_ops.releases.watcher import Ledger, TickResult, Watcher

__all__ = [
    "ChannelError",
    "Decision",
    "Ledger",
    "PolicyError",
    "Source",
    "TickResult",
    "UpdatePolicy",
    "Watcher",
    "decide",
    "listing",
    "publish",
]
