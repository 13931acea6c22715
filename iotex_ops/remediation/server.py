"""alertd's HTTP face: Alertmanager's webhook (bearer-authenticated), health, Prometheus metrics, state.

A request is judged whole before the service sees it: a wrong token is 401, a malformed body 400, a body too
large 413, and none of them changes anything."""

from __future__ import annotations

import hmac
import json
import logging
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from iotex_ops.remediation import webhook
from iotex_ops.remediation.errors import WebhookRejected
from iotex_ops.remediation.service import Service

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20
WEBHOOK_PATHS = ("/v1/alerts", "/webhook")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    service: Service
    token: bytes
    extra_metrics: Any

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One log line, never socketserver's traceback on stderr: a client that went away (reset, broken pipe,
        timeout) is routine under a storm; anything else is an error worth a line with its type."""
        exc = sys.exc_info()[1]
        who = ":".join(str(p) for p in client_address[:2]) if isinstance(client_address, tuple) else str(client_address)
        if isinstance(exc, (ConnectionError, TimeoutError)):
            log.info("client %s closed its connection before the answer (%s)", who, type(exc).__name__)
        else:
            log.error("request from %s failed: %s: %s", who, type(exc).__name__, exc)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the service journals what matters; access logs would only repeat it

    def _send(self, code: int, doc: Any, content_type: str = "application/json", extra: dict[str, str] | None = None) -> None:
        body = (doc if isinstance(doc, str) else json.dumps(doc, default=str)).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _authorized(self) -> bool:
        got = self.headers.get("Authorization", "")
        scheme, _, cred = got.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(cred.strip().encode(), self.server.token)

    def _count(self, code: int) -> None:
        self.server.service._count(f"webhook_{code}")

    def do_POST(self) -> None:
        if self.path.split("?")[0] not in WEBHOOK_PATHS:
            self._send(404, {"error": f"no such endpoint {self.path}; Alertmanager posts to {WEBHOOK_PATHS[0]}"})
            return
        try:
            length = int(self.headers.get("Content-Length", "-1"))
        except ValueError:
            length = -1
        if length < 0:
            self._count(411)
            self._send(411, {"error": "Content-Length required"}, extra={"Connection": "close"})
            return
        if length > MAX_BODY:
            if length <= 8 * MAX_BODY:
                self.rfile.read(length)  # read it, so that the client hears the 413 instead of a broken pipe
            self._count(413)
            self._send(413, {"error": f"body of {length} bytes; at most {MAX_BODY}"}, extra={"Connection": "close"})
            return
        body = self.rfile.read(length)
        if not self._authorized():
            self._count(401)
            self._send(401, {"error": "missing or wrong bearer token"}, extra={"WWW-Authenticate": 'Bearer realm="alertd"'})
            return
        try:
            alerts = webhook.parse(body)
        except WebhookRejected as exc:
            self._count(400)
            self._send(400, {"error": str(exc)})
            return
        try:
            self.server.service.observe(alerts)
        except Exception as exc:  # e.g. the disk is full: Alertmanager retries a 503
            self._count(503)
            self._send(503, {"error": f"alertd could not record the alerts: {type(exc).__name__}: {exc}"})
            return
        self._count(200)
        self._send(200, {"accepted": len(alerts)})

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/healthz":
            self._send(200, {"ok": True, "running": len(self.server.service.running())})
        elif path == "/metrics":
            self._send(200, metrics_text(self.server.service, self.server.extra_metrics), "text/plain; version=0.0.4")
        elif path == "/v1/state":
            if not self._authorized():
                self._send(401, {"error": "missing or wrong bearer token"}, extra={"WWW-Authenticate": 'Bearer realm="alertd"'})
                return
            self._send(200, self.server.service.snapshot())
        else:
            self._send(404, {"error": f"no such endpoint {path}"})


def metrics_text(service: Service, extra: Any = None) -> str:
    """Prometheus text format: what the service did, and whether it is healthy (its own alerts read these)."""
    m = service.metrics()
    lines = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{labels} {value:g}" for labels, value in samples)

    c = m["counters"]
    metric("alertd_webhooks_total", "counter", "Webhook requests by HTTP status",
           [(f'{{code="{k.split("_")[1]}"}}', v) for k, v in sorted(c.items()) if k.startswith("webhook_")])  # fmt: skip
    metric("alertd_remediations", "gauge", "Remediations recorded, by runbook and state",
           [(f'{{runbook="{rb}",state="{st}"}}', n) for (rb, st), n in sorted(m["remediations"].items())])  # fmt: skip
    metric("alertd_alerts_firing", "gauge", "Alerts firing now", [("", m["alerts_firing"])])
    metric("alertd_escalations_total", "counter", "Pages escalated to a person", [("", c.get("escalations", 0))])
    metric("alertd_errors_total", "counter", "Alerts or pages alertd could not handle (journaled)", [("", c.get("errors", 0))])
    metric("alertd_breaker_open", "gauge", "1 while a runbook's circuit breaker is open",
           [(f'{{runbook="{rb}"}}', 1.0 if b["open_until"] else 0.0) for rb, b in sorted(m["breakers"].items())])  # fmt: skip
    metric("alertd_watchdog_last_seen_timestamp_seconds", "gauge", "When Alertmanager's Watchdog was last received",
           [("", m["watchdog_last_seen"] or 0)])  # fmt: skip
    if extra is not None:
        for name, value in extra().items():
            metric(f"alertd_pager_{name}", "gauge", f"Page queue: {name}", [("", float(value))])
    return "\n".join(lines) + "\n"


class Server:
    """`Server(service, token).start(host, port)`; `.url`, `.stop()`."""

    def __init__(self, service: Service, token: str, extra_metrics: Any = None) -> None:
        self.service = service
        self.token = token
        self.extra_metrics = extra_metrics
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"Server(url={self.url!r}, token=***)"

    @property
    def url(self) -> str:
        if self._httpd is None:
            return ""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        httpd = _Server((host, port), _Handler)
        httpd.service = self.service
        httpd.token = self.token.encode()
        httpd.extra_metrics = self.extra_metrics
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
