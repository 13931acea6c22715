"""Release channel, update policy and watcher, with fakes: no process, no socket, an injected clock.

The scenarios: a patch on the stable channel is rolled by hotfix-compatible inside the policy's window; a hold
keeps the network where it is; a minor release waits for approval (a change event and a low-urgency page,
once) and rolls once approved; a protocol change waits for an agreed height, then hotfix-incompatible runs at
it; a tampered, wrongly signed, expired or replayed manifest on the channel is refused by name and nothing runs.
"""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from iotex_node import signed_release as sr
from iotex_ops.cli import main
from iotex_ops.releases import channel as channel_mod
from iotex_ops.releases import policy as policy_mod
from iotex_ops.releases.watcher import Watcher
from iotex_ops.testing import FakePages

# a Tuesday, 10:00 UTC
NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC).timestamp()


def _artifact(dist: Path, version: str, protocols: tuple[int, ...] = (1,)) -> Path:
    """A stand-in artifact with the sidecar manifest `iotex-node release build` writes: the channel signs bytes."""
    dist.mkdir(parents=True, exist_ok=True)
    art = dist / f"iotex-node-{version}.tar.gz"
    art.write_bytes(f"artifact {version}".encode() * 100)
    (dist / f"iotex-node-{version}.manifest.json").write_text(json.dumps({"version": version, "protocols": list(protocols)}))
    return art


class FakeRollout:
    def __init__(self, tmp: Path, versions: dict[str, str | None]) -> None:
        self.versions = versions
        self.dir = tmp / "release-dir"
        self.dir.mkdir()
        self.runs: list[tuple[str, dict[str, Any]]] = []
        self.result = "passed"

    def running(self) -> dict[str, str | None]:
        return dict(self.versions)

    def release_dir(self) -> Path:
        return self.dir

    def run(self, runbook: str, params: dict[str, Any]) -> tuple[str, str, str | None]:
        self.runs.append((runbook, params))
        assert (self.dir / f"iotex-node-{params['version']}.tar.gz").is_file()  # fetched before the drill runs
        if self.result == "passed":
            self.versions = dict.fromkeys(self.versions, params["version"])
        return f"run-{len(self.runs)}", self.result, None if self.result == "passed" else "a delegate did not come back"


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def key() -> sr.PrivateKey:
    return sr.PrivateKey.generate()


def _policy(tree: Path, key: sr.PrivateKey, **kw: Any) -> policy_mod.UpdatePolicy:
    doc = {"channel": "stable", "source": str(tree), "trusted_keys": [key.public.text()],
           "windows": [{"days": "mon-fri", "hours": "09:00-17:00"}], **kw}  # fmt: skip
    return policy_mod.parse(doc)


def _watcher(tmp: Path, pol: policy_mod.UpdatePolicy, rollout: FakeRollout, clock: Clock, pages: FakePages) -> Watcher:
    return Watcher("lab", pol, rollout, tmp / "state", notify=pages, clock=clock)


def test_patch_rolls_inside_the_window_only(tmp_path: Path, key: sr.PrivateKey) -> None:
    tree = tmp_path / "channel"
    channel_mod.publish(tree, _artifact(tmp_path / "dist", "0.1.1"), key, channel="stable", kind="patch", now=NOW - 3600)
    rollout = FakeRollout(tmp_path, {"n1": "0.1.0", "n2": "0.1.0"})
    clock = Clock(NOW - 3 * 3600)  # 07:00: before the window
    w = _watcher(tmp_path, _policy(tree, key), rollout, clock, FakePages())
    res = w.tick()
    assert res.decision is not None and res.decision.action == "window" and "outside the allowed windows" in res.decision.reason
    assert rollout.runs == []
    clock.t = NOW
    res = w.tick()
    assert res.decision is not None and res.decision.action == "roll" and res.result == "passed"
    assert rollout.runs == [("hotfix-compatible", {"version": "0.1.1"})]
    assert w.tick().decision.action == "current"  # type: ignore[union-attr]
    assert [e["action"] for e in w.ledger.entries()] == ["window", "started", "rolled", "current"]
    assert w.ledger.entries()[2]["run_id"] == "run-1"


