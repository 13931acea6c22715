"""A node's home directory and its config.toml, validated before anything starts."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from iotex_node.actions import parse_amount
from iotex_node.errors import ConfigError, InvalidInput
from iotex_node.mempool_store import check_durability

CONFIG_FILE = "config.toml"
ADMIN_SOCKET = "admin.sock"
ADMIN_TOKEN = "admin.token"  # noqa: S105 - a file name, not a secret
PID_FILE = "node.pid"


def _hostport(value: object, where: str) -> tuple[str, int]:
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError(f"{where} must be 'host:port', got {value!r}")
    host, _, port = value.rpartition(":")
    try:
        p = int(port)
    except ValueError:
        raise ConfigError(f"{where} port {port!r} is not a number") from None
    if not 0 <= p <= 65535:
        raise ConfigError(f"{where} port {p} is out of range")
    return host, p


@dataclass
class NodeConfig:
    home: Path
    name: str = "node"
    keystore: str = "keystore.json"
    password_file: str = "keystore.pass"  # noqa: S105 - a file name, not a secret
    genesis: str = "genesis.json"
    database: str = "data/chain.db"
    undo_depth: int = 1000
    log_level: str = "info"
    p2p_listen: str = "127.0.0.1:0"
    peers: list[str] = field(default_factory=list)
    max_frame_bytes: int = 8 * 1024 * 1024
    # Inbound peers at most (outbound ones, to `peers`, are not counted); a delegate's node evicts a
    # non-delegate inbound peer when full.
    max_inbound_peers: int = 50
    # Inbound handshakes in progress at most (and per address, loopback excepted), each within this many
    # seconds: a socket that connects and says nothing (or garbage) holds a slot no longer.
    max_handshakes: int = 64
    max_handshakes_per_ip: int = 8
    max_inbound_per_ip: int = 8
    handshake_timeout_s: float = 5.0
    api_listen: str = "127.0.0.1:0"
    max_body_bytes: int = 2 * 1024 * 1024
    rate_limit_per_second: float = 200.0
    rate_limit_burst: int = 400
    # Open API connections at most, from everyone (503 + Retry-After past it) and from one client address
    # (429 + Retry-After); a connection must finish its request line and headers within header_timeout_s
    # (from its start or its previous answer: idle keep-alive included), and a declared body arrive within
    # body_timeout_s (408).
    max_connections: int = 1024
    max_connections_per_client: int = 64
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    mempool_max_total: int = 100_000
    mempool_max_per_sender: int = 2_000
    # The lowest fee this node's mempool admits. None: the genesis minimum (and at least 1). It can only
    # raise the genesis minimum, never lower it: the node refuses to start with a lower one.
    mempool_min_fee: int | None = None
    # The mempool's journal (mempool_store.py): where, and when an accepted action counts as on disk
    # (fsync: before the 2xx answer, survives power loss; write: survives a kill -9; off: no journal).
    mempool_journal: str = "data/mempool.db"
    mempool_durability: str = "fsync"
    propose_timeout_ms: int = 1500
    vote_timeout_ms: int = 500
    max_block_actions: int = 5000
    halt_height: int = 0  # 0: none; else finalize up to and including it, then stop participating
    standby: bool = False  # synced but not signing until activated (hot standby for a delegate key)
    # A standby refuses to activate while its delegate key signed elsewhere within this many seconds.
    standby_guard_seconds: float = 30.0
    node_key: str = "node_key.json"
    # Below this much free space on the database's volume the node pauses its writes (no block committed,
    # nothing signed, no action admitted: writes_paused in /readyz and admin status) and takes them up again
    # once space returns (diskguard.py). 0: no guard (a full disk still only pauses writes, see store.py).
    min_free_disk_mb: int = 64

    def path(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else self.home / p

    @property
    def admin_socket(self) -> Path:
        return self.home / ADMIN_SOCKET

    @property
    def admin_token_file(self) -> Path:
        return self.home / ADMIN_TOKEN

    def to_toml(self) -> dict[str, Any]:
        mempool: dict[str, Any] = {"max_total": self.mempool_max_total, "max_per_sender": self.mempool_max_per_sender}
        # Written only when not the default, so that a home stays readable by a release older than these keys.
        if self.mempool_journal != NodeConfig.mempool_journal:
            mempool["journal"] = self.mempool_journal
        if self.mempool_durability != NodeConfig.mempool_durability:
            mempool["durability"] = self.mempool_durability
        if self.mempool_min_fee is not None:
            mempool["min_fee"] = str(self.mempool_min_fee)  # an amount: may exceed TOML's 64-bit integers
        return {
            "node": {
                "name": self.name,
                "keystore": self.keystore,
                "password_file": self.password_file,
                "genesis": self.genesis,
                "database": self.database,
                "node_key": self.node_key,
                "undo_depth": self.undo_depth,
                "log_level": self.log_level,
                **self._changed({"min_free_disk_mb": "min_free_disk_mb"}),
            },
            "p2p": {
                "listen": self.p2p_listen,
                "peers": self.peers,
                "max_frame_bytes": self.max_frame_bytes,
                "max_inbound_peers": self.max_inbound_peers,
                **self._changed(_FLOOD_KEYS["p2p"]),
            },
            "api": {
                "listen": self.api_listen,
                "max_body_bytes": self.max_body_bytes,
                "rate_limit_per_second": self.rate_limit_per_second,
                "rate_limit_burst": self.rate_limit_burst,
                **self._changed(_FLOOD_KEYS["api"]),
            },
            "mempool": mempool,
            "consensus": {
                "propose_timeout_ms": self.propose_timeout_ms,
                "vote_timeout_ms": self.vote_timeout_ms,
                "max_block_actions": self.max_block_actions,
                "halt_height": self.halt_height,
                "standby": self.standby,
                "standby_guard_seconds": self.standby_guard_seconds,
            },
        }

    def _changed(self, keys: dict[str, str]) -> dict[str, Any]:
        """The keys whose value is not the default: written only then, like the mempool's journal keys."""
        return {k: getattr(self, a) for k, a in keys.items() if getattr(self, a) != getattr(NodeConfig, a)}

    def write(self) -> None:
        (self.home / CONFIG_FILE).write_text(tomli_w.dumps(self.to_toml()))


