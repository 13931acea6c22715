"""Turn `-e key=value` strings into a runbook's typed parameters, or name exactly what is wrong."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from iotex_ops.runbook.model import ParamError, Runbook

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def parse_extra(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """['version=1.0.1', 'to=40'] -> {'version': '1.0.1', 'to': '40'}."""
    out: dict[str, str] = {}
    for p in pairs:
        key, sep, value = p.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ParamError(f"-e {p!r}: expected key=value")
        if key in out:
            raise ParamError(f"-e {key} is given twice")
        out[key] = value
    return out


def _convert(name: str, typ: type, value: Any) -> Any:
    if typ is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ParamError(f"parameter {name}={value!r}: expected true or false")
    if typ is int:
        if isinstance(value, bool):
            raise ParamError(f"parameter {name}={value!r}: expected an integer")
        try:
            return int(str(value).strip())
        except ValueError:
            raise ParamError(f"parameter {name}={value!r}: expected an integer") from None
    if typ is float:
        try:
            out = float(str(value).strip())
        except ValueError:
            raise ParamError(f"parameter {name}={value!r}: expected a number") from None
        if out != out or out in (float("inf"), float("-inf")):
            raise ParamError(f"parameter {name}={value!r}: expected a finite number")
        return out
    return str(value)


def validate(runbook: Runbook, given: Mapping[str, Any]) -> dict[str, Any]:
    """Typed values for every parameter (defaults filled in); every problem reported at once."""
    known = {p.name: p for p in runbook.params}
    problems: list[str] = []
    for key in given:
        if key not in known:
            hint = f"; {runbook.name} takes: {', '.join(known)}" if known else f"; {runbook.name} takes no parameters"
            problems.append(f"unknown parameter {key!r}{hint}")
    out: dict[str, Any] = {}
    for p in runbook.params:
        if p.name not in given:
            if p.required:
                problems.append(f"parameter {p.name} is required ({p.help or p.type.__name__})")
            else:
                out[p.name] = p.default
            continue
        try:
            value = _convert(p.name, p.type, given[p.name])
        except ParamError as exc:
            problems.append(str(exc))
            continue
        if p.choices is not None and value not in p.choices:
            problems.append(f"parameter {p.name}={value!r}: must be one of {', '.join(map(str, p.choices))}")
        elif p.minimum is not None and value < p.minimum:
            problems.append(f"parameter {p.name}={value!r}: must be at least {p.minimum:g}")
        else:
            out[p.name] = value
    if problems:
        raise ParamError(f"{runbook.name}: " + "; ".join(problems))
    return out


def redacted(runbook: Runbook, params: Mapping[str, Any]) -> dict[str, Any]:
    secret = {p.name for p in runbook.params if p.secret}
    return {k: ("***" if k in secret else v) for k, v in params.items()}
