"""Prometheus as the toolkit reads it: one access point for instant and range queries and readiness.

Every caller (the runbook context, the monitoring stack, the status table, the run report) builds a
`Prometheus` here instead of its own `PrometheusConnect`, and gets one error type, `PrometheusError`, whose
message names the server, the query and the underlying failure (`ConnectionError: ...`, `HTTP Status Code
400 ...`), and which says whether the server was unreachable (so that a caller with several queries stops
at the first). Queries may run from several threads at once: the HTTP session is made once, under a lock.
"""

from __future__ import annotations

import contextlib
import threading
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from iotex_ops.errors import OpsError

if TYPE_CHECKING:
    from prometheus_api_client import PrometheusConnect


class PrometheusError(OpsError):
    """Prometheus could not be reached, or answered a query with an error."""

    def __init__(
        self, message: str, *, url: str = "", query: str | None = None, reason: str = "", unreachable: bool = False
    ) -> None:
        super().__init__(message)
        self.url = url
        self.query = query
        self.reason = reason  # the underlying failure, "<ExceptionType>: <its message>"
        self.unreachable = unreachable  # nothing answered (connection refused, timeout): further queries would wait too


class Prometheus:
    """One Prometheus server. `timeout`: seconds per HTTP request (None: no limit, the client library's
    default); `retries`: how often to retry a 502/503/504 or a failed connection, without back-off (None:
    prometheus-api-client's default, three times with back-off)."""

    def __init__(self, url: str, *, timeout: float | None = None, retries: int | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self._lock = threading.Lock()
        self._conn: PrometheusConnect | None = None

    def __repr__(self) -> str:
        return f"Prometheus({self.url!r})"

    def _client(self) -> PrometheusConnect:
        with self._lock:
            if self._conn is None:
                try:
                    self._conn = _connect(self.url, self.timeout, self.retries)
                except Exception as exc:  # a URL the client refuses
                    raise self._error("connecting", None, exc) from None
            return self._conn

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query: the result vector's rows ({"metric": {...}, "value": [t, "v"]})."""
        conn = self._client()
        try:
            return list(conn.custom_query(promql))
        except Exception as exc:  # requests' errors and the client's own (bare Exception subclasses)
            raise self._error("query", promql, exc) from None

    def query_range(self, promql: str, start: float, end: float, step: float | str = 1.0) -> list[dict[str, Any]]:
        """A range query over unix times [start, end]: the result matrix's series ({"metric", "values"})."""
        conn = self._client()
        try:
            return list(
                conn.custom_query_range(
                    promql,
                    start_time=datetime.fromtimestamp(start, UTC),
                    end_time=datetime.fromtimestamp(end, UTC),
                    step=step if isinstance(step, str) else f"{step:g}s",
                )
            )
        except Exception as exc:
            raise self._error("range query", promql, exc) from None

    def ready(self, timeout: float = 2.0) -> bool:
        return ready(self.url, timeout)

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def __enter__(self) -> Prometheus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _error(self, what: str, promql: str | None, exc: BaseException) -> PrometheusError:
        reason = f"{type(exc).__name__}: {exc}"
        subject = f"{what} {promql!r}" if promql is not None else what
        return PrometheusError(
            f"Prometheus at {self.url}: {subject} failed: {reason}",
            url=self.url,
            query=promql,
            reason=reason,
            unreachable=_unreachable(exc),
        )


def _connect(url: str, timeout: float | None, retries: int | None) -> PrometheusConnect:
    from prometheus_api_client import PrometheusConnect

    kwargs: dict[str, Any] = {}
    if timeout is not None:
        kwargs["timeout"] = timeout
    if retries is not None:
        from urllib3.util.retry import Retry

        kwargs["retry"] = Retry(total=retries, backoff_factor=0, status_forcelist=(502, 503, 504))
    try:
        return PrometheusConnect(url=url, disable_ssl=True, **kwargs)
    except TypeError:  # an older client without these arguments
        return PrometheusConnect(url=url, disable_ssl=True)


def _unreachable(exc: BaseException) -> bool:
    try:
        import requests
    except ImportError:  # pragma: no cover - a dependency of the client
        return False
    return isinstance(exc, requests.ConnectionError | requests.Timeout)


def ready(url: str, timeout: float = 2.0) -> bool:
    """Whether the server at `url` answers its /-/ready with 200 (Prometheus and Alertmanager both serve it)."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/-/ready", timeout=timeout) as resp:  # noqa: S310 - the operator's or the lab's server
            return 200 <= int(resp.status) < 300
    except (OSError, urllib.error.URLError, ValueError):
        return False
