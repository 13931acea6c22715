#!/usr/bin/python
"""Ansible module: which node release is installed and which is active, in ONE module run (issue 13).

It replaces a slurp of the release's install.json, an assert on its sha256 and a stat of the `current` link:
what a converged host costs node_release. With `activate` it also activates an installed release that is not
active, and with `switch_back` it switches back to the previous release instead, each through the release's
own launcher (`iotex-node release activate|switch-back`, which keep the layout's invariants): the same run,
not a command task of its own that every other host reports as skipped. `state()` and `converge()` are plain
Python the unit tests call in-process (tests/ops/test_iotex_home.py); `main()` only wraps them in AnsibleModule.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

DOCUMENTATION = r"""
---
module: iotex_release_state
short_description: Whether an IoTeX node release is installed (from the expected artifact) and active
description:
  - Reads ROOT/releases/VERSION/install.json and the ROOT/current link.
  - Fails when the version is installed from an artifact whose sha256 is not the expected one (releases are
    immutable).
  - With activate, an installed version that is not active is activated by its own launcher; with switch_back
    the previous release is made active by the current one's launcher (version and sha256 are not read).
    In check mode neither runs; the result says whether it would change.
options:
  root: {description: The releases root (iotex_releases_root)., type: path, required: true}
  version: {description: The release version (not with switch_back)., type: str, default: ""}
  sha256: {description: The sha256 of the controller's artifact of this version (not with switch_back)., type: str, default: ""}
  activate: {description: Activate the version when it is installed and not active., type: bool, default: false}
  switch_back: {description: Switch back to the previous release instead., type: bool, default: false}
  python: {description: "The interpreter the launchers run with (IOTEX_PYTHON); empty: the release's.", type: str, default: ""}
author: iotex-ops
"""

RETURN = r"""
installed: {description: The version is installed (from this artifact)., type: bool, returned: always}
current: {description: The version the current link points at, or an empty string., type: str, returned: always}
active: {description: The current link points at this version (after the activation)., type: bool, returned: always}
activated: {description: What `release activate` printed (active, previous, changed), when it ran., type: dict}
switched_back: {description: What `release switch-back` printed (active, previous, changed), when it ran., type: dict}
"""


class ReleaseStateError(Exception):
    pass


def state(root: str, version: str, sha256: str) -> dict[str, Any]:
    record = os.path.join(root, "releases", version, "install.json")
    try:
        with open(record, encoding="utf-8") as f:
            installed_sha256 = str(json.load(f).get("sha256", "")).lower()
    except FileNotFoundError:
        installed = False
    except (OSError, ValueError, AttributeError) as exc:
        raise ReleaseStateError(f"{record}: unreadable install record: {exc}") from None
    else:
        if installed_sha256 != sha256.strip().lower():
            raise ReleaseStateError(
                f"release {version} is already installed from another artifact (sha256 {installed_sha256}); "
                "releases are immutable: build a new version"
            )
        installed = True
    current = _link_version(os.path.join(root, "current"))
    return {"changed": False, "installed": installed, "current": current, "active": current == version}


def _link_version(link: str) -> str:
    return os.path.basename(os.readlink(link).rstrip("/")) if os.path.islink(link) else ""


def _launch(argv: list[str], python: str, run: Any) -> dict[str, Any]:
    env = {**os.environ, **({"IOTEX_PYTHON": python} if python else {})}
    try:
        proc = run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ReleaseStateError(f"{' '.join(argv[:3])}: {exc}") from None
    if proc.returncode != 0:
        why = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        raise ReleaseStateError(f"{' '.join(argv[:3])} failed: {why[0]}")
    try:
        doc: dict[str, Any] = json.loads(proc.stdout)
    except ValueError:
        raise ReleaseStateError(f"{' '.join(argv[:3])} printed no JSON: {proc.stdout.strip()[-200:]!r}") from None
    return doc


def converge(params: dict[str, Any], check_mode: bool = False, run: Any = subprocess.run) -> dict[str, Any]:
    """state(), then the activation or the switch back the parameters ask for (none in check mode)."""
    root = params["root"]
    if params.get("switch_back"):
        current = _link_version(os.path.join(root, "current"))
        previous = _link_version(os.path.join(root, "previous"))
        if not previous:
            raise ReleaseStateError(f"no previous release to switch back to in {root}")
        if check_mode:
            return {"changed": True, "installed": True, "current": current, "active": False}
        launcher = os.path.join(root, "current", "bin", "iotex-node")
        doc = _launch([launcher, "release", "switch-back", "--root", root, "--json"], params.get("python", ""), run)
        active = str(doc.get("active", ""))
        return {"changed": bool(doc.get("changed")), "installed": True, "current": active, "active": True, "switched_back": doc}
    version, sha256 = params.get("version") or "", params.get("sha256") or ""
    if not version or not sha256:
        raise ReleaseStateError("version and sha256 are required unless switch_back is set")
    result = state(root, version, sha256)
    if not params.get("activate") or not result["installed"] or result["active"]:
        return result
    if check_mode:
        return {**result, "changed": True}
    launcher = os.path.join(root, "releases", version, "bin", "iotex-node")
    doc = _launch([launcher, "release", "activate", version, "--root", root, "--json"], params.get("python", ""), run)
    return {**result, "changed": bool(doc.get("changed")), "current": version, "active": True, "activated": doc}


def main() -> None:
    from ansible.module_utils.basic import AnsibleModule

    module = AnsibleModule(
        argument_spec={
            "root": {"type": "path", "required": True},
            "version": {"type": "str", "default": ""},
            "sha256": {"type": "str", "default": ""},
            "activate": {"type": "bool", "default": False},
            "switch_back": {"type": "bool", "default": False},
            "python": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    try:
        result = converge(module.params, check_mode=module.check_mode)
    except ReleaseStateError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
