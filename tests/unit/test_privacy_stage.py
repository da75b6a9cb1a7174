from __future__ import annotations

import itertools

from firmware_bridge.base import Aggregation, Catalogue, Field, ObservationType, Role
from firmware_bridge.drivers import generic_json
from firmware_bridge.options import NoOptions
from gateway.config import SensorBase
from gateway.model import Datastream, Reading
from gateway.plan import SensorPlan, SitePlan
from gateway.privacy.stage import PrivacyStage
from gateway.sources.mqtt import MqttTopic

CAT = Catalogue(
    driver="probe", make="test", model="t", description="", transport="mqtt",
    fields=(
        Field("mac", None, ObservationType.OBSERVATION, role=Role.IDENTIFIER),
        Field("rssi", "dB[mW]", role=Role.CONTEXT),
        Field("temperature", "Cel", maximum=60),
        Field("footfall", "{devices}", ObservationType.COUNT, aggregation=Aggregation.DISTINCT_COUNT, source="mac"),
        Field("energy", "kW.h", aggregation=Aggregation.SUM, source="session_energy"),
        Field("session_energy", "kW.h", role=Role.PERSON_EVENT),
    ),
)  # fmt: skip


def plan(min_count: int = 3, window: float = 60) -> SitePlan:
    sensor = SensorBase.model_construct(id="s1", driver="probe")
    published = (CAT.fields[2],)
    aggs = (CAT.fields[3], CAT.fields[4])
    ds = {f.key: Datastream.build("g", "s1", f.key, f.unit, f.observation_type) for f in (*published, *aggs)}
    sp = SensorPlan(sensor, generic_json.DRIVER, NoOptions(), "mqtt", MqttTopic(topic="x"), CAT,
                    published, aggs, (CAT.fields[0], CAT.fields[1], CAT.fields[5]),
                    ds, window, min_count, 0.0)  # fmt: skip
    return SitePlan("g", 1, {"s1": sp})


def keys() -> itertools.count[int]:
    return itertools.count()


def stage(p: SitePlan, started: float = 0.0) -> PrivacyStage:
    n = keys()
    return PrivacyStage(p, key_factory=lambda: bytes([next(n)]) * 32, salt_rotation_s=3600, started_at=started)


def test_personal_fields_never_become_observations() -> None:
    s = stage(plan())
    out = s.process(Reading("s1", 10.0, {"mac": "3c:22:fb:12:34:56", "rssi": -60, "temperature": 21.5}), 10.0)
    assert [(o.property, o.result) for o in out] == [("temperature", 21.5)]
    assert s.dropped[("s1", "personal")] == 2


def test_undeclared_fields_are_dropped_by_default() -> None:
    s = stage(plan())
    assert s.process(Reading("s1", 10.0, {"plate": "AB12CDE"}), 10.0) == []
    assert s.dropped[("s1", "undeclared")] == 1


def test_distinct_devices_counted_per_window_and_small_counts_suppressed() -> None:
    s = stage(plan(min_count=3))
    for t, mac in [(1, "aa"), (2, "bb"), (3, "aa"), (4, "cc"), (5, "CC")]:
        s.process(Reading("s1", float(t), {"mac": mac}), float(t))
    assert s.due(59.0) == []
    (o,) = s.due(60.0)
    assert o.property == "footfall" and o.result == 3
    assert (o.phenomenon_time, o.phenomenon_end) == (0.0, 60.0)
    assert o.parameters["aggregation"] == "distinct_count" and o.parameters["period"] == "PT1M"
    s.process(Reading("s1", 61.0, {"mac": "aa"}), 61.0)
    (o2,) = s.due(120.0)
    assert o2.result is None and o2.parameters["suppressed"] is True and o2.parameters["min_count"] == 3


def test_sum_aggregate_and_out_of_range_flag() -> None:
    s = stage(plan())
    s.process(Reading("s1", 1.0, {"session_energy": 1.25}), 1.0)
    s.process(Reading("s1", 2.0, {"session_energy": 2.5}), 2.0)
    hot = s.process(Reading("s1", 3.0, {"temperature": 75.0}), 3.0)
    assert hot[0].parameters["quality"] == "out_of_range"
    (o,) = s.due(60.0)
    assert o.property == "energy" and o.result == 3.75 and o.parameters["samples"] == 2


def test_first_window_after_a_restart_is_flagged_partial() -> None:
    s = stage(plan(min_count=1), started=30.0)
    s.process(Reading("s1", 31.0, {"mac": "aa"}), 31.0)
    (o,) = s.due(60.0)
    assert o.parameters["quality"] == "partial_window"


def test_key_rotates_only_between_windows() -> None:
    s = stage(plan(min_count=1, window=60))
    s.process(Reading("s1", 3599.0, {"mac": "aa"}), 3599.0)
    s.due(3601.0)  # window [3540, 3600) closes, then rotation is allowed
    assert s.key_generation == 2


def test_repr_of_a_reading_shows_no_values() -> None:
    r = Reading("s1", 1.0, {"mac": "3c:22:fb:12:34:56"})
    assert "3c:22" not in repr(r)
