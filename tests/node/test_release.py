"""Release artifacts: reproducible builds, verified installs side by side, atomic switches, clear errors."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import iotex_node
from iotex_node import artifact
from iotex_node import release as release_mod
from iotex_node.cli import main
from iotex_node.constants import SUPPORTED_PROTOCOLS
from iotex_node.errors import ReleaseError

BUILD_TIME = "2024-05-01T12:00:00Z"
NODE_SRC = Path(iotex_node.__file__).resolve().parent.parent  # the directory holding the source package


def _cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def _ok(*args: str) -> Result:
    res = _cli(*args)
    assert res.exit_code == 0, res.output
    return res


def _one_line_error(res: Result, *needles: str) -> str:
    """Exit code 2, nothing on stdout, one line `error: ...` on stderr naming the problem, no traceback."""
    assert res.exit_code == 2, res.output
    assert isinstance(res.exception, SystemExit)
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.output
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def _build(out: Path, version: str, protocols: str = "1", build_time: str = BUILD_TIME) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    res = _ok("release", "build", "--version", version, "--protocols", protocols, "--out", str(out),
              "--build-time", build_time, "--json")  # fmt: skip
    doc: dict[str, Any] = json.loads(res.stdout)
    return doc


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """1.0.0 with the source tree's protocols and 1.0.1 that adds protocol 2, built once for the module."""
    out = tmp_path_factory.mktemp("artifacts")
    _build(out, "1.0.0", "1")
    _build(out, "1.0.1", "1,2")
    return {"1.0.0": out / "iotex-node-1.0.0.tar.gz", "1.0.1": out / "iotex-node-1.0.1.tar.gz"}


def _install(art: Path, root: Path, *extra: str) -> dict[str, Any]:
    res = _ok("release", "install", str(art), "--root", str(root), "--json", *extra)
    doc: dict[str, Any] = json.loads(res.stdout)
    return doc


