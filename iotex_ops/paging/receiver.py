"""The lab's PagerDuty: an HTTPS receiver of Events API v2 events, bound to 127.0.0.1.

It answers POST /v2/enqueue (and /enqueue) as ../shared/reference/pagerduty-events-v2.openapi.json and
real PagerDuty do: 202 with the dedup_key; 400 naming every bad field; 400 "Invalid routing key" for a
key it does not know. Incidents are deduplicated like PagerDuty's: a trigger on an open incident with the
same dedup_key is appended to it (a person is paged once per incident), acknowledge and resolve move it,
ack/resolve of an unknown or resolved key is accepted and changes nothing, and a trigger on a resolved
key opens a new incident. Change events (POST /v2/change/enqueue, and /change/enqueue) are validated against
the same contract's ChangeEventPayload and kept in order; they open no incident and page nobody. State is
kept in sqlite in its directory, so it survives a restart.

Lab-only endpoints (not PagerDuty's), all behind `Authorization: Bearer <admin token>`:
GET /incidents[?status=...], GET /events, GET /changes, GET /_lab/stats, GET|POST|DELETE /_lab/faults. A
fault makes /v2/enqueue and /v2/change/enqueue answer a status (429, 5xx, or 400) for N requests or S
seconds, to rehearse outages.

Files in its directory (0700): receiver.db, routing_key and admin_token (0600, created once),
tls/ (the lab CA), and receiver.json while it runs: url, ca_file, pid and the token FILE's path.
"""

from __future__ import annotations

import contextlib
import fcntl
import hmac
import ipaddress
import json
import logging
import os
import secrets
import signal
import socket
import sqlite3
import ssl
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

from iotex_ops.paging.errors import ReceiverError
from iotex_ops.paging.events import STATUSES, now_iso, validate, validate_change
from iotex_ops.paging.secret import RoutingKey, write_key_file
from iotex_ops.paging.tls import LabCA, client_ssl_context
from iotex_ops.processes import alive

log = logging.getLogger(__name__)

