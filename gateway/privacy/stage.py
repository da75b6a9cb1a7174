"""The privacy stage: the only road from `Reading` (may be personal) to `Observation` (cannot be).

Pure: time comes in as `now`, pseudonym keys from an injected factory (os.urandom in the shell).
Default deny: a field leaves only if its driver's catalogue declares it non-personal and the
sensor's policy selects it; personal fields feed windowed aggregates and are forgotten. A text
value leaves only if it is a word of its field's declared vocabulary.

Physical ranges are enforced here, where every Observation is made and the catalogue is at
hand, so every sink gets the same answer: a number outside its field's `minimum`/`maximum` is
withheld (result null, quality `out_of_range`, counted as `out_of_range`), never published as a
number, and never absorbed into an aggregate. One absurd value would otherwise reach the store
(`1e300` W flattens its neighbours in VictoriaMetrics) and every consumer.

Every aggregate of a personal field (`Field.role` in PERSONAL_ROLES) leaves only through
gateway/privacy/disclosure.py, stated in contributors — the people, devices or sessions behind
it, never samples: a threshold, then the sensor's policy against differencing (issue 12). How
contributors are told apart comes from the catalogue's roles alone:
- an `identifier` source (a MAC): each distinct pseudonym is one contributor;
- a `person_event` (a session's energy, a session start): the identifier the same reading
  carries (an OCPP transaction id), else the reading itself is one event of one person;
- a `running_total` (a crossing counter, an energy register) leaves only as per-window
  increments: a counter's unit steps are events, a register's steps belong to the session the
  reading names (none named: they never count towards the threshold);
- a `person_count` (a Paxcounter's `wifi: 12`): the largest count in the window;
- `context` never leaves.

Keys: one per epoch of `salt_rotation`, aligned to the clock; every window lies inside one epoch
(the rotation is a whole multiple of every window) and uses that epoch's key only. An epoch's
key is zeroed when the epoch ends (plus the longest publication delay) whatever the traffic,
and every pseudonym, dwell entry and record key made under it goes with it.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from firmware_bridge.base import Aggregation, Field, ObservationType, Role, Value
from gateway.model import Observation, ParamValue, Reading, finite_observation, iso_duration
from gateway.plan import SensorPlan, SitePlan, personal_aggregates
from gateway.privacy.disclosure import (
    ROLE_STATISTICS,
    Contributions,
    PersonCounts,
    Policy,
    Protected,
    Rule,
    RunningTotal,
    Statistic,
    Steps,
    is_evse_status,
    opaque_cell_key,
    protect_count,
    protect_mean,
    protect_single,
    protect_sum,
    residential_status,
    validate_rotation,
)
from gateway.privacy.epochs import EpochKeys, Windows
from gateway.privacy.estimators import ESTIMATORS, Estimator, EstimatorSpec
from gateway.privacy.sketch import DistinctSet

ALLOWED_PARAMETERS = frozenset(
    {"quality", "aggregation", "period", "samples", "suppressed", "min_count", "window",
     "disclosure", "estimate"}
)  # fmt: skip
Result = float | int | str | bool | None
# reading flags an aggregate carries on if any reading in its window had them
INHERITED_FLAGS = frozenset({"clock_unsynced"})
# How far a reading's time may lie ahead of the stage's clock and still get its epoch's key. The
# sources' Stamper keeps a device time up to DEVICE_CLOCK_AHEAD (1 s) ahead, but stamps a burst
# of one sensor's readings 1 ms apart from `now` (gateway/sources/stamp.py), so a backlog of
# thousands arriving at once runs seconds ahead; 300 s covers 300,000 readings of one sensor at
# one instant. Not a trust in device clocks: those never reach the stage more than 1 s ahead.
DEVICE_AHEAD_S = 300.0
Closed = tuple[Result, dict[str, ParamValue]]


NOT_IN_VOCABULARY = "not_in_vocabulary"


def in_vocabulary(f: Field, text: str) -> bool:
    """Default deny for free text: a word leaves only if the field's catalogue (or the config's
    `allowed:` list) declares it. A field that declares no vocabulary lets no text out: a name,
    a plate or a message typed into a device's status field must not reach open data."""
    return f.vocabulary is not None and text in f.vocabulary


def _result_time(now: float, phenomenon_end: float) -> float:
    """A result exists only once its phenomenon has happened: resultTime is never before the
    (end of the) phenomenonTime. Stamps can lie a few milliseconds ahead of `now` (the sources
    keep them strictly increasing per sensor, so a burst of messages read at once is pushed
    forward) or a device clock within its tolerance ahead of ours."""
    return max(now, phenomenon_end)


# |v| x 10^4 below this: a product that came out a whole number is within 1/16 of the exact one
_ROUND_EXACT_BELOW = float(2**50)


