"""Release artifacts of the node: build, verify, install side by side, switch atomically.

An artifact is `iotex-node-<version>.tar.gz` holding one directory `iotex-node-<version>/`:

    bin/iotex-node          POSIX sh launcher: runs `python -P -m iotex_node` with PYTHONPATH=<release>/lib
    lib/iotex_node/...      the package's *.py and data files; release.json names this release
    manifest.json           version, protocols, build time, source digest and the sha256 of every file

beside `<artifact>.sha256` (sha256sum format) and `<artifact-name>.manifest.json` (the manifest plus the
artifact's own sha256). The tarball is deterministic: the same package files, version, protocols and build
time give the same bytes, so the same sha256.

On a host, releases live under a root:

    ROOT/releases/<version>/   one extracted artifact each, read-only, plus `python`, `install.json` and
                               the package's bytecode for that python (lib/**/__pycache__/*.pyc)
    ROOT/current  -> releases/<version>    the active release (a relative symlink, replaced atomically)
    ROOT/previous -> releases/<version>    the one active before it, for an instant switch back

Installing never touches `current`; activation never touches a release's files. Processes started from
`ROOT/current/bin/iotex-node` resolve the link once at start, so switching does not change a running node:
restarting it does.

Bytecode: the launcher runs Python with -B (it writes nothing into an immutable release), so without
bytecode every start of the node would compile its sources again (about 0.1 s of a restart on a slow CPU).
`install` compiles them once, with the interpreter the release runs with, in "checked-hash" mode (Python
uses a .pyc only while the source's hash matches the one it was compiled from), and records each .pyc's
sha256 in install.json, so that the deep check of `activate` verifies the bytecode as it verifies the sources.
Compiling also proves at install time that this interpreter can parse every module of the release.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import hmac
import importlib.util
import io
import json
import os
import posixpath
import py_compile
import secrets
import shutil
import stat
import subprocess
import sys
import tarfile
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iotex_node.errors import ReleaseError
from iotex_node.fsutil import fsync_dir
from iotex_node.release import (
    RELEASE_FILE,
    Manifest,
    format_build_time,
    parse_build_time,
    validate_protocols,
    validate_version,
    version_key,
)

NAME = "iotex-node"
FORMAT = 1
MANIFEST = "manifest.json"
LAUNCHER = "bin/iotex-node"
PACKAGE = "iotex_node"
# What of the package goes into a release: sources and the declared package data, nothing else
# (no __pycache__, editor files or build leftovers), so a build is reproducible from the sources alone.
PACKAGE_SUFFIXES = (".py", ".pyi", ".json", ".typed")
MAX_ARTIFACT_BYTES = 64 * 1024 * 1024
MAX_UNPACKED_BYTES = 256 * 1024 * 1024
MAX_MEMBERS = 10_000
# Written by `install` into the release directory (not part of the artifact).
PYTHON_FILE = "python"
INSTALL_FILE = "install.json"
RELEASES = "releases"
CURRENT = "current"
PREVIOUS = "previous"
LOCK_FILE = ".lock"

LAUNCHER_TEMPLATE = """#!/bin/sh
# iotex-node {version}: runs this release's own copy of the node (written by `iotex-node release build`).
# Python: $IOTEX_PYTHON, else the one recorded at install in <release>/python, else python3; it must
# provide the node's dependencies. The release's lib is the only PYTHONPATH entry, and -P keeps the
# working directory off sys.path, so no other copy of iotex_node can shadow this one. -B: an installed
# release is immutable (its files are checked against the manifest), so Python writes no bytecode into it.
set -eu
self=$0
while [ -L "$self" ]; do
    link=$(readlink -- "$self")
    case $link in
        /*) self=$link ;;
        *) self=$(dirname -- "$self")/$link ;;
    esac
done
release=$(CDPATH='' cd -P -- "$(dirname -- "$self")/.." && pwd -P)
python=${{IOTEX_PYTHON:-}}
if [ -z "$python" ] && [ -r "$release/{python_file}" ]; then
    IFS= read -r python < "$release/{python_file}" || true
fi
PYTHONPATH=$release/lib
export PYTHONPATH
exec "${{python:-python3}}" -B -P -m iotex_node "$@"
"""


def artifact_name(version: str) -> str:
    return f"{NAME}-{version}.tar.gz"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256_file(path: Path) -> str:
    from iotex_node.signed_release import sha256_file

    return sha256_file(path)


def _dumps(doc: Any) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


# --- build -------------------------------------------------------------------------------------------


def package_dir() -> Path:
    import iotex_node

    return Path(iotex_node.__file__).resolve().parent


def package_files(pkg: Path) -> list[tuple[str, Path]]:
    """(path relative to the package, file) of everything a release carries, sorted."""
    out: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(pkg):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
        for fn in filenames:
            p = Path(dirpath) / fn
            if fn.startswith(".") or not fn.endswith(PACKAGE_SUFFIXES) or not p.is_file() or p.is_symlink():
                continue
            out.append((p.relative_to(pkg).as_posix(), p))
    out.sort(key=lambda t: t[0].split("/"))
    if not any(rel == "__init__.py" for rel, _ in out):
        raise ReleaseError(f"{pkg}: not the iotex_node package (no __init__.py)")
    return out


def source_digest(files: dict[str, bytes]) -> str:
    """sha256 over the sorted (path, sha256) of the package files, release.json excluded: two releases
    built from the same code have the same digest whatever their version and protocols."""
    h = hashlib.sha256()
    for rel in sorted(files, key=lambda r: r.split("/")):
        if rel != RELEASE_FILE:
            h.update(f"{rel}\0{_sha256(files[rel])}\n".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class Built:
    artifact: Path
    sha256: str
    sha256_file: Path
    manifest_file: Path
    manifest: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "artifact": str(self.artifact),
            "sha256": self.sha256,
            "sha256_file": str(self.sha256_file),
            "manifest_file": str(self.manifest_file),
            "manifest": {k: v for k, v in self.manifest.items() if k != "files"},
        }


def _tar_bytes(top: str, entries: dict[str, tuple[bytes, int]], mtime: int) -> bytes:
    """A gzipped ustar tarball whose bytes depend only on `entries` (path -> (data, mode)) and `mtime`."""
    dirs: set[str] = {top}
    for rel in entries:
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add(top + "/" + "/".join(parts[:i]))
    items: list[tuple[str, bytes | None, int]] = [(d, None, 0o755) for d in dirs]
    items += [(f"{top}/{rel}", data, mode) for rel, (data, mode) in entries.items()]
    items.sort(key=lambda t: t[0].split("/"))
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data, mode in items:
            ti = tarfile.TarInfo(name)
            ti.mtime, ti.mode, ti.uid, ti.gid, ti.uname, ti.gname = mtime, mode, 0, 0, "", ""
            if data is None:
                ti.type = tarfile.DIRTYPE
                tar.addfile(ti)
            else:
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def _publish(path: Path, data: bytes, mode: int = 0o444) -> None:
    """Write `path` whole or not at all, never replacing an existing file (link(2) refuses to)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise ReleaseError(f"{path} exists; refusing to overwrite a release artifact") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def build(
    version: str,
    protocols: tuple[int, ...] | list[int],
    out_dir: Path,
    build_time: str | int | None = None,
    pkg: Path | None = None,
) -> Built:
    """Build `out_dir/iotex-node-<version>.tar.gz` and its .sha256 and .manifest.json.

    build_time: seconds or ISO 8601; default $SOURCE_DATE_EPOCH, else now. It is recorded in the manifest
    and used as every entry's mtime, so passing the same value rebuilds the same bytes."""
    version = validate_version(version)
    protocols = validate_protocols(list(protocols))
    if build_time is None:
        build_time = os.environ.get("SOURCE_DATE_EPOCH") or int(time.time())
    epoch = parse_build_time(build_time)
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise ReleaseError(f"output directory {out_dir} does not exist")
    name = artifact_name(version)
    artifact = out_dir / name
    sha_file = out_dir / f"{name}.sha256"
    manifest_file = out_dir / f"{NAME}-{version}.manifest.json"
    for p in (artifact, sha_file, manifest_file):
        if p.exists() or p.is_symlink():
            raise ReleaseError(f"{p} exists; refusing to overwrite a release artifact")

    pkg = pkg or package_dir()
    sources = {rel: p.read_bytes() for rel, p in package_files(pkg)}
    rel_manifest = Manifest(version, protocols, format_build_time(epoch), source_digest(sources))
    sources[RELEASE_FILE] = _dumps(rel_manifest.to_json())
    entries: dict[str, tuple[bytes, int]] = {f"lib/{PACKAGE}/{rel}": (data, 0o644) for rel, data in sources.items()}
    launcher = LAUNCHER_TEMPLATE.format(version=version, python_file=PYTHON_FILE).encode()
    entries[LAUNCHER] = (launcher, 0o755)
    manifest = {
        "name": NAME,
        "format": FORMAT,
        **rel_manifest.to_json(),
        "files": {rel: _sha256(data) for rel, (data, _) in sorted(entries.items())},
    }
    entries[MANIFEST] = (_dumps(manifest), 0o644)
    data = _tar_bytes(f"{NAME}-{version}", entries, epoch)
    digest = _sha256(data)
    outer = {**manifest, "artifact": name, "sha256": digest}
    outer.pop("files")
    # The checksum and manifest first: whoever sees the tarball can verify it.
    _publish(manifest_file, _dumps(outer))
    _publish(sha_file, f"{digest}  {name}\n".encode())
    _publish(artifact, data)
    return Built(artifact, digest, sha_file, manifest_file, outer)


# --- install -----------------------------------------------------------------------------------------


def _expected_sha256(artifact: Path, sha256: str | None) -> str:
    if sha256 is not None:
        text, where = sha256.strip().lower(), "--sha256"
    else:
        side = artifact.with_name(artifact.name + ".sha256")
        try:
            line = side.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            raise ReleaseError(f"no checksum: {side} is missing (or pass --sha256)") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ReleaseError(f"{side}: unreadable checksum file: {exc}") from None
        words = line.split()
        if len(words) == 2 and words[1].lstrip("*") != artifact.name:
            raise ReleaseError(f"{side}: checksum is for {words[1].lstrip('*')}, not {artifact.name}")
        text, where = (words[0].lower() if words else ""), str(side)
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise ReleaseError(f"{where}: not a sha256 (64 hex digits)")
    return text


def _read_verified(artifact: Path, sha256: str | None) -> tuple[bytes, str]:
    """The artifact's bytes, read once and checked against the expected sha256 before anything else."""
    if not artifact.is_file():
        raise ReleaseError(f"artifact {artifact} does not exist")
    expected = _expected_sha256(artifact, sha256)
    if artifact.stat().st_size > MAX_ARTIFACT_BYTES:
        raise ReleaseError(f"artifact {artifact} is larger than {MAX_ARTIFACT_BYTES} bytes")
    data = artifact.read_bytes()
    actual = _sha256(data)
    if not hmac.compare_digest(actual, expected):
        raise ReleaseError(f"artifact {artifact} fails its checksum: sha256 {actual}, expected {expected}; not installed")
    return data, actual


@dataclass(frozen=True)
class _Member:
    rel: str  # path inside the release directory ("" for the top directory)
    info: tarfile.TarInfo


def _safe_members(tar: tarfile.TarFile) -> tuple[str, list[_Member]]:
    """The single top directory and every member below it; refuse anything that could write elsewhere."""
    members = tar.getmembers()
    if not members or len(members) > MAX_MEMBERS:
        raise ReleaseError(f"artifact has {len(members)} entries; expected 1 to {MAX_MEMBERS}")
    top: str | None = None
    seen: set[str] = set()
    out: list[_Member] = []
    total = 0
    for m in members:
        name = m.name
        parts = name.rstrip("/").split("/")
        if (
            name.startswith("/")
            or "\\" in name
            or "\0" in name
            or any(p in ("", ".", "..") for p in parts)
            or posixpath.normpath(name) != name.rstrip("/")
        ):
            raise ReleaseError(f"unsafe artifact: entry {name!r} is not a plain relative path")
        if not (m.isreg() or m.isdir()):
            raise ReleaseError(f"unsafe artifact: entry {name!r} is a link or special file; only files and directories may be")
        top = top or parts[0]
        if parts[0] != top:
            raise ReleaseError(f"unsafe artifact: entry {name!r} is outside the top directory {top!r}")
        rel = "/".join(parts[1:])
        if rel in seen:
            raise ReleaseError(f"unsafe artifact: entry {name!r} appears twice")
        seen.add(rel)
        total += m.size
        if total > MAX_UNPACKED_BYTES:
            raise ReleaseError(f"artifact unpacks to more than {MAX_UNPACKED_BYTES} bytes")
        out.append(_Member(rel, m))
    assert top is not None
    out.sort(key=lambda mm: mm.rel.split("/") if mm.rel else [])
    return top, out


def _read_member(tar: tarfile.TarFile, m: tarfile.TarInfo) -> bytes:
    f = tar.extractfile(m)
    if f is None:
        raise ReleaseError(f"artifact entry {m.name!r} is not a file")
    return f.read()


def _parse_manifest(data: bytes, where: str) -> tuple[Manifest, dict[str, str]]:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise ReleaseError(f"{where}: not JSON: {exc}") from None
    m = Manifest.from_json(doc, where)
    files = doc.get("files")
    if (
        not isinstance(files, dict)
        or not files
        or not all(isinstance(k, str) and isinstance(v, str) and len(v) == 64 for k, v in files.items())
    ):
        raise ReleaseError(f"{where}: must list files with their sha256")
    for rel in files:
        if rel.startswith("/") or "\\" in rel or any(p in ("", ".", "..") for p in rel.split("/")):
            raise ReleaseError(f"{where}: file {rel!r} is not a plain relative path")
    if LAUNCHER not in files or f"lib/{PACKAGE}/{RELEASE_FILE}" not in files:
        raise ReleaseError(f"{where}: a release must carry {LAUNCHER} and lib/{PACKAGE}/{RELEASE_FILE}")
    return m, files


def _make_read_only(top: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(top, topdown=False):
        for fn in filenames:
            p = os.path.join(dirpath, fn)
            mode = os.lstat(p).st_mode
            os.chmod(p, 0o555 if mode & 0o111 else 0o444)
        os.chmod(dirpath, 0o555)  # noqa: S103 - read-only for everyone, no write bits


def _remove_tree(path: Path) -> None:
    """Remove a (possibly read-only) tree of ours."""
    if not path.exists():
        return
    for dirpath, _dirnames, _filenames in os.walk(path):
        os.chmod(dirpath, 0o700)
    shutil.rmtree(path)


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Serialize installs and switches on one root (readers never lock)."""
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _root(root: Path) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise ReleaseError(f"release root {root} does not exist (or is not a directory)")
    return root


@dataclass(frozen=True)
class Installed:
    version: str
    path: Path
    sha256: str
    protocols: tuple[int, ...]
    changed: bool  # False: the same artifact was already installed

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "path": str(self.path),
            "sha256": self.sha256,
            "protocols": list(self.protocols),
            "changed": self.changed,
        }


def install(
    artifact: Path,
    root: Path,
    sha256: str | None = None,
    python: str | None = None,
    signed: bytes | None = None,
    trusted: Mapping[str, Any] | None = None,
    channel: str | None = None,
    now: float | None = None,
) -> Installed:
    """Verify `artifact` and install it as ROOT/releases/<version> (read-only); `current` is untouched.

    python: the interpreter the launcher uses (recorded in the release); default the one running this.
    signed, trusted: a signed manifest (iotex_node.signed_release) and the publisher keys it must verify with:
    signature, expiry, replay (against ROOT/trust.json, the highest sequence seen per channel) and the
    artifact's size and sha256 are checked before anything is read further or written; the manifest's sha256
    then replaces the .sha256 file beside the artifact."""
    from iotex_node import signed_release

    artifact = Path(artifact)
    info = None
    if signed is not None or trusted is not None:
        if signed is None or not trusted:
            raise ReleaseError("a signed install needs both the signed manifest and the trusted keys")
        state = signed_release.TrustState(Path(root) / signed_release.TRUST_FILE)
        info = signed_release.verify(signed, trusted, state=state, artifact=artifact, channel=channel, now=now)
        if info.artifact != artifact.name:
            why = f"the manifest is for {info.artifact}, not {artifact.name}"
            raise signed_release.RefusedRelease("checksum", why, info.version)
        if sha256 is not None and sha256.strip().lower() != info.sha256:
            why = f"--sha256 {sha256.strip()} is not the signed manifest's {info.sha256}"
            raise signed_release.RefusedRelease("checksum", why, info.version)
        sha256 = info.sha256
    data, digest = _read_verified(artifact, sha256)  # nothing is unpacked before this succeeds
    python = python or sys.executable
    if not os.path.isabs(python) or not os.access(python, os.X_OK) or not os.path.isfile(python):
        raise ReleaseError(f"python {python!r}: must be the absolute path of an executable")
    root = Path(root)
    if not root.is_dir():
        if not root.parent.is_dir():
            raise ReleaseError(f"release root {root} does not exist, nor does its parent")
        root.mkdir(exist_ok=True)
    releases = root / RELEASES
    releases.mkdir(exist_ok=True)
    try:
        tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:gz")  # noqa: SIM115 - closed by the `with` below
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise ReleaseError(f"artifact {artifact} is not a gzipped tarball: {exc}") from None
    with _locked(root), tar:
        try:
            top, members = _safe_members(tar)
            by_rel = {m.rel: m.info for m in members}
            if MANIFEST not in by_rel or not by_rel[MANIFEST].isreg():
                raise ReleaseError(f"artifact {artifact} has no {top}/{MANIFEST}")
            manifest, files = _parse_manifest(_read_member(tar, by_rel[MANIFEST]), f"{artifact}:{MANIFEST}")
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            raise ReleaseError(f"artifact {artifact} is corrupt: {exc}") from None
        version = manifest.version
        if top != f"{NAME}-{version}":
            raise ReleaseError(f"artifact {artifact}: top directory {top!r} does not match version {version}")
        if info is not None and (info.version, info.protocols) != (version, manifest.protocols):
            raise ReleaseError(
                f"artifact {artifact}: it says release {version} protocols {list(manifest.protocols)}, "
                f"its signed manifest {info.version} protocols {list(info.protocols)}; not installed"
            )
        final = releases / version
        if final.exists() or final.is_symlink():
            have = _installed_sha256(final)
            if have == digest:
                if info is not None:
                    signed_release.TrustState(root / signed_release.TRUST_FILE).record(info)
                return Installed(version, final, digest, manifest.protocols, changed=False)
            raise ReleaseError(
                f"release {version} is already installed from another artifact (sha256 {have}, this one {digest}); "
                "releases are immutable: build a new version"
            )
        tmp = releases / f".install-{version}-{secrets.token_hex(4)}"
        try:
            tmp.mkdir(mode=0o700)
            try:
                _unpack(tar, members, tmp)
            except (tarfile.TarError, EOFError, zlib.error) as exc:
                raise ReleaseError(f"artifact {artifact} is corrupt: {exc}") from None
            _verify_tree(tmp, files, manifest, f"artifact {artifact}")
            _write_new(tmp / PYTHON_FILE, (python + "\n").encode())
            bytecode = _compile(tmp, final, python)
            meta = {
                "sha256": digest,
                "artifact": artifact.name,
                "python": python,
                "installed_at": int(time.time()),
                "bytecode": bytecode,
            }
            _write_new(tmp / INSTALL_FILE, _dumps(meta))
            _make_read_only(tmp)
            fsync_dir(tmp)
            os.rename(tmp, final)  # atomic: the release appears complete or not at all
            fsync_dir(releases)
        finally:
            _remove_tree(tmp)
        if info is not None:
            signed_release.TrustState(root / signed_release.TRUST_FILE).record(info)
    return Installed(version, final, digest, manifest.protocols, changed=True)


def _compile(release: Path, final: Path, python: str) -> dict[str, str]:
    """Compile the release's package for `python` (checked-hash .pyc files in __pycache__, shown in tracebacks
    under `final`, the path the release will have); {path relative to the release: sha256} of each .pyc."""
    lib = release / "lib"
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        for src in sorted(lib.rglob("*.py")):
            rel = src.relative_to(release)
            try:
                py_compile.compile(
                    str(src),
                    cfile=importlib.util.cache_from_source(str(src)),
                    dfile=str(final / rel),
                    doraise=True,
                    invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
                )
            except py_compile.PyCompileError as exc:
                raise ReleaseError(f"{rel} does not compile with {python}: {exc.msg.strip()[-300:]}") from None
    else:
        cmd = [python, "-I", "-m", "compileall", "-q", "--invalidation-mode", "checked-hash",
               "-s", str(release), "-p", str(final), str(lib)]  # fmt: skip
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ReleaseError(f"compiling the release with {python} failed: {exc}") from None
        if res.returncode != 0:
            tail = (res.stdout + res.stderr).strip()[-500:]
            raise ReleaseError(f"the release does not compile with {python} (exit {res.returncode}): {tail}")
    return {
        p.relative_to(release).as_posix(): _sha256_file(p) for p in sorted(lib.rglob("*.pyc")) if p.parent.name == "__pycache__"
    }


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _unpack(tar: tarfile.TarFile, members: list[_Member], dest: Path) -> None:
    """Write the checked members under `dest` ourselves: no tarfile.extract, no links, no modes from the tar."""
    for m in members:
        if not m.rel:
            continue
        target = dest.joinpath(*m.rel.split("/"))
        if m.info.isdir():
            target.mkdir(parents=True, exist_ok=True, mode=0o700)
            continue
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_new(target, _read_member(tar, m.info))
        if m.info.mode & 0o111:
            os.chmod(target, 0o700)


def _verify_tree(
    release: Path, files: dict[str, str], manifest: Manifest, where: str, bytecode: dict[str, str] | None = None
) -> None:
    """Every file the manifest lists is there with its sha256, and each .pyc that install compiled with the
    sha256 it recorded (`bytecode`); nothing else is, and release.json agrees."""
    for rel, want in (files | (bytecode or {})).items():
        p = release.joinpath(*rel.split("/"))
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            raise ReleaseError(f"{where}: {rel} is missing") from None
        if not stat.S_ISREG(st.st_mode):
            raise ReleaseError(f"{where}: {rel} is not a regular file")
        if _sha256_file(p) != want:
            raise ReleaseError(f"{where}: {rel} does not match its sha256 in the manifest")
    extra = {PYTHON_FILE, INSTALL_FILE, MANIFEST}
    for dirpath, _dirnames, filenames in os.walk(release):
        for fn in filenames:
            rel = Path(dirpath, fn).relative_to(release).as_posix()
            if rel not in files and rel not in extra and rel not in (bytecode or {}):
                raise ReleaseError(f"{where}: {rel} is not in the manifest")
    try:
        doc = json.loads((release / "lib" / PACKAGE / RELEASE_FILE).read_bytes())
    except ValueError:
        raise ReleaseError(f"{where}: lib/{PACKAGE}/{RELEASE_FILE} is not JSON") from None
    inner = Manifest.from_json(doc, f"{where}: lib/{PACKAGE}/{RELEASE_FILE}")
    if (inner.version, inner.protocols) != (manifest.version, manifest.protocols):
        raise ReleaseError(f"{where}: lib/{PACKAGE}/{RELEASE_FILE} does not match the manifest")
    if not os.access(release / LAUNCHER, os.X_OK):
        raise ReleaseError(f"{where}: {LAUNCHER} is not executable")


def _installed_sha256(release: Path) -> str:
    try:
        doc = json.loads((release / INSTALL_FILE).read_text())
        return str(doc["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ReleaseError(f"release {release.name} in {release.parent} is corrupt: no readable {INSTALL_FILE}") from None


def _installed_bytecode(release: Path) -> dict[str, str]:
    """The .pyc files install compiled, with their sha256 (none for a release installed before it did)."""
    try:
        doc = json.loads((release / INSTALL_FILE).read_text())
    except (OSError, ValueError):
        return {}
    bytecode = doc.get("bytecode") if isinstance(doc, dict) else None
    if not isinstance(bytecode, dict):
        return {}
    return {str(k): str(v) for k, v in bytecode.items() if str(k).endswith(".pyc") and "/__pycache__/" in str(k)}


def check_release(release: Path, deep: bool = False) -> Manifest:
    """An installed release's manifest. Cheap checks by default; deep also re-hashes every file."""
    where = f"release {release.name} in {release.parent}"
    if release.is_symlink() or not release.is_dir():
        raise ReleaseError(f"{where} is not an installed release directory")
    try:
        data = (release / MANIFEST).read_bytes()
    except OSError:
        raise ReleaseError(f"{where} is corrupt: no {MANIFEST}") from None
    manifest, files = _parse_manifest(data, f"{where}: {MANIFEST}")
    if manifest.version != release.name:
        raise ReleaseError(f"{where} is corrupt: its manifest says version {manifest.version}")
    if not (release / LAUNCHER).is_file():
        raise ReleaseError(f"{where} is corrupt: no {LAUNCHER}")
    if deep:
        try:
            _verify_tree(release, files, manifest, f"{where} is corrupt", _installed_bytecode(release))
        except (OSError, ValueError) as exc:
            raise ReleaseError(f"{where} is corrupt: {exc}") from None
    return manifest


# --- switch ------------------------------------------------------------------------------------------


def _link_version(link: Path) -> str | None:
    """The version a `current`/`previous` link points at, None when there is no link."""
    if not link.is_symlink():
        if link.exists():
            raise ReleaseError(f"{link} is not a symlink; refusing to touch it")
        return None
    target = os.readlink(link)
    parts = target.split("/")
    if len(parts) != 2 or parts[0] != RELEASES:
        raise ReleaseError(f"{link} points at {target!r}, not at {RELEASES}/<version>")
    return validate_version(parts[1], f"{link.name} link version")


def _point(link: Path, version: str) -> None:
    """Make `link` point at releases/<version>: a new symlink renamed over the old one (rename(2) is atomic,
    so readers see the old target or the new one, never no link)."""
    tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    os.symlink(f"{RELEASES}/{version}", tmp)
    try:
        os.replace(tmp, link)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@dataclass(frozen=True)
class Switched:
    active: str
    previous: str | None
    changed: bool

    def to_json(self) -> dict[str, Any]:
        return {"active": self.active, "previous": self.previous, "changed": self.changed}


def _installed_versions(root: Path) -> list[str]:
    releases = root / RELEASES
    if not releases.is_dir():
        return []
    return sorted((p.name for p in releases.iterdir() if not p.name.startswith(".")), key=version_key)


def _release_dir(root: Path, version: str) -> Path:
    version = validate_version(version)
    d = root / RELEASES / version
    if not d.exists():
        have = ", ".join(_installed_versions(root)) or "none"
        raise ReleaseError(f"release {version} is not installed in {root} (installed: {have})")
    return d


def activate(root: Path, version: str) -> Switched:
    """Point ROOT/current at releases/<version> atomically, after verifying every file of that release;
    the release it replaces becomes ROOT/previous."""
    root = _root(root)
    d = _release_dir(root, version)
    check_release(d, deep=True)
    with _locked(root):
        cur = _link_version(root / CURRENT)
        prev = _link_version(root / PREVIOUS)
        if cur == version:
            return Switched(version, prev, changed=False)
        _point(root / CURRENT, version)
        if cur is not None:
            _point(root / PREVIOUS, cur)
        fsync_dir(root)
        return Switched(version, cur if cur is not None else prev, changed=True)


def switch_back(root: Path) -> Switched:
    """Swap ROOT/current and ROOT/previous: two renames, `current` first. Only cheap checks, for speed:
    the previous release was verified when it was activated."""
    root = _root(root)
    with _locked(root):
        cur = _link_version(root / CURRENT)
        prev = _link_version(root / PREVIOUS)
        if prev is None:
            raise ReleaseError(f"no previous release recorded in {root}; nothing to switch back to")
        check_release(_release_dir(root, prev))
        _point(root / CURRENT, prev)
        if cur is not None:
            _point(root / PREVIOUS, cur)
        fsync_dir(root)
        return Switched(prev, cur, changed=True)


def list_releases(root: Path) -> dict[str, Any]:
    """Installed releases (sorted by version), with the active and previous ones marked."""
    root = _root(root)
    active = _link_version(root / CURRENT)
    previous = _link_version(root / PREVIOUS)
    out: list[dict[str, Any]] = []
    for v in _installed_versions(root):
        d = root / RELEASES / v
        row: dict[str, Any] = {"version": v, "path": str(d), "active": v == active, "previous": v == previous}
        try:
            m = check_release(d)
            row.update(protocols=list(m.protocols), build_time=m.build_time, source_sha256=m.source_sha256)
            row["sha256"] = _installed_sha256(d)
            row["status"] = "ok"
        except ReleaseError as exc:
            row.setdefault("protocols", None)
            row.setdefault("build_time", None)
            row.setdefault("sha256", None)
            row["status"] = f"corrupt: {exc}"
        out.append(row)
    return {"root": str(root), "active": active, "previous": previous, "releases": out}


# --- housekeeping ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Removed:
    removed: tuple[str, ...]
    kept: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"removed": list(self.removed), "kept": list(self.kept)}


def _protected(root: Path) -> set[str]:
    """The releases never removed: the active one (a running node's files) and the previous one (the instant
    switch back of a drill's rollback)."""
    return {v for v in (_link_version(root / CURRENT), _link_version(root / PREVIOUS)) if v is not None}


def remove(root: Path, version: str) -> Removed:
    """Remove an installed release that is neither active nor previous."""
    root = _root(root)
    with _locked(root):
        d = _release_dir(root, version)
        keep = _protected(root)
        if version in keep:
            which = "active" if version == _link_version(root / CURRENT) else "previous"
            raise ReleaseError(f"release {version} is the {which} release of {root}; it cannot be removed")
        _remove_tree(d)
        fsync_dir(root / RELEASES)
        return Removed((version,), tuple(v for v in _installed_versions(root)))


def prune(root: Path, keep: int, dry_run: bool = False) -> Removed:
    """Keep the `keep` newest releases (by version) plus the active and previous ones; remove the rest."""
    if keep < 0:
        raise ReleaseError(f"--keep {keep}: must be 0 or more (the active and previous releases are always kept)")
    root = _root(root)
    with _locked(root):
        versions = _installed_versions(root)  # oldest first
        kept = set(versions[len(versions) - keep :] if keep else []) | _protected(root)
        gone = tuple(v for v in versions if v not in kept)
        if not dry_run:
            for v in gone:
                _remove_tree(root / RELEASES / v)
            if gone:
                fsync_dir(root / RELEASES)
        return Removed(gone, tuple(v for v in versions if v in kept))
