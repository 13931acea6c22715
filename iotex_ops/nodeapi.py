"""The node's HTTP API as the toolkit reaches it: one client, typed records, one error type.

`NodeClient(url, name=...)` is the only way iotex_ops talks to a node's API (`network.Delegate.api`, the lab's
`LocalNet.client(i)`, the status table, the runbook checks). It is synchronous and thread-safe (no state is
shared between calls but the rate-limit pause below), so a pool of threads may share one client.

Errors: every failure is a `NodeApiError` naming the node and the URL, with the HTTP status and the node's
error `code` and `field` when it answered (`{"error": {"code", "message", "field"}}`, see openapi.json).

Rate limits: the node answers 429 `rate_limited` with `Retry-After` when one client address sends too much.
The client waits as told and tries again, for at most `max_retry_wait` seconds in all for one call, then
raises a NodeApiError saying so. While one call waits, the others of the same client wait too, instead of
spending the node's tokens on more refusals. Other 429s (`mempool_full`, `sender_quota_exceeded`) are answers
about the action, not the client's pace, and are raised at once.

Reading a span of blocks: `blocks(a, b)` is the node's range read (`GET /v1/blocks?from=a&to=b`), one request
per 1000 heights, instead of one per block.
"""

from __future__ import annotations

import email.utils
import json
import math
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from iotex_ops.errors import OpsError

DEFAULT_TIMEOUT_S = 5.0
# How long one call may spend waiting out 429 rate_limited answers before it gives up.
DEFAULT_MAX_RETRY_WAIT_S = 10.0
# Without a (readable) Retry-After, waits start here and double.
FIRST_BACKOFF_S = 0.25
RANGE_LIMIT = 1000  # heights per GET /v1/blocks answer (the node's MAX_RANGE)
T = TypeVar("T")


