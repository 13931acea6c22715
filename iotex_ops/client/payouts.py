"""Paying voters: a plan's rows, each paid exactly once, checked against the chain.

A payout is named on chain by its recipient and its memo (`plan.memo_for`: the delegate and the epochs).
A run: (1) settles what an earlier run signed (ledger rows not final: the identical signed actions are sent
again, and followed until each is final or its nonce was used by another action); (2) reads the sender's
finalized transfers and takes as paid every voter with a successful transfer carrying the memo; (3) claims
the sender's unclaimed rewards (optional); (4) checks the balance covers the remaining payouts plus fees,
before anything is sent; (5) signs a batch, writes it to the ledger, sends it, and goes on, waiting for
finality when many are in flight; (6) verifies on chain that every row was paid exactly once, with its
amount, and that the ledger agrees. A kill -9 at any moment, then a re-run, pays nobody twice: a payout is
signed anew only when the chain shows it unpaid and everything signed before is settled.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from iotex_ops.client.errors import EXIT_NOT_DONE, ClientError
from iotex_ops.client.ledger import Entry, Ledger
from iotex_ops.client.plan import Row
from iotex_ops.client.units import iotx
from iotex_ops.nodeapi import AccountAction, NodeApiError, NodeClient

# Payouts in flight (sent, not yet final) before the run waits for them: below the node's mempool quota per
# sender (2000), so a large plan never meets sender_quota_exceeded.
MAX_IN_FLIGHT = 1000
POLL_S = 0.2


class Signer(Protocol):
    address: str

    def transfer(self, *, nonce: int, fee: int, to: str, amount: int, memo: str) -> tuple[str, dict[str, Any]]: ...

    def claim(self, *, nonce: int, fee: int, amount: int) -> tuple[str, dict[str, Any]]: ...


@dataclass
class Report:
    memo: str
    planned: int
    planned_amount: int
    already_paid: int = 0
    to_pay: int = 0
    sent: int = 0
    fees: int = 0
    claimed: int = 0
    settled_from_before: int = 0
    dry_run: bool = False
    verified: bool = False
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "memo": self.memo,
            "planned": self.planned,
            "planned_amount": str(self.planned_amount),
            "already_paid": self.already_paid,
            "to_pay": self.to_pay,
            "sent": self.sent,
            "fees": str(self.fees),
            "claimed": str(self.claimed),
            "settled_from_before": self.settled_from_before,
            "dry_run": self.dry_run,
            "verified": self.verified,
            "problems": self.problems,
        }


class Distributor:
    def __init__(
        self,
        node: NodeClient,
        signer: Signer,
        ledger: Ledger,
        *,
        fee: int,
        batch: int = 200,
        timeout: float = 300.0,
        progress: Callable[[str], None] = lambda _s: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node, self.signer, self.ledger = node, signer, ledger
        self.fee, self.batch, self.timeout, self.progress, self.clock = fee, batch, timeout, progress, clock
        self.sender = signer.address

    # -- the run --

    def run(self, rows: Sequence[Row], *, dry_run: bool = False, claim: bool = False) -> Report:
        if not rows:
            raise ClientError("the plan has no payout", "bad_plan")
        memo = rows[0].memo
        report = Report(memo, len(rows), sum(r.amount for r in rows), dry_run=dry_run)
        if not dry_run:
            report.settled_from_before = self._settle()
        paid = self._paid_on_chain(memo)
        todo = [r for r in rows if paid[r.voter] == 0]
        report.already_paid = len(rows) - len(todo)
        report.to_pay = len(todo)
        if claim and not dry_run:
            report.claimed = self._claim()
        need = sum(r.amount for r in todo) + len(todo) * self.fee
        acct = self.node.account(self.sender)
        if acct.balance < need:
            raise ClientError(
                f"balance too low: {self.sender} has {iotx(acct.balance)} IOTX; the {len(todo)} payouts left need "
                f"{iotx(need)} IOTX ({iotx(need - len(todo) * self.fee)} + fees {iotx(len(todo) * self.fee)}); nothing was sent",
                "balance_too_low",
            )
        report.fees = len(todo) * self.fee
        if dry_run or not todo:
            if not dry_run:
                report.verified = self._verify(rows, report)
            return report
        self._pay(todo, memo, acct.pending_nonce, report)
        report.verified = self._verify(rows, report)
        return report

    def _pay(self, todo: Sequence[Row], memo: str, nonce: int, report: Report) -> None:
        in_flight: list[Entry] = []
        for i in range(0, len(todo), self.batch):
            chunk = todo[i : i + self.batch]
            entries = []
            for r in chunk:
                h, wire = self.signer.transfer(nonce=nonce, fee=self.fee, to=r.voter, amount=r.amount, memo=memo)
                entries.append(Entry(h, memo, r.voter, r.amount, self.sender, nonce, wire, "signed", None))
                nonce += 1
            self.ledger.record_signed(entries)  # before sending: a crash after this re-sends these very actions
            self._send(entries)
            report.sent += len(entries)
            in_flight += entries
            self.progress(f"sent {report.sent}/{len(todo)} payouts")
            if len(in_flight) >= MAX_IN_FLIGHT:
                self._wait_nonce(in_flight[-1].nonce)
                in_flight = []
        if in_flight:
            self._wait_nonce(in_flight[-1].nonce)

    def _send(self, entries: Sequence[Entry]) -> None:
        try:
            res = self.node.submit_batch([e.wire for e in entries])
        except NodeApiError as exc:
            # Unknown whether the node admitted them: the ledger says `signed`, and the next run settles them.
            raise ClientError(
                f"sending {len(entries)} payouts failed ({exc}); run again to settle and resume", "node_error"
            ) from None
        sent: list[tuple[Entry, Any]] = []
        refused: list[tuple[Entry, Any]] = []
        for e, r in zip(entries, res.results, strict=True):
            (sent if r.accepted or r.code == "duplicate" else refused).append((e, r))
        self.ledger.mark([e.hash for e, _ in sent], "sent")
        if refused:
            e, r = refused[0]
            raise ClientError(
                f"the node refused {len(refused)} payouts, the first (to {e.voter}, nonce {e.nonce}) with {r.code}: {r.message}; "
                "run again to settle and resume",
                r.code or "node_refused",
            )

    def _wait_nonce(self, nonce: int) -> None:
        deadline = self.clock() + self.timeout
        while True:
            acct = self.node.account(self.sender)
            if acct.nonce >= nonce:
                return
            if self.clock() > deadline:
                raise ClientError(
                    f"after {self.timeout:g} s the sender's nonce is {acct.nonce}, not yet {nonce}: payouts are not final; "
                    "run again later to settle and verify",
                    "not_final",
                    EXIT_NOT_DONE,
                )
            time.sleep(POLL_S)

    def _claim(self) -> int:
        amount = self.node.unclaimed_rewards(self.sender)
        if amount == 0:
            return 0
        acct = self.node.account(self.sender)
        if acct.balance < self.fee:
            raise ClientError(f"balance too low to pay the claim's fee ({iotx(self.fee)} IOTX)", "balance_too_low")
        h, wire = self.signer.claim(nonce=acct.pending_nonce, fee=self.fee, amount=amount)
        try:
            self.node.submit(wire)
        except NodeApiError as exc:
            raise ClientError(
                f"the node refused the claim ({exc.code}: {exc}); nothing was paid", exc.code or "node_refused"
            ) from None
        self._wait_nonce(acct.pending_nonce)
        st = self.node.action(h)
        if st is None or st.receipt is None or not st.receipt.ok:
            raise ClientError(
                f"the claim {h} did not succeed: {st.receipt.error if st and st.receipt else 'not final'}",
                "failed",
                EXIT_NOT_DONE,
            )
        self.progress(f"claimed {iotx(amount)} IOTX ({h})")
        return amount

    # -- against the chain --

    def _transfers(self, memo: str) -> list[AccountAction]:
        return [
            a
            for a in self.node.account_actions(self.sender)
            if a.type == "transfer" and a.sender == self.sender and a.memo == memo
        ]

    def _paid_on_chain(self, memo: str) -> Counter[str]:
        return Counter(str(a.payload.get("to")) for a in self._transfers(memo) if a.ok)

    def _settle(self) -> int:
        """Bring every payout an earlier run signed to an end: final, failed, or void (its nonce went to another action)."""
        open_ = self.ledger.entries(sender=self.sender, states=("signed", "sent"))
        if not open_:
            return 0
        self.progress(f"settling {len(open_)} payouts signed by an earlier run")
        for i in range(0, len(open_), self.batch):
            chunk = open_[i : i + self.batch]
            try:
                self.node.submit_batch([e.wire for e in chunk])  # identical actions: admitted, duplicate, or nonce used
            except NodeApiError as exc:
                raise ClientError(f"cannot settle the earlier run's payouts: {exc}", "node_error") from None
        self._wait_nonce_or_stuck(max(e.nonce for e in open_))
        final: list[str] = []
        failed: list[str] = []
        void: list[str] = []
        heights: dict[str, int] = {}
        for e in open_:
            st = self.node.action(e.hash)
            if st is not None and st.final and st.receipt is not None:
                (final if st.receipt.ok else failed).append(e.hash)
                heights[e.hash] = st.receipt.height
            else:
                void.append(e.hash)
        self.ledger.mark(final, "final", heights)
        self.ledger.mark(failed, "failed", heights)
        self.ledger.mark(void, "void")
        return len(open_)

    def _wait_nonce_or_stuck(self, nonce: int) -> None:
        """Wait for the sender's nonce to reach `nonce`, or for the node to hold nothing more of the sender's
        that could get it there (then the rest are void: their nonces were used by other actions, or never sent)."""
        deadline = self.clock() + self.timeout
        while True:
            acct = self.node.account(self.sender)
            if acct.nonce >= nonce or acct.pending_nonce == acct.nonce + 1:
                return
            if self.clock() > deadline:
                raise ClientError(
                    f"earlier payouts are still not final after {self.timeout:g} s; run again later", "not_final", EXIT_NOT_DONE
                )
            time.sleep(POLL_S)

    def _verify(self, rows: Sequence[Row], report: Report) -> bool:
        """Every row paid exactly once on chain with its amount; the ledger's final rows are those transfers."""
        memo = rows[0].memo
        ok_transfers = [a for a in self._transfers(memo) if a.ok]
        count = Counter(str(a.payload.get("to")) for a in ok_transfers)
        amounts = {str(a.payload.get("to")): int(a.payload.get("amount", 0)) for a in ok_transfers}
        for r in rows:
            if count[r.voter] != 1:
                report.problems.append(f"{r.voter} was paid {count[r.voter]} times with memo {memo!r}")
            elif amounts[r.voter] != r.amount:
                report.problems.append(f"{r.voter} was paid {amounts[r.voter]} rau, the plan says {r.amount}")
        on_chain = {a.hash for a in ok_transfers}
        open_ = self.ledger.entries(sender=self.sender, memo=memo, states=("signed", "sent"))
        self.ledger.mark([e.hash for e in open_ if e.hash in on_chain], "final")
        final = {e.hash for e in self.ledger.entries(sender=self.sender, memo=memo, states=("final",))}
        if final != on_chain:
            report.problems.append(
                f"the ledger and the chain disagree: {len(on_chain - final)} payouts on chain not final in the ledger, "
                f"{len(final - on_chain)} final in the ledger not on chain"
            )
        return not report.problems


class KeySigner:
    """A Signer over an unlocked key (iotex_node.sdk); its repr never shows the key."""

    def __init__(self, key: Any, chain_id: int) -> None:
        self._key = key
        self.chain_id = chain_id
        self.address: str = key.address

    def __repr__(self) -> str:
        return f"KeySigner({self.address})"

    def transfer(self, *, nonce: int, fee: int, to: str, amount: int, memo: str) -> tuple[str, dict[str, Any]]:
        from iotex_node import sdk

        a = sdk.transfer(self._key, chain_id=self.chain_id, nonce=nonce, fee=fee, to=to, amount=amount, memo=memo)
        return a.hash_hex, a.to_wire()

    def claim(self, *, nonce: int, fee: int, amount: int) -> tuple[str, dict[str, Any]]:
        from iotex_node import sdk

        a = sdk.rewards_claim(self._key, chain_id=self.chain_id, nonce=nonce, fee=fee, amount=amount)
        return a.hash_hex, a.to_wire()
