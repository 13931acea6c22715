"""ansible-lint on playbooks/ at the production profile (.ansible-lint) reports nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_playbooks_pass_ansible_lint_at_the_production_profile() -> None:
    beside = Path(sys.executable).parent / "ansible-lint"
    lint = str(beside) if beside.exists() else shutil.which("ansible-lint")
    assert lint, "ansible-lint is not installed (it is in the dev extra: pip install -e '.[dev]')"
    env = {**os.environ, "LC_ALL": "C.UTF-8", "NO_COLOR": "1"}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", os.defpath)])
    proc = subprocess.run(
        [lint, "--offline", "--profile", "production", "-f", "pep8", "playbooks/"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    findings = proc.stdout.strip()
    assert proc.returncode == 0 and not findings, f"ansible-lint (exit {proc.returncode}):\n{findings}\n{proc.stderr[-2000:]}"
    assert "Profile 'production' was required, and it passed" in proc.stderr
