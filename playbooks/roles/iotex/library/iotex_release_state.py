#!/usr/bin/python
"""Ansible module: which node release is installed and which is active, in ONE module run (issue 13).

It replaces a slurp of the release's install.json, an assert on its sha256 and a stat of the `current` link:
what a converged host costs node_release. With `activate` it also activates an installed release that is not
active, and with `switch_back` it switches back to the previous release instead, each through the release's
own launcher (`iotex-node release activate|switch-back`, which keep the layout's invariants): the same run,
not a command task of its own that every other host reports as skipped.

A release that is not installed is installed in the same task: the role's action plugin of the same name
(roles/iotex/action_plugins) transfers the controller's artifact (and its signed manifest) and runs this module
again with `artifact` set; `install()` places the files in ROOT/artifacts, checks the sha256 and installs the
release with its own launcher (`release install --activate`), one task per host where there were four (state,
include, copy, install). `state()`, `converge()` and `install()` are plain Python the unit tests call in-process
(tests/ops/test_iotex_home.py, tests/ops/test_install_wrapper.py); `main()` only wraps them in AnsibleModule.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tarfile
import tempfile
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
  src:
    description: "The controller's artifact: when the version is not installed, the action plugin transfers it
      (with signed_src) and the module installs it."
    type: path
  signed_src: {description: "The controller's signed manifest, verified by the launcher with trusted_keys.", type: path}
  trusted_keys:
    description: "Publisher keys (ed25519:<hex>) written to ROOT/trusted.keys for a signed install."
    type: list
    elements: str
    default: []
  channel: {description: "The channel the signed manifest must be for (empty: any).", type: str, default: ""}
  artifact: {description: "Set by the action plugin: the transferred artifact on the host (not for playbooks).", type: path}
  signed: {description: "Set by the action plugin: the transferred signed manifest on the host (not for playbooks).", type: path}
author: iotex-ops
"""

RETURN = r"""
installed: {description: The version is installed (from this artifact)., type: bool, returned: always}
current: {description: The version the current link points at, or an empty string., type: str, returned: always}
active: {description: The current link points at this version (after the activation)., type: bool, returned: always}
activated: {description: What `release activate` printed (active, previous, changed), when it ran., type: dict}
switched_back: {description: What `release switch-back` printed (active, previous, changed), when it ran., type: dict}
installed_now: {description: What `release install` printed (version, path, sha256, changed), when it ran., type: dict}
active_changed:
  description: The active release changed in this run (the node must restart to run it).
  type: bool
  returned: always
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


def _run_launcher(argv: list[str], python: str, run: Any, timeout: float = 120.0) -> tuple[int, str, str]:
    """A release launcher's run (IOTEX_PYTHON set when given): its exit code, stdout and stderr."""
    env = {**os.environ, **({"IOTEX_PYTHON": python} if python else {})}
    try:
        p = run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ReleaseStateError(f"{' '.join(argv[:3])}: {exc}") from None
    return p.returncode, p.stdout, p.stderr


def _result(what: str, code: int, out: str, err: str) -> dict[str, Any]:
    """The launcher's JSON, or ReleaseStateError naming `what` and the last line it said."""
    if code != 0:
        why = (err or out).strip().splitlines()[-1:] or [f"exit {code}"]
        raise ReleaseStateError(f"{what} failed: {why[0]}")
    try:
        doc: dict[str, Any] = json.loads(out)
    except ValueError:
        raise ReleaseStateError(f"{what} printed no JSON: {out.strip()[-200:]!r}") from None
    return doc


def _launch(argv: list[str], python: str, run: Any) -> dict[str, Any]:
    return _result(" ".join(argv[:3]), *_run_launcher(argv, python, run))


def converge(params: dict[str, Any], check_mode: bool = False, run: Any = subprocess.run) -> dict[str, Any]:
    """state(), then the install, activation or switch back the parameters ask for (none in check mode)."""
    result = _converge(params, check_mode, run)
    result.setdefault("active_changed", bool(result["changed"]))  # the install paths set it themselves
    return result


def _converge(params: dict[str, Any], check_mode: bool, run: Any) -> dict[str, Any]:
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
    if not result["installed"] and params.get("artifact"):
        if check_mode:
            return {**result, "changed": True, "active_changed": bool(params.get("activate"))}
        return {**result, **install(params, run)}
    if not params.get("activate") or not result["installed"] or result["active"]:
        return result
    if check_mode:
        return {**result, "changed": True}
    launcher = os.path.join(root, "releases", version, "bin", "iotex-node")
    doc = _launch([launcher, "release", "activate", version, "--root", root, "--json"], params.get("python", ""), run)
    return {**result, "changed": bool(doc.get("changed")), "current": version, "active": True, "activated": doc}


