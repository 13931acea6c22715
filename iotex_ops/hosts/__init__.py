"""Host access: one interface (`Host.run/put/get/close`), local and SSH implementations, parallel fan-out,
files from host to host."""

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
from iotex_ops.hosts.transfer import copy_between

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
    "copy_between",
    "fingerprint",
    "run_on",
]
