"""The edge of the schedule core: what it is given, read from disk and from the nodes.

* `ChainSource`: anything with `chain(timeout=...) -> ChainInfo` (a `NodeClient`, `Delegate.api`, a fake);
  `read_chain` turns what the delegates say into a `ChainTime` (finalized height, block interval, halt heights,
  protocol activations still ahead, from `/v1/chain`'s `halt_height` and `protocol_schedule`).
* `Loaded`: an inventory's drills file, parsed and checked against the installed runbooks and the
  inventory's delegates (`inventory check` and `schedule check` both use it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from iotex_ops import inventory as inv_mod
from iotex_ops.nodeapi import ChainInfo, NodeApiError
from iotex_ops.runbook.model import Runbook
from iotex_ops.schedule.check import check
from iotex_ops.schedule.model import Drills, Problem, ScheduleError, drills_file, load
from iotex_ops.schedule.timing import ChainTime


class ChainSource(Protocol):
    name: str

    def chain(self, *, timeout: float | None = None) -> ChainInfo: ...


def chain_time(infos: Sequence[ChainInfo], now: datetime) -> ChainTime | None:
    """The chain's calendar from what the delegates answered (pure): the highest finalized height, the block
    interval, every delegate's halt height, and protocol activations above the finalized height."""
    if not infos:
        return None
    height = max(i.finalized_height for i in infos)
    interval_ms = next((i.block_interval_ms for i in infos if i.block_interval_ms), None)
    halts = sorted({i.halt_height for i in infos if i.halt_height is not None and i.halt_height > 0})
    activations: set[int] = set()
    for i in infos:
        for a in i.raw.get("protocol_schedule") or ():
            try:
                h = int(a["height"])
            except (KeyError, TypeError, ValueError):
                continue
            if h > height:
                activations.add(h)
    return ChainTime(height, now, (interval_ms or 1000) / 1000.0, tuple(halts), tuple(sorted(activations)))


def read_chain(sources: Sequence[ChainSource], now: datetime, timeout: float = 2.0) -> tuple[ChainTime | None, list[str]]:
    """Ask every delegate at once; the chain's calendar from those that answered, and what the others said."""
    if not sources:
        return None, ["no delegates in the inventory"]

    def ask(src: ChainSource) -> ChainInfo | str:
        try:
            return src.chain(timeout=timeout)
        except NodeApiError as exc:
            return str(exc)

    with ThreadPoolExecutor(max_workers=min(8, len(sources))) as pool:
        answers = list(pool.map(ask, sources))
    infos = [a for a in answers if isinstance(a, ChainInfo)]
    errors = [a for a in answers if isinstance(a, str)]
    return chain_time(infos, now), errors


@dataclass
class Loaded:
    """An inventory's drills file, parsed and checked."""

    path: Path
    drills: Drills
    problems: list[Problem] = field(default_factory=list)
    delegates: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def check_inventory(
    inventory: inv_mod.Inventory,
    runbooks: Mapping[str, Runbook],
    now: datetime,
    chain: ChainTime | None = None,
    path: Path | None = None,
) -> Loaded | None:
    """The inventory's drills file (or `path`) parsed and checked; None when the inventory has none."""
    path = path or drills_file(inventory.path)
    if not path.is_file():
        return None
    drills, problems = load(path)
    n = len(inventory.delegates)
    problems += check(drills, runbooks, delegates=n, now=now, chain=chain)
    return Loaded(path, drills, problems, n)


def require(inventory: inv_mod.Inventory, runbooks: Mapping[str, Runbook], now: datetime,
            chain: ChainTime | None = None) -> Loaded:  # fmt: skip
    """As `check_inventory`, but an inventory without a drills file is an error that says where it looked."""
    loaded = check_inventory(inventory, runbooks, now, chain)
    if loaded is None:
        raise ScheduleError(f"no drill schedules: {drills_file(inventory.path)} does not exist (docs/schedules.md)")
    return loaded
