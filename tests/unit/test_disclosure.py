"""Disclosure control (issue 12): threshold on contributors, cell key and 10-5 policies checked
against the ONS Statistical Methods Library's own implementation, events as window increments,
and a differencing attack over generated pairs of outputs that differ by one person."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import itertools
import math
import random
from collections import defaultdict

import pandas as pd
import pytest
from cell_key_perturbation.create_perturbed_table import create_perturbed_table
from cell_key_perturbation.utils.generate_test_ptable import generate_ptable_10_5_rule
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.privacy.disclosure import (
    DEFAULT_PTABLE,
    KEY_RANGE,
    ROLE_STATISTICS,
    Contributions,
    PersonCounts,
    Policy,
    Protected,
    Rule,
    RunningTotal,
    Statistic,
    Steps,
    build_ptable,
    describe,
    magnitude_noise,
    protect_count,
    protect_mean,
    protect_single,
    protect_sum,
    validate_aggregation,
    validate_cap,
    validate_min_count,
    validate_policy,
    validate_rotation,
)
from gateway.privacy.epochs import EpochKeys, Windows
from gateway.privacy.sketch import DistinctSet, record_key
from tests.unit import differencing

# ---------------------------------------------------------------------------- the ptable


def test_default_ptable_is_unbiased_bounded_and_states_its_error() -> None:
    t = DEFAULT_PTABLE
    probs = t.probabilities()
    assert t.max_noise == 3 and set(probs) == {-3, -2, -1, 0, 1, 2, 3}
    assert sum(d * p for d, p in probs.items()) == 0  # unbiased
    assert abs(t.variance() - 1.0) < 0.01
    assert t.expected_abs_noise() == pytest.approx(186 / 256)
    # every value's row has the same distribution, but a different key -> noise map
    for v in (1, 10, 11, 500, 750, 751, 100_000):
        row = [t.noise(v, ck) for ck in range(KEY_RANGE)]
        assert sorted(row) == sorted(t.row)
    assert [t.noise(10, ck) for ck in range(KEY_RANGE)] != [t.noise(11, ck) for ck in range(KEY_RANGE)]
    assert all(t.noise(0, ck) == 0 for ck in range(KEY_RANGE))  # zeros stay zeros


def test_ptable_rows_above_750_loop_over_501_to_750_as_ons_does() -> None:
    t = DEFAULT_PTABLE
    for v, pcv in ((750, 750), (751, 501), (1000, 750), (1001, 501), (1251, 501)):
        assert t.pcv(v) == pcv
        assert all(t.noise(v, ck) == t.noise(pcv, ck) for ck in range(KEY_RANGE))


def test_ptable_design_is_max_entropy_for_its_variance() -> None:
    t = build_ptable(2, 1.0)  # the `ptable` package's own worked example: D = 2, V = 1
    assert t.probabilities()[0] == pytest.approx(0.383, abs=0.002)  # its p_stay for i >= 2
    with pytest.raises(ValueError):
        build_ptable(1, 5.0)  # not reachable with noise up to ±1


def test_magnitude_noise_is_a_symmetric_grid_never_zero() -> None:
    us = sorted(magnitude_noise(ck) for ck in range(KEY_RANGE))
    assert len(set(us)) == KEY_RANGE and 0 not in us
    assert math.fsum(us) == pytest.approx(0, abs=1e-12)
    assert math.fsum(abs(u) for u in us) / KEY_RANGE == pytest.approx(0.5)


# ------------------------------------------------------- against the ONS implementation


def _microdata(seed: int) -> tuple[list[tuple[str, int]], dict[str, list[int]]]:
    """Records (cell, record key) with cells of every size that matters: around the threshold,
    mid-range, and above 750 where ONS reuses ptable rows 501-750."""
    rng = random.Random(seed)
    sizes = [*range(1, 40), *rng.sample(range(40, 750), 40), 750, 751, 999, 1001, 1300]
    records, keys = [], defaultdict(list)
    for i, n in enumerate(sizes):
        for _ in range(n):
            rk = record_key(rng.randbytes(16))
            records.append((f"c{i:03d}", rk))
            keys[f"c{i:03d}"].append(rk)
    return records, keys


def _ons_table(records: list[tuple[str, int]], ptable: object, threshold: int) -> dict[str, int | None]:
    data = pd.DataFrame(records, columns=["cell", "record_key"])
    out = create_perturbed_table(data=data, ptable=ptable, geog=[], tab_vars=["cell"],
                                 record_key="record_key", threshold=threshold)  # fmt: skip
    return {r.cell: (None if pd.isna(r.count) else int(r.count)) for r in out.itertuples()}


def test_cell_key_policy_matches_ons_create_perturbed_table_with_our_ptable() -> None:
    records, keys = _microdata(1)
    ptable = pd.DataFrame(list(DEFAULT_PTABLE.rows()), columns=["pcv", "ckey", "pvalue"])
    ons = _ons_table(records, ptable, threshold=10)
    rule = Rule(Policy.CELL_KEY, min_count=10)
    compared = 0
    for cell, rks in keys.items():
        n = len(rks)
        ours = protect_count(n, n, sum(rks) % 256, rule)
        if n >= 10:  # ONS thresholds the perturbed count only; we also need 10 real people
            assert ours.result == ons[cell], (cell, n)
            compared += 1
        else:
            assert ours.suppressed
    assert compared > 60


def test_ten_five_policy_matches_ons_10_5_ptable() -> None:
    records, keys = _microdata(2)
    ons = _ons_table(records, generate_ptable_10_5_rule(), threshold=10)
    rule = Rule(Policy.TEN_FIVE, min_count=3)  # the 10-5 rule's own threshold of 10 applies
    assert rule.threshold == 10
    for cell, rks in keys.items():
        n = len(rks)
        assert protect_count(n, n, None, rule).result == ons[cell], (cell, n)


# ---------------------------------------------------------------------------- the threshold


def test_min_count_below_three_is_refused() -> None:
    assert validate_min_count(2) and validate_min_count(0) and validate_min_count(True)
    assert validate_min_count(3) is None and validate_min_count(10) is None
    with pytest.raises(ValueError, match="at least 3"):
        Rule(min_count=2)
    assert validate_policy("cell_key") is None and validate_policy("k_anon")


@pytest.mark.parametrize("policy", list(Policy))
def test_every_statistic_is_suppressed_below_min_count_contributors(policy: Policy) -> None:
    rule = Rule(policy, min_count=5)
    t = rule.threshold
    outs: list[Protected | None] = [
        protect_count(t - 1, t - 1, 0, rule),
        protect_count(500, t - 1, 0, rule),  # a big estimate from too few devices heard
        protect_sum(123.4, t - 1, 20.0, 0, rule),
        protect_mean(123.4, t - 1, 20.0, 0, rule),
        protect_single(7.5, t - 1, 0, rule),
        PersonCounts(n=3, total=3.0 * (t - 1), peak=t - 1).protect(Statistic.MEAN, 0, rule),
    ]
    for out in outs:
        assert out is not None and out.suppressed and out.result is None and out.samples is None
        assert out.parameters() == {"disclosure": policy.value, "suppressed": True, "min_count": t}


def test_one_charging_session_never_leaves_beside_a_suppressed_count() -> None:
    """The issue's first attack: `sessions_started: null` next to `energy_delivered: 12.3`."""
    rule = Rule(min_count=10)
    c = Contributions()
    c.add(b"s" * 16, 12.3)
    assert protect_count(1, 1, c.cell_key(), rule).suppressed
    out = protect_sum(c.total, c.contributors(), c.largest(), c.cell_key(), rule)
    assert out.suppressed and "samples" not in out.parameters()


