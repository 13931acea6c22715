"""The node role's own modules (playbooks/roles/iotex/library): their logic in-process, no Ansible run, no
process or socket (fakes for `iotex-node init`, supervisord and the API port)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

LIBRARY = Path(__file__).resolve().parents[2] / "playbooks" / "roles" / "iotex" / "library"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_iotex_lib_{name}", LIBRARY / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


home_mod = _load("iotex_home")
sup_mod = _load("iotex_supervisord")
rel_mod = _load("iotex_release_state")


# iotex_home's whole result for a home that is already as asked (the module's contract, spelled out here)
NOTHING_CHANGED = {
    "changed": False,
    "directories": [],
    "files": [],
    "generated": [],
    "database_initialized": False,
    "database_requested": False,
}


def _mode(p: Path) -> int:
    return p.stat().st_mode & 0o7777


# --- iotex_home ------------------------------------------------------------------------------------------


class FakeInit:
    def __init__(self, rc: int = 0) -> None:
        self.calls: list[list[str]] = []
        self.rc = rc

    def __call__(self, argv: list[str], cwd: str, env: dict[str, str]) -> tuple[int, str, str]:
        self.calls.append(argv)
        assert Path(cwd, "genesis.json").exists()  # the files are written before init runs
        assert env["IOTEX_PYTHON"] == "/py"
        if self.rc:
            return self.rc, "", "bad password"
        stage_home = Path(argv[argv.index("--home") + 1])
        (stage_home / "data").mkdir(parents=True)
        (stage_home / "data" / "chain.db").write_text("db")
        (stage_home / "keystore.json").write_text("copy")
        return 0, "", ""


def _params(root: Path) -> dict[str, Any]:
    home = root / "host" / "node"
    return {
        "directories": [
            {"path": str(root / "host"), "mode": "0755"},
            {"path": str(home), "mode": "0700"},
            {"path": str(home / "data"), "mode": 0o700},
        ],
        "files": [
            {"dest": str(home / "config.toml"), "content": "[node]\nname = 'n0'\n", "mode": "0644"},
            {"dest": str(home / "genesis.json"), "content": "{}\n", "mode": "0644"},
            {"dest": str(home / "keystore.pass"), "content": "s3cret\n", "mode": "0600"},
        ],
        "generate": [{"dest": str(home / "admin.token"), "mode": "0600"}],
        "init": {"home": str(home), "database": "data/chain.db", "node_bin": "/bin/iotex-node", "name": "n0", "python": "/py"},
    }


def test_home_is_made_once_then_a_second_run_changes_nothing(tmp_path: Path) -> None:
    init = FakeInit()
    r = home_mod.converge(_params(tmp_path), run=init)
    home = tmp_path / "host" / "node"
    assert r["changed"] and r["database_initialized"] and len(r["directories"]) == 3 and len(r["files"]) == 3
    assert r["generated"] == [str(home / "admin.token")]
    assert _mode(home) == 0o700 and _mode(tmp_path / "host") == 0o755
    assert (home / "keystore.pass").read_text() == "s3cret\n" and _mode(home / "keystore.pass") == 0o600
    assert _mode(home / "config.toml") == 0o644 and _mode(home / "admin.token") == 0o600
    token = (home / "admin.token").read_text()
    assert len(token.strip()) >= 40
    assert (home / "data" / "chain.db").read_text() == "db"
    assert [p.name for p in tmp_path.joinpath("host").iterdir() if p.name.startswith(".init-")] == []  # stage removed
    assert not [p for p in home.iterdir() if p.name.startswith(".iotex-home-")]  # no temporary file left
    assert init.calls[0][:2] == ["/bin/iotex-node", "init"] and "--name" in init.calls[0]

    again = home_mod.converge(_params(tmp_path), run=init)
    assert again == NOTHING_CHANGED
    assert len(init.calls) == 1 and (home / "admin.token").read_text() == token  # generated once, kept


def test_only_what_differs_is_written_and_reported(tmp_path: Path) -> None:
    home_mod.converge(_params(tmp_path), run=FakeInit())
    home = tmp_path / "host" / "node"
    params = _params(tmp_path)
    params["files"][0]["content"] = "[node]\nname = 'n1'\n"
    (home / "genesis.json").chmod(0o666)
    ino = (home / "keystore.pass").stat().st_ino
    r = home_mod.converge(params, run=FakeInit())
    assert r["changed"] and r["files"] == [str(home / "config.toml"), str(home / "genesis.json")]
    assert r["directories"] == [] and not r["database_initialized"]
    assert (home / "config.toml").read_text() == "[node]\nname = 'n1'\n" and _mode(home / "genesis.json") == 0o644
    assert (home / "keystore.pass").stat().st_ino == ino  # untouched


def test_check_mode_reports_the_change_and_makes_none(tmp_path: Path) -> None:
    init = FakeInit()
    r = home_mod.converge(_params(tmp_path), check=True, run=init)
    assert r["changed"] and r["database_initialized"] and len(r["files"]) == 3 and len(r["generated"]) == 1
    assert not (tmp_path / "host").exists() and init.calls == []

    home_mod.converge(_params(tmp_path), run=init)
    params = _params(tmp_path)
    params["files"][2]["content"] = "other\n"
    r = home_mod.converge(params, check=True, run=init)
    home = tmp_path / "host" / "node"
    assert r["changed"] and r["files"] == [str(home / "keystore.pass")]
    assert (home / "keystore.pass").read_text() == "s3cret\n"
    assert home_mod.converge(_params(tmp_path), check=True, run=init)["changed"] is False


def test_a_failed_init_says_so_and_leaves_no_stage_nor_database(tmp_path: Path) -> None:
    with pytest.raises(home_mod.HomeError, match=r"init failed \(exit 2\): bad password"):
        home_mod.converge(_params(tmp_path), run=FakeInit(rc=2))
    assert not (tmp_path / "host" / "node" / "data" / "chain.db").exists()
    assert not [p for p in (tmp_path / "host").iterdir() if p.name.startswith(".init-")]


def _release_with_requests(root: Path) -> str:
    """A release laid out as installed (ROOT/current -> releases/V) whose node reads init.request."""
    rel = root / "opt" / "releases" / "1.0.0"
    (rel / "bin").mkdir(parents=True)
    (rel / "lib" / "iotex_node").mkdir(parents=True)
    (rel / "lib" / "iotex_node" / "init_request.py").write_text("")
    (rel / "bin" / "iotex-node").write_text("#!/bin/sh\n")
    (root / "opt" / "current").symlink_to("releases/1.0.0")
    return str(root / "opt" / "current" / "bin" / "iotex-node")


def test_a_release_that_reads_requests_gets_one_bound_to_the_genesis_and_no_init_process(tmp_path: Path) -> None:
    import hashlib

    init = FakeInit()
    params = _params(tmp_path)
    params["init"]["node_bin"] = _release_with_requests(tmp_path)
    home = tmp_path / "host" / "node"
    assert home_mod.converge(params, check=True, run=init)["database_requested"] is True
    assert not home.exists()
    r = home_mod.converge(params, run=init)
    assert r["changed"] and r["database_requested"] and not r["database_initialized"] and init.calls == []
    request = json.loads((home / "init.request").read_text())
    assert request == {"genesis_sha256": hashlib.sha256(b"{}\n").hexdigest()} and _mode(home / "init.request") == 0o600
    assert not (home / "data" / "chain.db").exists()  # the node's first start makes it
    # a second run before the node started: the same request, nothing changed
    assert home_mod.converge(params, run=init)["changed"] is False
    # a new genesis before the start: the request follows it
    params["files"][1]["content"] = '{"chain_id": 2}\n'
    r = home_mod.converge(params, run=init)
    assert r["database_requested"] and json.loads((home / "init.request").read_text())["genesis_sha256"] == (
        hashlib.sha256(b'{"chain_id": 2}\n').hexdigest()
    )
    # once the database exists (the node consumed the request), no request is made
    (home / "init.request").unlink()
    (home / "data" / "chain.db").write_text("db")
    assert home_mod.converge(params, run=init) == NOTHING_CHANGED


def test_a_file_where_a_directory_belongs_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("")
    with pytest.raises(home_mod.HomeError, match="not a directory"):
        home_mod.converge({"directories": [{"path": str(tmp_path / "x"), "mode": "0755"}]})
    with pytest.raises(home_mod.HomeError, match="octal"):
        home_mod.converge({"directories": [{"path": str(tmp_path / "y"), "mode": "rwx"}]})


def test_owner_and_group_are_set_when_given(tmp_path: Path) -> None:
    import grp
    import pwd

    me = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    r = home_mod.converge({"directories": [{"path": str(tmp_path / "d"), "mode": "0750"}], "owner": me, "group": group})
    assert r["changed"] and (tmp_path / "d").stat().st_uid == os.getuid()
    with pytest.raises(home_mod.HomeError, match="no such user"):
        home_mod.converge({"directories": [], "owner": "no-such-user-iotex"})


# --- iotex_supervisord -----------------------------------------------------------------------------------


class FakeSupervisor:
    """supervisord as the module sees it: running or not, the program's state, the calls made."""

    def __init__(self, running: bool = True, state: str = "RUNNING", after_start: str = "STARTING") -> None:
        self.running = running
        self.program = state
        self.after_start = after_start
        self.calls: list[str] = []

    def ping(self) -> bool:
        return self.running

    def state(self, name: str) -> str:
        return self.program

    def update(self) -> None:
        self.calls.append("update")

    def start(self, name: str) -> None:
        self.calls.append("start")
        self.program = self.after_start

    def stop(self, name: str) -> None:
        self.calls.append("stop")
        self.program = "STOPPED"

    def tail(self, name: str, length: int) -> str:
        return self.log[-length:]

    log = ""


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def _sup_params(tmp_path: Path, **kw: Any) -> dict[str, Any]:
    return {
        "name": "iotex-node",
        "config": str(tmp_path / "supervisord.conf"),
        "content": "[program:iotex-node]\n",
        "socket": str(tmp_path / "supervisor.sock"),
        "supervisord_bin": "/bin/supervisord",
        "state": "started",
        "restart": False,
        "wait_host": "127.0.0.1",
        "wait_port": 14014,
        "wait_timeout": 5,
        **kw,
    }


