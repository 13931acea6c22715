"""Actions the drills share: releases on hosts, halts, waiting for the right moment. Each logs what it did."""

from __future__ import annotations

import json
import tarfile
import time
from pathlib import Path
from typing import Any

from iotex_ops.errors import OpsError
from iotex_ops.hosts import HostError
from iotex_ops.network import Delegate, NodeApiError
from iotex_ops.runbook.checks import chains, wait_for
from iotex_ops.runbook.context import RunContext

# -- releases -----------------------------------------------------------------------------------------


def artifact_manifest(ctx: RunContext, version: str) -> dict[str, Any]:
    """The manifest (version, protocols) of `iotex-node-<version>.tar.gz` in the inventory's node_release_dir.
    Read on the controller only: nothing on a host is touched."""
    rdir = ctx.network.release_dir
    if rdir is None:
        raise OpsError("the inventory sets no node_release_dir (where release artifacts are)")
    art = rdir / f"iotex-node-{version}.tar.gz"
    if not art.is_file() or not Path(str(art) + ".sha256").is_file():
        have = sorted(p.name.removeprefix("iotex-node-").removesuffix(".tar.gz") for p in rdir.glob("iotex-node-*.tar.gz"))
        listed = ", ".join(have) or "none"
        raise OpsError(f"unknown release {version!r}: no {art.name} (+ .sha256) in {rdir}; available: {listed}")
    try:
        with tarfile.open(art, "r:gz") as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith("/manifest.json") and m.name.count("/") == 1)
            f = tar.extractfile(member)
            assert f is not None
            doc = json.loads(f.read())
    except (OSError, tarfile.TarError, StopIteration, AssertionError, ValueError) as exc:
        raise OpsError(f"release artifact {art} is unreadable: {type(exc).__name__}") from None
    return {"version": doc["version"], "protocols": list(doc["protocols"])}


def running_release(d: Delegate) -> str | None:
    c = d.try_chain()
    return str(c["node_version"]) if c else None


def stage_release(ctx: RunContext, version: str) -> None:
    """Install `version` side by side on every delegate, without making it active (one playbook run)."""
    ctx.playbook(
        "release.yml",
        extravars={"node_release_version": version, "node_release_activate": False, "node_state": "started"},
    )


def activate_and_restart(ctx: RunContext, d: Delegate, version: str) -> None:
    res = d.node_cli(["release", "activate", version, "--root", d.releases_root, "--json"], timeout=60)
    ctx.log(f"{d.name}: activate {version}: {res.stdout.strip()[:200]}")
    d.service("restart", timeout=90)
    ctx.log(f"{d.name}: restarted")


def switch_back_and_restart(ctx: RunContext, d: Delegate, wait_reachable: float = 120.0) -> None:
    """Return a host to its previous release, waiting (bounded) for the host to be reachable again."""
    deadline = time.monotonic() + wait_reachable
    while True:
        try:
            d.run("true", timeout=5)
            break
        except HostError as exc:
            if time.monotonic() > deadline:
                raise OpsError(f"{d.name} unreachable for {wait_reachable:g}s: cannot switch it back ({exc})") from None
            ctx.log(f"{d.name}: waiting for the host to come back ({type(exc).__name__})")
            time.sleep(2)
    res = d.node_cli(["release", "switch-back", "--root", d.releases_root, "--json"], timeout=60)
    ctx.log(f"{d.name}: switch-back: {res.stdout.strip()[:200]}")
    d.service("restart", timeout=90)


# -- consensus moments --------------------------------------------------------------------------------


def wait_after_own_proposal(ctx: RunContext, d: Delegate, timeout: float = 20.0) -> int | None:
    """Wait until `d` has just proposed the newest finalized block: restarting now gives it the longest
    time before its next turn, so a rolling restart misses no slot. None if that did not happen in time."""
    try:
        address = d.chain()["address"]
    except NodeApiError:
        return None
    deadline = time.monotonic() + timeout
    seen = -1
    while time.monotonic() < deadline:
        try:
            c = d.chain(timeout=1.0)
            h = c["finalized_height"]
            if h != seen:
                seen = h
                if d.api.block(h, timeout=3.0).proposer == address:
                    return int(h)
        except (NodeApiError, KeyError):
            pass
        time.sleep(0.05)
    return None


def halt_at(ctx: RunContext, d: Delegate, height: int | str) -> int:
    """Schedule a halt at `height`, or at "+N": N blocks above the node's finalized height, resolved by the
    node itself (no race with the chain). A network-wide halt needs one absolute height on every delegate.
    Returns the height the node will halt at."""
    doc = d.admin("halt-at", str(height))
    ctx.log(f"{d.name}: halt at {height}: halt_height={doc.get('halt_height')}")
    return int(doc["halt_height"])


def clear_halt(ctx: RunContext, d: Delegate) -> None:
    doc = d.admin("halt-at", "--clear")
    ctx.log(f"{d.name}: halt cleared (halted={doc.get('halted')})")


def all_at(ctx: RunContext, height: int, timeout: float) -> dict[str, int]:
    """Wait until every delegate has finalized `height`; their heights."""

    def reached() -> dict[str, int] | None:
        cs = chains(ctx)
        hs = {n: c["finalized_height"] for n, c in cs.items() if c}
        return hs if len(hs) == len(cs) and min(hs.values()) >= height else None

    result: dict[str, int] = wait_for(f"every delegate at height {height}", reached, timeout)
    return result


def block_time(ctx: RunContext, height: int) -> float:
    """Unix seconds of block `height`'s header timestamp (from the first delegate that has it)."""
    for d in ctx.delegates:
        try:
            return d.api.block(height, timeout=3.0).timestamp
        except (NodeApiError, KeyError):
            continue
    raise NodeApiError(f"no delegate has block {height}")
