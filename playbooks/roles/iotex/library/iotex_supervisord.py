#!/usr/bin/python
"""Ansible module: the node under supervisord in ONE module run (issue 13, docs/performance.md).

The config written when it differs, supervisord started when it does not run (or told to apply a changed
config), the node started, stopped or restarted as asked, and after a start the wait until the node answers on
its API port. supervisord is reached over its Unix socket with XML-RPC from this module's own interpreter: no
`supervisorctl` process (a Python start each) per question. `converge()` is plain Python the unit tests call
in-process with a fake supervisord (tests/ops/test_iotex_home.py); `main()` only wraps it in AnsibleModule.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import subprocess
import tempfile
import time
import xmlrpc.client
from typing import Any, Protocol

DOCUMENTATION = r"""
---
module: iotex_supervisord
short_description: An IoTeX node under a per-host supervisord, in one module run
description:
  - Writes the supervisord config when it differs, starts supervisord when it is not running or applies a
    changed config to a running one (as C(supervisorctl update)), then brings the program to C(state) and,
    after starting it, waits until something listens on C(wait_host):C(wait_port).
  - A running node is restarted when C(state=started) and C(restart) is true (its release or config changed).
  - In check mode it reports what would change and changes nothing.
options:
  name: {description: The program's name in the config., type: str, required: true}
  config: {description: Path of the supervisord config., type: path, required: true}
  content: {description: The config's content., type: str, required: true}
  socket: {description: supervisord's Unix socket (its unix_http_server file)., type: path, required: true}
  supervisord_bin: {description: The supervisord executable., type: path, required: true}
  state: {description: started, stopped or restarted., type: str, default: started}
  restart: {description: Restart a running node (state=started)., type: bool, default: false}
  wait_host: {description: Host of the node's API port, waited for after a start., type: str, default: ""}
  wait_port: {description: The node's API port (0, no wait)., type: int, default: 0}
  wait_timeout: {description: Seconds a started node may take to answer., type: float, default: 60}
  wait:
    description: Wait after a start (false, when a later task waits and the node's boot may overlap other tasks).
    type: bool
    default: true
author: iotex-ops
"""

EXAMPLES = r"""
- name: Node under supervisord
  iotex_supervisord:
    name: iotex-node
    config: /var/lib/iotex/supervisor/supervisord.conf
    content: "{{ lookup('ansible.builtin.template', 'supervisord.conf.j2') }}"
    socket: /var/lib/iotex/supervisor/supervisor.sock
    supervisord_bin: /usr/bin/supervisord
    wait_port: 14014
"""

RETURN = r"""
action:
  description: What was done to the node (start, stop, restart) or an empty string.
  type: str
  returned: always
config_changed: {description: The config was written., type: bool, returned: always}
supervisord_started: {description: supervisord was started., type: bool, returned: always}
node_state: {description: The program's state name before any action., type: str, returned: always}
"""


# supervisord's fault codes (supervisor.xmlrpc.Faults)
BAD_NAME = 10
NOT_RUNNING = 70
ALREADY_STARTED = 60
UP = ("RUNNING", "STARTING")  # BACKOFF (failing to start, retrying) is started again: stopped, then started
FAILED = ("FATAL", "EXITED", "UNKNOWN")


class SupervisordError(Exception):
    pass


class Supervisor(Protocol):
    """The part of supervisord's XML-RPC interface used here (`supervisor.*`); a fake in the unit tests."""

    def ping(self) -> bool: ...  # True when supervisord answers on its socket, False when nothing listens

    def state(self, name: str) -> str: ...  # the program's statename, "" when no such program is loaded

    def update(self) -> None: ...  # what `supervisorctl update` does: reread, then add, change, remove groups

    def start(self, name: str) -> None: ...  # start without waiting for startsecs

    def stop(self, name: str) -> None: ...  # stop and wait until stopped

    def tail(self, name: str, length: int) -> str: ...  # the last `length` bytes of the program's log


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(self.timeout)
            s.connect(self._path)
        except BaseException:
            s.close()  # nothing listens yet (ping), or the socket is gone
            raise
        self.sock = s


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__()
        self._path = path
        self._timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        # one connection, reused and closed by close(), as the base class keeps its own
        conn = self._connection[1]
        if conn is None:
            conn = _UnixConnection(self._path, self._timeout)
            self._connection = host, conn
        return conn


class XmlRpcSupervisor:
    def __init__(self, socket_path: str, timeout: float = 30.0) -> None:
        self._proxy: Any = xmlrpc.client.ServerProxy("http://localhost/RPC2", transport=_UnixTransport(socket_path, timeout))

    def ping(self) -> bool:
        try:
            self._proxy.supervisor.getState()
        except (FileNotFoundError, ConnectionRefusedError):
            return False
        return True

    def state(self, name: str) -> str:
        try:
            return str(self._proxy.supervisor.getProcessInfo(name)["statename"])
        except xmlrpc.client.Fault as f:
            if f.faultCode == BAD_NAME:
                return ""
            raise

    def update(self) -> None:
        s = self._proxy.supervisor
        added, changed, removed = s.reloadConfig()[0]
        for group in removed + changed:
            with contextlib.suppress(xmlrpc.client.Fault):
                s.stopProcessGroup(group)
            s.removeProcessGroup(group)
        for group in changed + added:
            s.addProcessGroup(group)

    def start(self, name: str) -> None:
        try:
            self._proxy.supervisor.startProcess(name, False)
        except xmlrpc.client.Fault as f:
            if f.faultCode != ALREADY_STARTED:
                raise

    def stop(self, name: str) -> None:
        try:
            self._proxy.supervisor.stopProcess(name, True)
        except xmlrpc.client.Fault as f:
            if f.faultCode != NOT_RUNNING:
                raise

    def tail(self, name: str, length: int) -> str:
        return str(self._proxy.supervisor.tailProcessStdoutLog(name, 0, length)[0])

    def close(self) -> None:
        self._proxy("close")()


def _write_atomically(dest: str, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".iotex-supervisord-", dir=os.path.dirname(dest) or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _config_differs(path: str, data: bytes, mode: int) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read() != data or (os.stat(path).st_mode & 0o7777) != mode
    except FileNotFoundError:
        return True


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _start_supervisord(binary: str, config: str) -> None:
    p = subprocess.run([binary, "-c", config], capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise SupervisordError(f"{binary} -c {config} failed (exit {p.returncode}): {(p.stderr or p.stdout).strip()[-2000:]}")


def converge(
    params: dict[str, Any],
    check: bool = False,
    sup: Supervisor | None = None,
    start_supervisord: Any = _start_supervisord,
    port_open: Any = _port_open,
    clock: Any = time.monotonic,
    sleep: Any = time.sleep,
) -> dict[str, Any]:
    """Bring supervisord and the node to `params` (AnsibleModule's params); in check mode only say what would
    change. Returns the module's result. Without `sup`, supervisord over params' socket (closed at the end)."""
    if sup is not None:
        return _converge(params, check, sup, start_supervisord, port_open, clock, sleep)
    own = XmlRpcSupervisor(str(params["socket"]))
    try:
        return _converge(params, check, own, start_supervisord, port_open, clock, sleep)
    finally:
        own.close()


def _converge(
    params: dict[str, Any], check: bool, sup: Supervisor, start_supervisord: Any, port_open: Any, clock: Any, sleep: Any
) -> dict[str, Any]:
    name, config, state = str(params["name"]), str(params["config"]), str(params.get("state") or "started")
    if state not in ("started", "stopped", "restarted"):
        raise SupervisordError(f"state must be started, stopped or restarted, not {state!r}")
    data = str(params["content"]).encode()
    result: dict[str, Any] = {
        "changed": False,
        "action": "",
        "config_changed": False,
        "supervisord_started": False,
        "node_state": "",
    }

    result["config_changed"] = _config_differs(config, data, 0o600)
    if result["config_changed"] and not check:
        _write_atomically(config, data, 0o600)

    running_sup = sup.ping()
    if not running_sup:
        result["supervisord_started"] = True
        if not check:
            start_supervisord(str(params["supervisord_bin"]), config)
            deadline = clock() + 30.0
            while not sup.ping():  # it daemonizes: its socket answers a moment later
                if clock() > deadline:
                    raise SupervisordError(f"supervisord started but its socket {params['socket']} does not answer")
                sleep(0.05)
        node = ""  # a supervisord started now runs no node (autostart = false)
    else:
        if result["config_changed"] and not check:
            sup.update()
        node = sup.state(name)
    result["node_state"] = node

    running = node in UP
    if state == "restarted" or (state == "started" and running and bool(params.get("restart"))):
        action = "restart"
    elif state == "started" and not running:
        action = "start"
    elif state == "stopped" and running:
        action = "stop"
    else:
        action = ""
    result["action"] = action

    if action and not check:
        if (action in ("stop", "restart") and running) or node == "BACKOFF":
            sup.stop(name)
        if action in ("start", "restart"):
            sup.start(name)
            if params.get("wait", True):
                _wait_started(params, name, sup, port_open, clock, sleep)

    result["changed"] = bool(result["config_changed"] or result["supervisord_started"] or action)
    return result


def _log_end(sup: Supervisor, name: str, lines: int = 8) -> str:
    """The last lines of the program's log (stderr goes there too: the node's own error, which names files,
    never their content), for the error an operator reads; a pointer to the log when supervisord cannot give it."""
    try:
        text = sup.tail(name, 4000)
    except (OSError, xmlrpc.client.Error, http.client.HTTPException):  # the error being reported matters more
        return " (see its log)"
    end = [ln for ln in text.splitlines() if ln.strip()][-lines:]
    return (": the end of its log:\n" + "\n".join(end)) if end else " (its log is empty)"


def _wait_started(params: dict[str, Any], name: str, sup: Supervisor, port_open: Any, clock: Any, sleep: Any) -> None:
    """Until the node answers on its API port (what an operator waits for), failing early when supervisord
    says it died for good; supervisord's own startsecs and startretries still apply to the process."""
    port = int(params.get("wait_port") or 0)
    host = str(params.get("wait_host") or "127.0.0.1")
    timeout = float(params.get("wait_timeout") or 60)
    deadline = clock() + timeout
    while True:
        if port and port_open(host, port):
            return
        state = sup.state(name)
        if state in FAILED:
            raise SupervisordError(f"{name} did not start: supervisord says {state}{_log_end(sup, name)}")
        if not port and state == "RUNNING":
            return
        if clock() > deadline:
            what = f"answer on {host}:{port}" if port else "reach RUNNING"
            raise SupervisordError(f"{name} did not {what} within {timeout:g} s (supervisord says {state})")
        sleep(0.05)


def main() -> None:
    from ansible.module_utils.basic import AnsibleModule

    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "config": {"type": "path", "required": True},
            "content": {"type": "str", "required": True},
            "socket": {"type": "path", "required": True},
            "supervisord_bin": {"type": "path", "required": True},
            "state": {"type": "str", "default": "started", "choices": ["started", "stopped", "restarted"]},
            "restart": {"type": "bool", "default": False},
            "wait_host": {"type": "str", "default": ""},
            "wait_port": {"type": "int", "default": 0},
            "wait_timeout": {"type": "float", "default": 60.0},
            "wait": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    try:
        result = converge(module.params, check=module.check_mode)
    except (SupervisordError, OSError, xmlrpc.client.Error) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