def _converge(params: dict[str, Any], sup: FakeSupervisor, check: bool = False, port: Any = lambda h, p: True) -> dict[str, Any]:
    clock = Clock()
    started: list[str] = []

    def start_supervisord(binary: str, config: str) -> None:
        started.append(binary)
        sup.running = True
        sup.program = "STOPPED"

    r = sup_mod.converge(
        params, check=check, sup=sup, start_supervisord=start_supervisord, port_open=port, clock=clock, sleep=clock.sleep
    )
    r["_supervisord_runs"] = started
    return dict(r)


def test_fresh_host_writes_config_starts_supervisord_then_the_node_and_waits_for_its_port(tmp_path: Path) -> None:
    sup = FakeSupervisor(running=False)
    opened = iter([False, False, True])
    r = _converge(_sup_params(tmp_path), sup, port=lambda h, p: next(opened))
    assert r["changed"] and r["config_changed"] and r["supervisord_started"] and r["action"] == "start"
    assert r["_supervisord_runs"] == ["/bin/supervisord"] and sup.calls == ["start"]
    assert (tmp_path / "supervisord.conf").read_text() == "[program:iotex-node]\n"
    assert _mode(tmp_path / "supervisord.conf") == 0o600


def test_a_start_whose_wait_comes_later_does_not_wait(tmp_path: Path) -> None:
    sup = FakeSupervisor(running=False, after_start="STARTING")
    asked: list[int] = []
    r = _converge(_sup_params(tmp_path, wait=False), sup, port=lambda h, p: asked.append(p) or False)
    # started, and back at once: the port is never asked (it would time out here: nothing ever listens)
    assert r["action"] == "start" and sup.calls == ["start"] and asked == []
    with pytest.raises(sup_mod.SupervisordError, match=r"did not answer on 127\.0\.0\.1:14014"):
        _converge(_sup_params(tmp_path), FakeSupervisor(running=False, after_start="STARTING"), port=lambda h, p: False)


