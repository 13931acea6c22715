"""`iotex-ops lab up` refusals and pieces that need no lab (the release cache, a lab left for the bootstrap
drill). The labs themselves are brought up through the CLI and checked (status, Prometheus, inventory, exec,
no secrets, `lab down` leaves nothing) by the modules that share them: tests/ops/lab_checks.py, used by
test_alerting_e2e/test_drills (local) and test_drills_netns."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from iotex_ops.cli import main
from iotex_ops.lab import lab as lab_mod
from iotex_ops.rehearsal import DRILLS, lab_needs_chain


def test_a_lab_dir_too_long_for_unix_sockets_is_refused_before_anything_starts(tmp_path: Path) -> None:
    root = tmp_path / ("x" * 80)
    res = CliRunner().invoke(main, ["lab", "up", "--dir", str(root)])
    assert res.exit_code == 2 and "too long" in res.output and not root.exists()


def test_releases_are_built_once_per_source_and_reused_by_every_lab(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    releases = {"base": ("0.1.0", (1,)), "incompatible": ("0.2.0", (1, 2))}
    first, second = tmp_path / "dist1", tmp_path / "dist2"
    first.mkdir()
    second.mkdir()
    assert lab_mod.build_releases(first, releases, cache) == {"0.1.0": True, "0.2.0": True}
    assert lab_mod.build_releases(second, releases, cache) == {"0.1.0": False, "0.2.0": False}
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir()) and "iotex-node-0.2.0.tar.gz" in names and len(names) == 6
    for name in names:  # the same files: one copy on disk, linked into each lab
        assert (first / name).stat().st_ino == (second / name).stat().st_ino
    sha = (second / "iotex-node-0.2.0.tar.gz.sha256").read_text().split()[0]
    assert hashlib.sha256((second / "iotex-node-0.2.0.tar.gz").read_bytes()).hexdigest() == sha
    # another version or other protocols are another release, built when first asked for
    third = tmp_path / "dist3"
    third.mkdir()
    assert lab_mod.build_releases(third, {"x": ("0.2.0", (1,))}, cache) == {"0.2.0": True}
    assert lab_mod.release_key("0.2.0", (1,)) != lab_mod.release_key("0.2.0", (1, 2))
    assert lab_mod.release_key("0.2.0", (1,)).split("-")[0] == lab_mod.release_key("0.1.0", (1,)).split("-")[0]


def test_the_release_cache_is_where_the_environment_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOTEX_OPS_CACHE_DIR", str(tmp_path / "c"))
    assert lab_mod.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("IOTEX_OPS_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert lab_mod.cache_dir() == tmp_path / "xdg" / "iotex-ops"


def _state(tmp_path: Path, chain_started: bool) -> lab_mod.LabState:
    mon = tmp_path / "mon"
    mon.mkdir(exist_ok=True)
    node = lab_mod.LabNode("node0", "127.0.0.1", "http://127.0.0.1:1", str(tmp_path / "home"), str(tmp_path))
    return lab_mod.LabState(
        mode="local", root=str(tmp_path), delegates=1, block_interval_ms=1000, inventory="", nodes=[node],
        prometheus_url="http://127.0.0.1:2", alertmanager_url="http://127.0.0.1:3", monitoring_dir=str(mon),
        created=0.0, chain_started=chain_started,
    )  # fmt: skip


def test_a_lab_left_for_the_bootstrap_drill_is_up_while_its_monitoring_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lab_mod, "_answering", lambda url: False)  # no node answers: none was started
    waiting = _state(tmp_path, chain_started=False)
    assert not lab_mod.is_up(waiting)  # nothing runs at all
    (Path(waiting.monitoring_dir) / "prometheus.pid").write_text(f"{os.getpid()}\n")
    assert lab_mod.is_up(waiting)
    assert not lab_mod.is_up(_state(tmp_path, chain_started=True))  # a lab with a chain is up when a node is
    doc = _state(tmp_path, chain_started=False).to_json()
    assert lab_mod.LabState.from_json(dict(doc)).chain_started is False
    doc.pop("chain_started")  # a lab.json written before the field: its chain was started by `up`
    assert lab_mod.LabState.from_json(doc).chain_started is True


def test_a_rehearsal_that_starts_with_bootstrap_gets_a_lab_without_a_chain() -> None:
    assert not lab_needs_chain(DRILLS) and DRILLS[0] == "bootstrap"
    assert lab_needs_chain(("first-aid", "bootstrap")) and lab_needs_chain(())


def test_the_netns_prefix_and_subnet_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IOTEX_OPS_NETNS_PREFIX", raising=False)
    monkeypatch.delenv("IOTEX_OPS_NETNS_SUBNET", raising=False)
    assert (lab_mod.netns_prefix(), lab_mod.netns_subnet()) == ("ioxlab", "10.247.0.0/16")
    monkeypatch.setenv("IOTEX_OPS_NETNS_PREFIX", "ioxpt")
    monkeypatch.setenv("IOTEX_OPS_NETNS_SUBNET", "10.246.0.0/16")
    assert (lab_mod.netns_prefix(), lab_mod.netns_subnet()) == ("ioxpt", "10.246.0.0/16")
    for bad in ("iox-pt", "waytoolongprefix"):
        monkeypatch.setenv("IOTEX_OPS_NETNS_PREFIX", bad)
        with pytest.raises(lab_mod.LabError, match="IOTEX_OPS_NETNS_PREFIX"):
            lab_mod.netns_prefix()
    for bad in ("10.246.0.0/33", "8.8.0.0/16", "10.246.0.0/28", "nope"):
        monkeypatch.setenv("IOTEX_OPS_NETNS_SUBNET", bad)
        with pytest.raises(lab_mod.LabError, match="IOTEX_OPS_NETNS_SUBNET"):
            lab_mod.netns_subnet()


def test_a_netns_standby_gets_the_namespace_host_after_the_delegates(tmp_path: Path) -> None:
    from iotex_ops.lab.netns import NetnsHost

    delegate = {
        "ansible_host": "10.246.0.5", "ansible_port": 22, "ansible_user": "root", "api_proxy_enabled": True,
        "api_proxy_port": lab_mod.NETNS_PROXY_PORT, "node_p2p_port": lab_mod.NETNS_P2P_PORT,
        "node_api_port": lab_mod.NETNS_API_PORT, "node_keystore_src": "/k/keystore.json", "delegate_name": "node3",
    }  # fmt: skip
    inv_doc: dict = {"all": {"vars": {}, "children": {"delegates": {"hosts": {"node3": delegate}}}}}
    spare = NetnsHost("ioxpt4", "10.246.0.6", 22, "root", "ioxpt4", tmp_path / "ioxpt4")
    node = lab_mod._add_standby_vars(inv_doc, tmp_path, tmp_path / "testnet", "node3", spare)
    hv = inv_doc["all"]["children"]["standbys"]["hosts"]["node3-standby"]
    assert (node.name, node.host, node.standby_of) == ("node3-standby", "10.246.0.6", "node3")
    assert node.api_url == f"http://10.246.0.6:{lab_mod.NETNS_PROXY_PORT}"  # behind its own proxy, as the delegates
    assert (hv["node_p2p_port"], hv["node_api_port"]) == (lab_mod.NETNS_P2P_PORT, lab_mod.NETNS_API_PORT)
    assert hv["node_role"] == "standby" and hv["node_keystore_src"] == "/k/keystore.json"  # the delegate's key
    assert "ansible_python_interpreter" not in hv  # the lab's, as for the delegates (no local per-host interpreter)
    assert (tmp_path / "testnet" / "node3-standby" / "node_key.json").stat().st_mode & 0o777 == 0o600


def test_adding_a_standby_to_a_running_netns_lab_says_how_to_get_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = lab_mod.LabState("netns", str(tmp_path), 4, 1000, "", [], "", "", "", 0.0)
    monkeypatch.setattr(lab_mod, "load_state", lambda root=None: state)
    monkeypatch.setattr(lab_mod, "is_up", lambda st: True)
    with pytest.raises(lab_mod.LabError, match="lab up --hosts netns --standby node3"):
        lab_mod.add_standby("node3", tmp_path)


def test_the_receivers_files_are_known_before_it_starts(tmp_path: Path) -> None:
    """lab up names the receiver's URL, CA and routing key in the inventory while it starts: the same as the
    receiver's own (iotex_ops.paging.receiver)."""
    from iotex_ops.lab import ops_services
    from iotex_ops.paging.receiver import Receiver

    r = Receiver(tmp_path / "pager", port=18443)
    assert ops_services.receiver_info(tmp_path, 18443) == {
        "url": r.url,
        "ca_file": str(r.ca_file),
        "routing_key_file": str(r.routing_key_file),
    }


