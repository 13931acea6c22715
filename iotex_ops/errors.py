"""One exception root for the toolkit; errors name the host, node or step involved."""

from __future__ import annotations


class OpsError(Exception):
    """Root of every error iotex-ops raises on purpose."""


class LabError(OpsError):
    """The local lab could not start, reach or stop one of its processes."""
