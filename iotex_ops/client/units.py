"""Amounts: what a person types (IOTX with up to 18 decimals, or an integer with `rau`) and how they are shown."""

from __future__ import annotations

import re

from iotex_ops.client.errors import ClientError

RAU_PER_IOTX = 10**18
MAX_AMOUNT = 2**128 - 1  # the chain's (iotex_node.constants.MAX_AMOUNT), repeated to keep `balance` light
_IOTX_RE = re.compile(r"(0|[1-9][0-9]{0,20})(?:\.([0-9]{1,18}))?")
_RAU_RE = re.compile(r"(0|[1-9][0-9]{0,38}) ?rau")
_ADDRESS_RE = re.compile(r"io1[02-9ac-hj-np-z]{38}")


def parse_amount(text: str, what: str = "amount", *, positive: bool = True) -> int:
    """`1.5` (IOTX) or `1500000000000000000rau` (rau): the amount in rau; ClientError names what is wrong."""
    t = text.strip()
    m = _RAU_RE.fullmatch(t)
    if m:
        amount = int(m.group(1))
    else:
        m = _IOTX_RE.fullmatch(t)
        if not m:
            raise ClientError(
                f"{what} {text!r} is not an amount: give IOTX with up to 18 decimals (1.5) or rau (1500rau)", "bad_input"
            )
        amount = int(m.group(1)) * RAU_PER_IOTX + int((m.group(2) or "").ljust(18, "0") or 0)
    if amount > MAX_AMOUNT:
        raise ClientError(f"{what} {text!r} exceeds the chain's maximum amount", "bad_input")
    if positive and amount == 0:
        raise ClientError(f"{what} must be more than zero", "bad_input")
    return amount


def iotx(rau: int) -> str:
    """rau as IOTX, exactly, without trailing zeros: 1500000000000000000 -> '1.5'."""
    sign = "-" if rau < 0 else ""
    whole, frac = divmod(abs(rau), RAU_PER_IOTX)
    return f"{sign}{whole}" + (f".{frac:018d}".rstrip("0") if frac else "")


def looks_like_address(text: str) -> bool:
    """The form of an io1 address (its checksum is the node's or the SDK's to check)."""
    return bool(_ADDRESS_RE.fullmatch(text))
