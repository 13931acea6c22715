"""The suite's own ground: the unit tier's guard (tests/unit_tier.py), and state of its own.

Every test (and every `iotex-ops` process a test starts) finds the lab and the runs under a directory of
this session, never the operator's (`~/.local/state/iotex-ops`): a lab that `make rehearsal` left up keeps
running untouched while `make test` brings up labs of its own, on free ports, and takes them down. The
session says so when it finds such a lab: it shares the machine's CPU with the suite.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from iotex_ops.lab import LocalNet
from tests import unit_tier
from tests.unit_tier import (  # the unit tier's guard
    pytest_runtest_call,
    pytest_runtest_makereport,
    pytest_runtest_setup,
    pytest_runtest_teardown,
)

unit_tier.install()
__all__ = ["pytest_runtest_call", "pytest_runtest_makereport", "pytest_runtest_setup", "pytest_runtest_teardown"]

# what the toolkit would use by default (read before the session points the variables at its own directory)
OPERATOR_LAB = Path(os.environ.get("IOTEX_OPS_LAB_DIR", "~/.local/state/iotex-ops/lab")).expanduser()
_SESSION_DIR: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _SESSION_DIR
    _SESSION_DIR = Path(tempfile.mkdtemp(prefix="iotex-ops-tests-"))
    os.environ["IOTEX_OPS_LAB_DIR"] = str(_SESSION_DIR / "lab")
    os.environ["IOTEX_OPS_STATE_DIR"] = str(_SESSION_DIR / "state")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _SESSION_DIR is not None:
        shutil.rmtree(_SESSION_DIR, ignore_errors=True)


def pytest_sessionstart(session: pytest.Session) -> None:
    if (OPERATOR_LAB / "lab.json").exists():
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"note: a lab is set up at {OPERATOR_LAB} (`iotex-ops lab status`; `make rehearsal` leaves it up). "
                "The tests leave it alone: they use labs, ports and state of their own. It shares the CPU while it runs."
            )


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
