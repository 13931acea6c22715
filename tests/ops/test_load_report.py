"""The load tool's arithmetic and input checks (unit tier: no process, no socket)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from iotex_ops.traffic import load as load_mod
from iotex_ops.traffic.report import (
    BlockSeen,
    Recording,
    block_intervals,
    consistency_problems,
    finalized_tps,
    latency_summary,
    percentile,
    render_html,
    summarize,
)


def _recording(seed: int = 1) -> Recording:
    """A run of 10 s at 100 TPS: 1,000 offered, 950 accepted, 30 + 20 refused, 900 final in 1 s blocks."""
    rng = random.Random(seed)
    t0 = 1_700_000_000.0
    rec = Recording(tps=100, duration_s=10, seed=seed, started=t0, ended=t0 + 10)
    rec.offered, rec.accepted = 1000, 950
    rec.refused = {"nonce_too_low": 30, "no_answer": 20}
    for i in range(900):
        offered = t0 + i / 100
        rec.latencies.append((offered, 0.4 + rng.random()))
    for h in range(1, 13):
        rec.blocks.append(BlockSeen(h, int((t0 + h) * 1000), 90 if h <= 10 else 0, 90 if h <= 10 else 0, t0 + h + 0.1))
    rec.samples = [(t0 + s, min(1000, 100 * s), min(950, 95 * s), min(900, 90 * s)) for s in range(13)]
    rec.nodes = {"node0": {"version": "1.0.0", "cpu_percent": 12.5, "rss_mib": 80.0}}
    return rec


def test_the_report_orders_the_counts_and_the_percentiles() -> None:
    doc = summarize(_recording())
    assert doc["finalized"] <= doc["accepted"] <= doc["offered"]
    assert (doc["offered"], doc["accepted"], doc["finalized"], doc["lost"]) == (1000, 950, 900, 50)
    assert doc["refused"] == 50 and doc["refused_by_reason"] == {"no_answer": 20, "nonce_too_low": 30}
    assert doc["unanswered"] == 0
    lat = doc["latency_s"]
    assert lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert doc["drop_rate"] == pytest.approx(0.1)
    assert doc["versions"] == ["1.0.0"] and doc["seed"] == 1
    assert consistency_problems(doc) == []


def test_finalized_tps_comes_from_the_blocks_not_from_what_was_sent() -> None:
    rec = _recording()
    # ten loaded blocks, 1 s apart: the nine after the first over nine seconds
    assert finalized_tps(rec.blocks) == pytest.approx(90.0)
    rec.offered = 10**6  # what was sent does not change it
    assert summarize(rec)["finalized_tps"] == pytest.approx(90.0)
    assert finalized_tps(rec.blocks[:1]) is None  # one loaded block: no span to divide by


def test_block_intervals_skip_gaps_in_what_was_read() -> None:
    bs = [BlockSeen(h, h * 1000 + (500 if h == 3 else 0), 0, 0, 0.0) for h in (1, 2, 3, 5, 6)]
    assert block_intervals(bs) == [1.0, 1.5, 1.0]
    doc = summarize(_recording())
    assert doc["block_interval_s"] == {"p50": 1.0, "max": 1.0}


@pytest.mark.parametrize("n", [1, 2, 7, 100, 1001])
def test_percentiles_are_nearest_rank_and_ordered(n: int) -> None:
    xs = [random.Random(n).random() for _ in range(n)]
    s = latency_summary(xs)
    assert s["p50"] is not None and s["max"] is not None
    assert s["p50"] <= s["p95"] <= s["p99"] <= s["max"] == round(max(xs), 3)  # type: ignore[operator]
    assert percentile(list(range(1, 101)), 0.99) == 99 and percentile(list(range(1, 101)), 0.5) == 50
    assert percentile([], 0.5) is None and latency_summary([]) == {"p50": None, "p95": None, "p99": None, "max": None}


def test_an_inconsistent_report_is_named() -> None:
    doc = summarize(_recording())
    bad = {**doc, "finalized": doc["accepted"] + 1}
    assert "finalized" in consistency_problems(bad)[0]
    bad = {**doc, "refused_by_reason": {"x": 1}}
    assert any("refused" in p for p in consistency_problems(bad))
    bad = {**doc, "latency_s": {"p50": 2.0, "p95": 1.0, "p99": 3.0, "max": 4.0}}
    assert any("out of order" in p for p in consistency_problems(bad))


def test_the_html_plots_inline_and_escapes() -> None:
    rec = _recording()
    rec.nodes["<b>n</b>"] = {"version": "<script>", "url": "http://x"}
    page = render_html(summarize(rec))
    assert page.count("<svg") == 2 and "<script" not in page and "&lt;b&gt;n&lt;/b&gt;" in page
    assert "http" not in page.replace("http://www.w3.org/2000/svg", "").replace("http://x", "")  # nothing external


@pytest.mark.parametrize(
    ("text", "expected"),
    [("transfer=90,stake=10", load_mod.Mix(90, 10)), ("stake=100", load_mod.Mix(0, 100)), (" transfer=100 ", load_mod.Mix())],
)
def test_the_mix_is_parsed(text: str, expected: load_mod.Mix) -> None:
    assert load_mod.parse_mix(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("transfer=90", "add up to 90"),
        ("swap=100", "KIND=PERCENT"),
        ("transfer=x", "not a whole percentage"),
        ("transfer=50,transfer=50", "twice"),
        ("transfer=150,stake=-50", "between 0 and 100"),
    ],
)
def test_a_bad_mix_is_named(text: str, says: str) -> None:
    with pytest.raises(load_mod.LoadError, match=says):
        load_mod.parse_mix(text)


def test_a_spec_out_of_bounds_is_refused_before_anything_is_sent() -> None:
    t = [load_mod.Target("n0", "http://n0")]
    key = load_mod.sdk.PrivateKey()
    with pytest.raises(load_mod.LoadError, match="--tps"):
        load_mod.LoadSpec(t, tps=0, duration_s=1, funded=[key]).check()
    with pytest.raises(load_mod.LoadError, match="--duration"):
        load_mod.LoadSpec(t, tps=1, duration_s=10**6, funded=[key]).check()
    with pytest.raises(load_mod.LoadError, match="--accounts"):
        load_mod.LoadSpec(t, tps=1, duration_s=1, funded=[key], accounts=1).check()
    with pytest.raises(load_mod.LoadError, match="no node"):
        load_mod.LoadSpec([], tps=1, duration_s=1, funded=[key]).check()


def test_process_gauges_are_read_from_a_metrics_page() -> None:
    text = (
        "# HELP process_cpu_seconds_total x\nprocess_cpu_seconds_total 12.5\n"
        "process_resident_memory_bytes 1.048576e+08\niotex_block_height 3\n"
    )
    assert load_mod.process_gauges(text) == {"process_cpu_seconds_total": 12.5, "process_resident_memory_bytes": 104857600.0}


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--tps", "0"], "--tps must be in"),
        (["--duration", "nan"], "--duration must be in"),
        (["--accounts", "1"], "--accounts must be in"),
        (["--mix", "transfer=80"], "--mix: the shares add up to 80"),
        (["--batch", "5000"], "--batch must be in"),
        (["-i", "/nowhere/inventory.yml"], "inventory /nowhere/inventory.yml does not exist"),
    ],
)
def test_bad_input_is_one_line_naming_it_and_no_traceback(args: list[str], says: str, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from iotex_ops.cli import main

    env = {"IOTEX_OPS_LAB_DIR": str(tmp_path / "no-lab"), "IOTEX_OPS_STATE_DIR": str(tmp_path / "state")}
    res = CliRunner().invoke(main, ["load", "run", *args], env=env)
    assert res.exit_code == 2, res.output
    assert says in res.output and "Traceback" not in res.output and res.output.startswith("error:")
