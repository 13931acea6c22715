"""The remediation service's errors: one root, under the toolkit's."""

from __future__ import annotations

from iotex_ops.errors import OpsError


class RemediationError(OpsError):
    """The remediation service cannot start, or was asked something it cannot do."""


class PolicyError(RemediationError):
    """The policy file is wrong: the message names the key and the value."""


class WebhookRejected(RemediationError):
    """An Alertmanager webhook was malformed (HTTP 400): nothing was changed."""
