"""Alertmanager's webhook payload (version 4), parsed and checked whole before anything acts on it."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from iotex_ops.remediation.errors import WebhookRejected

MAX_ALERTS = 1000
_FINGERPRINT = re.compile(r"^[0-9a-fA-F]{1,64}$")


@dataclass(frozen=True)
class Alert:
    fingerprint: str
    status: str  # firing | resolved
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str
    ends_at: str
    generator_url: str

    @property
    def name(self) -> str:
        return self.labels["alertname"]

    @property
    def host(self) -> str:
        """The inventory host the alert is about ("" for network-wide alerts)."""
        return self.labels.get("host", "")

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "error")


def _str_map(v: Any, where: str) -> dict[str, str]:
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        raise WebhookRejected(f"{where}: expected an object of strings")
    return v


_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def _time(v: Any, where: str) -> str:
    # Go writes nanoseconds, which datetime.fromisoformat refuses before 3.11's wider parser: match the shape
    if not isinstance(v, str) or not _RFC3339.match(v):
        raise WebhookRejected(f"{where}: {v!r} is not an RFC 3339 time")
    return v


def parse(body: bytes) -> list[Alert]:
    """The alerts of one notification, or WebhookRejected naming the first thing wrong."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookRejected("body is not JSON") from None
    if not isinstance(doc, dict):
        raise WebhookRejected("body is not a JSON object")
    if doc.get("version") != "4":
        raise WebhookRejected(f'version {doc.get("version")!r} is not Alertmanager\'s webhook version "4"')
    raw = doc.get("alerts")
    if not isinstance(raw, list) or not raw:
        raise WebhookRejected("`alerts` must be a non-empty list")
    if len(raw) > MAX_ALERTS:
        raise WebhookRejected(f"{len(raw)} alerts in one notification; at most {MAX_ALERTS}")
    out = []
    for i, a in enumerate(raw):
        where = f"alerts[{i}]"
        if not isinstance(a, dict):
            raise WebhookRejected(f"{where}: expected an object")
        status = a.get("status")
        if status not in ("firing", "resolved"):
            raise WebhookRejected(f"{where}.status: {status!r} is neither 'firing' nor 'resolved'")
        labels = _str_map(a.get("labels"), f"{where}.labels")
        if not labels.get("alertname"):
            raise WebhookRejected(f"{where}.labels: no alertname")
        fp = a.get("fingerprint")
        if not isinstance(fp, str) or not _FINGERPRINT.match(fp):
            raise WebhookRejected(f"{where}.fingerprint: {fp!r} is not a hex fingerprint")
        out.append(
            Alert(
                fingerprint=fp,
                status=status,
                labels=labels,
                annotations=_str_map(a.get("annotations", {}), f"{where}.annotations"),
                starts_at=_time(a.get("startsAt"), f"{where}.startsAt"),
                ends_at=str(a.get("endsAt") or ""),
                generator_url=str(a.get("generatorURL") or ""),
            )
        )
    return out
