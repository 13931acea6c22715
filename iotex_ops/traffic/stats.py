"""One account of a load's traffic, whichever generator made it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class LoadStats:
    """Counters of actions (and requests) a load sent; each generator fills those that apply to it."""

    sent: int = 0  # actions put in a request to a node, re-sends included
    accepted: int = 0  # actions a node admitted to its mempool (202)
    refused: int = 0  # actions a node answered with an error (a re-sent action's `duplicate` included)
    unavailable: int = 0  # actions not delivered: no node answered (or the chain could not be read)
    failed_requests: int = 0  # requests that got no answer (node down, slow, or an HTTP error)
    resyncs: int = 0  # nonces re-read from a node
    ticks: int = 0  # rounds of a window load that reached a node
    by_reason: dict[str, int] = field(default_factory=dict)  # refusals by the node's error code

    @property
    def answered(self) -> int:
        """Actions a node answered for, one way or the other."""
        return self.accepted + self.refused

    def refuse(self, code: str, n: int = 1) -> None:
        self.refused += n
        self.by_reason[code] = self.by_reason.get(code, 0) + n

    def to_json(self) -> dict[str, Any]:
        """The figures the rehearsal reports for its background load."""
        return {
            "accepted": self.accepted,
            "refused": self.refused,
            "unavailable": self.unavailable,
            "resyncs": self.resyncs,
            "by_reason": dict(self.by_reason),
        }