def round_result(v: float) -> float:
    """Round to 4 decimals: sensors are not more precise, and long digit runs look like ids.

    For a float v: exactly `round(v, 4)` (negative zero made 0.0), without its decimal
    conversion for most sensor values with 4 decimals or fewer (86 % of those in +-100): if
    k = v x 10^4 as a float is a whole number below 2^50, the exact product is within half an
    ulp of k (at most 1/16), so v to 4 decimals is k / 10^4, and k / 10^4 as a float (k and
    10^4 exact: one correctly rounded division) is the float nearest to it, which is what
    `round` gives (the argument holds up to 2^53; 2^50 leaves a margin). Any other v takes
    `round` (tests/unit/test_round_result.py holds the two equal over every kind of float)."""
    k = v * 10000.0
    r = k / 10000.0 if k.is_integer() and -_ROUND_EXACT_BELOW < k < _ROUND_EXACT_BELOW else round(v, 4)
    return 0.0 if r == 0 else r


def out_of_range(f: Field, value: float) -> bool:
    return (f.minimum is not None and value < f.minimum) or (f.maximum is not None and value > f.maximum)


def _number(value: Value) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _whole(v: float) -> int | float:
    r = round_result(v)
    return int(r) if float(r).is_integer() else r


@dataclass
class _Window:
    """One open window of one aggregate: what every aggregation needs, in RAM only."""

    partial: bool  # began before this process started (a crash or restart lost part of it)
    flags: set[str] = field(default_factory=set)  # quality inherited from the readings in it
    distinct: DistinctSet | None = None  # distinct_count: pseudonyms, bounded
    parts: Contributions | None = None  # personal sources: each contributor's part, bounded
    total: float = 0.0
    n: int = 0
    last: Value | None = None
    peak: float | None = None
    people: PersonCounts | None = None  # person_count sources
    est: Any = None  # an estimator's window accumulator

    def held(self) -> int:
        """Pseudonyms this window holds right now."""
        held = self.distinct.held if self.distinct is not None else 0
        return held + (self.parts.present() if self.parts is not None else 0)

    def wipe(self) -> None:
        if self.distinct is not None:
            self.distinct.wipe()
        if self.parts is not None:
            self.parts.wipe()


@dataclass(frozen=True)
class AggregationRule:
    """How one kind of aggregation absorbs a value and what it publishes at the window's end:
    `close` when the source is not personal (the figure as measured), `protect` when it is
    (through the disclosure rules, in contributors)."""

    statistic: Statistic
    absorb: Callable[[_Window, Value, bytes | None], None]
    close: Callable[[_Window], Closed | None]
    protect: Callable[[_Window, Rule], Protected | None]


def _absorb_distinct(w: _Window, v: Value, who: bytes | None) -> None:
    if w.distinct is None or who is None:
        raise AssertionError("w.distinct is not None and who is not None")
    w.distinct.add(who)
    w.n += 1


def _absorb_event(w: _Window, v: Value, who: bytes | None) -> None:
    if v is False:
        return  # a truth field saying "no event" is not an event
    w.n += 1
    if w.parts is not None:
        w.parts.add(who, 1.0)


def _absorb_number(w: _Window, v: Value, who: bytes | None) -> None:
    x = _number(v)
    if x is not None:
        w.total += x
        w.n += 1
        if w.parts is not None:
            w.parts.add(who, x)


def _absorb_last(w: _Window, v: Value, who: bytes | None) -> None:
    w.last = v
    w.n += 1
    if w.parts is not None:
        w.parts.add(who, 1.0)


def _absorb_max(w: _Window, v: Value, who: bytes | None) -> None:
    x = _number(v)
    if x is not None:
        w.peak = x if w.peak is None else max(w.peak, x)
        w.n += 1
        if w.parts is not None:
            w.parts.add(who, 1.0)


def _close_distinct(w: _Window) -> Closed:
    if w.distinct is None:
        raise AssertionError("w.distinct is not None")
    return w.distinct.count(), ({"estimate": True} if w.distinct.is_estimate else {})


def _close_count(w: _Window) -> Closed:
    return w.n, {}


def _close_sum(w: _Window) -> Closed | None:
    return (round_result(w.total), {"samples": w.n}) if w.n else None


def _close_mean(w: _Window) -> Closed | None:
    return (round_result(w.total / w.n), {"samples": w.n}) if w.n else None


def _close_last(w: _Window) -> Closed | None:
    if w.last is None:
        return None
    return (round_result(w.last) if isinstance(w.last, float) else w.last), {}


def _close_increment(w: _Window) -> Closed | None:
    return (_whole(w.total), {"samples": w.n}) if w.n else None


def _close_max(w: _Window) -> Closed | None:
    return (_whole(w.peak), {}) if w.peak is not None else None


def _protect_distinct(w: _Window, rule: Rule) -> Protected:
    d = w.distinct
    if d is None:
        raise AssertionError("d is not None")
    return protect_count(d.count(), d.contributors(), d.cell_key(), rule, estimate=d.is_estimate)


def _protect_count(w: _Window, rule: Rule) -> Protected | None:
    p = w.parts
    if p is None:
        raise AssertionError("p is not None")
    if w.n == 0:
        return None
    return protect_count(w.n, p.present(), p.cell_key(), rule, estimate=p.is_estimate)