def test_converged_host_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "supervisord.conf").write_text("[program:iotex-node]\n")
    (tmp_path / "supervisord.conf").chmod(0o600)
    sup = FakeSupervisor(running=True, state="RUNNING")
    r = _converge(_sup_params(tmp_path), sup)
    assert not r["changed"] and r["action"] == "" and sup.calls == [] and r["node_state"] == "RUNNING"


def test_changed_release_or_config_restarts_a_running_node_and_a_new_config_is_applied(tmp_path: Path) -> None:
    (tmp_path / "supervisord.conf").write_text("old")
    sup = FakeSupervisor(running=True, state="RUNNING")
    r = _converge(_sup_params(tmp_path, restart=True), sup)
    assert r["changed"] and r["action"] == "restart" and sup.calls == ["update", "stop", "start"]


def test_stop_start_and_restart_as_asked(tmp_path: Path) -> None:
    (tmp_path / "supervisord.conf").write_text("[program:iotex-node]\n")
    (tmp_path / "supervisord.conf").chmod(0o600)
    sup = FakeSupervisor(state="RUNNING")
    assert _converge(_sup_params(tmp_path, state="stopped"), sup)["action"] == "stop" and sup.program == "STOPPED"
    assert _converge(_sup_params(tmp_path, state="stopped"), sup)["changed"] is False
    assert _converge(_sup_params(tmp_path, state="started"), sup)["action"] == "start"
    sup.calls.clear()
    sup.program = "RUNNING"
    assert _converge(_sup_params(tmp_path, state="restarted"), sup)["action"] == "restart" and sup.calls == ["stop", "start"]


