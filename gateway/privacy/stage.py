"""The privacy stage: the only road from `Reading` (may be personal) to `Observation` (cannot be).

Pure: time comes in as `now`, the pseudonym key from an injected factory (os.urandom in the
shell). Default deny: a field leaves only if its driver's catalogue declares it non-personal and
the sensor's policy selects it; personal fields feed windowed aggregates and are forgotten. A
text value leaves only if it is a word of its field's declared vocabulary.

Physical ranges are enforced here, where every Observation is made and the catalogue is at
hand, so every sink gets the same answer: a number outside its field's `minimum`/`maximum` is
withheld (result null, quality `out_of_range`, counted as `out_of_range`), never published as a
number, and never absorbed into an aggregate. One absurd value would otherwise reach the store
(`1e300` W flattens its neighbours in VictoriaMetrics) and every consumer.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from firmware_bridge.base import Aggregation, Field, Value
from gateway.model import Observation, ParamValue, Reading, iso_duration
from gateway.plan import SensorPlan, SitePlan
from gateway.privacy.estimators import ESTIMATORS, Estimator

ALLOWED_PARAMETERS = frozenset(
    {"quality", "aggregation", "period", "samples", "suppressed", "min_count", "window"}
)
Result = float | int | str | bool | None
# reading flags an aggregate carries on if any reading in its window had them
INHERITED_FLAGS = frozenset({"clock_unsynced"})


NOT_IN_VOCABULARY = "not_in_vocabulary"


def in_vocabulary(f: Field, text: str) -> bool:
    """Default deny for free text: a word leaves only if the field's catalogue (or the config's
    `allowed:` list) declares it. A field that declares no vocabulary lets no text out: a name,
    a plate or a message typed into a device's status field must not reach open data."""
    return f.vocabulary is not None and text in f.vocabulary


def round_result(v: float) -> float:
    """Round to 4 decimals: sensors are not more precise, and long digit runs look like ids."""
    r = round(v, 4)
    return 0.0 if r == 0 else r


def out_of_range(f: Field, value: float) -> bool:
    return (f.minimum is not None and value < f.minimum) or (f.maximum is not None and value > f.maximum)


def _number(value: Value) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


@dataclass
class _Window:
    """One open window of one aggregate: what every aggregation needs, in RAM only."""

    index: int  # floor(time / window_s)
    partial: bool  # window began before this process started (a crash lost part of it)
    pseudonyms: set[bytes] = field(default_factory=set)
    total: float = 0.0
    n: int = 0
    last: Value | None = None
    peak: float | None = None
    flags: set[str] = field(default_factory=set)  # quality inherited from the readings in it


@dataclass(frozen=True)
class AggregationRule:
    """How one kind of aggregation absorbs a value and what it publishes at the window's end.
    `counts_people`: the result is a count of contributors, so small values are suppressed."""

    absorb: Callable[[_Window, Value, bytes | None], None]
    close: Callable[[_Window], tuple[Result, dict[str, ParamValue]] | None]
    counts_people: bool = False
    needs_pseudonym: bool = False


def _absorb_distinct(w: _Window, v: Value, pseudonym: bytes | None) -> None:
    assert pseudonym is not None
    w.pseudonyms.add(pseudonym)


def _absorb_number(w: _Window, v: Value, pseudonym: bytes | None) -> None:
    x = _number(v)
    if x is not None:
        w.total += x
        w.n += 1


def _absorb_event(w: _Window, v: Value, pseudonym: bytes | None) -> None:
    w.n += 1


def _absorb_last(w: _Window, v: Value, pseudonym: bytes | None) -> None:
    w.last = v
    w.n += 1


def _absorb_increment(w: _Window, v: Value, pseudonym: bytes | None) -> None:
    """Sum of the steps of a running total; a step down is a reset (counter wrapped, device
    rebooted), after which the new value counts from zero."""
    x = _number(v)
    if x is None:
        return
    if isinstance(w.last, int | float) and not isinstance(w.last, bool):
        w.total += x - w.last if x >= w.last else x
        w.n += 1
    w.last = x


def _absorb_max(w: _Window, v: Value, pseudonym: bytes | None) -> None:
    x = _number(v)
    if x is not None:
        w.peak = x if w.peak is None else max(w.peak, x)
        w.n += 1


def _close_increment(w: _Window) -> tuple[Result, dict[str, ParamValue]] | None:
    if w.n == 0:
        return None
    total = round_result(w.total)
    return (int(total) if float(total).is_integer() else total), {"samples": w.n}


def _close_max(w: _Window) -> tuple[Result, dict[str, ParamValue]] | None:
    if w.peak is None:
        return None
    return (int(w.peak) if w.peak.is_integer() else round_result(w.peak)), {}


def _close_distinct(w: _Window) -> tuple[Result, dict[str, ParamValue]]:
    n = len(w.pseudonyms)
    w.pseudonyms.clear()
    return n, {}


