#!/usr/bin/python
"""Ansible module: a host's node home in ONE module run (issue 13, docs/performance.md).

Directories with their modes, files written atomically only when their content differs, files generated once
(the admin token) and the node's database asked for when absent: what the host and node_config roles used to
do in about a dozen module runs per host (one Python interpreter, or one Mitogen call, each). The logic is
`converge()`, plain Python the unit tests call in-process (tests/ops/test_iotex_home.py); `main()` only wraps
it in AnsibleModule.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import json
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from typing import Any

DOCUMENTATION = r"""
---
module: iotex_home
short_description: Directories, files and the database of an IoTeX node's home, in one module run
description:
  - Creates directories and sets their modes (and owner, group), writes files atomically only when their
    content or mode differs, generates files that must exist once (an admin token), and, when the node's
    database is absent, asks the node's first start to create it (C(init.request) in the home, bound to the
    home's genesis.json by its sha256), or initializes it with the release's own C(iotex-node init) for a
    release built before such requests.
  - In check mode it reports what would change and changes nothing.
options:
  directories:
    description: Directories to create, each C(path) and C(mode) (octal string).
    type: list
    elements: dict
    default: []
  files:
    description: Files to write, each C(dest), C(content) (text) and C(mode); the content is never logged.
    type: list
    elements: dict
    default: []
  generate:
    description: Files made once with a random URL-safe token when absent, each C(dest) and C(mode).
    type: list
    elements: dict
    default: []
  owner:
    description: Owner of everything made here (empty, the connecting user).
    type: str
    default: ""
  group:
    description: Group of everything made here (empty, the owner's).
    type: str
    default: ""
  init:
    description:
      - When C(home)/C(database) is absent, write C(home)/init.request for the home's genesis.json; the node
        creates the database at its next start, after checking its keystore and password. A release without
        C(lib/iotex_node/init_request.py) (found through C(node_bin)) gets C(node_bin) init on a staging home
        next to C(home) instead (the node's own validation of genesis, keystore and password), whose database
        is moved in.
      - Keys C(home), C(database) (relative to home), C(node_bin), C(name), C(python) (IOTEX_PYTHON).
    type: dict
author: iotex-ops
"""

EXAMPLES = r"""
- name: Node home
  iotex_home:
    directories: [{path: /var/lib/iotex/node, mode: "0700"}]
    files: [{dest: /var/lib/iotex/node/config.toml, content: "...", mode: "0644"}]
    generate: [{dest: /var/lib/iotex/node/admin.token, mode: "0600"}]
  no_log: true
"""

RETURN = r"""
directories:
  description: The directories created or whose mode or owner changed.
  type: list
  returned: always
files:
  description: The files written (or that would be, in check mode), by path.
  type: list
  returned: always
generated:
  description: The files generated.
  type: list
  returned: always
database_initialized:
  description: Whether the database was (or would be) initialized by C(iotex-node init) (older releases).
  type: bool
  returned: always
database_requested:
  description: Whether a request for the node's next start to create the database was (or would be) written.
  type: bool
  returned: always
"""


class HomeError(Exception):
    pass


def _ids(owner: str, group: str) -> tuple[int, int]:
    """(uid, gid) to set, -1 for "leave as is"."""
    try:
        uid = pwd.getpwnam(owner).pw_uid if owner else -1
        if group:
            gid = grp.getgrnam(group).gr_gid
        else:
            gid = pwd.getpwnam(owner).pw_gid if owner else -1
    except KeyError as exc:
        raise HomeError(f"no such user or group: {exc}") from None
    return uid, gid


def _mode(value: Any) -> int:
    if isinstance(value, int):
        return value
    try:
        return int(str(value), 8)
    except ValueError:
        raise HomeError(f"mode {value!r} is not an octal number") from None


def _attrs_differ(st: os.stat_result, mode: int, uid: int, gid: int) -> bool:
    return (st.st_mode & 0o7777) != mode or (uid != -1 and st.st_uid != uid) or (gid != -1 and st.st_gid != gid)


def _set_attrs(path: str, mode: int, uid: int, gid: int) -> None:
    if uid != -1 or gid != -1:
        os.chown(path, uid, gid)
    os.chmod(path, mode)


def _directory(path: str, mode: int, uid: int, gid: int, check: bool) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if not check:
            parent = os.path.dirname(path.rstrip("/"))
            if parent and not os.path.isdir(parent):
                _directory(parent, mode, uid, gid, check)
            os.mkdir(path, mode)
            _set_attrs(path, mode, uid, gid)
        return True
    if not os.path.isdir(path):
        raise HomeError(f"{path} exists and is not a directory")
    if _attrs_differ(st, mode, uid, gid):
        if not check:
            _set_attrs(path, mode, uid, gid)
        return True
    return False


def _write_atomically(dest: str, data: bytes, mode: int, uid: int, gid: int) -> None:
    """The new content under a temporary name in the same directory, flushed, then renamed over dest: a reader
    (the node starting) sees the old file or the new one, never a part."""
    fd, tmp = tempfile.mkstemp(prefix=".iotex-home-", dir=os.path.dirname(dest) or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _set_attrs(tmp, mode, uid, gid)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _file(dest: str, data: bytes, mode: int, uid: int, gid: int, check: bool) -> bool:
    try:
        st = os.stat(dest)
    except FileNotFoundError:
        if not check:
            _write_atomically(dest, data, mode, uid, gid)
        return True
    if st.st_size == len(data):
        with open(dest, "rb") as f:
            same = f.read() == data
    else:
        same = False
    if not same:
        if not check:
            _write_atomically(dest, data, mode, uid, gid)
        return True
    if _attrs_differ(st, mode, uid, gid):
        if not check:
            _set_attrs(dest, mode, uid, gid)
        return True
    return False


# The node's own module that reads the request (node/iotex_node/init_request.py): a release that has it creates
# its database at its first start; the request file's name and format are that module's.
INIT_REQUEST = "init.request"
_REQUEST_MODULE = os.path.join("lib", "iotex_node", "init_request.py")


def _takes_requests(node_bin: str) -> bool:
    """Whether the release `node_bin` runs (ROOT/current/bin/iotex-node -> ROOT/releases/V) reads init.request."""
    release = os.path.dirname(os.path.dirname(os.path.realpath(node_bin)))
    return os.path.isfile(os.path.join(release, _REQUEST_MODULE))


def _request_database(home: str, uid: int, gid: int, check: bool) -> bool:
    """Ask the node's next start to create the database from the home's genesis.json (written by this same
    run); True when the request was (or would be) written."""
    genesis = os.path.join(home, "genesis.json")
    try:
        with open(genesis, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
    except FileNotFoundError:
        if check:  # a new home: genesis.json is written by this run, in check mode by none
            return True
        raise HomeError(f"{genesis} is missing: the node's database cannot be asked for without its genesis") from None
    data = (json.dumps({"genesis_sha256": digest}) + "\n").encode()
    return _file(os.path.join(home, INIT_REQUEST), data, 0o600, uid, gid, check)


def _init_database(spec: dict[str, Any], uid: int, gid: int, check: bool, run: Any) -> tuple[bool, bool]:
    """(initialized, requested): the database made now by `iotex-node init`, or asked of the node's next start."""
    home = str(spec["home"])
    database = os.path.join(home, str(spec.get("database") or "data/chain.db"))
    if os.path.exists(database):
        return False, False
    if _takes_requests(str(spec["node_bin"])):
        return False, _request_database(home, uid, gid, check)
    if check:
        return True, False
    parent = os.path.dirname(home.rstrip("/"))
    stage = tempfile.mkdtemp(prefix=".init-", dir=parent)
    try:
        argv = [
            str(spec["node_bin"]), "init", "--home", os.path.join(stage, "home"),
            "--genesis", "genesis.json", "--keystore", "keystore.json", "--password-file", "keystore.pass",
            "--name", str(spec["name"]), "--p2p-listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0",
        ]  # fmt: skip
        env = dict(os.environ)
        if spec.get("python"):
            env["IOTEX_PYTHON"] = str(spec["python"])
        rc, out, err = run(argv, cwd=home, env=env)
        if rc != 0:
            # the node's own message; it names files, never their content
            raise HomeError(f"iotex-node init failed (exit {rc}): {(err or out).strip()[-2000:]}")
        os.makedirs(os.path.dirname(database), mode=0o700, exist_ok=True)
        os.replace(os.path.join(stage, "home", "data", "chain.db"), database)
        if uid != -1 or gid != -1:
            os.chown(database, uid, gid)
    finally:
        shutil.rmtree(stage, ignore_errors=True)  # it held copies of the keystore and its password
    return True, False


def _run(argv: list[str], cwd: str, env: dict[str, str]) -> tuple[int, str, str]:
    p = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    return p.returncode, p.stdout, p.stderr


def converge(params: dict[str, Any], check: bool = False, run: Any = _run) -> dict[str, Any]:
    """Make the home as `params` say (AnsibleModule's params); in check mode only say what would change.
    Returns the module's result: changed, and what changed."""
    uid, gid = _ids(str(params.get("owner") or ""), str(params.get("group") or ""))
    result: dict[str, Any] = {
        "changed": False,
        "directories": [],
        "files": [],
        "generated": [],
        "database_initialized": False,
        "database_requested": False,
    }
    for d in params.get("directories") or []:
        if _directory(str(d["path"]), _mode(d.get("mode", "0755")), uid, gid, check):
            result["directories"].append(str(d["path"]))
    for f in params.get("files") or []:
        content = f.get("content")
        data = content.encode() if isinstance(content, str) else bytes(content or b"")
        if _file(str(f["dest"]), data, _mode(f.get("mode", "0644")), uid, gid, check):
            result["files"].append(str(f["dest"]))
    for g in params.get("generate") or []:
        dest = str(g["dest"])
        if not os.path.exists(dest):
            if not check:
                _write_atomically(dest, (secrets.token_urlsafe(32) + "\n").encode(), _mode(g.get("mode", "0600")), uid, gid)
            result["generated"].append(dest)
    if params.get("init"):
        result["database_initialized"], result["database_requested"] = _init_database(params["init"], uid, gid, check, run)
    made = ("directories", "files", "generated", "database_initialized", "database_requested")
    result["changed"] = any(bool(result[k]) for k in made)
    return result


def main() -> None:
    from ansible.module_utils.basic import AnsibleModule

    module = AnsibleModule(
        argument_spec={
            "directories": {"type": "list", "elements": "dict", "default": []},
            "files": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "dest": {"type": "str", "required": True},
                    "content": {"type": "str", "required": True, "no_log": True},
                    "mode": {"type": "raw", "default": "0644"},
                },
            },
            "generate": {"type": "list", "elements": "dict", "default": []},
            "owner": {"type": "str", "default": ""},
            "group": {"type": "str", "default": ""},
            "init": {"type": "dict", "required": False},
        },
        supports_check_mode=True,
    )
    try:
        result = converge(module.params, check=module.check_mode)
    except (HomeError, OSError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
