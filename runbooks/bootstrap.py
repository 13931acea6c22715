"""Network bootstrap: keys and genesis for the inventory's delegates, the release on every host, start,
and proof that blocks finalize with every delegate proposing and endorsing.

The keys and genesis are generated on the controller (`iotex-node testnet`) into the files the inventory
names (node_genesis_src, node_keystore_src, ...), then the node playbook installs and starts everything.
A network that already exists is only replaced with new_chain=true (destructive: its chain is wiped).
"""

from __future__ import annotations

import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from iotex_ops.errors import OpsError
from iotex_ops.hosts import LocalHost
from iotex_ops.runbook import Check, CheckResult, Param, Runbook, RunContext, Step, checks
from iotex_ops.runbook import actions as act

_SRC = {"keystore.json": "node_keystore_src", "keystore.pass": "node_password_file_src", "node_key.json": "node_key_src",
        "admin.token": "node_admin_token_src"}  # fmt: skip


def _version(ctx: RunContext) -> str:
    return str(ctx.params["version"] or ctx.network.var("node_release_version") or "")


def preflight(ctx: RunContext) -> list[str]:
    problems = []
    if not _version(ctx):
        problems.append("no release: give version=X or set node_release_version in the inventory")
    else:
        try:
            act.artifact_manifest(ctx, _version(ctx))
        except OpsError as exc:
            problems.append(str(exc))
    if not ctx.network.var("node_genesis_src"):
        problems.append("the inventory sets no node_genesis_src (where the genesis is written)")
    for d in ctx.delegates:
        missing = [v for v in _SRC.values() if not d.vars.get(v)]
        if missing:
            problems.append(f"{d.name}: the inventory sets no {', '.join(missing)}")
    running = [n for n, c in checks.chains(ctx).items() if c]
    if running and not ctx.params["new_chain"]:
        problems.append(f"a chain is running on {', '.join(running)}: pass new_chain=true to replace it (destructive)")
    return problems


def wipe(ctx: RunContext) -> None:
    d = ctx.delegate
    home = d.home.rstrip("/")
    if not home.startswith("/") or home.count("/") < 2:
        raise OpsError(f"{d.name}: refusing to remove node home {home!r}")
    try:
        d.service("stop")
    except OpsError as exc:
        ctx.log(f"{d.name}: stop: {exc} (not running?)")
    d.run(f"rm -rf -- {shlex.quote(home)}", timeout=60)
    ctx.log(f"{d.name}: node stopped, {home} removed")


def genesis(ctx: RunContext) -> None:
    ctx.remember("t_genesis", time.time())
    n = len(ctx.delegates)
    genesis_dst = Path(str(ctx.network.var("node_genesis_src")))
    with tempfile.TemporaryDirectory(prefix="iotex-bootstrap-") as tmp:
        out = Path(tmp) / "net"
        node = shutil.which("iotex-node") or str(Path(sys.executable).parent / "iotex-node")
        interval, accounts = str(ctx.params["block_interval_ms"]), str(ctx.params["accounts"])
        args = [node, "testnet", "--delegates", str(n), "--out", str(out)]
        args += ["--block-interval-ms", interval, "--accounts", accounts]
        LocalHost("controller").run(" ".join(shlex.quote(a) for a in args), timeout=120)
        genesis_dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "genesis.json", genesis_dst)
        if (out / "accounts.secret.json").exists():
            dst = genesis_dst.parent / "accounts.secret.json"
            shutil.copyfile(out / "accounts.secret.json", dst)
            dst.chmod(0o600)
        for i, d in enumerate(ctx.delegates):
            for name, var in _SRC.items():
                dst = Path(str(d.vars[var]))
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(out / f"node{i}" / name, dst)
                dst.chmod(0o600)
    ctx.log(f"new keys for {n} delegates and a genesis at {genesis_dst}")


def install(ctx: RunContext) -> None:
    ctx.remember("t_install", time.time())
    ctx.playbook("node.yml", extravars={"node_release_version": _version(ctx), "node_state": "started"})
    ctx.remember("t_started", time.time())


def first_block(ctx: RunContext) -> CheckResult:
    act.all_at(ctx, 1, timeout=60)
    final = time.time()  # when block 1 is final on every delegate, as polled (its header time is when it was proposed)
    value = {
        "from_genesis_s": round(final - float(ctx.recall("t_genesis")), 3),
        "from_install_s": round(final - float(ctx.recall("t_install")), 3),
        "from_nodes_started_s": round(final - float(ctx.recall("t_started")), 3),
    }
    ctx.remember("first_block", value)
    return CheckResult(True, value)


def measure(ctx: RunContext) -> dict[str, Any]:
    fb = ctx.recall("first_block") or {}
    # from the new keys and genesis to block 1 final on every delegate (wiping an old chain is not counted)
    return {"to_first_block_s": fb.get("from_genesis_s"), "first_block": fb}


RUNBOOK = Runbook(
    name="bootstrap",
    summary="Keys and genesis for the delegates, install the release, start, verify every delegate proposes and endorses",
    params=(
        Param("version", str, default="", help="release to install (default: the inventory's node_release_version)"),
        Param("new_chain", bool, default=False, help="replace a running chain (stops it and removes its data)"),
        Param("block_interval_ms", int, default=1000, help="the genesis block interval", minimum=100),
        Param("accounts", int, default=20, help="funded test accounts in the genesis (for load)", minimum=0),
        Param("window", int, default=12, help="blocks in which every delegate must propose and endorse", minimum=1),
    ),
    preflight=preflight,
    steps=(
        Step(
            "wipe",
            wipe,
            "stop the node and remove its home (only with new_chain=true)",
            hosts="delegates",
            serial=False,
            destructive=True,
            when=lambda c: bool(c.params["new_chain"]),
            phase="wipe",
        ),
        Step("genesis", genesis, "generate delegate keys and a genesis into the inventory's source files", phase="genesis"),
        Step(
            "install-start",
            install,
            "install the release, render configs, start every node (playbooks/node.yml)",
            timeout=600,
            phase="install and start",
            verify=(Check("the first block is finalized on every delegate", first_block, timeout=90, interval=1),),
        ),
        Step(
            "verify",
            lambda ctx: None,
            "every delegate proposes and endorses; all agree",
            phase="verify",
            verify=(checks.all_propose_and_endorse(window=12, timeout=90), checks.agree()),
        ),
    ),
    measure=measure,
    # blast radius (drill schedules): starts (or replaces) the whole chain
    out_of_consensus=0,
    stops_chain=True,
    expected_alerts=("DelegateDown", "ChainStalled", "PeersLow", "DelegateLagging", "VersionSkew"),
)