def test_a_node_failing_to_start_is_stopped_and_started_again(tmp_path: Path) -> None:
    (tmp_path / "supervisord.conf").write_text("[program:iotex-node]\n")
    (tmp_path / "supervisord.conf").chmod(0o600)
    sup = FakeSupervisor(state="BACKOFF", after_start="RUNNING")
    r = _converge(_sup_params(tmp_path), sup)
    assert r["action"] == "start" and sup.calls == ["stop", "start"]


def test_check_mode_reports_and_does_nothing(tmp_path: Path) -> None:
    sup = FakeSupervisor(running=False)
    r = _converge(_sup_params(tmp_path), sup, check=True)
    assert r["changed"] and r["supervisord_started"] and r["action"] == "start"
    assert r["_supervisord_runs"] == [] and sup.calls == [] and not (tmp_path / "supervisord.conf").exists()
    (tmp_path / "supervisord.conf").write_text("[program:iotex-node]\n")
    sup = FakeSupervisor(running=True, state="RUNNING")
    r = _converge(_sup_params(tmp_path, restart=True), sup, check=True)
    assert r["config_changed"] and r["action"] == "restart" and sup.calls == []  # mode 0644 -> 0600 would change
    assert _mode(tmp_path / "supervisord.conf") != 0o600


def test_a_node_that_dies_or_never_answers_fails_the_start(tmp_path: Path) -> None:
    (tmp_path / "supervisord.conf").write_text("[program:iotex-node]\n")
    (tmp_path / "supervisord.conf").chmod(0o600)
    with pytest.raises(sup_mod.SupervisordError, match=r"supervisord says FATAL \(its log is empty\)"):
        _converge(_sup_params(tmp_path), FakeSupervisor(state="STOPPED", after_start="FATAL"), port=lambda h, p: False)
    dying = FakeSupervisor(state="STOPPED", after_start="FATAL")
    dying.log = "".join(f"line {i}\n" for i in range(20)) + "error: keystore.json: wrong password\n\n"
    with pytest.raises(sup_mod.SupervisordError) as err:
        _converge(_sup_params(tmp_path), dying, port=lambda h, p: False)
    # the node's own last words reach the operator: the last 8 lines, not the whole log
    last_lines = "".join(f"line {i}\n" for i in range(13, 20)) + "error: keystore.json: wrong password"
    assert str(err.value).endswith("the end of its log:\n" + last_lines)
    with pytest.raises(sup_mod.SupervisordError, match=r"did not answer on 127\.0\.0\.1:14014 within 5 s"):
        _converge(_sup_params(tmp_path), FakeSupervisor(state="STOPPED", after_start="RUNNING"), port=lambda h, p: False)
    with pytest.raises(sup_mod.SupervisordError, match="state must be"):
        _converge(_sup_params(tmp_path, state="paused"), FakeSupervisor())


