from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from iotex_ops.lab import LocalNet
from tests import unit_tier
from tests.unit_tier import pytest_runtest_makereport, pytest_runtest_protocol  # the unit tier's guard

unit_tier.install()
__all__ = ["pytest_runtest_makereport", "pytest_runtest_protocol"]


@pytest.fixture
def localnet_factory(tmp_path: Path) -> Iterator[object]:
    """Make LocalNets under tmp_path; every process they started is stopped, also on failure."""
    nets: list[LocalNet] = []

    def make(delegates: int = 4, full_nodes: int = 0, **kw: object) -> LocalNet:
        net = LocalNet.generate(tmp_path / f"net{len(nets)}", delegates, full_nodes, **kw)  # type: ignore[arg-type]
        nets.append(net)
        return net

    yield make
    for net in nets:
        net.stop()
