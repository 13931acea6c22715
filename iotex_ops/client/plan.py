"""The plan a bookkeeping run writes and a distribution reads: CSV with a header, one row per voter, in
address order, amounts in rau (exact) and IOTX (for people), every row naming the delegate and the epochs."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from iotex_ops.client.books import Plan
from iotex_ops.client.errors import ClientError
from iotex_ops.client.units import iotx, looks_like_address

HEADER = ("delegate", "from_epoch", "to_epoch", "voter", "amount_rau", "amount_iotx")
_NAME_RE = re.compile(r"[a-z0-9]{1,12}")


@dataclass(frozen=True)
class Row:
    delegate: str
    from_epoch: int
    to_epoch: int
    voter: str
    amount: int

    @property
    def memo(self) -> str:
        """What the payout's transfer says: the delegate and the epochs. With the recipient, it names the payout
        on chain: a distribution pays a voter only when no transfer to it with this memo is final."""
        return memo_for(self.delegate, self.from_epoch, self.to_epoch)


def memo_for(delegate: str, from_epoch: int, to_epoch: int) -> str:
    return f"rewards {delegate} epochs {from_epoch}-{to_epoch}"


MEMO_RE = re.compile(r"rewards ([a-z0-9]{1,12}) epochs ([0-9]+)-([0-9]+)")


def render(plan: Plan) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(HEADER)
    for p in plan.payouts:
        w.writerow((plan.delegate, plan.from_epoch, plan.to_epoch, p.voter, p.amount, iotx(p.amount)))
    return out.getvalue()


def read(path: Path) -> list[Row]:
    """The rows of a plan file; ClientError names the line at fault. One delegate and span of epochs per plan."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ClientError(f"plan {path} cannot be read: {exc.strerror}", "bad_input") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(header) != HEADER:
        raise ClientError(f"plan {path}: the first line must be the header {','.join(HEADER)}", "bad_plan")
    rows: list[Row] = []
    seen: set[str] = set()
    for n, rec in enumerate(reader, start=2):
        if len(rec) != len(HEADER):
            raise ClientError(f"plan {path} line {n}: {len(rec)} fields, not {len(HEADER)}", "bad_plan")
        delegate, a, b, voter, amount = rec[0], rec[1], rec[2], rec[3], rec[4]
        if not _NAME_RE.fullmatch(delegate):
            raise ClientError(f"plan {path} line {n}: delegate {delegate!r} is not a candidate name", "bad_plan")
        if not (a.isdigit() and b.isdigit() and 1 <= int(a) <= int(b)):
            raise ClientError(f"plan {path} line {n}: epochs {a}-{b} are not a span", "bad_plan")
        if not looks_like_address(voter):
            raise ClientError(f"plan {path} line {n}: {voter!r} is not an io1 address", "bad_plan")
        if not amount.isdigit() or int(amount) <= 0:
            raise ClientError(f"plan {path} line {n}: amount_rau {amount!r} is not a positive integer", "bad_plan")
        if voter in seen:
            raise ClientError(f"plan {path} line {n}: {voter} is listed twice", "bad_plan")
        seen.add(voter)
        row = Row(delegate, int(a), int(b), voter, int(amount))
        if rows and (row.delegate, row.from_epoch, row.to_epoch) != (rows[0].delegate, rows[0].from_epoch, rows[0].to_epoch):
            raise ClientError(f"plan {path} line {n}: another delegate or span of epochs than line 2's", "bad_plan")
        rows.append(row)
    return rows