@pytest.mark.slow  # a real supervisord, over its real socket
def test_a_real_supervisord_gives_the_end_of_a_dying_programs_log_to_the_error() -> None:
    import shutil
    import signal
    import sys
    import tempfile

    supervisord = Path(sys.executable).with_name("supervisord")
    d = Path(tempfile.mkdtemp(prefix="iox-sv-", dir="/tmp"))  # a Unix socket path must stay short
    try:
        program = d / "node.sh"
        program.write_text("#!/bin/sh\necho starting\necho 'error: keystore.json: wrong password' >&2\nexit 3\n")
        program.chmod(0o755)
        content = (
            f"[unix_http_server]\nfile = {d}/s.sock\nchmod = 0700\n[supervisord]\nlogfile = {d}/supervisord.log\n"
            f"pidfile = {d}/s.pid\n[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
            f"[program:iotex-node]\ncommand = {program}\nautostart = false\nautorestart = false\nstartsecs = 1\n"
            f"startretries = 0\nredirect_stderr = true\nstdout_logfile = {d}/iotex-node.log\n"
        )
        params = {
            "name": "iotex-node",
            "config": str(d / "supervisord.conf"),
            "content": content,
            "socket": str(d / "s.sock"),
            "supervisord_bin": str(supervisord),
            "state": "started",
            "wait_host": "127.0.0.1",
            "wait_port": 1,  # nothing answers there: the start is judged by supervisord's FATAL
            "wait_timeout": 30,
        }
        with pytest.raises(sup_mod.SupervisordError) as err:
            sup_mod.converge(params, port_open=lambda h, p: False)
        assert "supervisord says FATAL: the end of its log:\nstarting\nerror: keystore.json: wrong password" in str(err.value)
    finally:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int((d / "s.pid").read_text()), signal.SIGTERM)
            for _ in range(100):
                os.kill(int((d / "s.pid").read_text()), 0)
                time.sleep(0.05)
        shutil.rmtree(d, ignore_errors=True)


# --- iotex_release_state ---------------------------------------------------------------------------------


def test_release_state_installed_active_and_a_foreign_artifact_refused(tmp_path: Path) -> None:
    sha = "ab" * 32
    assert rel_mod.state(str(tmp_path), "1.0.0", sha) == {"changed": False, "installed": False, "current": "", "active": False}
    rel = tmp_path / "releases" / "1.0.0"
    rel.mkdir(parents=True)
    (rel / "install.json").write_text(json.dumps({"sha256": sha.upper()}))
    assert rel_mod.state(str(tmp_path), "1.0.0", sha)["installed"] is True
    (tmp_path / "current").symlink_to("releases/1.0.0")
    assert rel_mod.state(str(tmp_path), "1.0.0", sha + "\n") == {
        "changed": False,
        "installed": True,
        "current": "1.0.0",
        "active": True,
    }
    assert rel_mod.state(str(tmp_path), "1.0.1", sha)["current"] == "1.0.0"
    with pytest.raises(rel_mod.ReleaseStateError, match="already installed from another artifact"):
        rel_mod.state(str(tmp_path), "1.0.0", "cd" * 32)
    (rel / "install.json").write_text("{")
    with pytest.raises(rel_mod.ReleaseStateError, match="unreadable install record"):
        rel_mod.state(str(tmp_path), "1.0.0", sha)