def _close_sum(w: _Window) -> tuple[Result, dict[str, ParamValue]]:
    return round_result(w.total), {"samples": w.n}


def _close_mean(w: _Window) -> tuple[Result, dict[str, ParamValue]] | None:
    if w.n == 0:
        return None
    return round_result(w.total / w.n), {"samples": w.n}


def _close_count(w: _Window) -> tuple[Result, dict[str, ParamValue]]:
    return w.n, {}


def _close_last(w: _Window) -> tuple[Result, dict[str, ParamValue]] | None:
    if w.last is None:
        return None
    return (round_result(w.last) if isinstance(w.last, float) else w.last), {}


AGGREGATIONS: dict[Aggregation, AggregationRule] = {
    Aggregation.DISTINCT_COUNT: AggregationRule(_absorb_distinct, _close_distinct,
                                                counts_people=True, needs_pseudonym=True),
    Aggregation.SUM: AggregationRule(_absorb_number, _close_sum),
    Aggregation.MEAN: AggregationRule(_absorb_number, _close_mean),
    Aggregation.COUNT: AggregationRule(_absorb_event, _close_count, counts_people=True),
    Aggregation.LAST: AggregationRule(_absorb_last, _close_last),
    Aggregation.INCREMENT: AggregationRule(_absorb_increment, _close_increment),
    Aggregation.MAX: AggregationRule(_absorb_max, _close_max),
}  # fmt: skip


@dataclass
class _Aggregator:
    sensor: SensorPlan
    field: Field
    rule: AggregationRule
    window: _Window | None = None
    estimator: Estimator | None = None  # a named method from the catalogue (e.g. footfall)


def _aggregator(sp: SensorPlan, f: Field) -> _Aggregator:
    rule = AGGREGATIONS[f.aggregation]
    if f.estimator is not None:
        spec = ESTIMATORS[f.estimator]  # the plan refused unknown names
        return _Aggregator(sp, f, rule, estimator=spec.new(sp.estimator_options(f.key)))
    return _Aggregator(sp, f, rule)