def test_samples_leave_only_in_the_protected_form_of_a_count() -> None:
    for policy in Policy:
        rule = Rule(policy, min_count=10)
        for n in range(10, 60):
            ck = (n * 37) % 256
            s = protect_sum(10.0 * n, n, 10.0, ck, rule)
            c = protect_count(n, n, ck, rule)
            if c.result is None:
                assert s.suppressed
            else:
                assert s.samples == c.result >= rule.threshold


def test_dominance_rule_suppresses_a_sum_one_session_makes() -> None:
    c = Contributions()
    for i in range(10):
        c.add(bytes([i]) * 16, 0.5)
    c.add(b"\xff" * 16, 60.0)  # one large session among ten small ones
    rule = Rule(Policy.SUPPRESS, min_count=10)
    assert protect_sum(c.total, c.contributors(), c.largest(), c.cell_key(), rule).reason == "dominance"
    assert not protect_sum(c.total, c.contributors(), c.largest(), c.cell_key(),
                           dataclasses.replace(rule, dominance=None)).suppressed  # fmt: skip


def test_contributors_are_people_with_a_part_not_samples() -> None:
    c = Contributions()
    for _ in range(50):
        c.add(b"a" * 16, 1.0)  # one person, fifty samples
    c.add(b"b" * 16, 0.0)  # present, contributed nothing
    c.add(None, 3.0)  # a part nobody can be named for
    assert (c.samples, c.contributors(), c.largest(), c.total) == (52, 1, 50.0, 53.0)


