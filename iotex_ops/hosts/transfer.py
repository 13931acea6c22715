"""Files from one host to another, through the controller: the hosts need no access to each other."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from iotex_ops.hosts.base import Host
from iotex_ops.hosts.local import LocalHost


def copy_between(src: Host, src_path: str | Path, dst: Host, dst_path: str | Path, staging: str | Path | None = None) -> None:
    """Copy `src_path` on `src` to `dst_path` on `dst`.

    Two local hosts are this machine: one copy. Otherwise the file goes to a temporary file on the controller
    (in `staging`, default the system's temporary directory), then to `dst`; the temporary file is removed
    whatever happens. Delegate hosts usually cannot reach each other over SSH, and should not hold keys that
    could; the controller reaches all of them already."""
    if isinstance(src, LocalHost) and isinstance(dst, LocalHost):
        dst.put(src_path, dst_path)
        return
    if staging is not None:
        Path(staging).mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".copy-", dir=staging)
    try:
        with open(fd, "wb"):
            pass  # the name is ours (0600); get() writes the content
        src.get(src_path, tmp)
        dst.put(tmp, dst_path)
    finally:
        with contextlib.suppress(OSError):
            Path(tmp).unlink()