class NodeApiError(OpsError, OSError):
    """A node's HTTP API did not answer, or answered with an error. Names the node and the URL.

    Also an OSError (as requests' errors are), so that code written against urllib's errors when it read the
    API directly (`except OSError`: the node is down) keeps working."""

    def __init__(
        self,
        message: str,
        *,
        node: str = "",
        url: str = "",
        status: int | None = None,
        code: str | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.node = node
        self.url = url
        self.status = status  # the HTTP status, when the node answered
        self.code = code  # the node's error code (not_found, rate_limited, nonce_too_low...), when it said one
        self.field = field  # the part of the request the node blamed


# -- records --------------------------------------------------------------------------------------------


def _int(v: Any) -> int:
    if isinstance(v, bool):
        raise TypeError("a boolean is not an integer")
    return int(v)


def _opt_int(v: Any) -> int | None:
    return None if v is None else _int(v)


@dataclass(frozen=True)
class ChainInfo:
    """GET /v1/chain: where the node stands. `raw` is the whole document (fields newer nodes add included)."""

    address: str
    chain_id: int
    height: int
    finalized_height: int
    finalized_hash: str
    node_version: str
    protocol_version: int
    name: str = ""
    epoch: int | None = None
    peers: int | None = None
    synced: bool = False
    participating: bool = False
    paused: bool = False
    standby: bool = False
    halt_height: int | None = None
    halted: str | None = None
    finalized_timestamp_ms: int | None = None
    block_interval_ms: int | None = None
    epoch_length: int | None = None
    genesis_hash: str | None = None
    min_fee: int | None = None
    active_delegates: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ChainInfo:
        return cls(
            address=str(d["address"]),
            chain_id=_int(d["chain_id"]),
            height=_int(d["height"]),
            finalized_height=_int(d["finalized_height"]),
            finalized_hash=str(d["finalized_hash"]),
            node_version=str(d["node_version"]),
            protocol_version=_int(d["protocol_version"]),
            name=str(d.get("name") or ""),
            epoch=_opt_int(d.get("epoch")),
            peers=_opt_int(d.get("peers")),
            synced=bool(d.get("synced")),
            participating=bool(d.get("participating")),
            paused=bool(d.get("paused")),
            standby=bool(d.get("standby")),
            halt_height=_opt_int(d.get("halt_height")),
            halted=d.get("halted") or None,
            finalized_timestamp_ms=_opt_int(d.get("finalized_timestamp_ms")),
            block_interval_ms=_opt_int(d.get("block_interval_ms")),
            epoch_length=_opt_int(d.get("epoch_length")),
            genesis_hash=d.get("genesis_hash"),
            min_fee=_opt_int(d.get("min_fee")),
            active_delegates=tuple(str(a) for a in d.get("active_delegates") or ()),
            raw=dict(d),
        )

    def to_json(self) -> dict[str, Any]:
        return dict(self.raw)


@dataclass(frozen=True)
class Block:
    """A finalized block. From the range read (`NodeClient.blocks`) the header's main fields, the number of
    actions and the certificate's voters; from `NodeClient.block` also the rest of the header and the actions."""

    height: int
    hash: str
    round: int
    timestamp_ms: int
    proposer: str
    epoch: int
    protocol: int
    action_count: int
    voters: tuple[str, ...] = ()  # whose precommit signatures are in its certificate
    # only from a full read (block(ref)):
    state_root: str | None = None
    prev_hash: str | None = None
    actions: tuple[Mapping[str, Any], ...] | None = None  # the actions' wire form

    @property
    def timestamp(self) -> float:
        """Unix seconds."""
        return self.timestamp_ms / 1000

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Block:
        """A block as GET /v1/blocks/{ref} gives it (height 0: the genesis), or an entry of GET /v1/blocks."""
        if "header" not in d:
            if "genesis" in d:
                g = d["genesis"] or {}
                return cls(0, str(d["hash"]), 0, _int(g.get("genesis_time_ms") or 0), "", 0, 0, 0, actions=())
            return cls(
                height=_int(d["height"]),
                hash=str(d["hash"]),
                round=_int(d["round"]),
                timestamp_ms=_int(d["timestamp_ms"]),
                proposer=str(d["proposer"]),
                epoch=_int(d["epoch"]),
                protocol=_int(d["protocol"]),
                action_count=_int(d["action_count"]),
                voters=tuple(str(v) for v in d.get("voters") or ()),
            )
        h = d["header"]
        acts = tuple(d.get("actions") or ())
        sigs = (d.get("certificate") or {}).get("signatures") or ()
        return cls(
            height=_int(h["height"]),
            hash=str(d["hash"]),
            round=_int(h["round"]),
            timestamp_ms=_int(h["timestamp_ms"]),
            proposer=str(h["proposer"]),
            epoch=_int(h["epoch"]),
            protocol=_int(h["protocol"]),
            action_count=len(acts),
            voters=tuple(str(s["voter"]) for s in sigs),
            state_root=h.get("state_root"),
            prev_hash=h.get("prev_hash"),
            actions=acts,
        )


@dataclass(frozen=True)
class Account:
    """GET /v1/accounts/{address}; amounts in the chain's smallest unit."""

    address: str
    balance: int
    nonce: int  # the last nonce used (0 before any action)
    pending_nonce: int  # the nonce the next action must use
    unclaimed_rewards: int
    height: int  # state as of this height

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Account:
        return cls(
            address=str(d["address"]),
            balance=_int(d["balance"]),
            nonce=_int(d["nonce"]),
            pending_nonce=_int(d["pending_nonce"]),
            unclaimed_rewards=_int(d["unclaimed_rewards"]),
            height=_int(d["height"]),
        )


@dataclass(frozen=True)
class Delegate:
    """A candidate as GET /v1/delegates lists it for an epoch (not to be confused with network.Delegate, a
    delegate's host and node as the toolkit operates them)."""

    name: str
    owner: str
    operator: str
    votes: int
    active: bool  # among the epoch's delegates
    unclaimed_rewards: int
    expected: int = 0  # the epoch's proposing slots: expected, produced, missed
    produced: int = 0
    missed: int = 0

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Delegate:
        p = d.get("productivity") or {}
        return cls(
            name=str(d["name"]),
            owner=str(d["owner"]),
            operator=str(d["operator"]),
            votes=_int(d["votes"]),
            active=bool(d["active"]),
            unclaimed_rewards=_int(d.get("unclaimed_rewards") or 0),
            expected=_int(p.get("expected") or 0),
            produced=_int(p.get("produced") or 0),
            missed=_int(p.get("missed") or 0),
        )


@dataclass(frozen=True)
class Delegates:
    """GET /v1/delegates: an epoch's active delegates (operator addresses, in proposing order) and every candidate."""

    epoch: int
    active: tuple[str, ...]
    candidates: tuple[Delegate, ...]

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Delegates:
        return cls(_int(d["epoch"]), tuple(str(a) for a in d["active"]), tuple(Delegate.from_json(c) for c in d["candidates"]))


@dataclass(frozen=True)
class Bucket:
    """A stake bucket (GET /v1/buckets, /v1/buckets/{id})."""

    id: int
    owner: str
    candidate: str  # the owner address of the candidate it votes for
    amount: int
    days: int
    created_ms: int
    unlock_ms: int
    votes: int

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Bucket:
        return cls(
            id=_int(d["id"]),
            owner=str(d["owner"]),
            candidate=str(d["candidate"]),
            amount=_int(d["amount"]),
            days=_int(d["days"]),
            created_ms=_int(d["created_ms"]),
            unlock_ms=_int(d["unlock_ms"]),
            votes=_int(d["votes"]),
        )


@dataclass(frozen=True)
class Receipt:
    """How a finalized action ended: `success`, or `failed` with why (its fee and nonce are spent either way)."""

    status: str
    height: int
    index: int
    error: str | None = None
    bucket: int | None = None  # the bucket a stake-create made

    @property
    def ok(self) -> bool:
        return self.status == "success"

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Receipt:
        return cls(str(d["status"]), _int(d["height"]), _int(d["index"]), d.get("error"), _opt_int(d.get("bucket")))


@dataclass(frozen=True)
class ActionStatus:
    """GET /v1/actions/{hash}: pending, finalized (with its receipt) or rejected (with the node's code and reason)."""

    hash: str
    status: str  # pending | finalized | rejected
    receipt: Receipt | None = None
    code: str | None = None
    reason: str | None = None
    action: Mapping[str, Any] | None = field(default=None, repr=False)  # a finalized action's wire form

    @property
    def final(self) -> bool:
        return self.status == "finalized"

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ActionStatus:
        r = d.get("receipt")
        rec = Receipt.from_json(r) if r else None
        return cls(str(d["hash"]), str(d["status"]), rec, d.get("code"), d.get("reason"), d.get("action"))


@dataclass(frozen=True)
class Submitted:
    """One action's answer to a submission: its hash when admitted, else the node's error code, message, field."""

    hash: str | None
    code: str | None = None
    message: str | None = None
    field: str | None = None

    @property
    def accepted(self) -> bool:
        return self.hash is not None and self.code is None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Submitted:
        if d.get("hash"):
            return cls(str(d["hash"]))
        err = d.get("error") or {}
        return cls(None, err.get("code") or "unknown", err.get("message"), err.get("field"))


@dataclass(frozen=True)
class BatchResult:
    """POST /v1/actions/batch: how many were admitted, and each action's answer in order."""

    accepted: int
    results: tuple[Submitted, ...]

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> BatchResult:
        return cls(_int(d["accepted"]), tuple(Submitted.from_json(r) for r in d["results"]))


@dataclass(frozen=True)
class BookBucket:
    """A bucket as an epoch's books hold it: what it was at the epoch's end."""

    id: int
    owner: str
    candidate: str  # owner address of the candidate it votes for
    amount: int
    days: int
    votes: int


@dataclass(frozen=True)
class BookCandidate:
    name: str
    owner: str
    operator: str
    votes: int
    active: bool


@dataclass(frozen=True)
class Granted:
    """The rewards granted to one owner address in an epoch: block rewards, fees of its blocks, epoch reward."""

    owner: str
    name: str | None
    block: int
    fee: int
    epoch: int

    @property
    def total(self) -> int:
        return self.block + self.fee + self.epoch


@dataclass(frozen=True)
class EpochBooks:
    """GET /v1/epochs/{epoch}/books: an epoch's delegates, the votes and buckets at its end, rewards granted."""

    epoch: int
    first_height: int
    last_height: int
    delegates: tuple[str, ...]
    candidates: tuple[BookCandidate, ...]
    buckets: tuple[BookBucket, ...]
    rewards: tuple[Granted, ...]

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> EpochBooks:
        return cls(
            epoch=_int(d["epoch"]),
            first_height=_int(d["first_height"]),
            last_height=_int(d["last_height"]),
            delegates=tuple(str(a) for a in d["delegates"]),
            candidates=tuple(
                BookCandidate(str(c["name"]), str(c["owner"]), str(c["operator"]), _int(c["votes"]), bool(c["active"]))
                for c in d["candidates"]
            ),
            buckets=tuple(
                BookBucket(
                    _int(b["id"]), str(b["owner"]), str(b["candidate"]), _int(b["amount"]), _int(b["days"]), _int(b["votes"])
                )
                for b in d["buckets"]
            ),
            rewards=tuple(
                Granted(str(r["owner"]), r.get("name"), _int(r["block"]), _int(r["fee"]), _int(r["epoch"])) for r in d["rewards"]
            ),
        )


@dataclass(frozen=True)
class AccountAction:
    """One finalized action an address sent or (a transfer) received: GET /v1/accounts/{address}/actions."""

    hash: str
    height: int
    index: int
    type: str
    sender: str
    nonce: int
    fee: int
    payload: Mapping[str, Any]
    status: str  # success | failed
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "success"

    @property
    def memo(self) -> str | None:
        m = self.payload.get("memo")
        return m if isinstance(m, str) else None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> AccountAction:
        return cls(
            str(d["hash"]), _int(d["height"]), _int(d["index"]), str(d["type"]), str(d["sender"]), _int(d["nonce"]),
            _int(d["fee"]), dict(d.get("payload") or {}), str(d["status"]), d.get("error"),
        )  # fmt: skip


# -- the client -----------------------------------------------------------------------------------------


def _wire(action: Any) -> Any:
    """An action's wire form: a mapping as is, or anything with to_wire() (a signed action object)."""
    to_wire = getattr(action, "to_wire", None)
    return to_wire() if callable(to_wire) else action


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        s = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        s = when.timestamp() - time.time()
    return max(0.0, s) if math.isfinite(s) else None


class NodeClient:
    """One node's HTTP API. `name` (the delegate's name; default the URL's host:port) goes into every error."""

    def __init__(
        self,
        url: str,
        *,
        name: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT_S,
    ) -> None:
        self.url = url.rstrip("/")
        self.name = name or urlsplit(self.url).netloc or self.url
        self.timeout = timeout
        self.max_retry_wait = max_retry_wait
        self._lock = threading.Lock()
        self._not_before = 0.0  # monotonic time before which no request goes out (the node asked us to wait)
        self.rate_limited = 0  # 429 rate_limited answers seen (and waited out or given up on)

    def __repr__(self) -> str:
        return f"NodeClient({self.name!r}, {self.url!r})"

    # -- transport --

    def get_json(self, path: str, *, timeout: float | None = None, max_retry_wait: float | None = None) -> Any:
        """GET `path` (e.g. "/v1/chain") as parsed JSON; NodeApiError for anything else."""
        return self._request("GET", path, None, timeout, max_retry_wait)

    def post_json(self, path: str, body: Any, *, timeout: float | None = None, max_retry_wait: float | None = None) -> Any:
        """POST `body` as JSON to `path`; the answer parsed (a 2xx), NodeApiError otherwise."""
        return self._request("POST", path, body, timeout, max_retry_wait)

    def get_text(self, path: str, *, timeout: float | None = None) -> str:
        """GET `path` as text (e.g. "/metrics", Prometheus's exposition format); NodeApiError when it fails."""
        return str(self._request("GET", path, None, timeout, None, text=True))

    def metrics(self, *, timeout: float | None = None) -> str:
        """The node's Prometheus metrics, as the exposition text GET /metrics answers."""
        return self.get_text("/metrics", timeout=timeout)

    def _error(self, method: str, url: str, what: str, **kw: Any) -> NodeApiError:
        return NodeApiError(f"{self.name}: {method} {url}: {what}", node=self.name, url=url, **kw)

    def _request(
        self, method: str, path: str, body: Any, timeout: float | None, max_retry_wait: float | None, *, text: bool = False
    ) -> Any:
        url = self.url + path
        timeout = self.timeout if timeout is None else timeout
        budget = self.max_retry_wait if max_retry_wait is None else max_retry_wait
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        waited = 0.0  # seconds spent waiting out rate limits, this call
        backoff = FIRST_BACKOFF_S
        tries = 0
        while True:
            with self._lock:
                pause = self._not_before - time.monotonic()
            if pause > 0:
                if waited + pause > budget:
                    raise self._rate_limited(method, url, tries, waited, budget, pause)
                time.sleep(pause)
                waited += pause
            tries += 1
            req = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310 - the inventory's node URLs
            try:
                with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
                    raw = resp.read()
            except urllib.error.HTTPError as exc:
                err = self._http_error(method, url, exc)
                if err.status != 429 or err.code not in ("rate_limited", None):
                    raise err from None
                with self._lock:
                    self.rate_limited += 1
                asked = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
                wait = asked if asked is not None else backoff
                backoff = min(backoff * 2, 5.0)
                wait *= random.uniform(1.0, 1.2)  # so that the threads sharing this client do not come back at once
                if waited + wait > budget:
                    raise self._rate_limited(method, url, tries, waited, budget, asked) from None
                with self._lock:
                    self._not_before = max(self._not_before, time.monotonic() + wait)
                continue
            except (OSError, urllib.error.URLError, ValueError) as exc:
                reason = getattr(exc, "reason", exc)
                if isinstance(exc, TimeoutError) or isinstance(reason, TimeoutError):
                    raise self._error(method, url, f"no answer within {timeout:g}s") from None
                raise self._error(method, url, f"not answering: {reason}") from None
            try:
                return raw.decode() if text else json.loads(raw)
            except ValueError:
                raise self._error(method, url, f"answered something that is not JSON: {raw[:80]!r}") from None

    def _rate_limited(self, method: str, url: str, tries: int, waited: float, budget: float, asked: float | None) -> NodeApiError:
        more = f"; it asks to wait {asked:.1f}s more" if asked is not None else ""
        return self._error(
            method,
            url,
            f"rate limited (HTTP 429 too many requests from this client): gave up after {tries} tries and "
            f"{waited:.1f}s of waiting (at most {budget:g}s){more}",
            status=429,
            code="rate_limited",
        )

    def _http_error(self, method: str, url: str, exc: urllib.error.HTTPError) -> NodeApiError:
        code = message = fld = None
        try:
            err = json.loads(exc.read()).get("error", {})
            code, message, fld = err.get("code"), err.get("message"), err.get("field")
        except (ValueError, AttributeError, OSError):
            pass
        detail = " ".join(str(x) for x in (code and f"{code}:", message) if x)
        return self._error(method, url, f"HTTP {exc.code} {detail}".rstrip(), status=exc.code, code=code, field=fld)

    def _typed(self, path: str, parse: Callable[[Any], T], timeout: float | None = None) -> T:
        doc = self.get_json(path, timeout=timeout)
        try:
            return parse(doc)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self._error("GET", self.url + path, f"unexpected answer ({type(exc).__name__}: {exc})") from None

    # -- reads --

    def chain(self, *, timeout: float | None = None) -> ChainInfo:
        return self._typed("/v1/chain", ChainInfo.from_json, timeout)

    def try_chain(self, *, timeout: float | None = None) -> ChainInfo | None:
        """The chain info, or None when the node does not answer (or answers an error)."""
        try:
            return self.chain(timeout=timeout)
        except NodeApiError:
            return None

    def alive(self, *, timeout: float = 1.0) -> bool:
        """Whether the node answers /healthz (its process is up and serving)."""
        try:
            self.get_json("/healthz", timeout=timeout, max_retry_wait=0)
        except NodeApiError:
            return False
        return True

    def block(self, ref: int | str, *, timeout: float | None = None) -> Block:
        """The block at a height, with a hash, or "latest" (height 0: the genesis)."""
        return self._typed(f"/v1/blocks/{quote(str(ref), safe='')}", Block.from_json, timeout)

    def blocks(self, start: int, end: int | None = None, *, timeout: float | None = None) -> list[Block]:
        """The finalized blocks start..end (end: the tip when asked; heights past the tip are left out), by
        the node's range read, one request per RANGE_LIMIT heights at most. A node without the range read
        (an older release) is read block by block."""
        if start < 1:
            raise ValueError(f"heights start at 1 (block 0 is the genesis), not {start}")
        out: list[Block] = []
        nxt = start
        while end is None or nxt <= end:
            path = f"/v1/blocks?from={nxt}" + (f"&to={end}" if end is not None else "")
            try:
                doc = self.get_json(path, timeout=timeout)
            except NodeApiError as exc:
                if exc.status == 404 and not out:  # the range read never answers 404: the node has no such route
                    return self._blocks_one_by_one(start, end, timeout)
                raise
            try:
                out.extend(Block.from_json(b) for b in doc["blocks"])
                covered, tip = _int(doc["to"]), _int(doc["tip"])
            except (KeyError, TypeError, ValueError) as exc:
                raise self._error("GET", self.url + path, f"unexpected answer ({type(exc).__name__}: {exc})") from None
            if end is None:
                end = tip  # not chasing a tip that moves while we read
            if covered >= min(end, tip) or covered < nxt:
                break
            nxt = covered + 1
        return out

    def _blocks_one_by_one(self, start: int, end: int | None, timeout: float | None) -> list[Block]:
        last = self.chain(timeout=timeout).finalized_height if end is None else end
        out = []
        for h in range(start, last + 1):
            try:
                out.append(self.block(h, timeout=timeout))
            except NodeApiError as exc:
                if exc.status == 404:
                    break  # past the tip
                raise
        return out

    def account(self, address: str, *, timeout: float | None = None) -> Account:
        return self._typed(f"/v1/accounts/{quote(address, safe='')}", Account.from_json, timeout)

    def delegates(self, epoch: int | None = None, *, timeout: float | None = None) -> Delegates:
        path = "/v1/delegates" + (f"?epoch={epoch}" if epoch is not None else "")
        return self._typed(path, Delegates.from_json, timeout)

    def buckets(self, *, owner: str | None = None, candidate: str | None = None, timeout: float | None = None) -> list[Bucket]:
        """Stake buckets by id, optionally by owner or candidate (the node lists 1000 at most)."""
        q = "&".join(f"{k}={quote(v, safe='')}" for k, v in (("owner", owner), ("candidate", candidate)) if v)
        return self._typed("/v1/buckets" + (f"?{q}" if q else ""), lambda d: [Bucket.from_json(b) for b in d["buckets"]], timeout)

    def bucket(self, bucket_id: int, *, timeout: float | None = None) -> Bucket | None:
        try:
            return self._typed(f"/v1/buckets/{int(bucket_id)}", Bucket.from_json, timeout)
        except NodeApiError as exc:
            if exc.status == 404:
                return None
            raise

    def unclaimed_rewards(self, address: str, *, timeout: float | None = None) -> int:
        return self._typed(f"/v1/rewards/{quote(address, safe='')}", lambda d: _int(d["unclaimed"]), timeout)

    def epoch_books(self, epoch: int, *, candidate: str | None = None, timeout: float | None = None) -> EpochBooks:
        """An epoch's books (GET /v1/epochs/{epoch}/books); only the buckets voting for `candidate` when given."""
        q = f"?candidate={quote(candidate, safe='')}" if candidate else ""
        return self._typed(f"/v1/epochs/{int(epoch)}/books{q}", EpochBooks.from_json, timeout)

    def account_actions(self, address: str, *, since: int = 0, timeout: float | None = None) -> list[AccountAction]:
        """Every finalized action `address` sent or received, oldest first, from its `since`-th on (all pages)."""
        out: list[AccountAction] = []
        start: int | None = since
        while start is not None:
            path = f"/v1/accounts/{quote(address, safe='')}/actions?start={start}&limit=1000"
            doc = self.get_json(path, timeout=timeout)
            try:
                out.extend(AccountAction.from_json(a) for a in doc["actions"])
                start = None if doc["next"] is None else _int(doc["next"])
            except (KeyError, TypeError, ValueError) as exc:
                raise self._error("GET", self.url + path, f"unexpected answer ({type(exc).__name__}: {exc})") from None
        return out

    def action(self, action_hash: str, *, timeout: float | None = None) -> ActionStatus | None:
        """Where an action is (pending, finalized with its receipt, rejected); None when the node does not know it."""
        try:
            return self._typed(f"/v1/actions/{quote(action_hash, safe='')}", ActionStatus.from_json, timeout)
        except NodeApiError as exc:
            if exc.status == 404 and exc.code == "not_found":
                return None
            raise

    # -- writes --

    def submit(self, action: Any, *, timeout: float | None = None) -> str:
        """Submit one signed action (its wire mapping, or an object with to_wire()); its hash once the node
        admitted it. A refusal is a NodeApiError with the node's code (nonce_too_low, fee_too_low...) and field."""
        doc = self.post_json("/v1/actions", _wire(action), timeout=timeout)
        try:
            return str(doc["hash"])
        except (KeyError, TypeError):
            raise self._error("POST", self.url + "/v1/actions", f"unexpected answer: {str(doc)[:120]}") from None

    def submit_batch(self, actions: Iterable[Any], *, timeout: float | None = None) -> BatchResult:
        """Submit signed actions in one request (the node takes at most 2000): each one's answer, in order.
        A batch the node refuses whole (malformed) is a NodeApiError."""
        wires: Sequence[Any] = [_wire(a) for a in actions]
        doc = self.post_json("/v1/actions/batch", {"actions": wires}, timeout=timeout)
        try:
            return BatchResult.from_json(doc)
        except (KeyError, TypeError, ValueError) as exc:
            raise self._error(
                "POST", self.url + "/v1/actions/batch", f"unexpected answer ({type(exc).__name__}: {exc})"
            ) from None