class FakeLauncher:
    """subprocess.run for the release's launcher: records the call, prints `doc` (or fails with `err`)."""

    def __init__(self, doc: dict[str, Any] | None = None, rc: int = 0, err: str = "") -> None:
        self.doc, self.rc, self.err = doc or {}, rc, err
        self.calls: list[tuple[list[str], str | None]] = []

    def __call__(self, argv: list[str], **kw: Any) -> Any:
        self.calls.append((argv, kw["env"].get("IOTEX_PYTHON")))
        return type("P", (), {"returncode": self.rc, "stdout": json.dumps(self.doc), "stderr": self.err})()


def _release_root(tmp_path: Path, sha: str, *versions: str, current: str = "", previous: str = "") -> str:
    for v in versions:
        (tmp_path / "releases" / v).mkdir(parents=True)
        (tmp_path / "releases" / v / "install.json").write_text(json.dumps({"sha256": sha}))
    if current:
        (tmp_path / "current").symlink_to(f"releases/{current}")
    if previous:
        (tmp_path / "previous").symlink_to(f"releases/{previous}")
    return str(tmp_path)


def test_release_state_activates_an_installed_release_that_is_not_active_with_its_own_launcher(tmp_path: Path) -> None:
    sha = "ab" * 32
    root = _release_root(tmp_path, sha, "1.0.0", "1.0.1", current="1.0.0")
    run = FakeLauncher({"active": "1.0.1", "previous": "1.0.0", "changed": True})
    params = {"root": root, "version": "1.0.1", "sha256": sha, "activate": True, "python": "/usr/bin/python3"}
    # check mode: says it would change, runs nothing
    assert rel_mod.converge(params, check_mode=True, run=run)["changed"] is True and run.calls == []
    res = rel_mod.converge(params, run=run)
    assert res["changed"] is True and res["active"] is True and res["activated"]["previous"] == "1.0.0"
    assert run.calls == [
        ([f"{root}/releases/1.0.1/bin/iotex-node", "release", "activate", "1.0.1", "--root", root, "--json"], "/usr/bin/python3")
    ]
    # active already, or not installed (and no artifact given to install), or activate not asked: no run
    for p in ({**params, "version": "1.0.0"}, {**params, "version": "2.0.0"}, {**params, "activate": False}):
        out = rel_mod.converge(p, run=run)
        assert out["changed"] is False and "activated" not in out
    assert len(run.calls) == 1


def test_release_state_switches_back_with_the_current_releases_launcher(tmp_path: Path) -> None:
    sha = "ab" * 32
    root = _release_root(tmp_path, sha, "1.0.0", "1.0.1", current="1.0.1", previous="1.0.0")
    run = FakeLauncher({"active": "1.0.0", "previous": "1.0.1", "changed": True})
    res = rel_mod.converge({"root": root, "switch_back": True, "version": "", "sha256": ""}, run=run)
    assert res["changed"] is True and res["current"] == "1.0.0" and res["switched_back"]["previous"] == "1.0.1"
    assert run.calls[0][0] == [f"{root}/current/bin/iotex-node", "release", "switch-back", "--root", root, "--json"]
    assert rel_mod.converge({"root": root, "switch_back": True}, check_mode=True, run=run)["changed"] is True
    assert len(run.calls) == 1


def test_release_state_says_what_is_missing_or_what_the_launcher_said(tmp_path: Path) -> None:
    sha = "ab" * 32
    root = _release_root(tmp_path, sha, "1.0.0", "1.0.1", current="1.0.0")
    with pytest.raises(rel_mod.ReleaseStateError, match="no previous release to switch back to"):
        rel_mod.converge({"root": root, "switch_back": True}, run=FakeLauncher())
    with pytest.raises(rel_mod.ReleaseStateError, match="version and sha256 are required"):
        rel_mod.converge({"root": root, "version": "1.0.1", "sha256": ""}, run=FakeLauncher())
    failing = FakeLauncher(rc=2, err="error: release 1.0.1 in /x is corrupt: lib/x.py is missing\n")
    with pytest.raises(rel_mod.ReleaseStateError, match=r"release activate failed: error: release 1\.0\.1 .* is corrupt"):
        rel_mod.converge({"root": root, "version": "1.0.1", "sha256": sha, "activate": True}, run=failing)