OPEN = ("triggered", "acknowledged")
ENQUEUE_PATHS = ("/v2/enqueue", "/enqueue")
CHANGE_PATHS = ("/v2/change/enqueue", "/change/enqueue")
MAX_BODY_BYTES = 1024 * 1024  # larger bodies are refused before they are read
INFO_FILE = "receiver.json"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
    num INTEGER PRIMARY KEY AUTOINCREMENT,
    dedup_key TEXT NOT NULL,
    status TEXT NOT NULL,
    summary TEXT, severity TEXT, source TEXT,
    created_at TEXT NOT NULL, acknowledged_at TEXT, resolved_at TEXT, updated_at TEXT NOT NULL,
    event_count INTEGER NOT NULL,
    custom_details TEXT, links TEXT
);
CREATE INDEX IF NOT EXISTS incidents_by_key ON incidents (dedup_key, status);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at TEXT NOT NULL,
    event_action TEXT NOT NULL,
    dedup_key TEXT NOT NULL,
    incident_id TEXT,
    effect TEXT NOT NULL,  -- opened, appended, acknowledged, resolved, ignored
    event TEXT NOT NULL    -- the event as received, without routing_key
);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at TEXT NOT NULL,
    summary TEXT NOT NULL,
    source TEXT,
    event TEXT NOT NULL    -- the change event as received, without routing_key
);
"""
_INCIDENT_COLS = (
    "num, dedup_key, status, summary, severity, source, created_at, acknowledged_at, resolved_at, updated_at, "
    "event_count, custom_details, links"
)


def _incident_id(num: int) -> str:
    return f"P{num:06d}"


def _incident(row: tuple[Any, ...]) -> dict[str, Any]:
    keys = [c.strip() for c in _INCIDENT_COLS.split(",")]
    doc = dict(zip(keys, row, strict=True))
    doc["id"] = _incident_id(doc.pop("num"))
    doc["custom_details"] = json.loads(doc["custom_details"]) if doc["custom_details"] else {}
    doc["links"] = json.loads(doc["links"]) if doc["links"] else []
    return {"id": doc.pop("id"), **doc}


class ReceiverStore:
    """Incidents and the log of accepted events, in `<dir>/receiver.db`. Thread-safe."""

    def __init__(self, path: Path, readonly: bool = False) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            if readonly:
                if not path.is_file():
                    raise ReceiverError(f"no receiver state at {path}")
                self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
            else:
                if not path.exists():
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))  # incident details: owner only
                self._db = sqlite3.connect(path, check_same_thread=False)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")  # a 202 means the event is stored
                self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise ReceiverError(f"receiver state {path}: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def apply(self, event: dict[str, Any]) -> tuple[str, str | None, str]:
        """Apply a valid event (routing key already checked and removed): (dedup_key, incident id, effect)."""
        action = event["event_action"]
        now = now_iso()
        with self._lock, self._db as db:
            key = event.get("dedup_key") or uuid.uuid4().hex
            row = db.execute(
                "SELECT num, status FROM incidents WHERE dedup_key = ? AND status IN (?, ?) ORDER BY num DESC LIMIT 1",
                (key, *OPEN),
            ).fetchone()
            num: int | None = row[0] if row else None
            if action == "trigger":
                p = event["payload"]
                details = json.dumps(p["custom_details"]) if "custom_details" in p else None
                links = json.dumps(event["links"]) if event.get("links") else None
                if num is None:
                    cur = db.execute(
                        "INSERT INTO incidents (dedup_key, status, summary, severity, source, created_at, updated_at, "
                        "event_count, custom_details, links) VALUES (?, 'triggered', ?, ?, ?, ?, ?, 1, ?, ?)",
                        (key, p["summary"], p["severity"], p["source"], now, now, details, links),
                    )
                    num, effect = cur.lastrowid, "opened"
                else:
                    # appended: the page already went out; the incident shows the latest summary and details
                    db.execute(
                        "UPDATE incidents SET summary = ?, severity = ?, source = ?, updated_at = ?, "
                        "event_count = event_count + 1, custom_details = coalesce(?, custom_details), "
                        "links = coalesce(?, links) WHERE num = ?",
                        (p["summary"], p["severity"], p["source"], now, details, links, num),
                    )
                    effect = "appended"
            elif num is None:
                effect = "ignored"  # unknown or resolved key: accepted, nothing changes (as PagerDuty)
            elif action == "acknowledge":
                db.execute(
                    "UPDATE incidents SET status = 'acknowledged', acknowledged_at = coalesce(acknowledged_at, ?), "
                    "updated_at = ?, event_count = event_count + 1 WHERE num = ?",
                    (now, now, num),
                )
                effect = "acknowledged"
            else:
                db.execute(
                    "UPDATE incidents SET status = 'resolved', resolved_at = ?, updated_at = ?, "
                    "event_count = event_count + 1 WHERE num = ?",
                    (now, now, num),
                )
                effect = "resolved"
            incident = _incident_id(num) if num is not None else None
            db.execute(
                "INSERT INTO events (received_at, event_action, dedup_key, incident_id, effect, event) VALUES (?, ?, ?, ?, ?, ?)",
                (now, action, key, incident, effect, json.dumps(event)),
            )
        return key, incident, effect

    def record_change(self, event: dict[str, Any]) -> int:
        """Keep a valid change event (routing key already checked and removed); its sequence number."""
        p = event["payload"]
        with self._lock, self._db as db:
            cur = db.execute(
                "INSERT INTO changes (received_at, summary, source, event) VALUES (?, ?, ?, ?)",
                (now_iso(), p["summary"], p.get("source"), json.dumps(event)),
            )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def changes(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT seq, received_at, summary, source, event FROM changes ORDER BY seq").fetchall()
        keys = ("seq", "received_at", "summary", "source")
        return [{**dict(zip(keys, r[:4], strict=True)), "event": json.loads(r[4])} for r in rows]

    def incidents(self, status: str | None = None) -> list[dict[str, Any]]:
        if status is not None and status not in STATUSES:
            raise ReceiverError(f"unknown incident status {status!r} (one of {', '.join(STATUSES)})")
        sql = f"SELECT {_INCIDENT_COLS} FROM incidents"  # noqa: S608 - fixed column list
        args: tuple[str, ...] = ()
        if status:
            sql, args = sql + " WHERE status = ?", (status,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY num", args).fetchall()
        return [_incident(r) for r in rows]

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, received_at, event_action, dedup_key, incident_id, effect, event FROM events ORDER BY seq"
            ).fetchall()
        keys = ("seq", "received_at", "event_action", "dedup_key", "incident_id", "effect")
        return [{**dict(zip(keys, r[:6], strict=True)), "event": json.loads(r[6])} for r in rows]


@dataclass
class Fault:
    """Answer `status` to /v2/enqueue for `remaining` more requests, or for `seconds` from the moment it
    becomes the active fault (then `until`, in time.monotonic())."""

    status: int
    remaining: int | None = None
    seconds: float | None = None
    until: float | None = None
    retry_after_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        left = self.seconds if self.until is None else max(0.0, round(self.until - time.monotonic(), 3))
        return {"status": self.status, "remaining": self.remaining, "seconds_left": left, "retry_after": self.retry_after_s}


_FAULT_BODIES: dict[int, dict[str, Any]] = {
    400: {"status": "invalid event", "message": "Event object is invalid", "errors": ["rejected by a lab fault"]},
    429: {"status": "throttle event", "message": "Requests for this service are arriving too quickly. Please retry later."},
}


def _json_response(handler: BaseHTTPRequestHandler, status: int, doc: Any, headers: dict[str, str] | None = None) -> None:
    body = json.dumps(doc).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    for k, v in (headers or {}).items():
        handler.send_header(k, v)
    handler.end_headers()
    handler.wfile.write(body)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects
    server_version = "iotex-ops-lab-pagerduty"
    timeout = 30.0  # an idle keep-alive connection is dropped after this (and at once on stop())
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("receiver: %s %s", self.address_string(), format % args)

    def _read_body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            self._answer(411, {"status": "error", "message": "Content-Length is required"})
            return None
        n = int(length)
        if n > MAX_BODY_BYTES:
            self.close_connection = True  # the body is not read, so the connection cannot be reused
            self._answer(413, {"status": "error", "message": f"body larger than {MAX_BODY_BYTES} bytes"})
            return None
        return self.rfile.read(n)

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path in ENQUEUE_PATHS:
            self._enqueue()
        elif path in CHANGE_PATHS:
            self._enqueue(change=True)
        elif path == "/_lab/faults":
            if self._authorized():
                self._set_fault()
        else:
            self._not_found()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        receiver = self.server.receiver
        if url.path in ENQUEUE_PATHS or url.path in CHANGE_PATHS:
            _json_response(self, 405, {"status": "error", "message": "use POST"}, {"Allow": "POST"})
            return
        routes = {"/incidents", "/events", "/changes", "/_lab/stats", "/_lab/faults"}
        if url.path not in routes:
            self._not_found()
            return
        if not self._authorized():
            return
        if url.path == "/incidents":
            status = parse_qs(url.query).get("status", [None])[0]
            if status is not None and status not in STATUSES:
                _json_response(self, 400, {"status": "error", "message": f"status must be one of {', '.join(STATUSES)}"})
                return
            _json_response(self, 200, receiver.store.incidents(status))
        elif url.path == "/events":
            _json_response(self, 200, receiver.store.events())
        elif url.path == "/changes":
            _json_response(self, 200, receiver.store.changes())
        elif url.path == "/_lab/stats":
            _json_response(self, 200, receiver.stats())
        else:
            _json_response(self, 200, receiver.faults())

    def do_DELETE(self) -> None:
        if urlsplit(self.path).path != "/_lab/faults":
            self._not_found()
            return
        if self._authorized():
            self.server.receiver.clear_faults()
            _json_response(self, 200, [])

    def _not_found(self) -> None:
        _json_response(self, 404, {"status": "error", "message": f"no such endpoint: {urlsplit(self.path).path}"})

    def _authorized(self) -> bool:
        # the lab endpoints show incidents and can break paging: any local user can reach 127.0.0.1
        given = self.headers.get("Authorization", "")
        want = f"Bearer {self.server.receiver.admin_token}"
        if hmac.compare_digest(given.encode(), want.encode()):
            return True
        self.close_connection = True  # its body, if any, is not read
        _json_response(self, 401, {"status": "error", "message": "lab endpoints need: Authorization: Bearer <admin token>"},
                       {"WWW-Authenticate": "Bearer"})  # fmt: skip
        return False

    def _set_fault(self) -> None:
        body = self._read_body()
        if body is None:
            return
        try:
            doc = json.loads(body)
            fault = self.server.receiver.set_fault(
                int(doc["status"]),
                count=doc.get("count"),
                seconds=doc.get("seconds"),
                retry_after_s=doc.get("retry_after"),
            )
        except (ValueError, KeyError, TypeError, ReceiverError) as exc:
            msg = str(exc) if isinstance(exc, ReceiverError) else 'expected {"status": 429|5xx|400, "count": N} or "seconds": S'
            _json_response(self, 400, {"status": "error", "message": msg})
            return
        _json_response(self, 200, fault.as_dict())

    def _enqueue(self, change: bool = False) -> None:
        receiver = self.server.receiver
        body = self._read_body()
        if body is None:
            return
        fault = receiver.take_fault()
        if fault is not None:
            phrase = HTTPStatus(fault.status).phrase if fault.status in HTTPStatus._value2member_map_ else "Error"
            doc = _FAULT_BODIES.get(fault.status, {"status": "error", "message": f"{phrase} (lab fault)"})
            headers = {"Retry-After": f"{fault.retry_after_s:g}"} if fault.retry_after_s is not None else {}
            self._answer(fault.status, doc, headers)
            return
        try:
            event = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            self._answer(400, {"status": "Unrecognized object", "message": "Event object format is unrecognized",
                               "errors": ["JSON parse error"]})  # fmt: skip
            return
        errors = validate_change(event) if change else validate(event)
        if errors:
            self._answer(400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors})
            return
        if not receiver.knows(event.pop("routing_key")):
            # the key itself is never echoed
            self._answer(400, {"status": "invalid event", "message": "Event object is invalid",
                               "errors": ["Invalid routing key"]})  # fmt: skip
            return
        if change:
            receiver.store.record_change(event)
            self._answer(202, {"status": "success", "message": "Change event processed"})
            return
        dedup_key, _, _ = receiver.store.apply(event)
        self._answer(202, {"status": "success", "message": "Event processed", "dedup_key": dedup_key})

    def _answer(self, status: int, doc: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        path = urlsplit(self.path).path
        if path in ENQUEUE_PATHS or path in CHANGE_PATHS:  # stats count what the Events API answered
            self.server.receiver.count_request(status)
        _json_response(self, status, doc, headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # stop() joins handler threads, so none touches the store after it is closed
    block_on_close = True

    def __init__(self, address: tuple[str, int], ctx: ssl.SSLContext, receiver: Receiver) -> None:
        self.receiver = receiver
        self._ctx = ctx
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = self.socket.accept()
        # headers and body go out in separate writes; without NODELAY, Nagle holds the body back until the
        # client's delayed ACK (~40 ms a response)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # the TLS handshake happens in the handler's thread (first read), so a client that connects and
        # never finishes its handshake cannot stall accept() for everyone
        return self._ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                # the plain socket's shutdown: wakes a handler blocked reading an idle keep-alive connection
                socket.socket.shutdown(conn, socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # e.g. a client that does not trust the lab CA aborts the handshake: not the receiver's problem
        log.debug("receiver: connection from %s failed", client_address, exc_info=True)


class Receiver:
    """The lab's PagerDuty in `dir`. `start()` serves in a thread (tests); `serve_forever()` in the
    foreground until SIGTERM or SIGINT (the CLI). Binds loopback only."""

    def __init__(self, dir: str | os.PathLike[str], port: int = 0, host: str = "127.0.0.1") -> None:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ReceiverError(f"the lab receiver binds a loopback address only, not {host!r}")
        self.dir = Path(dir).expanduser().resolve()
        self.host, self.port = host, port
        self.routing_key_file = self.dir / "routing_key"
        self.admin_token_file = self.dir / "admin_token"
        self.info_file = self.dir / INFO_FILE
        self.ca = LabCA(self.dir / "tls")
        self.admin_token = ""
        self._keys: list[RoutingKey] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock_file: IO[str] | None = None
        self._store: ReceiverStore | None = None
        self._faults: list[Fault] = []
        self._requests: dict[str, int] = {}
        self._state_lock = threading.Lock()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The Events API enqueue URL, for a Pager."""
        return f"{self.base_url}/v2/enqueue"

    @property
    def ca_file(self) -> Path:
        return self.ca.ca_file

    @property
    def store(self) -> ReceiverStore:
        if self._store is None:
            raise ReceiverError(f"receiver in {self.dir} is not running")
        return self._store

    def routing_key(self) -> RoutingKey:
        """The lab's routing key (created on first start)."""
        return RoutingKey.from_file(self.routing_key_file)

    # --- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> Receiver:
        if self._server is not None:
            return self
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self._lock_file = self._take_lock()
            self.ca = LabCA.create(self.dir / "tls")
            if not self.routing_key_file.exists():
                write_key_file(self.routing_key_file, secrets.token_hex(16))  # 32 hex chars, like PagerDuty's
            if not self.admin_token_file.exists():
                write_key_file(self.admin_token_file, secrets.token_urlsafe(32))
            self._keys = [self.routing_key()]
            self.admin_token = self.admin_token_file.read_text(encoding="utf-8").strip()
            self._store = ReceiverStore(self.dir / "receiver.db")
            try:
                self._server = _Server((self.host, self.port), self.ca.server_ssl_context(), self)
            except OSError as exc:
                raise ReceiverError(f"receiver cannot listen on {self.host}:{self.port}: {exc.strerror}") from None
            self.port = self._server.server_address[1]
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name=f"pager-receiver:{self.port}", daemon=True
            )
            self._thread.start()
            self._write_info()
        except BaseException:
            self.stop()
            raise
        log.info("lab PagerDuty receiver listening on %s", self.url)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            if self._thread is not None and self._thread.is_alive():
                server.shutdown()  # stops accepting; returns when serve_forever has returned (never if it never ran)
            server.drop_connections()
            server.server_close()  # joins the handler threads
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._lock_file is not None:
            with contextlib.suppress(FileNotFoundError):
                if json.loads(self.info_file.read_text(encoding="utf-8")).get("pid") == os.getpid():
                    self.info_file.unlink()
            self._lock_file.close()
            self._lock_file = None

    def serve_forever(self, on_ready: Any = None) -> None:
        """Serve in the foreground until SIGTERM or SIGINT, then stop cleanly. `on_ready(self)` is called
        once listening (the CLI prints where)."""
        stop = threading.Event()

        def handler(signum: int, frame: FrameType | None) -> None:
            stop.set()

        previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            if on_ready is not None:
                on_ready(self)
            while not stop.wait(0.5):
                pass
        finally:
            self.stop()
            for s, h in previous.items():
                signal.signal(s, h)

    def _take_lock(self) -> IO[str]:
        f = open(self.dir / "receiver.lock", "a", encoding="utf-8")  # noqa: SIM115 - held while running
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise ReceiverError(f"a receiver is already running in {self.dir} (see {self.info_file})") from None
        return f

    def _write_info(self) -> None:
        info = {
            "url": self.url,
            "base_url": self.base_url,
            "ca_file": str(self.ca_file),
            "pid": os.getpid(),
            "admin_token_file": str(self.admin_token_file),
            "routing_key_file": str(self.routing_key_file),
            "started_at": now_iso(),
        }
        tmp = self.info_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.info_file)

    # --- what handlers use -------------------------------------------------------------------------------

    def knows(self, routing_key: str) -> bool:
        return any(hmac.compare_digest(routing_key.encode(), k.reveal().encode()) for k in self._keys)

    def set_fault(
        self, status: int, count: int | None = None, seconds: float | None = None, retry_after_s: float | None = None
    ) -> Fault:
        """Answer `status` to the next `count` enqueue requests, or for `seconds`. Faults are phases played
        in order: "429 for 3 requests, then 500 for 2 s" is two calls, the 2 s counted from the first 500."""
        if status != 400 and status != 429 and not 500 <= status <= 599:
            raise ReceiverError(f"fault status must be 429, 5xx or 400, not {status}")
        if (count is None) == (seconds is None):
            raise ReceiverError("give exactly one of count and seconds")
        if count is not None and (not isinstance(count, int) or count < 1):
            raise ReceiverError("count must be a positive integer")
        if seconds is not None and (not isinstance(seconds, int | float) or seconds <= 0):
            raise ReceiverError("seconds must be positive")
        if retry_after_s is not None and (not isinstance(retry_after_s, int | float) or retry_after_s < 0):
            raise ReceiverError("retry_after must be a non-negative number of seconds")
        fault = Fault(status, remaining=count, seconds=seconds, retry_after_s=retry_after_s)
        with self._state_lock:
            self._faults.append(fault)
            self._advance()
        return fault

    def clear_faults(self) -> None:
        with self._state_lock:
            self._faults.clear()

    def faults(self) -> list[dict[str, Any]]:
        with self._state_lock:
            self._advance()
            return [f.as_dict() for f in self._faults]

    def _advance(self) -> None:
        """Drop finished faults; start the clock of a timed fault when it becomes the active one."""
        now = time.monotonic()
        while self._faults:
            head = self._faults[0]
            if head.until is None and head.seconds is not None:
                head.until = now + head.seconds
            if (head.remaining is not None and head.remaining <= 0) or (head.until is not None and head.until <= now):
                self._faults.pop(0)
                continue
            return

    def take_fault(self) -> Fault | None:
        with self._state_lock:
            self._advance()
            if not self._faults:
                return None
            fault = self._faults[0]
            if fault.remaining is not None:
                fault.remaining -= 1
            return fault

    def count_request(self, status: int) -> None:
        with self._state_lock:
            self._requests[str(status)] = self._requests.get(str(status), 0) + 1

    def stats(self) -> dict[str, Any]:
        """Enqueue requests answered since start, in total and by status (how tests count attempts)."""
        with self._state_lock:
            return {"requests": sum(self._requests.values()), "by_status": dict(self._requests)}