def _protect_sum(w: _Window, rule: Rule) -> Protected | None:
    p = w.parts
    if p is None:
        raise AssertionError("p is not None")
    if p.samples == 0:
        return None
    return protect_sum(p.total, p.contributors(), p.largest(), p.cell_key(), rule, estimate=p.is_estimate)


def _protect_mean(w: _Window, rule: Rule) -> Protected | None:
    p = w.parts
    if p is None:
        raise AssertionError("p is not None")
    if p.samples == 0:
        return None
    return protect_mean(p.total, p.contributors(), p.largest(), p.cell_key(), rule, estimate=p.is_estimate)


def _protect_single(value: Callable[[_Window], Value | None]) -> Callable[[_Window, Rule], Protected | None]:
    """LAST and MAX of a personal field are one person's value: `check` refuses them; anything
    that still comes this way needs min_count contributors behind the window."""

    def protect(w: _Window, rule: Rule) -> Protected | None:
        v = value(w)
        if v is None or w.parts is None:
            return None
        return protect_single(v, w.parts.present(), w.parts.cell_key(), rule)

    return protect


def _never(w: _Window, rule: Rule) -> Protected | None:
    return None


AGGREGATIONS: dict[Aggregation, AggregationRule] = {
    Aggregation.DISTINCT_COUNT: AggregationRule(Statistic.DISTINCT_COUNT, _absorb_distinct,
                                                _close_distinct, _protect_distinct),
    Aggregation.COUNT: AggregationRule(Statistic.COUNT, _absorb_event, _close_count, _protect_count),
    Aggregation.SUM: AggregationRule(Statistic.SUM, _absorb_number, _close_sum, _protect_sum),
    Aggregation.MEAN: AggregationRule(Statistic.MEAN, _absorb_number, _close_mean, _protect_mean),
    Aggregation.LAST: AggregationRule(Statistic.LAST, _absorb_last, _close_last,
                                      _protect_single(lambda w: w.last)),
    # the stage hands INCREMENT the steps of the running total (it keeps the previous value)
    Aggregation.INCREMENT: AggregationRule(Statistic.INCREMENT, _absorb_number, _close_increment, _never),
    Aggregation.MAX: AggregationRule(Statistic.MAX, _absorb_max, _close_max,
                                     _protect_single(lambda w: w.peak)),
}  # fmt: skip


def rule_of(sp: SensorPlan) -> Rule:
    """The disclosure rule of a sensor's personal aggregates (policy and threshold from config)."""
    return Rule(Policy(sp.disclosure), sp.min_count)


def contributors_of(f: Field, source: Field | None) -> tuple[str, str]:
    """Who the contributors behind an aggregate are: (a few words, one sentence), for the
    privacy report. Decided from the source's role, as the stage decides."""
    role = source.role if source is not None else Role.READING
    if f.estimator is not None or role is Role.IDENTIFIER:
        return "distinct devices", "Each device counts once per window, however often it is heard."
    if role is Role.PERSON_EVENT and f.aggregation in (Aggregation.SUM, Aggregation.MEAN):
        return "named sessions or people", (
            "Only parts the device attributes to a session or person (e.g. an OCPP transaction) "
            "count, each session once however many readings it sends; parts it does not attribute "
            "add to the figure but never towards the threshold (a device reporting one session's "
            "energy every few seconds is one person, not many).")  # fmt: skip
    if role is Role.PERSON_EVENT:
        return "sessions or people", ("A session the device names (e.g. an OCPP transaction) counts "
                                      "once however many readings it sends; an unnamed event counts as one.")  # fmt: skip
    if role is Role.RUNNING_TOTAL:
        if counts_events(source):
            return "events", ("Each step of the device's counter is one event (one person passing "
                              "twice counts twice: the device does not say who passed).")  # fmt: skip
        return "charging sessions", ("Each step of the register counts for the session the device "
                                     "names; steps it does not attribute never count towards the threshold.")  # fmt: skip
    if role is Role.PERSON_COUNT:
        return "devices at one moment", ("The device counts people itself; the largest count it "
                                         "reported in the window is the number behind the figure.")  # fmt: skip
    return "contributors", ""


def counts_events(source: Field | None) -> bool:
    """A running total of person events (crossings: a `{count}`), not a quantity register."""
    return source is not None and (
        source.observation_type is ObservationType.COUNT or (source.unit or "").startswith("{")
    )