# ---------------------------------------------------------------------------- roles


def test_personal_fields_never_leave_as_one_persons_value() -> None:
    for role, allowed in ROLE_STATISTICS.items():
        for stat in Statistic:
            problem = validate_aggregation(role, stat.value)
            assert (problem is None) == (stat in allowed), (role, stat)
        for single in (Statistic.LAST, Statistic.MIN):
            assert validate_aggregation(role, single.value)
    assert validate_aggregation("Role.IDENTIFIER", "sum")
    assert validate_aggregation("reading", "last") is None
    assert "never leaves" in (validate_aggregation("context", "mean") or "")


def test_rotation_must_be_a_whole_multiple_of_every_window() -> None:
    assert validate_rotation(3600, [60, 300, 900]) == []
    assert validate_rotation(300, [300, 60]) == []
    assert len(validate_rotation(600, [900, 60, 420])) == 2
    assert validate_rotation(0, [60])
    assert validate_cap(10_000, 10) is None and validate_cap(50, 10)


# ---------------------------------------------------------------------------- events


def test_crossing_counter_leaves_only_as_window_increments() -> None:
    """The issue's second attack: totals 41, 42, 43 each betray one person at a known instant."""
    rt = RunningTotal(window_s=900, events=True)
    key = b"k" * 32
    t = 0.0
    for total in [41, 42, 43, *range(44, 60)]:
        t += 30
        rt.observe(total, t)
    inc = rt.close(0, key)
    assert inc is not None and (inc.value, inc.contributors) == (18, 18)
    out = inc.protect(Rule(Policy.SUPPRESS, min_count=10), as_count=True)
    assert out.result == 18
    # a quiet window: two crossings leave nothing
    rt.observe(61, 1000)
    inc2 = rt.close(1, key)
    assert inc2 is not None and inc2.protect(Rule(min_count=10), as_count=True).suppressed


def test_counter_restart_counts_from_zero_and_events_get_a_consistent_cell_key() -> None:
    key = b"k" * 32
    a, b = RunningTotal(900, events=True), RunningTotal(900, events=True)
    for rt in (a, b):
        for t, total in ((10, 100), (20, 120), (30, 5), (40, 7)):
            rt.observe(total, t)
    ia, ib = a.close(0, key), b.close(0, key)
    assert ia is not None and ib is not None
    assert (ia.value, ia.resets) == (27, 1)
    assert ia.cell_key == ib.cell_key  # the same events, the same noise


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(-50, 100)), min_size=1, max_size=60))
def test_steps_sum_to_prometheus_increase_and_skip_readings_back_in_time(moves: list[tuple[int, int]]) -> None:
    """`Steps`, the one step rule of the stage's `increment` and of `RunningTotal`, against the
    counter semantics Prometheus documents for `increase()` (a drop is a counter reset: the new
    value counts from zero) over the readings in time order; a reading stamped before the one
    before it is dropped whole (it never becomes the baseline)."""
    s = Steps()
    times = list(itertools.accumulate(dt for _, dt in moves))  # a clock that sometimes steps back
    kept: list[int] = []
    last, back, total = -math.inf, 0, 0.0
    for (value, _), t in zip(moves, times, strict=True):
        got = s.step(float(value), float(t))
        if t < last:
            back += 1
            assert got is None
            continue
        last = t
        kept.append(value)
        if got is not None:
            total += got[1]
            assert got[2] == (value < kept[-2])
    increase = sum(b - a if b >= a else b for a, b in itertools.pairwise(kept))
    assert total == increase and s.out_of_order == back
    rt = RunningTotal(window_s=10**9, events=False)  # one window: its total is the same sum
    for (value, _), t in zip(moves, times, strict=True):
        rt.observe(float(value), float(t) + 10**8, b"s" * 16)
    inc = rt.close(0)
    assert (inc.value if inc is not None else 0.0) == increase


