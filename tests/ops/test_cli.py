"""The command line's layout: one group class, and one way an OpsError becomes a message and an exit status."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from iotex_ops.cli import main
from iotex_ops.cli.common import EXIT_OPS_ERROR, OpsCommand, OpsGroup
from iotex_ops.errors import OpsError

# The top group imports its groups when asked for them (LazyOpsGroup): load them all here, at collection, as the
# command line's own import did before. croniter's import (the schedule groups) runs `file` in a subprocess
# (platform.architecture), which the unit tier's guard refuses inside a test.
for _name in main.list_commands(click.Context(main)):
    main.get_command(click.Context(main), _name)


def _walk(cmd: click.Command, path: str = "iotex-ops") -> list[tuple[str, click.Command]]:
    out = [(path, cmd)]
    if isinstance(cmd, click.Group):
        ctx = click.Context(cmd)
        for name in cmd.list_commands(ctx):  # the top group's are imported when asked for (LazyOpsGroup)
            sub = cmd.get_command(ctx, name)
            assert sub is not None, f"{path} {name}"
            out += _walk(sub, f"{path} {name}")
    return out


def test_every_group_and_command_handles_ops_errors_the_same_way() -> None:
    tree = _walk(main)
    assert len(tree) > 30
    wrong = [path for path, c in tree if not isinstance(c, OpsGroup | OpsCommand)]
    assert wrong == []
    assert {"alertd", "exec", "inventory", "lab", "localnet", "monitoring", "pager", "playbook", "rehearsal", "runbook",
            "status"} <= set(main.list_commands(click.Context(main)))  # fmt: skip


@pytest.mark.parametrize("where", ["group", "command", "subgroup"])
def test_an_ops_error_is_one_line_on_stderr_and_exit_2(where: str) -> None:
    message = "inventory [prod]/hosts.yml: no host d9 (see `iotex-ops inventory check`)"  # brackets are not markup

    @click.group(cls=OpsGroup)
    def top() -> None:
        if where == "group":
            raise OpsError(message)

    @top.group()
    def sub() -> None:
        pass

    @sub.command()
    def leaf() -> None:
        raise OpsError(message)

    @top.command()
    def cmd() -> None:
        raise OpsError(message)

    args = ["sub", "leaf"] if where == "subgroup" else ["cmd"]
    res = CliRunner().invoke(top, args)
    assert res.exit_code == EXIT_OPS_ERROR == 2
    assert res.stderr == f"error: {message}\n" and res.stdout == ""
    assert isinstance(sub, OpsGroup) and isinstance(leaf, OpsCommand)


def test_a_standalone_command_handles_its_ops_errors() -> None:
    @click.command(cls=OpsCommand)
    def alone() -> None:
        raise OpsError("no lab is up")

    res = CliRunner().invoke(alone, [])
    assert (res.exit_code, res.stderr) == (2, "error: no lab is up\n")


@pytest.mark.slow  # starts processes
def test_python_dash_m_runs_the_command_line() -> None:
    # the monitoring role runs the generator this way with Ansible's own interpreter
    res = subprocess.run([sys.executable, "-m", "iotex_ops.cli", "monitoring", "render", "--help"],
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert res.returncode == 0 and "Usage: iotex-ops monitoring render" in res.stdout, res.stderr
    res = subprocess.run([sys.executable, "-m", "iotex_ops.cli", "lab", "status", "--dir", "/nonexistent/lab"],
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert res.returncode == 2 and res.stderr.startswith("error: no lab at /nonexistent/lab"), res.stderr
