"""The dashboard's one exception root."""

from __future__ import annotations

from iotex_ops.errors import OpsError


class DashboardError(OpsError):
    """What the operator must fix to start the dashboard (a bind, a token file, a TLS key), or why an action
    was refused; its text is shown as it is, on the command line or on the page."""
