"""The flood drill's pure parts: a plan's bounds and where it may aim, and how the drill's measures are judged."""

from __future__ import annotations

import pytest

from iotex_ops.flood import ATTACKS, FloodError, FloodPlan, judge, loopback_sources, missed_slots, percentile

GOOD = {
    "baseline_p99_s": 2.0,
    "flood_p99_s": 3.0,
    "missed_slots": 1,
    "lost": 0,
    "accepted_honest": 300,
    "rss_before_mb": 80.0,
    "rss_peak_mb": 120.0,
    "open_files_peak": 300,
    "statuses": {"200": 1000, "400": 50, "429": 700, "503": 3, "413": 4, "408": 2},
    "retry_after_missing": 0,
    "hangs": 0,
    "server_errors": 0,
    "recovery_s": 0.4,
}


def plan(**kw: object) -> FloodPlan:
    return FloodPlan(api_host="127.0.0.1", api_port=1, p2p_host="127.0.0.1", p2p_port=2, **kw)  # type: ignore[arg-type]


def test_a_default_plan_is_within_its_bounds_and_runs_every_attack() -> None:
    p = plan().check()
    assert p.attacks == ATTACKS and p.duration_s <= 120


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"duration_s": 0}, "a flood lasts"),
        ({"duration_s": 1000}, "a flood lasts"),
        ({"connections": 10**6}, "connections must be in"),
        ({"spam": -1}, "spam must be in"),
        ({"attacks": ("connections", "nuke")}, "unknown attack(s) nuke"),
        ({"max_requests": 10**9}, "max_requests"),
        ({"max_rps": 0}, "max_rps"),
    ],
)
def test_a_plan_out_of_bounds_is_refused(kw: dict[str, object], words: str) -> None:
    with pytest.raises(FloodError, match=words.replace("(", r"\(").replace(")", r"\)")):
        plan(**kw).check()


def test_a_flood_stays_in_the_lab() -> None:
    with pytest.raises(FloodError, match="neither loopback nor a private"):
        FloodPlan(api_host="8.8.8.8", api_port=1, p2p_host="127.0.0.1", p2p_port=2).check()
    FloodPlan(api_host="10.77.0.3", api_port=1, p2p_host="10.77.0.3", p2p_port=2).check()  # a lab namespace


def test_scaling_keeps_zero_at_zero_and_one_at_least_one() -> None:
    p = plan(spam_empty=0).scaled(0.001)
    assert p.spam_empty == 0 and p.connections == 1 and p.spam == 2
    assert plan().scaled(2).connections == 400


def test_sources_are_loopback_only_for_a_loopback_target() -> None:
    assert loopback_sources("127.0.0.1", 3) == ("127.0.0.10", "127.0.0.11", "127.0.0.12")
    assert loopback_sources("10.0.0.2", 3) == ()


def test_percentile_and_missed_slots() -> None:
    assert percentile([], 99) is None
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0
    assert percentile([5.0], 99) == 5.0
    assert missed_slots([1.0, 1.1, 0.9], 1.0) == 0
    assert missed_slots([1.0, 2.0, 1.0], 1.0) == 1
    assert missed_slots([3.0], 1.0) == 2


def test_a_flood_the_node_shrugs_off_passes_every_criterion() -> None:
    assert all(c.ok for c in judge(GOOD)), [c for c in judge(GOOD) if not c.ok]


@pytest.mark.parametrize(
    ("change", "failing"),
    [
        ({"flood_p99_s": 4.5}, "honest p99"),
        ({"flood_p99_s": None}, "honest p99"),
        ({"missed_slots": 2}, "missed slots"),
        ({"lost": 1}, "no honest accepted transfer lost"),
        ({"accepted_honest": 0}, "no honest accepted transfer lost"),
        ({"displaced": 1, "displaced_codes": {"evicted": 1}}, "no honest accepted transfer lost"),
        ({"rss_peak_mb": 900.0}, "RSS"),
        ({"open_files_peak": 10_000}, "open files"),
        ({"statuses": {"200": 5, "500": 1, "429": 3}}, "429/503"),
        ({"statuses": {"200": 5}}, "429/503"),  # never pushed back: the flood did not press, or nothing limits
        ({"retry_after_missing": 2}, "429/503"),
        ({"hangs": 1}, "429/503"),
        ({"recovery_s": 7.0}, "healthy within"),
        ({"recovery_s": None}, "healthy within"),
    ],
)
def test_each_broken_promise_fails_its_own_criterion(change: dict[str, object], failing: str) -> None:
    bad = [c.name for c in judge({**GOOD, **change}) if not c.ok]
    assert len(bad) == 1 and failing in bad[0], bad


def test_a_tiny_baseline_gets_a_floor() -> None:
    # 2x of 0.1 s is timer noise: the bound is the baseline plus half a second
    assert judge({**GOOD, "baseline_p99_s": 0.1, "flood_p99_s": 0.55})[0].ok
