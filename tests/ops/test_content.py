"""Where the playbooks, roles and runbooks come from (iotex_ops.content), and the roles' defaults as the one
source of the values Python needs (the network's paths, the monitoring generator's variables)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from iotex_ops import content, network
from iotex_ops.alerting.settings import VARS, Settings, variables
from iotex_ops.ansible import resolve_playbook
from iotex_ops.cli import main
from iotex_ops.content import ENV_VAR, PACKAGE_CONTENT, ContentError, RoleVars
from iotex_ops.inventory import KNOWN, check, known_vars, load
from iotex_ops.runbook import loader

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.delenv("IOTEX_OPS_RUNBOOKS", raising=False)


@pytest.fixture
def own_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An operator's copy of the content (a fork of the roles, one runbook of its own), named by $IOTEX_OPS_HOME."""
    home = tmp_path / "content"
    shutil.copytree(REPO / "playbooks", home / "playbooks")
    (home / "runbooks").mkdir()
    (home / "runbooks" / "noop.py").write_text(
        "from iotex_ops.runbook import Runbook, Step\n\n"
        "RUNBOOK = Runbook(name='noop', summary='does nothing', steps=(Step('nothing', lambda ctx: None, 'nothing'),))\n"
    )
    monkeypatch.setenv(ENV_VAR, str(home))
    return home


def _edit_defaults(home: Path, role: str, old: str, new: str) -> None:
    path = home / "playbooks" / "roles" / role / "defaults" / "main.yml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_by_default_the_content_is_the_package_own() -> None:
    assert content.home() == PACKAGE_CONTENT
    # in a checkout, the package's content links to the repository's directories
    assert content.playbooks_dir() == REPO / "playbooks" and content.runbooks_dir() == REPO / "runbooks"
    assert content.roles_dir() == REPO / "playbooks" / "roles"
    assert resolve_playbook("site") == REPO / "playbooks" / "site.yml"
    assert {"first-aid", "hotfix-compatible"} <= set(loader.discover())
    assert "the package" in content.describe()
    assert {"host", "iotex", "node", "monitoring", "node_service"} <= set(content.role_names())
    res = CliRunner().invoke(main, ["playbook", "list"])
    assert res.exit_code == 0 and f"playbooks in {REPO / 'playbooks'} (from the package" in res.stdout
    assert "  site\n" in res.stdout


def test_iotex_ops_home_wins_for_playbooks_roles_and_runbooks(own_content: Path) -> None:
    assert content.home() == own_content.resolve()
    assert resolve_playbook("site") == own_content.resolve() / "playbooks" / "site.yml"
    assert set(loader.discover()) == {"noop"}  # its runbooks, not the package's
    assert loader.find("noop").source == str(own_content.resolve() / "runbooks" / "noop.py")
    _edit_defaults(own_content, "node", "node_name:", "x_fork_only: 1\nnode_name:")
    assert "x_fork_only" in known_vars() and "x_fork_only" in content.role_defaults("node")
    res = CliRunner().invoke(main, ["runbook", "list", "--json"])
    assert res.exit_code == 0 and "noop" in res.stdout and "first-aid" not in res.stdout


def test_a_wrong_iotex_ops_home_is_one_error_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(ContentError, match=rf"\${ENV_VAR}=.*nowhere: no playbooks/ directory there"):
        content.home()
    for args in (["runbook", "list"], ["playbook", "run", "site", "-i", str(tmp_path), "--check"]):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 2 and res.stderr.startswith(f"error: ${ENV_VAR}="), (args, res.output)


def test_monitoring_variables_are_the_monitoring_role_defaults(own_content: Path) -> None:
    defaults = yaml.safe_load((REPO / "playbooks/roles/monitoring/defaults/main.yml").read_text())
    text = (REPO / "playbooks/roles/monitoring/defaults/main.yml").read_text()
    for v in VARS:
        assert v.default == defaults[v.name]
        assert v.help and f"# {v.help}\n{v.name}:" in text  # the comment right above it is its help
        assert v.name in KNOWN
    # a fork's default is what the generator uses: one source
    assert Settings.from_vars({}, delegates=4).lag_blocks == 30
    _edit_defaults(own_content, "monitoring", "monitoring_alert_lag_blocks: 30", "monitoring_alert_lag_blocks: 12")
    assert Settings.from_vars({}, delegates=4).lag_blocks == 12
    assert {v.name: v.default for v in variables()}["monitoring_alert_lag_blocks"] == 12