class _Reading:
    """One reading on its way through the aggregates: its contributor, made once, so that every
    aggregate of the same event gives it the same record key (the same people, the same noise)."""

    __slots__ = ("_event", "_who", "now", "reading", "sp", "stage")

    def __init__(self, stage: PrivacyStage, sp: SensorPlan, reading: Reading, now: float) -> None:
        self.stage, self.sp, self.reading, self.now = stage, sp, reading, now
        self._who: bytes | bool | None = False  # False: not made yet
        self._event: bytes | bool | None = False

    def pseudonym(self, value: Value) -> bytes | None:
        return self.stage.keys.pseudonym(value, self.reading.time, self.now)

    def named(self) -> bytes | None:
        """The pseudonym of the first identifier the reading carries (a session, a device)."""
        if self._who is False:
            self._who = None
            for key in self.stage._identifiers[self.sp.id]:
                if key in self.reading.values:
                    self._who = self.pseudonym(self.reading.values[key])
                    break
        if isinstance(self._who, bool):
            raise AssertionError("not isinstance(self._who, bool)")
        return self._who

    def event(self) -> bytes | None:
        """This reading as one event of one person: a pseudonym no other reading gets."""
        if self._event is False:
            self.stage._events += 1
            self._event = self.pseudonym(f"\x1fevent\x1f{self.sp.id}\x1f{self.stage._events}")
        if isinstance(self._event, bool):
            raise AssertionError("not isinstance(self._event, bool)")
        return self._event


class _Aggregate:
    """One aggregate of one sensor with its open windows (non-personal source: as measured)."""

    def __init__(self, stage: PrivacyStage, sp: SensorPlan, f: Field) -> None:
        self.stage, self.sp, self.field = stage, sp, f
        self.source_key = f.source
        self.source = sp.catalogue.field(f.source) if f.source is not None else None
        self.table = AGGREGATIONS[f.aggregation]
        self.rule = rule_of(sp)
        self.windows: Windows[_Window] = Windows(sp.window_s, self._new, grace_s=sp.delay_s)
        self._steps = Steps()  # INCREMENT: the running total read as steps
        self._coarse = sp.residential and self.source is not None and is_evse_status(self.source.vocabulary)

    @property
    def personal(self) -> bool:
        return self.source is not None and self.source.personal

    def _new(self) -> _Window:
        w = _Window(partial=False)
        if self.field.aggregation is Aggregation.DISTINCT_COUNT:
            w.distinct = DistinctSet(self.sp.distinct_cap)
        return w

    def _open(self, r: _Reading) -> _Window | None:
        w = self.windows.at(r.reading.time)
        if w is None:
            self.stage._late(self.sp.id)
            return None
        w.partial = w.partial or self._began_before_start(self.windows.index(r.reading.time))
        w.flags.update(fl for fl in r.reading.flags if fl in INHERITED_FLAGS)
        return w

    def _began_before_start(self, index: int) -> bool:
        return index * self.sp.window_s < self.stage._started_at

    def absorb(self, r: _Reading, value: Value) -> None:
        if self._coarse and isinstance(value, str):
            value = residential_status(value)
        if (self.field.aggregation is Aggregation.LAST and isinstance(value, str)
                and not in_vocabulary(self.field, value)):  # fmt: skip
            self.stage.dropped[(self.sp.id, NOT_IN_VOCABULARY)] += 1  # `last` publishes the word itself
            return
        if self.field.aggregation is Aggregation.INCREMENT:
            x = _number(value)
            got = None if x is None else self._steps.step(x, r.reading.time)
            if got is None:
                return  # not a number, the baseline, or read back in time
            value = got[1]
        w = self._open(r)
        if w is None:
            return
        who = None
        if w.distinct is not None:
            who = hashlib.blake2b(str(value).lower().encode(), digest_size=16).digest()
        self.table.absorb(w, value, who)

    def result(self, w: _Window, index: int) -> Closed | None:
        """What a closed window publishes (its pseudonyms wiped on the way)."""
        closed = self.table.close(w)
        w.wipe()
        if closed is not None and closed[1].get("estimate"):
            self.stage.sketched[self.sp.id] += 1
        return closed

    def _emit(self, index: int, partial: bool, closed: Closed | None, now: float,
              end: float | None = None, flags: set[str] | None = None) -> list[Observation]:  # fmt: skip
        if closed is None:
            return []
        result, extra = closed
        start = index * self.sp.window_s
        stop = end if end is not None else start + self.sp.window_s
        params: dict[str, ParamValue] = {
            "aggregation": self.field.aggregation.value,
            "period": iso_duration(self.sp.window_s),
        }
        quality = set(flags or ()) | ({"partial_window"} if partial or end is not None else set())
        if quality:
            params["quality"] = ",".join(sorted(quality))
        params.update(extra)
        if params.get("suppressed"):
            self.stage.suppressed[self.sp.id] += 1
        ds = self.sp.datastreams[self.field.key]
        return [Observation(ds.id, self.sp.id, self.field.key, start, _result_time(now, stop), result,
                            stop, params)]  # fmt: skip

    def due(self, now: float) -> list[Observation]:
        out: list[Observation] = []
        for index, w in self.windows.due(now):
            flags = set(w.flags)
            out.extend(self._emit(index, w.partial, self.result(w, index), now, flags=flags))
        return out

    def drain(self, now: float) -> list[Observation]:
        out: list[Observation] = []
        for index, w in self.windows.drain():
            end = min(now, (index + 1) * self.sp.window_s)
            flags = set(w.flags)
            out.extend(self._emit(index, True, self.result(w, index), now, end, flags))
        return out

    def wipe(self, before: float | None) -> int:
        """Drop, unpublished, the open windows that began before `before` (all if None) and
        everything they hold; return how many. Non-personal windows hold nobody: kept."""
        if not self.personal:
            return 0
        below = None if before is None else math.floor(before / self.sp.window_s)
        gone = self.windows.discard(below)
        for _, w in gone:
            w.wipe()
        return len(gone)

    def held(self) -> int:
        """Pseudonyms held in RAM right now."""
        return sum(w.held() for w in self.windows.open_values())

    def open_windows(self) -> int:
        return len(self.windows)


