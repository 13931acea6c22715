"""The flood limits matter: the same flood (iotex_ops/flood) against a one-delegate node process with its limits
on, then with them off (every limit set very high). With them on, slow clients are cut at the header timeout,
one client's connections beyond its cap are answered 429 with Retry-After, idle P2P sockets are cut at the
handshake timeout and no request hangs; with them off, nothing pushes back and the slow clients and idle P2P
sockets hold theirs (the node's open files) for the whole flood. `bench/flood.py --solo` prints the figures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from iotex_ops.flood import attacks as fa
from iotex_ops.flood.solo import LIMITS_OFF, flood_solo

pytestmark = [pytest.mark.slow, pytest.mark.network]

FLOOD_S = 6.0
ON = {"header_timeout_s": 2.0, "max_connections_per_client": 32, "handshake_timeout_s": 2.0}
PLAN = {"attacks": ("connections", "slowloris", "p2p_idle"), "connections": 120, "slow_clients": 150, "p2p_sockets": 150}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    yield {
        "on": flood_solo(tmp_path_factory.mktemp("on"), ON, FLOOD_S, **PLAN),
        "off": flood_solo(tmp_path_factory.mktemp("off"), LIMITS_OFF, FLOOD_S, **PLAN),
    }


def test_with_the_limits_on_the_node_pushes_back_and_cuts_slow_clients(results: dict[str, dict[str, Any]]) -> None:
    on = results["on"]
    t: fa.Tally = on["tally"]
    assert t.statuses[429] > 0 and t.retry_after_missing == 0, t.as_dict()
    assert t.hangs == 0 and not [s for s in t.statuses if s >= 500 and s != 503], t.as_dict()
    assert t.slow_held_s <= ON["header_timeout_s"] + 2.5, t.as_dict()
    assert on["recovery_s"] < 5, on


def test_with_the_limits_off_the_same_flood_holds_the_nodes_sockets(results: dict[str, dict[str, Any]]) -> None:
    on, off = results["on"], results["off"]
    t: fa.Tally = off["tally"]
    assert t.statuses[429] == 0, t.as_dict()  # nothing pushes back
    assert t.slow_held_s >= FLOOD_S - 1.5, t.as_dict()  # slow clients held their sockets the whole flood
    assert t.p2p_held_s >= FLOOD_S - 1.5, t.as_dict()  # and the idle P2P sockets theirs
    # the held sockets are the node's open files: at least the 150 slow clients and 150 idle P2P sockets
    assert off["peak_fds"] >= 300, off["peak_fds"]
    assert on["tally"].p2p_held_s <= ON["handshake_timeout_s"] + 2.5, on["tally"].as_dict()
