"""Who may act on the dashboard: the login token, sessions, CSRF tokens, and where it may listen (pure).

The dashboard is read-only to anyone who reaches it. An action (approve a scheduled drill, suspend or resume
a schedule, acknowledge a page) needs a session, and a session needs the login token, read from a file that
only its owner can read (0600, as alertd's webhook token). Why each piece:

- the token is never put in a page, a cookie or a log: a login trades it for a random session id;
- the session cookie is HttpOnly (no script reads it) and SameSite=Strict (no other site's page sends it),
  and Secure when the dashboard serves TLS;
- every action also carries a CSRF token, an HMAC of the session id under a key of this process, compared in
  constant time: a forged form (or a stolen page without the session) is refused;
- sessions live in memory and end with the process or after `SESSION_TTL_S`: a restart logs everyone out.

`Sessions` takes its clock and its randomness as arguments, so that the tests need no sleep.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from iotex_ops.dashboard.errors import DashboardError

COOKIE = "iotex_dashboard_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SESSION_TTL_S = 8 * 3600.0  # an on-call shift
MIN_TOKEN_CHARS = 16  # a guessable token would make the login a formality
MAX_SESSIONS = 1000  # memory bound: a client that logs in in a loop pushes out the oldest sessions, not the RAM


def read_token_file(path: Path) -> str:
    """The login token from `path`: refused (saying why) unless a regular file of at least MIN_TOKEN_CHARS
    characters that neither its group nor others may read or write."""
    try:
        st = path.stat()
    except OSError as exc:
        raise DashboardError(f"login token file {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise DashboardError(f"login token file {path} is not a regular file")
    if st.st_mode & 0o077:
        raise DashboardError(
            f"login token file {path} has mode {stat.S_IMODE(st.st_mode):04o}: others may read it; `chmod 600 {path}`"
        )
    token = path.read_text(encoding="utf-8", errors="replace").strip()
    if len(token) < MIN_TOKEN_CHARS:
        raise DashboardError(f"login token file {path} holds {len(token)} characters; at least {MIN_TOKEN_CHARS} are needed")
    return token


def write_token_file(path: Path) -> Path:
    """A new random login token in `path` (0600), unless one is there already (the lab's, `lab up`)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32) + "\n")
    return path


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_listen(listen: str) -> tuple[str, int]:
    """HOST:PORT (an IPv6 host in brackets) -> (host, port); port 0 picks a free one."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host:
        raise DashboardError(f"--listen must be HOST:PORT (e.g. 127.0.0.1:8470), not {listen!r}")
    try:
        p = int(port)
    except ValueError:
        raise DashboardError(f"--listen {listen!r}: the port must be a number") from None
    if not 0 <= p <= 65535:
        raise DashboardError(f"--listen {listen!r}: the port must be 0..65535")
    return host.strip("[]"), p


def check_bind(host: str, *, tls: bool, auth: bool) -> None:
    """Loopback binds freely. Any other address exposes the network's state (and, with a login, its actions)
    to whoever reaches it: only with TLS (the token and the cookie never travel in clear) and a login token."""
    if is_loopback(host):
        return
    missing = [what for what, ok in (("TLS (--tls-cert and --tls-key)", tls), ("a login (--token-file)", auth)) if not ok]
    if missing:
        raise DashboardError(
            f"refusing to listen on {host}, which is not a loopback address, without {' and '.join(missing)}: "
            "listen on 127.0.0.1 (and reach it through an SSH tunnel), or give them"
        )


@dataclass(frozen=True)
class Session:
    id: str
    user: str
    created: float
    expires: float


class Sessions:
    """Logged-in sessions and their CSRF tokens."""

    def __init__(
        self,
        token: str | None,
        *,
        ttl_s: float = SESSION_TTL_S,
        clock: Callable[[], float] = time.time,
        randbytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._token = token.encode() if token else None
        self._ttl = ttl_s
        self._clock = clock
        self._rand = randbytes
        self._key = randbytes(32)  # the CSRF HMAC key: this process's own, never written anywhere
        self._sessions: dict[str, Session] = {}

    def __repr__(self) -> str:
        return f"Sessions(login={'on' if self.enabled else 'off'}, sessions={len(self._sessions)})"

    @property
    def enabled(self) -> bool:
        """False: no token file was given; nobody can log in and every action is refused."""
        return self._token is not None

    def login(self, token: str, user: str) -> Session | None:
        """A new session if `token` is the login token (constant-time compare), else None."""
        if self._token is None or not hmac.compare_digest(token.strip().encode(), self._token):
            return None
        self._expire()
        while len(self._sessions) >= MAX_SESSIONS:
            self._sessions.pop(next(iter(self._sessions)))
        now = self._clock()
        name = "".join(c for c in user.strip() if c.isprintable())[:64] or "anonymous"
        s = Session(self._rand(32).hex(), name, now, now + self._ttl)
        self._sessions[s.id] = s
        return s

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        s = self._sessions.get(session_id)
        if s is None:
            return None
        if s.expires <= self._clock():
            self._sessions.pop(session_id, None)
            return None
        return s

    def logout(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(session_id, None)

    def csrf(self, session: Session) -> str:
        return hmac.new(self._key, b"csrf:" + session.id.encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, session: Session, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(self.csrf(session), str(given))

    def _expire(self) -> None:
        now = self._clock()
        for sid in [k for k, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[sid]
