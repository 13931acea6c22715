"""The traffic library without processes: the accounts reader, the nonce strategies, the senders and their
stats, and the loads driven against a fake node API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from iotex_node import sdk
from iotex_ops import traffic
from iotex_ops.traffic import (
    AccountsError,
    BackgroundLoad,
    CountingNonces,
    LoadStats,
    SyncSender,
    Unavailable,
    WindowLoad,
    WindowNonces,
    read_accounts,
    signed_transfer,
)
from iotex_ops.traffic.openloop import open_loop
from iotex_ops.traffic.senders import AsyncSender

KEYS = [sdk.PrivateKey(bytes(31) + bytes([i])) for i in range(1, 5)]


def _write(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc))
    return path


# --- funded accounts ------------------------------------------------------------------------------


def test_accounts_are_read_from_the_file_or_the_networks_directory(tmp_path: Path) -> None:
    _write(tmp_path / traffic.ACCOUNTS_FILE, [k.secret().hex() for k in KEYS])
    for where in (tmp_path, tmp_path / traffic.ACCOUNTS_FILE, str(tmp_path)):
        assert [k.address for k in read_accounts(where)] == [k.address for k in KEYS]
    assert len(read_accounts(tmp_path, at_least=4)) == 4


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read funded accounts from .*: No such file"),
        ("not json", "cannot read funded accounts from .*: it is not JSON"),
        ({"a": 1}, "must be a JSON list"),
        ([KEYS[0].secret().hex(), 7], "entry 1 is not a 64-hex-character secret"),
        ([KEYS[0].secret().hex()[:-2]], "entry 0 is not a 64-hex-character secret"),
        (["zz" * 32], "entry 0 is not a valid secp256k1 secret"),
        (["00" * 32], "entry 0 is not a valid secp256k1 secret"),
        ([KEYS[0].secret().hex()], r"holds 1 funded account\(s\); 2 are needed .*--accounts N"),
    ],
)
def test_bad_accounts_files_are_refused_naming_the_file_never_a_secret(tmp_path: Path, content: Any, message: str) -> None:
    path = tmp_path / "accounts.secret.json"
    if isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        _write(path, content)
    with pytest.raises(AccountsError, match=message) as err:
        read_accounts(path, at_least=2)
    assert str(path) in str(err.value)
    assert KEYS[0].secret().hex()[:16] not in str(err.value)


# --- nonce strategies -----------------------------------------------------------------------------


def test_counting_nonces_count_forget_and_take_what_a_node_says() -> None:
    n: CountingNonces[int] = CountingNonces.fresh([0, 1])
    assert [n.take(0), n.take(0), n.take(1)] == [1, 2, 1]
    n.forget(0)
    assert not n.known(0) and n.known(1)
    with pytest.raises(KeyError):
        n.take(0)
    n.set(0, 17)
    assert n.take(0) == 17 and n.take(0) == 18
    with pytest.raises(ValueError, match="at least 1"):
        n.set(0, 0)


def test_window_nonces_never_move_back_and_resend_the_same_signed_bytes() -> None:
    w: WindowNonces[str, tuple[int, int]] = WindowNonces(["a", "b"], window=3)
    signs = iter(range(100))

    def sign(nonce: int) -> tuple[int, int]:
        return (nonce, next(signs))

    assert list(w.in_flight("a")) == [1, 2, 3]
    first = [w.signed("a", n, sign) for n in w.in_flight("a")]
    assert [w.signed("a", n, sign) for n in w.in_flight("a")] == first  # signed once, the same after
    assert w.update("a", 2) == 2
    assert list(w.in_flight("a")) == [3, 4, 5]
    assert w.signed("a", 3, sign) == first[2]  # still the bytes signed before
    assert w.held() == 1  # nonces 1 and 2 are committed: dropped
    assert w.update("a", 1) == 2, "a node that is catching up reports an older nonce"
    w.update("b", 4)
    assert w.total_committed == 6 and w.committed("b") == 4
    with pytest.raises(ValueError, match="at least one"):
        WindowNonces(["a"], window=0)


# --- stats and senders ----------------------------------------------------------------------------


def test_load_stats_count_refusals_by_reason_and_report_the_rehearsal_fields() -> None:
    s = LoadStats(accepted=3)
    s.refuse("nonce_too_low")
    s.refuse("nonce_too_low")
    s.refuse("fee_too_low")
    assert s.refused == 3 and s.answered == 6
    assert s.by_reason == {"nonce_too_low": 2, "fee_too_low": 1}
    assert s.to_json() == {"accepted": 3, "refused": 3, "unavailable": 0, "resyncs": 0, "by_reason": s.by_reason}


class FakeApi:
    """A NodeApi: one node's chain, accounts and batch endpoint, or down."""

    def __init__(self, *, min_fee: str = "10", refuse: dict[int, str] | None = None) -> None:
        self.down = False
        self.min_fee = min_fee
        self.refuse = refuse or {}  # nonce -> refusal code
        self.nonces: dict[str, int] = {}  # committed nonce per address
        self.batches: list[list[dict[str, Any]]] = []
        self.statuses: dict[str, str] = {}

    def get(self, api: str, path: str, *, timeout: float) -> Any:
        if self.down:
            raise Unavailable(f"{api}{path}: connection refused")
        if path == "/v1/chain":
            return {"chain_id": 5, "min_fee": self.min_fee}
        if path.startswith("/v1/accounts/"):
            committed = self.nonces.get(path.rsplit("/", 1)[1], 0)
            return {"nonce": committed, "pending_nonce": committed + 1}
        if path.startswith("/v1/actions/"):
            return {"status": self.statuses.get(path.rsplit("/", 1)[1], "pending")}
        raise AssertionError(path)

    def post(self, api: str, path: str, body: Any, *, timeout: float) -> Any:
        if self.down:
            raise Unavailable(f"{api}{path}: connection refused")
        assert path == "/v1/actions/batch"
        self.batches.append(body["actions"])
        results = []
        for w in body["actions"]:
            code = self.refuse.get(w["nonce"])
            results.append(
                {"error": {"code": code, "message": "no"}} if code else {"hash": sdk.action_hash(w), "status": "pending"}
            )
        return {"accepted": sum("hash" in r for r in results), "results": results}


