"""One exception root for the node; every error names what was wrong and where."""

from __future__ import annotations


class NodeError(Exception):
    """Root of every error the node raises on purpose."""


class InvalidInput(NodeError):
    """Input from outside (API, CLI, file) is malformed; `field` names the offending part."""

    def __init__(self, message: str, field: str | None = None, code: str = "invalid") -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.code = code
        self.reason = message


class InvalidAction(InvalidInput):
    """A signed action that can never be valid (bad signature, wrong chain id, bad payload)."""


class Rejected(NodeError):
    """The mempool refused an action; `code` is the machine-readable reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.reason = message


class InvalidBlock(NodeError):
    """A block or certificate failed validation."""


class ExecutionError(NodeError):
    """An action failed during execution; the action still consumes its nonce and fee."""


class StorageError(NodeError):
    """The node's database is missing, corrupt or inconsistent."""


class DiskFull(StorageError):
    """A write to the node's database failed because its volume is full (SQLITE_FULL, ENOSPC): nothing of
    it was kept (the transaction rolled back); the node pauses writes until space returns."""


class ConfigError(NodeError):
    """A node home, config or genesis file is missing or wrong."""


class KeystoreError(NodeError):
    """A keystore could not be read or decrypted."""


class ReleaseError(NodeError):
    """A release (version, protocols, artifact or installed release) is malformed, missing or tampered with."""