# --- finding and querying a running receiver -----------------------------------------------------------------


def default_dir() -> Path:
    """$IOTEX_OPS_PAGER_DIR, else the lab's `<lab root>/pager` (the lab root: $IOTEX_OPS_LAB_DIR or its default)."""
    env = os.environ.get("IOTEX_OPS_PAGER_DIR")
    if env:
        return Path(env).expanduser()
    from iotex_ops.lab.lab import default_root  # the lab module is heavy; only this needs it

    return default_root() / "pager"


def find(dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The receiver.json of the receiver running in `dir`; ReceiverError if none is."""
    path = Path(dir).expanduser() / INFO_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReceiverError(f"no receiver is running in {Path(dir).expanduser()} ({INFO_FILE} not found)") from None
    except (OSError, ValueError) as exc:
        raise ReceiverError(f"{path} is unreadable: {exc}") from None
    if not isinstance(info, dict) or not isinstance(info.get("pid"), int) or not alive(info["pid"]):
        raise ReceiverError(f"the receiver recorded in {path} is not running")
    return info


def read_state(dir: str | os.PathLike[str]) -> ReceiverStore:
    """The receiver's stored incidents and events, read-only, whether or not it is running."""
    d = Path(dir).expanduser()
    if not d.is_dir():
        raise ReceiverError(f"pager directory {d} does not exist")
    return ReceiverStore(d / "receiver.db", readonly=True)


class LabClient:
    """A client for a receiver's lab endpoints (incidents, events, stats, faults)."""

    def __init__(self, base_url: str, ca_file: str | os.PathLike[str] | None, admin_token: str, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = admin_token
        self._timeout = timeout_s
        # no proxies from the environment: the receiver is on loopback
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=client_ssl_context(ca_file))
        )

    def __repr__(self) -> str:
        return f"LabClient({self.base_url!r})"

    @classmethod
    def for_dir(cls, dir: str | os.PathLike[str]) -> LabClient:
        info = find(dir)
        token_file = Path(info["admin_token_file"])
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ReceiverError(f"admin token file {token_file}: {exc.strerror}") from None
        return cls(info["base_url"], info["ca_file"], token)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        url = self.base_url + path
        if not url.startswith("https://"):
            raise ReceiverError(f"receiver URL must be https: {self.base_url}")
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - https only, checked above
        req.add_header("Authorization", f"Bearer {self._token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with self._opener.open(req, timeout=self._timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            with exc:
                try:
                    message = json.loads(exc.read()).get("message", "")
                except (ValueError, AttributeError):
                    message = ""
            raise ReceiverError(f"{method} {url}: HTTP {exc.code} {message}".rstrip()) from None
        except urllib.error.URLError as exc:
            raise ReceiverError(f"{method} {url}: {exc.reason}") from None
        except (OSError, ValueError) as exc:
            raise ReceiverError(f"{method} {url}: {exc}") from None

    def incidents(self, status: str | None = None) -> list[dict[str, Any]]:
        return list(self._call("GET", "/incidents" + (f"?status={status}" if status else "")))

    def events(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/events"))

    def changes(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/changes"))

    def stats(self) -> dict[str, Any]:
        return dict(self._call("GET", "/_lab/stats"))

    def set_fault(
        self, status: int, count: int | None = None, seconds: float | None = None, retry_after_s: float | None = None
    ) -> dict[str, Any]:
        doc: dict[str, Any] = {"status": status}
        if count is not None:
            doc["count"] = count
        if seconds is not None:
            doc["seconds"] = seconds
        if retry_after_s is not None:
            doc["retry_after"] = retry_after_s
        return dict(self._call("POST", "/_lab/faults", doc))

    def faults(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/_lab/faults"))

    def clear_faults(self) -> None:
        self._call("DELETE", "/_lab/faults")