def test_energy_register_increment_is_credited_to_sessions() -> None:
    rt = RunningTotal(window_s=900, events=False)
    sessions = [hashlib.sha256(bytes([i])).digest()[:16] for i in range(12)]
    rt.observe(1000.0, 0, None)  # baseline
    reg, t = 1000.0, 0.0
    for rnd in range(3):
        for s in sessions:
            t += 10
            reg += 0.5 + rnd
            rt.observe(reg, t, s)
    inc = rt.close(0)
    assert inc is not None
    assert inc.value == pytest.approx(reg - 1000.0)
    assert inc.contributors == 12 and inc.largest == pytest.approx(0.5 + 1.5 + 2.5)
    assert inc.cell_key == sum(record_key(s) for s in sessions) % 256
    one = RunningTotal(window_s=900, events=False)
    one.observe(5.0, 0, None)
    one.observe(17.3, 100, sessions[0])  # one session: its energy must not leave
    i1 = one.close(0)
    assert i1 is not None and i1.protect(Rule(), as_count=False).suppressed


def test_paxcounter_counts_need_min_count_devices_at_once() -> None:
    pc = PersonCounts()
    for n in (1, 0, 2, 1):
        pc.add(n)
    quiet = pc.protect(Statistic.MEAN, 0, Rule())
    assert quiet is not None and quiet.suppressed  # `wifi_devices: 1` never leaves
    busy = PersonCounts()
    for n in (4, 30, 12):
        busy.add(n)
    out = busy.protect(Statistic.MAX, 0, Rule(Policy.SUPPRESS))
    assert out is not None and out.result == 30


# ---------------------------------------------- property: streams, zones, overlapping windows

SENSORS = ("s0", "s1", "s2")
SCOPES = {"s0": {"s0"}, "s1": {"s1"}, "s2": {"s2"}, "zoneA": {"s0", "s1"}, "site": set(SENSORS)}
WINDOWS_S = (60.0, 300.0)  # overlapping: each 300 s window contains five 60 s windows
ROTATION_S = 300.0

event = st.tuples(
    st.integers(0, 40),  # person
    st.sampled_from(SENSORS),
    st.floats(0, 1199, allow_nan=False),  # time
    st.sampled_from([0.0, 0.5, 7.25, 30.0]),  # energy of the event (0: present, no part)
)


def _mac(person: int) -> str:
    return f"02:00:5e:00:00:{person:02x}"


def _run(events: list[tuple[int, str, float, float]], rule: Rule, cap: int) -> list[tuple[str, float, int, str, Protected]]:
    """The code under test, wired as the privacy stage will: one key epoch per 300 s, windows
    of 60 and 300 s per scope, distinct people, event counts and energy sums per window."""
    keys = EpochKeys(ROTATION_S, lambda: hashlib.sha256(b"k%d" % len(made)).digest())
    made: list[int] = []
    cells: dict[tuple[str, float], tuple[Windows[DistinctSet], Windows[Contributions]]] = {
        (scope, w): (Windows(w, lambda: DistinctSet(cap)), Windows(w, lambda: Contributions(cap)))
        for scope in SCOPES for w in WINDOWS_S
    }  # fmt: skip
    out: list[tuple[str, float, int, str, Protected]] = []

    def close(now: float | None) -> None:
        for (scope, w), (people, parts) in cells.items():
            for i, ds in people.due(now) if now is not None else people.drain():
                out.append((scope, w, i, "distinct", protect_count(ds.count(), ds.contributors(), ds.cell_key(), rule, estimate=ds.is_estimate)))  # fmt: skip
            for i, c in parts.due(now) if now is not None else parts.drain():
                out.append((scope, w, i, "events", protect_count(c.samples, c.present(), c.cell_key(), rule)))  # fmt: skip
                out.append((scope, w, i, "energy", protect_sum(c.total, c.contributors(), c.largest(), c.cell_key(), rule, estimate=c.is_estimate)))  # fmt: skip
        if now is not None:
            keys.advance(now)

    for person, sensor, t, energy in sorted(events, key=lambda e: e[2]):
        close(t)
        p = keys.pseudonym(_mac(person), t, t)
        assert p is not None
        made.append(1)
        for (scope, _), (people, parts) in cells.items():
            if sensor in SCOPES[scope]:
                ds, c = people.at(t), parts.at(t)
                assert ds is not None and c is not None
                ds.add(p)
                c.add(p, energy)
    close(None)
    return out


