#!/usr/bin/python
"""Ansible module: which node release is installed and which is active, in ONE read-only module run (issue 13).

It replaces a slurp of the release's install.json, an assert on its sha256 and a stat of the `current` link:
what a converged host costs node_release. `state()` is plain Python the unit tests call in-process
(tests/ops/test_iotex_home.py); `main()` only wraps it in AnsibleModule.
"""

from __future__ import annotations

import json
import os
from typing import Any

DOCUMENTATION = r"""
---
module: iotex_release_state
short_description: Whether an IoTeX node release is installed (from the expected artifact) and active
description:
  - Reads ROOT/releases/VERSION/install.json and the ROOT/current link; changes nothing (also in check mode).
  - Fails when the version is installed from an artifact whose sha256 is not the expected one (releases are
    immutable).
options:
  root: {description: The releases root (iotex_releases_root)., type: path, required: true}
  version: {description: The release version., type: str, required: true}
  sha256: {description: The sha256 of the controller's artifact of this version., type: str, required: true}
author: iotex-ops
"""

RETURN = r"""
installed: {description: The version is installed (from this artifact)., type: bool, returned: always}
current: {description: The version the current link points at, or an empty string., type: str, returned: always}
active: {description: The current link points at this version., type: bool, returned: always}
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
    link = os.path.join(root, "current")
    current = os.path.basename(os.readlink(link).rstrip("/")) if os.path.islink(link) else ""
    return {"changed": False, "installed": installed, "current": current, "active": current == version}


def main() -> None:
    from ansible.module_utils.basic import AnsibleModule

    module = AnsibleModule(
        argument_spec={
            "root": {"type": "path", "required": True},
            "version": {"type": "str", "required": True},
            "sha256": {"type": "str", "required": True},
        },
        supports_check_mode=True,
    )
    try:
        result = state(module.params["root"], module.params["version"], module.params["sha256"])
    except ReleaseStateError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