def test_hold_keeps_the_network_where_it_is(tmp_path: Path, key: sr.PrivateKey) -> None:
    tree = tmp_path / "channel"
    channel_mod.publish(tree, _artifact(tmp_path / "dist", "0.1.1"), key, channel="stable", kind="patch", now=NOW)
    rollout = FakeRollout(tmp_path, {"n1": "0.1.0"})
    w = _watcher(tmp_path, _policy(tree, key, hold="0.1.0"), rollout, Clock(NOW), FakePages())
    assert w.tick().decision.action == "hold"  # type: ignore[union-attr]
    assert rollout.runs == [] and not (rollout.dir / "iotex-node-0.1.1.tar.gz").exists()


def test_minor_waits_for_approval_then_rolls(tmp_path: Path, key: sr.PrivateKey) -> None:
    tree = tmp_path / "channel"
    channel_mod.publish(tree, _artifact(tmp_path / "dist", "0.2.0"), key, channel="stable", kind="minor", now=NOW)
    rollout, pages = FakeRollout(tmp_path, {"n1": "0.1.0"}), FakePages()
    w = _watcher(tmp_path, _policy(tree, key), rollout, Clock(NOW), pages)
    for _ in range(3):
        assert w.tick().decision.action == "approval"  # type: ignore[union-attr]
    assert rollout.runs == []
    # asked once: one change event and one page of low urgency (info), not one per tick
    assert [e["action"] for e in pages.events] == ["change", "trigger"]
    page = pages.events[1]
    assert page["severity"] == "info" and page["key"] == "iotex-ops/lab/release/0.2.0" and "approve 0.2.0" in json.dumps(page)
    w.ledger.approve("0.2.0", "alice", NOW)
    assert w.tick().result == "passed"
    assert rollout.runs == [("hotfix-compatible", {"version": "0.2.0"})]
    assert {"action": "resolve", "key": "iotex-ops/lab/release/0.2.0"} in pages.events


def test_protocol_change_runs_the_incompatible_hotfix_at_the_agreed_height(tmp_path: Path, key: sr.PrivateKey) -> None:
    tree = tmp_path / "channel"
    channel_mod.publish(tree, _artifact(tmp_path / "dist", "0.2.0", (1, 2)), key, channel="stable", kind="protocol", now=NOW)
    rollout = FakeRollout(tmp_path, {"n1": "0.1.0"})
    w = _watcher(tmp_path, _policy(tree, key), rollout, Clock(NOW), FakePages())
    assert w.tick().decision.action == "approval"  # type: ignore[union-attr]
    w.ledger.approve("0.2.0", "delegates", NOW, height=5000)
    w.tick()
    assert rollout.runs == [("hotfix-incompatible", {"version": "0.2.0", "height": 5000})]


def test_failed_rollout_is_not_retried_by_itself(tmp_path: Path, key: sr.PrivateKey) -> None:
    tree = tmp_path / "channel"
    channel_mod.publish(tree, _artifact(tmp_path / "dist", "0.1.1"), key, channel="stable", kind="patch", now=NOW)
    rollout = FakeRollout(tmp_path, {"n1": "0.1.0"})
    rollout.result = "failed"
    clock = Clock(NOW)
    w = _watcher(tmp_path, _policy(tree, key), rollout, clock, FakePages())
    assert w.tick().result == "failed"
    clock.t += 60
    assert w.tick().decision.action == "manual" and len(rollout.runs) == 1  # type: ignore[union-attr]
    rollout.result = "passed"
    w.ledger.approve("0.1.1", "bob", clock.t)
    clock.t += 60
    assert w.tick().result == "passed" and len(rollout.runs) == 2


def _refused(w: Watcher, rollout: FakeRollout, reason: str) -> None:
    res = w.tick()
    assert any(f"refused ({reason})" in r for r in res.refused), res.refused
    assert rollout.runs == [] and list(rollout.dir.iterdir()) == []