class _Personal(_Aggregate):
    """An identifier or person-event source: every window through the disclosure rules."""

    def _new(self) -> _Window:
        w = super()._new()
        if w.distinct is None:
            w.parts = Contributions(self.sp.distinct_cap)
        return w

    def absorb(self, r: _Reading, value: Value) -> None:
        if self.source is None:
            raise AssertionError("self.source is not None")
        if r.stage.keys.key(r.reading.time, r.now) is None:
            self.stage._late(self.sp.id, r)  # its key epoch is over
            return
        who: bytes | None
        if self.source.role is Role.IDENTIFIER:
            who = r.pseudonym(value)
        elif self.table.statistic in (Statistic.SUM, Statistic.MEAN):
            # a part of a sum is someone's only if the reading names them: a device may report
            # one session's energy many times (every few seconds), and those parts are one
            # person, not many; unnamed parts add to the figure, never towards the threshold
            who = r.named()
        else:
            who = r.named() or r.event()  # a count: each unnamed event is one event
        w = self._open(r)
        if w is not None:
            self.table.absorb(w, value, who)

    def allowed(self) -> bool:
        if self.source is None:
            raise AssertionError("self.source is not None")
        return self.table.statistic in ROLE_STATISTICS[self.source.role.value]

    def result(self, w: _Window, index: int) -> Closed | None:
        if self.allowed():
            p = self.table.protect(w, self.rule)
        else:  # `check` refuses this; should a plan bring it anyway, nothing of it leaves
            p = _withheld(self.rule, "not_allowed") if w.n else None
        w.wipe()
        return self.stage._protected(self.sp.id, p)


class _Register(_Aggregate):
    """A running total (a crossing counter, an energy register): per-window increments only."""

    def __init__(self, stage: PrivacyStage, sp: SensorPlan, f: Field) -> None:
        super().__init__(stage, sp, f)
        self.events = counts_events(self.source)
        self.total = RunningTotal(sp.window_s, self.events, sp.distinct_cap)
        self._flags: dict[int, set[str]] = {}  # window index -> quality inherited from readings

    def absorb(self, r: _Reading, value: Value) -> None:
        x = _number(value)
        if x is None:
            return
        if self.stage.keys.key(r.reading.time, r.now) is None:
            self.stage._late(self.sp.id, r)  # its key epoch is over
            return
        late = self.total.late
        self.total.observe(x, r.reading.time, None if self.events else r.named())
        if self.total.late > late:
            self.stage._late(self.sp.id)
            return
        inherited = {fl for fl in r.reading.flags if fl in INHERITED_FLAGS}
        if inherited:
            self._flags.setdefault(self.windows.index(r.reading.time), set()).update(inherited)

    def _close(self, index: int, now: float, end: float | None = None) -> list[Observation]:
        key = self.stage.keys.live_key(self.stage.keys.epoch(index * self.sp.window_s))
        inc = self.total.close(index, key)
        flags = self._flags.pop(index, set())
        if inc is None:
            return []
        if key is None and self.events:  # no key left to make the events' cell key
            p = _withheld(self.rule, "no_key")
        else:
            p = inc.protect(self.rule, as_count=self.events)
        return self._emit(index, self._began_before_start(index), self.stage._protected(self.sp.id, p),
                          now, end, flags)  # fmt: skip

    def due(self, now: float) -> list[Observation]:
        out: list[Observation] = []
        for index in self.total.open_windows():
            if (index + 1) * self.sp.window_s + self.sp.delay_s <= now:
                out.extend(self._close(index, now))
        return out

    def drain(self, now: float) -> list[Observation]:
        out: list[Observation] = []
        for index in self.total.open_windows():
            out.extend(self._close(index, now, end=min(now, (index + 1) * self.sp.window_s)))
        return out

    def wipe(self, before: float | None) -> int:
        below = None if before is None else math.floor(before / self.sp.window_s)
        n = len([i for i in self.total.open_windows() if below is None or i < below])
        self.total.wipe(below)
        return n

    def held(self) -> int:
        return self.total.held()

    def open_windows(self) -> int:
        return len(self.total.open_windows())


