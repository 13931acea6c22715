"""Traffic: signed transfers sent to a network's nodes, for the rehearsal, the benchmarks and the tests.

One library for every load the toolkit makes:

- funded accounts, read in one place (`read_accounts`, the testnet's `accounts.secret.json`);
- nonce strategies (`CountingNonces`: count and re-read on failure; `WindowNonces`: a window of re-sent
  nonces above the committed one);
- senders that post batches and count the answers (`SyncSender`; `AsyncSender` for asyncio);
- one stats type, `LoadStats`;
- the loads built from them: `BackgroundLoad` (the rehearsal's, at a rate, with `lost()`), `WindowLoad`
  and `LocalNetLoad` (through kills and restarts), and `openloop.open_loop` (asyncio, at a high rate:
  imported from `iotex_ops.traffic.openloop`, since it needs aiohttp);
- the load tool (`iotex-ops load run`): `load.run` (fund, load with `open_loop`, observe the chain, drain)
  and `report` (the figures and the page), imported on their own too.

Actions are built and signed with `iotex_node.sdk`; nodes are reached through `transport` (the one seam).
"""

from __future__ import annotations

from iotex_ops.traffic.accounts import ACCOUNTS_FILE, AccountsError, accounts_path, read_accounts
from iotex_ops.traffic.background import BackgroundLoad
from iotex_ops.traffic.nonces import CountingNonces, WindowNonces
from iotex_ops.traffic.senders import MAX_BATCH, AsyncSender, Signed, SyncSender, signed_transfer
from iotex_ops.traffic.stats import LoadStats
from iotex_ops.traffic.transport import HttpNodeApi, NodeApi, Unavailable
from iotex_ops.traffic.window import LocalNetLoad, WindowLoad

__all__ = [
    "ACCOUNTS_FILE",
    "MAX_BATCH",
    "AccountsError",
    "AsyncSender",
    "BackgroundLoad",
    "CountingNonces",
    "HttpNodeApi",
    "LoadStats",
    "LocalNetLoad",
    "NodeApi",
    "Signed",
    "SyncSender",
    "Unavailable",
    "WindowLoad",
    "WindowNonces",
    "accounts_path",
    "read_accounts",
    "signed_transfer",
]
