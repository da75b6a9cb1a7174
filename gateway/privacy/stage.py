"""The privacy stage: the only road from `Reading` (may be personal) to `Observation` (cannot be).

Pure: time comes in as `now`, the pseudonym key from an injected factory (os.urandom in the
shell). Default deny: a field leaves only if its driver's catalogue declares it non-personal and
the sensor's policy selects it; personal fields feed windowed aggregates and are forgotten.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from firmware_bridge.base import Aggregation, Field, Value
from gateway.model import Observation, ParamValue, Reading
from gateway.plan import SensorPlan, SitePlan
from gateway.privacy.footfall import FootfallEstimator, is_locally_administered

ALLOWED_PARAMETERS = frozenset(
    {"quality", "aggregation", "period", "samples", "suppressed", "min_count", "window"}
)


def iso_period(seconds: float) -> str:
    """ISO 8601 duration for a window length, e.g. 900 -> PT15M."""
    s = int(seconds)
    if s % 3600 == 0:
        return f"PT{s // 3600}H"
    if s % 60 == 0:
        return f"PT{s // 60}M"
    return f"PT{s}S"


def round_result(v: float) -> float:
    """Round to 4 decimals: sensors are not more precise, and long digit runs look like ids."""
    r = round(v, 4)
    return 0.0 if r == 0 else r


@dataclass
class _Window:
    index: int  # floor(time / window_s)
    partial: bool  # window began before this process started (a crash lost part of it)
    pseudonyms: set[bytes] = field(default_factory=set)
    total: float = 0.0
    n: int = 0
    last: Value | None = None


@dataclass
class _Aggregator:
    sensor: SensorPlan
    field: Field
    window: _Window | None = None
    footfall: FootfallEstimator | None = None  # distinct counts of MACs: the footfall method


def _aggregator(sp: SensorPlan, f: Field) -> _Aggregator:
    if f.aggregation is Aggregation.DISTINCT_COUNT and sp.footfall is not None:
        return _Aggregator(sp, f, footfall=FootfallEstimator(sp.footfall))  # the plan chose it
    return _Aggregator(sp, f)


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
        return out

    def _observation(
        self, sp: SensorPlan, f: Field, value: Value, t: float, now: float, quality: list[str]
    ) -> Observation | None:
        ds = sp.datastreams[f.key]
        result: float | int | str | bool
        flags = list(quality)
        if isinstance(value, bool | str):
            result = value
        elif isinstance(value, int | float):
            if isinstance(value, float) and not math.isfinite(value):
                self.dropped[(sp.id, "not_finite")] += 1
                return None
            result = round_result(value) if isinstance(value, float) else value
            if (f.minimum is not None and value < f.minimum) or (
                f.maximum is not None and value > f.maximum
            ):
                flags.append("out_of_range")
        else:
            self.dropped[(sp.id, "wrong_type")] += 1
            return None
        params: dict[str, ParamValue] = {}
        if flags:
            params["quality"] = ",".join(sorted(set(flags)))
        return Observation(ds.id, sp.id, f.key, t, now, result, None, params)

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
        kind = agg.field.aggregation
        if kind is Aggregation.DISTINCT_COUNT and agg.footfall is not None:
            rssi = reading.values.get("rssi")
            flag = reading.values.get("randomised")
            agg.footfall.observe(
                self._pseudonym(value),
                reading.time,
                float(rssi) if isinstance(rssi, int | float) and not isinstance(rssi, bool) else None,
                flag if isinstance(flag, bool) else is_locally_administered(str(value)),
            )
        elif kind is Aggregation.DISTINCT_COUNT:
            w.pseudonyms.add(self._pseudonym(value))
        elif kind in (Aggregation.SUM, Aggregation.MEAN):
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                w.total += value
                w.n += 1
        elif kind is Aggregation.COUNT:
            w.n += 1
        elif kind is Aggregation.LAST:
            w.last = value
            w.n += 1
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
                if a.footfall is not None and a.footfall.holds_pseudonyms:
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
                if a.footfall is not None:
                    a.footfall.forget()

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
            "period": iso_period(sp.window_s),
        }
        if w.partial:
            params["quality"] = "partial_window"
        result: float | int | str | bool | None
        kind = f.aggregation
        distinct: int | None = None  # devices actually heard, when the result is an estimate
        if kind is Aggregation.DISTINCT_COUNT and agg.footfall is not None:
            count = agg.footfall.close(now)
            result, distinct = count.estimate, count.distinct
        elif kind is Aggregation.DISTINCT_COUNT:
            result = len(w.pseudonyms)
            w.pseudonyms.clear()
        elif kind is Aggregation.COUNT:
            result = w.n
        elif kind is Aggregation.SUM:
            result = round_result(w.total)
            params["samples"] = w.n
        elif kind is Aggregation.MEAN:
            if w.n == 0:
                return []
            result = round_result(w.total / w.n)
            params["samples"] = w.n
        else:
            if w.last is None:
                return []
            result = round_result(w.last) if isinstance(w.last, float) else w.last
        if kind in (Aggregation.DISTINCT_COUNT, Aggregation.COUNT):
            assert isinstance(result, int)
            if min(result, result if distinct is None else distinct) < sp.min_count:
                self.suppressed[sp.id] += 1
                params["suppressed"] = True
                params["min_count"] = sp.min_count
                result = None
        ds = sp.datastreams[f.key]
        return [Observation(ds.id, sp.id, f.key, start, now, result, stop, params)]