class _People(_Aggregate):
    """Counts of people the device made itself: contributors are the largest count."""

    def _new(self) -> _Window:
        return _Window(partial=False, people=PersonCounts())

    def absorb(self, r: _Reading, value: Value) -> None:
        x = _number(value)
        if x is None:
            return
        if self.stage.keys.key(r.reading.time, r.now) is None:
            self.stage._late(self.sp.id, r)
            return
        w = self._open(r)
        if w is not None and w.people is not None:
            w.people.add(x)
            w.n += 1

    def result(self, w: _Window, index: int) -> Closed | None:
        people = w.people
        if people is None:
            raise AssertionError("people is not None")
        key = self.stage.keys.live_key(self.stage.keys.epoch(index * self.sp.window_s))
        p: Protected | None
        if self.table.statistic not in (Statistic.MAX, Statistic.MEAN):
            p = _withheld(self.rule, "not_allowed")
        elif key is None:
            p = _withheld(self.rule, "no_key")
        else:
            ck = opaque_cell_key(key, "counts", self.sp.id, self.field.key, index, people.peak, people.n,
                                 round(people.total, 6))  # fmt: skip
            p = people.protect(self.table.statistic, ck, self.rule)
        return self.stage._protected(self.sp.id, p)

    def held(self) -> int:
        return 0


class _Estimated(_Aggregate):
    """A named estimator (Wi-Fi footfall): one instance per key epoch, a window each."""

    def __init__(self, stage: PrivacyStage, sp: SensorPlan, f: Field) -> None:
        super().__init__(stage, sp, f)
        if f.estimator is None:
            raise AssertionError("f.estimator is not None")
        self.spec: EstimatorSpec = ESTIMATORS[f.estimator]  # the plan refused unknown names
        self.options = sp.estimator_options(f.key)
        self.methods: dict[int, Estimator] = {}  # key epoch -> the estimator's state under it

    @property
    def personal(self) -> bool:
        return True

    def _method(self, epoch: int) -> Estimator:
        m = self.methods.get(epoch)
        if m is None:
            m = self.methods[epoch] = self.spec.new(self.options, self.sp.distinct_cap)
        return m

    def absorb(self, r: _Reading, value: Value) -> None:
        p = r.pseudonym(value)
        if p is None:
            self.stage._late(self.sp.id, r)
            return
        w = self._open(r)
        if w is None:
            return
        m = self._method(self.stage.keys.epoch(r.reading.time))
        if w.est is None:
            w.est = m.open_window()
        w.n += 1
        inputs = {k: r.reading.values[k] for k in self.field.inputs if k in r.reading.values}
        m.observe(w.est, p, r.reading.time, value, inputs)

    def _epoch_of(self, index: int) -> int:
        return self.stage.keys.epoch(index * self.sp.window_s)

    def result(self, w: _Window, index: int) -> Closed | None:
        if w.est is None:
            return None
        m = self._method(self._epoch_of(index))
        e = m.close(w.est, self.stage._now)
        w.est = None
        return self.stage._protected(self.sp.id, protect_count(e.value, e.contributors, e.cell_key,
                                                                self.rule, estimate=e.sketched))  # fmt: skip

    def wipe(self, before: float | None) -> int:
        below = None if before is None else math.floor(before / self.sp.window_s)
        gone = self.windows.discard(below)
        for i, w in gone:
            if w.est is not None:
                self._method(self._epoch_of(i)).forget()
        ended = [e for e in self.methods if before is None or (e + 1) * self.stage.keys.rotation_s <= before]
        for e in ended:
            self.methods.pop(e).forget()
        return len(gone)

    def held(self) -> int:
        held = sum(m.tracked for m in self.methods.values())
        for i, w in self.windows.open_items():
            m = self.methods.get(self._epoch_of(i))
            if m is not None and w.est is not None:
                held += m.held(w.est)
        return held


def _fates(sp: SensorPlan) -> dict[str, Field | tuple[str, str]]:
    """Per decoded key: the field it leaves as, or the (sensor, reason) it is dropped for, or
    ("", "") when it leaves only as an aggregate (e.g. last per window in a zone)."""
    out: dict[str, Field | tuple[str, str]] = {}
    sources = {f.source for f in sp.aggregates}
    for f in sp.catalogue.fields:
        if f.derived:
            continue
        if f.personal:
            out[f.key] = (sp.id, "personal")
        elif f.key in sources:
            out[f.key] = ("", "")
        else:
            out[f.key] = (sp.id, "not_selected")
    for f in sp.published:
        declared = sp.catalogue.field(f.key)
        if f.personal or (declared is not None and declared.personal):
            continue  # fail closed: a plan that lists a personal field never makes it public
        out[f.key] = f
    return out


_INF = math.inf


def _shared_datastream(sp: SensorPlan, fates: dict[str, Field | tuple[str, str]]) -> bool:
    """Two published keys of the sensor on one Datastream (or one the plan does not know)."""
    ids = [ds.id if (ds := sp.datastreams.get(f.key)) is not None else None
           for f in fates.values() if isinstance(f, Field)]  # fmt: skip
    return None in ids or len(set(ids)) < len(ids)


def _withheld(rule: Rule, reason: str) -> Protected:
    return Protected(None, True, None, False, rule.policy, rule.threshold, reason)