def _result_time(now: float, phenomenon_end: float) -> float:
    """A result exists only once its phenomenon has happened: resultTime is never before the
    (end of the) phenomenonTime. Stamps can lie a few milliseconds ahead of `now` (the sources
    keep them strictly increasing per sensor, so a burst of messages read at once is pushed
    forward) or a device clock within its tolerance ahead of ours."""
    return max(now, phenomenon_end)


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
        self._new_key = key_factory
        self._rotation = salt_rotation_s
        self._key = key_factory()
        self._key_expires = started_at + salt_rotation_s
        self._started_at = started_at
        self.key_generation = 1
        self.dropped: Counter[tuple[str, str]] = Counter()  # (sensor, reason) -> count
        self.suppressed: Counter[str] = Counter()  # sensor -> windows published without number
        self.late: Counter[str] = Counter()
        self._aggs: dict[str, list[_Aggregator]] = {
            sid: [_aggregator(sp, f) for f in sp.aggregates] for sid, sp in plan.sensors.items()
        }
        # per sensor, fixed by the plan: computed once, not for every reading
        self._published = {sid: {f.key: f for f in sp.published} for sid, sp in plan.sensors.items()}
        self._sources = {sid: {f.source for f in sp.aggregates} for sid, sp in plan.sensors.items()}

    # ------------------------------------------------------------------ per reading

    def process(self, reading: Reading, now: float) -> list[Observation]:
        sp = self.plan.sensors.get(reading.sensor_id)
        if sp is None:
            self.dropped[(reading.sensor_id, "unknown_sensor")] += 1
            return []
        if sp.suppressed:  # inside a `suppress` privacy zone: nothing of it leaves
            self.dropped[(sp.id, "privacy_zone")] += len(reading.values)
            return []
        out: list[Observation] = []
        quality = list(reading.flags)
        published = self._published[sp.id]
        sources = self._sources[sp.id]
        for key, value in reading.values.items():
            f = published.get(key)
            if f is None:
                declared = sp.catalogue.field(key)
                if declared is not None and not declared.personal and key in sources:
                    continue  # leaves as an aggregate (e.g. last per window in a zone)
                reason = ("personal" if declared.personal else "not_selected") if declared else "undeclared"
                self.dropped[(sp.id, reason)] += 1
                continue
            obs = self._observation(sp, f, value, reading.time, now, quality)
            if obs is not None:
                out.append(obs)
        for agg in self._aggs[sp.id]:
            out.extend(self._absorb(agg, reading, now))
        return self._one_per_datastream(sp.id, out)

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
            result = value
        elif isinstance(value, int | float):
            if isinstance(value, float) and not math.isfinite(value):
                self.dropped[(sp.id, "not_finite")] += 1
                return None
            result = round_result(value) if isinstance(value, float) else value
            if out_of_range(f, value):  # withheld: the window is visible, the number is not
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

    # ------------------------------------------------------------------ windows

    def _absorb(self, agg: _Aggregator, reading: Reading, now: float) -> list[Observation]:
        src = agg.field.source
        if src is None or src not in reading.values:
            return []
        out: list[Observation] = []
        index = math.floor(reading.time / agg.sensor.window_s)
        w = agg.window
        if w is not None and index > w.index:
            out.extend(self._close(agg, now))
            w = None
        if w is not None and index < w.index:
            self.late[agg.sensor.id] += 1  # a reading for a window already published
            return out
        if w is None:
            partial = index * agg.sensor.window_s < self._started_at
            w = agg.window = _Window(index, partial)
        value = reading.values[src]
        if agg.field.aggregation is Aggregation.LAST and isinstance(value, str) and not in_vocabulary(agg.field, value):
            self.dropped[(agg.sensor.id, NOT_IN_VOCABULARY)] += 1  # `last` publishes the word itself
            return out
        source = agg.sensor.catalogue.field(src)
        number = _number(value)
        if source is not None and number is not None and out_of_range(source, number):
            self.dropped[(agg.sensor.id, "out_of_range")] += 1
            return out
        w.flags.update(fl for fl in reading.flags if fl in INHERITED_FLAGS)
        if agg.estimator is not None:
            inputs = {k: reading.values[k] for k in agg.field.inputs if k in reading.values}
            agg.estimator.observe(self._pseudonym(value), reading.time, value, inputs)
        else:
            agg.rule.absorb(w, value, self._pseudonym(value) if agg.rule.needs_pseudonym else None)
        return out

    def _pseudonym(self, value: Value) -> bytes:
        """Keyed hash in RAM only; exists to de-duplicate within a window, then forgotten."""
        return hmac.new(self._key, str(value).lower().encode(), hashlib.sha256).digest()[:16]

    def due(self, now: float) -> list[Observation]:
        """Close every window that has ended by `now` (call about once a second)."""
        out: list[Observation] = []
        for aggs in self._aggs.values():
            for agg in aggs:
                w = agg.window
                if w is not None and (w.index + 1) * agg.sensor.window_s + agg.sensor.delay_s <= now:
                    out.extend(self._close(agg, now))
        self._maybe_rotate(now)
        return out

    def drain(self, now: float) -> list[Observation]:
        """On shutdown: publish open windows flagged partial rather than lose them."""
        out: list[Observation] = []
        for aggs in self._aggs.values():
            for agg in aggs:
                if agg.window is not None:
                    agg.window.partial = True
                    out.extend(self._close(agg, now, end=min(now, (agg.window.index + 1) * agg.sensor.window_s)))
        return out

    def _holds_pseudonyms(self) -> bool:
        for aggs in self._aggs.values():
            for a in aggs:
                if a.window is not None and a.window.pseudonyms:
                    return True
                if a.estimator is not None and a.estimator.holds_pseudonyms:
                    return True
        return False

    def _maybe_rotate(self, now: float) -> None:
        if now < self._key_expires:
            return
        if self._holds_pseudonyms():
            return  # rotate between windows, so de-duplication inside a window stays exact
        self.force_rotate(now)

    def force_rotate(self, now: float) -> None:
        """New key now. Pseudonyms kept across windows (the footfall dwell tables) are made
        under the old key and are forgotten with it: a long dweller counts anew for dwell_max."""
        self._key = self._new_key()
        self._key_expires = now + self._rotation
        self.key_generation += 1
        for aggs in self._aggs.values():
            for a in aggs:
                if a.estimator is not None:
                    a.estimator.forget()

    def _close(self, agg: _Aggregator, now: float, end: float | None = None) -> list[Observation]:
        w = agg.window
        agg.window = None
        if w is None:
            return []
        sp, f = agg.sensor, agg.field
        start = w.index * sp.window_s
        stop = end if end is not None else start + sp.window_s
        params: dict[str, ParamValue] = {
            "aggregation": f.aggregation.value,
            "period": iso_duration(sp.window_s),
        }
        quality = set(w.flags) | ({"partial_window"} if w.partial else set())
        if quality:
            params["quality"] = ",".join(sorted(quality))
        result: Result
        contributors: int | None = None  # devices actually heard, when the result is an estimate
        if agg.estimator is not None:
            estimate = agg.estimator.close(now)
            result, contributors = estimate.value, estimate.contributors
        else:
            closed = agg.rule.close(w)
            if closed is None:
                return []
            result, extra = closed
            params.update(extra)
        if agg.rule.counts_people:
            assert isinstance(result, int)
            if min(result, result if contributors is None else contributors) < sp.min_count:
                self.suppressed[sp.id] += 1
                params["suppressed"] = True
                params["min_count"] = sp.min_count
                result = None
        ds = sp.datastreams[f.key]
        return [Observation(ds.id, sp.id, f.key, start, _result_time(now, stop), result, stop, params)]
