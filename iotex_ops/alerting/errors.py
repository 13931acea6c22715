"""The alerting package's one exception root."""

from __future__ import annotations

from iotex_ops.errors import OpsError


class AlertingError(OpsError):
    """The monitoring configuration cannot be generated from the inventory, or cannot be checked."""