def _place(src: str, dest: str, mode: int) -> bytes:
    """Copy the transferred file `src` to `dest` (atomically, with `mode`), unless dest already has its bytes;
    the bytes."""
    with open(src, "rb") as f:
        data = f.read()
    try:
        with open(dest, "rb") as f:
            if f.read() == data:
                os.chmod(dest, mode)
                return data
    except FileNotFoundError:
        pass
    _write(dest, data, mode)
    return data


def _write(dest: str, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=os.path.dirname(dest))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def install(params: dict[str, Any], run: Any = subprocess.run) -> dict[str, Any]:
    """Install the transferred artifact of `version` and activate it when asked.

    The artifact (0444) and its signed manifest go to ROOT/artifacts under the controller's names, the trusted
    keys to ROOT/trusted.keys; the artifact's sha256 is checked before anything of it is unpacked; then the
    release's own launcher, from a stage under ROOT, installs it (`release install`, verifying the signed
    manifest when there is one) and with `--activate` makes it current in the same process. A release from
    before that option refuses it (exit 2, click's usage error): it is installed without it and activated by
    its installed launcher."""
    root, version, expected = params["root"], params["version"], params["sha256"].strip().lower()
    python = params.get("python") or ""
    artifacts = os.path.join(root, "artifacts")
    os.makedirs(artifacts, mode=0o755, exist_ok=True)
    artifact = os.path.join(artifacts, f"iotex-node-{version}.tar.gz")
    digest = hashlib.sha256(_place(params["artifact"], artifact, 0o444)).hexdigest()
    if digest != expected:
        raise ReleaseStateError(f"{artifact} has sha256 {digest}, expected {expected}; not installed")
    argv = ["release", "install", artifact, "--root", root, "--sha256", expected]
    argv += ["--python", python] if python else []
    if params.get("signed"):
        keys = [k.strip() for k in params.get("trusted_keys") or [] if k.strip()]
        if not keys:
            raise ReleaseStateError("a signed release needs trusted_keys (the publishers' ed25519 keys); not installed")
        signed = os.path.join(artifacts, f"iotex-node-{version}.signed.json")
        _place(params["signed"], signed, 0o444)
        trusted = os.path.join(root, "trusted.keys")
        _write(trusted, ("\n".join(keys) + "\n").encode(), 0o644)
        argv += ["--signed", signed, "--trusted-keys", trusted]
        argv += ["--channel", params["channel"]] if params.get("channel") else []
    argv.append("--json")
    activate = bool(params.get("activate"))
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    with tempfile.TemporaryDirectory(prefix=".stage-", dir=root) as stage:
        try:
            with tarfile.open(artifact) as tar:
                tar.extractall(stage, **safe)  # noqa: S202 - sha256 checked first, the data filter; the launcher verifies every file
        except (tarfile.TarError, OSError) as exc:
            raise ReleaseStateError(f"{artifact} could not be unpacked: {exc}") from None
        launcher = os.path.join(stage, f"iotex-node-{version}", "bin", "iotex-node")
        if not os.path.isfile(launcher):
            raise ReleaseStateError(f"{artifact} has no iotex-node-{version}/bin/iotex-node; not installed")
        code, out, err = _run_launcher([launcher, *argv, *(["--activate"] if activate else [])], python, run, 300)
        older = activate and code == 2 and "--activate" in err
        if older:  # a release from before `install --activate`
            code, out, err = _run_launcher([launcher, *argv], python, run, 300)
    doc = _result(f"release install of {version}", code, out, err)
    activated = doc.pop("activated", None)
    if older:
        installed_launcher = os.path.join(root, "releases", version, "bin", "iotex-node")
        activated = _launch([installed_launcher, "release", "activate", version, "--root", root, "--json"], python, run)
    current = _link_version(os.path.join(root, "current"))
    result: dict[str, Any] = {
        "changed": True,
        "installed": True,
        "current": current,
        "active": current == version,
        "installed_now": doc,
        "active_changed": bool(activated and activated.get("changed")),
    }
    if activated is not None:
        result["activated"] = activated
    return result


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
            "src": {"type": "path"},
            "signed_src": {"type": "path"},
            "trusted_keys": {"type": "list", "elements": "str", "default": [], "no_log": False},
            "channel": {"type": "str", "default": ""},
            "artifact": {"type": "path"},
            "signed": {"type": "path"},
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
