"""A release channel: a directory (or the same tree served over HTTP) of artifacts and signed manifests.

    <root>/artifacts/iotex-node-<version>.tar.gz (+ .sha256)   the bytes, once, whatever the channels
    <root>/<channel>/iotex-node-<version>.signed.json           one signed manifest per release and channel
    <root>/<channel>/index.json                                  {"channel", "manifests": [file names]}

`publish` signs a manifest with the next sequence of its channel (one more than the highest published there),
copies the artifact in and rewrites the index last, atomically, so a reader sees the old index or the new one
with every file it names. Reading goes through the index (a directory or `http(s)://.../<channel>/index.json`);
what is read is verified by the reader, never trusted because of where it came from.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iotex_node import artifact as artifact_mod
from iotex_node import signed_release as sr
from iotex_node.errors import ReleaseError
from iotex_node.release import validate_protocols, validate_version, version_key
from iotex_ops.errors import OpsError

ARTIFACTS = "artifacts"
INDEX = "index.json"
DEFAULT_EXPIRY_S = 30 * 86400
MAX_INDEX_BYTES = 1 << 20
HTTP_TIMEOUT_S = 10.0


class ChannelError(OpsError):
    """A channel that cannot be read or published to; names the channel and the path or URL."""


_sha256_file = sr.sha256_file


def manifest_name(version: str) -> str:
    return f"iotex-node-{version}{sr.SIGNED_SUFFIX}"


def _atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        tmp.write_bytes(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _read_index(root: Path, channel: str) -> list[str]:
    p = root / channel / INDEX
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise ChannelError(f"channel {channel} at {root}: {INDEX} is unreadable: {exc}") from None
    names = doc.get("manifests") if isinstance(doc, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ChannelError(f"channel {channel} at {root}: {INDEX} must list manifests")
    return names


@dataclass(frozen=True)
class Published:
    info: sr.ReleaseInfo
    manifest: Path
    artifact: Path

    def to_json(self) -> dict[str, Any]:
        return {**self.info.to_json(), "manifest": str(self.manifest), "artifact_path": str(self.artifact)}


def _artifact_manifest(art: Path) -> dict[str, Any]:
    side = art.with_name(art.name.removesuffix(".tar.gz") + ".manifest.json")
    try:
        doc: dict[str, Any] = json.loads(side.read_text())
    except (OSError, ValueError) as exc:
        raise ChannelError(
            f"{side}: the artifact's manifest (written by `iotex-node release build`) is unreadable: {exc}"
        ) from None
    return doc


def publish(
    root: Path,
    artifact: Path,
    key: sr.PrivateKey,
    *,
    channel: str,
    kind: str,
    expires_in_s: float = DEFAULT_EXPIRY_S,
    now: float | None = None,
) -> Published:
    """Sign `artifact` (built by `iotex-node release build`) into `channel` of the channel tree at `root`."""
    now = time.time() if now is None else now
    artifact = Path(artifact)
    if not sr.CHANNELS_RE.fullmatch(channel):
        raise ChannelError(f"channel {channel!r}: lowercase letters, digits, dashes")
    if kind not in sr.KINDS:
        raise ChannelError(f"kind {kind!r}: one of {', '.join(sr.KINDS)}")
    if not artifact.is_file():
        raise ChannelError(f"artifact {artifact} does not exist")
    if not 60 <= expires_in_s <= 366 * 86400:
        raise ChannelError("expiry: from a minute to a year (a manifest that never expires can be frozen forever)")
    built = _artifact_manifest(artifact)
    try:
        version = validate_version(built.get("version"))
        protocols = validate_protocols(built.get("protocols"))
    except ReleaseError as exc:
        raise ChannelError(f"{artifact}: {exc}") from None
    if artifact.name != artifact_mod.artifact_name(version):
        raise ChannelError(f"{artifact}: named for another version than its manifest's {version}")
    digest = _sha256_file(artifact)
    if built.get("sha256") not in (None, digest):
        raise ChannelError(f"{artifact}: sha256 {digest} is not the one its build recorded ({built.get('sha256')})")
    root = Path(root)
    (root / ARTIFACTS).mkdir(parents=True, exist_ok=True)
    cdir = root / channel
    cdir.mkdir(parents=True, exist_ok=True)
    names = _read_index(root, channel)
    entries = read_dir(root, channel)
    seq = max((e.sequence for e in entries), default=0) + 1
    info = sr.ReleaseInfo(
        version=version,
        artifact=artifact.name,
        sha256=digest,
        size=artifact.stat().st_size,
        protocols=protocols,
        kind=kind,
        channel=channel,
        sequence=seq,
        published=int(now),
        expires=int(now + expires_in_s),
    )
    dest = root / ARTIFACTS / artifact.name
    if dest.exists():
        if _sha256_file(dest) != digest:
            raise ChannelError(f"{dest} holds other bytes for release {version}: releases are immutable, build a new version")
    else:
        tmp = dest.with_name(f".{dest.name}.tmp-{secrets.token_hex(4)}")
        shutil.copyfile(artifact, tmp)
        os.replace(tmp, dest)
    _atomic_write(root / ARTIFACTS / f"{artifact.name}.sha256", f"{digest}  {artifact.name}\n".encode())
    mpath = cdir / manifest_name(version)
    _atomic_write(mpath, sr.dumps(sr.sign(info, [key])))
    if mpath.name not in names:
        names.append(mpath.name)
    # the index last: readers never see a manifest named before its file exists
    _atomic_write(cdir / INDEX, (json.dumps({"channel": channel, "manifests": sorted(names)}, indent=2) + "\n").encode())
    return Published(info, mpath, dest)


@dataclass(frozen=True)
class Entry:
    """One manifest of a channel as read, before or after verification."""

    name: str
    data: bytes
    sequence: int = -1
    version: str = "?"
    kind: str = "?"


def read_dir(root: Path, channel: str) -> list[Entry]:
    out: list[Entry] = []
    for name in _read_index(Path(root), channel):
        if "/" in name or not name.endswith(sr.SIGNED_SUFFIX):
            raise ChannelError(f"channel {channel} at {root}: index names {name!r}, not a signed manifest")
        try:
            data = (Path(root) / channel / name).read_bytes()
        except OSError as exc:
            raise ChannelError(f"channel {channel} at {root}: {name} is unreadable: {exc.strerror or exc}") from None
        out.append(_entry(name, data))
    return out


def _entry(name: str, data: bytes) -> Entry:
    try:
        info, _sigs, _raw = sr.parse(data)
    except ReleaseError:
        return Entry(name, data)
    return Entry(name, data, info.sequence, info.version, info.kind)


def _http_get(url: str, limit: int) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as r:  # noqa: S310 - http(s) only, checked by the caller
            data: bytes = r.read(limit + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ChannelError(f"channel index {url}: {getattr(exc, 'reason', None) or exc}") from None
    if len(data) > limit:
        raise ChannelError(f"{url}: larger than {limit} bytes")
    return data


class Source:
    """Where a network reads its channel: a directory or an http(s):// base URL of the same tree."""

    def __init__(self, location: str) -> None:
        self.location = location.rstrip("/")
        self.http = location.startswith(("http://", "https://"))
        if "://" in location and not self.http:
            raise ChannelError(f"channel source {location!r}: a directory or an http(s):// URL")

    def __repr__(self) -> str:
        return f"Source({self.location!r})"

    def entries(self, channel: str) -> list[Entry]:
        if not self.http:
            root = Path(self.location).expanduser()
            if not root.is_dir():
                raise ChannelError(f"channel source {root} does not exist")
            return read_dir(root, channel)
        idx = _http_get(f"{self.location}/{channel}/{INDEX}", MAX_INDEX_BYTES)
        try:
            names = json.loads(idx)["manifests"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ChannelError(f"{self.location}/{channel}/{INDEX}: not a channel index ({exc})") from None
        out = []
        for name in names:
            if not isinstance(name, str) or "/" in name or not name.endswith(sr.SIGNED_SUFFIX):
                raise ChannelError(f"{self.location}/{channel}/{INDEX}: names {name!r}, not a signed manifest")
            out.append(_entry(name, _http_get(f"{self.location}/{channel}/{name}", sr.MAX_SIGNED_BYTES)))
        return out

    def fetch_artifact(self, info: sr.ReleaseInfo, dest_dir: Path) -> Path:
        """The artifact in `dest_dir` (with its .sha256 and .manifest.json), verified against `info`; copied
        or downloaded only when it is not already there with the right bytes."""
        dest = Path(dest_dir) / info.artifact
        if dest.is_file():
            with contextlib.suppress(sr.RefusedRelease):
                sr.check_artifact(info, dest)
                self._sidecars(info, dest)
                return dest
            raise ChannelError(f"{dest} exists with other bytes than release {info.version} of the channel; not replaced")
        tmp = dest.with_name(f".{dest.name}.tmp-{secrets.token_hex(4)}")
        try:
            if self.http:
                data = _http_get(f"{self.location}/{ARTIFACTS}/{info.artifact}", artifact_mod.MAX_ARTIFACT_BYTES)
                tmp.write_bytes(data)
            else:
                shutil.copyfile(Path(self.location).expanduser() / ARTIFACTS / info.artifact, tmp)
            sr.check_artifact(info, tmp)  # refused by name before it is where a runbook would take it
            os.replace(tmp, dest)
        except OSError as exc:
            raise ChannelError(f"cannot fetch {info.artifact} from {self.location}: {exc.strerror or exc}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self._sidecars(info, dest)
        return dest

    def _sidecars(self, info: sr.ReleaseInfo, dest: Path) -> None:
        """The .sha256 and .manifest.json the runbooks read beside an artifact, from the verified manifest."""
        sha = dest.with_name(dest.name + ".sha256")
        if not sha.exists():
            _atomic_write(sha, f"{info.sha256}  {info.artifact}\n".encode())
        man = dest.with_name(f"iotex-node-{info.version}.manifest.json")
        if not man.exists():
            doc = {"name": "iotex-node", "version": info.version, "protocols": list(info.protocols), "sha256": info.sha256}
            _atomic_write(man, (json.dumps(doc, indent=2) + "\n").encode())


def write_signed(dest_dir: Path, info: sr.ReleaseInfo, data: bytes) -> Path:
    """The signed manifest of `info` into `dest_dir` (iotex-node-<version>.signed.json), replaced atomically."""
    path = Path(dest_dir) / manifest_name(info.version)
    _atomic_write(path, data, 0o444)
    return path


@dataclass(frozen=True)
class Listed:
    """A channel's manifest as `channel list` shows it: verified (`ok`) or why not."""

    name: str
    channel: str
    version: str
    kind: str
    sequence: int
    published: int | None
    expires: int | None
    status: str  # "ok", or "refused (reason): ..."

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def listing(source: Source, channels: Iterable[str], trusted: Mapping[str, sr.PublicKey] | None, now: float) -> list[Listed]:
    """Every manifest of `channels`, newest version first per channel, each checked when keys are given."""
    out: list[Listed] = []
    for ch in channels:
        rows = []
        for e in source.entries(ch):
            info = None
            status = "not verified (no trusted keys given)"
            try:
                info = sr.parse(e.data)[0]
                if trusted:
                    sr.verify(e.data, trusted, now=now, channel=ch)
                    status = "ok"
            except ReleaseError as exc:
                status = str(exc).removesuffix("; nothing was installed")
            rows.append(
                Listed(
                    e.name,
                    ch,
                    info.version if info else e.version,
                    info.kind if info else e.kind,
                    info.sequence if info else e.sequence,
                    info.published if info else None,
                    info.expires if info else None,
                    status,
                )
            )
        rows.sort(key=lambda r: version_key(r.version) if r.version != "?" else ((), ""), reverse=True)
        out.extend(rows)
    return out
