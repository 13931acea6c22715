"""The honest side of a flood: when each height became final (seen from a node not flooded), and the
flooded node's RSS and open files over time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from iotex_ops.nodeapi import NodeApiError, NodeClient


class Watch:
    """Polls `observer` (a node not flooded) for its finalized height every `every` s and `sample()` (the
    flooded node's (rss_mb, open_files)) every 0.5 s, in a thread, for at most `max_seconds`."""

    def __init__(self, observer: NodeClient, sample: Callable[[], tuple[float, int] | None], *, every: float = 0.2,
                 max_seconds: float = 900, peers: Callable[[], int | None] | None = None) -> None:  # fmt: skip
        self.observer, self.sample, self.every, self.max_seconds = observer, sample, every, max_seconds
        self.peers = peers  # the flooded node's peer count, sampled with `sample`
        self.peer_samples: list[tuple[float, int]] = []
        self.final_at: dict[int, float] = {}  # height -> unix time first seen final
        self.samples: list[tuple[float, float, int]] = []  # (unix time, rss MB, open files)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="flood-watch", daemon=True)

    def start(self) -> Watch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        end = time.monotonic() + self.max_seconds
        next_sample = 0.0
        last = None
        while not self._stop.is_set() and time.monotonic() < end:
            try:
                h = self.observer.chain(timeout=2).finalized_height
                now = time.time()
                start = h if last is None else last + 1
                for x in range(start, h + 1):
                    self.final_at.setdefault(x, now)
                last = h
            except NodeApiError:
                pass
            if time.monotonic() >= next_sample:
                next_sample = time.monotonic() + 0.5
                s = self.sample()
                if s is not None:
                    self.samples.append((time.time(), s[0], s[1]))
                n = self.peers() if self.peers is not None else None
                if n is not None:
                    self.peer_samples.append((time.time(), n))
            self._stop.wait(self.every)

    def peak(self, since: float, until: float) -> tuple[float, int]:
        inside = [(r, f) for t, r, f in self.samples if since <= t <= until] or [(0.0, 0)]
        return max(r for r, _ in inside), max(f for _, f in inside)

    def fewest_peers(self, since: float, until: float) -> int | None:
        inside = [n for t, n in self.peer_samples if since <= t <= until]
        return min(inside) if inside else None

    def before(self, t: float) -> float:
        earlier = [r for s, r, _ in self.samples if s <= t]
        return earlier[-1] if earlier else 0.0

    def latencies(self, accepted: Sequence[tuple[float, str]], status_of: Callable[[str], int | None]) -> list[float]:
        """submit->final seconds of the accepted (time, hash) that are final (`status_of`: the height it is in)."""
        with ThreadPoolExecutor(max_workers=8) as pool:
            heights = list(pool.map(lambda a: status_of(a[1]), accepted))
        out = []
        for (t, _h), height in zip(accepted, heights, strict=True):
            if height is not None and height in self.final_at:
                out.append(max(0.0, self.final_at[height] - t))
        return out
