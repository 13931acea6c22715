"""The delegate's client on a local network: every command, and every refusal (a clear message, an exit
status, nothing sent), then a drill-style round: stake and vote, an epoch, claim, bookkeep, distribute.

One delegate process (LocalNet), short blocks and epochs; commands run in-process through click's runner,
with a client home of their own and passwords from an environment variable (stdin is not a terminal).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from iotex_node.testnet import OWNERS_FILE
from iotex_ops.cli import main
from iotex_ops.lab import LocalNet
from iotex_ops.traffic import read_accounts

pytestmark = [pytest.mark.slow, pytest.mark.network]
EPOCH = 10
PASSWORD_ENV = "TEST_CLIENT_PASSWORD"


class Client:
    def __init__(self, net: LocalNet, home: Path) -> None:
        self.net = net
        self.home = home
        self.env = {"IOTEX_OPS_CLIENT_HOME": str(home), "IOTEX_OPS_ENDPOINT": net.nodes[0].api, PASSWORD_ENV: "correct horse"}

    def run(self, *args: str, code: int = 0, env: dict[str, str] | None = None, stdin: str | None = None) -> Result:
        res = CliRunner().invoke(main, list(args), env={**self.env, **(env or {})}, input=stdin)
        assert res.exit_code == code, (
            f"{args}: exit {res.exit_code}\nstdout: {res.stdout}\nstderr: {res.stderr}\n{res.exception!r}"
        )
        assert "Traceback" not in res.stderr and "Traceback" not in res.stdout
        return res

    def json(self, *args: str, code: int = 0, **kw: Any) -> Any:
        res = self.run(*args, "--json", code=code, **kw)
        return json.loads(res.stdout)

    def refused(self, *args: str, code: str, exit_code: int = 2, **kw: Any) -> str:
        doc = self.json(*args, code=exit_code, **kw)
        assert doc["error"]["code"] == code, doc
        return str(doc["error"]["message"])


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNet]:
    root = tmp_path_factory.mktemp("client-net")
    n = LocalNet.generate(root / "net", 1, block_interval_ms=300, epoch_length=EPOCH, accounts=4, rate_limit=2000.0)
    with n:
        n.start()
        n.wait_height(2, timeout=60)
        yield n


@pytest.fixture(scope="module")
def client(net: LocalNet, tmp_path_factory: pytest.TempPathFactory) -> Client:
    c = Client(net, tmp_path_factory.mktemp("client-home"))
    keys = read_accounts(net.root)
    for alias, key in (("alice", keys[0]), ("carol", keys[2])):
        kf = c.home.parent / f"{alias}.key"
        kf.write_text(key.secret().hex())
        c.run("account", "import", "--alias", alias, "--private-key-file", str(kf), "--password-env", PASSWORD_ENV)
    owner = read_accounts(net.root / OWNERS_FILE)[0]
    c.run("account", "import", "--alias", "d0owner", "--private-key-stdin", "--password-env", PASSWORD_ENV,
          stdin=owner.secret().hex() + "\n")  # fmt: skip
    c.run("account", "config", "--default", "alice")
    return c


def test_accounts_keystores_aliases_config_and_export(client: Client, net: LocalNet) -> None:
    made = client.json("account", "create", "--alias", "bob", "--password-env", PASSWORD_ENV)
    assert made["address"].startswith("io1")
    listed = client.json("account", "list")["accounts"]
    assert {a["alias"] for a in listed} >= {"alice", "bob", "carol", "d0owner"}
    assert [a["alias"] for a in listed if a["default"]] == ["alice"]
    client.run("account", "alias", "set", "watch", made["address"])
    assert client.json("account", "alias", "list")["aliases"]["watch"] == made["address"]
    client.run("account", "alias", "remove", "watch")
    bal = client.json("account", "balance", "alice", "bob")["accounts"]
    assert int(bal[0]["balance"]) > 0 and bal[1]["balance"] == "0" and bal[1]["alias"] == "bob"
    assert client.json("account", "balance")["accounts"][0]["alias"] == "alice"  # the default account
    assert client.json("account", "nonce", "bob")["pending_nonce"] == 1
    cfg = client.json("account", "config")
    assert cfg["default_account"] == "alice" and "bob" in cfg["aliases"]
    # export: the address typed back, else nothing is shown
    assert client.refused("account", "export", "bob", "--password-env", PASSWORD_ENV, code="not_confirmed", exit_code=1)
    wrong = client.refused("account", "export", "bob", "--confirm", "io1nope", "--password-env", PASSWORD_ENV,
                           code="not_confirmed", exit_code=1)  # fmt: skip
    assert "nothing was shown" in wrong
    out = client.json("account", "export", "bob", "--confirm", made["address"], "--password-env", PASSWORD_ENV)
    from iotex_node.sdk import PrivateKey

    assert PrivateKey.from_hex(out["private_key"]).address == made["address"]
    # a node's keystore, with its own password (a file); a wrong one is refused by name, nothing stored
    node_home = net.nodes[0].home
    bad = client.refused("account", "import", "--alias", "op0", "--keystore", str(node_home / "keystore.json"),
                         "--password-env", PASSWORD_ENV, code="wrong_password")  # fmt: skip
    assert "wrong password" in bad and "op0" not in client.json("account", "alias", "list")["aliases"]
    op = client.json("account", "import", "--alias", "op0", "--keystore", str(node_home / "keystore.json"),
                     "--password-file", str(node_home / "keystore.pass"))  # fmt: skip
    assert op["address"] == client.json("chain", "delegates")["candidates"][0]["operator"]
    # the keystore is encrypted and private: no secret in it, mode 0600
    ks = client.home / "keystores" / f"{made['address']}.json"
    assert ks.stat().st_mode & 0o777 == 0o600 and out["private_key"] not in ks.read_text()


def test_refusals_are_clear_and_send_nothing(client: Client, net: LocalNet) -> None:
    alice = client.json("account", "balance", "alice")["accounts"][0]
    bob = client.json("account", "create", "--alias", "poor", "--password-env", PASSWORD_ENV)["address"]
    msg = client.refused("action", "transfer", "nobody", "1", "--yes", "--password-env", PASSWORD_ENV, code="unknown_alias")
    assert "nobody" in msg
    assert "not a valid" in client.refused("account", "balance", "io1notanaddress", code="bad_address")
    # a checksum the node refuses: the node's answer, named, exit 2
    assert client.refused("account", "balance", alice["address"][:-1] + ("q" if alice["address"][-1] != "q" else "p"),
                          code="invalid_address")  # fmt: skip
    wrong = client.refused("action", "transfer", "poor", "1", "--yes", "--password-env", PASSWORD_ENV, code="wrong_password",
                           env={PASSWORD_ENV: "wrong"})  # fmt: skip
    assert "wrong password" in wrong
    low = client.refused("action", "transfer", "alice", "1", "--from", "poor", "--yes", "--password-env", PASSWORD_ENV,
                         code="balance_too_low")  # fmt: skip
    assert "nothing was sent" in low and "0 IOTX" in low
    assert client.refused("action", "transfer", "poor", "1", "--password-env", PASSWORD_ENV, code="not_confirmed", exit_code=1)
    assert client.refused("action", "transfer", "poor", "1", "--yes", code="no_password")  # no source, no terminal
    assert client.refused("action", "transfer", "poor", "1", "--yes", "--fee", "1rau", "--password-env", PASSWORD_ENV,
                          code="fee_too_low")  # fmt: skip
    assert client.refused("action", "transfer", "poor", "1.0000000000000000001", "--yes", "--password-env", PASSWORD_ENV,
                          code="bad_input")  # fmt: skip
    assert client.refused("stake", "withdraw", "0", code="not_supported")
    assert client.refused("action", "claim", "--yes", "--password-env", PASSWORD_ENV, code="nothing_to_claim")
    assert client.refused("stake", "add", "0", "1", "--yes", "--password-env", PASSWORD_ENV, code="not_owner")
    after = client.json("account", "balance", "alice", bob)["accounts"]
    assert after[0]["nonce"] == alice["nonce"] and after[1]["nonce"] == 0 and after[1]["balance"] == "0"  # nothing sent
    # a refusal in text mode is one line on stderr, no traceback
    res = client.run("account", "balance", "nobody", code=2)
    assert res.stderr.startswith("error: unknown alias 'nobody'") and res.stdout == ""


def test_transfer_with_memo_follows_to_finality_and_reads_back(client: Client, net: LocalNet) -> None:
    done = client.json(
        "action", "transfer", "carol", "2.5", "--memo", "thanks for the fish", "--yes", "--password-env", PASSWORD_ENV
    )
    assert done["status"] == "finalized" and done["height"] >= 1
    assert done["action"]["payload"] == {"to": client.json("account", "balance", "carol")["accounts"][0]["address"],
                                         "amount": str(25 * 10**17), "memo": "thanks for the fish"}  # fmt: skip
    assert int(done["action"]["balance"]) - int(done["action"]["balance_after"]) == 25 * 10**17 + int(done["action"]["fee"])
    shown = client.json("chain", "action", done["hash"])
    assert shown["receipt"]["status"] == "success" and shown["action"]["payload"]["memo"] == "thanks for the fish"
    assert client.json("action", "show", done["hash"])["status"] == "finalized"
    acts = client.json("account", "actions", "carol")["actions"]
    assert [a["payload"].get("memo") for a in acts if a["hash"] == done["hash"]] == ["thanks for the fish"]
    text = client.run("action", "transfer", "carol", "1rau", "--yes", "--password-env", PASSWORD_ENV).stdout
    assert text.startswith("finalized: ") and "balance after" in text
    sent = client.json("action", "transfer", "carol", "1rau", "--yes", "--no-wait", "--password-env", PASSWORD_ENV)
    assert sent["status"] == "sent"


def test_staking_register_change_unstake_and_chain_reads(client: Client, net: LocalNet) -> None:
    op = client.json("account", "create", "--alias", "carolop", "--password-env", PASSWORD_ENV)["address"]
    reg = client.json("stake", "register", "carolc", "--operator", "carolop", "--self-stake", "100", "--days", "0",
                      "--from", "carol", "--yes", "--password-env", PASSWORD_ENV)  # fmt: skip
    assert reg["status"] == "finalized" and reg["bucket"] is not None and reg["action"]["payload"]["operator"] == op
    made = client.json("stake", "create", "delegate0", "10", "--days", "0", "--yes", "--password-env", PASSWORD_ENV)
    bucket = made["bucket"]
    assert client.json("stake", "add", str(bucket), "5", "--yes", "--password-env", PASSWORD_ENV)["status"] == "finalized"
    b = client.json("stake", "bucket", str(bucket))
    assert b["amount"] == str(15 * 10**18)
    assert client.json("stake", "change", str(bucket), "carolc", "--yes", "--password-env", PASSWORD_ENV)["status"] == "finalized"
    carol_owner = client.json("account", "balance", "carol")["accounts"][0]["address"]
    assert client.json("stake", "bucket", str(bucket))["candidate"] == carol_owner
    mine = client.json("stake", "buckets", "--owner", "alice")["buckets"]
    assert bucket in [x["id"] for x in mine]
    assert client.json("stake", "unstake", str(bucket), "--yes", "--password-env", PASSWORD_ENV)["status"] == "finalized"
    assert client.refused("stake", "bucket", str(bucket), code="not_found")
    # a failed action: unstaking a self-stake bucket is final but failed (exit 3), the fee spent
    failed = client.json(
        "stake", "unstake", str(reg["bucket"]), "--from", "carol", "--yes", "--password-env", PASSWORD_ENV, code=3
    )
    assert failed["status"] == "failed" and "self-stake" in failed["reason"] and failed["error"]["code"] == "failed"
    info = client.json("chain", "info", "--blocks", "10")
    assert info["finalized_height"] >= 1 and info["epoch"] >= 1 and info["tps"] is not None
    blk = client.json("chain", "block", str(made["height"]))
    assert made["hash"] in [a.get("hash") or "" for a in blk["actions"]] or blk["action_count"] >= 1
    # the epoch of a block already made (the current epoch may have just begun, with nothing produced yet)
    made_epoch = (made["height"] - 1) // EPOCH + 1
    ds = client.json("chain", "delegates", "--epoch", str(made_epoch))
    d0 = next(c for c in ds["candidates"] if c["name"] == "delegate0")
    assert ds["epoch"] == made_epoch and d0["active"] and d0["productivity"]["produced"] >= 1
    assert "carolc" in [c["name"] for c in client.json("chain", "delegates")["candidates"]]


def test_drill_round_stake_epoch_claim_bookkeep_distribute_statement(client: Client, net: LocalNet, tmp_path: Path) -> None:
    voters = []
    for i in range(3):
        v = client.json("account", "create", "--alias", f"voter{i}", "--password-env", PASSWORD_ENV)["address"]
        client.json("action", "transfer", f"voter{i}", str(10 * (i + 1) + 1), "--yes", "--password-env", PASSWORD_ENV)
        client.json("stake", "create", "delegate0", str(10 * (i + 1)), "--days", str(7 * i), "--from", f"voter{i}", "--yes",
                    "--password-env", PASSWORD_ENV)  # fmt: skip
        voters.append(v)
    height = client.json("chain", "info")["finalized_height"]
    epoch = (height - 1) // EPOCH + 1
    net.wait_height(epoch * EPOCH, timeout=60)
    claim = client.json("rewards", "claim", "--from", "d0owner", "--yes", "--password-env", PASSWORD_ENV)
    assert claim["status"] == "finalized" and claim["action"]["type"] == "rewards_claim"
    assert client.refused("rewards", "claim", "1000000000", "--from", "d0owner", "--yes", "--password-env", PASSWORD_ENV,
                          code="balance_too_low")  # fmt: skip
    plan = tmp_path / "plan.csv"
    span = ("--delegate", "delegate0", "--from-epoch", str(epoch), "--to-epoch", str(epoch))
    summary = client.json("rewards", "bookkeep", *span, "--percentage", "90", "--include-block-rewards", "--min-payout", "0.001",
                          "--out", str(plan))  # fmt: skip
    assert summary["voters"] >= 3 and int(summary["to_voters"]) > 0
    lines = plan.read_text().splitlines()
    assert lines[0] == "delegate,from_epoch,to_epoch,voter,amount_rau,amount_iotx"
    assert [ln.split(",")[3] for ln in lines[1:]] == sorted(ln.split(",")[3] for ln in lines[1:])
    assert set(voters) <= {ln.split(",")[3] for ln in lines[1:]}
    again = tmp_path / "again.csv"
    client.json("rewards", "bookkeep", "--delegate", "delegate0", "--from-epoch", str(epoch), "--to-epoch", str(epoch),
                "--percentage", "90", "--include-block-rewards", "--min-payout", "0.001", "--out", str(again))  # fmt: skip
    assert again.read_text() == plan.read_text(), "the same chain gives the same plan"
    dry = client.json("rewards", "distribute", str(plan), "--from", "d0owner", "--dry-run")
    assert dry["dry_run"] and dry["to_pay"] == len(lines) - 1 and dry["sent"] == 0
    paid = client.json(
        "rewards", "distribute", str(plan), "--from", "d0owner", "--yes", "--password-env", PASSWORD_ENV, "--batch", "2"
    )
    assert paid["verified"] and paid["sent"] == len(lines) - 1 and not paid["problems"]
    twice = client.json("rewards", "distribute", str(plan), "--from", "d0owner", "--yes", "--password-env", PASSWORD_ENV)
    assert twice["verified"] and twice["sent"] == 0 and twice["already_paid"] == len(lines) - 1
    st = client.json("rewards", "statement", "voter2")
    want = next(ln.split(",")[4] for ln in lines[1:] if ln.split(",")[3] == voters[2])
    assert [(p["delegate"], p["from_epoch"], p["amount"]) for p in st["payouts"]] == [("delegate0", epoch, want)]
    assert client.json("rewards", "unclaimed", "d0owner")["unclaimed"] is not None
    time.sleep(0)  # keep the module's network for the next test