# The flood limits (docs/node.md, "Limits under a flood"): in config.toml only when changed.
_FLOOD_KEYS: dict[str, dict[str, str]] = {
    "p2p": {k: k for k in ("max_handshakes", "max_handshakes_per_ip", "max_inbound_per_ip", "handshake_timeout_s")},
    "api": {k: k for k in ("max_connections", "max_connections_per_client", "header_timeout_s", "body_timeout_s")},
}

_SECTIONS: dict[str, dict[str, tuple[str, type]]] = {
    "node": {
        "name": ("name", str),
        "keystore": ("keystore", str),
        "password_file": ("password_file", str),
        "genesis": ("genesis", str),
        "database": ("database", str),
        "node_key": ("node_key", str),
        "undo_depth": ("undo_depth", int),
        "log_level": ("log_level", str),
        "min_free_disk_mb": ("min_free_disk_mb", int),
    },
    "p2p": {
        "listen": ("p2p_listen", str),
        "peers": ("peers", list),
        "max_frame_bytes": ("max_frame_bytes", int),
        "max_inbound_peers": ("max_inbound_peers", int),
        "max_handshakes": ("max_handshakes", int),
        "max_handshakes_per_ip": ("max_handshakes_per_ip", int),
        "max_inbound_per_ip": ("max_inbound_per_ip", int),
        "handshake_timeout_s": ("handshake_timeout_s", float),
    },
    "api": {
        "listen": ("api_listen", str),
        "max_body_bytes": ("max_body_bytes", int),
        "rate_limit_per_second": ("rate_limit_per_second", float),
        "rate_limit_burst": ("rate_limit_burst", int),
        "max_connections": ("max_connections", int),
        "max_connections_per_client": ("max_connections_per_client", int),
        "header_timeout_s": ("header_timeout_s", float),
        "body_timeout_s": ("body_timeout_s", float),
    },
    "mempool": {
        "max_total": ("mempool_max_total", int),
        "max_per_sender": ("mempool_max_per_sender", int),
        "journal": ("mempool_journal", str),
        "durability": ("mempool_durability", str),
    },
    "consensus": {
        "propose_timeout_ms": ("propose_timeout_ms", int),
        "vote_timeout_ms": ("vote_timeout_ms", int),
        "max_block_actions": ("max_block_actions", int),
        "halt_height": ("halt_height", int),
        "standby": ("standby", bool),
        "standby_guard_seconds": ("standby_guard_seconds", float),
    },
}