def test_the_sync_sender_sorts_answers_and_counts_an_unanswered_request() -> None:
    api, stats = FakeApi(refuse={2: "nonce_too_high"}), LoadStats()
    sender = SyncSender(stats, api)
    batch = [signed_transfer(KEYS, 0, KEYS[1].address, chain_id=5, nonce=n, fee=10) for n in (1, 2, 3)]
    assert sender.post("http://n0", batch) == [None, "nonce_too_high", None]
    assert (stats.sent, stats.accepted, stats.refused, stats.by_reason) == (3, 2, 1, {"nonce_too_high": 1})
    api.down = True
    with pytest.raises(Unavailable):
        sender.post("http://n0", batch)
    assert (stats.sent, stats.unavailable, stats.failed_requests) == (6, 3, 1)


def test_an_answer_for_another_action_is_not_taken_as_accepted() -> None:
    class Liar(FakeApi):
        def post(self, api: str, path: str, body: Any, *, timeout: float) -> Any:
            return {"results": [{"hash": "00" * 32} for _ in body["actions"]]}

    stats = LoadStats()
    batch = [signed_transfer(KEYS, 0, KEYS[1].address, chain_id=5, nonce=1, fee=10)]
    assert SyncSender(stats, Liar()).post("http://n0", batch) == ["unknown"]
    assert stats.accepted == 0 and stats.by_reason == {"unknown": 1}


async def test_the_async_sender_counts_like_the_sync_one() -> None:
    class AsyncFake:
        def __init__(self) -> None:
            self.sync = FakeApi(refuse={1: "duplicate"})

        async def post(self, api: str, path: str, body: Any) -> Any:
            return self.sync.post(api, path, body, timeout=1)

    fake, stats = AsyncFake(), LoadStats()
    batch = [signed_transfer(KEYS, 1, KEYS[0].address, chain_id=5, nonce=n, fee=10) for n in (1, 2)]
    assert await AsyncSender(stats, fake).post("http://n0", batch) == ["duplicate", None]
    assert (stats.accepted, stats.refused) == (1, 1)
    fake.sync.down = True
    with pytest.raises(Unavailable):
        await AsyncSender(stats, fake).post("http://n0", batch)
    assert stats.unavailable == 2


