"""The remediation runbooks (restart-node, resume-delegate, rebuild-node) on a real local lab, through the
engine as `iotex-ops alertd` runs them (yes=True), plus the host file transfer they rely on.

One lab for the module; each scenario breaks one node, runs its runbook and checks the node is back:
answering, in step with its peers and endorsing. The tests run in file order and each leaves the network
healthy for the next (a broken node is mended in `finally`, whatever the assertion).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from iotex_ops import network
from iotex_ops.errors import OpsError
from iotex_ops.hosts import HostError, LocalHost, SSHHost, copy_between
from iotex_ops.lab import lab as lab_mod
from iotex_ops.lab import ops_services
from iotex_ops.runbook import Check, CheckResult, Engine, ParamError, Runbook, RunResult, loader
from iotex_ops.runbook import journal as journal_mod
from iotex_ops.runbook.store import RunStore
from iotex_ops.testing import FakeHost
from tests.ops.conftest import SharedLab

F = TypeVar("F", bound=Callable[..., Any])


def lab_test(fn: F) -> F:
    """A test on the module's lab: slow, starts node processes, needs the Debian prometheus package."""
    for mark in (
        pytest.mark.skipif(shutil.which("prometheus") is None, reason="the lab needs the Debian prometheus package"),
        pytest.mark.network,
        pytest.mark.slow,
    ):
        fn = mark(fn)
    return fn


# -- files between hosts (no lab) ---------------------------------------------------------------------


def test_local_get_copies_a_file_from_the_host(tmp_path: Path) -> None:
    (tmp_path / "remote").write_bytes(b"\x00snapshot\xff")
    LocalHost("h").get(tmp_path / "remote", tmp_path / "local")
    assert (tmp_path / "local").read_bytes() == b"\x00snapshot\xff"
    with pytest.raises(HostError, match=r"cannot copy .*missing"):
        LocalHost("h").get(tmp_path / "missing", tmp_path / "x")


def test_copy_between_hosts_goes_through_the_controller_and_leaves_nothing_there(tmp_path: Path) -> None:
    a, b, staging = tmp_path / "a", tmp_path / "b", tmp_path / "staging"
    a.mkdir()
    b.mkdir()
    payload = os.urandom(300_000)
    (a / "snap.db").write_bytes(payload)
    src, dst = FakeHost("peer", root=a), FakeHost("target", root=b)  # not this machine, as far as copy_between knows
    copy_between(src, "snap.db", dst, "snap.db", staging)
    assert (b / "snap.db").read_bytes() == payload and (len(src.gets), len(dst.puts)) == (1, 1)
    assert list(staging.iterdir()) == []
    with pytest.raises(HostError, match="cannot copy"):
        copy_between(src, "missing.db", dst, "x.db", staging)
    assert list(staging.iterdir()) == [] and not (b / "x.db").exists()
    # two local hosts are this machine: one plain copy
    copy_between(LocalHost("l1"), a / "snap.db", LocalHost("l2"), b / "copy.db")
    assert (b / "copy.db").read_bytes() == payload


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and per-namespace sshd need root")
def test_ssh_get_and_copy_between_two_ssh_hosts(tmp_path: Path) -> None:
    from iotex_ops.lab.netns import NetnsHosts

    lab = NetnsHosts.create(2, tmp_path / "ns", prefix=f"rmd{os.getpid() % 10000}", subnet="10.245.0.0/16")
    try:
        h0, h1 = (SSHHost(h.name, h.address, known_hosts=lab.known_hosts, key_file=lab.client_key) for h in lab.hosts)
        with h0, h1:
            h0.run("head -c 200000 /dev/urandom > /root/snap.db")
            digest = h0.run("sha256sum < /root/snap.db").stdout.split()[0]
            h0.get("/root/snap.db", tmp_path / "got.db")
            assert _sha256(tmp_path / "got.db") == digest
            copy_between(h0, "/root/snap.db", h1, "/root/copy.db", tmp_path / "staging")
            assert h1.run("sha256sum < /root/copy.db").stdout.split()[0] == digest
            assert list((tmp_path / "staging").iterdir()) == []
            with pytest.raises(HostError, match="cannot copy"):
                h0.get("/root/missing.db", tmp_path / "x")
    finally:
        lab.destroy()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_standing_says_what_is_still_wrong() -> None:
    ok_chain = {"finalized_height": 50, "participating": True, "synced": True, "paused": False, "halted": None}
    peers = {"a": 51, "b": 50, "c": None}
    back = network.Standing("n1", ok_chain, peers, endorsed=50)
    assert (back.top, back.lag) == (51, 1) and back.problems(max_lag=3) == [] and back.problems(3, since=49) == []
    assert network.Standing("n1", None, peers).problems(3) == ["does not answer on its API"]
    lagging = network.Standing("n1", {**ok_chain, "finalized_height": 40}, peers, endorsed=None)
    text = "; ".join(lagging.problems(max_lag=3, since=45))
    assert "11 blocks behind its peers (51" in text and "nothing above height 45" in text and "no recent certificate" in text
    paused = network.Standing("n1", {**ok_chain, "paused": True, "participating": False}, peers)
    assert paused.stopped_by_operator == "paused" and paused.problems(3) == ["it is paused"]
    assert paused.back_but_stopped(3) == "paused"  # restart-node's restart worked: resuming is resume-delegate's
    assert network.Standing("n1", {**ok_chain, "finalized_height": 40, "paused": True}, peers).back_but_stopped(3) is None
    assert back.back_but_stopped(3) is None and network.Standing("n1", None, peers).back_but_stopped(3) is None
    halted = network.Standing("n1", {**ok_chain, "halted": "halted at 50: scheduled"}, peers)
    assert halted.stopped_by_operator == "halted (halted at 50: scheduled)"