def _members(art: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(art, "r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def _read_member(art: Path, name: str) -> bytes:
    with tarfile.open(art, "r:gz") as tar:
        f = tar.extractfile(name)
        assert f is not None
        return f.read()


# --- the source tree's release ----------------------------------------------------------------------


def test_source_tree_release_matches_its_code() -> None:
    m = release_mod.current()
    doc = json.loads(release_mod.release_file().read_text())
    assert m.version == doc["version"] == iotex_node.__version__
    # The source tree declares exactly the protocols its code executes (constants.SUPPORTED_PROTOCOLS);
    # the non-compatible hotfix drill builds a release that adds the next one.
    assert m.protocols == tuple(doc["protocols"]) == tuple(SUPPORTED_PROTOCOLS)
    assert m.build_time is None and m.source_sha256 is None
    pyproject = (NODE_SRC / "pyproject.toml").read_text()
    assert '"release.json"' in pyproject and f'\nversion = "{doc["version"]}"\n' in pyproject
    assert json.loads(_ok("release", "info", "--json").stdout)["version"] == m.version


def test_manifest_validation() -> None:
    for good in (
        "1.0",
        "1.0.1",
        "10.20.30.40",
        "1.0.1rc1",
        "1.0.1.dev0",
        "1.0.1-hotfix.2",
        "1.0.1+drill",
        "0.0.0+src",
        "1.0.1-rc.1+b-5",
    ):
        assert release_mod.validate_version(good) == good
    for bad in ("1", "1.0.x", "01.0", "1.01", "v1.0", "1.0.", "1.0/2", "../1.0", "", " 1.0", "1.0.1 ", "1" * 70 + ".0", 1.0):
        with pytest.raises(ReleaseError, match="version"):
            release_mod.validate_version(bad)
    assert release_mod.parse_protocols("1, 2,3") == (1, 2, 3)
    for bad_p in ("", "2,1", "1,1", "0", "-1", "1,,2", "a", "1001", "\uff11"):
        with pytest.raises(ReleaseError, match="protocols"):
            release_mod.parse_protocols(bad_p)
    with pytest.raises(ReleaseError, match="protocols"):
        release_mod.Manifest("1.0.0", ())
    with pytest.raises(ReleaseError, match="protocols"):
        release_mod.validate_protocols([True])
    assert release_mod.parse_build_time("1714564800") == release_mod.parse_build_time(BUILD_TIME) == 1714564800
    assert release_mod.format_build_time(1714564800) == BUILD_TIME
    for bad_t in ("yesterday", "2024-05-01T12:00:00", "-5"):
        with pytest.raises(ReleaseError, match="build time"):
            release_mod.parse_build_time(bad_t)
    assert sorted(["1.0.10", "1.0.2", "1.0.2rc1", "0.9"], key=release_mod.version_key) == ["0.9", "1.0.2", "1.0.2rc1", "1.0.10"]


# --- build -------------------------------------------------------------------------------------------


def test_build_is_reproducible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = _build(tmp_path / "a", "1.2.3", "1,2")
    b = _build(tmp_path / "b", "1.2.3", "1,2")
    assert a["sha256"] == b["sha256"]
    assert (tmp_path / "a/iotex-node-1.2.3.tar.gz").read_bytes() == (tmp_path / "b/iotex-node-1.2.3.tar.gz").read_bytes()
    # The build time is an input (recorded in the manifest): another one, another artifact.
    c = _build(tmp_path / "c", "1.2.3", "1,2", build_time="2024-05-01T12:00:01Z")
    assert c["sha256"] != a["sha256"] and c["manifest"]["source_sha256"] == a["manifest"]["source_sha256"]
    # So are the protocols and the version; the source digest is not affected by either.
    d = _build(tmp_path / "d", "1.2.3", "1")
    e = _build(tmp_path / "e", "1.2.4", "1,2")
    assert len({a["sha256"], d["sha256"], e["sha256"]}) == 3
    assert {d["manifest"]["source_sha256"], e["manifest"]["source_sha256"]} == {a["manifest"]["source_sha256"]}
    # SOURCE_DATE_EPOCH stands in for --build-time.
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1714564800")
    (tmp_path / "f").mkdir()
    res = _ok("release", "build", "--version", "1.2.3", "--protocols", "1,2", "--out", str(tmp_path / "f"), "--json")
    assert json.loads(res.stdout)["sha256"] == a["sha256"]


@pytest.mark.slow  # runs the built release's launcher
def test_build_writes_artifact_checksum_and_manifest(tmp_path: Path) -> None:
    doc = _build(tmp_path, "1.0.1", "1,2")
    art = tmp_path / "iotex-node-1.0.1.tar.gz"
    sha = hashlib.sha256(art.read_bytes()).hexdigest()
    assert doc["sha256"] == sha and doc["artifact"] == str(art)
    # sha256sum format, checkable by the standard tool.
    assert (tmp_path / "iotex-node-1.0.1.tar.gz.sha256").read_text() == f"{sha}  iotex-node-1.0.1.tar.gz\n"
    if (tool := Path("/usr/bin/sha256sum")).exists():
        subprocess.run([str(tool), "-c", "--quiet", "iotex-node-1.0.1.tar.gz.sha256"], cwd=tmp_path, check=True)
    outer = json.loads((tmp_path / "iotex-node-1.0.1.manifest.json").read_text())
    assert outer == {
        "name": "iotex-node",
        "format": 1,
        "version": "1.0.1",
        "protocols": [1, 2],
        "build_time": BUILD_TIME,
        "source_sha256": outer["source_sha256"],
        "artifact": "iotex-node-1.0.1.tar.gz",
        "sha256": sha,
    }
    assert len(outer["source_sha256"]) == 64
    # Immutable: read-only files.
    for p in tmp_path.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o444, p

    members = _members(art)
    top = "iotex-node-1.0.1"
    assert all(n == top or n.startswith(top + "/") for n in members)
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in members)
    for m in members.values():
        assert (m.uid, m.gid, m.uname, m.gname) == (0, 0, "", "") and m.mtime == 1714564800
        assert m.isdir() or m.isreg()
    assert members[f"{top}/bin/iotex-node"].mode == 0o755
    assert members[f"{top}/lib/iotex_node/__init__.py"].mode == 0o644
    # Every .py of the package is carried, and the package data.
    src = Path(iotex_node.__file__).parent
    for p in src.rglob("*.py"):
        if "__pycache__" not in p.parts:
            rel = p.relative_to(src).as_posix()
            assert _read_member(art, f"{top}/lib/iotex_node/{rel}") == p.read_bytes(), rel
    for data_file in ("openapi.json", "py.typed"):
        assert f"{top}/lib/iotex_node/{data_file}" in members

    inner = json.loads(_read_member(art, f"{top}/manifest.json"))
    assert {k: inner[k] for k in ("version", "protocols", "build_time", "source_sha256")} == {
        "version": "1.0.1",
        "protocols": [1, 2],
        "build_time": BUILD_TIME,
        "source_sha256": outer["source_sha256"],
    }
    assert set(inner["files"]) == {n[len(top) + 1 :] for n, m in members.items() if m.isreg()} - {"manifest.json"}
    for rel, h in inner["files"].items():
        assert hashlib.sha256(_read_member(art, f"{top}/{rel}")).hexdigest() == h
    rel_json = json.loads(_read_member(art, f"{top}/lib/iotex_node/release.json"))
    assert rel_json == {
        "version": "1.0.1",
        "protocols": [1, 2],
        "build_time": BUILD_TIME,
        "source_sha256": outer["source_sha256"],
    }
    launcher = _read_member(art, f"{top}/bin/iotex-node").decode()
    assert launcher.startswith("#!/bin/sh\n") and 'exec "${python:-python3}" -B -P -m iotex_node "$@"' in launcher

    # Never overwritten.
    before = art.read_bytes()
    res = _cli("release", "build", "--version", "1.0.1", "--protocols", "1", "--out", str(tmp_path))
    _one_line_error(res, "exists", "refusing to overwrite")
    assert art.read_bytes() == before


# --- install -----------------------------------------------------------------------------------------


def _tampered_copy(src: Path, dst_dir: Path) -> Path:
    dst_dir.mkdir()
    dst = dst_dir / src.name
    data = bytearray(src.read_bytes())
    data[len(data) // 2] ^= 0x01
    dst.write_bytes(bytes(data))
    (dst_dir / (src.name + ".sha256")).write_bytes(src.with_name(src.name + ".sha256").read_bytes())
    return dst


def test_tampered_artifact_is_refused_before_anything_is_unpacked(
    tmp_path: Path, artifacts: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = _tampered_copy(artifacts["1.0.1"], tmp_path / "dl")
    root = tmp_path / "root"
    root.mkdir()

    def no_unpacking(*a: object, **kw: object) -> None:
        raise AssertionError("the tarball was opened before its checksum was verified")

    monkeypatch.setattr(artifact.tarfile, "open", no_unpacking)
    _one_line_error(_cli("release", "install", str(bad), "--root", str(root)), "fails its checksum", "not installed")
    assert sorted(os.listdir(root)) == []
    # A wrong --sha256 is refused the same way, even for an intact artifact; a malformed one is named.
    good_sha = hashlib.sha256(artifacts["1.0.1"].read_bytes()).hexdigest()
    wrong = ("0" if good_sha[0] != "0" else "1") + good_sha[1:]
    _one_line_error(
        _cli("release", "install", str(artifacts["1.0.1"]), "--root", str(root), "--sha256", wrong), "fails its checksum"
    )
    _one_line_error(
        _cli("release", "install", str(artifacts["1.0.1"]), "--root", str(root), "--sha256", "xyz"), "--sha256", "sha256"
    )
    # No checksum beside it and none given: refused.
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    (lonely / artifacts["1.0.1"].name).write_bytes(artifacts["1.0.1"].read_bytes())
    _one_line_error(_cli("release", "install", str(lonely / artifacts["1.0.1"].name), "--root", str(root)), "no checksum")
    assert sorted(os.listdir(root)) == []


def _tar_gz(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for ti, data in entries:
            if data is not None:
                ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _entry(
    name: str, kind: bytes = tarfile.REGTYPE, data: bytes | None = b"x", linkname: str = ""
) -> tuple[tarfile.TarInfo, bytes | None]:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.linkname = linkname
    ti.mode = 0o644
    return ti, (data if kind == tarfile.REGTYPE else None)


TOP = "iotex-node-6.6.6"


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        (_entry(f"{TOP}/../../escaped"), "not a plain relative path"),
        (_entry("/tmp/iotex-escaped"), "not a plain relative path"),
        (_entry(f"{TOP}/lib/./x"), "not a plain relative path"),
        (_entry(f"{TOP}/lib/evil", tarfile.SYMTYPE, linkname="/etc/passwd"), "link or special file"),
        (_entry(f"{TOP}/lib/evil", tarfile.LNKTYPE, linkname="/etc/passwd"), "link or special file"),
        (_entry(f"{TOP}/lib/fifo", tarfile.FIFOTYPE), "link or special file"),
        (_entry("elsewhere/x"), "outside the top directory"),
        (_entry(f"{TOP}/manifest.json"), "appears twice"),
    ],
)
def test_unsafe_tarball_is_refused(tmp_path: Path, bad: tuple[tarfile.TarInfo, bytes | None], needle: str) -> None:
    manifest = json.dumps({"version": "6.6.6", "protocols": [1], "files": {"bin/iotex-node": "0" * 64}}).encode()
    data = _tar_gz([_entry(f"{TOP}/manifest.json", data=manifest), bad])
    art = tmp_path / f"{TOP}.tar.gz"
    art.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    (tmp_path / f"{TOP}.tar.gz.sha256").write_text(f"{sha}  {art.name}\n")
    root = tmp_path / "root"
    root.mkdir()
    _one_line_error(_cli("release", "install", str(art), "--root", str(root)), "unsafe artifact", needle)
    assert os.listdir(root / "releases") == []
    assert not (tmp_path / "escaped").exists() and not Path("/tmp/iotex-escaped").exists()


def test_artifact_whose_files_do_not_match_its_manifest_is_refused(tmp_path: Path, artifacts: dict[str, Path]) -> None:
    # Re-pack a genuine artifact with one source file changed (and a matching checksum file, as an attacker
    # who controls the download directory could): the per-file hashes in the manifest catch it.
    top = "iotex-node-1.0.1"
    entries = []
    with tarfile.open(artifacts["1.0.1"], "r:gz") as tar:
        for m in tar.getmembers():
            f = tar.extractfile(m) if m.isreg() else None
            content = f.read() if f else None
            if m.name == f"{top}/lib/iotex_node/node.py":
                assert content is not None
                content += b"\n# backdoor\n"
            entries.append((m, content))
    data = _tar_gz(entries)
    art = tmp_path / f"{top}.tar.gz"
    art.write_bytes(data)
    (tmp_path / f"{top}.tar.gz.sha256").write_text(hashlib.sha256(data).hexdigest() + "\n")
    root = tmp_path / "root"
    root.mkdir()
    _one_line_error(_cli("release", "install", str(art), "--root", str(root)), "lib/iotex_node/node.py", "sha256")
    assert os.listdir(root / "releases") == []


def test_two_releases_install_side_by_side(tmp_path: Path, artifacts: dict[str, Path]) -> None:
    root = tmp_path / "opt-iotex"  # created by the first install (its parent exists)
    a = _install(artifacts["1.0.0"], root)
    b = _install(artifacts["1.0.1"], root)
    assert (a["version"], a["protocols"], a["changed"]) == ("1.0.0", [1], True)
    assert (b["version"], b["protocols"], b["changed"]) == ("1.0.1", [1, 2], True)
    assert sorted(os.listdir(root / "releases")) == ["1.0.0", "1.0.1"]  # no temporary directories left
    assert not (root / "current").exists()  # installing does not activate
    # Installed files are read-only; the launcher stays executable.
    for dirpath, dirnames, filenames in os.walk(root / "releases"):
        for name in dirnames:
            assert stat.S_IMODE(os.stat(os.path.join(dirpath, name)).st_mode) == 0o555
        for name in filenames:
            mode = stat.S_IMODE(os.stat(os.path.join(dirpath, name)).st_mode)
            assert mode == (0o555 if name == "iotex-node" else 0o444), (dirpath, name)
    assert (root / "releases/1.0.1/python").read_text() == sys.executable + "\n"
    install_doc = json.loads((root / "releases/1.0.1/install.json").read_text())
    assert install_doc["sha256"] == b["sha256"] == hashlib.sha256(artifacts["1.0.1"].read_bytes()).hexdigest()

    # The same artifact again: nothing to do. Another artifact under an installed version: refused.
    again = _install(artifacts["1.0.1"], root)
    assert again["changed"] is False
    other = _build(tmp_path / "other", "1.0.1", "1,2", build_time="2024-06-01T00:00:00Z")
    _one_line_error(_cli("release", "install", other["artifact"], "--root", str(root)), "already installed", "immutable")

    listed = json.loads(_ok("release", "list", "--root", str(root), "--json").stdout)
    assert [(r["version"], r["protocols"], r["sha256"], r["status"]) for r in listed["releases"]] == [
        ("1.0.0", [1], a["sha256"], "ok"),
        ("1.0.1", [1, 2], b["sha256"], "ok"),
    ]
    assert listed["active"] is None and listed["previous"] is None


@pytest.mark.slow  # runs the built release's launcher
def test_installed_release_runs_its_own_copy(tmp_path: Path, artifacts: dict[str, Path]) -> None:
    root = tmp_path / "root"
    _install(artifacts["1.0.0"], root)
    _install(artifacts["1.0.1"], root)
    _ok("release", "activate", "1.0.1", "--root", str(root))
    env = {k: v for k, v in os.environ.items() if k not in ("IOTEX_PYTHON", "PYTHONPATH")}
    # Run from the directory that holds the source package: -P keeps it from shadowing the release's copy.
    for launcher, version in [
        (root / "releases/1.0.0/bin/iotex-node", "1.0.0"),
        (root / "current/bin/iotex-node", "1.0.1"),
    ]:
        out = subprocess.run([str(launcher), "--version"], cwd=NODE_SRC, env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == f"iotex-node, version {version}"
    # Through a symlink to the launcher too (as /usr/local/bin/iotex-node -> ROOT/current/bin/iotex-node would be).
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/iotex-node").symlink_to("../root/current/bin/iotex-node")
    info = subprocess.run([str(tmp_path / "bin/iotex-node"), "release", "info", "--json"], env=env, capture_output=True,
                          text=True, check=True)  # fmt: skip
    doc = json.loads(info.stdout)
    assert (doc["version"], doc["protocols"]) == ("1.0.1", [1, 2])
    assert doc["path"] == str((root / "releases/1.0.1/lib/iotex_node").resolve())
    # Under the release's PYTHONPATH, the library itself reports the release.
    code = (
        "import iotex_node as n, iotex_node.release as r\nm = r.current()\nprint(n.__version__, list(m.protocols), m.build_time)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True,
                         env={**env, "PYTHONPATH": str(root / "current/lib")})  # fmt: skip
    assert out.stdout.split() == ["1.0.1", "[1,", "2]", BUILD_TIME]


def test_install_compiles_the_package_once_and_records_its_bytecode(tmp_path: Path, artifacts: dict[str, Path]) -> None:
    root = tmp_path / "root"
    _install(artifacts["1.0.0"], root)
    release = root / "releases/1.0.0"
    recorded = json.loads((release / "install.json").read_text())["bytecode"]
    sources = {p.relative_to(release) for p in (release / "lib").rglob("*.py")}
    # One .pyc per source, for the interpreter the release runs with, read-only like the sources.
    assert len(recorded) == len(sources) > 10
    for rel, sha in recorded.items():
        pyc = release / rel
        assert pyc.parent.name == "__pycache__" and pyc.name.endswith(f".{sys.implementation.cache_tag}.pyc")
        assert hashlib.sha256(pyc.read_bytes()).hexdigest() == sha
        assert stat.S_IMODE(pyc.stat().st_mode) == 0o444
        # checked-hash: Python uses it only while the source still has the hash it was compiled from
        assert int.from_bytes(pyc.read_bytes()[4:8], "little") == 0b11
    _ok("release", "activate", "1.0.0", "--root", str(root))  # the deep check accepts the recorded bytecode


def test_altered_or_unrecorded_bytecode_makes_a_release_corrupt(tmp_path: Path, artifacts: dict[str, Path]) -> None:
    root = tmp_path / "root"
    _install(artifacts["1.0.0"], root)
    _install(artifacts["1.0.1"], root)
    pycache = root / "releases/1.0.1/lib/iotex_node/__pycache__"
    victim = next(pycache.glob("chain.*.pyc"))
    os.chmod(pycache, 0o700)
    os.chmod(victim, 0o644)
    victim.write_bytes(victim.read_bytes() + b"\0")
    _one_line_error(_cli("release", "activate", "1.0.1", "--root", str(root)), "corrupt", victim.name)
    victim.unlink()
    (pycache / f"extra.{sys.implementation.cache_tag}.pyc").write_bytes(b"")
    _one_line_error(_cli("release", "activate", "1.0.1", "--root", str(root)), "corrupt")


@pytest.mark.slow  # the release's interpreter is another program: install compiles with it in a process of its own
def test_install_compiles_with_the_interpreter_the_release_runs_with(tmp_path: Path, artifacts: dict[str, Path]) -> None:
    wrapper = tmp_path / "python-wrapper"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    root = tmp_path / "root"
    _install(artifacts["1.0.0"], root, "--python", str(wrapper))
    release = root / "releases/1.0.0"
    assert (release / "python").read_text() == f"{wrapper}\n"
    recorded = json.loads((release / "install.json").read_text())["bytecode"]
    assert "lib/iotex_node/__pycache__/node." + sys.implementation.cache_tag + ".pyc" in recorded
    _ok("release", "activate", "1.0.0", "--root", str(root))
    # a source that does not compile with that interpreter is refused at install, not at the node's start
    broken = tmp_path / "broken-python"
    broken.write_text("#!/bin/sh\nexit 3\n")
    broken.chmod(0o755)
    _one_line_error(_cli("release", "install", str(artifacts["1.0.1"]), "--root", str(root), "--python", str(broken)),
                    "does not compile", "exit 3")  # fmt: skip
    assert sorted(os.listdir(root / "releases")) == ["1.0.0"]


@pytest.mark.slow  # runs the release's interpreter
def test_an_installed_release_loads_the_node_from_its_bytecode(tmp_path: Path, artifacts: dict[str, Path]) -> None:
    root = tmp_path / "root"
    _install(artifacts["1.0.0"], root)
    lib = root / "releases/1.0.0/lib"
    env = {k: v for k, v in os.environ.items() if k not in ("IOTEX_PYTHON",)} | {"PYTHONPATH": str(lib)}
    # As the launcher runs it (-B -P); -v reports each module read from a .pyc.
    out = subprocess.run([sys.executable, "-B", "-P", "-v", "-c", "import iotex_node.node"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert f"code object from '{lib / 'iotex_node/__pycache__'}/node." in out.stderr
    assert f"code object from '{lib / 'iotex_node/__pycache__'}/consensus." in out.stderr


# --- switch ------------------------------------------------------------------------------------------


def _active(root: Path) -> str:
    return os.readlink(root / "current")


def test_activate_and_switch_back(tmp_path: Path, artifacts: dict[str, Path]) -> None:
    root = tmp_path / "root"
    _install(artifacts["1.0.0"], root)
    _install(artifacts["1.0.1"], root)
    s = json.loads(_ok("release", "activate", "1.0.0", "--root", str(root), "--json").stdout)
    assert s == {"active": "1.0.0", "previous": None, "changed": True}
    assert _active(root) == "releases/1.0.0"  # relative: the root can be moved or mounted elsewhere
    assert "active 1.0.1 (previous 1.0.0)" in _ok("release", "activate", "1.0.1", "--root", str(root)).stdout
    assert (_active(root), os.readlink(root / "previous")) == ("releases/1.0.1", "releases/1.0.0")
    assert "already active" in _ok("release", "activate", "1.0.1", "--root", str(root)).stdout
    assert os.readlink(root / "previous") == "releases/1.0.0"

    s = json.loads(_ok("release", "switch-back", "--root", str(root), "--json").stdout)
    assert s == {"active": "1.0.0", "previous": "1.0.1", "changed": True}
    assert json.loads((root / "current/manifest.json").read_text())["version"] == "1.0.0"
    s = json.loads(_ok("release", "switch-back", "--root", str(root), "--json").stdout)
    assert s == {"active": "1.0.1", "previous": "1.0.0", "changed": True}

    text = _ok("release", "list", "--root", str(root)).stdout.splitlines()
    assert text[0].split()[:4] == ["VERSION", "PROTOCOLS", "BUILD", "TIME"]
    assert text[1].split()[:3] == ["-", "1.0.0", "1"] and text[1].endswith("ok (previous)")
    assert text[2].split()[:3] == ["*", "1.0.1", "1,2"] and text[2].endswith("ok (active)")
    assert sorted(p for p in os.listdir(root) if p.startswith(".") and p != ".lock") == []  # no temporary links left


def test_install_with_activate_installs_and_activates_in_one_run(tmp_path: Path, artifacts: dict[str, Path]) -> None:
    root = tmp_path / "root"
    _install(artifacts["1.0.0"], root)
    artifact.activate(root, "1.0.0")
    doc = json.loads(_ok("release", "install", str(artifacts["1.0.1"]), "--root", str(root), "--activate", "--json").stdout)
    assert doc["version"] == "1.0.1" and doc["changed"] is True
    assert doc["activated"] == {"active": "1.0.1", "previous": "1.0.0", "changed": True}
    assert (_active(root), os.readlink(root / "previous")) == ("releases/1.0.1", "releases/1.0.0")
    # again: installed and active already, nothing changes
    again = _ok("release", "install", str(artifacts["1.0.1"]), "--root", str(root), "--activate").stdout
    assert "already installed" in again and "1.0.1 is already active" in again
    # without --activate the active release stays
    _ok("release", "install", str(artifacts["1.0.0"]), "--root", str(root))
    assert _active(root) == "releases/1.0.1"


def test_switching_is_atomic_for_readers(tmp_path: Path, artifacts: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader resolving ROOT/current all the while 200 switches happen always finds a complete release."""
    root = tmp_path / "root"
    _install(artifacts["1.0.0"], root)
    _install(artifacts["1.0.1"], root)
    artifact.activate(root, "1.0.0")
    artifact.activate(root, "1.0.1")
    replaced: list[str] = []
    real_replace = os.replace

    def spy_replace(src: Any, dst: Any) -> None:
        replaced.append(os.path.basename(dst))
        real_replace(src, dst)

    monkeypatch.setattr(artifact.os, "replace", spy_replace)
    stop = threading.Event()
    seen: dict[str, int] = {}
    failures: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                v = json.loads((root / "current" / "manifest.json").read_bytes())["version"]
                if not (root / "current" / "bin" / "iotex-node").is_file():
                    failures.append(f"{v}: no launcher")
                seen[v] = seen.get(v, 0) + 1
            except (OSError, ValueError) as exc:
                failures.append(repr(exc))

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(200):
            if i % 2:
                artifact.activate(root, "1.0.0" if _active(root).endswith("1.0.1") else "1.0.1")
            else:
                artifact.switch_back(root)
            time.sleep(0.0005)
    finally:
        stop.set()
        t.join(10)
    assert failures == []
    assert set(seen) == {"1.0.0", "1.0.1"} and sum(seen.values()) > 200
    # Each switch renames a new `current` link over the old one (and then `previous`); nothing else.
    assert replaced.count("current") == 200 and set(replaced) == {"current", "previous"}
    assert os.path.islink(root / "current") and os.path.islink(root / "previous")


def test_corrupt_release_is_not_activated(tmp_path: Path, artifacts: dict[str, Path]) -> None:
    root = tmp_path / "root"
    _install(artifacts["1.0.0"], root)
    _install(artifacts["1.0.1"], root)
    _ok("release", "activate", "1.0.0", "--root", str(root))
    victim = root / "releases/1.0.1/lib/iotex_node/chain.py"
    os.chmod(victim.parent, 0o700)
    os.chmod(victim, 0o644)
    victim.write_text(victim.read_text() + "\n# edited on the host\n")
    _one_line_error(_cli("release", "activate", "1.0.1", "--root", str(root)), "1.0.1", "corrupt", "lib/iotex_node/chain.py")
    assert _active(root) == "releases/1.0.0"
    # A release without its manifest is reported by list, not hidden.
    os.chmod(root / "releases/1.0.1", 0o700)
    os.unlink(root / "releases/1.0.1/manifest.json")
    rows = {r["version"]: r for r in json.loads(_ok("release", "list", "--root", str(root), "--json").stdout)["releases"]}
    assert rows["1.0.0"]["status"] == "ok" and rows["1.0.1"]["status"].startswith("corrupt:")
    _one_line_error(_cli("release", "activate", "1.0.1", "--root", str(root)), "corrupt", "manifest.json")
    # `current` that is not a symlink is never replaced.
    other = tmp_path / "other"
    _install(artifacts["1.0.0"], other)
    (other / "current").mkdir()
    _one_line_error(_cli("release", "activate", "1.0.0", "--root", str(other)), "not a symlink")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["build", "--version", "1.0.x", "--protocols", "1"], ["version '1.0.x'", "must look like"]),
        (["build", "--version", "01.0.1", "--protocols", "1"], ["version '01.0.1'"]),
        (["build", "--version", "../../x", "--protocols", "1"], ["version '../../x'"]),
        (["build", "--version", "1.0.1", "--protocols", ""], ["protocols ''"]),
        (["build", "--version", "1.0.1", "--protocols", "2,1"], ["protocols", "ascending"]),
        (["build", "--version", "1.0.1", "--protocols", "1,1"], ["protocols", "duplicates"]),
        (["build", "--version", "1.0.1", "--protocols", "0"], ["protocols", "from 1 to"]),
        (["build", "--version", "1.0.1", "--protocols", "1,two"], ["protocols '1,two'"]),
        (["build", "--version", "1.0.1", "--protocols", "1", "--build-time", "yesterday"], ["build time 'yesterday'"]),
        (["build", "--version", "1.0.1", "--protocols", "1", "--out", "{tmp}/missing"], ["output directory", "does not exist"]),
        (["install", "{tmp}/nope.tar.gz", "--root", "{tmp}"], ["artifact", "nope.tar.gz", "does not exist"]),
        (["install", "{art}", "--root", "{tmp}/no/such/root"], ["release root", "does not exist"]),
        (["install", "{art}", "--root", "{tmp}/r", "--python", "python3"], ["python 'python3'", "absolute path"]),
        (["activate", "9.9.9", "--root", "{root}"], ["release 9.9.9 is not installed", "installed: 1.0.0"]),
        (["activate", "latest", "--root", "{root}"], ["version 'latest'"]),
        (["activate", "1.0.0", "--root", "{tmp}/missing"], ["release root", "missing", "does not exist"]),
        (["switch-back", "--root", "{root}"], ["no previous release"]),
        (["switch-back", "--root", "{tmp}/missing"], ["release root", "does not exist"]),
        (["list", "--root", "{tmp}/missing"], ["release root", "does not exist"]),
    ],
)
def test_bad_arguments_give_one_line_errors(
    tmp_path: Path, artifacts: dict[str, Path], args: list[str], needles: list[str]
) -> None:
    root = tmp_path / "root"
    _install(artifacts["1.0.0"], root)
    subs = {"{tmp}": str(tmp_path), "{root}": str(root), "{art}": str(artifacts["1.0.0"])}
    argv = []
    for a in args:
        for k, v in subs.items():
            a = a.replace(k, v)
        argv.append(a)
    if argv[0] == "build" and "--out" not in argv:
        argv += ["--out", str(tmp_path)]
    _one_line_error(_cli("release", *argv), *needles)
    assert sorted(os.listdir(root / "releases")) == ["1.0.0"]


# --- a node started from a release -------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.network
def test_localnet_node_runs_from_an_installed_release(tmp_path: Path) -> None:
    from iotex_ops.lab import LocalNet

    out = tmp_path / "artifacts"
    _build(out, "7.7.7-drill.1", "1,2")
    root = tmp_path / "opt"
    _install(out / "iotex-node-7.7.7-drill.1.tar.gz", root)
    _ok("release", "activate", "7.7.7-drill.1", "--root", str(root))
    net = LocalNet.generate(tmp_path / "net", 1)
    try:
        n = net.start_node(0, release=root / "current")
        deadline = time.monotonic() + 60
        while (chain := net.chain(0)) is None or chain["finalized_height"] < 2:
            assert n.running, f"the node exited: {n.log_path and n.log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no finalized block 2 in 60 s: {chain}"
            time.sleep(0.2)
        assert chain is not None and chain["node_version"] == "7.7.7-drill.1", chain
        assert n.running and n.proc is not None
        # The process is the release's python (the launcher exec'd it), running the release's lib.
        cmdline = Path(f"/proc/{n.proc.pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[1:5] == [b"-B", b"-P", b"-m", b"iotex_node"], cmdline
        environ = Path(f"/proc/{n.proc.pid}/environ").read_bytes().split(b"\0")
        assert f"PYTHONPATH={(root / 'releases/7.7.7-drill.1/lib').resolve()}".encode() in environ
    finally:
        net.stop()
    assert not net.node(0).running
