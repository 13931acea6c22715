"""The dashboard's web application (aiohttp, jinja2 templates, server-sent events).

Pages are rendered on the server from the views (views.py) with autoescaping; the live part of each page is
one fragment that the same template renders again on every update and sends as a server-sent event, so that
the first paint and every update come from one template and the browser builds nothing from data. Charts and
scorecard plots are JSON (/api/...) drawn by uPlot, served from the package (static/vendor), nothing from
the internet.

`Hub` polls each topic (network, alerts, runs, drills) in a thread while a page listens to it, or when a
page is drawn and the topic's last reading is stale, and fans each new fragment out to the listeners.

Security (auth.py): reading needs nothing; an action needs a session (cookie) and the session's CSRF token
(the X-CSRF-Token header or the form field), a same-origin request, and it is journaled. Every answer carries
a strict Content-Security-Policy (scripts and styles from this origin only), no framing, no referrer to other sites.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from aiohttp import web

from iotex_ops.dashboard import auth, views
from iotex_ops.dashboard.errors import DashboardError
from iotex_ops.dashboard.sources import Sources, client_of

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
STATIC = HERE / "static"
TOPICS: dict[str, float] = {"network": 1.0, "alerts": 2.0, "runs": 1.0, "drills": 3.0}  # poll interval (s) while watched
KEEPALIVE_S = 15.0
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox"  # a run's own static report
PAGES = (("network", "/", "Network"), ("alerts", "/alerts", "Alerts"), ("runs", "/runs", "Runs"),
         ("drills", "/drills", "Drills"), ("charts", "/charts", "Charts"))  # fmt: skip
FAILED_LOGIN_DELAY_S = 1.0


def _ts(t: Any) -> str:
    if t in (None, ""):
        return "-"
    if isinstance(t, str):
        return t.replace("T", " ")[:19]
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(t)))


def _age(t: Any, now: float | None = None) -> str:
    if t in (None, ""):
        return "-"
    s = max(0.0, (now or time.time()) - float(t))
    if s < 120:
        return f"{s:.0f}s ago"
    if s < 7200:
        return f"{s / 60:.0f}m ago"
    return f"{s / 3600:.1f}h ago"


def make_env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every page: data from nodes, journals and alerts is text, never markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["ts"] = _ts
    env.filters["age"] = _age
    env.filters["dash"] = lambda v: "-" if v is None or v == "" else v
    return env


@dataclass
class _Topic:
    interval: float
    html: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    at: float = 0.0  # monotonic time of the last reading
    listeners: set[asyncio.Queue[str]] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    refreshing: asyncio.Lock = field(default_factory=asyncio.Lock)


class Hub:
    """The topics' latest fragments, and their listeners."""

    def __init__(self, read: dict[str, Callable[[], Any]], render: Callable[[str, Any], str]) -> None:
        self._read = read
        self._render = render
        self.topics = {name: _Topic(TOPICS[name]) for name in read}

    async def refresh(self, name: str) -> _Topic:
        t = self.topics[name]
        async with t.refreshing:
            started = time.monotonic()
            try:
                view = await asyncio.to_thread(self._read[name])
                data = view.as_dict() if hasattr(view, "as_dict") else view
                html = self._render(name, data)
            except Exception as exc:  # a reader that failed in a way it did not foresee: said on the page
                log.warning("dashboard: reading %s failed: %s: %s", name, type(exc).__name__, exc)
                data = {"error": f"{type(exc).__name__}: {exc}"}
                html = self._render("error", data)
            t.html, t.data, t.at = html, data, started
        return t

    async def latest(self, name: str) -> _Topic:
        t = self.topics[name]
        if time.monotonic() - t.at > t.interval:
            await self.refresh(name)
        return t

    def _publish(self, name: str) -> None:
        t = self.topics[name]
        msg = f"event: {name}\ndata: {json.dumps({'html': t.html})}\n\n"
        for q in list(t.listeners):
            if q.qsize() > 10:  # a listener that does not read: it gets the newest only
                with contextlib.suppress(asyncio.QueueEmpty):
                    q.get_nowait()
            q.put_nowait(msg)

    async def _poll(self, name: str) -> None:
        t = self.topics[name]
        while t.listeners:
            await self.refresh(name)
            self._publish(name)
            await asyncio.sleep(max(0.05, t.interval - (time.monotonic() - t.at)))
        t.task = None

    @contextlib.asynccontextmanager
    async def listen(self, names: list[str]) -> AsyncIterator[asyncio.Queue[str]]:
        q: asyncio.Queue[str] = asyncio.Queue()
        for n in names:
            t = self.topics[n]
            t.listeners.add(q)
            if t.task is None:
                t.task = asyncio.get_running_loop().create_task(self._poll(n))
        try:
            yield q
        finally:
            for n in names:
                self.topics[n].listeners.discard(q)

    async def close(self) -> None:
        for t in self.topics.values():
            t.listeners.clear()
            if t.task is not None:
                t.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t.task


