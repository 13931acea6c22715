"""Check a rendered directory with the real tools: promtool (config, rules, rule unit tests) and amtool."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from iotex_ops.alerting.errors import AlertingError
from iotex_ops.alerting.render import ALERTMANAGER_FILE, PROMETHEUS_FILE, RULES_FILE, RULES_TEST_FILE

PROMTOOL = "promtool"
AMTOOL = "amtool"
PACKAGES = {PROMTOOL: "prometheus", AMTOOL: "prometheus-alertmanager"}
TIMEOUT_S = 120.0
# Alertmanager settings that name a file it reads at run time (amtool does not look at them).
_FILE_KEYS = ("credentials_file", "routing_key_file", "service_key_file", "ca_file", "cert_file", "key_file", "password_file")


@dataclass(frozen=True)
class CheckRun:
    """One check: the command, its exit status and its output (what a person fixing it needs to read)."""

    name: str
    file: str
    command: tuple[str, ...]
    rc: int | None  # None: it did not finish
    output: str

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.output.strip().splitlines()[-lines:])

    def __str__(self) -> str:
        status = "ok" if self.ok else ("timed out" if self.rc is None else f"exit {self.rc}")
        head = f"{self.name} ({self.file}): {status}"
        return head if self.ok else f"{head}\n{self.tail()}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "file": self.file,
            "command": list(self.command),
            "rc": self.rc,
            "ok": self.ok,
            "output": self.output,
        }


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise AlertingError(
            f"{name} is not installed (Debian package {PACKAGES[name]}): as root run "
            "`apt-get install prometheus prometheus-alertmanager` (or `make lab-deps`)"
        )
    return path


def _run(name: str, file: Path, argv: list[str], cwd: Path) -> CheckRun:
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or "") if isinstance(exc.stdout, str) else ""
        return CheckRun(name, str(file), tuple(argv), None, f"{out}\ntimed out after {TIMEOUT_S:.0f}s")
    return CheckRun(name, str(file), tuple(argv), proc.returncode, (proc.stdout + proc.stderr).strip())


def _referenced_files(doc: Any) -> list[str]:
    found: list[str] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k in _FILE_KEYS and isinstance(v, str):
                found.append(v)
            else:
                found += _referenced_files(v)
    elif isinstance(doc, list):
        for item in doc:
            found += _referenced_files(item)
    return found


def _files_check(directory: Path) -> CheckRun:
    path = directory / ALERTMANAGER_FILE
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        return CheckRun("referenced files", str(path), (), 1, f"cannot read {path}: {exc}")
    missing = []
    for f in dict.fromkeys(_referenced_files(doc)):
        p = (directory / f) if not Path(f).is_absolute() else Path(f)
        if not p.is_file():
            missing.append(f"{f} does not exist on this machine")
    return CheckRun("referenced files", str(path), (), 1 if missing else 0, "\n".join(missing))


def run_checks(directory: str | Path, files: bool = True) -> list[CheckRun]:
    """Every check of a rendered directory, passed or not. `files`: also that the key and token files exist
    (true on the monitoring host; a controller rendering for production does not have them)."""
    d = Path(directory)
    for name in (PROMETHEUS_FILE, ALERTMANAGER_FILE):
        if not (d / name).is_file():
            raise AlertingError(f"{d} has no {name}: render it first (`iotex-ops monitoring render -i INVENTORY --out {d}`)")
    promtool, amtool = _binary(PROMTOOL), _binary(AMTOOL)
    runs = [_run("promtool check config", d / PROMETHEUS_FILE, [promtool, "check", "config", PROMETHEUS_FILE], d)]
    if (d / RULES_FILE).is_file():
        runs.append(_run("promtool check rules", d / RULES_FILE, [promtool, "check", "rules", RULES_FILE], d))
    if (d / RULES_TEST_FILE).is_file():
        runs.append(_run("promtool test rules", d / RULES_TEST_FILE, [promtool, "test", "rules", RULES_TEST_FILE], d))
    runs.append(_run("amtool check-config", d / ALERTMANAGER_FILE, [amtool, "check-config", ALERTMANAGER_FILE], d))
    if files:
        runs.append(_files_check(d))
    return runs


def check(directory: str | Path, files: bool = True) -> list[CheckRun]:
    """The checks of a rendered directory that failed, each with its tool's output (empty: all good)."""
    return [r for r in run_checks(directory, files) if not r.ok]
