"""A speed reference printed beside every figure: this machine's libsecp256k1 public-key recoveries per second.

Machines here differ by 2-3x in CPU speed from one session to the next; a figure means something only
next to how fast the machine that produced it was.
"""

from __future__ import annotations

import hashlib
import time

from iotex_node.sdk import PrivateKey, recover_address


def recovers_per_second(seconds: float = 0.5) -> float:
    key = PrivateKey(hashlib.sha256(b"speed-reference").digest())
    digests = [hashlib.sha256(str(i).encode()).digest() for i in range(64)]
    sigs = [key.sign(d) for d in digests]
    n, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        for d, s in zip(digests, sigs, strict=True):
            recover_address(s, d)
        n += len(digests)
    return n / elapsed


def reference_line() -> str:
    return f"speed reference: {recovers_per_second():,.0f} libsecp256k1 recovers/s on this machine"
