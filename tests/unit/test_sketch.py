"""Bounded distinct counting: HyperLogLog checked register for register against `datasketch`,
its error against its stated standard error, and memory that stops growing at the cap."""

from __future__ import annotations

import math
import random
import statistics
import tracemalloc

import numpy as np
import pytest
from datasketch import HyperLogLogPlusPlus as DsHyperLogLogPlusPlus

from gateway.privacy.sketch import DEFAULT_PRECISION, DistinctSet, HyperLogLog


def _pseudonyms(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(16) for _ in range(n)]


def _hash64(b: bytes) -> int:
    return int.from_bytes(b[:8], "little")


@pytest.mark.parametrize("n", [100, 20_000, 40_000, 120_000])
def test_hyperloglog_matches_datasketch_registers_and_estimate(n: int) -> None:
    """Same 64-bit hashes in: the maintained library's registers must be ours, and its
    bias-corrected HyperLogLog++ estimate on them must agree with our Ertl estimate (two
    unbiased estimators of the same registers: far closer than the standard error)."""
    items = _pseudonyms(n, n)
    ours = HyperLogLog(DEFAULT_PRECISION)
    theirs = DsHyperLogLogPlusPlus(p=DEFAULT_PRECISION, hashfunc=_hash64)
    for it in items:
        ours.add(it)
        theirs.update(it)
    assert bytes(ours.registers) == bytes(theirs.reg.astype(np.uint8))
    assert ours.estimate() == pytest.approx(float(theirs.count()), rel=ours.standard_error / 4)


def test_sketch_error_is_within_its_stated_standard_error() -> None:
    se = HyperLogLog(DEFAULT_PRECISION).standard_error
    assert se == pytest.approx(1.04 / 128)  # 0.81 % at p = 14
    rel_errors = []
    for seed in range(12):  # 40,000 = 2.4 m: where the classic estimator's bias bump sits
        s = DistinctSet(cap=5_000)
        for p in _pseudonyms(40_000, 1000 + seed):
            s.add(p)
        assert s.is_estimate
        rel_errors.append((s.count() - 40_000) / 40_000)
    rms = math.sqrt(statistics.fmean(e * e for e in rel_errors))
    print(f"\nHyperLogLog p=14 at 40,000 distinct: RMS relative error {rms:.2%} (stated {se:.2%})")
    assert rms < 2 * se and all(abs(e) < 4 * se for e in rel_errors)
    # a flood: 300,000 random MACs' pseudonyms in one window
    s = DistinctSet()
    for p in _pseudonyms(300_000, 7):
        s.add(p)
    err = (s.count() - 300_000) / 300_000
    print(f"300,000 distinct: estimate {s.count()} ({err:+.2%})")
    assert abs(err) < 4 * se


def test_exact_below_the_cap_and_flagged_estimate_above() -> None:
    s = DistinctSet(cap=1000)
    items = _pseudonyms(999, 3)
    for p in items * 2:
        s.add(p)
    assert (s.count(), s.contributors(), s.is_estimate, s.held) == (999, 999, False, 999)
    s.add(b"\x01" * 16)
    assert s.is_estimate and s.held == 0 and s.contributors() == 1000 and s.count() >= 1000
    assert not s.members()


def test_memory_stops_growing_at_the_cap() -> None:
    """Sets stop growing at the cap: 20x more distinct pseudonyms cost no more memory, where an
    exact set grows with every one of them."""
    cap = 5_000

    def traced(n: int, bounded: bool) -> int:
        tracemalloc.start()
        holder: DistinctSet | set[bytes] = DistinctSet(cap) if bounded else set()
        rng = random.Random(n)
        for _ in range(n):
            p = rng.randbytes(16)
            holder.add(p)
        current, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert holder  # keep it alive until measured
        return current

    bounded_2x, bounded_20x = traced(2 * cap, True), traced(20 * cap, True)
    exact_2x, exact_20x = traced(2 * cap, False), traced(20 * cap, False)
    print(f"\nDistinctSet(cap={cap}): {bounded_2x / 1024:.0f} KiB at {2 * cap}, "
          f"{bounded_20x / 1024:.0f} KiB at {20 * cap}; plain set: {exact_2x / 1024:.0f} -> "
          f"{exact_20x / 1024:.0f} KiB")  # fmt: skip
    assert bounded_20x - bounded_2x < 4 * 1024
    assert bounded_20x < 64 * 1024  # one 16 KiB sketch and change
    assert exact_20x - exact_2x > 4 * 1024 * 1024  # the test can tell growth when it happens


def test_sketched_cell_key_depends_only_on_the_set() -> None:
    items = _pseudonyms(3_000, 9)
    a, b = DistinctSet(cap=500), DistinctSet(cap=500)
    for p in items:
        a.add(p)
    for p in reversed(items):
        b.add(p)
        b.add(p)
    assert a.is_estimate and b.is_estimate
    assert a.cell_key() == b.cell_key() and a.count() == b.count()
    b.add(b"\x02" * 16)
    assert b.count() >= a.count()
