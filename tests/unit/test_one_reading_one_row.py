"""One reading, one row per Datastream, and a result never before its phenomenon.

For every registered driver (the registry, so a new driver is covered without being listed):
what its own simulator sends is decoded, stamped the way the sources stamp it (a burst of
messages read at once), and run through the privacy stage across several windows. Each reading
must yield at most one observation per Datastream, and no observation may have a phenomenonTime
(or the end of its window) after its resultTime.
"""

from __future__ import annotations

import random
from datetime import datetime

import pytest
import yaml

from firmware_bridge.base import Decoded, Event
from firmware_bridge.driver import MessageDriver, SerialDriver
from firmware_bridge.drivers import REGISTERED
from gateway.config import parse_config
from gateway.model import Observation, Reading
from gateway.plan import SitePlan, build_plan
from gateway.privacy.stage import PrivacyStage
from gateway.sources.stamp import DEVICE_CLOCK_AHEAD, Stamper
from tests.unit.stream_harness import exchange
from tests.unit.test_registry import base_options, valid_options

T0 = 1_795_000_000.0  # 2026-11-18


def plan_with_every_driver() -> SitePlan:
    sensors = []
    for d in REGISTERED:
        transport = d.transports[0]
        topic = (getattr(d, "default_topic", None) or "x/+").replace("+", d.name, 1)  # one per sensor
        section = {"port": f"/dev/{d.name}"} if transport == "serial" else {"topic": topic}
        sensors.append({"id": d.name, "driver": d.name, transport: section, "options": base_options(d)})
    doc = {"gateway": {"id": "g", "borough": "camden", "location": {"lat": 51.5, "lon": -0.1}},
           "privacy": {"window": "10s", "min_count": 3}, "inputs": {"mqtt": {}}, "sinks": {"file": {}},
           "sensors": sensors}  # fmt: skip
    return build_plan(parse_config(yaml.safe_dump(doc), "gw.yaml", {}))


def bursts(driver: SerialDriver | MessageDriver) -> list[tuple[float, list[Event]]]:
    """(when it is read, what the driver's simulator sent, decoded): one burst read at once.
    Message devices every 2 minutes over 2 hours (the chargers' simulated session cycle)."""
    rng = random.Random(7)
    options = valid_options(driver)
    if isinstance(driver, MessageDriver):
        decoder = driver.new_decoder(options)
        topic = (driver.default_topic or "x/+").replace("+", driver.name, 1)
        out = []
        for n in range(60):
            sent = T0 + 120 * n
            burst: list[Event] = []
            for t, payload in driver.simulate(rng, sent, topic):
                burst += decoder.decode(t, payload)
            out.append((sent + 0.05, burst))
        return out
    stream, poller = driver.session(options)
    device = driver.new_device(rng)
    events = exchange(device, poller, stream, start=100.0, step=0.1, steps=500)  # type: ignore[arg-type]
    return [(T0 + 3 * n, events[i : i + 5]) for n, i in enumerate(range(0, len(events), 5))]


def instants(obs: Observation) -> tuple[float, float]:
    return (obs.phenomenon_end if obs.phenomenon_end is not None else obs.phenomenon_time), obs.result_time


