"""The node's guard against a full disk: writes pause before the database's volume fills, and resume once
space returns.

A node that commits blocks, signs and journals actions on a volume that is filling up meets ENOSPC somewhere
in the middle of a write. SQLite keeps its database whole (the transaction rolls back), but the node must
then stop or refuse writes cleanly instead of dying in a loop. The guard checks the free space of the
database's volume (statvfs: microseconds) every half second and before every block it commits; below
`min_free_bytes` it pauses writes: no block committed (consensus's or a peer's), nothing signed, no action
admitted. A full disk met anyway (the guard off, or another process filling the volume between two checks)
pauses writes the same way (`full`). Writes resume once the free space is back above the threshold plus a
margin (no flapping on the line). Pure apart from the free-space function it is given.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

MIB = 1024 * 1024
# Writes resume at the threshold plus this much (or plus an eighth of the threshold, if more)
RESUME_MARGIN = MIB


def free_bytes(path: Path) -> int:
    """What an unprivileged writer may still write on `path`'s filesystem (the root reserve excluded)."""
    return shutil.disk_usage(path).free


@dataclass
class DiskGuard:
    path: Path
    min_free_bytes: int
    free: Callable[[Path], int] = free_bytes
    paused: str | None = None  # why writes are paused; None while they are allowed
    last_free: int | None = None
    _resume_at: int = field(default=0)

    def resume_threshold(self, base: int) -> int:
        return base + max(RESUME_MARGIN, base // 8)

    def check(self) -> bool:
        """Read the free space; True when writes were paused or resumed by this check."""
        try:
            free = self.free(self.path)
        except OSError:
            return False  # the store's own errors will say what is wrong with the directory
        self.last_free = free
        if self.paused is None:
            if self.min_free_bytes > 0 and free < self.min_free_bytes:
                self.paused = (
                    f"writes paused: {free / MIB:.1f} MiB free on the volume of {self.path}, below "
                    f"min_free_disk_mb={self.min_free_bytes // MIB}; free space to resume"
                )
                self._resume_at = self.resume_threshold(self.min_free_bytes)
                return True
            return False
        if free >= self._resume_at:
            self.paused = None
            return True
        return False

    def full(self, error: str) -> bool:
        """A write failed because the volume is full: pause writes until space returns. True if this paused them."""
        if self.paused is not None:
            return False
        try:
            free = self.free(self.path)
        except OSError:
            free = 0
        self.last_free = free
        self.paused = f"writes paused: the volume of {self.path} is full ({error}); free space to resume"
        self._resume_at = self.resume_threshold(max(self.min_free_bytes, free))
        return True
