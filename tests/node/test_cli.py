"""The iotex-node command line: keys never printed, homes created, admin channel guarded."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from iotex_node.cli import main
from iotex_node.crypto import keystore


def _pwfile(tmp_path: Path, text: str = "correct horse battery") -> Path:
    p = tmp_path / "pw"
    p.write_text(text)
    os.chmod(p, 0o600)
    return p


def test_keygen_prints_address_never_the_key(tmp_path: Path) -> None:
    out = tmp_path / "k.json"
    res = CliRunner().invoke(main, ["keygen", "--out", str(out), "--password-file", str(_pwfile(tmp_path)), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["address"].startswith("io1")
    key = keystore.read(out, "correct horse battery")
    assert key.address == doc["address"]
    assert key.secret().hex() not in res.output
    assert key.secret().hex() not in out.read_text()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_keygen_refuses_to_overwrite_and_world_readable_password(tmp_path: Path) -> None:
    pw = _pwfile(tmp_path)
    out = tmp_path / "k.json"
    assert CliRunner().invoke(main, ["keygen", "--out", str(out), "--password-file", str(pw)]).exit_code == 0
    res = CliRunner().invoke(main, ["keygen", "--out", str(out), "--password-file", str(pw)])
    assert res.exit_code != 0 and "refusing to overwrite" in res.output
    os.chmod(pw, 0o644)
    res = CliRunner().invoke(main, ["keygen", "--out", str(tmp_path / "k2.json"), "--password-file", str(pw)])
    assert res.exit_code == 2 and "readable by others" in res.output


def test_testnet_writes_homes_genesis_and_manifest(tmp_path: Path) -> None:
    out = tmp_path / "tn"
    res = CliRunner().invoke(main, ["testnet", "--delegates", "3", "--full-nodes", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    manifest = json.loads((out / "testnet.json").read_text())
    assert [n["delegate"] for n in manifest["nodes"]] == [True, True, True, False]
    genesis = json.loads((out / "genesis.json").read_text())
    assert len(genesis["candidates"]) == 3
    for n in manifest["nodes"]:
        home = Path(n["home"])
        for f in ("config.toml", "keystore.json", "keystore.pass", "admin.token", "genesis.json", "data/chain.db"):
            assert (home / f).exists(), f
        for secret in ("keystore.pass", "admin.token"):
            assert stat.S_IMODE((home / secret).stat().st_mode) == 0o600
    res = CliRunner().invoke(main, ["testnet", "--out", str(out)])
    assert res.exit_code == 2 and "not empty" in res.output


def test_init_creates_a_home_from_genesis_and_keystore(tmp_path: Path) -> None:
    tn = tmp_path / "tn"
    assert CliRunner().invoke(main, ["testnet", "--delegates", "1", "--out", str(tn)]).exit_code == 0
    pw = _pwfile(tmp_path)
    ks = tmp_path / "k.json"
    assert CliRunner().invoke(main, ["keygen", "--out", str(ks), "--password-file", str(pw)]).exit_code == 0
    home = tmp_path / "full"
    args = ["init", "--home", str(home), "--genesis", str(tn / "genesis.json"), "--keystore", str(ks),
            "--password-file", str(pw), "--peer", "127.0.0.1:1"]  # fmt: skip
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert (home / "data" / "chain.db").exists()
    again = CliRunner().invoke(main, args)
    assert again.exit_code != 0 and "already a node home" in again.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["admin", "status", "--home", "/nonexistent/home"], "does not exist"),
        (["run", "--home", "/nonexistent/home"], "does not exist"),
    ],
)
def test_commands_on_missing_home_fail_clearly(args: list[str], message: str) -> None:
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2
    assert message in res.output
    assert "Traceback" not in res.output


def test_admin_status_of_stopped_node_says_not_running(tmp_path: Path) -> None:
    tn = tmp_path / "tn"
    assert CliRunner().invoke(main, ["testnet", "--delegates", "1", "--out", str(tn)]).exit_code == 0
    res = CliRunner().invoke(main, ["admin", "status", "--home", str(tn / "node0")])
    assert res.exit_code == 2 and "not running" in res.output
