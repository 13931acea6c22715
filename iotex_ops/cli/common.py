"""What every `iotex-ops` command group shares: the console it prints to, and the one way an OpsError ends a command.

Every group is an `OpsGroup` (its commands are `OpsCommand`s, its subgroups `OpsGroup`s); a command that
stands alone (`exec`, `status`) is declared with `cls=OpsCommand`. A command raises an `OpsError` for what an
operator must fix (a bad inventory, a refused run, a lab that is not up); here it becomes one line,
`error: MESSAGE` on stderr, and exit status 2, also when a group runs on its own (`python -m iotex_ops.cli
monitoring ...`, a test's CliRunner). Other exit statuses belong to the commands that document them
(`runbook run`: 1 failed, 3 rollback failed; `inventory check`, `exec`, `monitoring check`: 1 a problem).
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click

from iotex_ops.errors import OpsError

if TYPE_CHECKING:
    from rich.console import Console

EXIT_OPS_ERROR = 2


def make_console(width: int | None = None) -> Console:
    """Made per command, so that it writes to the stdout click (or CliRunner) gives the command. rich is imported
    here, by the commands that print with it, not with the command line (`iotex-ops --help` starts without it)."""
    from rich.console import Console

    return Console(file=sys.stdout, highlight=False, soft_wrap=True, width=width)


def default_console(stderr: bool = False) -> Console:
    """rich's own default console (on stdout, or stderr), for the commands that print live views with it."""
    from rich.console import Console

    return Console(stderr=stderr)


def exit_with(exc: OpsError) -> NoReturn:
    """`error: MESSAGE` on stderr (no markup is interpreted: messages quote paths, hosts and output), exit 2."""
    click.echo(f"{click.style('error:', fg='red')} {exc}", err=True)
    sys.exit(EXIT_OPS_ERROR)


class OpsCommand(click.Command):
    """A command whose OpsError is a message and exit status 2 (see the module's docstring)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OpsError as exc:
            exit_with(exc)


class OpsGroup(click.Group):
    """The group class of every `iotex-ops` group: an OpsError is a message and exit status 2, in the group's
    own callback as in its commands'; commands and subgroups declared on it get the same classes."""

    command_class = OpsCommand
    group_class = type  # subgroups are OpsGroups too

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OpsError as exc:
            exit_with(exc)


class LazyOpsGroup(OpsGroup):
    """An OpsGroup whose subcommands are imported when they are used: `lazy` maps a command's name to
    "module:attribute". A command that runs imports its own group's module only, so that a quick command
    (`account balance`) does not pay for every group's imports (the scheduler's, the runbook engine's...).
    `--help` lists them all, importing each (help is not the path a script waits on)."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = self.lazy.get(cmd_name)
        if spec is not None and cmd_name not in self.commands:
            module, attr = spec.split(":")
            cmd = getattr(importlib.import_module(module), attr)
            if not isinstance(cmd, click.Command):
                raise TypeError(f"{spec} is not a click command")
            self.add_command(cmd, cmd_name)
        return super().get_command(ctx, cmd_name)