def test_channel_tampering_is_refused_by_name_and_nothing_runs(tmp_path: Path, key: sr.PrivateKey) -> None:
    tree = tmp_path / "channel"
    p = channel_mod.publish(tree, _artifact(tmp_path / "dist", "0.1.1"), key, channel="stable", kind="patch", now=NOW)
    rollout = FakeRollout(tmp_path, {"n1": "0.1.0"})
    pol = _policy(tree, key)
    # a tampered manifest (the kind raised to sneak a minor through as a patch, or the other way round)
    doc = json.loads(p.manifest.read_text())
    good = p.manifest.read_bytes()
    doc["signed"]["kind"] = "minor"
    p.manifest.write_text(json.dumps(doc))
    _refused(_watcher(tmp_path / "a", pol, rollout, Clock(NOW), FakePages()), rollout, "bad-signature")
    p.manifest.write_bytes(good)
    # a wrong key
    other = sr.PrivateKey.generate()
    _refused(_watcher(tmp_path / "b", _policy(tree, other), rollout, Clock(NOW), FakePages()), rollout, "unknown-key")
    # expired: the clock past the manifest's expiry
    _refused(_watcher(tmp_path / "c", pol, rollout, Clock(NOW + 31 * 86400), FakePages()), rollout, "expired")
    # a tampered artifact on the channel: refused before it reaches the release dir
    art = tree / "artifacts" / "iotex-node-0.1.1.tar.gz"
    data = bytearray(art.read_bytes())
    data[10] ^= 1
    os.chmod(art, 0o644)
    art.write_bytes(bytes(data))
    w = _watcher(tmp_path / "d", pol, rollout, Clock(NOW), FakePages())
    w.tick()
    assert rollout.runs == [] and not (rollout.dir / art.name).exists()
    assert "refused (checksum)" in w.ledger.entries()[-1]["reason"]


def test_replay_of_an_older_channel_is_refused(tmp_path: Path, key: sr.PrivateKey) -> None:
    tree = tmp_path / "channel"
    channel_mod.publish(tree, _artifact(tmp_path / "dist", "0.1.1"), key, channel="stable", kind="patch", now=NOW)
    old_index = (tree / "stable" / "index.json").read_bytes()
    channel_mod.publish(tree, _artifact(tmp_path / "dist", "0.1.2"), key, channel="stable", kind="patch", now=NOW)
    rollout = FakeRollout(tmp_path, {"n1": "0.1.1"})
    w = _watcher(tmp_path, _policy(tree, key, hold="0.1.1"), rollout, Clock(NOW), FakePages())
    assert w.tick().decision.version == "0.1.2"  # type: ignore[union-attr]  # seen (held): the floor is now sequence 2
    # the mirror serves the old index again (a rollback/freeze attack): validly signed, not expired, but older
    (tree / "stable" / "index.json").write_bytes(old_index)
    res = w.tick()
    assert res.decision is None and any("refused (replay)" in r and "sequence 1 is older than 2" in r for r in res.refused)
    assert rollout.runs == []


def test_policy_file_problems_are_named() -> None:
    with pytest.raises(policy_mod.PolicyError) as exc:
        policy_mod.parse({"channel": "Stable", "trusted_keys": ["rsa:abc"], "automatic": ["patch", "protocol"], "cadence": 1})
    text = str(exc.value)
    for needle in ("channel: 'Stable'", "source: required", "trusted_keys", "cadence: unknown field", "can only be `scheduled`"):
        assert needle in text, text