# --- the loads ------------------------------------------------------------------------------------


def test_a_window_load_resends_its_window_and_follows_the_committed_nonces() -> None:
    api = FakeApi()
    load = WindowLoad(lambda: ["http://n0"], KEYS[:2], chain_id=5, fee=10, window=3, api=api)
    load.tick()
    first = api.batches[-1]
    assert [(w["sender"], w["nonce"]) for w in first] == [(KEYS[0].address, n) for n in (1, 2, 3)] + [
        (KEYS[1].address, n) for n in (1, 2, 3)
    ]
    assert all(w["payload"]["to"] == KEYS[1].address for w in first[:3]) and first[3]["payload"]["to"] == KEYS[0].address
    load.tick()
    assert api.batches[-1] == first, "the same signed bytes are re-sent"
    api.nonces[KEYS[0].address] = 2
    load.tick()
    assert [w["nonce"] for w in api.batches[-1][:3]] == [3, 4, 5] and api.batches[-1][0] == first[2]
    assert load.committed == 2 and load.stats.ticks == 3 and load.stats.accepted == 18
    api.down = True
    load.tick()
    assert load.stats.failed_requests == 1 and load.stats.ticks == 3
    dead = WindowLoad(lambda: [], KEYS[:2], chain_id=5, fee=10, api=api)
    dead.tick()  # no node running: nothing to do
    assert dead.stats == LoadStats()


def test_the_background_load_resyncs_forgets_refused_nonces_and_finds_lost_actions(tmp_path: Path) -> None:
    accounts = _write(tmp_path / "a.json", [k.secret().hex() for k in KEYS])
    api = FakeApi(min_fee="25", refuse={2: "nonce_too_high"})
    bg = BackgroundLoad(["http://n0", "http://n1"], accounts, batch=8, api=api)
    bg._send_batch(0)
    sent = api.batches[-1]
    assert {w["fee"] for w in sent} == {"25"} and {w["chain_id"] for w in sent} == {5}
    refused = {w["sender"] for w in sent if w["nonce"] == 2}
    assert bg.stats.resyncs == len({w["sender"] for w in sent})
    assert bg.stats.refused == sum(w["nonce"] == 2 for w in sent) and bg.stats.accepted == len(bg.accepted)
    assert all(not bg.nonces.known(i) for i, k in enumerate(KEYS) if k.address in refused)
    hashes = [h for _, h in bg.accepted]
    api.statuses = dict.fromkeys(hashes[1:], "finalized")
    lost = bg.lost(wait=0)
    assert lost == {"offered": 8, "accepted": len(hashes), "final": len(hashes) - 1, "lost": 1, "examples": hashes[:1]}
    assert {w["sender"] for w in sent} <= {KEYS[0].address, KEYS[2].address}, "node n0's accounts only"
    api.down = True
    before = bg.stats.unavailable
    bg._send_batch(1)
    assert bg.stats.unavailable > before


def test_the_background_load_names_an_unreadable_accounts_file(tmp_path: Path) -> None:
    with pytest.raises(traffic.AccountsError, match=r"background load: cannot read funded accounts from .*nowhere"):
        BackgroundLoad(["http://n0"], tmp_path / "nowhere")


class OneNodeDown(FakeApi):
    """Node n1 refuses connections; n0 answers and keeps its blocks (every batch it took, one block each)."""

    def get(self, api: str, path: str, *, timeout: float) -> Any:
        if api == "http://n1":
            raise Unavailable(f"{api}{path}: connection refused")
        if path == "/v1/chain":
            return {"chain_id": 5, "min_fee": self.min_fee, "finalized_height": len(self.batches)}
        if path.startswith("/v1/blocks/"):
            return {"actions": self.batches[int(path.rsplit("/", 1)[1]) - 1]}
        return super().get(api, path, timeout=timeout)

    def post(self, api: str, path: str, body: Any, *, timeout: float) -> Any:
        if api == "http://n1":
            raise Unavailable(f"{api}{path}: connection refused")
        return super().post(api, path, body, timeout=timeout)


