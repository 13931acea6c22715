"""The client's home: its config file (endpoint, default account, aliases) and its keystores.

Home: `$IOTEX_OPS_CLIENT_HOME`, else `~/.iotex-ops/client`. `config.json` there holds
{"endpoint": URL, "default_account": NAME, "aliases": {NAME: io1...}}; `keystores/<address>.json` are
encrypted keys (iotex_node's keystore format: scrypt + AES-256-GCM), mode 0600. The endpoint a command uses:
--endpoint, else $IOTEX_OPS_ENDPOINT, else the config's. The file is rewritten whole through a temporary
file and a rename, so a crash never leaves half of it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from iotex_ops.client.errors import ClientError
from iotex_ops.client.units import looks_like_address

ENV_HOME = "IOTEX_OPS_CLIENT_HOME"
ENV_ENDPOINT = "IOTEX_OPS_ENDPOINT"
_ALIAS_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")


def client_home() -> Path:
    env = os.environ.get(ENV_HOME)
    return Path(env) if env else Path.home() / ".iotex-ops" / "client"


@dataclass(frozen=True)
class ClientConfig:
    home: Path
    endpoint: str | None = None
    default_account: str | None = None
    aliases: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.home / "config.json"

    @property
    def keystores(self) -> Path:
        return self.home / "keystores"

    def keystore_path(self, address: str) -> Path:
        return self.keystores / f"{address}.json"

    def has_keystore(self, address: str) -> bool:
        return self.keystore_path(address).exists()

    def endpoint_for(self, given: str | None) -> str:
        url = given or os.environ.get(ENV_ENDPOINT) or self.endpoint
        if not url:
            raise ClientError(
                f"no node endpoint: give --endpoint URL, set {ENV_ENDPOINT}, or save one with "
                "`iotex-ops account config --endpoint URL`",
                "no_endpoint",
            )
        if not url.startswith(("http://", "https://")):
            raise ClientError(f"endpoint {url!r} is not an http:// or https:// URL", "bad_input")
        return url.rstrip("/")

    def resolve(self, name: str | None, what: str = "account") -> str:
        """An io1 address, or the address an alias names; None: the default account."""
        if name is None:
            if not self.default_account:
                raise ClientError(
                    f"no {what} given and no default account: give one, or set it with `iotex-ops account config --default NAME`",
                    "no_account",
                )
            name = self.default_account
        if name.startswith("io"):
            if not looks_like_address(name):
                raise ClientError(f"{name!r} is not a valid io1... address", "bad_address")
            return name
        if name in self.aliases:
            return self.aliases[name]
        known = ", ".join(sorted(self.aliases)) or "none"
        raise ClientError(
            f"unknown alias {name!r} (known: {known}); give an io1... address, or name it with "
            f"`iotex-ops account alias set {name} io1...`",
            "unknown_alias",
        )

    def name_of(self, address: str) -> str | None:
        for alias, addr in sorted(self.aliases.items()):
            if addr == address:
                return alias
        return None

    def with_alias(self, alias: str, address: str) -> ClientConfig:
        check_alias(alias)
        if not looks_like_address(address):
            raise ClientError(f"{address!r} is not a valid io1... address", "bad_address")
        return replace(self, aliases={**self.aliases, alias: address})

    def without_alias(self, alias: str) -> ClientConfig:
        if alias not in self.aliases:
            raise ClientError(f"unknown alias {alias!r}", "unknown_alias")
        rest = {k: v for k, v in self.aliases.items() if k != alias}
        default = None if self.default_account == alias else self.default_account
        return replace(self, aliases=rest, default_account=default)

    def to_json(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "default_account": self.default_account, "aliases": dict(sorted(self.aliases.items()))}


def check_alias(alias: str) -> None:
    if not alias or len(alias) > 40 or not set(alias) <= _ALIAS_CHARS or alias.startswith("io"):
        raise ClientError(
            f"alias {alias!r} must be 1-40 of a-z 0-9 - _ . and not start with 'io' (that is how addresses start)", "bad_input"
        )


def load(home: Path | None = None) -> ClientConfig:
    home = home or client_home()
    path = home / "config.json"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return ClientConfig(home)
    except (OSError, ValueError) as exc:
        raise ClientError(f"config file {path} cannot be read: {exc}", "bad_config") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("aliases", {}), dict):
        raise ClientError(f"config file {path}: must be a JSON object with an `aliases` object", "bad_config")
    aliases = {str(k): str(v) for k, v in doc.get("aliases", {}).items()}
    return ClientConfig(home, doc.get("endpoint") or None, doc.get("default_account") or None, aliases)


def save(cfg: ClientConfig) -> None:
    cfg.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = cfg.path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cfg.to_json(), indent=2) + "\n")
    os.replace(tmp, cfg.path)