def test_cli_keygen_publish_and_channel_list(tmp_path: Path) -> None:
    runner = CliRunner()
    kf = tmp_path / "publisher.key"
    res = runner.invoke(main, ["release", "keygen", "--out", str(kf), "--json"])
    assert res.exit_code == 0, res.output
    pub = json.loads(res.stdout)["public_key"]
    assert stat.S_IMODE(kf.stat().st_mode) == 0o600 and kf.read_text().split(":")[1].strip() not in res.output
    art = _artifact(tmp_path / "dist", "0.1.1")
    tree = tmp_path / "channel"
    res = runner.invoke(main, ["release", "publish", str(art), "--to", str(tree), "--kind", "patch", "--key", str(kf), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["sequence"] == 1
    inv = tmp_path / "inv"
    inv.mkdir()
    (inv / "releases.yml").write_text(yaml.safe_dump({"source": str(tree), "trusted_keys": [pub]}))
    res = runner.invoke(main, ["release", "channel", "list", "--source", str(tree), "--trusted-key", pub, "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["manifests"]
    assert [(r["channel"], r["version"], r["status"]) for r in rows] == [("stable", "0.1.1", "ok")]
    other = sr.PrivateKey.generate().public.text()
    res = runner.invoke(main, ["release", "channel", "list", "--source", str(tree), "--trusted-key", other, "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["manifests"][0]["status"].startswith("refused (unknown-key)")
    res = runner.invoke(main, ["release", "channel", "list", "-i", str(inv)])
    assert res.exit_code == 0 and "0.1.1" in res.output
    # errors are one line, no traceback
    os.chmod(kf, 0o644)
    res = runner.invoke(main, ["release", "publish", str(art), "--to", str(tree), "--kind", "patch", "--key", str(kf)])
    assert res.exit_code == 2 and "readable by others" in res.output and "Traceback" not in res.output


class _Signals:
    def __init__(self) -> None:
        self.incidents: list[object] = []
        self.alerts: list[object] = []

    def open_incidents(self) -> list[object]:
        return self.incidents

    def firing_alerts(self) -> list[object]:
        return self.alerts


def test_the_scheduler_service_skips_a_release_tick_during_an_incident(tmp_path: Path, key: sr.PrivateKey) -> None:
    import threading

    from iotex_ops.releases import service

    tree = tmp_path / "channel"
    channel_mod.publish(tree, _artifact(tmp_path / "dist", "0.1.1"), key, channel="stable", kind="patch", now=NOW)
    rollout = FakeRollout(tmp_path, {"n1": "0.1.0"})
    w = _watcher(tmp_path, _policy(tree, key), rollout, Clock(NOW), FakePages())
    signals, said = _Signals(), []
    signals.incidents = ["DelegateDown node2"]
    stop = threading.Event()

    class OneTick:
        def tick(self) -> Any:
            stop.set()  # one tick, then the loop ends
            return w.tick()

    said_fn = said.append
    stop_after = threading.Timer(0.05, stop.set)
    stop_after.start()
    service.loop(OneTick(), stop, 0.01, signals, said_fn)
    assert rollout.runs == [] and said == ["releases: no rollout now: 1 open incident(s)"]
    stop.clear()
    signals.incidents = []
    service.loop(OneTick(), stop, 0.01, signals, said_fn)
    assert rollout.runs == [("hotfix-compatible", {"version": "0.1.1"})]
    assert service.blocked(None) is None


@pytest.mark.slow
def test_a_channel_served_over_http_is_read_and_verified_like_a_directory(tmp_path: Path, key: sr.PrivateKey) -> None:
    """The same tree behind a static HTTP server on 127.0.0.1: listed, verified, and its artifact fetched."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    tree = tmp_path / "channel"
    channel_mod.publish(tree, _artifact(tmp_path / "dist", "0.1.1"), key, channel="stable", kind="patch", now=NOW)

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *a: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tree)))
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        rows = channel_mod.listing(channel_mod.Source(url), ["stable"], {key.public.id: key.public}, NOW)
        assert [(r.version, r.status) for r in rows] == [("0.1.1", "ok")]
        rollout = FakeRollout(tmp_path, {"n1": "0.1.0"})
        w = Watcher("lab", _policy(tree, key, source=url), rollout, tmp_path / "state", clock=Clock(NOW))
        assert w.tick().result == "passed"
        assert (rollout.dir / "iotex-node-0.1.1.tar.gz").read_bytes() == (
            tree / "artifacts" / "iotex-node-0.1.1.tar.gz"
        ).read_bytes()
        with pytest.raises(channel_mod.ChannelError, match=r"channel index .*/candidate/index\.json"):
            channel_mod.Source(url).entries("candidate")
    finally:
        httpd.shutdown()
        httpd.server_close()