SOURCES = web.AppKey("sources", Sources)
SESSIONS = web.AppKey("sessions", auth.Sessions)
HUB = web.AppKey("hub", Hub)
ENV = web.AppKey("env", jinja2.Environment)
SECURE = web.AppKey("secure", bool)


def _secure(request: web.Request, resp: web.StreamResponse) -> None:
    if "Content-Security-Policy" not in resp.headers:
        resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "same-origin"  # not "no-referrer": Chromium then sends `Origin: null`
    if not request.path.startswith("/static/"):
        resp.headers["Cache-Control"] = "no-store"


@web.middleware
async def _headers(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        resp = await handler(request)
    except web.HTTPException as exc:  # a 303, 403, 404...: raised on, with the same headers as any answer
        _secure(request, exc)
        raise
    except DashboardError as exc:
        resp = web.Response(status=400, text=str(exc))
    except Exception as exc:  # never a traceback or a bare 500 page: one line, and the log has the rest
        log.exception("dashboard: %s %s failed", request.method, request.path)
        resp = web.Response(status=503, text=f"the dashboard could not answer: {type(exc).__name__}: {exc}")
    _secure(request, resp)
    return resp


def _session(request: web.Request) -> auth.Session | None:
    return request.app[SESSIONS].get(request.cookies.get(auth.COOKIE))


def _page(request: web.Request, template: str, **ctx: Any) -> web.Response:
    s = _session(request)
    sessions = request.app[SESSIONS]
    html = (
        request.app[ENV]
        .get_template(template)
        .render(
            pages=PAGES,
            network=request.app[SOURCES].network,
            user=s.user if s else None,
            csrf=sessions.csrf(s) if s else "",
            login_enabled=sessions.enabled,
            now=time.time(),
            **ctx,
        )
    )
    return web.Response(text=html, content_type="text/html", charset="utf-8")


def _topic_page(name: str, template: str, title: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        t = await request.app[HUB].latest(name)
        return _page(request, template, title=title, topic=name, fragment=t.html, active=name)

    return handler


async def run_page(request: web.Request) -> web.Response:
    label, run_id = request.match_info["store"], request.match_info["run_id"]
    v = await asyncio.to_thread(request.app[SOURCES].run, label, run_id)
    if v is None:
        raise web.HTTPNotFound(text=f"no run {run_id} in the {label} store")
    frag = request.app[ENV].get_template("_run.html").render(run=v.as_dict(), now=time.time(), detail=True)
    return _page(request, "run.html", title=f"run {run_id}", topic="", fragment=frag, active="runs", run=v.as_dict())


async def run_report(request: web.Request) -> web.StreamResponse:
    p = request.app[SOURCES].report_path(request.match_info["store"], request.match_info["run_id"])
    if p is None:
        raise web.HTTPNotFound(text="no report for that run (yet)")
    resp = web.FileResponse(p, headers={"Content-Type": "text/html; charset=utf-8"})
    resp.headers["Content-Security-Policy"] = REPORT_CSP
    return resp


async def charts_page(request: web.Request) -> web.Response:
    window = request.query.get("window", "15m")
    if window not in views.WINDOWS:
        window = "15m"
    return _page(request, "charts.html", title="charts", topic="", fragment="", active="charts", window=window,
                 windows=list(views.WINDOWS))  # fmt: skip


async def api_topic(request: web.Request) -> web.Response:
    name = request.match_info["topic"]
    if name not in TOPICS:
        raise web.HTTPNotFound(text=f"no topic {name}; the topics are {', '.join(TOPICS)}")
    t = await request.app[HUB].latest(name)
    return web.json_response(t.data)


async def api_charts(request: web.Request) -> web.Response:
    window = request.query.get("window", "15m")
    if window not in views.WINDOWS:
        raise web.HTTPBadRequest(text=f"window must be one of {', '.join(views.WINDOWS)}")
    return web.json_response(await asyncio.to_thread(request.app[SOURCES].charts, views.WINDOWS[window]))


async def events(request: web.Request) -> web.StreamResponse:
    names = [n for n in request.query.get("topics", "").split(",") if n]
    bad = [n for n in names if n not in TOPICS]
    if not names or bad:
        raise web.HTTPBadRequest(text=f"topics must be some of {', '.join(TOPICS)}")
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                       "X-Accel-Buffering": "no"})  # fmt: skip
    resp.headers["Content-Security-Policy"] = CSP
    await resp.prepare(request)
    hub = request.app[HUB]
    with contextlib.suppress(ConnectionResetError, asyncio.CancelledError):
        await resp.write(b"retry: 1000\n\n")
        async with hub.listen(names) as q:
            while True:
                try:
                    msg = await asyncio.wait_for(q.get(), KEEPALIVE_S)
                except TimeoutError:
                    msg = ": keepalive\n\n"
                await resp.write(msg.encode())
    return resp


# -- login and actions -----------------------------------------------------------------------------------


def _same_origin(request: web.Request) -> bool:
    """A browser names the page a POST comes from (Origin, else Referer): it must be this dashboard."""
    origin = request.headers.get("Origin") or request.headers.get("Referer")
    if not origin:
        return True  # not a browser (curl, a script): the session and CSRF token still decide
    return urlsplit(origin).netloc == request.host


