"""`iotex-ops alertd` assembled: the service, its HTTP server, its page queue, its runner, from one config."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iotex_ops import network as network_mod
from iotex_ops.paging import drill_route
from iotex_ops.remediation import policy as policy_mod
from iotex_ops.remediation import webhook
from iotex_ops.remediation.errors import RemediationError, WebhookRejected
from iotex_ops.remediation.runner import EngineRunner
from iotex_ops.remediation.server import Server
from iotex_ops.remediation.service import Service
from iotex_ops.remediation.store import Store
from iotex_ops.runbook.store import RunStore

LOG_FORMAT = "%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s"
LOG_DATEFMT = "%Y-%m-%dT%H:%M:%S"


def log_formatter() -> logging.Formatter:
    """Every line starts with its UTC time (ISO 8601, milliseconds) and level; one line per record: a
    traceback, when one is logged, is folded into the record's line (`|` between its lines)."""

    class OneLine(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return super().format(record).replace("\n", " | ")

    f = OneLine(LOG_FORMAT, LOG_DATEFMT)
    f.converter = time.gmtime
    return f


def configure_logging(stream: Any = None, level: int = logging.INFO) -> logging.Handler:
    """alertd's log (its stderr, which the lab and journald keep): timestamped lines from every module, Python
    warnings and uncaught exceptions in threads included. Returns the handler (tests remove it)."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(log_formatter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        log = logging.getLogger("alertd")
        log.error("thread %s stopped: %s: %s", name, args.exc_type.__name__, args.exc_value, exc_info=args.exc_value)

    threading.excepthook = thread_hook
    return handler


class PagerPages:
    """The service's pages as Events API v2 events in the durable queue (delivered in order, retried).

    `drill_marker`: the game-day marker (iotex_ops/paging/drill_route.py); while a fault drill runs, each
    trigger is marked for the drill route."""

    def __init__(self, pager: Any, drill_marker: Path | None = None) -> None:
        self.pager = pager
        self.drill_marker = drill_marker

    def trigger(
        self, dedup_key: str, summary: str, source: str, severity: str, details: dict[str, Any], links: list[dict[str, str]]
    ) -> None:
        from iotex_ops.paging import drill_route, events

        if self.drill_marker is not None:
            summary, details = drill_route.mark(summary, details, drill_route.read(self.drill_marker))
        ev = events.trigger(
            summary, source, severity=severity, dedup_key=dedup_key, custom_details=details, links=links,
            client="iotex-ops alertd", component="iotex-node",
        )  # fmt: skip
        self.pager.enqueue(ev)

    def acknowledge(self, dedup_key: str) -> None:
        from iotex_ops.paging import events

        self.pager.enqueue(events.acknowledge(dedup_key))

    def resolve(self, dedup_key: str) -> None:
        from iotex_ops.paging import events

        self.pager.enqueue(events.resolve(dedup_key))


def alertmanager_active(url: str) -> list[webhook.Alert]:
    """Alertmanager's active (not silenced, not inhibited) alerts, in the webhook's shape."""
    # only what Alertmanager routes to alertd (not the alerts it pages directly when alertd is down)
    q = f"{url.rstrip('/')}/api/v2/alerts?active=true&silenced=false&inhibited=false&unprocessed=false&receiver=alertd"
    try:
        with urllib.request.urlopen(q, timeout=5) as resp:  # noqa: S310 - the operator's Alertmanager
            docs = json.loads(resp.read())
    except (OSError, urllib.error.URLError, ValueError) as exc:
        raise RemediationError(f"Alertmanager at {url} did not list its alerts: {getattr(exc, 'reason', exc)}") from None
    keys = ("labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint")
    alerts = [{"status": "firing", **{k: d.get(k, "") for k in keys}} for d in docs if isinstance(d, dict)]
    if not alerts:
        return []
    try:
        return webhook.parse(json.dumps({"version": "4", "alerts": alerts}).encode())
    except WebhookRejected as exc:
        raise RemediationError(f"Alertmanager at {url} listed an alert alertd cannot read: {exc}") from None


@dataclass
class Config:
    inventory: Path
    state_dir: Path
    token: str = field(repr=False)
    policy_file: Path = policy_mod.DEFAULT_POLICY
    listen: str = "127.0.0.1:9095"
    pager_url: str = "https://events.pagerduty.com/v2/enqueue"
    routing_key_file: Path | None = None
    pager_ca_file: Path | None = None
    alertmanager_url: str = ""
    runbook_dirs: tuple[Path, ...] = ()
    reconcile_s: float = 30.0
    pager_backoff_max_s: float = 30.0


def read_token(path: Path) -> str:
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise RemediationError(f"cannot read the webhook token file {path}: {exc.strerror or exc}") from None
    if len(token) < 16:
        raise RemediationError(f"the webhook token in {path} is shorter than 16 characters: make a longer one")
    return token


class Alertd:
    def __init__(self, cfg: Config) -> None:
        from iotex_ops.paging.pager import Pager
        from iotex_ops.paging.secret import RoutingKey

        self.cfg = cfg
        policy = policy_mod.load(cfg.policy_file)
        net = network_mod.load(cfg.inventory)
        try:
            network, prometheus = net.id, net.prometheus_url or ""
            locks = Path(str(net.var("iotex_ops_lock_dir") or RunStore(cfg.state_dir).locks_dir)).expanduser()
        finally:
            net.close()
        runner = EngineRunner(cfg.inventory, cfg.state_dir, cfg.runbook_dirs)
        missing = sorted(rb for rb in policy.runbooks() if not runner.known(rb))
        if missing:
            raise RemediationError(f"policy {cfg.policy_file} names runbook(s) that are not installed: {', '.join(missing)}")
        host, _, port = cfg.listen.rpartition(":")
        if not host or not port.isdigit():
            raise RemediationError(f"--listen {cfg.listen!r} is not HOST:PORT")
        self.host, self.port = host, int(port)
        key = RoutingKey.load(cfg.routing_key_file)
        cfg.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.pager = Pager(
            cfg.state_dir / "pages.db", key, cfg.pager_url, cfg.pager_ca_file, backoff_max_s=cfg.pager_backoff_max_s
        )
        am = cfg.alertmanager_url
        pages = PagerPages(self.pager, drill_route.marker_path(locks, network))  # drill pages marked (game days)
        self.service = Service(
            Store(cfg.state_dir / "alertd.db"), policy, pages, runner, cfg.state_dir / "alertd.jsonl",
            network=network, prometheus_url=prometheus, active_alerts=(lambda: alertmanager_active(am)) if am else None,
            reconcile_s=cfg.reconcile_s,
        )  # fmt: skip
        self.server = Server(self.service, cfg.token, extra_metrics=self._pager_metrics)

    def _pager_metrics(self) -> dict[str, float]:
        s = self.pager.stats()
        return {k: float(s[k]) for k in ("pending", "oldest_pending_age_s", "dead_letters", "sent", "retries")}

    def start(self) -> None:
        self.service.start()
        self.server.start(self.host, self.port)

    def stop(self) -> None:
        self.server.stop()
        self.service.stop(wait_s=20)
        self.service.store.close()
        self.pager.close()

    def serve(self, on_ready: Any = None) -> None:
        """Until SIGTERM or SIGINT."""
        done = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: done.set())
        self.start()
        if on_ready is not None:
            on_ready(self)
        try:
            done.wait()
        finally:
            self.stop()
