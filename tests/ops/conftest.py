"""One local lab shared by the lab test modules (alerting end to end, the remediation runbooks, the drills):
a lab costs ~30 s to bring up, and the suite has a 15-minute budget. It comes up in whichever of them asks
first and each leaves it healthy, so any one module also runs alone, in any order. The drills module,
whose rehearsal starts a new chain, takes it down (before the netns lab comes up); a module after it
brings up a new one. The lab lives in a directory of its own under /tmp, never the operator's lab."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from iotex_ops.lab import lab as lab_mod
from tests.ops.lab_checks import Footprint, cli_up


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
