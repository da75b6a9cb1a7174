"""The differencing attacker of issue 12, shared by the unit test and bench/bench_disclosure.py.

Two published outputs whose people differ by exactly one person x (overlapping windows, a zone
and its total, two sensors): A, and B = A ∪ {x}. The attacker knows the policy and its
perturbation table (nothing is secret but the keys and the people), sees both outputs, and wants
x's contribution: for a count, that the difference is one person; for a sum, x's session energy.

Measured per policy, over generated pairs:
- `certain`: the attacker can be sure the difference is exactly one person — among every number
  of people c ≥ 0 that could separate A from B, only c = 1 can produce the two outputs (the
  ONS framing: "users cannot be sure whether differences between tables represent a real person,
  or are caused by the perturbation"). c = 0 means the same people, hence the same output.
- `guessed`: the naive reading "B − A is x's contribution" is exactly right (for sums: to the
  watt-hour), whether or not the attacker could know it.
- `membership`: a stronger attacker who already knows everyone but x, and only asks whether x
  was there (c ∈ {0, 1}): sure whenever the two outputs differ.

Record keys come from random 16-byte pseudonyms through the code under test (`DistinctSet`,
`Contributions`); the attacker's knowledge of what each policy can output is taken from the
published mechanism itself (`protect_count` over all 256 cell keys), as a real attacker would.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.privacy.disclosure import (
    KEY_RANGE,
    Contributions,
    Policy,
    Rule,
    protect_count,
    protect_sum,
)
from gateway.privacy.sketch import DistinctSet

Out = int | None


class Attacker:
    """Knows the policy and its table: what every number of people can be published as."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self._reach: dict[int, frozenset[Out]] = {}
        self._consistent: dict[tuple[Out, Out], frozenset[int]] = {}

    def reachable(self, n: int) -> frozenset[Out]:
        """Every output the policy can give a set of n people (over all cell keys)."""
        r = self._reach.get(n)
        if r is None:
            keys = range(KEY_RANGE) if self.rule.policy is Policy.CELL_KEY else (0,)
            r = frozenset(_as_int(protect_count(n, n, ck, self.rule).result) for ck in keys)
            self._reach[n] = r
        return r

    def consistent_differences(self, a: Out, b: Out) -> frozenset[int]:
        """Every number of people c ≥ 0 by which B may exceed A, given outputs a and b."""
        known = self._consistent.get((a, b))
        if known is not None:
            return known
        top = (b if b is not None else self.rule.threshold) + 12
        out = {0} if a == b else set()
        sizes_a = [n for n in range(top + 1) if a in self.reachable(n)]
        for c in range(1, top + 1):
            if any(b in self.reachable(n + c) for n in sizes_a):
                out.add(c)
        self._consistent[(a, b)] = frozenset(out)
        return self._consistent[(a, b)]


def _as_int(v: int | float | None) -> Out:
    return None if v is None else int(v)


@dataclass
class CountRates:
    pairs: int = 0
    published: int = 0  # both outputs published
    certain: int = 0
    guessed: int = 0
    membership: int = 0

    def row(self) -> dict[str, float]:
        p = max(1, self.pairs)
        return {"pairs": self.pairs, "published": self.published / p, "certain": self.certain / p,
                "guessed": self.guessed / p, "membership": self.membership / p}  # fmt: skip


@dataclass
class SumRates:
    pairs: int = 0
    published: int = 0
    exact: int = 0  # B − A equals x's energy to the watt-hour
    within_10pc: int = 0

    def row(self) -> dict[str, float]:
        p = max(1, self.pairs)
        return {"pairs": self.pairs, "published": self.published / p, "exact": self.exact / p,
                "within_10pc": self.within_10pc / p}  # fmt: skip


def count_pairs(n_pairs: int, seed: int, sizes: tuple[int, int] = (5, 80)) -> list[tuple[int, int, int, int]]:
    """(count A, cell key A, count B, cell key B) for generated pairs B = A ∪ {x}."""
    rng = random.Random(seed)
    out = []
    for _ in range(n_pairs):
        a, b = DistinctSet(), DistinctSet()
        for _ in range(rng.randint(*sizes)):
            p = rng.randbytes(16)
            a.add(p)
            b.add(p)
        b.add(rng.randbytes(16))
        out.append((a.count(), a.cell_key(), b.count(), b.cell_key()))
    return out


def attack_counts(rule: Rule, pairs: Iterable[tuple[int, int, int, int]]) -> CountRates:
    r = CountRates()
    attacker = Attacker(rule)
    for na, cka, nb, ckb in pairs:
        a = _as_int(protect_count(na, na, cka, rule).result)
        b = _as_int(protect_count(nb, nb, ckb, rule).result)
        r.pairs += 1
        r.membership += a != b
        if a is None or b is None:
            continue
        r.published += 1
        r.guessed += b - a == nb - na
        r.certain += attacker.consistent_differences(a, b) == {1}
    return r


def session_pairs(n_pairs: int, seed: int, sizes: tuple[int, int] = (5, 40)) -> list[tuple[Contributions, Contributions, float]]:
    """Charging sessions (energy ~ lognormal, median 8 kWh): A, B = A + x, and x's energy."""
    rng = random.Random(seed)
    out = []
    for _ in range(n_pairs):
        a, b = Contributions(), Contributions()
        for _ in range(rng.randint(*sizes)):
            s, e = rng.randbytes(16), round(rng.lognormvariate(2.08, 0.6), 3)
            a.add(s, e)
            b.add(s, e)
        x = round(rng.lognormvariate(2.08, 0.6), 3)
        b.add(rng.randbytes(16), x)
        out.append((a, b, x))
    return out


def attack_sums(rule: Rule, pairs: Iterable[tuple[Contributions, Contributions, float]]) -> SumRates:
    r = SumRates()
    for a, b, x in pairs:
        pa = protect_sum(a.total, a.contributors(), a.largest(), a.cell_key(), rule)
        pb = protect_sum(b.total, b.contributors(), b.largest(), b.cell_key(), rule)
        r.pairs += 1
        if pa.result is None or pb.result is None:
            continue
        r.published += 1
        guess = pb.result - pa.result
        r.exact += abs(guess - x) < 0.0005
        r.within_10pc += abs(guess - x) <= 0.1 * x
    return r


POLICIES = (Policy.SUPPRESS, Policy.TEN_FIVE, Policy.CELL_KEY)


def table(min_count: int, n_pairs: int, seed: int) -> dict[str, dict[str, dict[str, float]]]:
    """Rates per policy, for counts and for sums."""
    cp = count_pairs(n_pairs, seed)
    sp = session_pairs(n_pairs, seed + 1)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for policy in POLICIES:
        rule = Rule(policy=policy, min_count=min_count)
        out[policy.value] = {"counts": attack_counts(rule, cp).row(), "sums": attack_sums(rule, sp).row()}
    return out


def format_table(rates: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = [f"{'policy':<10} {'pairs':>6} | counts: {'published':>9} {'certain':>8} {'guessed':>8} "
             f"{'membership':>10} | sums: {'published':>9} {'exact':>6} {'±10%':>6}"]  # fmt: skip
    for policy, r in rates.items():
        c, s = r["counts"], r["sums"]
        lines.append(
            f"{policy:<10} {int(c['pairs']):>6} |         {c['published']:>9.1%} {c['certain']:>8.1%} "
            f"{c['guessed']:>8.1%} {c['membership']:>10.1%} |       {s['published']:>9.1%} "
            f"{s['exact']:>6.1%} {s['within_10pc']:>6.1%}"
        )
    return "\n".join(lines)
