"""The delegate's client: accounts and keystores, actions, chain reads, rewards bookkeeping and payouts.

Pure cores: `units` (amounts), `books` (who is owed what), `plan` (the CSV a bookkeeping run writes).
Edges: `config` (the config file, aliases, keystores), `secrets` (passwords), `wallet` (sign, pre-check,
submit, follow to finality through `nodeapi.NodeClient`), `ledger` (SQLite record of payouts), `payouts`
(distribution, checked against the chain's memos). The command line is `iotex_ops/cli/client.py`.
Every error is a `ClientError` (one root under `OpsError`) that names what was wrong and says its exit code.
Nothing here imports the node's internals: signing goes through `iotex_node.sdk`, and only when a command signs.
"""
