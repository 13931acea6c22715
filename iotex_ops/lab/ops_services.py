"""The lab's ops services: a PagerDuty-compatible receiver (HTTPS, its own CA), `iotex-ops alertd` and the
drill scheduler (`iotex-ops scheduler serve`), as daemons that outlive `lab up`, with a policy whose windows
suit a lab (seconds, not minutes)."""

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
    return {"pager": root / "pager", "alertd": root / "alertd", "scheduler": root / "scheduler", "dashboard": root / "dashboard"}


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


def receiver_info(root: Path, port: int) -> dict[str, str]:
    """What the receiver started on `port` will say in its receiver.json (url, ca_file, routing_key_file),
    known before it starts: the inventory names them while it starts. The layout is iotex_ops.paging.receiver's
    (Receiver.url, .ca_file, .routing_key_file; tests/ops keep the two equal), without importing it here (its
    TLS imports cost lab up 0.16 s)."""
    d = _paths(root)["pager"].resolve()
    return {
        "url": f"https://127.0.0.1:{port}/v2/enqueue",
        "ca_file": str(d / "tls" / "ca.pem"),
        "routing_key_file": str(d / "routing_key"),
    }


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


def start_scheduler(root: Path, inventory: Path, state_dir: Path, alertd_state_dir: Path, timeout: float = 30.0) -> int:
    """Start the drill scheduler on the lab's inventory (its drills.yml, disabled as written: nothing runs until
    a schedule is enabled); its pid once it serves. Its runs go to `state_dir`'s run store, as the operator's."""
    d = _paths(root)["scheduler"]
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    log = d / "scheduler.log"
    start = log.stat().st_size if log.exists() else 0
    argv = [IOTEX_OPS, "scheduler", "serve", "-i", str(inventory), "--state-dir", str(state_dir),
            "--alertd-state-dir", str(alertd_state_dir)]  # fmt: skip
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    pid = spawn(argv, d / "scheduler.pid", log, env=env)

    def ready() -> bool:
        try:
            with open(log, "rb") as f:
                f.seek(start)
                return b"scheduler: serving network" in f.read()
        except OSError:
            return False

    _wait("the scheduler", ready, pid, log, timeout)
    return pid


def stop_scheduler(root: Path, kill: bool = False) -> int | None:
    """Stop the scheduler: SIGTERM lets a running drill end (15 s, then it is killed: its next start resumes
    it); kill=True is kill -9."""
    import signal

    pidfile = _paths(root)["scheduler"] / "scheduler.pid"
    return kill_pidfile(pidfile, ("scheduler",), timeout=15, sig=signal.SIGKILL if kill else signal.SIGTERM)


def scheduler_pid(root: Path) -> int | None:
    try:
        pid = int((_paths(root)["scheduler"] / "scheduler.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def dashboard_token_file(root: Path) -> Path:
    """The lab dashboard's login token (0600, made once by `lab up`): who has the lab's files may act on it."""
    from iotex_ops.dashboard.auth import write_token_file

    return write_token_file(_paths(root)["dashboard"] / "login.token")


def start_dashboard(root: Path, inventory: Path, port: int, state_dir: Path, alertd_state_dir: Path) -> int:
    """Start `iotex-ops dashboard` on 127.0.0.1:port and return at once (its pid): it needs nothing that
    is not there yet, and `lab up` does not wait for it (`wait_dashboard` does, when something needs it)."""
    d = _paths(root)["dashboard"]
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = dashboard_token_file(root)
    log = d / "dashboard.log"
    log.unlink(missing_ok=True)
    argv = [IOTEX_OPS, "dashboard", "-i", str(inventory), "--listen", f"127.0.0.1:{port}", "--state-dir", str(state_dir),
            "--alertd-state-dir", str(alertd_state_dir), "--token-file", str(token)]  # fmt: skip
    return spawn(argv, d / "dashboard.pid", log, env={**os.environ, "LC_ALL": "C.UTF-8"})


def wait_dashboard(root: Path, timeout: float = 30.0) -> str:
    """The lab dashboard's URL once it serves (its log's ready line)."""
    from iotex_ops.dashboard import READY

    d = _paths(root)["dashboard"]
    log = d / "dashboard.log"
    try:
        pid = int((d / "dashboard.pid").read_text().strip())
    except (OSError, ValueError):
        raise OpsServicesError(f"the lab's dashboard was not started (no {d / 'dashboard.pid'})") from None

    def ready() -> str | None:
        try:
            text = log.read_text(errors="replace")
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith(READY):
                return line.split()[2]
        return None

    return str(_wait("the dashboard", ready, pid, log, timeout))


def stop_dashboard(root: Path) -> int | None:
    return kill_pidfile(_paths(root)["dashboard"] / "dashboard.pid", ("dashboard",), timeout=10)


def services(root: Path) -> list[dict[str, Any]]:
    """The lab's ops services and whether each runs (`lab status`)."""
    out = []
    d = _paths(root)
    named = (("alertd", d["alertd"] / "alertd.pid"), ("scheduler", d["scheduler"] / "scheduler.pid"),
             ("pager receiver", d["pager"] / "receiver.pid"), ("dashboard", d["dashboard"] / "dashboard.pid"))  # fmt: skip
    for name, pidfile in named:
        try:
            pid: int | None = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            pid = None
        out.append({"service": name, "pid": pid, "running": bool(pid and alive(pid))})
    return out


def stop(root: Path) -> list[str]:
    stopped = []
    pid = stop_dashboard(root)
    if pid is not None:
        stopped.append(f"dashboard {pid}")
    pid = stop_scheduler(root)  # first: it would start a drill on a lab going down
    if pid is not None:
        stopped.append(f"scheduler {pid}")
    pid = stop_alertd(root)
    if pid is not None:
        stopped.append(f"alertd {pid}")
    pid = kill_pidfile(_paths(root)["pager"] / "receiver.pid", ("pager",))
    if pid is not None:
        stopped.append(f"PagerDuty receiver {pid}")
    return stopped


def restart_scheduler(state: Any) -> int:
    """Start the lab's scheduler again (after `stop_scheduler`), as `lab up` started it."""
    root = Path(state.root)
    return start_scheduler(root, Path(state.inventory), Path(state.scheduler_state_dir), Path(state.alertd_state_dir))


def restart_alertd(state: Any) -> str:
    """Start the lab's alertd again (after `stop_alertd`), with the receiver and ports `lab up` gave it."""
    root = Path(state.root)
    receiver = json.loads((root / "pager" / "receiver.json").read_text())
    port = int(str(state.alertd_url).rsplit(":", 1)[1])
    return start_alertd(root, Path(state.inventory), port, receiver, state.alertmanager_url)
