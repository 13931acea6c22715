"""Protocol versions and their activation heights: what changes between versions, in one place.

Protocol 1 is the original chain. Protocol 2 (the drills' non-compatible upgrade) changes two things
every node can observe: block headers carry `delegates_root`, a commitment to the epoch's ordered
delegate set, and the block reward may change at activation (the activation's `block_reward`).
A release that does not run the protocol active at a height stops there with "upgrade required".
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from iotex_node.errors import InvalidInput

# Protocol 2 adds this header field.
DELEGATES_ROOT_FROM = 2


@dataclass(frozen=True, slots=True)
class Activation:
    version: int
    height: int
    block_reward: int | None = None  # None: keep the reward in force

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"version": self.version, "height": self.height}
        if self.block_reward is not None:
            out["block_reward"] = str(self.block_reward)
        return out


@dataclass(frozen=True)
class Schedule:
    activations: tuple[Activation, ...]
    base_block_reward: int

    def version_at(self, height: int) -> int:
        version = self.activations[0].version
        for a in self.activations:
            if a.height <= height:
                version = a.version
        return version

    def block_reward_at(self, height: int) -> int:
        reward = self.base_block_reward
        for a in self.activations:
            if a.height <= height and a.block_reward is not None:
                reward = a.block_reward
        return reward

    def with_activation(self, a: Activation, finalized_height: int) -> Schedule:
        """Add an activation agreed by the delegates; it must come after everything scheduled and final."""
        last = self.activations[-1]
        if a.version <= last.version:
            raise InvalidInput(f"protocol {a.version} is not after the last scheduled protocol {last.version}", "version")
        if a.height <= max(last.height, finalized_height + 1):
            raise InvalidInput(
                f"activation height {a.height} must be above the finalized height {finalized_height} + 1 "
                f"and the last activation at {last.height}",
                "height",
            )
        return Schedule((*self.activations, a), self.base_block_reward)


def delegates_root(delegates: tuple[str, ...] | list[str]) -> bytes:
    return hashlib.sha256("\n".join(delegates).encode()).digest()
