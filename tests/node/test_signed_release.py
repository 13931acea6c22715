"""Signed releases on the delegate's side: a tampered artifact, a wrong key, an expired manifest, a replay of an
older manifest are each refused by name, and nothing is installed; release remove/prune keep the active and
previous releases; backup retention. Unit tests: no process, no socket."""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from iotex_node import artifact, backups
from iotex_node import signed_release as sr
from iotex_node.cli import main
from iotex_node.errors import ReleaseError

BUILD_TIME = "2024-05-01T12:00:00Z"
NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    for v in ("1.0.0", "1.0.1", "1.0.2"):
        artifact.build(v, (1,), out, build_time=BUILD_TIME)
    return out


@pytest.fixture(scope="module")
def key() -> sr.PrivateKey:
    return sr.PrivateKey.generate()


def _info(dist: Path, version: str, sequence: int, *, expires: float = NOW + 86400, channel: str = "stable") -> sr.ReleaseInfo:
    art = dist / f"iotex-node-{version}.tar.gz"
    sha = (dist / f"iotex-node-{version}.tar.gz.sha256").read_text().split()[0]
    return sr.ReleaseInfo(
        version, art.name, sha, art.stat().st_size, (1,), "patch", channel, sequence, int(NOW - 60), int(expires)
    )


def _signed(dist: Path, key: sr.PrivateKey, version: str, sequence: int, **kw: Any) -> bytes:
    return sr.dumps(sr.sign(_info(dist, version, sequence, **kw), [key]))


def _install(
    dist: Path, root: Path, version: str, signed: bytes, key: sr.PrivateKey, art: Path | None = None
) -> artifact.Installed:
    trusted = {key.public.id: key.public}
    return artifact_install(art or dist / f"iotex-node-{version}.tar.gz", root, signed, trusted)


def artifact_install(art: Path, root: Path, signed: bytes, trusted: dict[str, sr.PublicKey]) -> artifact.Installed:
    return artifact.install(art, root, signed=signed, trusted=trusted, channel="stable", now=NOW)


def _nothing_installed(root: Path) -> None:
    releases = root / "releases"
    assert not releases.exists() or [p.name for p in releases.iterdir() if not p.name.startswith(".install")] == []
    assert not (root / "current").exists()


def test_a_signed_release_installs_and_records_its_sequence(tmp_path: Path, dist: Path, key: sr.PrivateKey) -> None:
    root = tmp_path / "root"
    r = _install(dist, root, "1.0.1", _signed(dist, key, "1.0.1", 5), key)
    assert r.changed and r.version == "1.0.1"
    trust = json.loads((root / sr.TRUST_FILE).read_text())
    assert trust["channels"]["stable"]["sequence"] == 5
    # the same manifest again is not a replay (a retried install on a delegate)
    assert not _install(dist, root, "1.0.1", _signed(dist, key, "1.0.1", 5), key).changed