def test_the_first_block_is_watched_on_the_nodes_own_apis_and_the_watch_ends_when_told(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    proxied = {"node_api_port": 14014, "api_proxy_enabled": True, "api_proxy_port": 14080}
    hosts = {f"node{i}": {"ansible_host": f"10.9.0.{i + 2}", **proxied} for i in range(2)}
    inv = {"all": {"children": {"delegates": {"hosts": hosts}}}}
    urls = lab_mod._node_api_urls(inv)
    assert urls == ["http://10.9.0.2:14014", "http://10.9.0.3:14014"]  # the nodes, not their proxy
    heights = {u: iter([0, 0, 1, 1, 1]) for u in urls}
    heights[urls[1]] = iter([0, 0, 0, 0, 1, 1])
    asked: list[str] = []

    class Client:
        def __init__(self, url: str) -> None:
            self.url = url

        def try_chain(self, timeout: float) -> object:
            asked.append(self.url)
            h = next(heights[self.url])
            return type("Chain", (), {"finalized_height": h})() if h else None

    monkeypatch.setattr(lab_mod, "NodeClient", Client)
    # done only once every node has a finalized block: the slower one decides
    assert lab_mod._wait_first_block(urls, 10.0, tmp_path) is True
    assert asked.count(urls[1]) == 5
    # told to stop (node.yml failed): it returns at once, without an error
    stop = lab_mod.threading.Event()
    stop.set()
    heights = {u: iter([0]) for u in urls}
    assert lab_mod._wait_first_block(urls, 10.0, tmp_path, stop) is False
    # no block in time: an error naming where the node logs are
    heights = {u: iter([0] * 1000) for u in urls}
    with pytest.raises(lab_mod.LabError, match=f"no block finalized on every node within 0s.*{tmp_path}"):
        lab_mod._wait_first_block(urls, 0.25, tmp_path)
