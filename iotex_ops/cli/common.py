"""What every `iotex-ops` command group shares: the console it prints to, and OpsError as a message."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console

from iotex_ops.errors import OpsError

F = TypeVar("F", bound=Callable[..., Any])


def make_console(width: int | None = None) -> Console:
    """Made per command, so that it writes to the stdout click (or CliRunner) gives the command."""
    return Console(file=sys.stdout, highlight=False, soft_wrap=True, width=width)


def ops_errors(fn: F) -> F:
    """An OpsError is a message and exit status 2, as under the main `iotex-ops` group (for groups that also
    run on their own, like `python -m iotex_ops.cli monitoring`)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except OpsError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]
