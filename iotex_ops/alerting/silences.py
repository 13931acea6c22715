"""Alertmanager silences through its v2 API (`/api/v2/silences`): the maintenance window of a drill.

For the length of a drill, the alerts it expects on the hosts it touches page nobody: the toolkit creates a
silence scoped to those alert names (and those hosts, for alerts that carry a `host` label), ending at the
drill's timeout plus a grace, `createdBy` naming the toolkit and the comment naming the run; it expires
them when the drill ends, and lists its own (by `createdBy`) to expire what a dead run left.

Never a match-all: every silence needs a positive `alertname` matcher that does not match everything, and
`scoped` refuses anything else before a request is made. The HTTP transport is a parameter (`Transport`),
so the logic is tested against `iotex_ops.testing.FakeAlertmanager` without a socket.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from iotex_ops.alerting.errors import AlertingError

CREATED_BY = "iotex-ops"
HOST_LABEL = "host"
DEFAULT_GRACE_S = 120.0
# values a regex matcher must not both accept, or it matches any value (".*", ".+", "A|.+")
_PROBES = ("zz-no-such-alert-name-\u00e9-0", "Q")

# (method, path with query, JSON body or None) -> the decoded answer; raises SilenceError
Transport = Callable[[str, str, Any], Any]


class SilenceError(AlertingError):
    """A silence was refused here (too wide) or by Alertmanager, or Alertmanager could not be reached."""


@dataclass(frozen=True)
class Matcher:
    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    def as_doc(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "isRegex": self.is_regex, "isEqual": self.is_equal}

    @classmethod
    def from_doc(cls, d: Mapping[str, Any]) -> Matcher:
        return cls(str(d.get("name", "")), str(d.get("value", "")), bool(d.get("isRegex")), bool(d.get("isEqual", True)))

    def matches_everything(self) -> bool:
        if not self.is_equal:
            return False
        if not self.is_regex:
            return False
        try:
            rx = re.compile(self.value)
        except re.error:
            return False
        return all(rx.fullmatch(p) for p in _PROBES)


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: str
    ends_at: str
    created_by: str
    comment: str
    state: str  # active | pending | expired

    @classmethod
    def from_doc(cls, d: Mapping[str, Any]) -> Silence:
        return cls(
            id=str(d.get("id", "")),
            matchers=tuple(Matcher.from_doc(m) for m in d.get("matchers") or () if isinstance(m, Mapping)),
            starts_at=str(d.get("startsAt", "")),
            ends_at=str(d.get("endsAt", "")),
            created_by=str(d.get("createdBy", "")),
            comment=str(d.get("comment", "")),
            state=str((d.get("status") or {}).get("state", "")),
        )

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "matchers": [m.as_doc() for m in self.matchers], "startsAt": self.starts_at,
                "endsAt": self.ends_at, "createdBy": self.created_by, "comment": self.comment, "state": self.state}  # fmt: skip


def scope_problem(matchers: Sequence[Matcher]) -> str | None:
    """Why these matchers are too wide for a silence the toolkit creates, or None."""
    if not matchers:
        return "a silence without matchers would silence every alert"
    names = [m for m in matchers if m.name == "alertname"]
    if not any(m.is_equal and m.value and not m.matches_everything() for m in names):
        return "a silence needs an alertname matcher that names the alerts (not empty, not a wildcard)"
    for m in matchers:
        if not m.name:
            return "a matcher without a label name"
        if m.is_equal and m.matches_everything():
            return f"matcher {m.name}=~{m.value!r} matches every value"
    return None


def scoped(alertnames: Iterable[str], hosts: Iterable[str] | None) -> tuple[Matcher, ...]:
    """The matchers of a drill's silence: these alert names, on these hosts (None: alerts of the whole network,
    which carry no host label, e.g. ChainStalled). Names and hosts are literal (escaped in the regex)."""
    names = sorted({n for n in alertnames if n})
    if not names:
        raise SilenceError("a silence needs at least one alert name")
    out = [Matcher("alertname", names[0]) if len(names) == 1 else Matcher("alertname", "|".join(map(re.escape, names)), True)]
    if hosts is not None:
        hs = sorted({h for h in hosts if h})
        if not hs:
            raise SilenceError("a silence scoped to hosts needs at least one host (None: the whole network's alerts)")
        out.append(Matcher(HOST_LABEL, hs[0]) if len(hs) == 1 else Matcher(HOST_LABEL, "|".join(map(re.escape, hs)), True))
    why = scope_problem(out)
    if why:
        raise SilenceError(why)
    return tuple(out)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def silence_doc(matchers: Sequence[Matcher], *, starts: datetime, ends: datetime, comment: str,
                created_by: str = CREATED_BY) -> dict[str, Any]:  # fmt: skip
    """The body of POST /api/v2/silences (pure); refused if too wide, empty in time, or without a comment."""
    why = scope_problem(matchers)
    if why:
        raise SilenceError(why)
    if ends <= starts:
        raise SilenceError(f"a silence must end after it starts ({_iso(starts)} .. {_iso(ends)})")
    if not comment.strip():
        raise SilenceError("a silence needs a comment naming the run")
    return {"matchers": [m.as_doc() for m in matchers], "startsAt": _iso(starts), "endsAt": _iso(ends),
            "createdBy": created_by, "comment": comment}  # fmt: skip


def http_transport(url: str, timeout: float = 5.0) -> Transport:
    """The transport to a real Alertmanager at `url` (http://host:port)."""
    base = url.rstrip("/")

    def call(method: str, path: str, body: Any) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(base + path, data=data, method=method,  # noqa: S310 - the inventory's Alertmanager
                                     headers={"Content-Type": "application/json"} if data else {})  # fmt: skip
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - as above
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode(errors="replace").strip()
            raise SilenceError(f"Alertmanager at {base}: {method} {path}: HTTP {exc.code}: {detail}") from None
        except (OSError, urllib.error.URLError) as exc:
            raise SilenceError(f"Alertmanager at {base}: {method} {path}: {getattr(exc, 'reason', exc)}") from None
        try:
            return json.loads(raw) if raw.strip() else None
        except ValueError:
            raise SilenceError(f"Alertmanager at {base}: {method} {path}: not JSON: {raw[:100]!r}") from None

    return call


class Silences:
    """The silences of one Alertmanager that this toolkit creates, lists and expires."""

    def __init__(self, transport: Transport | str, created_by: str = CREATED_BY) -> None:
        self._call = http_transport(transport) if isinstance(transport, str) else transport
        self.created_by = created_by

    def create(self, matchers: Sequence[Matcher], *, starts: datetime, ends: datetime, comment: str) -> str:
        """Create a silence; its id."""
        doc = silence_doc(matchers, starts=starts, ends=ends, comment=comment, created_by=self.created_by)
        answer = self._call("POST", "/api/v2/silences", doc)
        sid = answer.get("silenceID") if isinstance(answer, Mapping) else None
        if not sid:
            raise SilenceError(f"Alertmanager answered no silenceID to a new silence: {answer!r}")
        return str(sid)

    def for_drill(self, run_id: str, alertnames: Iterable[str], hosts: Iterable[str] | None, *, now: datetime,
                  timeout_s: float, grace_s: float = DEFAULT_GRACE_S) -> str:  # fmt: skip
        """The silence of one drill run: its expected alerts on its hosts, until its timeout plus a grace."""
        return self.create(scoped(alertnames, hosts), starts=now, ends=now + timedelta(seconds=timeout_s + grace_s),
                           comment=f"iotex-ops drill run {run_id} (alerts the drill causes on purpose)")  # fmt: skip

    def current(self, *, include_expired: bool = False) -> list[Silence]:
        docs = self._call("GET", "/api/v2/silences", None)
        if not isinstance(docs, list):
            raise SilenceError(f"Alertmanager listed silences as {type(docs).__name__}, not a list")
        out = [Silence.from_doc(d) for d in docs if isinstance(d, Mapping)]
        return [s for s in out if include_expired or s.state != "expired"]

    def ours(self, run_id: str | None = None) -> list[Silence]:
        """Active or pending silences created by this toolkit (of one run, when given)."""
        return [s for s in self.current() if s.created_by == self.created_by and (run_id is None or run_id in s.comment.split())]

    def expire(self, silence_id: str) -> None:
        """Expire a silence (one already expired or gone is fine: the outcome is the same)."""
        try:
            self._call("DELETE", f"/api/v2/silence/{quote(silence_id, safe='')}", None)
        except SilenceError as exc:
            if "HTTP 404" in str(exc):
                return
            raise

    def expire_ours(self, run_id: str | None = None) -> list[str]:
        """Expire the toolkit's silences (of one run): after a drill, or at start for what dead runs left."""
        ids = [s.id for s in self.ours(run_id)]
        for sid in ids:
            self.expire(sid)
        return ids
