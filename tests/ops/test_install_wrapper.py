"""node_release's install command (playbooks/roles/node_release/tasks/install.yml), run as the task runs it.

Its artifacts here are tarballs with stand-in launchers that record how they were called: one that knows
`release install --activate` (this source's releases) and one from before it, which refuses the option as
click does (exit 2) and is activated by its installed launcher after the install.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from iotex_ops import content

pytestmark = pytest.mark.slow  # runs the command's processes

NEW_LAUNCHER = r"""#!/bin/sh
# knows --activate
echo "$*" >> "$CALLS"
case "$*" in
  *--activate*)
    echo '{"version": "9.9.9", "changed": true,'
    echo ' "activated": {"active": "9.9.9", "previous": null, "changed": true}}' ;;
  *) echo '{"version": "9.9.9", "changed": true}' ;;
esac
"""

OLD_LAUNCHER = r"""#!/bin/sh
# from before --activate: refuses it as click does
echo "$*" >> "$CALLS"
for a in "$@"; do
  if [ "$a" = --activate ]; then echo "Error: No such option: --activate" >&2; exit 2; fi
done
if [ "$2" = install ]; then
  root=
  while [ $# -gt 0 ]; do if [ "$1" = --root ]; then root=$2; fi; shift; done
  mkdir -p "$root/releases/9.9.9/bin"
  cp "$0" "$root/releases/9.9.9/bin/iotex-node"
  echo '{"version": "9.9.9", "changed": true}'
else
  echo '{"active": "9.9.9", "previous": null, "changed": true}'
fi
"""


def _command() -> str:
    tasks = yaml.safe_load((content.playbooks_dir() / "roles/node_release/tasks/install.yml").read_text())
    task = next(t for t in tasks if "_install_argv" in t.get("vars", {}))
    source: str = task["vars"]["_install_argv"][2]
    return source


def _artifact(tmp: Path, launcher: str) -> tuple[Path, str]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = launcher.encode()
        info = tarfile.TarInfo("iotex-node-9.9.9/bin/iotex-node")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    path = tmp / "iotex-node-9.9.9.tar.gz"
    path.write_bytes(buf.getvalue())
    return path, hashlib.sha256(buf.getvalue()).hexdigest()


def _run(
    tmp: Path, launcher: str, activate: bool, sha256: str | None = None
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    art, digest = _artifact(tmp, launcher)
    root = tmp / "root"
    root.mkdir()
    calls = tmp / "calls"
    argv = [sys.executable, "-c", _command(), str(art), "iotex-node-9.9.9", str(root), sha256 or digest]
    argv += ["true" if activate else "false", "release", "install", str(art), "--root", str(root), "--json"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, env={"CALLS": str(calls), "PATH": "/usr/bin:/bin"})
    return proc, calls.read_text().splitlines() if calls.exists() else []


def _doc(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def test_a_release_that_knows_activate_is_installed_and_activated_by_one_launcher_run(tmp_path: Path) -> None:
    proc, calls = _run(tmp_path, NEW_LAUNCHER, activate=True)
    doc = _doc(proc)
    assert doc["activated"]["active"] == "9.9.9" and doc["changed"] is True
    assert len(calls) == 1 and calls[0].endswith("--activate")


def test_without_activation_the_launcher_only_installs(tmp_path: Path) -> None:
    proc, calls = _run(tmp_path, NEW_LAUNCHER, activate=False)
    assert "activated" not in _doc(proc)
    assert len(calls) == 1 and "--activate" not in calls[0]


def test_an_older_release_is_installed_then_activated_by_its_installed_launcher(tmp_path: Path) -> None:
    proc, calls = _run(tmp_path, OLD_LAUNCHER, activate=True)
    doc = _doc(proc)
    assert doc["activated"] == {"active": "9.9.9", "previous": None, "changed": True}
    # the refused --activate, the install without it, then `release activate` by the installed launcher
    assert [c.split()[:2] for c in calls] == [["release", "install"], ["release", "install"], ["release", "activate"]]
    assert "--activate" in calls[0] and "--activate" not in calls[1]
    assert "No such option" not in proc.stderr  # the refusal of the probe is not shown as an error


def test_a_wrong_sha256_installs_nothing_and_says_so(tmp_path: Path) -> None:
    proc, calls = _run(tmp_path, NEW_LAUNCHER, activate=True, sha256="0" * 64)
    assert proc.returncode != 0 and "expected " + "0" * 64 in proc.stderr and "not installed" in proc.stderr
    assert calls == []
