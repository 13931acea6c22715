"""One local lab shared by the lab test modules (alerting end to end, the remediation runbooks, the drills):
a lab costs ~30 s to bring up, and the suite has a time budget. It comes up in whichever of them asks
first and each leaves it healthy, so any one module also runs alone, in any order. The drills module,
whose rehearsal starts a new chain and upgrades every node, runs after every other module on the shared lab
and takes it down; the netns modules run last, with no local lab beside them (`pytest_collection_modifyitems`
below: the lab comes up once per suite, not again after the rehearsal). The lab lives in a directory of its
own under /tmp, never the operator's lab."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from iotex_ops.lab import lab as lab_mod
from tests.ops.lab_checks import Footprint, cli_up

# modules run after all others, in this order: the rehearsal on the shared lab (which it then takes down), then
# the netns labs'
LAST_MODULES = ("test_drills.py", "test_drills_netns.py", "test_failover_netns.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LAST_MODULES.index(name) + 1 if name in LAST_MODULES else 0

    items.sort(key=rank)  # stable: the order inside each module, and of the other modules, is kept


class SharedLab:
    def __init__(self) -> None:
        self._dir: Path | None = None
        self._state: lab_mod.LabState | None = None
        self.footprint: Footprint | None = None  # what lab_checks.check_up saw, for check_gone

    def get(self) -> lab_mod.LabState:
        if self._state is None:
            # a short directory under /tmp: unix socket paths are at most 107 bytes
            self._dir = Path(tempfile.mkdtemp(prefix="lab", dir="/tmp"))
            try:
                self._state = cli_up(self._dir / "lab", "local")  # through `iotex-ops lab up`, as a user would
            except BaseException:
                self.down()
                raise
        return self._state

    def down(self) -> None:
        if self._dir is not None:
            lab_mod.down(self._dir / "lab")
            shutil.rmtree(self._dir, ignore_errors=True)
        self._dir, self._state, self.footprint = None, None, None


@pytest.fixture(scope="session")
def shared_lab() -> Iterator[SharedLab]:
    shared = SharedLab()
    yield shared
    shared.down()
