"""Nonce strategies: which nonce a sender's next action carries. Pure bookkeeping, no I/O.

- `CountingNonces` counts each account's nonces locally from a known start, and forgets an account whose
  submission failed (a node down, a refusal, a rollback) so that its next nonce is read from a node again
  (`pending_nonce` of GET /v1/accounts/{address}) before it sends. The rehearsal's background load and the
  open-loop benchmark load use it.
- `WindowNonces` keeps, per sender, a window of nonces just above its committed nonce in flight and re-sends
  the whole window every round: the action for a (sender, nonce) is always the same signed bytes, so a node
  that has it answers `duplicate` and a node that lost it (killed before it gossiped, restarted with an
  empty mempool) takes it back. Nothing is lost for good, no nonce gap stalls a sender, and the load stays
  bounded however long the chain stalls. The crash and restart benchmarks use it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
S = TypeVar("S")


class CountingNonces(Generic[K]):
    """Next nonce per account, counted locally; an account not known must be read from a node first."""

    def __init__(self, start: dict[K, int] | None = None) -> None:
        self._next: dict[K, int] = dict(start or {})

    @classmethod
    def fresh(cls, accounts: Iterable[K]) -> CountingNonces[K]:
        """Accounts that never sent anything: each starts at nonce 1."""
        return cls({k: 1 for k in accounts})

    def known(self, account: K) -> bool:
        return account in self._next

    def set(self, account: K, next_nonce: int) -> None:
        """What a node says the account's next nonce is (its `pending_nonce`)."""
        if next_nonce < 1:
            raise ValueError(f"a next nonce is at least 1, not {next_nonce}")
        self._next[account] = next_nonce

    def take(self, account: K) -> int:
        """The account's next nonce, counted as used. KeyError when the account is not known."""
        n = self._next[account]
        self._next[account] = n + 1
        return n

    def forget(self, account: K) -> None:
        """Its submission failed: read its nonce from a node again before it sends."""
        self._next.pop(account, None)


class WindowNonces(Generic[K, S]):
    """Per sender: the committed nonce (never moving backwards) and the signed actions of the `window`
    nonces above it, each signed once and kept until its nonce is committed."""

    def __init__(self, senders: Iterable[K], window: int) -> None:
        if window < 1:
            raise ValueError(f"the window holds at least one nonce, not {window}")
        self.window = window
        self._committed: dict[K, int] = {k: 0 for k in senders}
        self._signed: dict[K, dict[int, S]] = {k: {} for k in self._committed}

    def committed(self, sender: K) -> int:
        return self._committed[sender]

    @property
    def total_committed(self) -> int:
        """Actions of these senders known to be final (by the committed nonces last seen)."""
        return sum(self._committed.values())

    def update(self, sender: K, committed: int) -> int:
        """A node says `committed` is the sender's last committed nonce. A node that is catching up says
        an older one: the count never moves backwards. Signed actions at or below it are dropped."""
        now = max(self._committed[sender], committed)
        self._committed[sender] = now
        signed = self._signed[sender]
        for n in [n for n in signed if n <= now]:
            del signed[n]
        return now

    def in_flight(self, sender: K) -> range:
        """The nonces to (re-)send now."""
        first = self._committed[sender] + 1
        return range(first, first + self.window)

    def signed(self, sender: K, nonce: int, sign: Callable[[int], S]) -> S:
        """The signed action for (sender, nonce): signed by `sign(nonce)` the first time, the same after."""
        kept = self._signed[sender]
        if nonce not in kept:
            kept[nonce] = sign(nonce)
        return kept[nonce]

    def held(self) -> int:
        """Signed actions kept (at most senders x window)."""
        return sum(map(len, self._signed.values()))
