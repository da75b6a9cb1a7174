"""Disclosure control: the one rule every value derived from personal-at-source data obeys.

Stripping identifiers is not enough: a published number can still describe one person (a window
with one charging session publishes that session's energy; two outputs that differ by one person
give that person away by subtraction). Here every such value is stated in **contributors** —
distinct people, devices or sessions, never samples — and leaves only through these rules:

1. **Threshold.** Nothing leaves with fewer than `min_count` contributors behind it, whatever the
   statistic: the result is `None` and `suppressed`. Contributor counts themselves leave only
   above the threshold and only in the same protected form as a count.
2. **Differencing.** Counts are protected by one of three policies:
   - `cell_key` (default): the ONS Census 2021 cell key method. Every record has a record key
     0..255 (here derived in RAM from its keyed pseudonym); a cell's key is the sum of its
     records' keys mod 256; a fixed perturbation table maps (value, cell key) to a small noise.
     The same set of people always gets the same noise wherever it appears, so repeating or
     overlapping a query does not average the noise away, and a difference of one between two
     outputs may be a person or may be the noise.
   - `ten_five`: the ONS 10-5 rule — below 10 suppressed, the rest rounded to the nearest 5.
   - `suppress`: threshold only, published numbers exact (no protection against differencing).
   Sums and means under `cell_key` get the magnitude form of the method (noise proportional to
   the largest single contribution, chosen by the same cell key), and under every policy a
   (1, k) dominance rule: suppressed when one contributor holds more than `dominance` of it.
3. **Events become windows.** Per-person events and running totals (line crossings, energy
   registers, device-made people counts) leave only as per-window increments through 1-2:
   `RunningTotal`, `PersonCounts`, `Contributions`.

Sources (see docs/privacy.md "Disclosure control"): ONS, "Protecting personal data in Census 2021
results" (methodology, 2022/23); ONS Statistical Methods Library, `cell-key-perturbation`
(github.com/ONSdigital/cell-key-perturbation, documentation/CellKeyPerturbation_Py.md: record keys 0-255,
cell key = sum mod 256, ptable rows by (pcv, ckey), rows 501-750 reused above 750, the 10-5
ptable); the perturbation table follows the maximum-entropy design of T. Enderle's `ptable`
package (Giessing 2016, doi:10.1007/978-3-319-45381-1_18); magnitudes follow Thompson,
Broadfoot & Elazar (ABS, UNECE SDC work session 2013) and Giessing & Tent (UNECE 2019).

Pure: no clocks, no I/O; record keys come from pseudonyms made by the caller.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from gateway.privacy.sketch import DEFAULT_CAP, HyperLogLog, record_key

MIN_COUNT_FLOOR = 3  # below this a "threshold" protects nobody: refused by config
TEN_FIVE_THRESHOLD = 10
TEN_FIVE_BASE = 5
KEY_RANGE = 256  # record and cell keys are 0..255, as for Census 2021
PCV_MAX = 750  # ptable rows; values above reuse rows 501..750 (ONS)
_ROW_SHIFT = 89  # each value's row is the base row turned by 89·pcv (odd: every row differs)
_MAG_STEP = 167  # cell key -> magnitude noise grid position (odd: a permutation of 0..255)

ParamValue = bool | int | float | str


class Policy(StrEnum):
    """How counts are protected against differencing (all of them apply the threshold)."""

    CELL_KEY = "cell_key"
    TEN_FIVE = "ten_five"
    SUPPRESS = "suppress"


DEFAULT_POLICY = Policy.CELL_KEY


class Statistic(StrEnum):
    """What is published of a window. Values match `firmware_bridge.base.Aggregation`."""

    DISTINCT_COUNT = "distinct_count"
    COUNT = "count"
    SUM = "sum"
    MEAN = "mean"
    MIN = "min"
    MAX = "max"
    LAST = "last"
    INCREMENT = "increment"


# What may be published of each kind of personal-at-source field. MIN, MAX and LAST of a
# personal field are one person's value by construction; an identifier leaves only as a count.
ROLE_STATISTICS: dict[str, frozenset[Statistic]] = {
    "identifier": frozenset({Statistic.DISTINCT_COUNT, Statistic.COUNT}),
    "person_event": frozenset({Statistic.COUNT, Statistic.SUM, Statistic.MEAN}),
    "running_total": frozenset({Statistic.INCREMENT}),
    "person_count": frozenset({Statistic.MEAN, Statistic.MAX}),
    "context": frozenset(),
}


# EV connector status of a residential bay (a home's charger on the street): its occupancy says
# when the household is in, so the occupancy states become OCPI's own word for "no status
# information available"; whether the bay is out of order or taken out of service (what a
# borough maintains) stays. Public bays publish the OCPI status as it is.
OCPI_EVSE_STATUSES = frozenset({"AVAILABLE", "BLOCKED", "CHARGING", "INOPERATIVE", "OUTOFORDER",
                                "PLANNED", "REMOVED", "RESERVED", "UNKNOWN"})  # fmt: skip
RESIDENTIAL_STATUS: dict[str, str] = {
    "AVAILABLE": "UNKNOWN", "BLOCKED": "UNKNOWN", "CHARGING": "UNKNOWN", "RESERVED": "UNKNOWN",
    "UNKNOWN": "UNKNOWN", "INOPERATIVE": "INOPERATIVE", "OUTOFORDER": "OUTOFORDER",
    "PLANNED": "PLANNED", "REMOVED": "REMOVED",
}  # fmt: skip
RESIDENTIAL_WINDOW_S = 3600.0  # a residential bay's status leaves as the last per hour …
RESIDENTIAL_DELAY_S = 3600.0  # … an hour after the hour


def is_evse_status(vocabulary: frozenset[str] | None) -> bool:
    """A category field that carries an OCPI EVSE status (its declared vocabulary is OCPI's)."""
    return vocabulary is not None and bool(vocabulary) and vocabulary <= OCPI_EVSE_STATUSES


def residential_status(value: str) -> str:
    """The coarse status of a residential bay; anything unexpected says nothing."""
    return RESIDENTIAL_STATUS.get(value, "UNKNOWN")


# ---------------------------------------------------------------------------- validation
# Helpers the config calls; each returns a readable message, or None / [] when fine.


def validate_min_count(min_count: object) -> str | None:
    if isinstance(min_count, bool) or not isinstance(min_count, int):
        return "must be a whole number of contributors"
    if min_count < MIN_COUNT_FLOOR:
        return (f"must be at least {MIN_COUNT_FLOOR}: a smaller threshold lets a published "
                "number describe one or two people")  # fmt: skip
    return None


def validate_policy(policy: object) -> str | None:
    known = ", ".join(p.value for p in Policy)
    if not isinstance(policy, str) or policy not in {p.value for p in Policy}:
        return f"unknown disclosure policy {policy!r}; known: {known}"
    return None


def validate_aggregation(role: str, statistic: str) -> str | None:
    """Refuse a statistic that would publish one person's value of a personal field."""
    r = role.lower().removeprefix("role.")
    if r == "reading":
        return None  # not personal: leaves per reading or in any aggregate
    allowed = ROLE_STATISTICS.get(r)
    if allowed is None:
        return f"unknown field role {role!r}"
    if statistic in {s.value for s in allowed}:
        return None
    if not allowed:
        return f"a {r} field never leaves, in any aggregate (it only feeds estimators)"
    names = ", ".join(sorted(s.value for s in allowed))
    return f"{statistic} of a {r} field would publish one person's value; allowed: {names}"


def validate_rotation(rotation_s: float, windows_s: Iterable[float]) -> list[str]:
    """Every window must fit inside one key epoch: the rotation a whole multiple of it."""
    problems: list[str] = []
    if not rotation_s > 0:
        return ["key rotation must be a positive duration"]
    for w in sorted(set(windows_s)):
        if w <= 0:
            problems.append(f"window {w:g}s must be positive")
            continue
        ratio = rotation_s / w
        if ratio < 1 or abs(ratio - round(ratio)) > 1e-9:
            problems.append(
                f"key rotation {rotation_s:g}s is not a whole multiple of the {w:g}s window: "
                "a window would need two keys (make the rotation a multiple of every window)"
            )
    return problems


def validate_cap(cap: object, min_count: int) -> str | None:
    if isinstance(cap, bool) or not isinstance(cap, int):
        return "must be a whole number"
    if cap < max(100, 10 * min_count):
        return f"must be at least {max(100, 10 * min_count)} (and far above min_count)"
    return None


# ---------------------------------------------------------------------------- the ptable


def _max_entropy(max_noise: int, variance: float) -> list[float]:
    """Symmetric noise on -D..D with mean 0 and the given variance that is otherwise as spread
    as possible (maximum entropy: p(d) ∝ exp(-λ d²)), as the `ptable` package's design."""
    ds = range(-max_noise, max_noise + 1)

    def var(lam: float) -> float:
        w = [math.exp(-lam * d * d) for d in ds]
        return sum(wi * d * d for wi, d in zip(w, ds, strict=True)) / sum(w)

    lo, hi = -5.0, 60.0
    if not var(hi) <= variance <= var(lo):
        raise ValueError(f"variance {variance} is not reachable with noise up to ±{max_noise}")
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if var(mid) > variance else (lo, mid)
    w = [math.exp(-lo * d * d) for d in ds]
    z = sum(w)
    return [x / z for x in w]


@dataclass(frozen=True)
class PTable:
    """A fixed perturbation table: noise for (value, cell key), the same every time.

    Stored as one base row of 256 noises (contiguous cell-key intervals, ascending noise, as
    the `ptable` package lays them out); the row for value v is the base row turned by
    89·pcv(v), so every value has the same noise distribution but a different key→noise map.
    `rows()` writes it out as ONS's (pcv, ckey, pvalue) table.
    """

    row: tuple[int, ...]
    variance_target: float

    def __post_init__(self) -> None:
        if len(self.row) != KEY_RANGE:
            raise ValueError("a ptable row has one noise per cell key 0..255")
        for d in set(self.row):
            if self.row.count(d) != self.row.count(-d):
                raise ValueError("ptable noise must be symmetric (unbiased)")

    @property
    def max_noise(self) -> int:
        return max(abs(d) for d in self.row)

    def probabilities(self) -> dict[int, float]:
        return {d: self.row.count(d) / KEY_RANGE for d in sorted(set(self.row))}

    def variance(self) -> float:
        return sum(d * d for d in self.row) / KEY_RANGE

    def expected_abs_noise(self) -> float:
        """Expected absolute error the noise adds to a published count (before suppression)."""
        return sum(abs(d) for d in self.row) / KEY_RANGE

    @staticmethod
    def pcv(value: int) -> int:
        """ONS: values above 750 reuse rows 501..750 ((v - 1) mod 250 + 501)."""
        return value if value <= PCV_MAX else (value - 1) % 250 + 501

    def noise(self, value: int, cell_key: int) -> int:
        if value <= 0:
            return 0  # zeros stay zeros
        return self.row[(cell_key + _ROW_SHIFT * self.pcv(value)) % KEY_RANGE]

    def rows(self, max_pcv: int = PCV_MAX) -> Iterator[tuple[int, int, int]]:
        """(pcv, ckey, pvalue) for pcv 1..max_pcv, the layout of ONS's ptable files."""
        for v in range(1, max_pcv + 1):
            for ck in range(KEY_RANGE):
                yield v, ck, self.noise(v, ck)


def build_ptable(max_noise: int = 2, variance: float = 1.0) -> PTable:
    """The maximum-entropy noise distribution quantised to 256 cell keys, kept symmetric."""
    p = _max_entropy(max_noise, variance)
    counts = {d: round(p[d + max_noise] * KEY_RANGE) for d in range(1, max_noise + 1)}
    zero = KEY_RANGE - 2 * sum(counts.values())
    if zero < 0:
        raise ValueError("noise distribution does not fit 256 cell keys")
    row: list[int] = []
    for d in range(-max_noise, max_noise + 1):
        row.extend([d] * (zero if d == 0 else counts[abs(d)]))
    return PTable(tuple(row), variance)


# D = 3, V = 1: P(0) = 102/256, P(±1) = 62/256, P(±2) = 14/256, P(±3) = 1/256 each; mean
# absolute noise 0.727, variance 0.992. Why D = 3 rather than 2 at the same variance: when A's
# noise is +D and B's is −D, B − A = 1 − 2D is reachable only if one person separates them, so
# an attacker is certain with probability P(D)² — 0.39 % with D = 2 (16/256 each), 0.0015 %
# here — for the same mean error.
DEFAULT_PTABLE = build_ptable(3, 1.0)


def magnitude_noise(cell_key: int) -> float:
    """Magnitude noise factor for a cell key: a fixed symmetric grid on (-1, 1), ±(j + ½)/128,
    mean 0, mean absolute value ½, never exactly 0; the cell key picks the point."""
    j = (_MAG_STEP * cell_key) % KEY_RANGE
    return (j + 0.5) / 128.0 - 1.0


def opaque_cell_key(key: bytes | bytearray, *parts: object) -> int:
    """A cell key for values with no per-person records (events of a counter, device-made
    counts): a keyed hash of what identifies the set of events, e.g. the counter range. The
    same events give the same key within a key epoch."""
    msg = "\x1f".join(str(p) for p in parts).encode()
    return hmac.new(bytes(key), msg, hashlib.sha256).digest()[0]


# ---------------------------------------------------------------------------- the rule


@dataclass(frozen=True)
class Rule:
    """The disclosure rule of one Datastream."""

    policy: Policy = DEFAULT_POLICY
    min_count: int = 10
    ptable: PTable = DEFAULT_PTABLE
    magnitude: float = 0.2  # sums under cell_key: noise up to ± this × the largest contribution
    dominance: float | None = 0.5  # sums: suppressed when one contributor holds more than this

    def __post_init__(self) -> None:
        problem = validate_min_count(self.min_count)
        if problem:
            raise ValueError(f"min_count {problem}")
        if not 0 <= self.magnitude <= 1:
            raise ValueError("magnitude must be from 0 to 1")
        if self.dominance is not None and not 0 < self.dominance <= 1:
            raise ValueError("dominance must be above 0 and at most 1")

    @property
    def threshold(self) -> int:
        """Contributors needed: min_count, and at least 10 under the 10-5 rule."""
        if self.policy is Policy.TEN_FIVE:
            return max(self.min_count, TEN_FIVE_THRESHOLD)
        return self.min_count

    def expected_abs_error(self) -> float:
        """Expected absolute error of a published count from the rule itself (the estimator's
        own error comes on top): 0 for suppress; 1.2 for 10-5 (residues 0-4 equally likely:
        (0+1+2+2+1)/5); the ptable's mean |noise| for the cell key method."""
        if self.policy is Policy.SUPPRESS:
            return 0.0
        if self.policy is Policy.TEN_FIVE:
            return 1.2
        return self.ptable.expected_abs_noise()


_CONTRIBUTOR_WORDS = {
    Statistic.DISTINCT_COUNT: "distinct devices",
    Statistic.COUNT: "people or sessions",
    Statistic.SUM: "sessions or people with a part in it",
    Statistic.MEAN: "sessions or people with a part in it",
    Statistic.INCREMENT: "events or sessions in the window",
    Statistic.MAX: "devices counted at one moment",
}


def describe(rule: Rule, statistic: Statistic, contributors: str | None = None) -> str:
    """The rule of one Datastream in plain words, for the privacy report and a DPIA."""
    who = contributors or _CONTRIBUTOR_WORDS.get(statistic, "contributors")
    is_sum = statistic in (Statistic.SUM, Statistic.MEAN)
    parts = [f"Published only when at least {rule.threshold} {who} stand behind the figure; "
             "otherwise the window is published without a number (suppressed)."]  # fmt: skip
    if is_sum and rule.dominance is not None:
        parts.append(f"Also withheld when one of them makes up more than {rule.dominance:.0%} of it.")
    if rule.policy is Policy.CELL_KEY:
        if is_sum:
            parts.append(
                f"The figure is adjusted by the magnitude form of the ONS cell key method: by up to "
                f"±{rule.magnitude:.0%} of the largest single part (on average "
                f"{rule.magnitude / 2:.0%} of it), the same every time for the same people.")  # fmt: skip
        else:
            parts.append(
                f"Counts are adjusted by the ONS Census 2021 cell key method: a fixed adjustment "
                f"of at most ±{rule.ptable.max_noise} (mean error "
                f"{rule.ptable.expected_abs_noise():.2f}), the same every time for the same people.")  # fmt: skip
        if is_sum:
            parts.append("Subtracting two published sums does not give one person's part, "
                         "only a value blurred by both adjustments.")  # fmt: skip
        else:
            p_max = rule.ptable.probabilities()[rule.ptable.max_noise]
            parts.append(
                "Comparing two published figures does not show that they differ by one person "
                f"(with certainty only in 1 pair in {round(1 / (p_max * p_max)):,}); someone who "
                "already knows everyone else in a figure can often tell whether one more was there.")  # fmt: skip
    elif rule.policy is Policy.TEN_FIVE:
        if is_sum:
            parts.append("The figure itself is exact: two published sums can be subtracted.")
        else:
            parts.append("Counts are rounded to the nearest 5 (mean error 1.2, at most 2): a "
                         "difference of one person does not show.")  # fmt: skip
    else:
        parts.append("The figure is exact: two published figures can be subtracted, so only "
                     "small figures are protected.")  # fmt: skip
    return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Protected:
    """What may leave for one window. Carries no pseudonym, record key or cell key."""

    result: int | float | None
    suppressed: bool
    samples: int | None  # contributors, in the same protected form as a count (None: not shown)
    estimate: bool  # the count came from a sketch, not an exact set
    policy: Policy
    min_count: int  # the threshold that applied
    reason: str | None = None  # why suppressed (for metrics, never published)

    def parameters(self) -> dict[str, ParamValue]:
        """Observation parameters: the policy, and either the suppression or protected samples."""
        out: dict[str, ParamValue] = {"disclosure": self.policy.value}
        if self.suppressed:
            out["suppressed"] = True
            out["min_count"] = self.min_count
            return out
        if self.samples is not None:
            out["samples"] = self.samples
        if self.estimate:
            out["estimate"] = True
        return out


def _suppressed(rule: Rule, reason: str, estimate: bool = False) -> Protected:
    return Protected(None, True, None, estimate, rule.policy, rule.threshold, reason)


def _round5(value: int) -> int:
    """Nearest multiple of 5 (integers never tie): 11, 12 → 10; 13, 14 → 15 (ONS 10-5 ptable)."""
    return TEN_FIVE_BASE * ((value + 2) // TEN_FIVE_BASE)


def _perturb(value: int, cell_key: int | None, rule: Rule) -> int:
    """The policy's transform of a whole number, without any threshold."""
    if rule.policy is Policy.SUPPRESS:
        return value
    if rule.policy is Policy.TEN_FIVE:
        return _round5(value)
    if cell_key is None:
        raise ValueError("the cell key method needs a cell key")
    return max(0, value + rule.ptable.noise(value, cell_key % KEY_RANGE))


def _count(value: int, cell_key: int | None, rule: Rule) -> int | None:
    """The published form of a count already known to meet the threshold; None: suppressed
    because the perturbed count fell below it (as ONS applies the threshold after the noise)."""
    out = _perturb(value, cell_key, rule)
    return out if out >= rule.threshold else None


def protect_count(
    value: int, contributors: int, cell_key: int | None, rule: Rule, *, estimate: bool = False
) -> Protected:
    """A count of people, devices, sessions or events (also an estimate such as footfall,
    whose `contributors` are the distinct devices actually counted)."""
    if min(value, contributors) < rule.threshold:
        return _suppressed(rule, "contributors", estimate)
    out = _count(value, cell_key, rule)
    if out is None:
        return _suppressed(rule, "perturbed", estimate)
    return Protected(out, False, None, estimate, rule.policy, rule.threshold)


def protect_sum(
    total: float,
    contributors: int,
    largest: float,
    cell_key: int | None,
    rule: Rule,
    *,
    estimate: bool = False,
) -> Protected:
    """A sum of person events (energy of sessions, an increment of a register).

    `largest` is the largest single contributor's part (absolute). Under cell_key the sum gets
    noise of up to ± magnitude × largest, chosen by the cell key; the contributor count leaves
    as `samples` in the same protected form as a count.
    """
    if contributors < rule.threshold:
        return _suppressed(rule, "contributors", estimate)
    if rule.dominance is not None and abs(largest) > rule.dominance * abs(total) and total != 0:
        return _suppressed(rule, "dominance", estimate)
    samples = _count(contributors, cell_key, rule)
    if samples is None:
        return _suppressed(rule, "perturbed", estimate)
    result = total
    if rule.policy is Policy.CELL_KEY:
        if cell_key is None:  # _count refused None
            raise AssertionError("cell_key is not None")
        result = total + rule.magnitude * abs(largest) * magnitude_noise(cell_key % KEY_RANGE)
    return Protected(result, False, samples, estimate, rule.policy, rule.threshold)


def protect_mean(
    total: float,
    contributors: int,
    largest: float,
    cell_key: int | None,
    rule: Rule,
    *,
    estimate: bool = False,
) -> Protected:
    """A mean over contributors: the protected sum divided by the number of contributors."""
    s = protect_sum(total, contributors, largest, cell_key, rule, estimate=estimate)
    if s.suppressed or s.result is None:
        return s
    return Protected(s.result / contributors, False, s.samples, estimate, rule.policy, rule.threshold)


def protect_single(
    value: int | float | str | bool, contributors: int, cell_key: int | None, rule: Rule
) -> Protected:
    """MIN, MAX or LAST: one contributor's value by construction. `validate_aggregation`
    refuses them for personal fields; anything that still comes this way meets the threshold.
    A text or boolean value cannot be carried in `Protected` and is suppressed."""
    if contributors < rule.threshold:
        return _suppressed(rule, "contributors")
    samples = _count(contributors, cell_key, rule)
    if samples is None or isinstance(value, str | bool):
        return _suppressed(rule, "perturbed" if samples is None else "not_numeric")
    return Protected(value, False, samples, False, rule.policy, rule.threshold)


# ---------------------------------------------------------------------------- accumulators


@dataclass(slots=True)
class Contributions:
    """Per-contributor parts of one open window: a session's energy, a person's events.

    Bounded: exact per-contributor totals up to `cap` contributors; beyond it further
    contributors only add to the total and to a sketch (the count becomes a lower bound and the
    result is flagged an estimate). Parts with no known contributor (`None`) add to the total
    and count as one contributor for `largest`, never towards the threshold.
    """

    cap: int = DEFAULT_CAP
    total: float = 0.0
    samples: int = 0
    _by: dict[bytes, float] = field(default_factory=dict)
    _unattributed: float = 0.0
    _overflow: HyperLogLog | None = None
    _overflow_largest: float = 0.0

    def add(self, contributor: bytes | None, value: float) -> None:
        if not math.isfinite(value):
            return
        self.total += value
        self.samples += 1
        if contributor is None:
            self._unattributed += value
        elif contributor in self._by:
            self._by[contributor] += value
        elif len(self._by) < self.cap:
            self._by[contributor] = value
        else:
            if self._overflow is None:
                self._overflow = HyperLogLog(10)
            self._overflow.add(contributor)
            self._overflow_largest = max(self._overflow_largest, abs(value))

    @property
    def is_estimate(self) -> bool:
        return self._overflow is not None

    def contributors(self) -> int:
        """Distinct contributors with a non-zero part (a lower bound once over the cap)."""
        return sum(1 for v in self._by.values() if v != 0)

    def present(self) -> int:
        """Distinct contributors named at all, a part of zero included: the people behind a
        count of their events (a lower bound once over the cap)."""
        return len(self._by)

    def largest(self) -> float:
        parts = [abs(v) for v in self._by.values()]
        parts += [abs(self._unattributed), self._overflow_largest]
        return max(parts)

    def cell_key(self) -> int:
        """Record keys of everyone named in the window, summed mod 256 (plus the sketch of any
        beyond the cap): a function of the set, so the same people get the same noise."""
        ck = sum(record_key(c) for c in self._by)
        if self._overflow is not None:
            ck += self._overflow.digest()
        return ck % KEY_RANGE

    def wipe(self) -> None:
        self._by.clear()
        self._overflow = None
        self.total = self._unattributed = self._overflow_largest = 0.0
        self.samples = 0


@dataclass(frozen=True, slots=True)
class Increment:
    """A running total's increase over one window, with the people or events behind it."""

    value: float
    contributors: int
    largest: float
    cell_key: int
    estimate: bool = False
    resets: int = 0  # counter restarts seen in the window

    def protect(self, rule: Rule, *, as_count: bool) -> Protected:
        """`as_count` for event counters (crossings): a count; otherwise a sum (energy)."""
        if as_count:
            return protect_count(round(self.value), self.contributors, self.cell_key, rule,
                                 estimate=self.estimate)  # fmt: skip
        return protect_sum(self.value, self.contributors, self.largest, self.cell_key, rule,
                           estimate=self.estimate)  # fmt: skip


@dataclass(slots=True)
class Steps:
    """A cumulative register or counter read as steps: the one rule for every running total
    (`RunningTotal` below, and the privacy stage's `increment` aggregation of non-personal ones).

    - the first reading is the baseline: no step yet;
    - a reading from before the previous one (read back in time) has an unknowable step: it is
      skipped, counted in `out_of_order`, and does not move the baseline;
    - a drop is a restart from zero: the new value is the step (`reset`).
    """

    prev: float | None = None
    prev_t: float = -math.inf
    out_of_order: int = 0

    def step(self, value: float, t: float) -> tuple[float, float, bool] | None:
        """(the previous value, the step, whether it was a restart), or None when there is no step."""
        if not math.isfinite(value):
            return None
        if t < self.prev_t:
            self.out_of_order += 1
            return None
        prev, self.prev, self.prev_t = self.prev, value, t
        if prev is None:
            return None
        if value < prev:
            return prev, value, True
        return prev, value - prev, False


@dataclass(slots=True)
class RunningTotal:
    """A cumulative register or counter (line crossings, an energy meter) as window increments.

    The raw total never leaves: each reading's step (value − previous value; a drop is a
    counter restart, and the new value is the step) is credited to the window the reading
    falls in. Who stands behind the steps:
    - `events=True` (a counter of person events, e.g. camera crossings): every unit step is one
      event, and the events are the contributors; their cell key is a keyed hash of the counter
      range, so the same events always get the same noise;
    - `events=False` (a register whose steps are sessions' energy): each step is credited to the
      session named in that reading (a pseudonym, e.g. of the OCPP transaction id); the
      contributors are the sessions with a non-zero part. Steps with no session count to the
      total, never towards the threshold.
    """

    window_s: float
    events: bool
    cap: int = DEFAULT_CAP
    steps: Steps = field(default_factory=Steps)  # the register's steps (out_of_order counted there)
    _open: dict[int, Contributions] = field(default_factory=dict)
    _range: dict[int, tuple[float, float]] = field(default_factory=dict)  # first, last total
    _resets: dict[int, int] = field(default_factory=dict)
    _closed_below: int | None = None
    late: int = 0  # steps that fell in a window already published (the baseline still moves)

    def observe(self, value: float, t: float, session: bytes | None = None) -> None:
        got = self.steps.step(value, t)
        if got is None:
            return
        prev, step, reset = got
        w = math.floor(t / self.window_s)
        if self._closed_below is not None and w < self._closed_below:
            self.late += 1  # its window is published: never reopened
            return
        if reset:
            self._resets[w] = self._resets.get(w, 0) + 1
        acc = self._open.get(w)
        if acc is None:
            acc = self._open[w] = Contributions(self.cap)
            self._range[w] = (prev, value)
        first, _ = self._range[w]
        self._range[w] = (first, value)
        if step == 0:
            return
        acc.add(None if self.events else session, step)

    def open_windows(self) -> list[int]:
        return sorted(self._open)

    def close(self, index: int, key: bytes | bytearray | None = None) -> Increment | None:
        """End window `index`; `key` (its epoch's key) makes the events' cell key. A closed
        window is never reopened: later steps that fall in it are counted in `late`."""
        if self._closed_below is None or index + 1 > self._closed_below:
            self._closed_below = index + 1
        acc = self._open.pop(index, None)
        first, last = self._range.pop(index, (0.0, 0.0))
        resets = self._resets.pop(index, 0)
        if acc is None:
            return None
        if self.events:
            n = max(0, round(acc.total))
            ck = opaque_cell_key(key, "events", first, last) if key is not None else 0
            inc = Increment(acc.total, n, 1.0 if n else 0.0, ck, False, resets)
        else:
            inc = Increment(acc.total, acc.contributors(), acc.largest(), acc.cell_key(),
                            acc.is_estimate, resets)  # fmt: skip
        acc.wipe()
        return inc

    def held(self) -> int:
        """Session pseudonyms held in the open windows."""
        return sum(acc.present() for acc in self._open.values())

    def wipe(self, below: int | None = None) -> None:
        """Key rotation: session parts of open windows go — every window, or only those with
        an index below `below` (the windows of a retired epoch). The register baseline stays:
        it is a meter reading, not a person."""
        for w in [w for w in self._open if below is None or w < below]:
            self._open.pop(w).wipe()
            self._range.pop(w, None)
            self._resets.pop(w, None)


@dataclass(slots=True)
class PersonCounts:
    """People or device counts made by the device itself (a Paxcounter's `wifi: 12`), per
    window. There are no records to de-duplicate, so the contributors are the largest count
    reported in the window: at least that many devices were there at one moment."""

    n: int = 0
    total: float = 0.0
    peak: int = 0

    def add(self, count: float) -> None:
        if not math.isfinite(count) or count < 0:
            return
        self.n += 1
        self.total += count
        self.peak = max(self.peak, int(count))

    def protect(self, statistic: Statistic, cell_key: int | None, rule: Rule) -> Protected | None:
        """MEAN (rounded to a whole count) or MAX of the window's counts; None for no data."""
        if self.n == 0:
            return None
        if statistic is Statistic.MAX:
            value = self.peak
        elif statistic is Statistic.MEAN:
            value = round(self.total / self.n)
        else:
            raise ValueError(f"{statistic} of device-made counts is not offered")
        if self.peak < rule.threshold:
            return _suppressed(rule, "contributors")
        # the value is not itself a head count (a mean over time may be small): transformed by
        # the policy, but the threshold is on the contributors alone
        return Protected(_perturb(value, cell_key, rule), False, None, False, rule.policy,
                         rule.threshold)  # fmt: skip
