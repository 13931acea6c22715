"""Run the toolkit's playbooks (iotex_ops.content) through ansible-runner, with a per-run directory and an event stream.

ansible-playbook runs as a child process (ansible-runner's default), so Ansible is never imported here.
Every run gets its own private_data_dir under `runs_dir`; its artifacts/<ident>/job_events hold the event
stream, which also feeds `on_event` (and so a `ProgressView`) while the run goes.

Secrets: pass them as files (paths in extravars), never as values. ansible-runner is told not to write
env/ files (suppress_env_files), and the environment it records in artifacts/<ident>/command (the whole
controller environment) is reduced to variable names once the run ends.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from iotex_ops import content
from iotex_ops.errors import OpsError

DEFAULT_RUNS_DIR = Path("~/.local/state/iotex-ops/runs")

# Settings from the notes in DESIGN.md; none of them is a secret, so they may be recorded.
BASE_ENV: dict[str, str] = {
    "LC_ALL": "C.UTF-8",
    "LANG": "C.UTF-8",
    "ANSIBLE_HOST_KEY_CHECKING": "True",  # ansible-runner turns it off unless told
    "ANSIBLE_RETRY_FILES_ENABLED": "False",
    "ANSIBLE_NOCOLOR": "True",
    "ANSIBLE_FORCE_COLOR": "False",
    "ANSIBLE_NO_TARGET_SYSLOG": "True",
}

# What makes a run fast (issue 13, docs/performance.md); none of it is a secret. The playbooks stay plain
# Ansible: ansible.cfg at the root of a checkout says the same for `ansible-playbook` run from there, and
# tests/ops/test_ansible_config.py keeps the two equal.
SPEED_ENV: dict[str, str] = {
    # one process per module, fed on stdin: no remote temp file, chmod and rm around every task
    "ANSIBLE_PIPELINING": "True",
    # one SSH connection per host for the whole run and the next ones (no -C: the artifact is gzip already)
    "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=300s",
    # the plays gather no facts (gather_facts: false); this makes it the default for any play that forgets
    "ANSIBLE_GATHERING": "explicit",
    # every host of a network at once (Ansible's default is 5)
    "ANSIBLE_FORKS": "25",
    # the toolkit's inventories are YAML (iotex_ops.inventory reads nothing else): ansible-playbook loads only
    # that inventory plugin, not six, before its first task (about 0.05 s of every run's single-threaded start)
    "ANSIBLE_INVENTORY_ENABLED": "yaml",
}
# The strategy: `free` lets each host run its tasks without waiting for the slowest host at every task (the
# plays have no step that needs the hosts in lockstep: each node's config depends on the inventory only).
# `mitogen_free` / `mitogen_linear` use Mitogen for Ansible when it is installed (docs/performance.md).
# Mitogen for Ansible supports ansible-core 2.19 (since mitogen 0.3.25; it prints ansible-core's deprecation
# warning for third-party strategy plugins) and is a dependency: `mitogen_free` is the default when it is
# installed, `free` otherwise (and in ansible.cfg, which cannot name a venv's plugin directory).
STRATEGY_ENV_VAR = "IOTEX_OPS_ANSIBLE_STRATEGY"
FALLBACK_STRATEGY = "free"
STRATEGIES = ("linear", "free", "mitogen_linear", "mitogen_free")

EventHandler = Callable[[dict[str, Any]], None]


def _mitogen_strategy_dir() -> Path | None:
    """The toolkit's mitogen_free and mitogen_linear (Mitogen's, without its CPU pinning:
    iotex_ops/ansible_plugins/strategy/_unpinned.py), when Mitogen for Ansible is installed."""
    import importlib.util

    spec = importlib.util.find_spec("ansible_mitogen")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(__file__).resolve().parent / "ansible_plugins" / "strategy"


def default_strategy() -> str:
    """`mitogen_free` when Mitogen for Ansible is installed, else `free`."""
    plugins = _mitogen_strategy_dir()
    return "mitogen_free" if plugins is not None and plugins.is_dir() else FALLBACK_STRATEGY


def speed_env(strategy: str | None = None) -> dict[str, str]:
    """The settings every run of the toolkit gets, for `strategy` (default: $IOTEX_OPS_ANSIBLE_STRATEGY, else
    default_strategy())."""
    strategy = strategy or os.environ.get(STRATEGY_ENV_VAR) or default_strategy()
    if strategy not in STRATEGIES:
        raise OpsError(f"Ansible strategy {strategy!r} (${STRATEGY_ENV_VAR}) is not one of {', '.join(STRATEGIES)}")
    env = {**SPEED_ENV, "ANSIBLE_STRATEGY": strategy}
    if strategy.startswith("mitogen_"):
        plugins = _mitogen_strategy_dir()
        if plugins is None or not plugins.is_dir():
            raise OpsError(f"Ansible strategy {strategy} needs Mitogen for Ansible (pip install mitogen), which is not installed")
        env["ANSIBLE_STRATEGY_PLUGINS"] = str(plugins)
    return env


@dataclass(frozen=True)
class PlaybookResult:
    status: str  # "successful" | "failed" | "timeout" | "canceled"
    rc: int
    changed: dict[str, int]  # per host
    failed: dict[str, int]  # per host (failures + unreachable)
    artifacts_dir: Path
    events: int

    @property
    def ok(self) -> bool:
        return self.status == "successful" and self.rc == 0 and not any(self.failed.values())


@dataclass(frozen=True)
class HostFailure:
    host: str
    task: str
    message: str
    unreachable: bool = False


class PlaybookFailed(OpsError):
    """A playbook run did not succeed: the result, and each failing host's task and message."""

    def __init__(self, playbook: str, result: PlaybookResult, failures: list[HostFailure]) -> None:
        self.playbook = playbook
        self.result = result
        self.failures = failures
        lines = [f"playbook {playbook} {result.status} (rc {result.rc}); artifacts in {result.artifacts_dir}"]
        for f in failures:
            kind = "unreachable" if f.unreachable else "failed"
            lines.append(f"  {f.host}: {kind} at task {f.task!r}: {f.message}")
        super().__init__("\n".join(lines))


