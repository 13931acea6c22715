"""Where the toolkit's content is: the Ansible playbooks (with their roles) and the runbooks.

One rule, in this one place, whether iotex-ops is a source checkout or an installed wheel:

1. `$IOTEX_OPS_HOME`, a directory holding `playbooks/` (and `runbooks/`): a checkout, or an operator's
   own copy of the content;
2. else the package's own data, `iotex_ops/_content/`: in a checkout it links to the repository's
   `playbooks/` and `runbooks/`; a wheel holds copies of them (pyproject.toml's package data).

More runbook directories come on top (`$IOTEX_OPS_RUNBOOKS`, `--runbooks`: iotex_ops/runbook/loader.py).

The roles' defaults (`roles/*/defaults/main.yml`) are the one source of the values Python needs too (the
network's paths and ports, the monitoring generator's variables): `role_defaults`, `role_default_help`
and `RoleVars` read them, so nothing repeats them in Python.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    import jinja2

from iotex_ops.errors import OpsError

ENV_VAR = "IOTEX_OPS_HOME"
PACKAGE_CONTENT = Path(__file__).with_name("_content")


class ContentError(OpsError):
    """The content directory, a playbook or a role's defaults cannot be found or read."""


def home() -> Path:
    """The directory holding playbooks/ and runbooks/ (see the module's docstring)."""
    given = os.environ.get(ENV_VAR, "")
    if given:
        root = Path(given).expanduser().resolve()
        if not (root / "playbooks").is_dir():
            raise ContentError(f"${ENV_VAR}={given}: no playbooks/ directory there (it names the directory holding "
                               "playbooks/ and runbooks/; unset it to use the content installed with iotex-ops)")  # fmt: skip
        return root
    if not (PACKAGE_CONTENT / "playbooks").is_dir():
        raise ContentError(f"iotex-ops is installed without its content ({PACKAGE_CONTENT}/playbooks is missing): "
                           f"reinstall it, or set ${ENV_VAR} to a directory holding playbooks/ and runbooks/")  # fmt: skip
    return PACKAGE_CONTENT


def playbooks_dir() -> Path:
    return (home() / "playbooks").resolve()


def roles_dir() -> Path:
    return playbooks_dir() / "roles"


def runbooks_dir() -> Path:
    return (home() / "runbooks").resolve()


def describe() -> str:
    """Where the content comes from, for messages: `$IOTEX_OPS_HOME (/path)` or `the package (/path)`."""
    return f"${ENV_VAR} ({home()})" if os.environ.get(ENV_VAR) else f"the package ({home().resolve()})"


# -- the roles' defaults -----------------------------------------------------------------------------------


def _defaults_file(role: str) -> Path:
    path = roles_dir() / role / "defaults" / "main.yml"
    if not path.is_file():
        raise ContentError(f"no role {role!r} with defaults in {roles_dir()}")
    return path


@functools.lru_cache(maxsize=64)
def _read(path: Path, mtime_ns: int) -> tuple[dict[str, Any], dict[str, str]]:
    text = path.read_text(encoding="utf-8")
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ContentError(f"{path}: not YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise ContentError(f"{path}: not a mapping of variables")
    helps: dict[str, str] = {}
    comment: list[str] = []
    for line in text.splitlines():
        if line.startswith("#"):
            comment.append(line.lstrip("#").strip())
            continue
        key = re.match(r"([A-Za-z_]\w*):", line)
        if key and comment:
            helps[key.group(1)] = " ".join(comment)
        comment = []
    return {str(k): v for k, v in doc.items()}, helps


def _load(role: str) -> tuple[dict[str, Any], dict[str, str]]:
    path = _defaults_file(role)
    return _read(path, path.stat().st_mtime_ns)


def role_names() -> list[str]:
    return sorted(d.name for d in roles_dir().iterdir() if d.is_dir())


def role_defaults(role: str | None = None) -> dict[str, Any]:
    """A role's defaults as written (Jinja expressions unevaluated); with no role, every role's."""
    if role is not None:
        return dict(_load(role)[0])
    out: dict[str, Any] = {}
    for name in role_names():
        if (roles_dir() / name / "defaults" / "main.yml").is_file():
            out.update(_load(name)[0])
    return out


def role_default_help(role: str) -> dict[str, str]:
    """For each variable of a role's defaults, the comment lines right above it (joined), if any."""
    return dict(_load(role)[1])


@functools.cache
def _jinja() -> jinja2.Environment:
    """Made (and jinja2 imported) on the first template: the command line's quick commands never need it."""
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701 - paths and names, not HTML
    env.filters.update(dirname=os.path.dirname, basename=os.path.basename, quote=lambda s: shlex.quote(str(s)))
    return env


class RoleVars:
    """One host's variables as its roles see them: the inventory's values over the roles' defaults, with the
    defaults' simple Jinja (`{{ iotex_host_dir }}/node`, `| default(...)`, `| dirname`) evaluated."""

    def __init__(self, hostvars: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> None:
        self.hostvars = hostvars
        self.defaults = role_defaults() if defaults is None else defaults

    def __contains__(self, name: object) -> bool:
        return name in self.hostvars or name in self.defaults

    def __getitem__(self, name: str) -> Any:
        return self._value(name, ())

    def _value(self, name: str, seen: tuple[str, ...]) -> Any:
        if name in seen:
            raise ContentError(f"role variable {name} refers to itself: {' -> '.join((*seen, name))}")
        if name in self.hostvars:
            raw = self.hostvars[name]
        elif name in self.defaults:
            raw = self.defaults[name]
        else:
            raise ContentError(f"no value for {name}: neither the inventory nor a role's defaults ({roles_dir()}) set it")
        if not isinstance(raw, str) or "{" not in raw:
            return raw
        import jinja2
        import jinja2.meta

        env = _jinja()
        try:
            template = env.from_string(raw)
            names = jinja2.meta.find_undeclared_variables(env.parse(raw))
            context = {n: self._value(n, (*seen, name)) for n in names if n in self}
            return template.render(context)
        except jinja2.TemplateError as exc:
            raise ContentError(f"role variable {name} = {raw!r}: {exc}") from None