def _inventory(tmp_path: Path, **host_vars: object) -> Path:
    key = tmp_path / "key.json"
    key.write_text("{}")
    host = {"ansible_host": "127.0.0.1", "ansible_user": "iotex", "ansible_port": 22, "ansible_connection": "local",
            "node_p2p_port": 4689, "node_api_port": 14015, "delegate_name": "d1", "node_key_file": str(key),
            "node_data_dir": "/var/lib/iotex-node", "node_service_manager": "systemd", **host_vars}  # fmt: skip
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump({"all": {"children": {"delegates": {"hosts": {"d1": host}}}}}))
    assert check(load(path)) == []
    return path


def test_the_network_takes_the_roles_defaults_for_what_the_inventory_leaves_out(tmp_path: Path) -> None:
    with network.load(_inventory(tmp_path), tmp_path / "known_hosts") as net:
        (d,) = net.delegates
        # the values network.py used to repeat, now read from playbooks/roles/*/defaults/main.yml
        assert (d.home, d.releases_root, d.python, d.service_name) == (
            "/var/lib/iotex/node", "/opt/iotex", "/usr/bin/python3", "iotex-node")  # fmt: skip
        assert (d.supervisor_dir, d.supervisorctl) == ("/var/lib/iotex/supervisor", "/usr/bin/supervisorctl")
        assert d.api_url == "http://127.0.0.1:14015"
    inv = _inventory(tmp_path, iotex_host_dir="/srv/iotex", ansible_python_interpreter="/opt/py/bin/python3")
    with network.load(inv, tmp_path / "known_hosts") as net:
        (d,) = net.delegates
        assert (d.home, d.supervisor_dir, d.python, d.supervisorctl) == (
            "/srv/iotex/node", "/srv/iotex/supervisor", "/opt/py/bin/python3", "/opt/py/bin/supervisorctl")  # fmt: skip


def test_the_network_follows_a_fork_of_the_roles(tmp_path: Path, own_content: Path) -> None:
    _edit_defaults(own_content, "iotex", "iotex_releases_root: /opt/iotex", "iotex_releases_root: /opt/chain")
    with network.load(_inventory(tmp_path), tmp_path / "known_hosts") as net:
        assert net.delegates[0].releases_root == "/opt/chain"


def test_role_vars_evaluate_the_defaults_simple_jinja() -> None:
    defaults = {"root": "/var/x", "home": "{{ root }}/home", "py": "{{ interp | default('/usr/bin/python3') }}",
                "bin": "{{ py | dirname }}/tool", "loop": "{{ loop }}", "cmd": "{{ py | quote }} -m x"}  # fmt: skip
    rv = RoleVars({}, defaults)
    assert (rv["home"], rv["py"], rv["bin"], rv["cmd"]) == (
        "/var/x/home",
        "/usr/bin/python3",
        "/usr/bin/tool",
        "/usr/bin/python3 -m x",
    )
    rv = RoleVars({"root": "/srv", "interp": "/v/bin/python"}, defaults)
    assert (rv["home"], rv["bin"]) == ("/srv/home", "/v/bin/tool")
    assert RoleVars({"home": 5}, defaults)["home"] == 5  # the inventory's value, as written
    with pytest.raises(ContentError, match="loop refers to itself"):
        rv["loop"]
    with pytest.raises(ContentError, match="no value for nothing"):
        rv["nothing"]
    with pytest.raises(ContentError, match="no role 'nope'"):
        content.role_defaults("nope")


def test_no_module_finds_content_by_counting_parent_directories() -> None:
    offenders = []
    for path in sorted((REPO / "iotex_ops").rglob("*.py")):
        if "_content" in path.parts:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"parents\[\d\]|parent\.parent|\.\./\.\.", line) and "__file__" in line:
                offenders.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert offenders == []


def test_runbooks_discovered_from_several_threads_at_once_all_load() -> None:
    """The scheduler and alertd discover runbooks from several threads; fault-corrupt-db reuses rebuild-node's
    module, which a second thread once saw half-imported ("has no attribute 'RUNBOOK'")."""
    import sys
    from concurrent.futures import ThreadPoolExecutor

    for name in [n for n in sys.modules if n.endswith("_shared.rebuild_node")]:
        del sys.modules[name]
    with ThreadPoolExecutor(max_workers=6) as pool:
        found = list(pool.map(lambda _: loader.discover(), range(6)))
    assert all("fault-corrupt-db" in f and "rebuild-node" in f for f in found)