def parse(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize("driver", REGISTERED, ids=[d.name for d in REGISTERED])
def test_one_reading_yields_at_most_one_observation_per_datastream_never_before_its_phenomenon(
    driver: SerialDriver | MessageDriver,
) -> None:
    plan = plan_with_every_driver()
    stage = PrivacyStage(plan, key_factory=lambda: b"k" * 32, salt_rotation_s=86400, started_at=T0)
    stamper = Stamper()
    produced = 0
    now = T0
    for now, burst in bursts(driver):
        for ev in burst:
            if not isinstance(ev, Decoded):
                continue
            # as the sources do: one `now` for everything read at once
            reading = Reading(driver.name, stamper.stamp(driver.name, now, ev.device_time), ev.values, ev.flags)
            out = stage.process(reading, now)
            ids = [o.datastream_id for o in out]
            assert len(ids) == len(set(ids)), f"one reading wrote one Datastream twice: {sorted(o.property for o in out)}"
            for o in out:
                end, result = instants(o)
                assert end <= result, f"{o.property}: phenomenon {end} after result {result}"
                body = o.sensorthings()
                assert parse(str(body["phenomenonTime"]).split("/")[-1]) <= parse(str(body["resultTime"]))
            produced += len(out)
        for o in stage.due(now):  # windows close on schedule, not at the next window's first reading
            end, result = instants(o)
            assert end <= result
            produced += 1
    for o in stage.drain(now):
        end, result = instants(o)
        assert end <= result
        produced += 1
    assert produced > 0, "the simulator's readings produced no observation at all"


def test_a_burst_stamped_ahead_of_the_clock_still_has_its_result_after_its_phenomenon() -> None:
    """The cause seen in the demo: 14 OpenEVSE topics read in one go are stamped 1 ms apart to
    stay distinct, so the last lies 13 ms after the commit's `now`."""
    plan = plan_with_every_driver()
    stage = PrivacyStage(plan, key_factory=lambda: b"k" * 32, salt_rotation_s=86400, started_at=T0)
    stamper = Stamper()
    stamps = [stamper.stamp("pms5003", T0) for _ in range(14)]
    assert stamps[-1] > T0  # strictly increasing: pushed ahead of the clock
    for t in stamps:
        (obs, *_) = stage.process(Reading("pms5003", t, {"pm2_5": 7}), T0)
        assert obs.result_time >= obs.phenomenon_time == t


def test_a_device_clock_ahead_of_the_gateway_is_not_trusted_beyond_a_second() -> None:
    s = Stamper()
    assert s.stamp("a", 1000.0, device_time=1000.0 + DEVICE_CLOCK_AHEAD) == 1000.0 + DEVICE_CLOCK_AHEAD
    assert s.stamp("a", 1000.0, device_time=1030.0) == 1000.0  # 30 s in the future: our clock
    assert s.stamp("b", 1000.0, device_time=800.0) == 800.0  # behind, within 5 min: kept (replays overwrite)


def test_the_stage_drops_a_second_observation_of_one_datastream_from_one_reading() -> None:
    plan = plan_with_every_driver()
    stage = PrivacyStage(plan, key_factory=lambda: b"k" * 32, salt_rotation_s=86400, started_at=T0)
    ds = plan.sensors["pms5003"].datastreams["pm2_5"].id
    twice = [Observation(ds, "pms5003", "pm2_5", T0, T0, 1), Observation(ds, "pms5003", "pm2_5", T0, T0, 2)]
    assert stage._one_per_datastream("pms5003", twice) == twice[:1]
    assert stage.dropped[("pms5003", "duplicate_datastream")] == 1


def test_no_reading_of_any_driver_gives_two_observations_of_one_datastream() -> None:
    """The stage checks for a second observation of a Datastream only for sensors whose plan
    lets two keys meet on one (issue 19: the check per reading cost a set per reading). Every
    key of every driver, at once, still leaves at most once per Datastream."""
    plan = plan_with_every_driver()
    stage = PrivacyStage(plan, key_factory=lambda: b"k" * 32, salt_rotation_s=86400, started_at=T0)
    for sid, sp in plan.sensors.items():
        values = {f.key: (f.vocabulary and sorted(f.vocabulary)[0]) or 1 for f in sp.catalogue.fields}
        out = stage.process(Reading(sid, T0, values), T0 + 1)  # type: ignore[arg-type]
        ids = [o.datastream_id for o in out]
        assert len(ids) == len(set(ids)), sid
        assert stage.dropped[(sid, "duplicate_datastream")] == 0, sid


def test_the_stages_path_for_the_usual_value_makes_what_the_general_path_makes() -> None:
    """The privacy stage makes a finite float in its field's range into its Observation from a
    per-key table (`_plain`), without `_observation`'s tests. For every published key of every
    driver, and values around and beyond each field's range (±0, the bounds, NaN, infinities,
    ints, bools), with and without reading flags, the Observations are those of the general path."""
    plan = plan_with_every_driver()
    fast = PrivacyStage(plan, key_factory=lambda: b"k" * 32, salt_rotation_s=86400, started_at=T0)
    general = PrivacyStage(plan, key_factory=lambda: b"k" * 32, salt_rotation_s=86400, started_at=T0)
    general._plain = {sid: {} for sid in general._plain}  # every value through _observation
    rng = random.Random(19)
    checked = 0
    for sid, table in fast._plain.items():
        fields = {f.key: f for f in plan.sensors[sid].catalogue.fields}
        for key in table:
            f = fields[key]
            lo = -1e6 if f.minimum is None else f.minimum
            hi = 1e6 if f.maximum is None else f.maximum
            values: list[object] = [0.0, -0.0, lo, hi, lo - 0.5, hi + 0.5, (lo + hi) / 2, 1e-5, -1e-5,
                                    float("nan"), float("inf"), float("-inf"), 3, True,
                                    *(rng.uniform(lo - 1, hi + 1) for _ in range(20))]  # fmt: skip
            for value in values:
                for flags in ((), ("clock_unsynced",), ("warming_up", "clock_unsynced")):
                    reading = Reading(sid, T0 + checked * 0.001, {key: value}, flags)  # type: ignore[dict-item]
                    assert fast.process(reading, T0 + 1) == general.process(reading, T0 + 1), (sid, key, value)
                    checked += 1
    assert checked > 1000
    assert fast.dropped == general.dropped
