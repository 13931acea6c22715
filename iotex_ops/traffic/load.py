"""A load run, as an operator's load tester makes one: `iotex-ops load run` and bench/tps.py.

1. **Accounts**: `accounts` new keys, funded from the network's funded accounts (the lab's, or a file of
   secrets the operator gives) by one transfer each, waited for until final; or, with `use_funded`, the
   funded accounts themselves (their next nonces read from a node).
2. **Load**: `openloop.open_loop` (the traffic library's one open-loop generator) offers `tps` actions a second
   for `duration_s` whatever the nodes answer, a mix of transfers and `stake_create` votes (`Mix`), chosen by
   `seed`.
3. **Observation**, meanwhile: one node's finalized blocks are read as they are finalized (so that finalized
   TPS and latency come from the chain, not from what was sent); counters are sampled every second for the
   live line and the plots; the nodes' CPU and RSS from Prometheus when the network has one, else from their
   /metrics `process_*` gauges. After the load, the observer drains: it waits (at most `drain_s`) for the
   accepted actions to become final.
4. **Report**: `traffic.report.summarize`.

Bounded: at most MAX_TPS, MAX_DURATION_S, MAX_ACCOUNTS; every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from iotex_node import sdk
from iotex_ops.errors import OpsError
from iotex_ops.nodeapi import NodeApiError, NodeClient
from iotex_ops.traffic.nonces import CountingNonces
from iotex_ops.traffic.report import BlockSeen, Recording, summarize
from iotex_ops.traffic.senders import Signed

MAX_TPS = 10_000.0
MAX_DURATION_S = 3600.0
MAX_ACCOUNTS = 20_000
FUND_TIMEOUT_S = 120.0
STAKE_AMOUNT = 10**15  # rau a stake action locks (0.001 IOTX): votes, not a change of the delegate set
TRANSFER_AMOUNT = 1
ACTION_KINDS = ("transfer", "stake")
NOT_FINAL_SAMPLE = 100  # accepted actions never seen final whose status is asked after the drain


class LoadError(OpsError):
    """A load run cannot start or cannot go on (bad input, no node answering, accounts that cannot pay)."""


@dataclass(frozen=True)
class Mix:
    """Shares of each action kind, in percent of the offered actions (they add up to 100)."""

    transfer: int = 100
    stake: int = 0

    def to_json(self) -> dict[str, int]:
        return {"transfer": self.transfer, "stake": self.stake}


def parse_mix(text: str) -> Mix:
    """`transfer=90,stake=10` (shares in percent, adding up to 100; a kind left out is 0)."""
    shares: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        kind, eq, value = part.partition("=")
        kind = kind.strip()
        if not eq or kind not in ACTION_KINDS:
            raise LoadError(f"--mix: {part!r} is not KIND=PERCENT with KIND one of {', '.join(ACTION_KINDS)}")
        if kind in shares:
            raise LoadError(f"--mix: {kind} is given twice")
        try:
            shares[kind] = int(value)
        except ValueError:
            raise LoadError(f"--mix: {kind}={value.strip()!r} is not a whole percentage") from None
        if not 0 <= shares[kind] <= 100:
            raise LoadError(f"--mix: {kind}={shares[kind]} must be between 0 and 100")
    if sum(shares.values()) != 100:
        raise LoadError(f"--mix: the shares add up to {sum(shares.values())}, not 100 (e.g. transfer=90,stake=10)")
    return Mix(transfer=shares.get("transfer", 0), stake=shares.get("stake", 0))


@dataclass(frozen=True)
class Target:
    name: str
    url: str


@dataclass
class LoadSpec:
    targets: list[Target]
    tps: float
    duration_s: float
    funded: list[sdk.PrivateKey]  # the accounts that pay (or, with use_funded, that send)
    accounts: int = 0  # new accounts to fund and send from; 0: as many as the rate needs (auto_accounts)
    use_funded: bool = False
    mix: Mix = field(default_factory=Mix)
    seed: int = 0
    batch: int = 0  # actions per request; 0: tps / 10, within 10..500
    drain_s: float = 30.0
    prometheus_url: str | None = None
    observe: int = 0  # which target's blocks are read

    def check(self) -> None:
        if not self.targets:
            raise LoadError("no node to send to: the inventory lists no delegate (or --nodes selected none)")
        check_numbers(self.tps, self.duration_s, self.accounts, self.drain_s)
        if self.use_funded and len(self.funded) < 2:
            raise LoadError(f"sending from the funded accounts needs at least 2 of them, not {len(self.funded)}")
        if not self.use_funded and not self.funded:
            raise LoadError("no funded account to pay the load's accounts from")


def check_numbers(tps: float, duration_s: float, accounts: int = 0, drain_s: float = 30.0) -> None:
    """The run's numbers within their bounds, else a LoadError naming the option (before anything is read)."""
    if not (math.isfinite(tps) and 0 < tps <= MAX_TPS):
        raise LoadError(f"--tps must be in (0, {MAX_TPS:,.0f}], not {tps:g}")
    if not (math.isfinite(duration_s) and 0 < duration_s <= MAX_DURATION_S):
        raise LoadError(f"--duration must be in (0, {MAX_DURATION_S:,.0f}] seconds, not {duration_s:g}")
    if accounts and not 2 <= accounts <= MAX_ACCOUNTS:
        raise LoadError(f"--accounts must be in [2, {MAX_ACCOUNTS:,}], not {accounts}")
    if not (math.isfinite(drain_s) and 0 <= drain_s <= 600):
        raise LoadError(f"--drain must be in [0, 600] seconds, not {drain_s:g}")


