"""schemathesis, with every check, against a real node's API and the OpenAPI document that node serves.

The CLI runs all its phases (examples, coverage, fuzzing, stateful) with all checks: no 5xx, documented status
codes, content types, headers and response schemas; schema-valid requests accepted and schema-violating ones
refused; 405 with a true Allow header for undocumented methods. It is deterministic (hypothesis' derandomize)
and bounded in examples and time (schemathesis.toml beside this file; schemathesis_hooks.py signs the
actions it generates and draws addresses with valid checksums, two things a JSON schema cannot say).
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from iotex_ops.traffic import read_accounts
from tests.node.test_api import CHAIN_ID, NetHomes, make_testnet
from tests.node.test_api_fuzz import NodeThread

pytestmark = pytest.mark.slow  # a schemathesis process, for ~30 s

HERE = Path(__file__).parent
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
# Well above a normal run (about 30 s on a busy 2-core machine), so that only a hang or a runaway trips it.
RUN_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def schema_net(tmp_path_factory: pytest.TempPathFactory) -> NetHomes:
    return make_testnet(tmp_path_factory.mktemp("schema") / "net", accounts=3)


@pytest.fixture
def server(schema_net: NetHomes) -> Iterator[NodeThread]:
    # One client generating requests as fast as it can: it must reach the handlers, not the rate limiter.
    nt = NodeThread(schema_net.homes[0], rate_limit_per_second=1_000_000.0, rate_limit_burst=1_000_000)
    try:
        yield nt
    finally:
        nt.stop()


def test_schemathesis_all_checks_find_no_mismatch(
    server: NodeThread, schema_net: NetHomes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if not SCHEMATHESIS.exists():
        pytest.fail(f"{SCHEMATHESIS} is missing: install the dev extras (pip install -e '.[dev]')")
    secrets = [k.secret().hex() for k in read_accounts(schema_net.out)]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": str(HERE / "schemathesis_hooks.py"),
        "IOTEX_SCHEMA_CHAIN_ID": str(CHAIN_ID),
        "IOTEX_SCHEMA_KEYS": ",".join(secrets),
        "HYPOTHESIS_STORAGE_DIRECTORY": str(tmp_path / ".hypothesis"),
        "PYTHONPATH": os.pathsep.join(p for p in (str(HERE.parent.parent), os.environ.get("PYTHONPATH")) if p),
    }
    cmd = [str(SCHEMATHESIS), "--no-color", "--config-file", str(HERE / "schemathesis.toml"), "run",
           f"{server.node.api_url}/v1/openapi.json", "--checks", "all", "--workers", "1"]  # fmt: skip
    caplog.set_level(logging.WARNING)
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    elapsed = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"schemathesis found mismatches (exit {proc.returncode}):\n{out[-12000:]}"
    generated = re.search(r"(\d+) generated, (\d+) passed", out)
    assert generated is not None, out[-3000:]
    assert generated[1] == generated[2] and int(generated[1]) > 500, generated[0]
    assert "16 selected / 16 total" in out and "Tested: 16" in out, out[-3000:]
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in out, f"phase {phase} did not pass:\n{out[-3000:]}"
    # Bad input never costs the node a traceback or an ERROR line (a malformed request logs one WARNING at most).
    noisy = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not noisy, [f"{r.name}: {r.getMessage()[:200]}" for r in noisy[:5]]
    print(f"schemathesis: {generated[0]} in {elapsed:.1f} s")
