"""One command on many hosts at once; every host's result or exception comes back, none is swallowed."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from iotex_ops.errors import OpsError
from iotex_ops.hosts.base import CommandResult, Host


class GroupError(OpsError):
    """Some hosts of a group failed; maps each failed host to its exception."""

    def __init__(self, failed: Mapping[str, BaseException]) -> None:
        super().__init__(failed)
        self.failed = dict(failed)

    def __str__(self) -> str:
        lines = [f"{len(self.failed)} host(s) failed:"]
        lines += [str(exc) for exc in self.failed.values()]
        return "\n".join(lines)


@dataclass(frozen=True)
class GroupResult(Mapping[str, "CommandResult | Exception"]):
    """Host name -> its CommandResult, or the exception that stopped it (a HostError, or anything else)."""

    results: Mapping[str, CommandResult | Exception]
    duration_s: float = 0.0

    def __getitem__(self, name: str) -> CommandResult | Exception:
        return self.results[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def succeeded(self) -> dict[str, CommandResult]:
        return {h: r for h, r in self.results.items() if isinstance(r, CommandResult)}

    @property
    def failed(self) -> dict[str, Exception]:
        return {h: r for h, r in self.results.items() if isinstance(r, Exception)}

    def raise_on_failure(self) -> None:
        if self.failed:
            raise GroupError(self.failed)


def run_on(
    hosts: Iterable[Host],
    command: str,
    *,
    concurrency: int = 32,
    timeout: float = 10.0,
    on_start: Callable[[Host], None] | None = None,
    on_done: Callable[[Host, CommandResult | Exception], None] | None = None,
) -> GroupResult:
    """Run `command` on every host, at most `concurrency` at a time, each bounded by `timeout` seconds.

    A non-zero exit is a CommandFailed in the result, like an unreachable host or a refused key; the
    caller decides whether to go on (`result.succeeded`) or stop (`result.raise_on_failure()`)."""
    hosts = list(hosts)
    names = [h.name for h in hosts]
    if len(set(names)) != len(names):
        raise ValueError(f"host names must be unique: {names}")
    started = time.monotonic()

    def one(host: Host) -> CommandResult | Exception:
        if on_start:
            on_start(host)
        outcome: CommandResult | Exception
        try:
            outcome = host.run(command, timeout=timeout)
        except Exception as exc:  # every failure belongs to its host's entry
            outcome = exc
        if on_done:
            on_done(host, outcome)
        return outcome

    results: dict[str, CommandResult | Exception] = {}
    if hosts:
        # threads, not processes: the work is waiting on sockets, and connections must stay in this process
        with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(hosts))), thread_name_prefix="run_on") as pool:
            for host, outcome in zip(hosts, pool.map(one, hosts), strict=True):
                results[host.name] = outcome
    return GroupResult(results, time.monotonic() - started)
