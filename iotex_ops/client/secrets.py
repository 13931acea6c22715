"""Passwords and private keys: where they come from, and that they are never shown.

A password comes from exactly one source: `--password-file PATH` (its first line), `--password-env NAME`
(the variable's value), `--password-stdin` (the first line of stdin), else a prompt when stdin is a
terminal. Without a terminal and without a source, the command refuses (it never waits for input nobody
will type). There is no `--password VALUE`: a value on the command line is visible to every user of the
host in the process list and stays in shell history.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from iotex_ops.client.errors import ClientError


class Secret:
    """A secret string: its repr and str never show it; `reveal()` is the one way to read it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__

    def __reduce__(self) -> str:  # never pickled into a cache or a log by accident
        raise TypeError("a Secret cannot be pickled")


@dataclass(frozen=True)
class PasswordSource:
    file: Path | None = None
    env: str | None = None
    stdin: bool = False

    def __post_init__(self) -> None:
        given = [
            n for n, v in (("--password-file", self.file), ("--password-env", self.env), ("--password-stdin", self.stdin)) if v
        ]
        if len(given) > 1:
            raise ClientError(f"give one password source, not {' and '.join(given)}", "bad_input")

    def read(self, prompt: str, *, confirm: bool = False) -> Secret:
        if self.file is not None:
            try:
                lines = self.file.read_text().splitlines()
            except OSError as exc:
                raise ClientError(f"password file {self.file} cannot be read: {exc.strerror}", "no_password") from None
            return _nonempty(lines[0] if lines else "", f"password file {self.file}")
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise ClientError(f"environment variable {self.env} (--password-env) is not set", "no_password")
            return _nonempty(value, f"environment variable {self.env}")
        if self.stdin:
            return _nonempty(sys.stdin.readline().rstrip("\r\n"), "stdin")
        if not sys.stdin.isatty():
            raise ClientError(
                "a password is needed and stdin is not a terminal: give --password-file, --password-env or --password-stdin",
                "no_password",
            )
        import click

        value = click.prompt(prompt, hide_input=True, confirmation_prompt=confirm, err=True)
        return _nonempty(value, "the prompt")


def _nonempty(value: str, where: str) -> Secret:
    if not value:
        raise ClientError(f"the password from {where} is empty", "no_password")
    return Secret(value)


def read_private_key(source: Path | None, stdin: bool) -> Secret:
    """A private key (64 hex characters) to import: from a file, stdin, or a hidden prompt; never argv."""
    if source is not None:
        try:
            text = source.read_text().strip()
        except OSError as exc:
            raise ClientError(f"private key file {source} cannot be read: {exc.strerror}", "bad_input") from None
    elif stdin:
        text = sys.stdin.readline().strip()
    elif sys.stdin.isatty():
        import click

        text = click.prompt("private key (64 hex characters)", hide_input=True, err=True).strip()
    else:
        raise ClientError("stdin is not a terminal: give --private-key-file PATH or --private-key-stdin", "bad_input")
    text = text.removeprefix("0x")
    if len(text) != 64 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise ClientError("the private key is not 64 hex characters (it is not shown here)", "bad_input")
    return Secret(text)