# -- the runbooks on a lab ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(shared_lab: SharedLab) -> Iterator[lab_mod.LabState]:
    st = shared_lab.get()
    # the runbooks are tested alone: the lab's alertd would answer the same incidents and take the host's
    # lock (tests/ops/test_alerting_e2e.py tests them together); it is started again for the next module
    ops_services.stop_alertd(Path(st.root))
    try:
        yield st
    finally:
        ops_services.restart_alertd(st)


@pytest.fixture(scope="module")
def net(lab: lab_mod.LabState) -> Iterator[network.Network]:
    with network.load(lab.inventory) as n:
        yield n


def run(lab: lab_mod.LabState, state: Path, name: str | Runbook, report: bool = False, **params: Any) -> RunResult:
    rb = loader.find(name) if isinstance(name, str) else name
    with network.load(lab.inventory) as n:
        return Engine(RunStore(state), yes=True, report=report).run(rb, n, params)


def events(res: RunResult, kind: str | None = None) -> list[dict[str, Any]]:
    evs = journal_mod.read(res.run_dir / "journal.jsonl")
    return [e for e in evs if kind is None or e["event"] == kind or e.get("name") == kind]


def marks(res: RunResult, name: str) -> list[dict[str, Any]]:
    return [e for e in events(res, "mark") if e.get("name") == name]


def wait_healthy(net: network.Network, name: str, timeout: float = 90) -> network.Standing:
    deadline = time.monotonic() + timeout
    while True:
        s = net.standing(name)
        if not s.problems(max_lag=2) or time.monotonic() > deadline:
            assert not s.problems(max_lag=2), f"{name} not healthy: {s.problems(max_lag=2)}"
            return s
        time.sleep(0.25)


def pids(lab: lab_mod.LabState) -> dict[str, int | None]:
    return {n.name: lab.node_pid(n.name) for n in lab.nodes}