def resolve_playbook(playbook: str | Path) -> Path:
    """A path as given if it exists, else one of the toolkit's playbooks by name (`site`, `site.yml`)."""
    p = Path(playbook)
    if p.is_file():
        return p.resolve()
    name = p.name if p.suffix in (".yml", ".yaml") else f"{p.name}.yml"
    playbooks = content.playbooks_dir()
    candidate = playbooks / name
    if candidate.is_file():
        return candidate
    known = ", ".join(sorted(x.stem for x in playbooks.glob("*.yml"))) or "none"
    raise OpsError(f"no playbook {playbook!r} (neither a file nor one of {playbooks}: {known})")


def _failure_message(res: dict[str, Any]) -> str:
    msg = res.get("msg") or res.get("stderr") or res.get("reason") or ""
    items = res.get("results")
    if isinstance(items, list):  # a loop: the failed items' own messages say more than "One or more items failed"
        detail = [_failure_message(i) for i in items if isinstance(i, dict) and i.get("failed")]
        msg = "; ".join(d for d in detail if d) or msg
    if not msg and res.get("censored"):
        msg = str(res["censored"])
    text = str(msg).strip()
    return text if len(text) <= 500 else text[:500] + "..."


def failures_from_events(events: list[dict[str, Any]]) -> list[HostFailure]:
    out: list[HostFailure] = []
    for ev in events:
        kind = ev.get("event")
        if kind not in ("runner_on_failed", "runner_on_unreachable"):
            continue
        data = ev.get("event_data") or {}
        if kind == "runner_on_failed" and data.get("ignore_errors"):
            continue
        res = data.get("res") or {}
        out.append(
            HostFailure(
                host=str(data.get("host", "?")),
                task=str(data.get("task", "?")),
                message=_failure_message(res if isinstance(res, dict) else {}),
                unreachable=kind == "runner_on_unreachable",
            )
        )
    return out


