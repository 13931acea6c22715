"""Prometheus metrics of one node (its own registry, so tests can run several nodes in a process)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector, disable_created_metrics
from prometheus_client.core import CounterMetricFamily

# The *_created series double every counter's cardinality and no dashboard here reads them.
disable_created_metrics()
# Disk usage is read on scrape; a statvfs is cheap, but a filesystem that hangs (NFS) must not stall every
# scrape, and free space does not change meaningfully within a few seconds.
DISK_REFRESH_S = 5.0


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        # process_cpu_seconds_total, process_resident_memory_bytes...: what a load tester reads per node (from
        # Prometheus, or from /metrics itself when there is none). Several nodes in one process (tests) report it each.
        ProcessCollector(registry=r)
        self.height = Gauge("iotex_block_height", "Height of the latest block", registry=r)
        self.finalized_height = Gauge("iotex_finalized_height", "Height of the latest finalized block", registry=r)
        self.block_interval = Histogram(
            "iotex_block_interval_seconds",
            "Time between consecutive finalized blocks (block timestamps)",
            buckets=(0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2, 3, 5, 8, 13, 30, 60),
            registry=r,
        )
        self.consensus_round = Gauge("iotex_consensus_round", "Round of the height being decided", registry=r)
        self.consensus_height = Gauge("iotex_consensus_height", "Height being decided", registry=r)
        self.missed_slots = Counter(
            "iotex_missed_slots_total", "Slots whose proposer did not get a block finalized", ["delegate"], registry=r
        )
        self.produced_blocks = Counter("iotex_produced_blocks_total", "Finalized blocks by proposer", ["delegate"], registry=r)
        self.peers = Gauge("iotex_peers", "Connected peers", registry=r)
        self.mempool_size = Gauge("iotex_mempool_actions", "Pending actions in the mempool", registry=r)
        self.actions_finalized = Counter("iotex_actions_finalized_total", "Actions in finalized blocks", registry=r)
        self.api_requests = Counter("iotex_api_requests_total", "API requests", ["method", "route", "code"], registry=r)
        self.api_rejections = Counter(
            "iotex_api_rejections_total", "Actions refused by the API or mempool", ["reason"], registry=r
        )
        self.p2p_violations = Counter(
            "iotex_p2p_violations_total",
            "Peers dropped for misbehaving, by kind (frame, handshake, idle, slow_frame, bad_signature, not_proposer, "
            "bad_message, bad_block, false_status, unsolicited, sync_timeout)",
            ["kind"],
            registry=r,
        )
        self.p2p_refused = Counter(
            "iotex_p2p_refused_total",
            "Inbound connections refused or evicted, by reason (banned, inbound_full, ip_full, handshakes_busy, evicted)",
            ["reason"],
            registry=r,
        )
        self.equivocations = Counter(
            "iotex_consensus_equivocations_total", "Conflicting signed messages seen", ["delegate"], registry=r
        )
        self.round_changes = Counter("iotex_consensus_round_changes_total", "Rounds that timed out", registry=r)
        self.synced_blocks = Counter("iotex_synced_blocks_total", "Blocks applied from peers by sync", registry=r)
        self.is_delegate = Gauge("iotex_active_delegate", "1 when this node is an active delegate of the epoch", registry=r)
        self.epoch = Gauge("iotex_epoch", "Current epoch", registry=r)
        self.paused = Gauge("iotex_node_paused", "1 while the operator has paused this delegate", registry=r)
        self.standby = Gauge("iotex_node_standby", "1 while this node is a standby (synced, not signing)", registry=r)
        self.role = Gauge(
            "iotex_node_role", "1 for this node's role for its delegate key: primary (signs) or standby", ["role"], registry=r
        )
        self.sign_fence = Gauge(
            "iotex_node_sign_fence_height", "The lowest height this node may sign at (set by a promotion; 0: none)", registry=r
        )
        self.seen_signed = Gauge(
            "iotex_node_other_signer_height",
            "The highest height seen signed with this node's delegate key by another holder (0: none)",
            registry=r,
        )
        self.halted = Gauge("iotex_node_halted", "1 while halted (scheduled halt height or upgrade required)", registry=r)
        self.halt_height = Gauge("iotex_node_halt_height", "Scheduled halt height (0: none)", registry=r)
        self.upgrade_required = Gauge(
            "iotex_node_upgrade_required", "1 when the active protocol is not supported by this release", registry=r
        )
        self.other_signer = Counter(
            "iotex_other_signer_detected_total",
            "Consensus messages signed with this node's delegate key that this node did not sign",
            registry=r,
        )
        self.info = Info("iotex_node", "Node version, protocol and delegate (operator) address", registry=r)
        self.disk_free = Gauge(
            "iotex_disk_free_bytes", "Bytes the node's user may still write on its data directory's filesystem", registry=r
        )
        self.writes_paused = Gauge(
            "iotex_node_writes_paused",
            "1 while the node writes nothing (its data volume is full or below min_free_disk_mb)",
            registry=r,
        )
        self.disk_size = Gauge("iotex_disk_size_bytes", "Size of the filesystem holding the node's data directory", registry=r)
        self.startup = Gauge(
            "iotex_node_startup_seconds",
            "When each part of this process's start-up was done, in seconds since the process was created: "
            "interpreter, config, imports, genesis, keystore, database, p2p, consensus, api; then peers (a quorum "
            "connected), caught_up (synced the blocks missed), consensus_commit, endorsement (first precommit signed)",
            ["phase"],
            registry=r,
        )
        self._disk_read_at: float | None = None

    def watch_journal(self, read: Callable[[], tuple[int, int, float]]) -> None:
        """Expose the mempool journal's counters (commits, writes committed, seconds in commits), read on scrape."""
        self.registry.register(_JournalCollector(read))

    def set_startup(self, marks: dict[str, float]) -> None:
        for phase, seconds in marks.items():
            self.startup.labels(phase).set(seconds)

    def refresh_disk(self, data_dir: Path, now: float | None = None) -> None:
        """Set the disk gauges from `data_dir`'s filesystem, unless they were set less than DISK_REFRESH_S ago."""
        now = time.monotonic() if now is None else now
        if self._disk_read_at is not None and now - self._disk_read_at < DISK_REFRESH_S:
            return
        self._disk_read_at = now
        try:
            usage = shutil.disk_usage(data_dir)
        except OSError:
            return  # the last values stay; the store's own errors say what is wrong with the directory
        self.disk_free.set(usage.free)
        self.disk_size.set(usage.total)


class _JournalCollector:
    """iotex_mempool_journal_{commits,writes,commit_seconds}_total, from the journal's own counters."""

    def __init__(self, read: Callable[[], tuple[int, int, float]]) -> None:
        self._read = read

    def collect(self) -> Iterator[CounterMetricFamily]:
        commits, writes, seconds = self._read()
        yield CounterMetricFamily("iotex_mempool_journal_commits", "Transactions committed to the mempool journal", commits)
        yield CounterMetricFamily(
            "iotex_mempool_journal_writes", "Writes (adds, removals, drops) committed to the mempool journal", writes
        )
        yield CounterMetricFamily(
            "iotex_mempool_journal_commit_seconds", "Time spent writing and committing the mempool journal", seconds
        )
