"""Generate a ready-to-run local network: a genesis and one home per node, on loopback.

Like `cometbft testnet`: every home holds its config, keystore (with a password file, mode 0600),
admin token, the shared genesis and an initialized database. Delegates peer with each other in a full
mesh; full nodes peer with every delegate.
"""

from __future__ import annotations

import json
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from iotex_node import genesis as genesis_mod
from iotex_node.chain import Chain
from iotex_node.config import NodeConfig, write_secret_file
from iotex_node.crypto import keystore
from iotex_node.crypto.keys import PrivateKey
from iotex_node.errors import ConfigError

IOTX = 10**18
OWNERS_FILE = "owners.secret.json"
# Testnet keystores use a cheaper scrypt cost so that 24 nodes start quickly; production keygen does not.
TESTNET_SCRYPT_N = 2**14


@dataclass(frozen=True)
class TestnetSpec:
    delegates: int = 4
    full_nodes: int = 0
    out: Path = Path("testnet")
    chain_id: int = 4690
    block_interval_ms: int = 1000
    epoch_length: int = 20
    active_delegates: int | None = None
    accounts: int = 0
    # 1M IOTX: 10^8 actions at the default minimum fee, so load never runs an account dry.
    account_balance: int = 1_000_000 * IOTX
    min_fee: int = genesis_mod.DEFAULT_MIN_FEE
    host: str = "127.0.0.1"
    base_port: int = 0  # 0: pick free ports
    propose_timeout_ms: int = 1500
    vote_timeout_ms: int = 500
    rate_limit_per_second: float = 200.0
    max_block_actions: int = 5000
    mempool_max_per_sender: int = 2000


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def generate(spec: TestnetSpec) -> list[Path]:
    if spec.delegates < 1:
        raise ConfigError("a testnet needs at least one delegate")
    out = Path(spec.out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not empty: choose another --out or remove it")
    out.mkdir(parents=True, exist_ok=True)
    total = spec.delegates + spec.full_nodes
    ports = list(range(spec.base_port, spec.base_port + 2 * total)) if spec.base_port else free_ports(2 * total, spec.host)
    p2p_ports, api_ports = ports[:total], ports[total:]
    keys = [PrivateKey() for _ in range(total)]
    owners = [PrivateKey() for _ in range(spec.delegates)]
    accounts = [PrivateKey() for _ in range(spec.accounts)]
    balances = {o.address: str(10_000_000 * IOTX) for o in owners}
    balances.update({a.address: str(spec.account_balance) for a in accounts})
    doc = {
        "chain_id": spec.chain_id,
        "genesis_time_ms": int(time.time() * 1000),
        "active_delegates": spec.active_delegates or spec.delegates,
        "block_interval_ms": spec.block_interval_ms,
        "epoch_length": spec.epoch_length,
        "block_reward": str(16 * IOTX),
        "epoch_reward": str(12_500 * IOTX),
        "vote_weight": [list(x) for x in genesis_mod.DEFAULT_VOTE_WEIGHT],
        "balances": balances,
        "candidates": [
            {
                "name": f"delegate{i}",
                "owner": owners[i].address,
                "operator": keys[i].address,
                "self_stake": str((1_200_000 + 1000 * (spec.delegates - i)) * IOTX),
                "duration_days": 91,
            }
            for i in range(spec.delegates)
        ],
        "buckets": [],
        "protocols": [{"version": 1, "height": 1}],
        "min_fee": str(spec.min_fee),
    }
    genesis = genesis_mod.from_json(doc)
    genesis_mod.write(out / "genesis.json", genesis)
    homes = []
    delegate_p2p = [f"{spec.host}:{p2p_ports[i]}" for i in range(spec.delegates)]
    for i in range(total):
        is_delegate = i < spec.delegates
        name = f"node{i}" if is_delegate else f"full{i - spec.delegates}"
        home = out / name
        home.mkdir()
        password = secrets.token_urlsafe(24)
        keystore.write(home / "keystore.json", keys[i], password, n=TESTNET_SCRYPT_N)
        write_secret_file(home / "keystore.pass", password)
        write_secret_file(home / "admin.token", secrets.token_urlsafe(32))
        node_key = PrivateKey()
        write_secret_file(home / "node_key.json", json.dumps({"address": node_key.address, "secret": node_key.secret().hex()}))
        genesis_mod.write(home / "genesis.json", genesis)
        cfg = NodeConfig(
            home=home,
            name=name,
            p2p_listen=f"{spec.host}:{p2p_ports[i]}",
            peers=[p for j, p in enumerate(delegate_p2p) if j != i],
            api_listen=f"{spec.host}:{api_ports[i]}",
            propose_timeout_ms=spec.propose_timeout_ms,
            vote_timeout_ms=spec.vote_timeout_ms,
            rate_limit_per_second=spec.rate_limit_per_second,
            rate_limit_burst=int(max(spec.rate_limit_per_second * 2, 10)),
            max_block_actions=spec.max_block_actions,
            mempool_max_per_sender=spec.mempool_max_per_sender,
        )
        cfg.write()
        (home / "data").mkdir()
        Chain.initialize(genesis, cfg.path(cfg.database))
        homes.append(home)
    manifest = {
        "chain_id": spec.chain_id,
        "genesis_hash": genesis.hash.hex(),
        "nodes": [
            {
                "name": h.name,
                "home": str(h.resolve()),
                "address": keys[i].address,
                "delegate": i < spec.delegates,
                "owner": owners[i].address if i < spec.delegates else None,
                "p2p": f"{spec.host}:{p2p_ports[i]}",
                "api": f"http://{spec.host}:{api_ports[i]}",
            }
            for i, h in enumerate(homes)
        ],
    }
    (out / "testnet.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if accounts:
        # Test-only funded accounts for load generation, kept 0600 like any key material.
        write_secret_file(out / "accounts.secret.json", json.dumps([a.secret().hex() for a in accounts]))
    # Test-only too: the delegates' owner keys (in delegate order), so that a test network's delegates can
    # claim their rewards and pay their voters. A production network's owners keep their own keys.
    write_secret_file(out / OWNERS_FILE, json.dumps([o.secret().hex() for o in owners]))
    return homes