def _scrub_command_env(artifacts_dir: Path, keep: dict[str, str]) -> None:
    """ansible-runner records the child's whole environment (the controller's) in artifacts/<ident>/command:
    keep our own settings, and only the names of everything else."""
    path = artifacts_dir / "command"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    env = doc.get("env")
    if isinstance(env, dict):
        # What ansible-runner added itself (callback settings) is not from the controller: keep it too.
        doc["env"] = {k: (v if k in keep or k not in os.environ else "<redacted>") for k, v in env.items()}
        tmp = path.with_name(".command.tmp")
        tmp.write_text(json.dumps(doc))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)


def _ansible_playbook() -> str:
    """The ansible-playbook beside this interpreter (a venv's bin/ need not be on PATH), else PATH's.
    ansible-runner only runs `ansible-playbook` by name (a `binary` drops the playbook argument), so its
    directory goes first on the child's PATH."""
    beside = Path(sys.executable).parent / "ansible-playbook"
    found = str(beside) if os.access(beside, os.X_OK) else shutil.which("ansible-playbook")
    if found is None:
        raise OpsError("ansible-playbook not found beside this Python nor on PATH (pip install ansible-core)")
    return found


def run_playbook(
    playbook: str | Path,
    inventory: Path,
    *,
    extravars: dict[str, object] | None = None,
    limit: str | None = None,
    check: bool = False,
    tags: list[str] | None = None,
    runs_dir: Path | None = None,
    on_event: Callable[[dict[str, object]], None] | None = None,
    timeout: float | None = None,
    raise_on_failure: bool = True,
    strategy: str | None = None,
) -> PlaybookResult:
    """Run a playbook (a path, or the name of one of the toolkit's playbooks) on `inventory`; `strategy` is
    Ansible's (see speed_env)."""
    import ansible_runner

    path = resolve_playbook(playbook)
    inventory = Path(inventory).resolve()
    if not inventory.exists():
        raise OpsError(f"inventory {inventory} does not exist")
    runs = Path(runs_dir or DEFAULT_RUNS_DIR).expanduser().resolve()
    runs.mkdir(parents=True, exist_ok=True, mode=0o700)
    ident = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{path.stem}-{os.getpid()}-{time.monotonic_ns() % 10**9:09d}"
    private = runs / ident
    private.mkdir(mode=0o700)
    # ControlPath sockets must fit in sun_path (108 bytes): a short directory, never the run's own.
    cp_dir = Path(f"/tmp/iotex-ansible-cp-{os.getuid()}")  # noqa: S108 - short on purpose, owner-only below
    cp_dir.mkdir(mode=0o700, exist_ok=True)
    envvars = {
        **BASE_ENV,
        **speed_env(strategy),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(cp_dir),
        "ANSIBLE_LOCAL_TEMP": str(private / "tmp"),
        "ANSIBLE_ROLES_PATH": str(content.roles_dir()),
        "PATH": os.pathsep.join([str(Path(_ansible_playbook()).parent), os.environ.get("PATH", os.defpath)]),
    }
    cmdline: list[str] = []
    if check:
        cmdline.append("--check")
    if tags:
        cmdline += ["--tags", ",".join(tags)]
    events: list[dict[str, Any]] = []

    def handler(ev: dict[str, Any]) -> bool:
        events.append(ev)
        if on_event is not None:
            on_event(ev)
        return True  # keep the event in artifacts/<ident>/job_events

    runner = ansible_runner.run(
        private_data_dir=str(private),
        ident="run",
        playbook=str(path),
        project_dir=str(path.parent),
        inventory=str(inventory),
        extravars=dict(extravars or {}),
        limit=limit,
        cmdline=" ".join(cmdline) or None,
        envvars=envvars,
        suppress_env_files=True,
        quiet=True,
        event_handler=handler,
        timeout=int(timeout) if timeout else None,
        rotate_artifacts=0,
    )
    artifacts = Path(runner.config.artifact_dir)
    _scrub_command_env(artifacts, envvars)
    stats: dict[str, dict[str, int]] = runner.stats or {}
    hosts = set().union(*(set(v) for v in stats.values() if isinstance(v, dict))) if stats else set()
    changed = {h: int(stats.get("changed", {}).get(h, 0)) for h in sorted(hosts)}
    failed = {h: int(stats.get("failures", {}).get(h, 0)) + int(stats.get("dark", {}).get(h, 0)) for h in sorted(hosts)}
    result = PlaybookResult(
        status=str(runner.status),
        rc=int(runner.rc if runner.rc is not None else -1),
        changed=changed,
        failed=failed,
        artifacts_dir=artifacts,
        events=len(events),
    )
    if raise_on_failure and not result.ok:
        raise PlaybookFailed(path.name, result, failures_from_events(events))
    return result


