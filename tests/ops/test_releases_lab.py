"""Releases on the shared local lab: publish 0.1.1 on the stable channel with a patch policy, and the watcher
rolls it inside the policy's window, one delegate at a time, with no missed slot, under load; with a hold on
0.1.0 nothing changes; a minor release waits for approval. The lab is left as found: back on 0.1.0, its
channel empty again (one compatible hotfix back, in `finally`).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from iotex_node import signed_release as sr
from iotex_ops import network
from iotex_ops.lab import lab as lab_mod
from iotex_ops.releases import channel as channel_mod
from iotex_ops.releases import policy as policy_mod
from iotex_ops.releases.edge import EngineRollout
from iotex_ops.releases.watcher import Watcher
from iotex_ops.runbook import Engine, loader
from iotex_ops.runbook import journal as journal_mod
from iotex_ops.runbook.store import RunStore
from iotex_ops.testing import FakePages
from iotex_ops.traffic import BackgroundLoad
from tests.ops.conftest import SharedLab

pytestmark = [
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="the lab needs the Debian prometheus package"),
    pytest.mark.network,
    pytest.mark.slow,
]


@pytest.fixture(scope="module")
def lab(shared_lab: SharedLab) -> Iterator[lab_mod.LabState]:
    st = shared_lab.get()
    yield st


def _versions(inventory: str) -> dict[str, str | None]:
    return EngineRollout(inventory, Path("/nonexistent")).running()


def _policy(st: lab_mod.LabState, **kw: Any) -> policy_mod.UpdatePolicy:
    base = policy_mod.load(Path(st.inventory).parent)
    now = datetime.now(UTC)
    # a window around now, so that the roll happens "within the policy's window" whatever the hour of the test
    start, end = (now - timedelta(hours=1)).strftime("%H:00"), (now + timedelta(hours=2)).strftime("%H:00")
    doc = {**base.as_dict(), "windows": [{"hours": f"{start}-{end}"}], "blackouts": [], **kw}
    return policy_mod.parse(doc)


def test_publish_patch_rolls_every_delegate_one_at_a_time_under_load(lab: lab_mod.LabState, tmp_path: Path) -> None:
    st = lab
    base = st.releases["base"]
    assert set(_versions(st.inventory).values()) == {base}, "the lab is not on its base release"
    key = sr.PrivateKey.load(Path(st.publisher_key))
    tree = Path(st.channel_dir)
    dist = Path(st.release_dir)
    state = tmp_path / "state"
    rollout = EngineRollout(st.inventory, state)
    pages = FakePages()
    # the delegates verify the signed manifest themselves too (node_release_trusted_keys: the publisher's key in
    # the inventory), on top of the watcher's verification on the controller
    inv_file = Path(st.inventory)
    inv_text = inv_file.read_text()
    inv_doc = yaml.safe_load(inv_text)
    inv_doc["all"]["vars"].update(node_release_trusted_keys=[key.public.text()], node_release_channel="stable")
    inv_file.write_text(yaml.safe_dump(inv_doc, sort_keys=False))
    try:
        # publish 0.1.1 (the lab's compatible release) as a patch on the stable channel
        t_publish = time.monotonic()
        channel_mod.publish(tree, dist / "iotex-node-0.1.1.tar.gz", key, channel="stable", kind="patch")

        # a hold on 0.1.0: nothing changes
        held = Watcher("lab", _policy(st, hold=base), rollout, state, notify=pages).tick()
        assert held.decision is not None and held.decision.action == "hold" and held.run_id is None
        assert set(_versions(st.inventory).values()) == {base}

        # the patch policy, under load: every delegate on 0.1.1, one at a time, no missed slot
        w = Watcher("lab", _policy(st), rollout, state, notify=pages)
        with BackgroundLoad([n.api_url for n in st.nodes], Path(st.accounts_file), tps=40, max_seconds=300) as load:
            res = w.tick()
            elapsed = time.monotonic() - t_publish
            assert load.stats.accepted > 0
        assert res.decision is not None and res.decision.action == "roll", res.as_dict()
        assert res.result == "passed", (res.as_dict(), rollout.last and rollout.last.error)
        assert set(_versions(st.inventory).values()) == {"0.1.1"}
        for n in st.nodes:  # each delegate's own replay floor: it verified the manifest before installing
            trust = json.loads((Path(n.host_dir) / "opt" / "iotex" / sr.TRUST_FILE).read_text())
            assert trust["channels"]["stable"]["version"] == "0.1.1", n.name
        measures = rollout.last.measures
        assert measures["missed_slots"] == 0, measures
        # one at a time: each delegate's upgrade step ends before the next one's begins
        evs = journal_mod.read(rollout.last.run_dir / "journal.jsonl")
        steps = [
            e
            for e in evs
            if e.get("step") == "upgrade" and (e["event"] == "step_start" or (e["event"] == "step_end" and "attempt" in e))
        ]
        hosts_in_order = [e.get("host") for e in steps]
        assert len(steps) == 2 * len(st.nodes) and all(
            steps[i]["event"] == "step_start"
            and steps[i + 1]["event"] == "step_end"
            and hosts_in_order[i] == hosts_in_order[i + 1]
            for i in range(0, len(steps), 2)
        ), hosts_in_order
        assert elapsed < 240, f"publish -> every delegate on 0.1.1 took {elapsed:.0f} s"
        actions = [e["action"] for e in w.ledger.entries()]
        assert actions[-2:] == ["started", "rolled"] and w.ledger.entries()[-1]["run_id"] == rollout.last.run_id
        assert str(RunStore(state).state(rollout.last.run_id).result) == "passed"  # in the run history, as any drill

        # a minor release waits for approval: a change event and a low-urgency page, nothing runs
        channel_mod.publish(tree, dist / "iotex-node-0.2.0.tar.gz", key, channel="stable", kind="minor")
        runs_before = RunStore(state).ids()
        minor = w.tick()
        assert minor.decision is not None and minor.decision.action == "approval" and minor.run_id is None
        assert [e["severity"] for e in pages.events if e["action"] == "trigger"] == ["info"]
        assert RunStore(state).ids() == runs_before and set(_versions(st.inventory).values()) == {"0.1.1"}
    finally:
        # leave the lab as found: its inventory, its channel empty, every delegate back on the base release
        inv_file.write_text(inv_text)
        for n in st.nodes:
            (Path(n.host_dir) / "opt" / "iotex" / sr.TRUST_FILE).unlink(missing_ok=True)
        for p in (tree / "stable", tree / "artifacts"):
            shutil.rmtree(p, ignore_errors=True)
        if set(_versions(st.inventory).values()) != {base}:
            with network.load(st.inventory) as net:
                back = Engine(RunStore(state), yes=True, report=False).run(
                    loader.find("hotfix-compatible"), net, {"version": base}
                )
            assert back.result == "passed", back.error
