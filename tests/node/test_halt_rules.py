"""The halt height rules and the `halt-at` command line, without a node: absolute H, relative +N."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from iotex_node import admin as admin_mod
from iotex_node import cli as cli_mod
from iotex_node.controls import check_halt_height, halt_height_after
from iotex_node.errors import InvalidInput


def test_a_halt_height_is_above_what_is_final() -> None:
    assert check_halt_height(11, 10) == 11
    for bad, message in ((10, "at or below the finalized height 10"), (0, "must be positive"), ("11", "must be an integer")):
        with pytest.raises(InvalidInput, match=message):
            check_halt_height(bad, 10)


def test_a_relative_halt_is_resolved_against_the_finalized_height() -> None:
    assert halt_height_after(1, 10) == 11 and halt_height_after(5, 0) == 5
    for bad, message in ((0, "give at least 1"), (-3, "give at least 1"), ("2", "integer number of blocks"), (True, "integer")):
        with pytest.raises(InvalidInput, match=message):
            halt_height_after(bad, 10)


@pytest.mark.parametrize(
    ("arg", "body"),
    [("120", {"height": 120}), ("+3", {"after": 3}), (" +1 ", {"after": 1}), ("+0", {"after": 0}), ("--clear", {"clear": True})],
)
def test_halt_at_sends_a_height_a_relative_height_or_clear(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, arg: str, body: dict[str, Any]
) -> None:
    sent: list[tuple[str, str, Any]] = []

    def call(cfg: object, method: str, path: str, doc: Any = None) -> dict[str, Any]:
        sent.append((method, path, doc))
        return {"halted": None, "paused": False, "standby": False, "halt_height": 123, "name": "n", "finalized_height": 120}

    monkeypatch.setattr(admin_mod, "call", call)
    monkeypatch.setattr("iotex_node.config.load", lambda home: object())
    res = CliRunner().invoke(cli_mod.main, ["admin", "halt-at", "--home", str(tmp_path), "--", arg] if arg != "--clear"
                             else ["admin", "halt-at", "--home", str(tmp_path), "--clear"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert sent == [("POST", "/halt", body)]  # the node checks the values (and refuses +0)
    assert "halt at 123" in res.output


@pytest.mark.parametrize(("args", "message"), [(["+x"], "not a height"), (["ten"], "not a height"), ([], "give a HEIGHT")])
def test_halt_at_refuses_what_is_not_a_height(tmp_path: Path, args: list[str], message: str) -> None:
    res = CliRunner().invoke(cli_mod.main, ["admin", "halt-at", "--home", str(tmp_path), *args])
    assert res.exit_code == 2 and message in res.output