def test_the_background_load_keeps_each_account_on_its_node_and_finds_final_actions_in_blocks(tmp_path: Path) -> None:
    accounts = _write(tmp_path / "a.json", [k.secret().hex() for k in KEYS])
    api = OneNodeDown()
    bg = BackgroundLoad(["http://n0", "http://n1"], accounts, batch=6, api=api)
    for n in range(6):
        bg._send_batch(n)
    # n1 failed once: its accounts (1 and 3) wait, nothing of theirs was ever sent elsewhere; n0's carry the rate
    assert {w["sender"] for b in api.batches for w in b} == {KEYS[0].address, KEYS[2].address}
    assert sum(len(b) for b in api.batches) >= 5 * 6 and bg.stats.unavailable == 6
    assert bg.offered_between() == sum(len(b) for b in api.batches)
    lost = bg.lost(wait=0, from_height=1)  # every accepted action is in n0's blocks: no status asked
    assert lost["lost"] == 0 and lost["final"] == lost["accepted"] == len(bg.accepted) == bg.offered_between()


async def test_the_open_loop_pins_accounts_to_nodes_and_counts_nonces_from_one() -> None:
    class Recorder:
        def __init__(self) -> None:
            self.sync = FakeApi()
            self.by_node: dict[str, list[dict[str, Any]]] = {}

        async def post(self, api: str, path: str, body: Any) -> Any:
            self.by_node.setdefault(api, []).extend(body["actions"])
            return self.sync.post(api, path, body, timeout=1)

    rec = Recorder()
    run = await open_loop(["http://n0", "http://n1"], KEYS, chain_id=5, fee=10, tps=400, seconds=0.2, batch=4, api=rec)
    assert run.generated >= 8 and len(run.submits) == run.generated == run.stats.accepted
    for node, senders in (("http://n0", {KEYS[0].address, KEYS[2].address}), ("http://n1", {KEYS[1].address, KEYS[3].address})):
        wires = rec.by_node[node]
        assert {w["sender"] for w in wires} == senders
        for s in senders:
            assert [w["nonce"] for w in wires if w["sender"] == s] == list(range(1, 1 + sum(w["sender"] == s for w in wires)))


async def test_the_open_loop_reads_a_refused_accounts_nonce_again_before_it_sends_more() -> None:
    class OnceRefused:
        """Refuses each sender's nonce 2 the first time (as a node that missed it would); GET answers the
        accounts' next nonces from what it accepted."""

        def __init__(self) -> None:
            self.accepted: dict[str, list[int]] = {}
            self.refused: set[str] = set()

        async def post(self, api: str, path: str, body: Any) -> Any:
            results = []
            for w in body["actions"]:
                mine = self.accepted.setdefault(w["sender"], [])
                if w["nonce"] != len(mine) + 1 or (w["nonce"] == 2 and w["sender"] not in self.refused):
                    self.refused.add(w["sender"])
                    results.append({"error": {"code": "nonce_gap", "message": "no"}})
                else:
                    mine.append(w["nonce"])
                    results.append({"hash": sdk.action_hash(w)})
            return {"accepted": sum("hash" in r for r in results), "results": results}

        async def get(self, api: str, path: str) -> Any:
            return {"pending_nonce": len(self.accepted.get(path.rsplit("/", 1)[1], [])) + 1}

    node = OnceRefused()
    run = await open_loop(["http://n0"], KEYS, chain_id=5, fee=10, tps=400, seconds=1.0, batch=4, api=node)
    assert run.stats.resyncs >= 1 and node.refused
    for sender, nonces in node.accepted.items():  # what each sender got accepted has no gap: it went on after 2
        assert nonces == list(range(1, len(nonces) + 1)), sender
    assert sum(len(n) for n in node.accepted.values()) > len(KEYS) * 2
