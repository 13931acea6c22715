"""Host access: one interface (`Host.run/put/close`), local and SSH implementations, parallel fan-out."""

from iotex_ops.hosts.base import (
    AuthenticationFailed,
    CommandFailed,
    CommandResult,
    CommandTimeout,
    Host,
    HostError,
    HostKeyRejected,
    HostUnreachable,
)
from iotex_ops.hosts.group import GroupError, GroupResult, run_on
from iotex_ops.hosts.local import LocalHost
from iotex_ops.hosts.ssh import SSHHost, SSHPool, fingerprint

__all__ = [
    "AuthenticationFailed",
    "CommandFailed",
    "CommandResult",
    "CommandTimeout",
    "GroupError",
    "GroupResult",
    "Host",
    "HostError",
    "HostKeyRejected",
    "HostUnreachable",
    "LocalHost",
    "SSHHost",
    "SSHPool",
    "fingerprint",
    "run_on",
]
