"""Which release this copy of the node is: its version and the protocols it may execute.

The package carries `release.json` beside this module. In the source tree it says {"version", "protocols"};
`iotex-node release build` rewrites it inside every artifact with the build's version, protocols, build time
and source digest, so a node started from an installed release reports that release, not the source tree
it was built from. This module is imported by `iotex_node/__init__.py`: it must stay cheap and free of I/O
beyond reading that one file.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from iotex_node.errors import ReleaseError

RELEASE_FILE = "release.json"
# Protocol numbers share the bound the genesis file puts on them.
MAX_PROTOCOL = 1000
MAX_VERSION_LEN = 64
# 2 to 4 dot-separated numbers without leading zeros (so "1.01" and "1.1" cannot both be installed), then
# optional suffixes in PEP 440 or semver style: a1/b1/rc1, .post1/.dev1, -hotfix.2 (pre-release), +drill.1
# (local/build). Nothing else, so "1.0.x" is refused, and every version is safe as a file name.
_VERSION_RE = re.compile(
    r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*)){1,3}"
    r"((a|b|rc)[0-9]+)?(\.(post|dev)[0-9]+)*"
    r"(-[0-9A-Za-z]+([.-][0-9A-Za-z]+)*)?"
    r"(\+[0-9A-Za-z]+([.-][0-9A-Za-z]+)*)?"
)
_VERSION_HELP = "must look like 1.0.1: 2-4 numbers without leading zeros, optional suffix such as rc1, -hotfix.2 or +drill"
_BUILD_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_BUILD_TIME_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def validate_version(value: object, field: str = "version") -> str:
    if not isinstance(value, str) or len(value) > MAX_VERSION_LEN or not _VERSION_RE.fullmatch(value):
        raise ReleaseError(f"{field} {value!r}: {_VERSION_HELP}")
    return value


def version_key(version: str) -> tuple[tuple[int, ...], str]:
    """Sort key: the numbers, then the suffix (a plain release before its suffixed variants)."""
    m = re.match(r"[0-9]+(?:\.[0-9]+)*", version)
    nums = m.group(0) if m else ""
    return tuple(int(x) for x in nums.split(".") if x), version[len(nums) :]


def validate_protocols(value: object, field: str = "protocols") -> tuple[int, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise ReleaseError(f"{field} {value!r}: must be a non-empty list of protocol numbers")
    out: list[int] = []
    for p in value:
        if isinstance(p, bool) or not isinstance(p, int) or not 1 <= p <= MAX_PROTOCOL:
            raise ReleaseError(f"{field} {list(value)!r}: each protocol must be an integer from 1 to {MAX_PROTOCOL}")
        if out and p <= out[-1]:
            raise ReleaseError(f"{field} {list(value)!r}: protocols must be strictly ascending, without duplicates")
        out.append(p)
    return tuple(out)


def parse_protocols(text: str) -> tuple[int, ...]:
    """'1,2' -> (1, 2), validated."""
    parts = [s.strip() for s in text.split(",")]
    if not text.strip() or not all(s.isdigit() and s.isascii() for s in parts):
        raise ReleaseError(f"protocols {text!r}: must be comma-separated protocol numbers, such as 1,2")
    return validate_protocols([int(s) for s in parts])


def format_build_time(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime(_BUILD_TIME_FORMAT)


def parse_build_time(value: str | int) -> int:
    """Seconds since the epoch from an integer (as in SOURCE_DATE_EPOCH) or an ISO 8601 time with a zone."""
    text = str(value).strip()
    if text.isdigit() and text.isascii():
        epoch = int(text)
    else:
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            dt = None
        if dt is None or dt.tzinfo is None:
            raise ReleaseError(f"build time {text!r}: must be seconds since 1970 or ISO 8601 with a zone (2024-05-01T12:00:00Z)")
        epoch = int(dt.timestamp())
    if not 0 <= epoch < 253402300800:  # before year 10000
        raise ReleaseError(f"build time {text!r}: out of range")
    return epoch


def _validate_build_time(value: object, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ReleaseError(f"{field} {value!r}: must be a string like 2024-05-01T12:00:00Z")
    try:
        ok = bool(_BUILD_TIME_RE.fullmatch(value)) and bool(datetime.strptime(value, _BUILD_TIME_FORMAT))
    except ValueError:
        ok = False
    if not ok:
        raise ReleaseError(f"{field} {value!r}: must look like 2024-05-01T12:00:00Z")
    return value


@dataclass(frozen=True)
class Manifest:
    """A release: what `release.json` (inside the package) and `manifest.json` (beside it) say."""

    version: str
    protocols: tuple[int, ...]
    build_time: str | None = None  # UTC, "2024-05-01T12:00:00Z"; None in a source tree
    source_sha256: str | None = None  # digest of the package files it was built from; None in a source tree

    def __post_init__(self) -> None:
        validate_version(self.version)
        validate_protocols(self.protocols)
        _validate_build_time(self.build_time, "build_time")
        if self.source_sha256 is not None and not _SHA256_RE.fullmatch(self.source_sha256):
            raise ReleaseError(f"source_sha256 {self.source_sha256!r}: must be 64 lowercase hex digits")

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "protocols": list(self.protocols),
            "build_time": self.build_time,
            "source_sha256": self.source_sha256,
        }

    @classmethod
    def from_json(cls, doc: object, where: str = "manifest") -> Manifest:
        """Validate a parsed release.json or manifest.json; other keys (such as `files`) are ignored here."""
        if not isinstance(doc, dict):
            raise ReleaseError(f"{where}: must be a JSON object")
        if "version" not in doc or "protocols" not in doc:
            raise ReleaseError(f"{where}: must have version and protocols")
        try:
            return cls(
                version=validate_version(doc["version"]),
                protocols=validate_protocols(doc["protocols"]),
                build_time=_validate_build_time(doc.get("build_time"), "build_time"),
                source_sha256=doc.get("source_sha256"),
            )
        except ReleaseError as exc:
            raise ReleaseError(f"{where}: {exc}") from None


def load(path: Path) -> Manifest:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise ReleaseError(f"{path}: unreadable release file: {exc}") from None
    return Manifest.from_json(doc, str(path))


def release_file() -> Path:
    return Path(__file__).with_name(RELEASE_FILE)


@functools.cache
def current() -> Manifest:
    """This copy's release. A package installed without release.json falls back to its distribution
    version and the protocols compiled into the source (constants.SUPPORTED_PROTOCOLS)."""
    try:
        return load(release_file())
    except FileNotFoundError:
        from importlib import metadata

        from iotex_node.constants import SUPPORTED_PROTOCOLS

        try:
            version = metadata.version("iotex-node")
        except metadata.PackageNotFoundError:
            version = "0.0.0+src"
        try:
            return Manifest(version=version, protocols=tuple(SUPPORTED_PROTOCOLS))
        except ReleaseError:  # a distribution version this module would not accept for a release
            return Manifest(version="0.0.0+src", protocols=tuple(SUPPORTED_PROTOCOLS))
