"""The monitoring stack: the real Prometheus and Alertmanager (Debian packages) as plain processes, with the
configs iotex_ops.alerting generates.

Both bind to 127.0.0.1 only (they listen on all interfaces unless told otherwise), Alertmanager runs
without clustering (`--cluster.listen-address=`), and every file they use lives in one work directory,
so `stop()` plus removing that directory leaves nothing behind. Configs are generated from the list of
node metrics targets; with 1 s scrape and evaluation intervals a dead target is visible in ~2 s.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iotex_ops import prom
from iotex_ops.errors import OpsError
from iotex_ops.processes import zombie

PROMETHEUS_BIN = "prometheus"
ALERTMANAGER_BIN = "prometheus-alertmanager"


class MonitoringError(OpsError):
    """Prometheus or Alertmanager could not be configured, started or reached."""


@dataclass(frozen=True)
class Target:
    """A node's metrics endpoint: `name` becomes the `delegate` label, `address` is host:port."""

    name: str
    address: str
    host: str = ""


@dataclass
class MonitoringStack:
    workdir: Path
    targets: list[Target]
    prometheus_port: int
    alertmanager_port: int
    # inventory-style settings (iotex_ops.alerting.settings.VARS) over the lab's defaults
    settings: dict[str, Any] = field(default_factory=dict)
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _daemon_pids: dict[str, int] = field(default_factory=dict)

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def alertmanager_url(self) -> str:
        return f"http://127.0.0.1:{self.alertmanager_port}"

    def write_configs(self) -> None:
        """The configs the alerting generator makes for these targets (as `monitoring render` would)."""
        from iotex_ops.alerting import settings as settings_mod
        from iotex_ops.alerting.render import render_settings, write_rendered

        values = {
            **settings_mod.LAB_VARS,
            "monitoring_alertmanager": f"127.0.0.1:{self.alertmanager_port}",
            **self.settings,
        }
        s = settings_mod.Settings.from_vars(values, delegates=len(self.targets))
        targets = tuple(settings_mod.Target(t.host or t.name, t.address) for t in self.targets)
        write_rendered(render_settings(s, targets, str(self.workdir)), self.workdir)

    def start(
        self,
        timeout: float = 30.0,
        rendered: bool = False,
        daemon: bool = False,
        only: tuple[str, ...] = ("alertmanager", "prometheus"),
    ) -> None:
        """Start both (or `only` those of the two that are not running); `rendered`: use the configs already in
        workdir (rendered by playbooks/monitoring.yml); `daemon`: detach them from this process (the lab's
        outlive the command that started them)."""
        self._daemon = daemon
        running = self.pids() | self._pidfile_pids()
        wanted = [n for n in ("alertmanager", "prometheus") if n in only and n not in running]
        for binary in (PROMETHEUS_BIN, ALERTMANAGER_BIN):
            if shutil.which(binary) is None:
                raise MonitoringError(
                    f"{binary} is not installed: as root run `apt-get install prometheus prometheus-alertmanager` "
                    "(or `make lab-deps`)"
                )
        if not rendered:
            self.write_configs()
        w = self.workdir
        for f in ("prometheus.yml", "alertmanager.yml"):
            if not (w / f).exists():
                raise MonitoringError(f"{w / f} is missing: render it first (playbooks/monitoring.yml)")
        for name in ("alertmanager", "prometheus"):
            if name in wanted:
                self._spawn(name, self.command(name))
        deadline = time.monotonic() + timeout
        urls = {"prometheus": self.prometheus_url, "alertmanager": self.alertmanager_url}
        for name, url in ((n, urls[n]) for n in wanted):
            while True:
                if name not in self.pids():
                    raise MonitoringError(f"{name} exited; see {w / (name + '.log')}")
                if prom.ready(url):
                    break
                if time.monotonic() > deadline:
                    raise MonitoringError(f"{name} not ready at {url} after {timeout:.0f}s")
                time.sleep(0.1)

    def command(self, name: str) -> list[str]:
        """The command line of `prometheus` or `alertmanager`. Both listen on 127.0.0.1 only, and say so in the
        links they make (`--web.external-url`): otherwise an alert's generatorURL (the link in its page) names
        the machine's hostname, where nothing listens."""
        w = self.workdir
        if name == "alertmanager":
            return [ALERTMANAGER_BIN, f"--config.file={w / 'alertmanager.yml'}", f"--storage.path={w / 'alertmanager-data'}",
                    f"--web.listen-address=127.0.0.1:{self.alertmanager_port}", f"--web.external-url={self.alertmanager_url}",
                    "--cluster.listen-address="]  # fmt: skip
        return [PROMETHEUS_BIN, f"--config.file={w / 'prometheus.yml'}", f"--storage.tsdb.path={w / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{self.prometheus_port}", f"--web.external-url={self.prometheus_url}",
                "--web.enable-lifecycle"]  # fmt: skip

    def _spawn(self, name: str, argv: list[str]) -> None:
        pidfile, logfile = self.workdir / f"{name}.pid", self.workdir / f"{name}.log"
        if getattr(self, "_daemon", False):
            # A shell starts it in the background and exits: the daemon is not our child, so nothing here
            # waits on it, and `stop_from_pidfiles` (or `stop`) ends it by the pid the shell recorded.
            script = f'"$0" "$@" >>"{logfile}" 2>&1 </dev/null & echo $! >"{pidfile}"'
            subprocess.run(["sh", "-c", script, *argv], check=True, start_new_session=True, timeout=10)
            self._daemon_pids[name] = int(pidfile.read_text().strip())
            return
        log = open(logfile, "ab")  # noqa: SIM115 - the child owns it
        self._procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        pidfile.write_text(f"{self._procs[name].pid}\n")

    def _pidfile_pids(self) -> dict[str, int]:
        """Those of the two that a pidfile in workdir names and that run (started by another process)."""
        out: dict[str, int] = {}
        for name in ("alertmanager", "prometheus"):
            try:
                pid = int((self.workdir / f"{name}.pid").read_text().strip())
            except (OSError, ValueError):
                continue
            if Path(f"/proc/{pid}").exists() and not zombie(pid):
                out[name] = pid
                if daemon_pid := self._daemon_pids.get(name):
                    out[name] = daemon_pid
        return out

    def pids(self) -> dict[str, int]:
        out = {n: p.pid for n, p in self._procs.items() if p.poll() is None}
        out |= {n: pid for n, pid in self._daemon_pids.items() if Path(f"/proc/{pid}").exists() and not zombie(pid)}
        return out

    def stop(self) -> None:
        if self._daemon_pids:
            stop_from_pidfiles(self.workdir)
            self._daemon_pids.clear()
        for name, proc in self._procs.items():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
            (self.workdir / f"{name}.pid").unlink(missing_ok=True)

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query (iotex_ops.prom)."""
        try:
            with prom.Prometheus(self.prometheus_url) as p:
                return p.query(promql)
        except prom.PrometheusError as exc:
            raise MonitoringError(str(exc)) from None

    def targets_up(self) -> dict[str, bool]:
        """delegate label -> whether Prometheus's last scrape of it succeeded."""
        return {r["metric"].get("delegate", "?"): r["value"][1] == "1" for r in self.query('up{job="iotex-node"}')}


def stop_from_pidfiles(workdir: Path) -> list[int]:
    """Stop a stack started by another process (e.g. `lab down`), by the pids it recorded."""
    stopped = []
    for name in ("prometheus", "alertmanager"):
        pidfile = workdir / f"{name}.pid"
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        except OSError:
            pidfile.unlink(missing_ok=True)
            continue
        if Path(cmdline).name not in (PROMETHEUS_BIN, ALERTMANAGER_BIN):
            pidfile.unlink(missing_ok=True)  # the pid was reused by something else: not ours to kill
            continue
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            # a zombie has exited (its parent, when that is us, reaps it later): waiting would cost the timeout
            if not Path(f"/proc/{pid}").exists() or zombie(pid):
                break
            time.sleep(0.1)
        stopped.append(pid)
        pidfile.unlink(missing_ok=True)
    return stopped
