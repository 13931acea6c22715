"""The paging package's exception root; messages name the file, variable, field or endpoint involved, never a secret."""

from __future__ import annotations

from iotex_ops.errors import OpsError


class PagingError(OpsError):
    """Root of every error the paging package raises on purpose."""


class RoutingKeyError(PagingError):
    """A routing key could not be loaded; names the file or environment variable, never the value."""


class InvalidEvent(PagingError):
    """An event breaks the Events API v2 contract; `errors` names every bad field, as PagerDuty's 400 would."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("invalid event: " + "; ".join(self.errors))


class DeliveryError(PagingError):
    """An event was not accepted by the Events API (used where delivery is synchronous: `pager send`)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class ReceiverError(PagingError):
    """The lab receiver could not start, or could not be found or queried."""
