"""Funded accounts: the one reader of `accounts.secret.json`.

`iotex-node testnet --accounts N` (and so `LocalNet.generate(..., accounts=N)` and the lab) writes the
secrets of N funded accounts, as a JSON list of 64-hex-character strings, to `accounts.secret.json` beside
the genesis. Everything that sends traffic or checks for leaked secrets reads them here. No message
ever quotes the file's content.
"""

from __future__ import annotations

import json
from pathlib import Path

from iotex_node.sdk import PrivateKey
from iotex_ops.errors import OpsError

ACCOUNTS_FILE = "accounts.secret.json"


class AccountsError(OpsError):
    """The funded accounts cannot be read, or are too few."""


def accounts_path(where: str | Path) -> Path:
    """The accounts file itself, or `ACCOUNTS_FILE` in a network's directory (a testnet's `--out`, a
    LocalNet's root)."""
    path = Path(where)
    return path / ACCOUNTS_FILE if path.is_dir() else path


def read_accounts(where: str | Path, *, at_least: int = 0) -> list[PrivateKey]:
    """The funded accounts' keys, in the file's order; AccountsError names the file and what is wrong
    with it (never a secret) when it is unreadable, malformed, or holds fewer than `at_least`."""
    path = accounts_path(where)
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise AccountsError(f"cannot read funded accounts from {path}: {exc.strerror or type(exc).__name__}") from None
    except ValueError:
        raise AccountsError(f"cannot read funded accounts from {path}: it is not JSON") from None
    if not isinstance(doc, list):
        raise AccountsError(f"{path}: must be a JSON list of account secrets (64 hex characters each)")
    keys = []
    for i, secret in enumerate(doc):
        if not isinstance(secret, str) or len(secret) != 64:
            raise AccountsError(f"{path}: entry {i} is not a 64-hex-character secret")
        try:
            keys.append(PrivateKey.from_hex(secret))
        except ValueError:
            raise AccountsError(f"{path}: entry {i} is not a valid secp256k1 secret") from None
    if len(keys) < at_least:
        raise AccountsError(
            f"{path} holds {len(keys)} funded account(s); {at_least} are needed (make the network with more: "
            "`iotex-node testnet --accounts N`, LocalNet.generate(..., accounts=N))"
        )
    return keys
