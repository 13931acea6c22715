"""node_release's install (iotex_release_state's `install()`, once the action plugin has transferred the
artifact), run as the module runs it on a fresh host: its launchers are real processes.

Its artifacts here are tarballs with stand-in launchers that record how they were called: one that knows
`release install --activate` (this source's releases) and one from before it, which refuses the option as
click does (exit 2) and is activated by its installed launcher after the install.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import tarfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from iotex_ops import content

pytestmark = pytest.mark.slow  # runs the launchers' processes

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


def _module() -> ModuleType:
    path = content.playbooks_dir() / "roles/iotex/library/iotex_release_state.py"
    spec = importlib.util.spec_from_file_location("_iotex_lib_release_install", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


rel = _module()


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
    tmp: Path, launcher: str, activate: bool, sha256: str | None = None, **extra: Any
) -> tuple[dict[str, Any] | str, list[str], Path]:
    """The module's run on a fresh host: the artifact as the action plugin transferred it, the launchers real
    processes (they append their arguments to CALLS). Its result, or the error it fails with."""
    (tmp / "upload").mkdir()
    art, digest = _artifact(tmp / "upload", launcher)
    root = tmp / "root"
    root.mkdir()
    calls = tmp / "calls"
    params = {"root": str(root), "version": "9.9.9", "sha256": sha256 or digest, "activate": activate, "artifact": str(art)}
    os.environ["CALLS"] = str(calls)
    try:
        out: dict[str, Any] | str = rel.converge({**params, **extra})
    except rel.ReleaseStateError as exc:
        out = str(exc)
    finally:
        del os.environ["CALLS"]
    return out, calls.read_text().splitlines() if calls.exists() else [], root


def _doc(out: dict[str, Any] | str) -> dict[str, Any]:
    assert isinstance(out, dict), out
    return out


def test_a_release_that_knows_activate_is_installed_and_activated_by_one_launcher_run(tmp_path: Path) -> None:
    out, calls, root = _run(tmp_path, NEW_LAUNCHER, activate=True)
    doc = _doc(out)
    assert doc["activated"]["active"] == "9.9.9" and doc["changed"] is True and doc["active_changed"] is True
    assert doc["installed"] is True and doc["installed_now"] == {"version": "9.9.9", "changed": True}
    assert len(calls) == 1 and calls[0].endswith("--activate")
    # the artifact is where the copy task put it, read-only, and installed from there
    placed = root / "artifacts" / "iotex-node-9.9.9.tar.gz"
    assert placed.read_bytes() == (tmp_path / "upload" / "iotex-node-9.9.9.tar.gz").read_bytes()
    assert placed.stat().st_mode & 0o777 == 0o444 and f"install {placed} --root {root}" in calls[0]
    assert not list(root.glob(".stage-*"))  # the stage is gone


def test_without_activation_the_launcher_only_installs_and_no_restart_follows(tmp_path: Path) -> None:
    out, calls, _ = _run(tmp_path, NEW_LAUNCHER, activate=False)
    doc = _doc(out)
    assert "activated" not in doc and doc["changed"] is True and doc["active_changed"] is False
    assert len(calls) == 1 and "--activate" not in calls[0]


def test_an_older_release_is_installed_then_activated_by_its_installed_launcher(tmp_path: Path) -> None:
    out, calls, _ = _run(tmp_path, OLD_LAUNCHER, activate=True)
    doc = _doc(out)
    assert doc["activated"] == {"active": "9.9.9", "previous": None, "changed": True} and doc["active_changed"] is True
    # the refused --activate, the install without it, then `release activate` by the installed launcher
    assert [c.split()[:2] for c in calls] == [["release", "install"], ["release", "install"], ["release", "activate"]]
    assert "--activate" in calls[0] and "--activate" not in calls[1]


def test_a_wrong_sha256_installs_nothing_and_says_so(tmp_path: Path) -> None:
    out, calls, root = _run(tmp_path, NEW_LAUNCHER, activate=True, sha256="0" * 64)
    assert isinstance(out, str) and "expected " + "0" * 64 in out and "not installed" in out
    assert calls == [] and not (root / "releases").exists()


def test_a_signed_install_writes_the_manifest_and_the_keys_and_passes_them_to_the_launcher(tmp_path: Path) -> None:
    signed = tmp_path / "signed.json"
    signed.write_text('{"manifest": "signed"}')
    keys = ["ed25519:" + "ab" * 32, "ed25519:" + "cd" * 32]
    out, calls, root = _run(tmp_path, NEW_LAUNCHER, activate=True, signed=str(signed), trusted_keys=keys, channel="stable")
    _doc(out)
    trusted = root / "trusted.keys"
    assert trusted.read_text() == "\n".join(keys) + "\n"  # one key a line: real newlines
    manifest = root / "artifacts" / "iotex-node-9.9.9.signed.json"
    assert manifest.read_text() == signed.read_text()
    assert f"--signed {manifest} --trusted-keys {trusted} --channel stable" in calls[0]


def test_a_signed_install_without_keys_is_refused_before_the_launcher_runs(tmp_path: Path) -> None:
    signed = tmp_path / "signed.json"
    signed.write_text("{}")
    out, calls, _ = _run(tmp_path, NEW_LAUNCHER, activate=True, signed=str(signed), trusted_keys=[])
    assert isinstance(out, str) and "needs trusted_keys" in out and calls == []


def test_a_launcher_that_fails_fails_the_task_with_its_last_line(tmp_path: Path) -> None:
    failing = '#!/bin/sh\necho "$*" >> "$CALLS"\necho \'refused: signature expired\' >&2\nexit 1\n'
    out, calls, _ = _run(tmp_path, failing, activate=True)
    assert isinstance(out, str) and "release install of 9.9.9 failed: refused: signature expired" in out
    assert len(calls) == 1  # exit 1 is not the older release's usage error: no second try
