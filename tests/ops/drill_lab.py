"""Helpers for the drill tests: run `iotex-ops` as a separate process against one lab, read journals."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from iotex_ops.lab import lab as lab_mod
from iotex_ops.runbook import journal as journal_mod
from iotex_ops.runbook.store import RunStore
from tests.ops.lab_checks import cli_up

IOTEX_OPS = [str(Path(sys.executable).parent / "iotex-ops")]


def lab_up(hosts: str, prefix: str, *extra: str) -> Iterator[lab_mod.LabState]:
    """A 4-delegate lab in a short directory under /tmp (unix socket paths), removed afterwards; `extra`: more
    `lab up` options (`--standby node3`)."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    root = d / "lab"
    try:
        yield cli_up(root, hosts, *extra)  # through `iotex-ops lab up`, as a user would
    finally:
        lab_mod.down(root)
        shutil.rmtree(d, ignore_errors=True)


def env_for(root: Path, state: Path) -> dict[str, str]:
    return {**os.environ, "IOTEX_OPS_LAB_DIR": str(root), "IOTEX_OPS_STATE_DIR": str(state), "LC_ALL": "C.UTF-8"}


def ops(args: list[str], root: Path, state: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*IOTEX_OPS, *args], env=env_for(root, state), capture_output=True, text=True, timeout=timeout)


def spawn(args: list[str], root: Path, state: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*IOTEX_OPS, *args], env=env_for(root, state), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True
    )


def only_run(state: Path) -> tuple[str, Path]:
    store = RunStore(state)
    ids = store.ids()
    assert ids, f"no run under {state}"
    return ids[-1], store.dir(ids[-1]).journal


def wait_event(state: Path, predicate: Any, timeout: float = 120) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ids = RunStore(state).ids()
        if ids:
            events = journal_mod.read(RunStore(state).dir(ids[-1]).journal)
            if any(predicate(e) for e in events):
                return events
        time.sleep(0.2)
    raise AssertionError(f"no such journal event within {timeout}s")


def chains(st: lab_mod.LabState) -> list[dict[str, Any]]:
    from iotex_ops.nodeapi import NodeClient

    return [NodeClient(n.api_url, name=n.name).chain(timeout=3).to_json() for n in st.nodes]


def count(events: list[dict[str, Any]], kind: str, step: str, host: str | None = None) -> int:
    return sum(1 for e in events if e["event"] == kind and e.get("step") == step and (host is None or e.get("host") == host))


def dump(res: subprocess.CompletedProcess[str]) -> str:
    return f"exit {res.returncode}\nstdout:\n{res.stdout[-4000:]}\nstderr:\n{res.stderr[-4000:]}"


def result_json(res: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    try:
        return json.loads(res.stdout)  # type: ignore[no-any-return]
    except ValueError:
        raise AssertionError(dump(res)) from None