def _aggregate(stage: PrivacyStage, sp: SensorPlan, f: Field) -> _Aggregate:
    if f.estimator is not None:
        return _Estimated(stage, sp, f)
    source = sp.catalogue.field(f.source) if f.source is not None else None
    if source is None or not source.personal:
        return _Aggregate(stage, sp, f)
    if source.role is Role.RUNNING_TOTAL and f.aggregation is Aggregation.INCREMENT:
        return _Register(stage, sp, f)
    if source.role is Role.PERSON_COUNT:
        return _People(stage, sp, f)
    return _Personal(stage, sp, f)


@dataclass(frozen=True)
class Holding:
    """What personal state the stage holds right now (for tests, metrics and the report)."""

    keys: int  # live pseudonym keys
    pseudonyms: int  # in open windows and tables kept across windows (dwell)
    windows: int  # open windows of personal aggregates


class PrivacyStage:
    def __init__(
        self,
        plan: SitePlan,
        *,
        key_factory: Callable[[], bytes],
        salt_rotation_s: float,
        started_at: float,
    ) -> None:
        self.plan = plan
        windowed = [sp for sp in plan.sensors.values() if personal_aggregates(sp)]
        problems = validate_rotation(salt_rotation_s, [sp.window_s for sp in windowed])
        grace = max((sp.delay_s for sp in windowed), default=0.0)
        if grace >= salt_rotation_s:
            problems.append("a publication delay must be shorter than the key rotation")
        if problems:
            raise ValueError("; ".join(problems))  # the plan refuses such a config first
        self.keys = EpochKeys(salt_rotation_s, key_factory, grace_s=grace, ahead_s=DEVICE_AHEAD_S)
        self._started_at = started_at
        self._now = started_at
        self._events = 0
        self.forced = 0
        self.dropped: Counter[tuple[str, str]] = Counter()  # (sensor, reason) -> count
        self.suppressed: Counter[str] = Counter()  # sensor -> windows published without number
        self.sketched: Counter[str] = Counter()  # sensor -> windows published as a sketch estimate
        self.late: Counter[str] = Counter()
        self._aggs: dict[str, list[_Aggregate]] = {
            sid: [_aggregate(self, sp, f) for f in sp.aggregates] for sid, sp in plan.sensors.items()
        }
        # per sensor and decoded key, fixed by the plan: the field it leaves as, or why it does not
        # ("" when it leaves only as an aggregate, e.g. last per window in a zone)
        self._fates = {sid: _fates(sp) for sid, sp in plan.sensors.items()}
        # per sensor and published key: (Datastream id, property, minimum, maximum), for the
        # usual value (a finite float) made into an Observation without `_observation`'s tests
        self._plain = {sid: {k: (sp.datastreams[f.key].id, f.key,
                                 -_INF if f.minimum is None else f.minimum, _INF if f.maximum is None else f.maximum)
                             for k, f in self._fates[sid].items() if isinstance(f, Field) and f.key in sp.datastreams}
                       for sid, sp in plan.sensors.items()}  # fmt: skip
        # sensors whose published keys can meet on one Datastream (`_one_per_datastream`): for the
        # others each key leaves at most once, on a Datastream of its own, so there is no check
        self._aliased = {sid for sid, fates in self._fates.items()
                         if _shared_datastream(plan.sensors[sid], fates)}  # fmt: skip
        self._identifiers = {sid: tuple(f.key for f in sp.catalogue.fields if f.role is Role.IDENTIFIER)
                             for sid, sp in plan.sensors.items()}  # fmt: skip

    @property
    def key_generation(self) -> int:
        """1 + the keys retired so far (on schedule or forced)."""
        return 1 + self.keys.rotations

    # ------------------------------------------------------------------ per reading

    def process(self, reading: Reading, now: float) -> list[Observation]:
        self._now = now
        sp = self.plan.sensors.get(reading.sensor_id)
        if sp is None:
            self.dropped[(reading.sensor_id, "unknown_sensor")] += 1
            return []
        if sp.suppressed:  # inside a `suppress` privacy zone: nothing of it leaves
            self.dropped[(sp.id, "privacy_zone")] += len(reading.values)
            return []
        out: list[Observation] = []
        quality = list(reading.flags)
        fates = self._fates[reading.sensor_id]
        plain = self._plain[reading.sensor_id]
        dropped = self.dropped
        t = reading.time
        rt = _result_time(now, t)
        flags = ",".join(sorted(set(quality))) if quality else ""
        for key, value in reading.values.items():
            p = plain.get(key)
            if p is not None and type(value) is float and -_INF < value < _INF and p[2] <= value <= p[3]:
                # the usual value: a finite float in its field's range, as `_observation` makes it
                # (tests/unit/test_one_reading_one_row.py holds the two paths equal)
                out.append(finite_observation(p[0], sp.id, p[1], t, rt, round_result(value),
                                              {"quality": flags} if flags else {}))  # fmt: skip
                continue
            f = fates.get(key)
            if f is None:
                dropped[(reading.sensor_id, "undeclared")] += 1
                continue
            if isinstance(f, tuple):
                if f[0]:
                    dropped[f] += 1
                continue
            obs = self._observation(sp, f, value, reading.time, now, quality)
            if obs is not None:
                out.append(obs)
        aggs = self._aggs[reading.sensor_id]
        if aggs:
            r = _Reading(self, sp, reading, now)
            values = reading.values
            for agg in aggs:
                src = agg.source_key
                if src is not None and src in values:
                    value = values[src]
                    number = _number(value)
                    if number is not None and agg.source is not None and out_of_range(agg.source, number):
                        self.dropped[(reading.sensor_id, "out_of_range")] += 1
                        continue
                    agg.absorb(r, value)
        return self._one_per_datastream(sp.id, out) if sp.id in self._aliased else out

    def _one_per_datastream(self, sensor: str, out: list[Observation]) -> list[Observation]:
        """One reading, at most one observation per Datastream: a second one
        (two aliased device keys mapped onto one property) would be a double write downstream."""
        if len(out) < 2:
            return out
        seen: set[int] = set()
        kept = []
        for obs in out:
            key = obs.datastream_id
            if key in seen:
                self.dropped[(sensor, "duplicate_datastream")] += 1
                continue
            seen.add(key)
            kept.append(obs)
        return kept

    def _observation(
        self, sp: SensorPlan, f: Field, value: Value, t: float, now: float, quality: list[str]
    ) -> Observation | None:
        ds = sp.datastreams[f.key]
        result: float | int | str | bool | None
        flags = list(quality)
        if isinstance(value, str) and not in_vocabulary(f, value):
            self.dropped[(sp.id, NOT_IN_VOCABULARY)] += 1
            return None
        if isinstance(value, bool | str):
            result = residential_status(value) if (
                sp.residential and isinstance(value, str) and is_evse_status(f.vocabulary)) else value  # fmt: skip
        elif isinstance(value, int | float):
            if isinstance(value, float) and not math.isfinite(value):
                self.dropped[(sp.id, "not_finite")] += 1
                return None
            result = round_result(value) if isinstance(value, float) else value
            if out_of_range(f, value):  # withheld: the reading is visible, the number is not
                self.dropped[(sp.id, "out_of_range")] += 1
                flags.append("out_of_range")
                result = None
        else:
            self.dropped[(sp.id, "wrong_type")] += 1
            return None
        params: dict[str, ParamValue] = {}
        if flags:
            params["quality"] = ",".join(sorted(set(flags)))
        return Observation(ds.id, sp.id, f.key, t, _result_time(now, t), result, None, params)

    def _late(self, sensor: str, r: _Reading | None = None) -> None:
        """A reading for a window already published, or whose key epoch is over (or not begun:
        a device clock far ahead): dropped and counted, never reopening anything."""
        self.late[sensor] += 1
        future = r is not None and r.reading.time > r.now + max(self.keys.grace_s, self.keys.ahead_s)
        self.dropped[(sensor, "future" if future else "late")] += 1

    def _protected(self, sensor: str, p: Protected | None) -> Closed | None:
        if p is None:
            return None
        if p.estimate and not p.suppressed:
            self.sketched[sensor] += 1
        result: Result = p.result
        if isinstance(result, float):
            result = round_result(result)
        return result, p.parameters()

    # ------------------------------------------------------------------ windows and keys

    def due(self, now: float) -> list[Observation]:
        """Close every window that has ended by `now` (plus its delay), then retire the key
        epochs that have ended, wiping what was made under them (call about once a second)."""
        self._now = now
        out: list[Observation] = []
        for aggs in self._aggs.values():
            for agg in aggs:
                out.extend(agg.due(now))
        retired = self.keys.advance(now)
        if retired:
            self._wipe(before=(max(retired) + 1) * self.keys.rotation_s, reason="rotated")
        return out

    def drain(self, now: float) -> list[Observation]:
        """On shutdown: publish open windows flagged partial rather than lose them, then zero
        every key."""
        self._now = now
        out: list[Observation] = []
        for aggs in self._aggs.values():
            for agg in aggs:
                out.extend(agg.drain(now))
        self._wipe(before=None, reason="rotated")
        self.keys.wipe_all()
        return out

    def force_rotate(self, now: float) -> None:
        """Zero every key now, off schedule (e.g. a key may have been exposed). Everything made
        under the old keys goes with them, open windows of personal data included (counted as
        dropped, reason `rotated`): their pseudonyms could not be matched under a new key."""
        self._now = now
        self._wipe(before=None, reason="rotated")
        self.keys.wipe_all()
        self.forced += 1

    def _wipe(self, before: float | None, reason: str) -> None:
        for sid, aggs in self._aggs.items():
            for agg in aggs:
                n = agg.wipe(before)
                if n:
                    self.dropped[(sid, reason)] += n

    def holding(self) -> Holding:
        aggs = [a for aggs in self._aggs.values() for a in aggs if a.personal]
        return Holding(len(self.keys.live), sum(a.held() for a in aggs),
                       sum(a.open_windows() for a in aggs))  # fmt: skip