def auto_accounts(tps: float) -> int:
    """Enough senders that each has a few actions in flight at most (a second's worth, about)."""
    return int(min(MAX_ACCOUNTS, max(50, math.ceil(tps))))


def auto_batch(tps: float) -> int:
    return int(min(500, max(10, tps // 10)))


@dataclass
class Progress:
    """What the live line shows, once a second."""

    elapsed_s: float
    phase: str  # "funding", "load", "drain"
    offered: int = 0
    accepted: int = 0
    refused: int = 0
    finalized: int = 0
    height: int = 0
    finalized_tps_1s: float = 0.0


# -- the nodes: versions, chain parameters, CPU and RSS --


def chain_infos(targets: Sequence[Target]) -> dict[str, Any]:
    """Each target's ChainInfo (None when it does not answer)."""
    out: dict[str, Any] = {}
    for t in targets:
        out[t.name] = NodeClient(t.url, name=t.name, timeout=3.0, max_retry_wait=0).try_chain(timeout=3.0)
    return out


_PROCESS = re.compile(r"^(process_cpu_seconds_total|process_resident_memory_bytes)(?:\{[^}]*\})? ([0-9.eE+-]+)", re.M)


def process_gauges(text: str) -> dict[str, float]:
    """process_cpu_seconds_total and process_resident_memory_bytes from a /metrics page (missing: left out)."""
    return {m.group(1): float(m.group(2)) for m in _PROCESS.finditer(text)}


class ResourceSampler:
    """Every `every` s, each node's /metrics process gauges: CPU over the run and RSS (end, peak)."""

    def __init__(self, targets: Sequence[Target], every: float = 2.0) -> None:
        self.targets, self.every = list(targets), every
        self.first: dict[str, tuple[float, float]] = {}  # name -> (t, cpu seconds)
        self.last: dict[str, tuple[float, float]] = {}
        self.rss: dict[str, float] = {}
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="load-resources", daemon=True)

    def sample(self) -> None:
        for t in self.targets:
            try:
                text = NodeClient(t.url, name=t.name, timeout=2.0, max_retry_wait=0).metrics(timeout=2.0)
            except NodeApiError:
                continue
            g = process_gauges(text)
            now = time.time()
            if "process_cpu_seconds_total" in g:
                self.first.setdefault(t.name, (now, g["process_cpu_seconds_total"]))
                self.last[t.name] = (now, g["process_cpu_seconds_total"])
            if "process_resident_memory_bytes" in g:
                self.rss[t.name] = g["process_resident_memory_bytes"]
                self.peak[t.name] = max(self.peak.get(t.name, 0.0), g["process_resident_memory_bytes"])

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def start(self) -> None:
        self.sample()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.sample()

    def figures(self) -> dict[str, dict[str, float | None]]:
        out: dict[str, dict[str, float | None]] = {}
        for t in self.targets:
            cpu = None
            if t.name in self.first and t.name in self.last and self.last[t.name][0] > self.first[t.name][0]:
                (t0, c0), (t1, c1) = self.first[t.name], self.last[t.name]
                cpu = round(100.0 * (c1 - c0) / (t1 - t0), 1)
            rss, peak = self.rss.get(t.name), self.peak.get(t.name)
            out[t.name] = {
                "cpu_percent": cpu,
                "rss_mib": None if rss is None else round(rss / 2**20, 1),
                "rss_peak_mib": None if peak is None else round(peak / 2**20, 1),
            }
        return out


def prometheus_resources(url: str, targets: Sequence[Target], start: float, end: float) -> dict[str, dict[str, float | None]]:
    """CPU (% of one core, averaged over [start, end]) and RSS (at end, peak) per node, from Prometheus (the
    nodes' `process_*` series, labelled `host` by the scrape config). Nodes without series are left out."""
    from iotex_ops.prom import Prometheus, PrometheusError

    window = max(2, math.ceil(end - start))
    at = f"@ {end:.3f}"
    queries = {
        "cpu_percent": f"100 * increase(process_cpu_seconds_total[{window}s] {at}) / {window}",
        "rss_mib": f"process_resident_memory_bytes {at} / 1048576",
        "rss_peak_mib": f"max_over_time(process_resident_memory_bytes[{window}s] {at}) / 1048576",
    }
    names = {t.name for t in targets}
    out: dict[str, dict[str, float | None]] = {}
    with contextlib.closing(Prometheus(url, timeout=5)) as prom:
        for key, q in queries.items():
            try:
                rows = prom.query(q)
            except PrometheusError:
                continue
            for r in rows:
                host = (r.get("metric") or {}).get("host")
                if host in names:
                    with contextlib.suppress(TypeError, ValueError, IndexError):
                        out.setdefault(host, {})[key] = round(float(r["value"][1]), 1)
    return out


# -- accounts --


def _chain_params(infos: dict[str, Any]) -> sdk.ChainParams:
    for info in infos.values():
        if info is not None:
            return sdk.ChainParams.from_chain_info(info.to_json())
    raise LoadError("no node answers (GET /v1/chain): " + ", ".join(infos) + "; is the network up?")


def _api(targets: Sequence[Target], infos: dict[str, Any]) -> NodeClient:
    for t in targets:
        if infos.get(t.name) is not None:
            return NodeClient(t.url, name=t.name, timeout=10.0, max_retry_wait=5.0)
    raise LoadError("no node answers")


def fund(
    client: NodeClient,
    funders: Sequence[sdk.PrivateKey],
    new: Sequence[sdk.PrivateKey],
    amount: int,
    params: sdk.ChainParams,
    say: Callable[[str], None] = lambda s: None,
    timeout: float = FUND_TIMEOUT_S,
) -> float:
    """Pay `amount` to each new account, from the funders in turn; wait until every payment is final. Returns
    the seconds it took. LoadError when the funders cannot pay or a payment is refused."""
    t0 = time.time()
    accounts = [client.account(k.address) for k in funders]
    per_funder = [len(range(i, len(new), len(funders))) for i in range(len(funders))]
    for k, acct, n in zip(funders, accounts, per_funder, strict=True):
        need = n * (amount + params.min_fee)
        if n and acct.balance < need:
            raise LoadError(
                f"funded account {k.address} holds {acct.balance} rau; paying {n} load account(s) {amount} rau each "
                f"needs {need} (fewer --accounts, a shorter --duration, or richer funded accounts)"
            )
    actions: list[tuple[int, Any]] = []
    last_nonce: dict[int, int] = {}
    nxt = {i: a.pending_nonce for i, a in enumerate(accounts)}
    for j, key in enumerate(new):
        i = j % len(funders)
        nonce = nxt[i]
        nxt[i] += 1
        last_nonce[i] = nonce
        act = sdk.transfer(funders[i], chain_id=params.chain_id, nonce=nonce, fee=params.min_fee, to=key.address, amount=amount)
        actions.append((i, act))
    # in nonce order per funder: one node, batches in order
    for at in range(0, len(actions), 500):
        chunk = [a for _, a in actions[at : at + 500]]
        res = client.submit_batch(chunk, timeout=30)
        refused = [r for r in res.results if not r.accepted]
        if refused:
            r = refused[0]
            raise LoadError(
                f"funding the load's accounts: {len(refused)} payment(s) refused by {client.name}, e.g. {r.code}: {r.message}"
            )
    say(f"funding {len(new)} account(s) from {len(funders)} funded account(s): {len(actions)} payments sent")
    deadline = time.monotonic() + timeout
    while True:
        done = all(client.account(funders[i].address).nonce >= n for i, n in last_nonce.items())
        if done:
            return time.time() - t0
        if time.monotonic() > deadline:
            raise LoadError(f"funding the load's accounts: the payments were not all final within {timeout:.0f} s")
        time.sleep(0.5)


def next_nonces(client: NodeClient, keys: Sequence[sdk.PrivateKey]) -> CountingNonces[int]:
    nonces: CountingNonces[int] = CountingNonces()
    for i, k in enumerate(keys):
        a = client.get_json(f"/v1/accounts/{k.address}", timeout=5)
        nonces.set(i, int(a["pending_nonce"]))
    return nonces


# -- the action mix --


def builder(
    keys: Sequence[sdk.PrivateKey], mix: Mix, params: sdk.ChainParams, candidates: Sequence[str]
) -> Callable[[int, int, int, random.Random], Signed]:
    if mix.stake and not candidates:
        raise LoadError("--mix asks for stake actions, but the network lists no candidate to vote for (GET /v1/delegates)")
    addresses = [k.address for k in keys]

    def build(i: int, j: int, nonce: int, rng: random.Random) -> Signed:
        if mix.stake and rng.randrange(100) < mix.stake:
            act = sdk.stake_create(
                keys[i],
                chain_id=params.chain_id,
                nonce=nonce,
                fee=params.min_fee,
                candidate=candidates[rng.randrange(len(candidates))],
                amount=STAKE_AMOUNT,
                duration_days=0,
            )
        else:
            act = sdk.transfer(
                keys[i], chain_id=params.chain_id, nonce=nonce, fee=params.min_fee, to=addresses[j], amount=TRANSFER_AMOUNT
            )
        return Signed(act.to_wire(), act.hash_hex, i)

    return build


# -- the run --


def run(
    spec: LoadSpec, *, progress: Callable[[Progress], None] | None = None, say: Callable[[str], None] = lambda s: None
) -> dict[str, Any]:
    """Fund, load, observe, drain, report: the report's document (`traffic.report.summarize`), with its
    consistency problems under "problems" (none expected)."""
    from iotex_ops.traffic.report import consistency_problems

    spec.check()
    infos = chain_infos(spec.targets)
    down = [n for n, i in infos.items() if i is None]
    if len(down) == len(infos):
        raise LoadError(f"no node answers (GET /v1/chain): {', '.join(t.url for t in spec.targets)}; is the network up?")
    if down:
        say(f"not answering, left out: {', '.join(down)}")
    targets = [t for t in spec.targets if infos[t.name] is not None]
    params = _chain_params(infos)
    client = _api(targets, infos)
    t_setup = time.time()
    batch = spec.batch or auto_batch(spec.tps)
    candidates: list[str] = []
    if spec.mix.stake:
        candidates = [c.name for c in client.delegates().candidates]
    if spec.use_funded:
        keys = list(spec.funded)
        nonces = next_nonces(client, keys)
    else:
        n = spec.accounts or auto_accounts(spec.tps)
        rng = random.Random(spec.seed)
        keys = [sdk.PrivateKey(rng.randbytes(32)) for _ in range(n)]  # from the seed: a run can be repeated
        per_account = math.ceil(spec.tps * spec.duration_s / n * 1.5) + 10
        amount = per_account * (params.min_fee + max(TRANSFER_AMOUNT, STAKE_AMOUNT if spec.mix.stake else 0))
        if progress is not None:
            progress(Progress(0.0, "funding"))
        fund(client, spec.funded, keys, amount, params, say=say)
        nonces = next_nonces(client, keys) if _used_before(client, keys) else CountingNonces.fresh(range(len(keys)))
    setup_s = time.time() - t_setup
    rec = asyncio.run(_load(spec, targets, keys, nonces, params, batch, candidates, progress))
    rec.meta.update(
        {
            "accounts": len(keys),
            "accounts_from": "the funded accounts" if spec.use_funded else f"{len(keys)} new, funded by {len(spec.funded)}",
            "mix": spec.mix.to_json(),
            "batch": batch,
            "chain_id": params.chain_id,
            "fee": str(params.min_fee),
            "setup_s": round(setup_s, 1),
            "observed_node": targets[min(spec.observe, len(targets) - 1)].name,
        }
    )
    for t in targets:
        info = infos[t.name]
        rec.nodes.setdefault(t.name, {}).update({"url": t.url, "version": info.node_version, "protocol": info.protocol_version})
    doc = summarize(rec)
    doc["problems"] = consistency_problems(doc)
    return doc


def _used_before(client: NodeClient, keys: Sequence[sdk.PrivateKey]) -> bool:
    """Whether the seed's first account has sent before (the same seed on the same chain): then every next nonce is read."""
    return int(client.get_json(f"/v1/accounts/{keys[0].address}", timeout=5).get("nonce") or 0) > 0


async def _load(
    spec: LoadSpec,
    targets: Sequence[Target],
    keys: Sequence[sdk.PrivateKey],
    nonces: CountingNonces[int],
    params: sdk.ChainParams,
    batch: int,
    candidates: Sequence[str],
    progress: Callable[[Progress], None] | None,
) -> Recording:
    import aiohttp

    from iotex_ops.traffic.openloop import OpenLoopRun, open_loop
    from iotex_ops.traffic.transport import AiohttpNodeApi, Unavailable

    observe = targets[min(spec.observe, len(targets) - 1)]
    rec = Recording(tps=spec.tps, duration_s=spec.duration_s, seed=spec.seed, started=time.time())
    pending: dict[tuple[str, int], float] = {}  # (sender, nonce) of accepted actions not yet seen final -> offered at
    refused: dict[str, int] = {}
    accepted = 0

    ours = {k.address for k in keys}
    early: dict[tuple[str, int], float] = {}  # the load's actions seen final before their answer came back
    hashes: dict[tuple[str, int], str] = {}  # of the accepted actions, to ask about those never seen final

    answered_batch: set[float] = set()

    def on_answer(s: Signed, code: str | None, t: float) -> None:
        nonlocal accepted
        if t not in answered_batch:  # once per request (its actions share their offer time)
            answered_batch.add(t)
            rec.answers.append(time.time() - t)
        if code is None:
            accepted += 1
            key = (s.wire["sender"], int(s.wire["nonce"]))
            seen = early.pop(key, None)
            if seen is None:
                pending[key] = t
                hashes[key] = s.hash
            else:
                rec.latencies.append((t, seen - t))
        else:
            refused[code] = refused.get(code, 0) + 1

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        api = AiohttpNodeApi(session)
        try:
            height = int((await api.get(observe.url, "/v1/chain"))["finalized_height"])
        except (Unavailable, KeyError, TypeError, ValueError) as exc:
            raise LoadError(f"cannot read {observe.name}'s finalized height: {exc}") from None
        loading = asyncio.Event()
        loading.set()
        resources = ResourceSampler(targets)
        await asyncio.to_thread(resources.start)
        ol = OpenLoopRun()
        rec.started = time.time()

        async def observer() -> None:
            nonlocal height
            while True:
                try:
                    tip = int((await api.get(observe.url, "/v1/chain"))["finalized_height"])
                    while height < tip:
                        b = await api.get(observe.url, f"/v1/blocks/{height + 1}")
                        seen = time.time()
                        mine = 0
                        for a in b.get("actions") or ():
                            key = (a.get("sender"), a.get("nonce"))
                            t = pending.pop(key, None)
                            if t is not None:
                                mine += 1
                                rec.latencies.append((t, seen - t))
                            elif key[0] in ours:
                                mine += 1
                                early[key] = seen
                        h = b["header"]
                        rec.blocks.append(
                            BlockSeen(int(h["height"]), int(h["timestamp_ms"]), len(b.get("actions") or ()), mine, seen)
                        )
                        height += 1
                except (Unavailable, KeyError, TypeError, ValueError):
                    pass
                await asyncio.sleep(0.1)

        obs = asyncio.create_task(observer())
        t0 = time.time()

        async def sampler(phase: list[str]) -> None:
            last = (t0, 0)
            while True:
                await asyncio.sleep(1.0)
                now = time.time()
                fin = rec.finalized
                rec.samples.append((now, ol.generated, accepted, fin))
                if progress is not None:
                    rate = (fin - last[1]) / max(1e-9, now - last[0])
                    progress(Progress(now - t0, phase[0], ol.generated, accepted, sum(refused.values()), fin, height, rate))
                last = (now, fin)

        phase = ["load"]
        rec.samples.append((t0, 0, 0, 0))
        samp = asyncio.create_task(sampler(phase))
        build = builder(keys, spec.mix, params, candidates)
        await open_loop(
            [t.url for t in targets],
            keys,
            chain_id=params.chain_id,
            fee=params.min_fee,
            tps=spec.tps,
            seconds=spec.duration_s,
            batch=batch,
            seed=spec.seed,
            api=api,
            nonces=nonces,
            build=build,
            on_answer=on_answer,
            run=ol,
        )
        rec.ended = t0 + min(ol.elapsed, spec.duration_s) if ol.elapsed else time.time()
        phase[0] = "drain"
        # drain: until every accepted action is final, or drain_s, or nothing new is final for 10 s
        deadline = time.monotonic() + spec.drain_s
        last_fin, last_change = rec.finalized, time.monotonic()
        while pending and time.monotonic() < deadline and time.monotonic() - last_change < 10:
            await asyncio.sleep(0.25)
            if rec.finalized != last_fin:
                last_fin, last_change = rec.finalized, time.monotonic()
        await asyncio.sleep(0.3)
        # those not seen final: still waiting in a mempool (a backlog the drain did not clear), or refused for good?
        sample = [hashes[k] for k in list(pending)[:NOT_FINAL_SAMPLE]]
        statuses: dict[str, int] = {}
        for h in sample:
            try:
                st = str((await api.get(observe.url, f"/v1/actions/{h}")).get("status"))
            except (Unavailable, AttributeError):
                st = "unknown"
            statuses[st] = statuses.get(st, 0) + 1
        if statuses:
            rec.meta["not_final_sample"] = statuses
        for task in (obs, samp):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.to_thread(resources.stop)
    rec.offered = ol.generated
    rec.accepted = accepted
    rec.refused = refused
    rec.meta["generator_behind_s"] = round(ol.behind_s, 3)
    rec.meta["nonces_reread"] = ol.stats.resyncs  # accounts that stopped after a refusal and read their nonce again
    rec.meta["not_offered"] = ol.skipped  # slots of the rate left empty: every account of a node was waiting
    rec.meta["drained"] = not pending
    figures = resources.figures()
    source = "the nodes' /metrics (process_* gauges)"
    if spec.prometheus_url:
        try:
            prom = await asyncio.to_thread(prometheus_resources, spec.prometheus_url, targets, rec.started, rec.ended)
        except OpsError:
            prom = {}
        if prom:
            source = f"Prometheus ({spec.prometheus_url})"
            for name, vals in prom.items():
                figures.setdefault(name, {}).update({k: v for k, v in vals.items() if v is not None})
    rec.meta["resources_from"] = source
    for name, vals in figures.items():
        rec.nodes.setdefault(name, {}).update(vals)
    return rec
