"""The lab's ops services: a PagerDuty-compatible receiver (HTTPS, its own CA) and `iotex-ops alertd`, both
as daemons that outlive `lab up`, with a policy whose windows suit a lab (seconds, not minutes)."""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from iotex_ops.errors import OpsError
from iotex_ops.lab.daemons import alive, kill_pidfile, spawn

IOTEX_OPS = str(Path(sys.executable).parent / "iotex-ops")

# The shipped policy's limits with a lab's clock: a restart is judged after 15 s, pages resolve 3 s after
# their alert, the watchdog (repeated every 10 s by Alertmanager) is missed after 60 s.
LAB_POLICY: dict[str, Any] = {
    "defaults": {"max_attempts": 3, "once_within": "15s", "resolve_after": "3s", "defer": "3s", "defer_for": "10m"},
    "limits": {"max_concurrent": 2, "rate": {"starts": 10, "per": "60s"}},
    "breaker": {"failures": 3, "open_for": "5m"},
    "watchdog": {"alert": "Watchdog", "timeout": "60s"},
    "remediations": {
        "DelegateDown": {"runbook": "restart-node", "params": {"host": "{host}"}},
        "DelegatePausedUnexpectedly": {"runbook": "resume-delegate", "params": {"host": "{host}"}},
        "DelegateLagging": {"runbook": "rebuild-node", "params": {"host": "{host}"}, "max_attempts": 1, "once_within": "60s"},
    },
}


class OpsServicesError(OpsError):
    """The lab's receiver or alertd did not start."""


def _paths(root: Path) -> dict[str, Path]:
    return {"pager": root / "pager", "alertd": root / "alertd"}


def prepare_alertd(root: Path) -> tuple[Path, Path]:
    """The webhook token (0600, made once) and the lab policy, before Alertmanager's config names them."""
    d = _paths(root)["alertd"]
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = d / "webhook.token"
    if not token.exists():
        fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(24) + "\n")
    policy = d / "policy.yml"
    policy.write_text(yaml.safe_dump(LAB_POLICY, sort_keys=False))
    return token, policy


def _wait(what: str, ready: Any, pid: int, log: Path, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = ready()
        if got:
            return got
        if not alive(pid):
            tail = log.read_text(errors="replace").splitlines()[-5:] if log.exists() else []
            raise OpsServicesError(f"{what} exited at start: {' | '.join(tail) or 'no output'} (log: {log})")
        time.sleep(0.1)
    raise OpsServicesError(f"{what} not ready after {timeout:.0f}s (log: {log})")


def start_receiver(root: Path, port: int, timeout: float = 30.0) -> dict[str, Any]:
    """Start the receiver; its receiver.json (url, ca_file, routing_key_file...) once it serves."""
    d = _paths(root)["pager"]
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    info_file, log = d / "receiver.json", d / "receiver.log"
    info_file.unlink(missing_ok=True)
    pid = spawn([IOTEX_OPS, "pager", "receiver", "--dir", str(d), "--port", str(port)], d / "receiver.pid", log)

    def ready() -> dict[str, Any] | None:
        try:
            info = json.loads(info_file.read_text())
        except (OSError, ValueError):
            return None
        return info if info.get("pid") == pid else None

    return dict(_wait("the PagerDuty receiver", ready, pid, log, timeout))


def start_alertd(
    root: Path, inventory: Path, port: int, receiver: dict[str, Any], alertmanager_url: str, timeout: float = 30.0
) -> str:
    """Start alertd against the lab's inventory, paging the lab's receiver; its URL once /healthz answers."""
    d = _paths(root)["alertd"]
    token, policy = d / "webhook.token", d / "policy.yml"
    log = d / "alertd.log"
    url = f"http://127.0.0.1:{port}"
    argv = [
        IOTEX_OPS, "alertd", "run", "-i", str(inventory), "--token-file", str(token), "--policy", str(policy),
        "--listen", f"127.0.0.1:{port}", "--state-dir", str(d / "state"), "--pager-url", str(receiver["url"]),
        "--routing-key-file", str(receiver["routing_key_file"]), "--pager-ca-file", str(receiver["ca_file"]),
        "--alertmanager-url", alertmanager_url, "--reconcile-s", "5", "--pager-backoff-max-s", "2",
    ]  # fmt: skip
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    env.pop("PAGERDUTY_ROUTING_KEY", None)  # the lab pages its own receiver, never a real service
    pid = spawn(argv, d / "alertd.pid", log, env=env)

    def ready() -> bool:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):  # noqa: S310 - the lab's loopback service
                return True
        except (OSError, urllib.error.URLError):
            return False

    _wait("alertd", ready, pid, log, timeout)
    return url


def stop_alertd(root: Path, kill: bool = False) -> int | None:
    import signal

    d = _paths(root)["alertd"]
    return kill_pidfile(d / "alertd.pid", ("alertd",), timeout=30, sig=signal.SIGKILL if kill else signal.SIGTERM)


def stop(root: Path) -> list[str]:
    stopped = []
    pid = stop_alertd(root)
    if pid is not None:
        stopped.append(f"alertd {pid}")
    pid = kill_pidfile(_paths(root)["pager"] / "receiver.pid", ("pager",))
    if pid is not None:
        stopped.append(f"PagerDuty receiver {pid}")
    return stopped


def restart_alertd(state: Any) -> str:
    """Start the lab's alertd again (after `stop_alertd`), with the receiver and ports `lab up` gave it."""
    root = Path(state.root)
    receiver = json.loads((root / "pager" / "receiver.json").read_text())
    port = int(str(state.alertd_url).rsplit(":", 1)[1])
    return start_alertd(root, Path(state.inventory), port, receiver, state.alertmanager_url)