def test_tampered_artifact_is_refused_by_name_and_nothing_installed(tmp_path: Path, dist: Path, key: sr.PrivateKey) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    art = bad / "iotex-node-1.0.1.tar.gz"
    shutil.copy(dist / art.name, art)
    data = bytearray(art.read_bytes())
    data[len(data) // 2] ^= 0x01
    art.write_bytes(bytes(data))
    root = tmp_path / "root"
    with pytest.raises(sr.RefusedRelease, match=r"refused \(checksum\): release 1\.0\.1: .*sha256") as exc:
        _install(dist, root, "1.0.1", _signed(dist, key, "1.0.1", 1), key, art=art)
    assert exc.value.reason == "checksum"
    _nothing_installed(root)


def test_tampered_manifest_is_refused_by_name(tmp_path: Path, dist: Path, key: sr.PrivateKey) -> None:
    doc = json.loads(_signed(dist, key, "1.0.1", 1))
    doc["signed"]["protocols"] = [1, 2]  # a byte of the signed part changed
    with pytest.raises(sr.RefusedRelease, match=r"refused \(bad-signature\)"):
        _install(dist, tmp_path / "root", "1.0.1", json.dumps(doc).encode(), key)
    _nothing_installed(tmp_path / "root")


def test_wrong_key_is_refused_by_name(tmp_path: Path, dist: Path, key: sr.PrivateKey) -> None:
    other = sr.PrivateKey.generate()
    signed = sr.dumps(sr.sign(_info(dist, "1.0.1", 1), [other]))
    with pytest.raises(sr.RefusedRelease, match=rf"refused \(unknown-key\): .*{other.public.id}.*not a trusted key") as exc:
        _install(dist, tmp_path / "root", "1.0.1", signed, key)
    assert exc.value.reason == "unknown-key"
    _nothing_installed(tmp_path / "root")
    # an attacker who copies the trusted key id onto a signature of his own gets a bad signature, not an install
    doc = json.loads(signed)
    doc["signatures"][0]["keyid"] = key.public.id
    with pytest.raises(sr.RefusedRelease, match=r"refused \(bad-signature\)"):
        _install(dist, tmp_path / "root", "1.0.1", json.dumps(doc).encode(), key)
    _nothing_installed(tmp_path / "root")


def test_expired_manifest_is_refused_by_name(tmp_path: Path, dist: Path, key: sr.PrivateKey) -> None:
    signed = _signed(dist, key, "1.0.1", 1, expires=NOW - 1)
    with pytest.raises(sr.RefusedRelease, match=r"refused \(expired\): release 1\.0\.1: the stable manifest expired at") as exc:
        _install(dist, tmp_path / "root", "1.0.1", signed, key)
    assert exc.value.reason == "expired"
    _nothing_installed(tmp_path / "root")


def test_replay_of_an_older_manifest_is_refused_by_name(tmp_path: Path, dist: Path, key: sr.PrivateKey) -> None:
    root = tmp_path / "root"
    old = _signed(dist, key, "1.0.1", 1)  # validly signed, unexpired, but superseded
    _install(dist, root, "1.0.2", _signed(dist, key, "1.0.2", 2), key)
    before = sorted(p.name for p in (root / "releases").iterdir())
    replay = r"refused \(replay\): release 1\.0\.1: its stable sequence 1 is older than 2"
    with pytest.raises(sr.RefusedRelease, match=replay) as exc:
        _install(dist, root, "1.0.1", old, key)
    assert exc.value.reason == "replay"
    assert sorted(p.name for p in (root / "releases").iterdir()) == before == ["1.0.2"]
    # another manifest with the same sequence is refused too
    with pytest.raises(sr.RefusedRelease, match=r"refused \(replay\): .*already carried stable sequence 2"):
        _install(dist, root, "1.0.1", _signed(dist, key, "1.0.1", 2), key)
    # a manifest for another channel is refused when a channel is asked for
    with pytest.raises(sr.RefusedRelease, match=r"refused \(wrong-channel\)"):
        _install(dist, root, "1.0.1", _signed(dist, key, "1.0.1", 9, channel="candidate"), key)
    assert sorted(p.name for p in (root / "releases").iterdir()) == ["1.0.2"]


def test_cli_refusal_is_one_line_naming_the_reason(tmp_path: Path, dist: Path, key: sr.PrivateKey) -> None:
    signed = tmp_path / "m.signed.json"
    signed.write_bytes(_signed(dist, key, "1.0.1", 1, expires=time.time() - 5))
    keys = tmp_path / "keys"
    keys.write_text(f"# publisher\n{key.public}\n")
    art = str(dist / "iotex-node-1.0.1.tar.gz")
    res = CliRunner().invoke(
        main, ["release", "install", art, "--root", str(tmp_path / "r"), "--signed", str(signed), "--trusted-keys", str(keys)]
    )
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("error: refused (expired): release 1.0.1") and len(res.stderr.splitlines()) == 1
    assert "Traceback" not in res.output
    _nothing_installed(tmp_path / "r")


def test_private_key_file_is_0600_and_never_shown(tmp_path: Path, key: sr.PrivateKey) -> None:
    path = tmp_path / "publisher.key"
    key.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    secret = path.read_text().strip().split(":", 1)[1]
    assert secret not in repr(key) and secret not in str(key) and key.public.id in repr(key)
    assert sr.PrivateKey.load(path).public == key.public
    with pytest.raises(ReleaseError, match="refusing to overwrite"):
        key.save(path)
    os.chmod(path, 0o644)
    with pytest.raises(ReleaseError, match=r"readable by others \(mode 644\)") as exc:
        sr.PrivateKey.load(path)
    assert secret not in str(exc.value)


def test_prune_keeps_the_active_and_previous_release(tmp_path: Path, dist: Path) -> None:
    root = tmp_path / "root"
    for v in ("1.0.0", "1.0.1", "1.0.2"):
        artifact.install(dist / f"iotex-node-{v}.tar.gz", root)
    artifact.activate(root, "1.0.0")
    artifact.activate(root, "1.0.1")  # active 1.0.1, previous 1.0.0
    with pytest.raises(ReleaseError, match=r"1\.0\.1 is the active release"):
        artifact.remove(root, "1.0.1")
    with pytest.raises(ReleaseError, match=r"1\.0\.0 is the previous release"):
        artifact.remove(root, "1.0.0")
    dry = artifact.prune(root, 0, dry_run=True)
    assert dry.removed == ("1.0.2",) and (root / "releases" / "1.0.2").is_dir()
    res = CliRunner().invoke(main, ["release", "prune", "--root", str(root), "--keep", "0", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["removed"] == ["1.0.2"]
    assert sorted(p.name for p in (root / "releases").iterdir()) == ["1.0.0", "1.0.1"]
    assert artifact.list_releases(root)["active"] == "1.0.1"
    res = CliRunner().invoke(main, ["release", "remove", "1.0.1", "--root", str(root)])
    assert res.exit_code == 2 and "active release" in res.stderr and "Traceback" not in res.output


def _backup(name: str, age_days: float) -> backups.Backup:
    return backups.Backup(name, NOW - age_days * 86400, 100)


def test_backup_retention_keeps_the_newest_and_the_young() -> None:
    bs = [_backup(f"b{i}", d) for i, d in enumerate([40, 20, 10, 3, 1])]
    kept, removed = backups.choose(bs, keep=2, max_age_s=15 * 86400, now=NOW)
    assert [b.name for b in kept] == ["b2", "b3", "b4"] and [b.name for b in removed] == ["b0", "b1"]
    kept, removed = backups.choose(bs, keep=1, max_age_s=None, now=NOW)
    assert [b.name for b in kept] == ["b4"]
    with pytest.raises(backups.BackupError, match="at least the newest"):
        backups.choose(bs, keep=0, max_age_s=None, now=NOW)


def test_backups_prune_removes_files_past_retention(tmp_path: Path) -> None:
    d = tmp_path / "home" / "backups"
    d.mkdir(parents=True)
    for stamp in ("20240101T000000Z", "20240201T000000Z", "20240301T000000Z"):
        (d / f"chain-10-{stamp}.db").write_bytes(b"x")
    (d / "chain-unreadable-20240101T000000Z.db-wal").write_bytes(b"w")
    (d / "chain-unreadable-20240101T000000Z.db").write_bytes(b"x")
    (d / "notes.txt").write_text("not a backup: left alone")
    res = CliRunner().invoke(main, ["backups", "prune", "--home", str(tmp_path / "home"), "--keep", "2", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert sorted(doc["removed"]) == ["chain-10-20240101T000000Z.db", "chain-unreadable-20240101T000000Z.db"]
    assert sorted(p.name for p in d.iterdir()) == ["chain-10-20240201T000000Z.db", "chain-10-20240301T000000Z.db", "notes.txt"]


def test_a_sha256_argument_that_disagrees_with_the_signed_manifest_is_refused(
    tmp_path: Path, dist: Path, key: sr.PrivateKey
) -> None:
    with pytest.raises(sr.RefusedRelease, match=r"refused \(checksum\): .*--sha256 0{64} is not the signed manifest's"):
        artifact.install(
            dist / "iotex-node-1.0.1.tar.gz", tmp_path / "root", sha256="0" * 64,
            signed=_signed(dist, key, "1.0.1", 1), trusted={key.public.id: key.public}, now=NOW,
        )  # fmt: skip
    _nothing_installed(tmp_path / "root")
