"""The remediation policy: which alert starts which runbook with which parameters, and the limits that keep
automation from making an incident worse (attempts, once-within windows, one run per host, a global rate,
a circuit breaker). Data validated before the service starts; the decisions are pure functions of it.

    defaults: {max_attempts: 3, once_within: 60s, resolve_after: 10s}
    limits: {max_concurrent: 2, rate: {starts: 6, per: 60s}}
    breaker: {failures: 3, open_for: 10m}
    watchdog: {alert: Watchdog, timeout: 2m}
    remediations:
      DelegateDown: {runbook: restart-node, params: {host: "{host}"}}
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from iotex_ops.durations import parse_duration
from iotex_ops.remediation import DEFAULT_POLICY as DEFAULT_POLICY  # re-exported: where it always was
from iotex_ops.remediation.errors import PolicyError


def duration(value: Any, where: str) -> float:
    """Seconds from `90`, `90s`, `1h30m`, `500ms`, `7d`; an error naming the key otherwise."""
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise PolicyError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class Remediation:
    """What to run for one alert name."""

    alert: str
    runbook: str
    params: Mapping[str, str]  # values are templates over the alert's labels: "{host}"
    max_attempts: int
    once_within_s: float

    def fields(self) -> list[str]:
        """The labels the parameter templates need ({host}, {labels.x} is not allowed: plain names only)."""
        out = []
        for template in self.params.values():
            for _, f, spec, conv in string.Formatter().parse(template):
                if f is None:
                    continue
                if not f.isidentifier() or spec or conv:
                    raise ValueError(f"{{{f}}}: only plain label names like {{host}} are allowed")
                out.append(f)
        return out

    def render(self, labels: Mapping[str, str]) -> dict[str, str]:
        missing = [f for f in self.fields() if f not in labels]
        if missing:
            raise PolicyError(
                f"alert {self.alert} has no label {', '.join(repr(m) for m in missing)} for runbook {self.runbook}'s "
                f"parameters (labels: {', '.join(sorted(labels))})"
            )
        return {k: v.format_map(dict(labels)) for k, v in self.params.items()}


@dataclass(frozen=True)
class Policy:
    remediations: Mapping[str, Remediation]
    max_attempts: int = 3
    once_within_s: float = 60.0
    # a page is resolved only once its alert has stayed resolved this long: a flapping alert keeps one page
    resolve_after_s: float = 10.0
    max_concurrent: int = 2
    rate_starts: int = 6
    rate_per_s: float = 60.0
    breaker_failures: int = 3
    breaker_open_s: float = 600.0
    # a remediation that could not start (a drill holds the network) is tried again after this (doubling up
    # to a minute), and the page escalates once it has waited `defer_for`
    defer_s: float = 5.0
    defer_for_s: float = 1800.0
    # closed incidents are forgotten after this (their run journals stay)
    retention_s: float = 7 * 86400.0
    watchdog_alert: str = "Watchdog"
    watchdog_timeout_s: float = 120.0
    source: str = field(default="", compare=False)

    def for_alert(self, alertname: str) -> Remediation | None:
        return self.remediations.get(alertname)

    def runbooks(self) -> set[str]:
        return {r.runbook for r in self.remediations.values()}


_TOP = {"defaults", "limits", "breaker", "watchdog", "remediations"}
_DEFAULTS = {"max_attempts", "once_within", "resolve_after", "defer", "defer_for", "retention"}
_LIMITS = {"max_concurrent", "rate"}
_RATE = {"starts", "per"}
_BREAKER = {"failures", "open_for"}
_WATCHDOG = {"alert", "timeout"}
_REMEDIATION = {"runbook", "params", "max_attempts", "once_within"}


def _mapping(doc: Any, where: str, allowed: set[str]) -> dict[str, Any]:
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise PolicyError(f"{where}: expected a mapping, got {type(doc).__name__}")
    unknown = sorted(str(k) for k in doc if k not in allowed)
    if unknown:
        raise PolicyError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}")
    return doc


def _int(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PolicyError(f"{where}: expected a whole number >= {minimum}, got {value!r}")
    return value


def parse(doc: Any, source: str = "<policy>") -> Policy:
    top = _mapping(doc, source, _TOP)
    d = _mapping(top.get("defaults"), f"{source}: defaults", _DEFAULTS)
    lim = _mapping(top.get("limits"), f"{source}: limits", _LIMITS)
    rate = _mapping(lim.get("rate"), f"{source}: limits.rate", _RATE)
    br = _mapping(top.get("breaker"), f"{source}: breaker", _BREAKER)
    wd = _mapping(top.get("watchdog"), f"{source}: watchdog", _WATCHDOG)
    base = Policy(remediations={})
    max_attempts = _int(d.get("max_attempts", base.max_attempts), f"{source}: defaults.max_attempts", 1)
    once = duration(d.get("once_within", base.once_within_s), f"{source}: defaults.once_within")
    rems: dict[str, Remediation] = {}
    raw = top.get("remediations") or {}
    if not isinstance(raw, dict):
        raise PolicyError(f"{source}: remediations: expected a mapping of alert name -> {{runbook, params}}")
    for alert, spec in raw.items():
        where = f"{source}: remediations.{alert}"
        r = _mapping(spec, where, _REMEDIATION)
        runbook = r.get("runbook")
        if not isinstance(runbook, str) or not runbook:
            raise PolicyError(f"{where}: `runbook` (the runbook's name) is required")
        params = r.get("params") or {}
        if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
            raise PolicyError(f"{where}.params: expected a mapping of parameter -> template")
        rem = Remediation(
            alert=str(alert),
            runbook=runbook,
            params={k: str(v) for k, v in params.items()},
            max_attempts=_int(r.get("max_attempts", max_attempts), f"{where}.max_attempts", 1),
            once_within_s=duration(r.get("once_within", once), f"{where}.once_within"),
        )
        try:
            rem.render({f: "x" for f in rem.fields()})  # a template that cannot be filled is refused now
        except (ValueError, KeyError, IndexError, AttributeError) as exc:
            raise PolicyError(f"{where}.params: bad template: {type(exc).__name__}: {exc}") from None
        rems[str(alert)] = rem
    return Policy(
        remediations=rems,
        max_attempts=max_attempts,
        once_within_s=once,
        resolve_after_s=duration(d.get("resolve_after", base.resolve_after_s), f"{source}: defaults.resolve_after"),
        defer_s=duration(d.get("defer", base.defer_s), f"{source}: defaults.defer"),
        defer_for_s=duration(d.get("defer_for", base.defer_for_s), f"{source}: defaults.defer_for"),
        retention_s=duration(d.get("retention", base.retention_s), f"{source}: defaults.retention"),
        max_concurrent=_int(lim.get("max_concurrent", base.max_concurrent), f"{source}: limits.max_concurrent", 1),
        rate_starts=_int(rate.get("starts", base.rate_starts), f"{source}: limits.rate.starts", 1),
        rate_per_s=duration(rate.get("per", base.rate_per_s), f"{source}: limits.rate.per"),
        breaker_failures=_int(br.get("failures", base.breaker_failures), f"{source}: breaker.failures", 1),
        breaker_open_s=duration(br.get("open_for", base.breaker_open_s), f"{source}: breaker.open_for"),
        watchdog_alert=str(wd.get("alert", base.watchdog_alert)),
        watchdog_timeout_s=duration(wd.get("timeout", base.watchdog_timeout_s), f"{source}: watchdog.timeout"),
        source=source,
    )


def load(path: Path) -> Policy:
    try:
        text = path.read_text()
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc.strerror or exc}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy file {path} is not valid YAML: {exc}") from None
    return parse(doc, str(path))


# -- decisions (pure) ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gate:
    """Whether a remediation may start now; `reason` says why not, `retry_at` when to ask again (None: never
    again for this incident, which escalates)."""

    go: bool
    reason: str = ""
    retry_at: float | None = None


def may_start(
    policy: Policy,
    rem: Remediation,
    *,
    now: float,
    attempts: int,
    last_start: float | None,
    last_failed: bool,
    host_busy: bool,
    running: int,
    recent_starts: list[float],
    breaker_open_until: float | None,
) -> Gate:
    """The limits, in the order an on-call person would reason about them. A gate without `retry_at` means
    automation is done with this incident: the page escalates to a person."""
    if breaker_open_until is not None and breaker_open_until > now:
        return Gate(False, f"circuit breaker for {rem.runbook} is open (it failed {policy.breaker_failures} times in a row)")
    if attempts >= rem.max_attempts and last_failed:
        return Gate(False, f"{rem.runbook} failed; {attempts} attempt(s) made, the most this policy allows ({rem.max_attempts})")
    if last_start is not None and now - last_start < rem.once_within_s:
        # also after a passed attempt: the alert needs a few evaluations to resolve before anyone judges it
        return Gate(False, f"once within {rem.once_within_s:g}s per alert and host", retry_at=last_start + rem.once_within_s)
    if attempts >= rem.max_attempts:
        return Gate(False, f"still firing after {attempts} attempt(s) of {rem.runbook} (the most this policy allows)")
    if host_busy:
        return Gate(False, "another remediation is running on this host", retry_at=now + 0.5)
    if running >= policy.max_concurrent:
        return Gate(False, f"{running} remediations running (limit {policy.max_concurrent})", retry_at=now + 0.5)
    window = [t for t in recent_starts if now - t < policy.rate_per_s]
    if len(window) >= policy.rate_starts:
        return Gate(
            False,
            f"rate limit: {len(window)} starts in the last {policy.rate_per_s:g}s (limit {policy.rate_starts})",
            retry_at=min(window) + policy.rate_per_s,
        )
    return Gate(True)
