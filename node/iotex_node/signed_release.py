"""Signed release manifests: who published a release, which channel it is for, and until when it is valid.

This is a public module of the node (like `iotex_node.sdk`): the toolkit publishes and verifies with it, and
`iotex-node release install --signed ... --trusted-keys ...` verifies with it on the delegate's host.

A signed manifest is one JSON document, `iotex-node-<version>.<channel>.signed.json`:

    {"signed": {"type": "iotex-node-release", "version": "0.1.1", "artifact": "iotex-node-0.1.1.tar.gz",
                "sha256": "...", "size": 123, "protocols": [1], "kind": "patch", "channel": "stable",
                "sequence": 7, "published": 1764800000, "expires": 1767392000},
     "signatures": [{"keyid": "3f1c...", "sig": "<base64 Ed25519 signature>"}]}

The signature covers the canonical bytes of `signed` (sorted keys, no spaces, UTF-8), so no field can change
without breaking it. A key is Ed25519: the public key is written `ed25519:<64 hex digits>`, and its id is the
first 16 hex digits of the sha256 of the raw public key.

What a verifier refuses, each by name, before anything is installed (TUF's attacks, in its words):
- `bad-signature`: no signature by a trusted key verifies (a tampered manifest);
- `unknown-key`: signed only by keys the verifier does not trust (a wrong key);
- `expired`: past its `expires` (a freeze attack: an old index served forever);
- `replay`: a sequence lower than the highest this verifier has seen on the channel, or the same sequence with
  other content (a rollback attack: an older, validly signed manifest served again);
- `wrong-channel`: signed for another channel than the one asked for (a candidate served as stable);
- `checksum`: the artifact's size or sha256 is not the manifest's (a tampered or swapped artifact).

Private keys: a file of mode 0600 holding `ed25519-private:<hex>`; written with O_EXCL, refused when group or
others may read it, never shown by repr or in an error.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from iotex_node.errors import ReleaseError
from iotex_node.release import validate_protocols, validate_version

TYPE = "iotex-node-release"
KINDS = ("patch", "minor", "major", "protocol")
CHANNELS_RE = re.compile(r"[a-z][a-z0-9-]{0,31}")
PUBLIC_PREFIX = "ed25519:"
PRIVATE_PREFIX = "ed25519-private:"
SIGNED_SUFFIX = ".signed.json"
TRUST_FILE = "trust.json"
# A signed manifest is small; anything bigger is not one (and is not parsed).
MAX_SIGNED_BYTES = 64 * 1024
MAX_SIGNATURES = 8
_HEX64 = re.compile(r"[0-9a-f]{64}")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks (an artifact, a manifest's subject)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class RefusedRelease(ReleaseError):
    """A signed release that must not be installed; `reason` is one of REASONS, `version` what it claimed."""

    def __init__(self, reason: str, message: str, version: str | None = None) -> None:
        self.reason = reason
        self.version = version
        what = f"release {version}" if version else "release"
        super().__init__(f"refused ({reason}): {what}: {message}; nothing was installed")


REASONS = ("malformed", "bad-signature", "unknown-key", "wrong-channel", "expired", "replay", "checksum")


# --- keys --------------------------------------------------------------------------------------------


def key_id(public: bytes) -> str:
    return hashlib.sha256(public).hexdigest()[:16]


@dataclass(frozen=True)
class PublicKey:
    raw: bytes

    @property
    def id(self) -> str:
        return key_id(self.raw)

    def text(self) -> str:
        return PUBLIC_PREFIX + self.raw.hex()

    def __str__(self) -> str:
        return self.text()

    @classmethod
    def parse(cls, text: object, where: str = "public key") -> PublicKey:
        if not isinstance(text, str) or not text.startswith(PUBLIC_PREFIX) or not _HEX64.fullmatch(text[len(PUBLIC_PREFIX) :]):
            raise ReleaseError(f"{where} {str(text)[:80]!r}: must look like ed25519:<64 lowercase hex digits>")
        return cls(bytes.fromhex(text[len(PUBLIC_PREFIX) :]))

    def verify(self, sig: bytes, data: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(sig, data)
        except (InvalidSignature, ValueError):
            return False
        return True


class PrivateKey:
    """A publisher's signing key. Its repr and str name only the key id."""

    __slots__ = ("_key",)

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key

    @classmethod
    def generate(cls) -> PrivateKey:
        return cls(Ed25519PrivateKey.generate())

    @property
    def public(self) -> PublicKey:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        return PublicKey(self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def __repr__(self) -> str:
        return f"PrivateKey(id={self.public.id})"

    __str__ = __repr__

    def save(self, path: Path) -> None:
        """Write the key to a new file of mode 0600 (never over an existing one)."""
        from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

        raw = self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            raise ReleaseError(f"{path} exists; refusing to overwrite a signing key") from None
        with os.fdopen(fd, "w") as f:
            f.write(PRIVATE_PREFIX + raw.hex() + "\n")
            f.flush()
            os.fsync(f.fileno())

    @classmethod
    def load(cls, path: Path) -> PrivateKey:
        path = Path(path)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise ReleaseError(f"signing key {path} does not exist") from None
        if st.st_mode & 0o077:
            # like ssh: a key others can read is no longer only the publisher's
            raise ReleaseError(f"signing key {path} is readable by others (mode {st.st_mode & 0o777:o}); chmod 600 it")
        text = path.read_text(encoding="ascii", errors="replace").strip()
        body = text[len(PRIVATE_PREFIX) :] if text.startswith(PRIVATE_PREFIX) else ""
        if not _HEX64.fullmatch(body):
            raise ReleaseError(f"signing key {path}: not an ed25519-private:<64 hex digits> key file")
        return cls(Ed25519PrivateKey.from_private_bytes(bytes.fromhex(body)))


def parse_keys(texts: Iterable[object], where: str = "trusted keys") -> dict[str, PublicKey]:
    """{key id: key} of `ed25519:<hex>` strings."""
    out: dict[str, PublicKey] = {}
    for i, t in enumerate(texts):
        k = PublicKey.parse(t, f"{where}[{i}]")
        out[k.id] = k
    if not out:
        raise ReleaseError(f"{where}: no key given; a signed release cannot be verified without one")
    return out


def load_keys_file(path: Path) -> dict[str, PublicKey]:
    """Trusted keys from a file: one `ed25519:<hex>` a line (# comments), or a JSON list of them."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ReleaseError(f"trusted keys {path}: cannot read: {exc.strerror or exc}") from None
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except ValueError as exc:
            raise ReleaseError(f"trusted keys {path}: not JSON: {exc}") from None
    else:
        items = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
        items = [ln for ln in items if ln]
    return parse_keys(items, str(path))


# --- the signed manifest -----------------------------------------------------------------------------


def canonical(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class ReleaseInfo:
    """What a signed manifest says (the `signed` part), validated."""

    version: str
    artifact: str
    sha256: str
    size: int
    protocols: tuple[int, ...]
    kind: str
    channel: str
    sequence: int
    published: int
    expires: int

    def to_json(self) -> dict[str, Any]:
        return {
            "type": TYPE,
            "version": self.version,
            "artifact": self.artifact,
            "sha256": self.sha256,
            "size": self.size,
            "protocols": list(self.protocols),
            "kind": self.kind,
            "channel": self.channel,
            "sequence": self.sequence,
            "published": self.published,
            "expires": self.expires,
        }

    @property
    def digest(self) -> str:
        """sha256 of the canonical `signed` part: two manifests with one sequence must have one digest."""
        return hashlib.sha256(canonical(self.to_json())).hexdigest()

    @classmethod
    def from_json(cls, doc: object) -> ReleaseInfo:
        if not isinstance(doc, dict):
            raise RefusedRelease("malformed", "`signed` must be a JSON object")
        version = doc.get("version") if isinstance(doc.get("version"), str) else None
        try:
            if doc.get("type") != TYPE:
                raise ReleaseError(f"type {doc.get('type')!r} is not {TYPE!r}")
            unknown = sorted(set(doc) - {"type", *cls.__dataclass_fields__})
            if unknown:
                raise ReleaseError(f"unknown fields {unknown}")
            validate_version(doc.get("version"))
            ints = {k: doc.get(k) for k in ("size", "sequence", "published", "expires")}
            for k, v in ints.items():
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    raise ReleaseError(f"{k} {v!r} must be a non-negative integer")
            if not isinstance(doc.get("sha256"), str) or not _HEX64.fullmatch(doc["sha256"]):
                raise ReleaseError("sha256 must be 64 lowercase hex digits")
            if doc.get("kind") not in KINDS:
                raise ReleaseError(f"kind {doc.get('kind')!r} must be one of {', '.join(KINDS)}")
            if not isinstance(doc.get("channel"), str) or not CHANNELS_RE.fullmatch(doc["channel"]):
                raise ReleaseError(f"channel {doc.get('channel')!r} must be lowercase letters, digits, dashes")
            if doc.get("artifact") != f"iotex-node-{doc['version']}.tar.gz":
                raise ReleaseError(f"artifact {doc.get('artifact')!r} is not iotex-node-{doc['version']}.tar.gz")
            return cls(
                version=doc["version"],
                artifact=doc["artifact"],
                sha256=doc["sha256"],
                size=ints["size"],  # type: ignore[arg-type]
                protocols=validate_protocols(doc.get("protocols")),
                kind=doc["kind"],
                channel=doc["channel"],
                sequence=ints["sequence"],  # type: ignore[arg-type]
                published=ints["published"],  # type: ignore[arg-type]
                expires=ints["expires"],  # type: ignore[arg-type]
            )
        except ReleaseError as exc:
            raise RefusedRelease("malformed", str(exc), version) from None


def sign(info: ReleaseInfo, keys: Iterable[PrivateKey]) -> dict[str, Any]:
    """The signed manifest document for `info`, signed by each of `keys`."""
    data = canonical(info.to_json())
    sigs = [{"keyid": k.public.id, "sig": base64.b64encode(k.sign(data)).decode()} for k in keys]
    if not sigs:
        raise ReleaseError("no signing key given")
    return {"signed": info.to_json(), "signatures": sigs}


def dumps(doc: Mapping[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def parse(data: bytes) -> tuple[ReleaseInfo, list[dict[str, str]], dict[str, Any]]:
    """(info, signatures, the raw `signed` object) of a signed manifest's bytes; nothing is verified yet."""
    if len(data) > MAX_SIGNED_BYTES:
        raise RefusedRelease("malformed", f"signed manifest is larger than {MAX_SIGNED_BYTES} bytes")
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise RefusedRelease("malformed", f"signed manifest is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("signed"), dict) or not isinstance(doc.get("signatures"), list):
        raise RefusedRelease("malformed", "a signed manifest has `signed` and `signatures`")
    sigs = doc["signatures"]
    if (
        not sigs
        or len(sigs) > MAX_SIGNATURES
        or not all(isinstance(s, dict) and isinstance(s.get("keyid"), str) and isinstance(s.get("sig"), str) for s in sigs)
    ):
        raise RefusedRelease("malformed", f"`signatures` must be 1 to {MAX_SIGNATURES} {{keyid, sig}} objects")
    return ReleaseInfo.from_json(doc["signed"]), sigs, doc["signed"]


def verify_signature(data: bytes, trusted: Mapping[str, PublicKey]) -> ReleaseInfo:
    """The release a signed manifest describes, if a trusted key signed exactly these `signed` bytes."""
    info, sigs, raw = parse(data)
    payload = canonical(raw)
    known = [s for s in sigs if s["keyid"] in trusted]
    if not known:
        ids = ", ".join(sorted({s["keyid"] for s in sigs}))
        why = f"signed by key {ids}, which is not a trusted key (trusted: {', '.join(sorted(trusted))})"
        raise RefusedRelease("unknown-key", why, info.version)
    for s in known:
        try:
            sig = base64.b64decode(s["sig"], validate=True)
        except ValueError:
            continue
        if trusted[s["keyid"]].verify(sig, payload):
            return info
    why = f"the signature by key {known[0]['keyid']} does not verify (tampered manifest)"
    raise RefusedRelease("bad-signature", why, info.version)


def check_fresh(info: ReleaseInfo, now: float) -> None:
    if info.expires <= now:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(info.expires))
        raise RefusedRelease("expired", f"the {info.channel} manifest expired at {when}", info.version)


def check_artifact(info: ReleaseInfo, artifact: Path) -> None:
    """The artifact's size and sha256 are the manifest's (read in chunks; a size mismatch stops early)."""
    try:
        size = os.stat(artifact).st_size
    except FileNotFoundError:
        raise ReleaseError(f"artifact {artifact} does not exist") from None
    if size != info.size:
        raise RefusedRelease("checksum", f"artifact {artifact} has {size} bytes, the manifest says {info.size}", info.version)
    digest = sha256_file(artifact)
    if not hmac.compare_digest(digest, info.sha256):
        why = f"artifact {artifact} has sha256 {digest}, the manifest says {info.sha256}"
        raise RefusedRelease("checksum", why, info.version)


# --- what a verifier has seen (rollback protection) --------------------------------------------------


class TrustState:
    """The highest sequence seen per channel, and the digest of the manifest that carried it, in a JSON file.

    A verifier records a manifest only once it accepted it; a lower sequence afterwards is a replay, and so is
    the same sequence with another digest (two different manifests cannot both be sequence N)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def read(self) -> dict[str, dict[str, Any]]:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            # an unreadable record must not silently reset the floor to zero
            raise ReleaseError(f"trust state {self.path} is unreadable ({exc}); fix or remove it by hand") from None
        return doc.get("channels", {}) if isinstance(doc, dict) else {}

    def check(self, info: ReleaseInfo) -> None:
        seen = self.read().get(info.channel)
        if not seen:
            return
        top = int(seen.get("sequence", -1))
        if info.sequence < top:
            raise RefusedRelease(
                "replay",
                f"its {info.channel} sequence {info.sequence} is older than {top} (release {seen.get('version')}) already seen: "
                "a rollback or replay of an old manifest",
                info.version,
            )
        if info.sequence == top and seen.get("digest") != info.digest:
            why = f"another manifest already carried {info.channel} sequence {top} (release {seen.get('version')})"
            raise RefusedRelease("replay", why, info.version)

    def record(self, info: ReleaseInfo) -> None:
        doc = {"channels": self.read()}
        seen = doc["channels"].get(info.channel)
        if seen and int(seen.get("sequence", -1)) >= info.sequence:
            return
        doc["channels"][info.channel] = {"sequence": info.sequence, "digest": info.digest, "version": info.version}
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
            os.replace(tmp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def verify(
    data: bytes,
    trusted: Mapping[str, PublicKey],
    *,
    now: float | None = None,
    state: TrustState | None = None,
    artifact: Path | None = None,
    channel: str | None = None,
) -> ReleaseInfo:
    """Every check, in the order that reads least: signature, channel, expiry, replay, artifact. Raises
    RefusedRelease naming the first that fails; records nothing (call `state.record` once installed)."""
    info = verify_signature(data, trusted)
    if channel is not None and info.channel != channel:
        raise RefusedRelease("wrong-channel", f"it was signed for channel {info.channel}, not {channel}", info.version)
    check_fresh(info, time.time() if now is None else now)
    if state is not None:
        state.check(info)
    if artifact is not None:
        check_artifact(info, artifact)
    return info
