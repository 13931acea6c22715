"""Serving the dashboard: the bind checks, TLS, the ready line, SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from iotex_ops.dashboard import READY, auth
from iotex_ops.dashboard.app import make_app
from iotex_ops.dashboard.errors import DashboardError
from iotex_ops.dashboard.sources import Sources


@dataclass(frozen=True)
class Options:
    inventory: Path
    state_dir: Path
    listen: str = "127.0.0.1:8470"
    alertd_state_dir: Path | None = None
    scheduler_state_dir: Path | None = None
    token_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None


def _tls(opts: Options) -> ssl.SSLContext | None:
    if (opts.tls_cert is None) != (opts.tls_key is None):
        raise DashboardError("give both --tls-cert and --tls-key, or neither")
    if opts.tls_cert is None or opts.tls_key is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(opts.tls_cert, opts.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise DashboardError(f"cannot load the TLS certificate {opts.tls_cert} and key {opts.tls_key}: {exc}") from None
    return ctx


def prepare(opts: Options) -> tuple[str, int, ssl.SSLContext | None, auth.Sessions]:
    """Everything that can refuse to start, checked before anything is read or bound."""
    host, port = auth.parse_listen(opts.listen)
    tls = _tls(opts)
    token = auth.read_token_file(opts.token_file) if opts.token_file is not None else None
    auth.check_bind(host, tls=tls is not None, auth=token is not None)
    return host, port, tls, auth.Sessions(token)


async def _serve(opts: Options, say: Callable[[str], None]) -> None:
    host, port, tls, sessions = prepare(opts)
    sources = Sources.open(opts.inventory, state_dir=opts.state_dir, alertd_state_dir=opts.alertd_state_dir,
                           scheduler_state_dir=opts.scheduler_state_dir)  # fmt: skip
    app = make_app(sources, sessions, secure=tls is not None)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=tls, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            raise DashboardError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        bound = runner.addresses[0]
        shown = f"[{bound[0]}]" if ":" in str(bound[0]) else str(bound[0])
        url = f"{'https' if tls else 'http'}://{shown}:{bound[1]}"
        say(
            f"{READY} {url} (network {sources.network}; "
            + ("login on" if sessions.enabled else "read-only: no --token-file")
            + ")"
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
        sources.close()


def serve(opts: Options, say: Callable[[str], None] = print) -> None:
    asyncio.run(_serve(opts, say))
