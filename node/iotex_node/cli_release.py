"""`iotex-node release`: build release artifacts, install them side by side, switch the active one.

Every mistake (bad version or protocols, unknown release, missing root, tampered or unsafe artifact) ends
with exit code 2 and one line `error: ...`. See iotex_node.artifact for the layout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from iotex_node.errors import NodeError


class _ReleaseGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (NodeError, OSError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


def _echo_json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, sort_keys=True))


@click.group(cls=_ReleaseGroup)
def release() -> None:
    """Versioned release artifacts: build, install side by side, activate, switch back."""


@release.command()
@click.option("--version", "version", required=True, help="Release version, such as 1.0.1 or 1.0.1-hotfix.1.")
@click.option("--protocols", default=None, help="Comma-separated protocols it may execute [default: this copy's].")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Directory to write the artifact to.")
@click.option("--build-time", default=None, help="Seconds or ISO 8601 [default: $SOURCE_DATE_EPOCH, else now].")
@click.option("--json", "as_json", is_flag=True)
def build(version: str, protocols: str | None, out: Path, build_time: str | None, as_json: bool) -> None:
    """Build iotex-node-VERSION.tar.gz with its .sha256 and .manifest.json; never overwrites."""
    from iotex_node import artifact
    from iotex_node.release import current, parse_protocols

    protos = parse_protocols(protocols) if protocols is not None else current().protocols
    b = artifact.build(version, protos, out, build_time=build_time)
    if as_json:
        _echo_json(b.to_json())
        return
    click.echo(f"built {b.artifact}")
    click.echo(f"sha256 {b.sha256}")
    m = b.manifest
    click.echo(f"version {m['version']} protocols {','.join(map(str, m['protocols']))} build_time {m['build_time']}")


@release.command()
@click.argument("artifact_file", metavar="ARTIFACT", type=click.Path(path_type=Path))
@click.option("--root", type=click.Path(path_type=Path), required=True, help="Release root (holds releases/, current).")
@click.option("--sha256", default=None, help="Expected sha256 [default: from ARTIFACT.sha256 beside it].")
@click.option("--python", default=None, help="Interpreter the release runs with [default: this one].")
@click.option(
    "--signed",
    "signed_file",
    type=click.Path(path_type=Path),
    default=None,
    help="The release's signed manifest (iotex-node-VERSION.CHANNEL.signed.json); needs --trusted-keys.",
)
@click.option(
    "--trusted-keys",
    type=click.Path(path_type=Path),
    default=None,
    help="File of the publisher keys to trust (ed25519:<hex>, one a line).",
)
@click.option("--channel", default=None, help="Refuse a manifest signed for another channel.")
@click.option("--activate", "then_activate", is_flag=True, help="Then activate it, as `release activate` does.")
@click.option("--json", "as_json", is_flag=True)
def install(
    artifact_file: Path,
    root: Path,
    sha256: str | None,
    python: str | None,
    signed_file: Path | None,
    trusted_keys: Path | None,
    channel: str | None,
    then_activate: bool,
    as_json: bool,
) -> None:
    """Verify ARTIFACT and install it as ROOT/releases/VERSION, read-only; activate it only with --activate.

    With --signed and --trusted-keys, the signature, expiry, replay (ROOT/trust.json) and the artifact's
    checksum are verified first, and a refusal names which failed. With --activate the installed release is
    then verified and made current in the same run (one process where a deployment would start two); its
    JSON has the activation under "activated"."""
    from iotex_node import artifact, signed_release

    signed = trusted = None
    if signed_file is not None or trusted_keys is not None:
        if signed_file is None or trusted_keys is None:
            raise click.UsageError("--signed and --trusted-keys go together")
        signed = signed_file.read_bytes()
        trusted = signed_release.load_keys_file(trusted_keys)
    r = artifact.install(artifact_file, root, sha256=sha256, python=python, signed=signed, trusted=trusted, channel=channel)
    s = artifact.activate(root, r.version) if then_activate else None
    if as_json:
        _echo_json(r.to_json() | ({"activated": s.to_json()} if s is not None else {}))
        return
    if r.changed:
        click.echo(f"installed {r.version} at {r.path}")
    else:
        click.echo(f"{r.version} is already installed at {r.path} (same sha256); nothing to do")
    if s is not None:
        click.echo(f"active {s.active} (previous {s.previous})" if s.changed else f"{s.active} is already active")


@release.command()
@click.argument("version")
@click.option("--root", type=click.Path(path_type=Path), required=True)
@click.option("--json", "as_json", is_flag=True)
def activate(version: str, root: Path, as_json: bool) -> None:
    """Verify release VERSION and point ROOT/current at it atomically (restart the node to run it)."""
    from iotex_node import artifact

    s = artifact.activate(root, version)
    if as_json:
        _echo_json(s.to_json())
    elif s.changed:
        click.echo(f"active {s.active} (previous {s.previous})")
    else:
        click.echo(f"{s.active} is already active")


@release.command("switch-back")
@click.option("--root", type=click.Path(path_type=Path), required=True)
@click.option("--json", "as_json", is_flag=True)
def switch_back(root: Path, as_json: bool) -> None:
    """Make the previous release active again, atomically (restart the node to run it)."""
    from iotex_node import artifact

    s = artifact.switch_back(root)
    if as_json:
        _echo_json(s.to_json())
    else:
        click.echo(f"active {s.active} (previous {s.previous})")


@release.command("list")
@click.option("--root", type=click.Path(path_type=Path), required=True)
@click.option("--json", "as_json", is_flag=True)
def list_cmd(root: Path, as_json: bool) -> None:
    """Installed releases: version, protocols, sha256, build time; the active one is marked *."""
    from iotex_node import artifact

    doc = artifact.list_releases(root)
    if as_json:
        _echo_json(doc)
        return
    click.echo(f"  {'VERSION':20} {'PROTOCOLS':10} {'BUILD TIME':21} {'SHA256':64} STATUS")
    for r in doc["releases"]:
        mark = "*" if r["active"] else ("-" if r["previous"] else " ")
        protos = ",".join(map(str, r["protocols"] or [])) or "?"
        state = r["status"] + (" (active)" if r["active"] else " (previous)" if r["previous"] else "")
        click.echo(f"{mark} {r['version']:20} {protos:10} {r['build_time'] or '?':21} {r['sha256'] or '?':64} {state}")


@release.command()
@click.argument("version")
@click.option("--root", type=click.Path(path_type=Path), required=True)
@click.option("--json", "as_json", is_flag=True)
def remove(version: str, root: Path, as_json: bool) -> None:
    """Remove installed release VERSION (never the active or the previous one)."""
    from iotex_node import artifact

    r = artifact.remove(root, version)
    if as_json:
        _echo_json(r.to_json())
    else:
        click.echo(f"removed {version}; installed: {', '.join(r.kept) or 'none'}")


@release.command()
@click.option("--root", type=click.Path(path_type=Path), required=True)
@click.option("--keep", type=click.IntRange(0, 1000), required=True, help="How many of the newest releases to keep.")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@click.option("--json", "as_json", is_flag=True)
def prune(root: Path, keep: int, dry_run: bool, as_json: bool) -> None:
    """Remove all but the KEEP newest releases; the active and previous ones are always kept."""
    from iotex_node import artifact

    r = artifact.prune(root, keep, dry_run=dry_run)
    if as_json:
        _echo_json({**r.to_json(), "dry_run": dry_run})
        return
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {', '.join(r.removed) or 'nothing'}; kept {', '.join(r.kept) or 'none'}")


@release.command()
@click.option("--json", "as_json", is_flag=True)
def info(as_json: bool) -> None:
    """The release this copy of the node is: version, protocols, build time, source digest."""
    from iotex_node.release import current, release_file

    m = current()
    doc = {**m.to_json(), "path": str(release_file().parent)}
    if as_json:
        _echo_json(doc)
        return
    for k, v in doc.items():
        click.echo(f"{k:14} {','.join(map(str, v)) if isinstance(v, list) else v}")
