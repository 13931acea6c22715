"""Lazy exports for a package's `__init__`: a name is imported from its module on first use, so that
`import iotex_ops.x` stays cheap for the command line (tests/ops/test_cli_startup.py)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def exports(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """The package's module-level `__getattr__`: `where` maps each exported name to its submodule; the
    value is kept in the package once imported."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
