"""Fakes for testing code built on iotex-ops, shipped with the package (as invoke ships `MockContext`).

Each fake stands in for one real part, in this process, and records what it was asked:

`FakeHost`
    A `Host` (iotex_ops.hosts) that starts no process: each command is answered by a `Reply` (exact
    command -> reply, or a function of the command; anything else exits 0 with no output), every command
    is recorded in `commands`, and `put`/`get` copy files under a directory that stands for the host's
    file system. `copy_between` treats it as another machine. Works with `run_on` (it is thread-safe).

`FakePages`
    The pages alertd sends (the `Pages` protocol of iotex_ops.remediation.service: trigger, acknowledge,
    resolve), kept in `events` in order instead of going to PagerDuty; `actions(key)` lists one
    incident's actions.

`FakeRunner`
    alertd's runbook runner (the `Runner` protocol of iotex_ops.remediation.service): no runbook runs;
    each runbook's outcomes are given in order (the last one repeats; default: passed), every call is
    recorded in `calls`, runs block while `hold` is clear, and `begun` is set once a run has begun.

`FakeClock`
    A clock for code that takes one (`clock=` of alertd's `Service`): it stands still until `advance`.

`FakePrometheus`
    A Prometheus HTTP API on 127.0.0.1 (an ephemeral port, in a thread of this process): `query` and
    `query_range` answer one series per query (with `labels`) from `series(query, t, start)` (default:
    `iotex_node_finalized_height` grows by one block every 5 s from 100, anything else is 2.5), and every
    request is kept in `requests`; set `status` to make it answer errors (and `/-/ready` 503). It listens
    on a socket, so a test using it is an integration test (marked `slow` in this project's suite).
    Use it as a context manager, or `start()` and `stop()`.

`FakeAlertmanager`
    Alertmanager's silences API v2 as a `Transport` of iotex_ops.alerting.silences (a callable, no
    socket): POST /api/v2/silences creates (or updates, given an id), GET lists with each silence's
    state, DELETE /api/v2/silence/{id} expires (404 for an unknown id); every call is kept in `calls`.
    Its clock is `now` (an aware datetime), moved by `advance(seconds)`.

Nothing here is imported by the toolkit itself.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

from iotex_ops.hosts import Host, HostError
from iotex_ops.remediation.service import Outcome
from iotex_ops.runbook.events import Result

if TYPE_CHECKING:
    from iotex_ops.remediation.service import Pages, Runner

__all__ = ["FakeAlertmanager", "FakeClock", "FakeHost", "FakePages", "FakePrometheus", "FakeRunner", "Reply"]


# -- hosts ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """What a fake command does: its exit code (None: it did not finish), output, and whether it timed out."""

    exit_code: int | None = 0
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False


Script = Mapping[str, "Reply | str"] | Callable[[str], "Reply | str"]


class FakeHost(Host):
    """A host that runs nothing: commands get scripted replies, files live under `root` (see the module doc)."""

    def __init__(self, name: str = "fake", replies: Script | None = None, *, root: str | Path | None = None) -> None:
        self.name = name
        self.replies = replies if replies is not None else {}
        self.root = Path(root) if root is not None else None
        self.commands: list[str] = []
        self.puts: list[tuple[str, str]] = []  # (local, remote)
        self.gets: list[tuple[str, str]] = []  # (remote, local)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FakeHost(name={self.name!r}, root={self.root!r})"

    def reply(self, command: str) -> Reply:
        r: Reply | str
        if callable(self.replies):
            r = self.replies(command)
        else:
            r = self.replies.get(command, Reply())
        return Reply(stdout=r) if isinstance(r, str) else r

    def _execute(self, command: str, timeout: float) -> tuple[int | None, str, str, bool]:
        with self._lock:
            self.commands.append(command)
        r = self.reply(command)
        return (None if r.timed_out else r.exit_code), r.stdout, r.stderr, r.timed_out

    def path(self, remote: str | Path) -> Path:
        """Where `remote` lives on this machine: under `root` (an absolute path is taken relative to it)."""
        if self.root is None:
            raise HostError(self.name, "this fake host has no file system (give it root=)")
        return self.root / str(remote).lstrip("/")

    def put(self, local: str | Path, remote: str | Path) -> None:
        with self._lock:
            self.puts.append((str(local), str(remote)))
        try:
            shutil.copyfile(local, self.path(remote))
        except OSError as exc:
            raise HostError(self.name, f"cannot copy {local} to {remote}: {exc}") from exc

    def get(self, remote: str | Path, local: str | Path) -> None:
        with self._lock:
            self.gets.append((str(remote), str(local)))
        try:
            shutil.copyfile(self.path(remote), local)
        except OSError as exc:
            raise HostError(self.name, f"cannot copy {remote} to {local}: {exc}") from exc


# -- alertd's pages, runner and clock ------------------------------------------------------------------------


class FakePages:
    """alertd's pages, recorded: each event is {"action", "key", ...} (trigger adds summary, severity, details);
    also a drill's change events (`change`, action "change")."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def trigger(self, dedup_key: str, summary: str, source: str, severity: str, details: dict[str, Any], links: Any = ()) -> None:
        self._add({"action": "trigger", "key": dedup_key, "summary": summary, "source": source, "severity": severity,
                   "details": details, "links": list(links)})  # fmt: skip

    def acknowledge(self, dedup_key: str) -> None:
        self._add({"action": "acknowledge", "key": dedup_key})

    def resolve(self, dedup_key: str) -> None:
        self._add({"action": "resolve", "key": dedup_key})

    def change(self, event: Mapping[str, Any]) -> None:
        """A change event (`paging.events.change`), as a drill's maintenance window announces it."""
        payload = dict(event.get("payload") or {})
        self._add({"action": "change", "key": None, "summary": payload.get("summary"), "source": payload.get("source"),
                   "details": dict(payload.get("custom_details") or {}), "links": list(event.get("links") or ())})  # fmt: skip

    def changes(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["action"] == "change"]

    def _add(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.events.append(event)

    def actions(self, key: str | None = None) -> list[str]:
        """The actions sent, in order: all of them, or one incident's (by dedup key)."""
        return [e["action"] for e in self.events if key is None or e["key"] == key]


class FakeRunner:
    """alertd's runner: outcomes per runbook in order (the last repeats); runs wait while `hold` is clear."""

    def __init__(
        self,
        outcomes: dict[str, list[Outcome]] | None = None,
        known: tuple[str, ...] = ("restart-node",),
        hosts: tuple[str, ...] | None = None,
    ) -> None:
        self.outcomes = outcomes or {}
        self._known = set(known) | set(self.outcomes)
        self.hosts = hosts  # the inventory's delegates (a `host` parameter naming another is refused); None: any
        self.calls: list[tuple[str, str, dict[str, Any]]] = []  # ("run" | "resume", run id, params)
        self.hold = threading.Event()
        self.hold.set()
        self.begun = threading.Event()  # set once a run has begun (and called on_step)
        self.ended_runs: dict[str, Outcome] = {}  # what `ended` answers: runs that ended while alertd was down
        self.started_runs: set[str] = set()
        self.hold_timeout_s = 10.0
        self.lock = threading.Lock()
        self.free = False  # what `network_free` answers: a drill holds the lock until a test says otherwise

    def known(self, runbook: str) -> bool:
        return runbook in self._known

    def check(self, runbook: str, params: dict[str, Any]) -> str | None:
        if not self.known(runbook):
            return f"runbook {runbook} is not installed where alertd runs"
        host = params.get("host")
        if self.hosts is not None and host not in self.hosts:
            return f"host {host!r} is not a delegate of the inventory (its delegates: {', '.join(self.hosts)})"
        return None

    def network_free(self) -> bool:
        return self.free

    def _next(self, runbook: str) -> Outcome:
        seq = self.outcomes.get(runbook) or [Outcome(Result.PASSED)]
        return seq.pop(0) if len(seq) > 1 else seq[0]

    def run(self, run_id: str, runbook: str, params: dict[str, Any], on_step: Callable[[str], None]) -> Outcome:
        with self.lock:
            self.calls.append(("run", run_id, params))
            self.started_runs.add(run_id)
            out = self._next(runbook)
        if out.result in (Result.DEFERRED, Result.REFUSED):  # as the engine: never began, no step ran
            self.begun.set()
            return out
        on_step("restart")
        self.begun.set()
        if not self.hold.wait(self.hold_timeout_s):
            raise TimeoutError(f"FakeRunner: run {run_id} held for more than {self.hold_timeout_s} s")
        return out

    def resume(self, run_id: str, on_step: Callable[[str], None]) -> Outcome:
        with self.lock:
            self.calls.append(("resume", run_id, {}))
        return Outcome(Result.PASSED)

    def ended(self, run_id: str) -> Outcome | None:
        return self.ended_runs.get(run_id)

    def started(self, run_id: str) -> bool:
        with self.lock:
            return run_id in self.started_runs

    def runs(self) -> int:
        """How many runs were started (resumes not counted)."""
        with self.lock:
            return sum(1 for c in self.calls if c[0] == "run")


class FakeClock:
    """A clock that stands still until told: call it for the time, `advance(s)` to move it."""

    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


# -- Prometheus ----------------------------------------------------------------------------------------------


def default_series(query: str, t: float, start: float) -> float:
    """One block every 5 s from height 100 for finalized heights; 2.5 for anything else."""
    return 100 + (t - start) // 5 if "finalized_height" in query else 2.5


class FakePrometheus(ThreadingHTTPServer):
    """A Prometheus HTTP API (instant and range queries, readiness) on 127.0.0.1; see the module doc."""

    daemon_threads = True

    def __init__(self, series: Callable[[str, float, float], float] = default_series) -> None:
        super().__init__(("127.0.0.1", 0), _PrometheusHandler)
        self.series = series
        self.labels: dict[str, str] = {}  # the labels of every series answered
        self.requests: list[dict[str, str]] = []
        self.status = 200
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> FakePrometheus:
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join(5)
            self._thread = None
        self.server_close()

    def __enter__(self) -> FakePrometheus:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


class _PrometheusHandler(BaseHTTPRequestHandler):
    server: FakePrometheus

    def do_GET(self) -> None:
        u = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        self.server.requests.append({"path": u.path, **q})
        if u.path == "/-/ready":
            self._send(200 if self.server.status == 200 else 503, {"status": "ready"})
            return
        if u.path not in ("/api/v1/query", "/api/v1/query_range"):
            self._send(404, {"status": "error", "error": "not found"})
            return
        if self.server.status != 200:
            self._send(self.server.status, {"status": "error", "errorType": "bad_data", "error": "bad"})
            return
        if u.path == "/api/v1/query":
            t = float(q.get("time") or time.time())
            row = {"metric": dict(self.server.labels), "value": [t, str(self.server.series(q["query"], t, t))]}
            self._send(200, {"status": "success", "data": {"resultType": "vector", "result": [row]}})
            return
        start, end, step = float(q["start"]), float(q["end"]), float(q["step"].rstrip("s"))
        values = []
        t = start
        while t <= end:
            values.append([t, str(self.server.series(q["query"], t, start))])
            t += step
        self._send(
            200,
            {
                "status": "success",
                "data": {"resultType": "matrix", "result": [{"metric": dict(self.server.labels), "values": values}]},
            },
        )

    def _send(self, code: int, doc: dict[str, Any]) -> None:
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


if TYPE_CHECKING:  # the fakes keep to the protocols they stand in for (checked by mypy)
    _pages: Pages = FakePages()
    _runner: Runner = FakeRunner()


# -- Alertmanager's silences ------------------------------------------------------------------------------------


class FakeAlertmanager:
    """Alertmanager's /api/v2/silences in this process: a `Transport` for `iotex_ops.alerting.silences.Silences`."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
        self.silences: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str, Any]] = []
        self._n = 0

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def _state(self, s: Mapping[str, Any]) -> str:
        starts, ends = _parse_time(s["startsAt"]), _parse_time(s["endsAt"])
        if ends <= self.now:
            return "expired"
        return "active" if starts <= self.now else "pending"

    def __call__(self, method: str, path: str, body: Any) -> Any:
        from iotex_ops.alerting.silences import SilenceError

        self.calls.append((method, path, body))
        if method == "POST" and path == "/api/v2/silences":
            missing = [k for k in ("matchers", "startsAt", "endsAt", "createdBy", "comment") if k not in body]
            if missing or not body["matchers"]:
                raise SilenceError(f"Alertmanager (fake): POST {path}: HTTP 400: missing {missing or ['matchers']}")
            sid = body.get("id") or f"fake-{self._n:04d}"
            self._n += 1
            self.silences[sid] = {**body, "id": sid, "updatedAt": self.now.isoformat()}
            return {"silenceID": sid}
        if method == "GET" and path.startswith("/api/v2/silences"):
            return [{**s, "status": {"state": self._state(s)}} for s in self.silences.values()]
        if method == "DELETE" and path.startswith("/api/v2/silence/"):
            sid = path.rsplit("/", 1)[1]
            if sid not in self.silences:
                raise SilenceError(f"Alertmanager (fake): DELETE {path}: HTTP 404: silence not found")
            s = self.silences[sid]
            if self._state(s) != "expired":
                s["endsAt"] = self.now.isoformat()
            return None
        raise SilenceError(f"Alertmanager (fake): {method} {path}: HTTP 404: no such endpoint")


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
