"""Inventories: Ansible reads them, the toolkit loads them into immutable data and names every problem at once."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from iotex_ops import inventory as I
from iotex_ops.cli.hosts import inventory as inventory_group

EXAMPLE = Path(__file__).resolve().parents[2] / "inventories" / "example-prod"


def _good(tmp_path: Path, n: int = 3) -> Path:
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "host_vars").mkdir()
    (inv / "keys").mkdir()
    hosts = {}
    for i in range(n):
        (inv / "keys" / f"d{i}.json").write_text("{}")
        hosts[f"d{i}"] = {
            "ansible_host": f"10.0.0.{i + 1}",
            "ansible_port": 22,
            "delegate_name": f"delegate{i}",
            "node_p2p_port": 4689,
            "node_api_port": 14014,
            "node_key_file": f"keys/d{i}.json",
        }
    (inv / "hosts.yml").write_text(
        json.dumps({"all": {"children": {"delegates": {"hosts": hosts}, "monitoring": {"hosts": {"mon1": {}}}}}})
    )
    (inv / "group_vars" / "delegates.yml").write_text(
        "ansible_user: iotex\nnode_data_dir: /var/lib/iotex-node\nnode_service_manager: systemd\n"
    )
    return inv


def _problems(inv: Path) -> list[str]:
    return [str(p) for p in I.check(I.load(inv))]


@pytest.mark.slow  # runs ansible-inventory
def test_example_prod_is_read_by_ansible_and_only_lacks_its_keystores() -> None:
    out = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(EXAMPLE), "--list"],
        capture_output=True, text=True, check=True, timeout=60, env={"LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    data = json.loads(out.stdout)
    assert sorted(data["delegates"]["hosts"]) == ["delegate-fra1", "delegate-iad1", "delegate-sfo1", "delegate-sgp1"]
    assert data["_meta"]["hostvars"]["delegate-sfo1"]["node_service_manager"] == "supervisord"
    inv = I.load(EXAMPLE)
    assert len(inv.delegates) == 4 and "ops-fra1" in data["ops"]["hosts"]
    assert inv.host("delegate-fra1").service_manager == "systemd"  # from group_vars
    problems = I.check(inv)
    assert len(problems) == 4 and all("node_key_file" in p.message for p in problems)


def test_a_good_inventory_has_no_problems_and_is_immutable(tmp_path: Path) -> None:
    inv = I.load(_good(tmp_path))
    assert I.check(inv) == []
    d0 = inv.host("d0")
    assert (d0.ansible_user, d0.node_p2p_port, d0.groups) == ("iotex", 4689, ("delegates",))
    assert d0.node_key_file == tmp_path / "inv" / "keys" / "d0.json"
    with pytest.raises(dataclasses.FrozenInstanceError):
        d0.ansible_port = 2222  # type: ignore[misc]
    with pytest.raises(TypeError):
        d0.extra["x"] = 1  # type: ignore[index]


def test_every_problem_is_named_at_once(tmp_path: Path) -> None:
    inv = _good(tmp_path, 4)
    (inv / "host_vars" / "d0.yml").write_text("node_p2p_prot: 4690\nx_rack: b7\n")  # a typo, and a custom var
    (inv / "host_vars" / "d1.yml").write_text("ansible_host: 10.0.0.1\n")  # same host and ports as d0
    (inv / "host_vars" / "d2.yml").write_text("node_service_manager: upstart\nnode_api_port: 4689\n")
    (inv / "keys" / "d3.json").unlink()
    problems = "\n".join(_problems(inv))
    assert "d0: unknown host var 'node_p2p_prot'" in problems
    assert "x_rack" not in problems
    assert "d1: node_p2p_port 4689 on 10.0.0.1 is also node_p2p_port of d0" in problems
    assert "d1: node_api_port 14014 on 10.0.0.1 is also node_api_port of d0" in problems
    assert "d2: node_service_manager must be one of systemd, supervisord, not 'upstart'" in problems
    assert "d2: node_p2p_port and node_api_port are both 4689" in problems
    assert "d3: node_key_file" in problems and "does not exist" in problems
    assert len(problems.splitlines()) == 6


def test_a_var_renamed_for_the_role_prefix_is_named_with_its_new_name(tmp_path: Path) -> None:
    inv = _good(tmp_path, 2)
    (inv / "host_vars" / "d0.yml").write_text("supervisorctl_bin: /usr/bin/supervisorctl\nalert_lag_blocks: 5\n")
    assert _problems(inv) == [
        "d0: host var 'alert_lag_blocks' is now called 'monitoring_alert_lag_blocks'",
        "d0: host var 'supervisorctl_bin' is now called 'node_supervisorctl_bin'",
    ]


def test_missing_required_vars_are_listed_per_host(tmp_path: Path) -> None:
    inv = _good(tmp_path, 2)
    (inv / "group_vars" / "delegates.yml").write_text("ansible_user: iotex\n")
    assert _problems(inv) == [
        "d0: missing required vars: node_data_dir, node_service_manager",
        "d1: missing required vars: node_data_dir, node_service_manager",
    ]


def test_unparsable_yaml_names_file_and_line(tmp_path: Path) -> None:
    inv = _good(tmp_path, 2)
    bad = inv / "host_vars" / "d1.yml"
    bad.write_text("x_a: 1\nx_b: [unclosed\nx_c: 3\n")
    problems = I.check(I.load(inv))
    p = next(p for p in problems if p.file == str(bad))
    assert p.line == 3 and "unparsable YAML" in p.message
    (inv / "hosts.yml").write_text("all:\n  children:\n   delegates: {hosts: {d0: {}\n")
    p = I.check(I.load(inv))[0]
    assert p.file == str(inv / "hosts.yml") and p.line is not None


def test_limit_selects_like_ansible(tmp_path: Path) -> None:
    inv = I.load(_good(tmp_path, 4))

    def names(pattern: str | None) -> list[str]:
        return [h.name for h in inv.limit(pattern)]

    assert names(None) == ["d0", "d1", "d2", "d3", "mon1"]
    assert names("delegates") == ["d0", "d1", "d2", "d3"]
    assert names("d1,d3") == ["d1", "d3"]
    assert names("d*:!d2") == ["d0", "d1", "d3"]
    assert names("all:&delegates:!d0") == ["d1", "d2", "d3"]
    assert names("~d[02]") == ["d0", "d2"]
    assert names("mon*") == ["mon1"]
    with pytest.raises(I.InventoryError, match="'nope' matches no host"):
        inv.limit("d1,nope")


def test_repr_shows_no_password(tmp_path: Path) -> None:
    inv_dir = _good(tmp_path, 1)
    (inv_dir / "host_vars" / "d0.yml").write_text("ansible_become_password: s3cr3t-become\n")
    inv = I.load(inv_dir)
    assert "s3cr3t-become" not in repr(inv) + repr(inv.hosts) + str(inv.hosts)


def test_cli_check_reports_problems_and_exit_status(tmp_path: Path) -> None:
    inv = _good(tmp_path, 2)
    ok = CliRunner().invoke(inventory_group, ["check", "-i", str(inv)])
    assert ok.exit_code == 0, ok.output
    assert "3 host(s), ok" in ok.output
    (inv / "host_vars" / "d1.yml").write_text("node_service_manager: cron\n")
    bad = CliRunner().invoke(inventory_group, ["check", "-i", str(inv), "--json"])
    assert bad.exit_code == 1
    data = json.loads(bad.output)
    assert [p["host"] for p in data["problems"]] == ["d1"]
    missing = CliRunner().invoke(inventory_group, ["check", "-i", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_inventory_file_alone_is_accepted(tmp_path: Path) -> None:
    inv = _good(tmp_path, 1)
    shutil.copy(inv / "hosts.yml", inv / "solo.yml")
    loaded = I.load(inv / "solo.yml")
    assert loaded.host("d0").ansible_user == "iotex"  # group_vars beside the file still apply
