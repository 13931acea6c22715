"""The node service: drives consensus, the chain, peer-to-peer gossip and sync, the API and admin.

Single asyncio event loop; the consensus core and the chain are synchronous and deterministic, and
this module is the only place where time, sockets and timers meet them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import os
import signal
import socket
import sqlite3
import time
import types
from collections import OrderedDict
from collections.abc import Awaitable
from typing import Any

import orjson

from iotex_node import __version__, msgcheck, release
from iotex_node import actions as actions_mod
from iotex_node import block as blk
from iotex_node import consensus as cs
from iotex_node import execution as ex
from iotex_node import genesis as genesis_mod
from iotex_node.actions import Action, parse_amount, parse_uint
from iotex_node.chain import Chain, CommitInfo
from iotex_node.config import NodeConfig, read_secret_file, write_secret_file
from iotex_node.constants import SUPPORTED_PROTOCOLS
from iotex_node.controls import ActivationRefused, Controls, check_halt_height, halt_height_after
from iotex_node.crypto.keys import PrivateKey, recover_address
from iotex_node.diskguard import MIB, DiskGuard
from iotex_node.errors import (
    ConfigError,
    DiskFull,
    ExecutionError,
    InvalidBlock,
    InvalidInput,
    NodeError,
    Rejected,
    StorageError,
)
from iotex_node.mempool import DUPLICATE, NONCE_TAKEN, NONCE_TOO_LOW, MempoolLimits
from iotex_node.mempool_store import MempoolJournal
from iotex_node.metrics import Metrics
from iotex_node.p2p import Network, Peer, ProtocolViolation
from iotex_node.privval import Signed, SignLog, Verdict
from iotex_node.startup import Phases
from iotex_node.startup import load_key as load_key  # re-exported: tests and tools load a home's key
from iotex_node.store import Store
from iotex_node.sync import REQUEST_TIMEOUT, SYNC_BATCH, SYNC_GRACE, SyncState, grace_applies, network_height

log = logging.getLogger("iotex_node")

STATUS_EVERY = 1.0
DISK_CHECK_EVERY = 0.5
# At start the database gets SQLite's quick_check (every page read) when it is at most this big: a damaged
# file is refused by name instead of failing later, mid-consensus. Larger ones are read as they are used.
START_CHECK_MAX_BYTES = 256 * MIB
TX_FLUSH_EVERY = 0.02
# Consensus messages more than this many rounds ahead of ours are ignored (bounds what a peer can make us
# store); rounds advance together, so honest peers are never this far ahead at one height.
MAX_ROUNDS_AHEAD = 20
# A step's backstop timeout (see consensus.ScheduleTimeout) is this many times its normal timeout: long
# enough never to cut short a round that is gathering its votes, short enough that a round in which too
# few delegates were heard from ends by itself.
BACKSTOP_FACTOR = 4.0
# The holder claim (docs/node.md, "Hot standby"): a signing node tags the envelope of each consensus message it
# signs, and its status, with {"node": its P2P node id, "fence": its signing fence, "sig": the delegate key's
# signature of both}. Outside the signed payload (a vote is signed over the same bytes as before), ignored by
# peers of earlier releases, relayed with the message byte for byte.
HOLDER_CLAIM_DOMAIN = b"iotex-node/holder-claim/v1\x00"
MAX_CLAIMS_CACHED = 256
# The double-sign check after a silence (docs/node.md, "Hot standby"): a signing node that knows its key has
# another holder and heard nothing from any operator peer for ISOLATION_S (peers send status every second) was
# cut off. It then signs nothing until a height finalized by the others, once it is in step and at least
# WATCH_MIN_S after the silence ended, shows its key is not signing elsewhere; WATCH_MAX_S at the most.
ISOLATION_S = 2.5
WATCH_MIN_S = 2.0
WATCH_MAX_S = 10.0


def holder_claim_digest(chain_id: int, node_id: str, fence: int) -> bytes:
    """What a holder of a delegate key signs to say "node `node_id` signs with this key from `fence` on"."""
    return hashlib.sha256(
        HOLDER_CLAIM_DOMAIN + chain_id.to_bytes(8, "big") + fence.to_bytes(8, "big") + node_id.encode()
    ).digest()


class Node:
    def __init__(
        self,
        cfg: NodeConfig,
        key: PrivateKey,
        genesis: genesis_mod.Genesis,
        node_key: PrivateKey | None = None,
        phases: Phases | None = None,
    ) -> None:
        # Moments of this process's start-up (startup.py); in-process nodes (tests) count from here.
        self.phases = phases or Phases(since_process_start=False)
        self.cfg = cfg
        self.key = key  # the delegate (operator) key: signs proposals and endorsements
        # The P2P identity is a separate key, so a hot standby of a delegate is a distinct peer.
        self.node_key = node_key or load_node_key(cfg)
        self.genesis = genesis
        self.metrics = Metrics()
        manifest = release.current()
        # A release declares the protocols it runs; it can only run those this code implements.
        supported = tuple(p for p in manifest.protocols if p in SUPPORTED_PROTOCOLS)
        if supported != tuple(manifest.protocols):
            log.warning("release %s declares protocols %s; this code runs %s", manifest.version, manifest.protocols, supported)
        if cfg.mempool_min_fee is not None and cfg.mempool_min_fee < genesis.min_fee:
            raise ConfigError(
                f"mempool.min_fee {cfg.mempool_min_fee} is below the chain's minimum fee {genesis.min_fee} "
                "(genesis min_fee): a node can only raise it; remove it or set at least the genesis minimum"
            )
        self.store, self.chain = open_chain(cfg, genesis, supported)
        self.disk = DiskGuard(cfg.path(cfg.database).parent, cfg.min_free_disk_mb * MIB)
        self.journal = self._open_journal(cfg)
        self._durable_next: asyncio.Future[None] | None = None
        if self.journal is not None:
            self.chain.mempool.on_removed = self._on_mempool_removed
            j = self.journal
            self.metrics.watch_journal(lambda: (j.commits, j.rows, j.commit_seconds))
        if genesis.min_fee == 0:
            log.warning(
                "the genesis sets no min_fee: blocks of other nodes may include actions of any fee; this node "
                "admits fees of at least %d (mempool.min_fee)",
                self.chain.mempool.limits.min_fee,
            )
        self.net = Network(
            self.node_key,
            genesis.chain_id,
            genesis.hash,
            *_split(cfg.p2p_listen),
            cfg.peers,
            self._on_message,
            on_connect=self._on_connect,
            on_violation=lambda kind: self.metrics.p2p_violations.labels(kind).inc(),
            max_frame=cfg.max_frame_bytes,
            version=__version__,
            operator_key=key,  # proves to peers that this node runs delegate `key` (precedence when full)
            is_priority=self._is_delegate_peer,
            on_refused=lambda reason: self.metrics.p2p_refused.labels(reason).inc(),
            max_inbound=cfg.max_inbound_peers,
            max_handshakes=cfg.max_handshakes,
            max_handshakes_per_ip=cfg.max_handshakes_per_ip,
            max_inbound_per_ip=cfg.max_inbound_per_ip,
            handshake_timeout=cfg.handshake_timeout_s,
        )
        self._delegates_at: tuple[int, frozenset[str]] = (-1, frozenset())
        self.hc: cs.HeightConsensus | None = None
        self._timers: list[asyncio.TimerHandle] = []
        self._future: dict[int, list[tuple[Peer, dict[str, Any], bytes]]] = {}
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._rejected: OrderedDict[bytes, tuple[str, str]] = OrderedDict()
        self._tx_outbox: list[dict[str, Any]] = []
        # Our own signed consensus messages for the height being decided, re-sent while it is stuck so
        # that a peer that (re)connected late still hears them (gossip alone sends each message once).
        # They come from the sign log, so they survive a restart.
        self._own_msgs: list[bytes] = []
        self._height_started = time.monotonic()
        self._sync = SyncState()
        self._behind_since: float | None = None
        # Whether this node has decided a height by consensus since it started. Until it has, a peer one
        # block ahead is synced from at once (sync.grace_applies): a node that just (re)started heard little
        # or nothing of the height its peers finalized meanwhile.
        self._joined = False
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopped = asyncio.Event()
        self.started_at = time.time()
        self.api_url = ""
        self.fatal: str | None = None
        try:
            self.signlog = SignLog(
                lambda: self.store.get_meta("privval"),
                lambda doc: self.store.set_meta("privval", doc),
                on_record=lambda doc, e: self.store.record_signed(
                    doc, e.height, e.round, e.step, e.value, int(time.time() * 1000)
                ),
            )
        except ValueError as exc:
            raise StorageError(f"{cfg.path(cfg.database)}: {exc}") from None
        self._refused: set[tuple[str, int, int]] = set()
        self.upgrade_required: str | None = None
        self.controls = Controls.from_json(self.store.get_meta("controls"))
        if cfg.halt_height:
            # A halt height in the config wins at start: "restart with a new halt height".
            self.controls.halt_height = cfg.halt_height
        if self.store.get_meta("controls") is None and cfg.standby:
            self.controls.standby = True
        self._save_controls()
        self._other_signer: tuple[float, int, int] | None = None  # (when, height, round)
        self._claim: tuple[int, dict[str, Any]] | None = None  # (fence, our holder claim for it)
        self._claims: OrderedDict[tuple[str, int, str], bool] = OrderedDict()  # claims checked: holds our key?
        self._older_holders: set[tuple[str, int]] = set()  # older holders heard while we sign (logged once)
        self._twin_peer = False  # a peer proved our delegate key in its handshake (a standby of ours) since start
        self._last_heard: float | None = None  # when an operator peer last sent us anything
        self._watch: tuple[float, float] | None = None  # the double-sign check: (not before, at the latest)
        self.role_changes: list[tuple[float, str, str]] = []  # (unix time, new role, why) since the start
        self._halt_logged = False
        self._update_chain_metrics()
        if self.disk.check():  # started on a volume already too full: writes paused from the start
            log.error("%s", self.disk.paused)
        self._update_disk_metrics()

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Join the network first, then serve the API: a restarted delegate dials its peers, asks them for the
        blocks it missed and takes part in consensus while the API (aiohttp, the largest import) loads in a
        thread. The API's port is bound before anything else, so a node that cannot serve never joins."""
        loop = asyncio.get_running_loop()
        api_sock = _bind_tcp(*_split(self.cfg.api_listen))
        try:
            await self.net.start()
        except BaseException:
            api_sock.close()
            raise
        self.phases.mark("p2p")
        self._tasks = [
            loop.create_task(self._status_loop()),
            loop.create_task(self._sync_loop()),
            loop.create_task(self._tx_flush_loop()),
            loop.create_task(self._disk_loop()),
        ]
        self._start_height()
        self.phases.mark("consensus")
        # The journaled mempool is re-admitted beside the API's import (off consensus's path), and before the
        # API serves, so that a client's next nonce follows what it was told was accepted before the restart.
        reload = loop.create_task(self._reload_mempool())
        try:
            # Imported beside the event loop, which meanwhile handshakes with peers and syncs; they import
            # this module's types, so they cannot be imported at its top anyway.
            api, admin = await asyncio.to_thread(_import_interfaces)
            await reload
            self.api_runner, self.api_url = await api.start(self, api_sock)
            try:
                self.admin_runner = await admin.start(self)
            except BaseException:
                await self.api_runner.cleanup()
                raise
        except BaseException:
            api_sock.close()
            await self._stop_network()  # a node that cannot serve does not stay half-started on the network
            raise
        self.phases.mark("api")
        self.metrics.set_startup(self.phases.marks)
        log.info(
            "node %s started: address=%s height=%d p2p=%s api=%s version=%s",
            self.cfg.name, self.key.address, self.chain.height, self.net.listen, self.api_url, __version__,
        )  # fmt: skip
        log.info("start-up (seconds since the process was created): %s", self.phases.line())

    async def _stop_network(self) -> None:
        for t in self._timers:
            t.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.net.stop()

    async def stop(self) -> None:
        await self._stop_network()
        await self.api_runner.cleanup()
        await self.admin_runner.cleanup()
        if self.journal is not None:
            self.journal.stop()  # writes what is queued (the process ends next: no WAL checkpoint)
        self.store.close()
        self._stopped.set()

    async def run_until_signalled(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        # Before start: a SIGTERM while starting (a service manager that gave up waiting) still stops cleanly.
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        self._stop_event = stop
        await self.start()
        await stop.wait()
        t = time.monotonic()
        log.info("node %s stopping", self.cfg.name)
        await self.stop()
        log.info("node %s stopped in %.3f s", self.cfg.name, time.monotonic() - t)

    def _die(self, reason: str) -> None:
        """A fault the node must not continue past (storage failure): stop rather than risk the chain."""
        log.error("fatal: %s", reason)
        self.fatal = reason
        ev = getattr(self, "_stop_event", None)
        if ev is not None:
            ev.set()

    def _startup_moment(self, name: str, what: str) -> None:
        """Log and export, once per process, a moment of getting back to work after a start (startup.py)."""
        t = self.phases.once(name)
        if t is not None:
            log.info("%s: %.3f s after the process was created", what, t)
            self.metrics.set_startup({name: t})

    # --- the mempool's journal (mempool_store.py) ---------------------------------------------------

    def _open_journal(self, cfg: NodeConfig) -> MempoolJournal | None:
        if cfg.mempool_durability == "off":
            return None
        path = cfg.path(cfg.mempool_journal)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return MempoolJournal(path, cfg.mempool_durability)
        except (OSError, sqlite3.Error) as exc:
            log.error("mempool journal %s cannot be used: %s; accepted actions are NOT kept across restarts", path, exc)
            return None

    def _on_mempool_removed(self, final: list[bytes], displaced: list[tuple[Action, str, str]]) -> None:
        j = self.journal
        assert j is not None
        j.remove(final)
        for a, code, reason in displaced:
            self._note_dropped(a.hash, code, reason)

    def _note_dropped(self, h: bytes, code: str, reason: str) -> None:
        """An action accepted once that will never be final: its status says why, also after a restart."""
        self._remember_rejected(h, code, reason)
        if self.journal is not None:
            self.journal.drop(h, code, reason)

    def _remember_rejected(self, h: bytes, code: str, reason: str) -> None:
        self._rejected[h] = (code, reason)
        if len(self._rejected) > 100_000:
            self._rejected.popitem(last=False)

    def _journal_add(self, action: Action, wire: dict[str, Any]) -> None:
        if self.journal is not None:
            self.journal.add(action.hash, action.sender, action.nonce, orjson.dumps(wire))

    def durable(self) -> Awaitable[None] | None:
        """Done once every action admitted so far is in the journal (None: no journal, nothing to wait for).
        The submissions of one turn of the event loop share one barrier (one wake-up from the writer thread)."""
        if self.journal is None:
            return None
        if self._durable_next is None:
            loop = asyncio.get_running_loop()
            self._durable_next = loop.create_future()
            loop.call_soon(self._send_barrier, loop, self._durable_next)
        return asyncio.shield(self._durable_next)  # a client that goes away cancels only its own wait

    def _send_barrier(self, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[None]) -> None:
        self._durable_next = None
        assert self.journal is not None

        def settle(done: concurrent.futures.Future[None]) -> None:
            if fut.done():
                return
            exc = done.exception()
            if exc is None:
                fut.set_result(None)
            else:
                fut.set_exception(exc)

        self.journal.barrier().add_done_callback(lambda done: loop.call_soon_threadsafe(settle, done))

    async def _reload_mempool(self) -> None:
        """Re-admit what the journal holds; drop (with the reason, for GET /v1/actions/{hash}) what no longer
        can be; re-gossip what was restored, for peers that lost theirs. Never stops the start."""
        j = self.journal
        if j is None:
            return
        try:
            await self._reload_from(j)
        except Exception:  # a bug here must not keep the node from serving: it only loses what was not restored
            log.exception("mempool journal %s: re-admitting it failed; the node goes on", j.path)

    async def _reload_from(self, j: MempoolJournal) -> None:
        t0 = time.monotonic()
        loaded = await asyncio.to_thread(j.load)
        for h, code, reason in loaded.dropped:
            self._remember_rejected(h, code, reason)
        restored = final = dropped = 0
        for i, (h, raw) in enumerate(loaded.pending):
            if i % 256 == 255:
                await asyncio.sleep(0)  # consensus and peers go on between chunks
            try:
                wire = orjson.loads(raw)
                # The node wrote the row after checking the signature; the hash check catches a damaged row.
                action = actions_mod.parse(wire, verify=False)
                if action.hash != h:
                    raise ValueError("its content does not match its stored hash")
            except (ValueError, NodeError) as exc:
                self._note_dropped(h, "corrupt", f"its mempool journal entry is unreadable: {exc}")
                dropped += 1
                continue
            if self.chain.receipt(h) is not None:
                j.remove([h])  # final before the restart; its removal had not been written yet
                final += 1
                continue
            try:
                self.chain.submit(action)
            except Rejected as exc:
                if exc.code == DUPLICATE:
                    continue  # gossip brought it back first
                code = NONCE_TAKEN if exc.code == NONCE_TOO_LOW else exc.code
                self._note_dropped(h, code, f"not restored to the mempool at the node's start: {exc.reason}")
                dropped += 1
                continue
            self._tx_outbox.append(wire)
            restored += 1
        if loaded.pending or loaded.problem:
            log.info(
                "mempool journal: %d action(s) restored, %d already final, %d dropped (why: GET /v1/actions/HASH) in %.3f s",
                restored, final, dropped, time.monotonic() - t0,
            )  # fmt: skip
        self.metrics.mempool_size.set(len(self.chain.mempool))

    # --- operator controls -------------------------------------------------------------------------

    @property
    def participating(self) -> bool:
        """Whether this node signs: not paused, not a standby, not halted, on a protocol it runs."""
        return not (
            self.controls.paused or self.controls.standby or self._halted_reason() or self.upgrade_required or self.disk.paused
        )

    @property
    def writes_paused(self) -> str | None:
        """Why the node writes nothing now (its volume is full or below min_free_disk_mb), None if it writes."""
        return self.disk.paused

    def _disk_check(self) -> bool:
        """Read the volume's free space; pause or resume writes on a change. True while writes are paused."""
        if self.disk.check():
            self._writes_changed()
        return self.disk.paused is not None

    def _disk_full(self, exc: DiskFull) -> None:
        """A write met a full volume (it was rolled back whole): pause writes until space returns."""
        if self.disk.full(str(exc)):
            self._writes_changed()

    def _writes_changed(self) -> None:
        self._update_disk_metrics()
        if self.disk.paused is not None:
            # Not signing, committing, syncing or admitting until space returns; the database is as the last
            # commit left it. Consensus stops here and starts again at the tip on resume.
            log.error("%s", self.disk.paused)
            for t in self._timers:
                t.cancel()
            self._timers.clear()
            self.hc = None
        else:
            free = (self.disk.last_free or 0) / MIB
            log.warning("writes resumed: %.1f MiB free on the volume of %s; catching up with the network", free, self.disk.path)
            if getattr(self, "_tasks", None):  # running: take up consensus at the tip and sync the rest
                self._start_height()
                self._maybe_sync()

    def _update_disk_metrics(self) -> None:
        self.metrics.writes_paused.set(1 if self.disk.paused else 0)
        if self.disk.last_free is not None:
            self.metrics.disk_free.set(self.disk.last_free)

    def _halted_reason(self) -> str | None:
        at = self.controls.halted_at(self.chain.height)
        return f"halted at {at}: scheduled" if at is not None else None

    def halt_reason(self) -> str | None:
        return self._halted_reason() or self.upgrade_required

    def _save_controls(self) -> None:
        self.store.set_meta("controls", self.controls.to_json())
        self._update_control_metrics()

    def _update_control_metrics(self) -> None:
        m = self.metrics
        m.paused.set(1 if self.controls.paused else 0)
        m.standby.set(1 if self.controls.standby else 0)
        m.role.labels("primary").set(0 if self.controls.standby else 1)
        m.role.labels("standby").set(1 if self.controls.standby else 0)
        m.sign_fence.set(self.signlog.floor)
        m.halted.set(1 if self.halt_reason() else 0)
        m.halt_height.set(self.controls.halt_height or 0)
        m.upgrade_required.set(1 if self.upgrade_required else 0)

    def pause(self) -> None:
        self.controls.paused = True
        self._save_controls()
        log.warning("paused by the operator: not proposing or endorsing (still syncing and serving)")

    def resume(self) -> None:
        was = self.controls.paused
        self.controls.paused = False
        self._save_controls()
        if was:
            log.warning("resumed by the operator")
            self._restart_consensus()

    def set_halt_height(self, height: object = None, *, after: object = None) -> int:
        """Halt at `height`, or `after` blocks above the finalized height (resolved here, where the chain
        cannot move between reading the height and setting the halt)."""
        if after is not None:
            h = halt_height_after(after, self.chain.height)
        else:
            h = check_halt_height(height, self.chain.height)
        self.controls.halt_height = h
        self._halt_logged = False
        self._save_controls()
        log.warning("halt scheduled: will finalize up to and including %d, then stop participating", h)
        return h

    def clear_halt(self) -> None:
        was_halted = self._halted_reason() is not None
        self.controls.halt_height = None
        self._halt_logged = False
        self._save_controls()
        log.warning("halt height cleared")
        if was_halted:
            self._restart_consensus()

    def to_standby(self, reason: str) -> None:
        """Stop signing (demotion): proposals and endorsements stop at once; the node keeps following."""
        was = self.controls.standby
        self.controls.standby = True
        self._save_controls()
        log.warning("standby: %s", reason)
        if not was:
            self.role_changes.append((time.time(), "standby", reason))

    def promotion_fence(self) -> int:
        """The lowest height a promotion lets this node sign at: above every height its key's other holder
        can have signed. That holder signed at most at the height it was seen signing (gossip, or a
        block's certificate) and, being unable to finalize alone, at most one height above the network's
        tip as this node knows it; the node's own last signature bounds it too (docs/node.md, "Hot standby")."""
        # the tip as this node knows it, or as the delegates claim it (the lower median: a lying minority cannot
        # move it), whichever is higher: a standby a block behind its peers must not count from its own tip
        fence = max(self.chain.height, self.network_height() or 0) + 2
        seen = self.signlog.seen
        if seen is not None:
            fence = max(fence, seen[0] + 1)
        last = self.signlog.last
        if last is not None:
            fence = max(fence, last.height + 1)
        return fence

    def activate(self, force: bool = False) -> dict[str, Any] | None:
        """Promotion: leave standby and start signing, unless this delegate key is signing somewhere else.

        `force` skips only the check that the key was not heard signing elsewhere lately; the fence (no
        signature at any height its other holder can have signed) holds whatever the operator says."""
        seen = self._other_signer
        window = self.cfg.standby_guard_seconds
        if seen is not None and time.monotonic() - seen[0] < window and not force:
            raise ActivationRefused(
                f"another node signed with delegate key {self.key.address} {time.monotonic() - seen[0]:.1f}s ago "
                f"(height {seen[1]} round {seen[2]}): stop it first, or wait {window:.0f}s after it stopped"
            )
        was = self.controls.standby
        if not was:
            return None
        try:
            fence = self.signlog.fence(self.promotion_fence())
        except StorageError as exc:
            raise ActivationRefused(f"cannot record the signing fence, not promoting: {exc}") from None
        self.controls.standby = False
        self._save_controls()
        self.role_changes.append((time.time(), "primary", f"promoted; signs from height {fence}"))
        log.warning("activated: signing as delegate %s from height %d on (the fence)", self.key.address, fence)
        self._broadcast_status()  # the holder claim: an older holder still signing hears it before our first vote
        self._restart_consensus()
        return {"fence": fence}

    def schedule_protocol(self, doc: dict[str, Any]) -> dict[str, Any]:
        unknown = set(doc) - {"version", "height", "block_reward"}
        if unknown:
            raise InvalidInput(f"unknown field(s): {', '.join(sorted(unknown))}")
        version = parse_uint(doc.get("version"), "version", 1000)
        height = parse_uint(doc.get("height"), "height", 2**62)
        reward = parse_amount(doc["block_reward"], "block_reward", positive=False) if "block_reward" in doc else None
        self.chain.schedule_protocol(version, height, reward)
        supported = "" if version in self.chain.supported_protocols else " (this release does not run it: upgrade first)"
        log.warning("protocol %d scheduled at height %d%s", version, height, supported)
        self._update_info_metric()
        return {"version": version, "height": height}

    def _restart_consensus(self) -> None:
        """Take part again in the current height from its next round, keeping what we have heard."""
        hc = self.hc
        if hc is None or hc.height != self.chain.height + 1:
            self._start_height()
            return
        self._handle(hc.advance_round())

    def _holder_claim(self) -> dict[str, Any]:
        """This node's claim to sign with its delegate key from its fence on (signed once per fence)."""
        fence = self.signlog.floor
        if self._claim is None or self._claim[0] != fence:
            node = self.node_key.address
            sig = self.key.sign(holder_claim_digest(self.genesis.chain_id, node, fence))
            self._claim = (fence, {"node": node, "fence": fence, "sig": sig.hex()})
        return self._claim[1]

    def _claim_of_our_key(self, msg: dict[str, Any]) -> tuple[str, int] | None:
        """The holder claim in `msg` as (node id, fence) when our delegate key signed it, else None (no claim,
        a malformed one, or another key's: a claim is only a tag, never a reason to drop a peer)."""
        c = msg.get("holder")
        if not isinstance(c, dict):
            return None
        node, fence, sig = c.get("node"), c.get("fence"), c.get("sig")
        if not (isinstance(node, str) and 0 < len(node) <= 128 and type(fence) is int and 0 <= fence < 2**62):
            return None
        if not isinstance(sig, str) or len(sig) != 130:
            return None
        key = (node, fence, sig)
        ok = self._claims.get(key)
        if ok is None:
            try:
                digest = holder_claim_digest(self.genesis.chain_id, node, fence)
                ok = recover_address(bytes.fromhex(sig), digest) == self.key.address
            except ValueError:
                ok = False
            self._claims[key] = ok
            if len(self._claims) > MAX_CLAIMS_CACHED:
                self._claims.popitem(last=False)
        return (node, fence) if ok else None

    def _other_holder(self, node: str, fence: int, what: str, where: str) -> None:
        """Another node (`node`) holds our delegate key and signs from `fence` on. The fences order the
        holders: each promotion fences above everything the previous holder can have signed, so the one with
        the higher fence is the later promotion. A signing node that hears of a later (or, unable to tell,
        an equal) fence stops at once, before signing another height; the later one keeps signing."""
        own = self.signlog.floor
        if fence >= own:
            if self.participating:
                log.error(
                    "another node (%s) signs with delegate key %s from height %d, at or above our fence %d "
                    "(%s, from %s): stopping signing",
                    node, self.key.address, fence, own, what, where,
                )  # fmt: skip
                self.to_standby(f"another holder of {self.key.address} ({node}) signs from height {fence} ({where})")
        elif self.participating and (node, fence) not in self._older_holders:
            self._older_holders.add((node, fence))
            log.warning(
                "an older holder of delegate key %s (%s, fence %d below ours %d) is signing (%s, from %s): "
                "it stops when it hears our claim; this node keeps signing",
                self.key.address, node, fence, own, what, where,
            )  # fmt: skip

    def _note_claim(self, peer: Peer, msg: dict[str, Any]) -> None:
        """A status from a peer that proved our delegate key in its handshake: a signing twin's carries its claim."""
        claim = self._claim_of_our_key(msg)
        if claim is None or claim[0] == self.node_key.address:
            return
        self._other_signer = (time.monotonic(), peer.height + 1, 0)  # it signs at the height after its tip
        self._other_holder(claim[0], claim[1], "its status", f"peer {peer.node_id}")

    def _claimed_by_other_holder(self, kind: str, h: int, r: object, msg: dict[str, Any], signer: object) -> bool:
        """A proposal or vote of our delegate key carrying another holder's claim: handled at once, at whatever
        height it is (one we decided, or one we have not reached: a node catching up hears its twin's messages
        before it can sign those heights itself). The claim's own signature is our key's, so it is checked
        before the message's. True when it was another holder's."""
        if signer != self.key.address or "holder" not in msg:
            return False
        claim = self._claim_of_our_key(msg)
        if claim is None or claim[0] == self.node_key.address:
            return False
        rr = r if type(r) is int else 0
        self._note_foreign(h, rr)
        self._other_holder(claim[0], claim[1], f"{msg.get('type') or kind} at {h}/{rr}", "gossip")
        return True

    def _note_own_key(self, kind: str, h: int, r: int, block_hash: bytes | None, claimed: bool = False) -> bool:
        """A consensus message signed with our delegate key arrived from the network. True if it is foreign.

        One carrying another holder's claim (`claimed`, handled by `_claimed_by_other_holder`) is foreign
        whatever it says: with deterministic signatures two holders voting for the same block sign the very
        same vote, which without the claim this node cannot tell from its own relayed back. Without a claim (a
        holder running an earlier release), only a message that differs from ours shows."""
        if claimed:
            return True
        if self.hc is not None and h < self.hc.height:
            return False  # an old message of ours still travelling; a second signer shows at live heights
        hx = block_hash.hex() if block_hash else ""
        if self.signlog.signed_value(kind, h, r) == hx:
            return False  # something we signed (perhaps before a restart), relayed back to us
        self._foreign_signature(kind, h, r, "gossip")
        return True

    def _twin_possible(self) -> bool:
        """Whether this node knows its key has another holder: a standby of ours connected since the start, or
        the signing record shows one (a fence: it was promoted; a signature of its key seen elsewhere)."""
        return self._twin_peer or self.signlog.floor > 0 or self.signlog.seen is not None or self._other_signer is not None

    def _heard(self, peer: Peer) -> None:
        """A message from an operator peer. After a silence of ISOLATION_S (cut off: peers send status every
        second), a signing node that may have a twin holds its signatures: the double-sign check."""
        now = time.monotonic()
        last, self._last_heard = self._last_heard, now
        if last is None or now - last <= ISOLATION_S or self._watch is not None:
            return
        if self.participating and self._twin_possible():
            self._watch = (now + WATCH_MIN_S, now + WATCH_MAX_S)
            log.warning(
                "heard no peer for %.1f s (cut off?): signing nothing until a height finalized by the others shows "
                "delegate key %s is not signing elsewhere (double-sign check, at most %.0f s)",
                now - last, self.key.address, WATCH_MAX_S,
            )  # fmt: skip

    def _watch_progress(self, height: int) -> None:
        """A height was finalized (its certificate checked): the double-sign check ends once one that this node
        did not sign was finalized without its key, with the node in step and the check's minimum time past."""
        w = self._watch
        if w is None:
            return
        if not self.participating:  # demoted meanwhile: the check found a twin, or the operator stepped in
            self._watch = None
            return
        last = self.signlog.last
        if (last is not None and last.height >= height) or time.monotonic() < w[0] or not self.is_synced():
            return
        self._watch = None
        log.warning(
            "double-sign check passed: height %d was finalized without delegate key %s; signing again", height, self.key.address
        )

    def _note_foreign(self, h: int, r: int) -> None:
        self._other_signer = (time.monotonic(), h, r)
        self.metrics.other_signer.inc()
        self.signlog.note_seen(h, r)
        self.metrics.seen_signed.set(self.signlog.seen[0] if self.signlog.seen else 0)

    def _foreign_signature(self, kind: str, h: int, r: int, where: str) -> None:
        """Another holder of our delegate key signed at h/r. Below our fence it is the past of the node we
        took over from (a late message, or a certificate of a height before our promotion): noted. At or
        above it, two holders sign at live heights: this one stops signing (safety first, as Tendermint's
        double-sign check does) and the operator decides which one signs."""
        self._note_foreign(h, r)
        if self.participating and h >= self.signlog.floor:
            log.error(
                "another node is signing with delegate key %s (%s at %d/%d, from %s): stopping signing",
                self.key.address, kind, h, r, where,
            )  # fmt: skip
            self.to_standby(f"another signer of {self.key.address} detected at height {h} ({where})")

    def _check_certificate(self, height: int, cert: blk.Certificate | None) -> None:
        """A finalized block's certificate carrying our key's precommit that this node did not sign: another
        holder of the key signed it (what a standby learns from the chain, and what a primary that comes back
        after being replaced learns while it catches up). A node without signing records cannot tell."""
        if cert is None or (not self.controls.standby and self.signlog.last is None and self.signlog.floor == 0):
            return
        if any(v == self.key.address for v, _ in cert.signatures) and self.signlog.own("precommit", height, cert.round) is False:
            self._foreign_signature("precommit", height, cert.round, "a block's certificate")

    # --- consensus driving -------------------------------------------------------------------------

    def _start_height(self) -> None:
        for t in self._timers:
            t.cancel()
        self._timers.clear()
        h = self.chain.height + 1
        own = self.signlog.at(h)
        self._own_msgs = [orjson.dumps(m.msg) for m in own]
        self._refused.clear()
        self._height_started = time.monotonic()
        self._update_control_metrics()
        if self.disk.paused is not None:
            self.hc = None
            return
        if self._halted_reason() is not None:
            self.hc = None
            if not self._halt_logged:
                log.warning("%s; not participating until restarted or cleared", self._halted_reason())
                self._halt_logged = True
            return
        try:
            self.chain.protocol_check(h)
        except NodeError as exc:
            self.hc = None
            self.upgrade_required = str(exc)
            log.error("%s: this release supports protocols %s", exc, list(self.chain.supported_protocols))
            self._update_control_metrics()
            return
        delegates = tuple(self.chain.delegates_for(h))
        hc = cs.HeightConsensus(h, delegates, self.key.address)
        saved = self.store.get_meta("lock")
        if saved and saved.get("height") == h:
            lock = cs.LockState(h, saved["round"], saved["locked_round"], None, saved["valid_round"], None)
            try:
                if saved.get("locked_block"):
                    lock.locked_block = self.chain.decode_block(saved["locked_block"])
                if saved.get("valid_block"):
                    lock.valid_block = self.chain.decode_block(saved["valid_block"])
                hc.restore(lock)
            except InvalidBlock as exc:
                log.warning("ignoring unreadable saved lock for height %d: %s", h, exc)
        point = self.signlog.resume_point(h)
        if point is not None:
            # We signed at this height before a restart: continue from that round and step, with our
            # own messages counted and re-sent, instead of going silent (see privval.py).
            hc.resume(*point)
            if own:
                log.info("resuming height %d at round %d after %s; re-sending %d signed message(s)", h, *point, len(own))
        self.hc = hc
        self.metrics.consensus_height.set(h)
        self.metrics.consensus_round.set(hc.round)
        is_del = self.key.address in delegates
        self.metrics.is_delegate.set(1 if is_del else 0)
        effects = hc.start()
        effects += self._replay_own(hc, own)
        self._handle(effects)
        for raw in self._own_msgs:
            self.net.broadcast(raw)
        for peer, msg, raw in self._future.pop(h, []):
            self._dispatch(peer, msg, raw)
        for old in [k for k in self._future if k < h]:
            del self._future[old]

    def _replay_own(self, hc: cs.HeightConsensus, own: list[Signed]) -> list[cs.Effect]:
        """Feed the messages we signed at this height (before a restart) back to the consensus machine."""
        effects: list[cs.Effect] = []
        for m in own:
            msg = m.msg
            if msg is None:
                continue
            try:
                if m.kind == "proposal":
                    block = self.chain.decode_block(msg["block"])
                    try:
                        self.chain.execute(block, check_clock=False)
                        valid = True
                    except InvalidBlock as exc:
                        log.warning("our own proposal %d/%d no longer executes: %s", m.height, m.round, exc)
                        valid = False
                    sig = bytes.fromhex(msg["signature"])
                    p = cs.Proposal(m.height, m.round, msg["pol_round"], block, self.key.address, sig)
                    effects += hc.on_proposal(p, valid)
                else:
                    vote = blk.Vote.from_wire({k: v for k, v in msg.items() if k != "t"}, self.genesis.chain_id)
                    effects += hc.on_vote(vote)
            except (InvalidBlock, KeyError, TypeError, ValueError) as exc:
                log.warning("cannot replay our own %s at %d/%d: %s", m.kind, m.height, m.round, exc)
        return effects

    def _handle(self, effects: list[cs.Effect]) -> None:
        queue = list(effects)
        while queue:
            e = queue.pop(0)
            hc = self.hc
            if hc is None:
                return
            if isinstance(e, cs.SendVote):
                if not self.participating or self._watch is not None or self._decided_elsewhere(e.height):
                    continue
                vote = self._sign_vote(e)
                if vote is not None:
                    queue.extend(hc.on_vote(vote))
            elif isinstance(e, cs.Propose):
                if self.participating and self._watch is None and not self._decided_elsewhere(e.height):
                    self._schedule_proposal(e)
            elif isinstance(e, cs.ScheduleTimeout):
                self._schedule_timeout(e)
            elif isinstance(e, cs.Decide):
                self._commit(e.block, e.certificate)
                return  # a new height has started; effects of the old one are void
            elif isinstance(e, cs.FetchBlock):
                self._broadcast({"t": "get_block", "height": e.height, "hash": e.block_hash.hex()})
            elif isinstance(e, cs.Equivocation):
                self.metrics.equivocations.labels(e.voter).inc()
                log.warning(
                    "equivocation: %s signed two %s messages at height %d round %d (%s vs %s)",
                    e.voter, e.kind, e.height, e.round, (e.first or b"").hex()[:16], (e.second or b"").hex()[:16],
                )  # fmt: skip
        if self.hc is not None:
            self.metrics.consensus_round.set(self.hc.round)

    def _check_sign(self, kind: str, h: int, r: int, block_hash: bytes | None) -> tuple[Verdict, Signed | None]:
        """Never sign two different things for one height, round and step, even across restarts."""
        verdict, found = self.signlog.check(kind, h, r, block_hash)
        if verdict is Verdict.CONFLICT and found is not None and (kind, h, r) not in self._refused:
            self._refused.add((kind, h, r))  # once per message: the machine may ask again on re-evaluation
            log.warning(
                "refusing to sign %s at %d/%d for %s: already signed %s at %d/%d for %s",
                kind, h, r, (block_hash or b"").hex()[:16] or "nil",
                found.kind, found.height, found.round, found.value[:16] or "nil",
            )  # fmt: skip
        elif verdict is Verdict.CONFLICT and (kind, h, r) not in self._refused:
            self._refused.add((kind, h, r))
            fence = self.signlog.floor
            log.warning("refusing to sign %s at %d/%d: below the signing fence %d (set by the promotion)", kind, h, r, fence)
        return verdict, found

    def _record_and_send(self, kind: str, h: int, r: int, block_hash: bytes | None, msg: dict[str, Any]) -> bytes | None:
        """Write the signed message to the sign log, then send it: never send what could not be recorded.
        The envelope carries our holder claim (outside what the signature covers), kept with the message."""
        msg = {**msg, "holder": self._holder_claim()}
        try:
            self.signlog.record(kind, h, r, block_hash, msg)
        except StorageError as exc:
            self._die(str(exc))
            return None
        raw = self._broadcast(msg)
        self._own_msgs.append(raw)
        return raw

    def _sign_vote(self, e: cs.SendVote) -> blk.Vote | None:
        verdict, found = self._check_sign(e.type, e.height, e.round, e.block_hash)
        if verdict is Verdict.CONFLICT:
            return None
        if verdict is Verdict.SIGNED and found is not None and found.msg is not None:
            # Signed before (a restart): the very same message goes out again; the machine has counted it.
            raw = orjson.dumps(found.msg)
            self._mark_seen(raw)
            self.net.broadcast(raw)
            try:
                return blk.Vote.from_wire({k: v for k, v in found.msg.items() if k != "t"}, self.genesis.chain_id)
            except InvalidBlock:
                return None
        if e.type == blk.PRECOMMIT and e.block_hash is not None and self.hc is not None:
            ls = self.hc.lock_state()
            try:
                self.store.set_meta(
                    "lock",
                    {
                        "height": ls.height,
                        "round": ls.round,
                        "locked_round": ls.locked_round,
                        "locked_block": ls.locked_block.to_wire(False) if ls.locked_block else None,
                        "valid_round": ls.valid_round,
                        "valid_block": ls.valid_block.to_wire(False) if ls.valid_block else None,
                    },
                )
            except StorageError as exc:
                self._die(str(exc))
                return None
        vote = blk.sign_vote(self.key, self.genesis.chain_id, e.type, e.height, e.round, e.block_hash)
        if self._record_and_send(e.type, e.height, e.round, e.block_hash, {"t": "vote", **vote.to_wire()}) is None:
            return None
        if e.type == blk.PRECOMMIT and e.block_hash is not None:
            self._startup_moment("endorsement", f"first endorsement since start: precommit at {e.height}/{e.round}")
        return vote

    def _schedule_proposal(self, e: cs.Propose) -> None:
        delay = 0.0
        if e.round == 0:
            due = self.chain.tip_timestamp_ms + self.genesis.block_interval_ms
            delay = max(0.0, due / 1000.0 - time.time())
        self._timers.append(asyncio.get_running_loop().call_later(delay, self._propose, e))

    def _propose(self, e: cs.Propose) -> None:
        hc = self.hc
        if hc is None or hc.height != e.height or hc.round != e.round or hc.step != cs.PROPOSE or hc.decided:
            return
        if not self.participating or self._watch is not None or self._decided_elsewhere(e.height):
            return
        stored = self.signlog.find("proposal", e.height, e.round)
        if stored is not None and stored.msg is not None:
            # We proposed in this round before a restart: send that proposal again, never a new one.
            raw = orjson.dumps(stored.msg)
            self._mark_seen(raw)
            self.net.broadcast(raw)
            return
        if e.block is not None:
            block = e.block
        else:
            try:
                block = self.chain.build_block(e.round, self.key.address, int(time.time() * 1000)).block
            except NodeError as exc:
                log.error("cannot build block %d: %s", e.height, exc)
                return
        if self._check_sign("proposal", e.height, e.round, block.hash)[0] is not Verdict.NEW:
            return
        sig = self.key.sign(blk.proposal_digest(self.genesis.chain_id, e.height, e.round, e.pol_round, block.hash))
        p = cs.Proposal(e.height, e.round, e.pol_round, block, self.key.address, sig)
        msg = {
            "t": "proposal",
            "height": e.height,
            "round": e.round,
            "pol_round": e.pol_round,
            "proposer": self.key.address,
            "signature": sig.hex(),
            "block": block.to_wire(with_certificate=False),
        }
        if self._record_and_send("proposal", e.height, e.round, block.hash, msg) is None:
            return
        self._handle(hc.on_proposal(p, True))

    def _timeout_delay(self, kind: str, h: int, r: int, backstop: bool = False) -> float:
        backoff = 1.0 + 0.5 * min(r, 20)
        if backstop:
            return BACKSTOP_FACTOR * max(self.cfg.propose_timeout_ms, self.cfg.vote_timeout_ms) / 1000.0 * backoff
        if kind == "propose":
            base = self.cfg.propose_timeout_ms / 1000.0 * backoff
            if r == 0:
                due = (self.chain.tip_timestamp_ms + self.genesis.block_interval_ms) / 1000.0
                return max(0.0, due - time.time()) + base
            return base
        return self.cfg.vote_timeout_ms / 1000.0 * backoff

    def _schedule_timeout(self, e: cs.ScheduleTimeout) -> None:
        delay = self._timeout_delay(e.kind, e.height, e.round, e.backstop)
        self._timers.append(asyncio.get_running_loop().call_later(delay, self._on_timeout, e))

    def _on_timeout(self, e: cs.ScheduleTimeout) -> None:
        hc = self.hc
        if hc is None or hc.height != e.height:
            return
        if e.kind == "precommit" and hc.round == e.round and not hc.decided:
            self.metrics.round_changes.inc()
            how = " (backstop: too few delegates heard from)" if e.backstop else ""
            log.info("round change at height %d: round %d timed out%s", e.height, e.round, how)
        self._handle(hc.on_timeout(e.kind, e.height, e.round))

    def _commit(self, block: blk.Block, cert: blk.Certificate) -> None:
        if self._disk_check():
            log.warning("decided block %d not committed: writes are paused; it will be synced once space returns", block.height)
            self.hc = None
            return
        try:
            info = self.chain.commit(block, cert)
        except DiskFull as exc:  # nothing of the block was kept: the same as a paused write
            self._disk_full(exc)
            return
        except StorageError as exc:
            self._die(str(exc))
            return
        except InvalidBlock as exc:  # cannot happen for a block 2/3+ validated; never commit it anyway
            log.error("decided block %d does not execute here: %s", block.height, exc)
            return
        self._check_certificate(block.height, cert)
        self._watch_progress(block.height)
        self._after_commit(info)

    def _after_commit(self, info: CommitInfo) -> None:
        prev_ts = getattr(self, "_last_commit_ts", None)
        if prev_ts is not None:
            self.metrics.block_interval.observe(max(0.0, (info.timestamp_ms - prev_ts) / 1000.0))
        self._last_commit_ts = info.timestamp_ms
        delegates = (
            self.hc.delegates if self.hc and self.hc.height == info.height else tuple(self.chain.delegates_for(info.height))
        )
        for r in range(info.round):
            self.metrics.missed_slots.labels(ex.proposer_of(delegates, info.height, r)).inc()
        self.metrics.produced_blocks.labels(info.proposer).inc()
        self.metrics.actions_finalized.inc(info.action_count)
        self._update_chain_metrics()
        self._behind_since = None
        if not self._joined:
            self._joined = True
            self._startup_moment("consensus_commit", f"first height decided by consensus since start: {info.height}")
        self._broadcast_status()
        self._start_height()

    def _update_info_metric(self) -> None:
        self.metrics.info.info(
            {
                "version": __version__,
                "protocol": str(self.chain.protocol_at(self.chain.height + 1)),
                "supported_protocols": ",".join(map(str, self.chain.supported_protocols)),
                "chain_id": str(self.genesis.chain_id),
                # the key of iotex_missed_slots_total{delegate}: alert rules map missed slots to this node by it
                "address": self.key.address,
            }
        )

    def _update_chain_metrics(self) -> None:
        self._update_info_metric()
        self.metrics.height.set(self.chain.height)
        self.metrics.finalized_height.set(self.chain.height)
        self.metrics.mempool_size.set(len(self.chain.mempool))
        self.metrics.epoch.set(self.genesis.epoch_of(self.chain.height + 1))

    # --- networking --------------------------------------------------------------------------------

    def _broadcast(self, msg: dict[str, Any], exclude: Peer | None = None) -> bytes:
        raw = orjson.dumps(msg)
        self._mark_seen(raw)
        self.net.broadcast(raw, exclude)
        return raw

    def _mark_seen(self, raw: bytes) -> bool:
        """Remember a gossip message; False when it was already seen."""
        h = hashlib.sha256(raw).digest()
        if h in self._seen:
            return False
        self._seen[h] = None
        if len(self._seen) > 50_000:
            self._seen.popitem(last=False)
        return True

    def _status_msg(self) -> bytes:
        msg: dict[str, Any] = {"t": "status", "height": self.chain.height, "hash": self.chain.tip_hash.hex()}
        if self.participating:
            msg["holder"] = self._holder_claim()  # a twin peer learns at once that this node signs (and its fence)
        return orjson.dumps(msg)

    def _broadcast_status(self) -> None:
        self.net.broadcast(self._status_msg())

    def _on_connect(self, peer: Peer) -> None:
        self.metrics.peers.set(len(self.net.peers))
        if peer.operator == self.key.address:
            self._twin_peer = True
        if peer.operator is not None and len(self.net.peers) + 1 >= blk.quorum(len(self._delegate_set())):
            self._startup_moment("peers", f"connected to {len(self.net.peers)} peers (a quorum with this node)")
        peer.send(self._status_msg())
        for raw in self._own_msgs[-8:]:
            peer.send(raw)

    def _on_message(self, peer: Peer, msg: dict[str, Any], raw: bytes) -> Awaitable[None] | None:
        if peer.operator is not None:
            self._heard(peer)
        t = msg["t"]
        if t == "blocks":
            return self._on_blocks(peer, msg)
        if t in ("proposal", "vote") and not self._mark_seen(raw):
            return None
        self._route(peer, msg, raw)  # a ProtocolViolation drops the peer (p2p.Network.punish)
        return None

    def _dispatch(self, peer: Peer, msg: dict[str, Any], raw: bytes) -> None:
        """Handle a message kept for this height (_defer_if_future); what it proves now drops its sender
        here, not the caller's peer."""
        try:
            self._route(peer, msg, raw)
        except ProtocolViolation as exc:
            self.net.punish(peer, exc)

    def _route(self, peer: Peer, msg: dict[str, Any], raw: bytes) -> None:
        t = msg["t"]
        try:
            if t == "txs":
                self._on_txs(peer, msg)
            elif t == "proposal":
                self._on_proposal(peer, msg, raw)
            elif t == "vote":
                self._on_vote(peer, msg, raw)
            elif t == "status":
                h = msg.get("height")
                if type(h) is not int:
                    raise ProtocolViolation("status height is not an integer")
                peer.height = h
                if "holder" in msg and peer.operator == self.key.address:
                    self._note_claim(peer, msg)
                if h > self.chain.height and not self._joined:
                    self._maybe_sync()  # just started: ask now rather than at the sync loop's next tick
            elif t == "get_blocks":
                self._serve_blocks(peer, msg)
            elif t == "get_block":
                self._serve_block(peer, msg)
            elif t == "block":
                self._on_fetched_block(msg)
            else:
                raise ProtocolViolation(f"unknown message type {str(t)[:32]!r}")
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise ProtocolViolation(f"malformed {t} message: {type(exc).__name__}") from None
        except InvalidBlock as exc:  # a block that does not decode: honest nodes serve only blocks that do
            raise ProtocolViolation(f"invalid {t}: {exc}", kind="bad_message") from None

    def _on_txs(self, peer: Peer, msg: dict[str, Any]) -> None:
        acts = msg["a"]
        if not isinstance(acts, list):
            raise ProtocolViolation("txs is not a list")
        fresh = []
        for w in acts:
            try:
                a = self.chain.parse_action(w)
                self.chain.submit(a)
            except NodeError:
                continue
            self._journal_add(a, w)
            fresh.append(w)
        if fresh:
            self._broadcast({"t": "txs", "a": fresh}, exclude=peer)
        self.metrics.mempool_size.set(len(self.chain.mempool))

    def _defer_if_future(self, peer: Peer, msg: dict[str, Any], raw: bytes, h: int) -> bool:
        hc = self.hc
        if hc is None:
            # Not deciding anything now (halted, or syncing): keep messages of the next heights for when
            # we are. They are already marked seen, so dropping them would also ignore their re-sends.
            if self.chain.height < h <= self.chain.height + 2:
                box = self._future.setdefault(h, [])
                if len(box) < 2000:
                    box.append((peer, msg, raw))
            return True
        r = msg.get("round")
        if not isinstance(r, int) or r < 0 or r > hc.round + MAX_ROUNDS_AHEAD:
            return True  # far-future rounds would only grow memory; a live network never gets there
        if h > hc.height:
            if h <= hc.height + 2:
                box = self._future.setdefault(h, [])
                if len(box) < 2000:
                    box.append((peer, msg, raw))
                peer.height = max(peer.height, h - 1)  # it relays h: it has h - 1 (sync checks that)
            return True
        return h < hc.height

    def _on_proposal(self, peer: Peer, msg: dict[str, Any], raw: bytes) -> None:
        h, r, pol = msg["height"], msg["round"], msg["pol_round"]
        if not all(type(x) is int for x in (h, r, pol)):
            raise ProtocolViolation("proposal height/round is not an integer")
        claimed = self._claimed_by_other_holder("proposal", h, r, msg, msg.get("proposer"))
        if h <= self.chain.height:
            return  # decided already; an honest relay may still be sending it
        # The signature is checked before the message is kept for a later height, so that forgeries
        # cannot crowd out the real messages of the next heights, and are held against their sender.
        _header, sig = msgcheck.proposal_signature(msg, self.genesis.chain_id)
        if self._defer_if_future(peer, msg, raw, h):
            return
        hc = self.hc
        assert hc is not None
        proposer = msg["proposer"]
        if r < 0 or proposer != hc.proposer(r):
            # Well signed, but not by the slot's proposer: no honest node relays that.
            slot = hc.proposer(max(r, 0))
            raise ProtocolViolation(f"proposal {h}/{r} by {proposer}: the slot is {slot}'s", kind="not_proposer")
        try:
            block = self.chain.decode_block(msg["block"])
        except InvalidBlock as exc:  # e.g. an action with a bad signature: a relay decodes before relaying
            raise ProtocolViolation(f"proposal {h}/{r}: {exc}", kind="bad_message") from None
        if proposer == self.key.address:
            self._note_own_key("proposal", h, r, block.hash, claimed)
        self.net.broadcast(raw, exclude=peer)
        try:
            self.chain.execute(block, check_clock=True)
            valid = True
        except InvalidBlock as exc:
            log.warning("proposal %d/%d from %s is invalid: %s", h, r, proposer, exc)
            valid = False
        self._handle(hc.on_proposal(cs.Proposal(h, r, pol, block, proposer, sig), valid))

    def _on_vote(self, peer: Peer, msg: dict[str, Any], raw: bytes) -> None:
        h = msg["height"]
        if type(h) is not int:
            raise ProtocolViolation("vote height is not an integer")
        claimed = self._claimed_by_other_holder("vote", h, msg.get("round"), msg, msg.get("voter"))
        if h <= self.chain.height:
            return  # decided already; an honest relay may still be sending it
        vote = msgcheck.vote(msg, self.genesis.chain_id)  # before deferring: see _on_proposal
        if self._defer_if_future(peer, msg, raw, h):
            return
        hc = self.hc
        assert hc is not None
        if vote.voter not in hc.delegates:
            return  # counts only when signed by an active delegate; may be one of another epoch: not held against the peer
        if vote.voter == self.key.address:
            self._note_own_key(vote.type, vote.height, vote.round, vote.block_hash, claimed)
        self.net.broadcast(raw, exclude=peer)
        self._handle(hc.on_vote(vote))

    def _serve_blocks(self, peer: Peer, msg: dict[str, Any]) -> None:
        start, count = msg["from"], msg["count"]
        if not isinstance(start, int) or not isinstance(count, int) or not 1 <= start < 2**62:
            raise ProtocolViolation("get_blocks range is malformed")
        count = max(0, min(count, SYNC_BATCH))
        datas = self.store.blocks_data(start, count)
        # Splice stored JSON without decoding it; stop before the frame limit.
        out, size = [], 64
        for d in datas:
            if size + len(d) > self.cfg.max_frame_bytes - 64:
                break
            out.append(d)
            size += len(d) + 1
        peer.send(b'{"t":"blocks","blocks":[' + b",".join(out) + b"]}")

    async def _on_blocks(self, peer: Peer, msg: dict[str, Any]) -> None:
        if self._sync.answered(peer) is None:
            raise ProtocolViolation("sent blocks it was not asked for", kind="unsolicited")
        blocks = msg.get("blocks")
        if not isinstance(blocks, list):
            raise ProtocolViolation("blocks is not a list")
        applied = 0
        fault: ProtocolViolation | None = None
        for w in blocks:
            try:
                b = self.chain.decode_block(w)
                if b.height <= self.chain.height:
                    continue  # another peer's answer (or consensus) got there first
                if self.halt_reason() is not None or self._disk_check():
                    break
                self.chain.protocol_check(b.height)
                info = self.chain.apply_synced(b)
                self._check_certificate(b.height, b.certificate)
                self._watch_progress(b.height)
            except InvalidBlock as exc:
                # Honest nodes serve only final blocks, which check: this one is the peer's doing.
                fault = ProtocolViolation(f"served an invalid block: {exc}", kind="bad_block")
                break
            except ExecutionError as exc:  # upgrade required: stop here rather than fork or crash
                self.upgrade_required = str(exc)
                self._update_control_metrics()
                log.error("%s: this release supports protocols %s", exc, list(self.chain.supported_protocols))
                break
            except DiskFull as exc:
                self._disk_full(exc)
                break
            except StorageError as exc:
                self._die(str(exc))
                return
            self.metrics.synced_blocks.inc()
            applied += 1
            self.hc = None  # consensus restarts at the new tip once this batch is in
            self._after_commit_sync(info)
            # Let the API and peers be served between blocks of a long catch-up.
            await asyncio.sleep(0)
        if not blocks and peer.height > self.chain.height:
            # It claimed blocks it cannot serve: a peer's word on its height is only as good as its blocks.
            peer.height = self.chain.height
            fault = ProtocolViolation(f"claimed height beyond {self.chain.height} but served no blocks", kind="false_status")
        if applied:
            log.info("synced %d block(s) from %s, now at %d", applied, peer.node_id, self.chain.height)
            if not self._joined and self.is_synced():
                self._startup_moment("caught_up", f"caught up to {self.chain.height} from peers")
            self._broadcast_status()
            self._start_height()
        elif self.hc is None:
            self._start_height()
        if fault is not None:
            self.net.punish(peer, fault)
        self._maybe_sync()  # the next batch, or the same one from another peer

    def _after_commit_sync(self, info: CommitInfo) -> None:
        self._last_commit_ts = info.timestamp_ms
        self.metrics.actions_finalized.inc(info.action_count)
        self._update_chain_metrics()
        self._behind_since = None

    def _serve_block(self, peer: Peer, msg: dict[str, Any]) -> None:
        h = bytes.fromhex(msg["hash"])
        found: blk.Block | None = None
        if self.hc is not None and h in self.hc.blocks:
            found = self.hc.blocks[h][0]
        else:
            height = self.store.block_height_by_hash(h)
            if height is not None:
                found = self.chain.block(height)
        if found is not None:
            peer.send(orjson.dumps({"t": "block", "block": found.to_wire(with_certificate=False)}))

    def _on_fetched_block(self, msg: dict[str, Any]) -> None:
        hc = self.hc
        if hc is None:
            return
        block = self.chain.decode_block(msg["block"])
        if block.height != hc.height or block.hash in hc.blocks:
            return
        try:
            self.chain.execute(block, check_clock=False)
            valid = True
        except InvalidBlock:
            valid = False
        self._handle(hc.on_block(block, valid))

    # --- background loops --------------------------------------------------------------------------

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(STATUS_EVERY)
            self._broadcast_status()
            if self._watch is not None and time.monotonic() >= self._watch[1]:
                self._watch = None
                log.warning("double-sign check: no height finalized without us in %.0f s; signing again", WATCH_MAX_S)
                self._restart_consensus()
            if self._own_msgs and time.monotonic() - self._height_started > STATUS_EVERY:
                for raw in self._own_msgs[-8:]:
                    self.net.broadcast(raw)
            self.metrics.peers.set(len(self.net.peers))
            self.metrics.mempool_size.set(len(self.chain.mempool))

    def best_peer_height(self) -> int:
        """The highest height any peer claims (a claim only: see network_height)."""
        return max((p.height for p in self.net.peers.values()), default=0)

    def network_height(self) -> int | None:
        """The height the network shows: the lower median of the claims of the epoch's delegates among
        our peers, else of the peers we dialed, else of all (sync.py); None without peers."""
        return network_height(self.net.peers.values(), self._delegate_set())

    def _delegate_set(self) -> frozenset[str]:
        h = self.chain.height + 1
        if self._delegates_at[0] != h:
            hc = self.hc
            ds = hc.delegates if hc is not None and hc.height == h else self.chain.delegates_for(h)
            self._delegates_at = (h, frozenset(ds))
        return self._delegates_at[1]

    def _is_delegate_peer(self, peer: Peer) -> bool:
        return peer.operator is not None and peer.operator in self._delegate_set()

    def _maybe_sync(self) -> None:
        now = time.monotonic()
        for req in self._sync.expired(now):
            why = f"no answer to get_blocks from {req.start} within {REQUEST_TIMEOUT:.0f} s"
            self.net.punish(req.peer, ProtocolViolation(why, kind="sync_timeout"))
        if self.halt_reason() is not None or self.disk.paused is not None:
            return  # halted nodes stay at their height; so do nodes that cannot run the next protocol or write
        height = self.chain.height
        peers = list(self.net.peers.values())
        ahead = [p.height for p in peers if p.height > height and not p.closed]
        if not ahead:
            self._behind_since = None
            return
        if grace_applies(max(ahead), height, self._joined):
            if self._behind_since is None:
                self._behind_since = now
                return
            if now - self._behind_since < SYNC_GRACE:
                return
        peer = self._sync.choose(peers, height, self._delegate_set(), now)
        if peer is None:
            return
        count = min(SYNC_BATCH, peer.height - height)
        if self.controls.halt_height is not None:
            count = max(1, min(count, self.controls.halt_height - height))
        if peer.send(orjson.dumps({"t": "get_blocks", "from": height + 1, "count": count})):
            self._sync.sent(peer, height + 1, count, now)

    async def _disk_loop(self) -> None:
        while True:
            await asyncio.sleep(DISK_CHECK_EVERY)
            try:
                self._disk_check()
            except Exception:  # never let the guard's bookkeeping stop the node
                log.exception("disk check failed")

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            self._maybe_sync()

    async def _tx_flush_loop(self) -> None:
        while True:
            await asyncio.sleep(TX_FLUSH_EVERY)
            if self._tx_outbox:
                batch, self._tx_outbox = self._tx_outbox, []
                for i in range(0, len(batch), 2000):
                    self._broadcast({"t": "txs", "a": batch[i : i + 2000]})

    # --- API-facing --------------------------------------------------------------------------------

    def submit(self, wire: object) -> Action:
        """Validate and admit one action; raises InvalidAction or Rejected."""
        action = self.chain.parse_action(wire)
        if self.disk.paused is not None:
            raise Rejected("writes_paused", f"this node cannot admit actions now ({self.disk.paused}); send it to another node")
        try:
            self.chain.submit(action)
        except Rejected as exc:
            if exc.code != "duplicate":
                self._remember_rejected(action.hash, exc.code, exc.reason)
            raise
        self._rejected.pop(action.hash, None)  # accepted now (e.g. after a rollback put it back in play)
        wire = action.to_wire()
        self._tx_outbox.append(wire)
        self._journal_add(action, wire)
        return action

    def action_status(self, h: bytes) -> dict[str, Any] | None:
        rec = self.chain.receipt(h)
        if rec is not None:
            return {"hash": h.hex(), "status": "finalized", "receipt": rec}
        if self.chain.mempool.get(h) is not None:
            return {"hash": h.hex(), "status": "pending"}
        rej = self._rejected.get(h)
        if rej is not None:
            return {"hash": h.hex(), "status": "rejected", "reason": rej[1], "code": rej[0]}
        return None

    def _decided_elsewhere(self, height: int) -> bool:
        """The network (the lower median of the delegates' claims, which a lying minority cannot move) has
        finalized `height` already: signing there is useless (the block and its certificate exist: sync
        fetches them), and for a primary that was replaced while it was away it is the one way to sign a
        height its successor signed before the blocks it syncs show it was replaced.

        Only the delegates' own claims count (peers that proved their operator key): `network_height` falls back
        to any peer's claim when no delegate is connected, and one lying outsider must not stop a node signing."""
        ds = self._delegate_set()
        claims: dict[str, int] = {}
        for p in self.net.peers.values():
            if not p.closed and p.operator is not None and p.operator in ds:
                claims[p.operator] = max(claims.get(p.operator, 0), p.height)
        if not claims:
            return False
        ordered = sorted(claims.values())
        return ordered[(len(ordered) - 1) // 2] >= height

    def is_synced(self) -> bool:
        """At most one block behind what the network shows (not what its highest claim says)."""
        nh = self.network_height()
        return nh is None or nh <= self.chain.height + 1

    def status(self) -> dict[str, Any]:
        hc = self.hc
        delegates = list(hc.delegates) if hc else self.chain.delegates_for(self.chain.height + 1)
        return {
            "name": self.cfg.name,
            "address": self.key.address,
            "node_id": self.node_key.address,
            "chain_id": self.genesis.chain_id,
            "height": self.chain.height,
            "finalized_height": self.chain.height,
            "finalized_hash": self.chain.tip_hash.hex(),
            "state_root": self.chain.state.root().hex(),
            "epoch": self.genesis.epoch_of(self.chain.height + 1),
            "consensus": {
                "height": hc.height if hc else None,
                "round": hc.round if hc else None,
                "step": hc.step if hc else None,
            },
            "active_delegates": delegates,
            "is_delegate": self.key.address in delegates,
            "version": __version__,
            "protocol": self.chain.protocol_at(self.chain.height + 1),
            "protocol_schedule": [a.to_json() for a in self.chain.schedule.activations],
            "supported_protocols": list(self.chain.supported_protocols),
            "peers": len(self.net.peers),
            "peer_list": [{"node": p.node_id, "address": p.address, "height": p.height} for p in self.net.peers.values()],
            "mempool": len(self.chain.mempool),
            "synced": self.is_synced(),
            "participating": self.participating and self.key.address in delegates,
            "paused": self.controls.paused,
            "standby": self.controls.standby,
            "role": "standby" if self.controls.standby else "primary",
            "sign_fence": self.signlog.floor,
            "seen_signed": list(self.signlog.seen) if self.signlog.seen else None,
            "role_changes": [{"at": t, "role": r, "why": w} for t, r, w in self.role_changes[-10:]],
            "halt_height": self.controls.halt_height,
            "halted": self.halt_reason(),
            "writes_paused": self.disk.paused,
            "api_url": self.api_url,
            "p2p_listen": self.net.listen,
            "uptime_seconds": round(time.time() - self.started_at, 3),
            "pid": os.getpid(),
        }


def load_node_key(cfg: NodeConfig) -> PrivateKey:
    """The node's P2P identity (not the delegate key): created on first use, kept 0600 in the home."""
    path = cfg.path(cfg.node_key)
    if path.exists():
        try:
            doc = orjson.loads(read_secret_file(path, "node key"))
            return PrivateKey(bytes.fromhex(doc["secret"]))
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            raise ConfigError(f"node key {path} is malformed") from None
    key = PrivateKey()
    write_secret_file(path, orjson.dumps({"address": key.address, "secret": key.secret().hex()}).decode())
    log.info("created node key %s (p2p identity %s)", path, key.address)
    return key


def _split(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    return host, int(port)


def _bind_tcp(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (as asyncio would bind it for a server); OSError if it cannot be."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, type_, proto, _, addr = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(512)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _import_interfaces() -> tuple[types.ModuleType, types.ModuleType]:
    from iotex_node import admin, api

    return api, admin


def open_chain(cfg: NodeConfig, genesis: genesis_mod.Genesis, supported: tuple[int, ...]) -> tuple[Store, Chain]:
    """The node's database and chain, checked: a damaged file is refused with its name and what to do (never a
    traceback, never a node that fails later, mid-consensus). Files up to START_CHECK_MAX_BYTES get SQLite's
    quick_check (every page read once: about 10 ms per MiB here); the state is read whole and its root
    compared with the tip's in any case."""
    path = cfg.path(cfg.database)
    fix = "restore it from a peer's snapshot (`iotex-node restore`, or the rebuild-node runbook)"
    try:
        store = Store(path)
    except StorageError as exc:
        if not path.exists():
            raise
        raise StorageError(f"{exc}: the file is damaged; {fix}") from None
    try:
        try:
            size = path.stat().st_size
        except OSError:
            size = 0
        if size <= START_CHECK_MAX_BYTES:
            problems = store.check(quick=True)
            if problems:
                more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
                raise StorageError(f"database {path} is damaged ({'; '.join(problems[:3])}{more}): {fix}")
        chain = Chain(
            genesis,
            store,
            mempool_limits=MempoolLimits(cfg.mempool_max_total, cfg.mempool_max_per_sender, cfg.mempool_min_fee or 1),
            undo_depth=cfg.undo_depth,
            max_block_actions=cfg.max_block_actions,
            supported_protocols=supported,
        )
    except sqlite3.DatabaseError as exc:
        store.close()
        raise StorageError(f"database {path} is damaged ({exc}): {fix}") from None
    except BaseException:
        store.close()
        raise
    return store, chain
