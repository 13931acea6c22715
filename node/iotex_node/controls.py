"""Operator controls that survive a restart: pause, halt height, standby.

Pure data plus the rules that combine them; the node applies them (node.py) and the admin channel
changes them (admin.py). Persisted in the database's meta table as one record.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from iotex_node.errors import InvalidInput, NodeError


class ActivationRefused(NodeError):
    """A standby was asked to activate while its delegate key is signing elsewhere."""


@dataclass
class Controls:
    paused: bool = False
    halt_height: int | None = None
    standby: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: object) -> Controls:
        if not isinstance(doc, dict):
            return cls()
        h = doc.get("halt_height")
        return cls(bool(doc.get("paused", False)), h if isinstance(h, int) and h > 0 else None, bool(doc.get("standby")))

    def halted_at(self, finalized_height: int) -> int | None:
        """The halt height once reached, else None."""
        if self.halt_height is not None and finalized_height >= self.halt_height:
            return self.halt_height
        return None


def check_halt_height(height: object, finalized_height: int) -> int:
    """A new halt height must be a positive integer above what is already final.

    For a halt "N blocks from now" use `halt_height_after`: the node resolves it against its own finalized
    height, which a caller that read the height a moment earlier would race (the chain moves on)."""
    if isinstance(height, bool) or not isinstance(height, int):
        raise InvalidInput("must be an integer block height", "height")
    if height < 1:
        raise InvalidInput(f"halt height {height} must be positive", "height")
    if height <= finalized_height:
        raise InvalidInput(
            f"halt height {height} is at or below the finalized height {finalized_height}: the chain is already past it",
            "height",
        )
    return height


def halt_height_after(blocks: object, finalized_height: int) -> int:
    """The halt height `blocks` above the finalized height (`iotex-node admin halt-at +N`): at least 1."""
    if isinstance(blocks, bool) or not isinstance(blocks, int):
        raise InvalidInput("must be an integer number of blocks", "after")
    if blocks < 1:
        raise InvalidInput(f"halt after {blocks} blocks: give at least 1 (the next block)", "after")
    return check_halt_height(finalized_height + blocks, finalized_height)
