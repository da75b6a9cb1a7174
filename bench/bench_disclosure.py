"""Disclosure control: what each policy costs in accuracy, and what it buys against an attacker.

    .venv/bin/python bench/bench_disclosure.py [--hours 12] [--seed 1] [--pairs 20000]

1. Footfall (the simulated high street of bench_footfall.py, ground truth known): per window the
   footfall method's estimate, then each policy — suppression only, the ONS 10-5 rule, the ONS
   cell key method — applied to it with min_count 10. Absolute error against the unprotected
   estimate (what the policy itself adds) and against ground truth, and how many windows each
   policy withholds, for 15- and 5-minute windows. The same for charging-session energy sums.
2. The differencing attack of tests/unit/differencing.py over generated pairs of outputs that
   differ by one person: how often the attacker learns that person's contribution.
3. A flood of random MACs (1,000 probes/s for a whole 15-minute window) into one bounded
   distinct set: memory held and the estimate's error.

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import math
import random
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_footfall import simulate  # noqa: E402

from gateway.privacy.disclosure import Policy, Rule, protect_count, protect_sum  # noqa: E402
from gateway.privacy.footfall import FootfallCount, FootfallEstimator, FootfallOptions  # noqa: E402
from gateway.privacy.sketch import DistinctSet  # noqa: E402
from tests.unit import differencing  # noqa: E402

MIN_COUNT = 10
POLICIES = (Policy.SUPPRESS, Policy.TEN_FIVE, Policy.CELL_KEY)


def footfall_windows(hours: float, window_s: float, seed: int) -> tuple[dict[int, FootfallCount], dict[int, int]]:
    """The footfall method per window over pseudonyms made as the stage makes them."""
    probes, devices, _people, _heard = simulate(hours, window_s, seed)
    key = hashlib.sha256(b"bench key %d" % seed).digest()
    est = FootfallEstimator(FootfallOptions())
    out: dict[int, FootfallCount] = {}
    current: int | None = None
    for p in probes:
        w = math.floor(p.t / window_s)
        if current is not None and w != current:
            out[current] = est.close((current + 1) * window_s)
        current = w
        pseudonym = hmac.new(key, p.mac, hashlib.sha256).digest()[:16]
        est.observe(pseudonym, p.t, p.rssi, p.randomised)
    if current is not None:
        out[current] = est.close((current + 1) * window_s)
    return out, devices


def footfall_table(hours: float, window_s: float, seed: int) -> None:
    counts, truth = footfall_windows(hours, window_s, seed)
    windows = sorted(truth)
    print(f"\nfootfall, {len(windows)} windows of {window_s / 60:g} min, min_count {MIN_COUNT} "
          f"(true passing devices per window: median {statistics.median(truth.values()):g}, "
          f"max {max(truth.values())})")  # fmt: skip
    print(f"{'policy':<10} {'expected':>8} {'published':>9} {'withheld':>8} {'|Δ| vs estimate':>16} "
          f"{'max':>4} {'|Δ| vs truth':>13} {'vs truth, unprotected':>22}")  # fmt: skip
    for policy in POLICIES:
        rule = Rule(policy, min_count=MIN_COUNT)
        added: list[float] = []
        vs_truth: list[float] = []
        vs_truth_raw: list[float] = []
        withheld = 0
        for w in windows:
            c = counts.get(w)
            if c is None:
                withheld += 1  # nothing heard: nothing published
                continue
            p = protect_count(c.estimate, c.distinct, c.cell_key, rule)
            if p.result is None:
                withheld += 1
                continue
            added.append(abs(p.result - c.estimate))
            vs_truth.append(abs(p.result - truth[w]))
            vs_truth_raw.append(abs(c.estimate - truth[w]))
        print(f"{policy.value:<10} {rule.expected_abs_error():>8.2f} {len(added):>9} {withheld:>8} "
              f"{statistics.fmean(added):>16.2f} {max(added):>4.0f} {statistics.fmean(vs_truth):>13.2f} "
              f"{statistics.fmean(vs_truth_raw):>22.2f}")  # fmt: skip


def sums_table(n_windows: int, seed: int) -> None:
    """Charging-session energy per window (5-40 sessions, median 8 kWh each): error per policy."""
    windows = [a for a, _, _ in differencing.session_pairs(n_windows, seed)]
    print(f"\nsession energy sums, {n_windows} windows of 5-40 sessions, min_count {MIN_COUNT}")
    print(f"{'policy':<10} {'published':>9} {'|Δ| kWh':>8} {'|Δ| / sum':>9} {'|Δ| / largest':>13}")
    for policy in POLICIES:
        rule = Rule(policy, min_count=MIN_COUNT)
        errs, rel, rel_largest = [], [], []
        for c in windows:
            p = protect_sum(c.total, c.contributors(), c.largest(), c.cell_key(), rule)
            if p.result is None:
                continue
            errs.append(abs(p.result - c.total))
            rel.append(errs[-1] / c.total)
            rel_largest.append(errs[-1] / c.largest())
        print(f"{policy.value:<10} {len(errs) / n_windows:>9.1%} {statistics.fmean(errs):>8.2f} "
              f"{statistics.fmean(rel):>9.2%} {statistics.fmean(rel_largest):>13.2%}")  # fmt: skip


def attack_table(pairs: int, seed: int) -> None:
    t0 = time.perf_counter()
    rates = differencing.table(MIN_COUNT, pairs, seed)
    print(f"\ndifferencing attack, min_count {MIN_COUNT}, {pairs} pairs of outputs differing by one "
          f"person ({time.perf_counter() - t0:.1f} s)")  # fmt: skip
    print("counts: certain = sure the difference is one person; guessed = B - A is exactly 1; "
          "membership = knows all but x, sure whether x was there")
    print("sums (charging sessions, median 8 kWh): exact = B - A is x's energy to the Wh; "
          "±10% = within 10 % of it")
    print(differencing.format_table(rates))


def flood(rate: int, window_s: int, seed: int) -> None:
    rng = random.Random(seed)
    key = hashlib.sha256(b"flood").digest()
    n = rate * window_s
    tracemalloc.start()
    s = DistinctSet()
    t0 = time.perf_counter()
    for _ in range(n):
        mac = rng.randbytes(6).hex(":")
        s.add(hmac.new(key, mac.encode(), hashlib.sha256).digest()[:16])
    dt = time.perf_counter() - t0
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    est = s.count()
    print(f"\nflood: {n:,} random MACs ({rate}/s for {window_s / 60:g} min) into one DistinctSet "
          f"(cap {s.cap:,}): estimate {est:,} ({(est - n) / n:+.2%}; stated standard error 0.81 %), "
          f"held {current / 1024:.0f} KiB (peak {peak / 1024:.0f} KiB at the switch to the sketch); "
          f"{n / dt:,.0f} pseudonyms/s including HMAC")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--hours", type=float, default=12)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--pairs", type=int, default=20_000)
    args = ap.parse_args()
    rule = Rule()
    print(f"cell key ptable: noise distribution {rule.ptable.probabilities()}; mean |noise| "
          f"{rule.ptable.expected_abs_noise():.3f}; 10-5 mean |rounding| 1.2")  # fmt: skip
    for window_s in (900.0, 300.0):
        footfall_table(args.hours, window_s, args.seed)
    sums_table(5000, args.seed)
    attack_table(args.pairs, args.seed)
    flood(1000, 900, args.seed)


if __name__ == "__main__":
    main()
