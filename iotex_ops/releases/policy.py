"""A network's update policy: `inventories/<net>/releases.yml` into a frozen dataclass, and `decide` (pure).

    channel: stable                   # the channel this network follows (stable, candidate...)
    source: /srv/iotex-channel        # the channel's location: a directory, or an http(s):// index
    trusted_keys:                     # the publishers' public keys; a manifest signed by none is refused
      - ed25519:3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29
    timezone: UTC
    automatic: [patch]                # rolled without asking: hotfix-compatible, one delegate at a time
    approval: [minor]                 # waits for `iotex-ops release approve VERSION` (a change event, a low page)
    scheduled: [protocol]             # hotfix-incompatible at a height the delegates agreed (approve --height H)
    hold: 0.1.0                       # optional: stay on this version, whatever the channel says
    windows:                          # optional: a rollout starts only inside one of these (drill windows' syntax)
      - {days: mon-fri, hours: "09:00-17:00"}
    blackouts:
      - {dates: "2026-12-20..2027-01-03", reason: year-end freeze}
    max_age: 30d                      # optional: a manifest published longer ago than this is not rolled

A kind named nowhere (by default `major`) is never rolled: the watcher records it as `manual` and pages
nobody; an operator runs the drill by hand. Windows and blackouts are the drill schedules' periods
(iotex_ops.schedule.model), so one vocabulary says when a network may change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import yaml

from iotex_node.release import version_key
from iotex_node.signed_release import CHANNELS_RE, KINDS, ReleaseInfo, parse_keys
from iotex_ops.errors import OpsError
from iotex_ops.schedule.model import Period, _periods, timezone_problem

FILE_NAME = "releases.yml"
POLICY_KEYS = (
    "channel",
    "source",
    "trusted_keys",
    "timezone",
    "automatic",
    "approval",
    "scheduled",
    "hold",
    "windows",
    "blackouts",
)

Action = Literal["roll", "approval", "schedule", "hold", "window", "current", "manual"]
RUNBOOK_FOR = {"roll": "hotfix-compatible", "schedule": "hotfix-incompatible"}


class PolicyError(OpsError):
    """A releases.yml that is wrong; every problem is named with its field."""


@dataclass(frozen=True)
class UpdatePolicy:
    channel: str
    source: str
    trusted_keys: tuple[str, ...]
    timezone: str = "UTC"
    automatic: frozenset[str] = frozenset({"patch"})
    approval: frozenset[str] = frozenset({"minor"})
    scheduled: frozenset[str] = frozenset({"protocol"})
    hold: str | None = None
    windows: tuple[Period, ...] = ()
    blackouts: tuple[Period, ...] = ()
    origin: str = FILE_NAME

    def trusted(self) -> dict[str, Any]:
        return parse_keys(self.trusted_keys, f"{self.origin}: trusted_keys")

    def as_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "source": self.source,
            "trusted_keys": list(self.trusted_keys),
            "timezone": self.timezone,
            "automatic": sorted(self.automatic),
            "approval": sorted(self.approval),
            "scheduled": sorted(self.scheduled),
            "hold": self.hold,
            "windows": [w.describe() for w in self.windows],
            "blackouts": [b.describe() for b in self.blackouts],
        }

    def in_window(self, now: float) -> str | None:
        """None when a rollout may start at `now`; else why not."""
        local = datetime.fromtimestamp(now, UTC).astimezone(ZoneInfo(self.timezone))
        for b in self.blackouts:
            if b.contains(local):
                return f"in blackout {b.describe()}"
        if self.windows and not any(w.contains(local) for w in self.windows):
            return "outside the allowed windows (" + "; ".join(w.describe() for w in self.windows) + ")"
        return None


def policy_file(inventory: str | Path) -> Path:
    p = Path(inventory)
    return (p if p.is_dir() else p.parent) / FILE_NAME


def parse(doc: Any, origin: str = FILE_NAME, base: Path | None = None) -> UpdatePolicy:
    problems: list[str] = []

    def bad(at: str, msg: str) -> None:
        problems.append(f"{origin}: {at}: {msg}")

    if not isinstance(doc, Mapping):
        raise PolicyError(f"{origin}: must be a mapping (channel, source, trusted_keys, ...)")
    for k in doc:
        if k not in POLICY_KEYS:
            bad(str(k), f"unknown field; known: {', '.join(POLICY_KEYS)}")
    channel = doc.get("channel", "stable")
    if not isinstance(channel, str) or not CHANNELS_RE.fullmatch(channel):
        bad("channel", f"{channel!r} must be lowercase letters, digits, dashes")
    source = doc.get("source")
    if not isinstance(source, str) or not source:
        bad("source", "required: the channel's directory or http(s):// URL")
        source = ""
    elif "://" not in source and base is not None and not Path(source).expanduser().is_absolute():
        source = str((base / source).resolve())
    keys = doc.get("trusted_keys")
    if not isinstance(keys, list) or not keys:
        bad("trusted_keys", "required: the publishers' public keys (ed25519:<hex>)")
        keys = []
    else:
        try:
            parse_keys(keys, "trusted_keys")
        except OpsError as exc:
            bad("trusted_keys", str(exc))
        except Exception as exc:  # ReleaseError is the node's; it says which key is wrong
            bad("trusted_keys", str(exc))
    tz = doc.get("timezone", "UTC")
    tz_problem = timezone_problem(tz) if isinstance(tz, str) else "must be an IANA name"
    if tz_problem:
        bad("timezone", tz_problem)
        tz = "UTC"
    kinds: dict[str, frozenset[str]] = {}
    defaults = {"automatic": ["patch"], "approval": ["minor"], "scheduled": ["protocol"]}
    for key, default in defaults.items():
        raw = doc.get(key, default)
        if raw is None:
            raw = []
        if not isinstance(raw, list) or any(k not in KINDS for k in raw):
            bad(key, f"{raw!r} must be a list of kinds: {', '.join(KINDS)}")
            raw = []
        kinds[key] = frozenset(raw)
    seen: dict[str, str] = {}
    for key, ks in kinds.items():
        for k in ks:
            if k in seen:
                bad(key, f"kind {k} is also in {seen[k]}: a kind has one way to roll")
            seen[k] = key
    if "protocol" in kinds["automatic"] or "protocol" in kinds["approval"]:
        bad("automatic", "a protocol change pauses the whole network at an agreed height: it can only be `scheduled`")
    hold = doc.get("hold")
    if hold is not None and not isinstance(hold, str):
        hold = str(hold)

    def collect(at: str, msg: str) -> None:
        bad(at, msg)

    windows = _periods(doc.get("windows"), "windows", collect)
    blackouts = _periods(doc.get("blackouts"), "blackouts", collect)
    if problems:
        raise PolicyError("; ".join(problems))
    return UpdatePolicy(
        channel=channel,
        source=source,
        trusted_keys=tuple(keys),
        timezone=tz,
        automatic=kinds["automatic"],
        approval=kinds["approval"],
        scheduled=kinds["scheduled"],
        hold=hold,
        windows=windows,
        blackouts=blackouts,
        origin=origin,
    )


def load(inventory: str | Path) -> UpdatePolicy:
    path = policy_file(inventory)
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise PolicyError(f"{path}: no update policy (see docs/releases.md for releases.yml)") from None
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyError(f"{path}: unreadable: {exc}") from None
    return parse(doc, str(path), base=path.parent)


@dataclass(frozen=True)
class Decision:
    """What the policy says about one release for a network running `running` versions."""

    action: Action
    version: str
    reason: str
    runbook: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "version": self.version, "reason": self.reason, "runbook": self.runbook}


def newer(a: str, b: str) -> bool:
    return version_key(a) > version_key(b)


def decide(policy: UpdatePolicy, release: ReleaseInfo, running: Mapping[str, str | None], now: float, approved: bool) -> Decision:
    """Pure: roll, ask, schedule, hold or wait, for `release` and the delegates' running versions."""
    v = release.version
    versions = {x for x in running.values() if x}
    if versions and all(x == v for x in running.values()):
        return Decision("current", v, f"every delegate runs {v}")
    if policy.hold is not None:
        return Decision("hold", v, f"the policy holds this network on {policy.hold}")
    if versions and not any(newer(v, x) for x in versions):
        return Decision("current", v, f"{v} is not newer than what the delegates run ({', '.join(sorted(versions))})")
    kind = release.kind
    if kind in policy.scheduled:
        if not approved:
            return Decision(
                "approval", v, f"a {kind} release: the delegates agree on a height (approve --height H)", RUNBOOK_FOR["schedule"]
            )
        action: Action = "schedule"
    elif kind in policy.approval:
        if not approved:
            return Decision(
                "approval", v, f"a {kind} release needs approval (iotex-ops release approve {v})", RUNBOOK_FOR["roll"]
            )
        action = "roll"
    elif kind in policy.automatic:
        action = "roll"
    else:
        return Decision("manual", v, f"the policy rolls no {kind} release by itself: run the drill by hand")
    blocked = policy.in_window(now)
    if blocked:
        return Decision("window", v, f"{kind} {v} waits: {blocked}", RUNBOOK_FOR[action])
    return Decision(action, v, f"{kind} release {v} is {'approved' if approved else 'automatic'}", RUNBOOK_FOR[action])