async def login_page(request: web.Request) -> web.Response:
    return _page(request, "login.html", title="log in", topic="", fragment="", active="", error=request.query.get("error", ""))


async def login(request: web.Request) -> web.StreamResponse:
    sessions = request.app[SESSIONS]
    if not _same_origin(request):
        raise web.HTTPForbidden(text="refused: the login form was posted from another site")
    if not sessions.enabled:
        raise web.HTTPForbidden(text="this dashboard has no login (started without --token-file): it is read-only")
    form = await request.post()
    s = sessions.login(str(form.get("token", "")), str(form.get("user", "")) or "operator")
    if s is None:
        await asyncio.sleep(FAILED_LOGIN_DELAY_S)  # a guess a second, at most, per connection
        raise web.HTTPSeeOther("/login?error=wrong+token")
    resp = web.HTTPSeeOther(_safe_next(str(form.get("next", "/"))))
    resp.set_cookie(auth.COOKIE, s.id, httponly=True, samesite="Strict", secure=request.app[SECURE], path="/",
                    max_age=int(auth.SESSION_TTL_S))  # fmt: skip
    raise resp  # (aiohttp: an HTTPException is raised, not returned)


def _safe_next(target: str) -> str:
    """Only a path of this dashboard (never another site: an open redirect)."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


async def logout(request: web.Request) -> web.StreamResponse:
    s = _session(request)
    if s is not None:
        form = await request.post()
        if not request.app[SESSIONS].check_csrf(s, request.headers.get(auth.CSRF_HEADER) or str(form.get(auth.CSRF_FIELD, ""))):
            raise web.HTTPForbidden(text="refused: missing or wrong CSRF token")
        request.app[SESSIONS].logout(s.id)
    resp = web.HTTPSeeOther("/")
    resp.del_cookie(auth.COOKIE, path="/")
    raise resp


ACTION_TOPIC = {"approve": "drills", "suspend": "drills", "resume": "drills", "acknowledge": "alerts"}


async def action(request: web.Request) -> web.Response:
    name = request.match_info["action"]
    if name not in ACTION_TOPIC:
        raise web.HTTPNotFound(text=f"no action {name}")
    s = _session(request)
    if s is None:
        return web.json_response({"ok": False, "message": "refused: log in first (actions need a session)"}, status=403)
    if not _same_origin(request):
        return web.json_response({"ok": False, "message": "refused: the request came from another site"}, status=403)
    form = await request.post()
    given = request.headers.get(auth.CSRF_HEADER) or str(form.get(auth.CSRF_FIELD, ""))
    if not request.app[SESSIONS].check_csrf(s, given):
        return web.json_response({"ok": False, "message": "refused: missing or wrong CSRF token"}, status=403)
    args = {k: str(v) for k, v in form.items() if k != auth.CSRF_FIELD and isinstance(v, str)}
    try:
        done = await asyncio.to_thread(request.app[SOURCES].act, name, args, by=s.user, client=client_of(request.remote))
    except DashboardError as exc:
        return web.json_response({"ok": False, "message": str(exc)}, status=409)
    await request.app[HUB].refresh(ACTION_TOPIC[name])
    return web.json_response({"ok": True, "message": done})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def favicon(request: web.Request) -> web.Response:
    return web.Response(status=204)  # none: a browser asks for it on every page


def make_app(sources: Sources, sessions: auth.Sessions, *, secure: bool = False) -> web.Application:
    env = make_env()

    def render(name: str, data: Any) -> str:
        return env.get_template(f"_{name}.html").render(v=data, now=time.time())

    app = web.Application(middlewares=[_headers], client_max_size=64 * 1024)
    app[SOURCES] = sources
    app[SESSIONS] = sessions
    app[ENV] = env
    app[SECURE] = secure
    app[HUB] = Hub(
        {
            "network": sources.network_now,
            "alerts": sources.alerts,
            "drills": sources.drills,
            "runs": lambda: {"runs": [r.as_dict() for r in sources.runs()]},
        },
        render,
    )
    app.router.add_get("/", _topic_page("network", "topic.html", "network"))
    app.router.add_get("/alerts", _topic_page("alerts", "topic.html", "alerts and incidents"))
    app.router.add_get("/runs", _topic_page("runs", "topic.html", "runs"))
    app.router.add_get("/drills", _topic_page("drills", "topic.html", "drills"))
    app.router.add_get("/charts", charts_page)
    app.router.add_get("/runs/{store}/{run_id}", run_page)
    app.router.add_get("/runs/{store}/{run_id}/report", run_report)
    app.router.add_get("/api/charts", api_charts)
    app.router.add_get("/api/{topic}", api_topic)
    app.router.add_get("/events", events)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_post("/actions/{action}", action)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_static("/static/", STATIC, follow_symlinks=False)

    async def on_shutdown(app: web.Application) -> None:
        await app[HUB].close()

    app.on_shutdown.append(on_shutdown)
    return app