def load_events(artifacts_dir: Path) -> list[dict[str, Any]]:
    """The run's events from artifacts/<ident>/job_events, in order."""
    d = Path(artifacts_dir) / "job_events"
    out = []
    for p in d.glob("*.json"):
        out.append(json.loads(p.read_text()))
    out.sort(key=lambda e: int(e.get("counter", 0)))
    return out


@dataclass(frozen=True)
class TaskTime:
    """How long one task took on one host, from the run's events (ansible-runner times each result)."""

    task: str
    role: str
    host: str
    seconds: float
    status: str  # ok | changed | failed | skipped | unreachable


_RESULTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_skipped": "skipped",
    "runner_on_unreachable": "unreachable",
}


def task_times(events: list[dict[str, Any]]) -> list[TaskTime]:
    """Every host's time in every task of a run, in the order the results came."""
    out: list[TaskTime] = []
    for ev in events:
        status = _RESULTS.get(str(ev.get("event", "")))
        data = ev.get("event_data")
        if status is None or not isinstance(data, dict) or "duration" not in data:
            continue
        res = data.get("res")
        if status == "ok" and isinstance(res, dict) and res.get("changed"):
            status = "changed"
        out.append(
            TaskTime(
                task=str(data.get("task", "?")),
                role=str(data.get("role", "") or ""),
                host=str(data.get("host", "?")),
                seconds=float(data.get("duration") or 0.0),
                status=status,
            )
        )
    return out


@dataclass
class HostProgress:
    task: str = ""
    ok: int = 0
    changed: int = 0
    failed: int = 0
    skipped: int = 0
    unreachable: bool = False


@dataclass
class ProgressView:
    """Per-host progress of a run, from its Ansible events; render it with rich (Live or print)."""

    title: str = "playbook"
    hosts: dict[str, HostProgress] = field(default_factory=dict)
    play: str = ""
    task: str = ""

    def __call__(self, event: dict[str, object]) -> None:
        self.consume(event)

    def consume(self, event: dict[str, object]) -> None:
        kind = str(event.get("event", ""))
        data = event.get("event_data")
        data = data if isinstance(data, dict) else {}
        if kind == "playbook_on_play_start":
            self.play = str(data.get("play", ""))
            return
        if kind == "playbook_on_task_start":
            self.task = str(data.get("task", ""))
            return
        host = data.get("host")
        if not isinstance(host, str):
            return
        hp = self.hosts.setdefault(host, HostProgress())
        if kind == "runner_on_start":
            hp.task = str(data.get("task", ""))
        elif kind == "runner_on_ok":
            hp.ok += 1
            hp.changed += 1 if (data.get("res") or {}).get("changed") else 0
        elif kind == "runner_on_failed":
            if data.get("ignore_errors"):
                hp.ok += 1
            else:
                hp.failed += 1
        elif kind == "runner_on_skipped":
            hp.skipped += 1
        elif kind == "runner_on_unreachable":
            hp.unreachable = True
            hp.failed += 1

    def __rich__(self) -> Table:
        table = Table(title=f"{self.title}: {self.play}" if self.play else self.title)
        for col in ("host", "task", "ok", "changed", "failed", "skipped"):
            table.add_column(col)
        for name in sorted(self.hosts):
            hp = self.hosts[name]
            failed = f"[red]{hp.failed}[/red]" if hp.failed else "0"
            task = "[red]unreachable[/red]" if hp.unreachable else hp.task
            table.add_row(name, task, str(hp.ok), str(hp.changed), failed, str(hp.skipped))
        return table