def load(home: Path) -> NodeConfig:
    home = Path(home)
    if not home.is_dir():
        raise ConfigError(f"node home {home} does not exist or is not a directory")
    path = home / CONFIG_FILE
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist: is {home} a node home (iotex-node init)?") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    cfg = NodeConfig(home=home.resolve())
    for section, values in doc.items():
        spec = _SECTIONS.get(section)
        if spec is None or not isinstance(values, dict):
            raise ConfigError(f"{path}: unknown section [{section}]")
        for key, value in values.items():
            if (section, key) == ("mempool", "min_fee"):
                cfg.mempool_min_fee = _min_fee(value, path)
                continue
            if key not in spec:
                raise ConfigError(f"{path}: unknown key {section}.{key}")
            attr, typ = spec[key]
            if typ is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, typ) or (isinstance(value, bool) and typ is not bool):
                raise ConfigError(f"{path}: {section}.{key} must be {typ.__name__}, got {value!r}")
            setattr(cfg, attr, value)
    _hostport(cfg.p2p_listen, "p2p.listen")
    _hostport(cfg.api_listen, "api.listen")
    for i, peer in enumerate(cfg.peers):
        _hostport(peer, f"p2p.peers[{i}]")
    check_durability(cfg.mempool_durability, f"{path}: mempool.durability")
    if cfg.min_free_disk_mb < 0:
        raise ConfigError(f"{path}: node.min_free_disk_mb must be 0 (no guard) or a number of MiB")
    if cfg.halt_height < 0:
        raise ConfigError(f"{path}: consensus.halt_height must be 0 (none) or a block height")
    for name in ("undo_depth", "max_frame_bytes", "max_inbound_peers", "max_body_bytes",
                 "mempool_max_total", "mempool_max_per_sender",
                 "propose_timeout_ms", "vote_timeout_ms", "max_block_actions", "rate_limit_burst",
                 "max_handshakes", "max_handshakes_per_ip", "max_inbound_per_ip", "handshake_timeout_s",
                 "max_connections", "max_connections_per_client", "header_timeout_s", "body_timeout_s"):  # fmt: skip
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"{path}: {name} must be positive")
    return cfg


def _min_fee(value: object, path: Path) -> int:
    """mempool.min_fee: an amount in rau, as an integer or a decimal string (for amounts past 2**63)."""
    try:
        fee = parse_amount(value, "mempool.min_fee", positive=False)
    except InvalidInput as exc:
        raise ConfigError(f'{path}: {exc} (an amount in rau, e.g. "10000000000000000" for 0.01 IOTX)') from None
    if fee < 1:
        raise ConfigError(f"{path}: mempool.min_fee must be at least 1: a free action costs its sender nothing")
    return fee


def read_secret_file(path: Path, what: str) -> str:
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except FileNotFoundError:
        raise ConfigError(f"{what} file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{what} file {path} cannot be read: {exc.strerror}") from None
    if mode & 0o077:
        raise ConfigError(f"{what} file {path} is readable by others (mode {oct(mode & 0o777)}): chmod 600 it")
    return text


def write_secret_file(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")
