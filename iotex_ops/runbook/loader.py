"""Find runbooks: modules in directories given on the command line, in $IOTEX_OPS_RUNBOOKS (os.pathsep-separated
directories) and in the toolkit's own runbooks/ (iotex_ops.content); each defines `RUNBOOK = Runbook(...)`."""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from pathlib import Path
from types import ModuleType

from iotex_ops import content
from iotex_ops.runbook.model import Runbook, RunbookError


def search_path(extra: list[Path] | tuple[Path, ...] = ()) -> list[Path]:
    dirs = [*extra]
    env = os.environ.get("IOTEX_OPS_RUNBOOKS", "")
    dirs += [Path(p) for p in env.split(os.pathsep) if p]
    dirs.append(content.runbooks_dir())
    return [d.expanduser().resolve() for d in dict.fromkeys(dirs)]


_SIBLINGS = threading.Lock()


def _module_name(path: Path, shared: bool = False) -> str:
    return f"iotex_runbooks_{abs(hash(str(path.parent))) % 10**8}{'_shared' if shared else ''}.{path.stem}"


def _import(name: str, path: Path) -> ModuleType:
    """Execute the file at `path` as module `name` (in sys.modules while it runs, removed if it fails)."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise RunbookError(f"cannot load runbook module {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def sibling(of: str, stem: str) -> ModuleType:
    """The runbook module `stem` beside the runbook file `of` (a runbook's `__file__`), for a runbook that
    reuses another's steps: loaded once per process, and never seen half-imported by another thread (the
    scheduler and alertd load runbooks from several threads)."""
    path = Path(of).with_name(f"{stem}.py")
    name = _module_name(path, shared=True)
    with _SIBLINGS:
        return sys.modules[name] if name in sys.modules else _import(name, path)


def _load_file(path: Path) -> Runbook:
    try:
        module = _import(_module_name(path), path)
    except RunbookError:
        raise
    except Exception as exc:
        raise RunbookError(f"runbook module {path} failed to import: {type(exc).__name__}: {exc}") from exc
    rb = getattr(module, "RUNBOOK", None)
    if not isinstance(rb, Runbook):
        raise RunbookError(f"{path} defines no RUNBOOK = Runbook(...)")
    object.__setattr__(rb, "source", str(path))
    return rb


def discover(extra: list[Path] | tuple[Path, ...] = ()) -> dict[str, Runbook]:
    """Every runbook by name; the first directory on the search path wins a name clash."""
    found: dict[str, Runbook] = {}
    for d in search_path(extra):
        if not d.is_dir():
            continue
        for path in sorted(d.glob("*.py")):
            if path.name.startswith("_"):
                continue
            rb = _load_file(path)
            found.setdefault(rb.name, rb)
    return found


def find(name: str, extra: list[Path] | tuple[Path, ...] = ()) -> Runbook:
    books = discover(extra)
    if name not in books:
        raise RunbookError(f"no runbook {name!r}; known: {', '.join(sorted(books)) or '(none)'}")
    return books[name]