@settings(max_examples=150, deadline=None)
@given(
    events=st.lists(event, max_size=250),
    min_count=st.integers(3, 12),
    policy=st.sampled_from(list(Policy)),
    cap=st.sampled_from([8, 10_000]),
)
def test_every_published_value_has_min_count_contributors(
    events: list[tuple[int, str, float, float]], min_count: int, policy: Policy, cap: int
) -> None:
    rule = Rule(policy, min_count=min_count)
    out = _run(events, rule, cap)
    # ground truth straight from the generated events, not from the code under test
    people: dict[tuple[str, float, int], set[int]] = defaultdict(set)
    parts: dict[tuple[str, float, int], dict[int, float]] = defaultdict(lambda: defaultdict(float))
    for person, sensor, t, energy in events:
        for scope, members in SCOPES.items():
            if sensor in members:
                for w in WINDOWS_S:
                    cell = (scope, w, math.floor(t / w))
                    people[cell].add(person)
                    parts[cell][person] += energy
    published = 0
    for scope, w, i, what, p in out:
        cell = (scope, w, i)
        for v in (p.result, *p.parameters().values()):
            assert not isinstance(v, bytes | bytearray) and ":" not in str(v)  # nothing personal
        if p.result is None:
            assert p.suppressed
            continue
        published += 1
        truth = len(people[cell]) if what != "energy" else sum(1 for e in parts[cell].values() if e)
        assert truth >= rule.threshold >= min_count, (cell, what, truth)
        if p.samples is not None:
            assert p.samples >= rule.threshold
    assert published <= len(out)


# ---------------------------------------------------------------------------- differencing


def test_differencing_attack_over_ten_thousand_pairs() -> None:
    """Pairs of outputs that differ by one person: how often does the attacker learn that
    person's contribution? Printed (run with -s); docs/privacy.md states the same figures."""
    rates = differencing.table(min_count=10, n_pairs=10_000, seed=12)
    print("\n" + differencing.format_table(rates))
    sup, tf, ck = (rates[p.value] for p in (Policy.SUPPRESS, Policy.TEN_FIVE, Policy.CELL_KEY))
    # suppression only: whenever both are published, the difference is the person, for sure
    assert sup["counts"]["certain"] == sup["counts"]["published"] > 0.9
    assert sup["sums"]["exact"] == sup["sums"]["published"] > 0.8
    # 10-5: a difference is a multiple of 5, never surely one person
    assert tf["counts"]["certain"] == 0 and tf["counts"]["guessed"] == 0
    assert abs(tf["counts"]["membership"] - 0.2) < 0.03  # only crossing a rounding boundary
    # cell key: certain only when A's noise is +3 and B's −3 (1/256 each)
    p3 = DEFAULT_PTABLE.probabilities()[3]
    assert ck["counts"]["certain"] <= p3 * p3 + 0.0005
    sum_p2 = sum(p * p for p in DEFAULT_PTABLE.probabilities().values())
    assert abs(ck["counts"]["guessed"] - sum_p2 * ck["counts"]["published"]) < 0.03
    assert ck["sums"]["exact"] < 0.01 and ck["sums"]["within_10pc"] < 0.25


def test_same_people_get_the_same_noise_wherever_they_appear() -> None:
    """Consistency: a zone and its site total with the same people, or a query repeated, give
    the same published number, so the noise cannot be averaged away."""
    key = b"\x07" * 32
    people = [hmac.new(key, f"dev{i}".encode(), hashlib.sha256).digest()[:16] for i in range(40)]
    zone, total = DistinctSet(), DistinctSet()
    for p in people:
        zone.add(p)
    for p in reversed(people * 3):
        total.add(p)
    rule = Rule()
    assert protect_count(zone.count(), zone.contributors(), zone.cell_key(), rule) == \
        protect_count(total.count(), total.contributors(), total.cell_key(), rule)  # fmt: skip


def test_each_rule_is_described_in_plain_words_with_its_threshold_and_error() -> None:
    for policy in Policy:
        rule = Rule(policy, min_count=12)
        count = describe(rule, Statistic.DISTINCT_COUNT)
        assert "at least 12 distinct devices" in count
        total = describe(rule, Statistic.SUM)
        assert "more than 50%" in total
        if policy is Policy.CELL_KEY:
            assert "mean error 0.73" in count and "±20%" in total
        elif policy is Policy.TEN_FIVE:
            assert "nearest 5" in count and "subtracted" in total
        else:
            assert "subtracted" in count