@contextlib.contextmanager
def frozen(pid: int) -> Iterator[None]:
    """SIGSTOP a process; SIGCONT it afterwards if it still lives, so no stopped process outlives the test."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


@lab_test
@pytest.mark.parametrize("runbook", ["restart-node", "resume-delegate", "rebuild-node"])
@pytest.mark.parametrize("host", ["controller", "node9"])
def test_a_host_that_is_not_a_delegate_is_refused_before_anything_runs(
    lab: lab_mod.LabState, tmp_path: Path, runbook: str, host: str
) -> None:
    before = pids(lab)
    with pytest.raises(ParamError) as exc:
        run(lab, tmp_path, runbook, host=host)
    assert f"{host!r} is not a delegate" in str(exc.value) and "node0, node1, node2, node3" in str(exc.value)
    assert not RunStore(tmp_path).ids()
    assert pids(lab) == before


@lab_test
def test_rebuild_refuses_a_bad_peer(lab: lab_mod.LabState, tmp_path: Path) -> None:
    with pytest.raises(ParamError, match="another delegate than node1"):
        run(lab, tmp_path, "rebuild-node", host="node1", peer="node1")
    with pytest.raises(ParamError, match="peer 'controller' is not a delegate"):
        run(lab, tmp_path, "rebuild-node", host="node1", peer="controller")
    with pytest.raises(ParamError, match="parameter host is required"):
        run(lab, tmp_path, "restart-node")


@lab_test
def test_restart_leaves_a_healthy_node_alone(lab: lab_mod.LabState, net: network.Network, tmp_path: Path) -> None:
    before = lab.node_pid("node1")
    res = run(lab, tmp_path, "restart-node", host="node1")
    assert res.result == "passed", res.error
    assert res.measures["condition"] == "healthy" and lab.node_pid("node1") == before
    assert [e["step"] for e in events(res, "step_skip")] == ["stop-hard", "start"]
    step = next(e for e in events(res, "step_end") if e["step"] == "diagnose")
    assert any("already healthy" in line for line in step["output_tail"])


@lab_test
def test_restart_brings_back_a_killed_node_within_the_budget(lab: lab_mod.LabState, net: network.Network, tmp_path: Path) -> None:
    pid = lab.node_pid("node2")
    assert pid is not None
    t0 = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    res = run(lab, tmp_path, "restart-node", report=True, host="node2")
    took = time.monotonic() - t0
    assert res.result == "passed", res.error
    print(f"kill -9 -> restart-node passed in {took:.2f}s (diagnosis: {res.measures['condition']})")
    assert took < 15  # the alert-to-fixed budget, without the alert's own ~3 s
    (diag,) = marks(res, "diagnosis")
    assert diag["condition"] in ("crashed", "starting") and diag["answering"] is False  # supervisord may restart it first
    assert lab.node_pid("node2") not in (None, pid)
    s = net.standing("node2")
    assert s.lag is not None and s.lag <= 3 and s.endorsed is not None


@lab_test
def test_restart_kills_a_frozen_node_and_a_resumed_run_finishes_the_job(
    lab: lab_mod.LabState, net: network.Network, tmp_path: Path
) -> None:
    rb = loader.find("restart-node")

    def engine_dies(ctx: object) -> None:
        raise SystemExit("the remediation service is killed here")

    dying = dataclasses.replace(
        rb, steps=tuple(dataclasses.replace(s, action=engine_dies) if s.name == "start" else s for s in rb.steps)
    )
    pid = lab.node_pid("node3")
    assert pid is not None
    t0 = time.monotonic()
    with frozen(pid):
        with pytest.raises(SystemExit):
            run(lab, tmp_path, dying, host="node3")
        (run_id,) = RunStore(tmp_path).ids()
        res = Engine(RunStore(tmp_path), yes=True, report=False).resume(run_id, loader.find)
    took = time.monotonic() - t0
    assert res.result == "passed", res.error
    print(f"SIGSTOP -> restart-node, engine killed after stop-hard and resumed: passed in {took:.2f}s")
    assert took < 15
    (diag,) = marks(res, "diagnosis")
    assert diag["condition"] == "frozen" and diag["alive"] is True and diag["service"]["process"].startswith("T")
    assert [m["pid"] for m in marks(res, "killed")] == [pid]  # killed once, by the first run
    skipped = [e["step"] for e in events(res, "step_skip") if e["reason"] == "completed before the resume"]
    assert skipped == ["diagnose", "stop-hard"]
    assert [e["step"] for e in events(res, "step_end") if e["ok"] and e["step"] == "start"] == ["start"]
    assert lab.node_pid("node3") not in (None, pid)


@lab_test
def test_resume_delegate_resumes_a_paused_delegate_and_is_idempotent(
    lab: lab_mod.LabState, net: network.Network, tmp_path: Path
) -> None:
    d = net.delegate("node3")
    d.admin("pause")
    try:
        res = run(lab, tmp_path, "resume-delegate", host="node3")
        assert res.result == "passed", res.error
        assert res.measures["resumed"] is True and marks(res, "resumed")
        assert d.chain()["paused"] is False
        again = run(lab, tmp_path, "resume-delegate", host="node3")
        assert again.result == "passed" and again.measures["resumed"] is False and marks(again, "not_paused")
    finally:
        d.admin("resume")


@lab_test
def test_a_halted_delegate_is_not_resumed_nor_restarted(lab: lab_mod.LabState, net: network.Network, tmp_path: Path) -> None:
    d = net.delegate("node3")
    try:
        d.admin("halt-at", "+1")  # resolved by the node: the chain cannot pass it before the command lands
        deadline = time.monotonic() + 60
        while not d.chain()["halted"]:
            assert time.monotonic() < deadline, "node3 did not halt"
            time.sleep(0.1)
        pid = lab.node_pid("node3")
        with pytest.raises(ParamError, match=r"halted .* a person must make"):
            run(lab, tmp_path, "resume-delegate", host="node3")
        res = run(lab, tmp_path, "restart-node", host="node3")
        assert res.result == "failed" and "is halted" in str(res.error) and "a person must decide" in str(res.error)
        assert d.chain()["halted"] and lab.node_pid("node3") == pid
    finally:
        d.admin("halt-at", "--clear")
    wait_healthy(net, "node3")


@lab_test
def test_rebuild_replaces_a_corrupted_database(lab: lab_mod.LabState, net: network.Network, tmp_path: Path) -> None:
    d = net.delegate("node2")
    d.service("stop")
    db = Path(d.home) / "data" / "chain.db"
    with open(db, "r+b") as fh:
        fh.write(os.urandom(4096))  # the SQLite header and first pages: "file is not a database"
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    try:
        res = run(lab, tmp_path, "rebuild-node", host="node2")
        assert res.result == "passed", res.error
    finally:
        with contextlib.suppress(OpsError):  # started already when the rebuild passed
            d.service("start")
    m = res.measures
    assert m["rebuilt"] and m["forced"] is True and m["peer"] in ("node0", "node1", "node3")
    assert marks(res, "database_unreadable") and marks(res, "restored")[0]["kept_meta"] == []
    start = next(e for e in events(res, "step_end") if e["step"] == "start")
    assert any("cannot sign a height twice" in line for line in start["output_tail"])
    assert any(p.name.startswith("chain-unreadable-") for p in (Path(d.home) / "backups").iterdir())
    # no snapshot file left on either host
    for h in ("node2", m["peer"]):
        assert not list((Path(net.delegate(h).home) / "snapshots").iterdir())
    wait_healthy(net, "node2")


@lab_test
def test_rebuild_puts_the_previous_database_back_when_a_later_step_fails(
    lab: lab_mod.LabState, net: network.Network, tmp_path: Path
) -> None:
    rb = loader.find("rebuild-node")
    never = Check("an injected failure", lambda ctx: CheckResult(False, None, "injected"), timeout=0.3, interval=0.1)
    failing = dataclasses.replace(
        rb, steps=tuple(dataclasses.replace(s, verify=(never,)) if s.name == "verify" else s for s in rb.steps)
    )
    pid = lab.node_pid("node1")
    assert pid is not None
    with frozen(pid):  # frozen: rebuilt (not healthy), and running before the run, so started again after
        res = run(lab, tmp_path, failing, host="node1")
    assert res.result == "failed" and "injected" in str(res.error) and res.rollback_errors == []
    restored = marks(res, "restored")[0]
    assert restored["forced"] is False and "privval" in restored["kept_meta"]
    (back,) = marks(res, "database_put_back")
    assert back["backup"] == restored["previous_db"] and "/backups/chain-" in back["backup"]
    stop = next(e for e in events(res, "step_end") if e["step"] == "stop")
    assert stop["duration_s"] < 10  # a kill, not a stop timeout
    assert {e["step"] for e in events(res, "rollback_end") if e["ok"]} == {"restore", "stop", "snapshot"}
    for h in ("node1", marks(res, "peer_chosen")[0]["peer"]):
        assert not list((Path(net.delegate(h).home) / "snapshots").iterdir())
    assert lab.node_pid("node1") not in (None, pid)
    wait_healthy(net, "node1")
