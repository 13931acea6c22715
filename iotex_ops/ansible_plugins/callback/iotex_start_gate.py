"""Hold a playbook run at its start until a file says go.

`lab up` starts ansible-playbook as soon as the inventory is written, while it still makes the namespace
hosts, keys, genesis and releases that the plays use: Ansible's own start (imports, inventory, parsing the
plays and roles: 0.3-0.6 s on a 2-core machine) overlaps that preparation instead of following it
(docs/performance.md). The run waits at `v2_playbook_on_start`, after everything is parsed and before any host
is contacted, until the file named by $IOTEX_OPS_START_GATE exists: "open" lets it go on; anything else ends it
with that text. Without the variable nothing waits. The toolkit enables this callback only for such a run
(iotex_ops.ansible.run_playbook's `start_gate`); plain `ansible-playbook` never loads it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: iotex_start_gate
type: aggregate
short_description: hold the run at its start until the file in $IOTEX_OPS_START_GATE says open
description:
  - Waits at the playbook's start for the file named by IOTEX_OPS_START_GATE; "open" goes on, other text ends the run.
requirements:
  - enabled in callbacks_enabled
"""

GATE_ENV = "IOTEX_OPS_START_GATE"
TIMEOUT_ENV = "IOTEX_OPS_START_GATE_TIMEOUT"
OPEN = "open"
DEFAULT_TIMEOUT_S = 300.0
POLL_S = 0.01
EXIT_GRACE_S = 0.3


def wait_for_gate(path: Path, timeout_s: float, sleep: Any = time.sleep) -> str | None:
    """None once the gate says open; why not otherwise (its text, or that it never came)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            if time.monotonic() >= deadline:
                return f"the run's start gate {path} did not open within {timeout_s:g} s (its caller is gone?)"
            sleep(POLL_S)
            continue
        return None if text == OPEN else f"the run was called off before it started: {text or 'no reason given'}"


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "iotex_start_gate"
    CALLBACK_NEEDS_ENABLED = True

    def v2_playbook_on_start(self, playbook: Any) -> None:
        gate = os.environ.get(GATE_ENV)
        if not gate:
            return
        why = wait_for_gate(Path(gate), float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S))
        if why is not None:
            self._display.error(why)
            # ansible-runner reads the output through a pty, which drops what was not read when it closes
            time.sleep(EXIT_GRACE_S)
            # SystemExit, not an exception: Ansible turns a callback's exception into a warning and goes on
            raise SystemExit(1)
