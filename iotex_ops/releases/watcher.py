"""The release watcher: sees a new release on the network's channel, applies its update policy, and starts
the drill that rolls it (or asks for approval), recording every decision and outcome.

One `tick`:
1. read the channel; verify each manifest (trusted key, expiry, channel) and refuse the rest by name;
2. take the newest by sequence; a sequence below the highest this network has seen is a rollback or freeze
   attack, refused by name (the floor lives in `<state>/releases/<network>/trust.json`);
3. `policy.decide` with what the delegates run and whether the release was approved;
4. act: `roll` fetches the artifact (its bytes checked against the manifest before the runbook can take it)
   into the inventory's node_release_dir and runs `hotfix-compatible` through the engine (the network's lock,
   steady state, one delegate at a time, rollback); `schedule` runs `hotfix-incompatible` at the approved
   height; `approval` sends a change event and a low-urgency page once per release; the others only record.

Decisions go to `<state>/releases/<network>/ledger.jsonl` (a line when something changes, not every tick);
runs go to the run store like any drill's, and the ledger names their run ids, so `drill history` and
`iotex-ops release history` tell the same story. The side effects sit behind `Rollout` and `Notify`, so the
watcher is tested with fakes and an injected clock.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from iotex_node import signed_release as sr
from iotex_node.errors import ReleaseError
from iotex_ops.errors import OpsError
from iotex_ops.releases import channel as channel_mod
from iotex_ops.releases.channel import ChannelError, Source
from iotex_ops.releases.policy import Decision, UpdatePolicy, decide

LEDGER = "ledger.jsonl"
APPROVALS = "approvals.json"


class Rollout(Protocol):
    """How the watcher reaches the network: what it runs, where artifacts go, how a drill is run."""

    def running(self) -> dict[str, str | None]: ...

    def release_dir(self) -> Path: ...

    def run(self, runbook: str, params: dict[str, Any]) -> tuple[str, str, str | None]:
        """(run id, result, error) of a drill run through the engine."""
        ...


class Notify(Protocol):
    def change(self, event: Mapping[str, Any]) -> None: ...

    def trigger(
        self, dedup_key: str, summary: str, source: str, severity: str, details: dict[str, Any], links: Any = ()
    ) -> None: ...

    def resolve(self, dedup_key: str) -> None: ...


def state_dir(base: Path, network: str) -> Path:
    return Path(base) / "releases" / network


class Ledger:
    """The watcher's record for one network: decisions (JSON lines) and approvals."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)

    def entries(self) -> list[dict[str, Any]]:
        try:
            lines = (self.dir / LEDGER).read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for ln in lines:
            with contextlib.suppress(ValueError):
                out.append(json.loads(ln))
        return out

    def append(self, doc: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / LEDGER, "a") as f:
            f.write(json.dumps(doc, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def last(self, version: str) -> dict[str, Any] | None:
        for e in reversed(self.entries()):
            if e.get("version") == version:
                return e
        return None

    def approvals(self) -> dict[str, dict[str, Any]]:
        try:
            doc = json.loads((self.dir / APPROVALS).read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise OpsError(f"{self.dir / APPROVALS} is unreadable: {exc}") from None
        return doc if isinstance(doc, dict) else {}

    def approve(self, version: str, by: str, now: float, height: int | None = None, note: str = "") -> dict[str, Any]:
        doc = self.approvals()
        row = {"version": version, "by": by, "at": now, "height": height, "note": note}
        doc[version] = row
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".{APPROVALS}.{secrets.token_hex(4)}"
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.dir / APPROVALS)
        self.append({"at": now, "version": version, "action": "approved", "reason": f"approved by {by}", "height": height})
        return row


@dataclass(frozen=True)
class TickResult:
    decision: Decision | None
    refused: tuple[str, ...] = ()  # "name: refused (reason): ..." of manifests this tick refused
    run_id: str | None = None
    result: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision.as_dict() if self.decision else None,
            "refused": list(self.refused),
            "run_id": self.run_id,
            "result": self.result,
        }


class Watcher:
    def __init__(
        self,
        network: str,
        policy: UpdatePolicy,
        rollout: Rollout,
        state: Path,
        *,
        source: Source | None = None,
        notify: Notify | None = None,
        clock: Callable[[], float] = time.time,
        say: Callable[[str], None] = lambda s: None,
    ) -> None:
        self.network, self.policy, self.rollout = network, policy, rollout
        self.source = source or Source(policy.source)
        self.notify, self.clock, self.say = notify, clock, say
        self.dir = state_dir(state, network)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ledger = Ledger(self.dir)
        self.trust = sr.TrustState(self.dir / sr.TRUST_FILE)
        self.trusted = policy.trusted()
        self._signed: dict[str, bytes] = {}  # version -> the signed manifest's bytes, as the last look read them

    def __repr__(self) -> str:
        return f"Watcher(network={self.network!r}, channel={self.policy.channel!r}, source={self.source!r})"

    def _record(self, now: float, version: str, action: str, reason: str, **extra: Any) -> None:
        last = self.ledger.last(version)
        if last and last.get("action") == action and last.get("reason") == reason and not extra:
            return
        self.ledger.append({"at": now, "network": self.network, "version": version, "action": action, "reason": reason, **extra})
        self.say(f"{version}: {action}: {reason}")

    def latest(self, now: float) -> tuple[sr.ReleaseInfo | None, list[str]]:
        """The channel's newest valid manifest by sequence, and every refusal on the way."""
        refused: list[str] = []
        best: sr.ReleaseInfo | None = None
        self._signed = {}
        for e in self.source.entries(self.policy.channel):
            try:
                info = sr.verify(e.data, self.trusted, now=now, channel=self.policy.channel)
            except ReleaseError as exc:
                refused.append(f"{e.name}: {str(exc).removesuffix('; nothing was installed')}")
                continue
            self._signed[info.version] = e.data
            if best is None or info.sequence > best.sequence:
                best = info
        if best is not None:
            try:
                self.trust.check(best)
            except sr.RefusedRelease as exc:
                refused.append(f"{manifest_label(best)}: {str(exc).removesuffix('; nothing was installed')}")
                return None, refused
            self.trust.record(best)
        return best, refused

    def tick(self) -> TickResult:
        now = self.clock()
        try:
            info, refused = self.latest(now)
        except ChannelError as exc:
            self._record(now, "-", "unreachable", str(exc))
            return TickResult(None, (str(exc),))
        for r in refused:
            self._record(now, r.split(":", 1)[0], "refused", r.split(":", 1)[1].strip())
        if info is None:
            return TickResult(None, tuple(refused))
        approval = self.ledger.approvals().get(info.version)
        last = self.ledger.last(info.version)
        if last and last.get("action") == "failed" and not (approval and approval.get("at", 0) > last.get("at", 0)):
            # a rollout that failed is not retried by itself: an operator looks, then approves it again
            return TickResult(Decision("manual", info.version, "its rollout failed; approve it again to retry"), tuple(refused))
        d = decide(self.policy, info, self.rollout.running(), now, approved=approval is not None)
        if d.action in ("roll", "schedule"):
            return self._roll(now, info, d, approval, tuple(refused))
        if d.action == "approval":
            self._ask(now, info, d)
        else:
            self._record(now, info.version, d.action, d.reason)
        return TickResult(d, tuple(refused))

    def _ask(self, now: float, info: sr.ReleaseInfo, d: Decision) -> None:
        last = self.ledger.last(info.version)
        if last and last.get("action") == "approval":
            return  # asked once per release; the page stays open until approved
        details = {"network": self.network, "version": info.version, "kind": info.kind, "channel": info.channel,
                   "runbook": d.runbook, "approve": f"iotex-ops release approve {info.version}"}  # fmt: skip
        if self.notify is not None:
            from iotex_ops.paging import events

            summary = f"release {info.version} ({info.kind}) on {info.channel} waits for approval on {self.network}"
            with contextlib.suppress(OpsError):
                self.notify.change(events.change(summary, f"iotex-ops/{self.network}", custom_details=details))
            with contextlib.suppress(OpsError):
                # info: a low-urgency page (a person decides when, nobody is woken up)
                self.notify.trigger(self.page_key(info.version), summary, f"iotex-ops/{self.network}", "info", details)
        self._record(now, info.version, "approval", d.reason, kind=info.kind)

    def page_key(self, version: str) -> str:
        return f"iotex-ops/{self.network}/release/{version}"

    def _roll(
        self, now: float, info: sr.ReleaseInfo, d: Decision, approval: dict[str, Any] | None, refused: tuple[str, ...]
    ) -> TickResult:
        assert d.runbook is not None
        params: dict[str, Any] = {"version": info.version}
        if d.action == "schedule":
            height = (approval or {}).get("height")
            if not height:
                self._record(now, info.version, "approval", "a protocol change needs the agreed height: approve --height H")
                return TickResult(Decision("approval", info.version, "no agreed height"), refused)
            params["height"] = int(height)
        try:
            rdir = self.rollout.release_dir()
            self.source.fetch_artifact(info, rdir)
            # the signed manifest beside it: the node_release role verifies it on each delegate's host when the
            # inventory sets node_release_trusted_keys (iotex-node release install --signed)
            channel_mod.write_signed(rdir, info, self._signed[info.version])
        except (ChannelError, ReleaseError) as exc:
            self._record(now, info.version, "refused", str(exc).removesuffix("; nothing was installed"))
            return TickResult(Decision("manual", info.version, str(exc)), refused)
        self._record(now, info.version, "started", d.reason, runbook=d.runbook, params=params)
        run_id, result, error = self.rollout.run(d.runbook, params)
        end = self.clock()
        outcome = "rolled" if result == "passed" else ("deferred" if result == "deferred" else "failed")
        self.ledger.append({"at": end, "network": self.network, "version": info.version, "action": outcome,
                            "reason": error or f"{d.runbook} {result}", "run_id": run_id, "result": result,
                            "duration_s": round(end - now, 3)})  # fmt: skip
        self.say(f"{info.version}: {outcome}: run {run_id} {result}")
        if approval is not None and self.notify is not None and outcome == "rolled":
            with contextlib.suppress(OpsError):
                self.notify.resolve(self.page_key(info.version))  # the approval page, answered
        if self.notify is not None:
            from iotex_ops.paging import events

            with contextlib.suppress(OpsError):
                summary = f"release {info.version} {outcome} on {self.network} ({d.runbook} {result})"
                self.notify.change(events.change(summary, f"iotex-ops/{self.network}", custom_details={"run_id": run_id}))
        return TickResult(d, refused, run_id, result)


def manifest_label(info: sr.ReleaseInfo) -> str:
    return f"iotex-node-{info.version}{sr.SIGNED_SUFFIX}"
