"""The privacy stage: default deny per reading, and every aggregate of personal data through the
disclosure rules in contributors (issue 12), with keys that rotate on schedule."""

from __future__ import annotations

import itertools

from firmware_bridge.base import Aggregation, Catalogue, Field, ObservationType, Role
from firmware_bridge.drivers import generic_json
from firmware_bridge.options import NoOptions
from gateway.config import SensorBase
from gateway.model import Datastream, Observation, Reading
from gateway.ops.metrics import Registry
from gateway.ops.pipeline_metrics import PipelineMetrics
from gateway.plan import SensorPlan, SitePlan
from gateway.privacy.guard import PARAMETER_KEYS, EgressGuard
from gateway.privacy.stage import ALLOWED_PARAMETERS, PrivacyStage
from gateway.sources.mqtt import MqttTopic

C, N = ObservationType.CATEGORY, ObservationType.COUNT
CAT = Catalogue(
    driver="probe", make="test", model="t", description="", transport="mqtt",
    fields=(
        Field("mac", None, ObservationType.OBSERVATION, role=Role.IDENTIFIER),
        Field("rssi", "dB[mW]", role=Role.CONTEXT),
        Field("temperature", "Cel", maximum=60),
        Field("footfall", "{devices}", N, aggregation=Aggregation.DISTINCT_COUNT, source="mac"),
        Field("energy", "kW.h", aggregation=Aggregation.SUM, source="session_energy"),
        Field("session_energy", "kW.h", role=Role.PERSON_EVENT),
        Field("session", None, C, role=Role.IDENTIFIER),
        Field("session_start", None, ObservationType.TRUTH, role=Role.PERSON_EVENT),
        Field("sessions", "{count}", N, aggregation=Aggregation.COUNT, source="session_start"),
        Field("crossings_total", "{count}", N, role=Role.RUNNING_TOTAL),
        Field("crossings", "{count}", N, aggregation=Aggregation.INCREMENT, source="crossings_total"),
        Field("register", "kW.h", role=Role.RUNNING_TOTAL),
        Field("metered", "kW.h", aggregation=Aggregation.INCREMENT, source="register"),
        Field("pax", "{count}", N, role=Role.PERSON_COUNT),
        Field("pax_max", "{count}", N, aggregation=Aggregation.MAX, source="pax"),
    ),
)  # fmt: skip
PUBLISHED = ("temperature",)
AGGREGATES = ("footfall", "energy", "sessions", "crossings", "metered", "pax_max")


def plan(min_count: int = 3, window: float = 60, disclosure: str = "suppress", delay: float = 0.0,
         cap: int = 10_000) -> SitePlan:  # fmt: skip
    sensor = SensorBase.model_construct(id="s1", driver="probe")
    published = tuple(f for f in CAT.fields if f.key in PUBLISHED)
    aggs = tuple(f for f in CAT.fields if f.key in AGGREGATES)
    ds = {f.key: Datastream.build("g", "s1", f.key, f.unit, f.observation_type) for f in (*published, *aggs)}
    withheld = tuple(f for f in CAT.fields if f.personal)
    sp = SensorPlan(sensor, generic_json.DRIVER, NoOptions(), "mqtt", MqttTopic(topic="x"), CAT,
                    published, aggs, withheld, ds, window, min_count, delay,
                    disclosure=disclosure, distinct_cap=cap)  # fmt: skip
    return SitePlan("g", 1, {"s1": sp})


def stage(p: SitePlan, started: float = 0.0, rotation: float = 3600) -> PrivacyStage:
    n = itertools.count()
    return PrivacyStage(p, key_factory=lambda: bytes([next(n) % 256]) * 32, salt_rotation_s=rotation,
                        started_at=started)  # fmt: skip


def feed(s: PrivacyStage, t: float, **values: object) -> list[Observation]:
    return s.process(Reading("s1", t, values), t)  # type: ignore[arg-type]


def by_property(obs: list[Observation]) -> dict[str, Observation]:
    return {o.property: o for o in obs}


def test_personal_fields_never_become_observations() -> None:
    s = stage(plan())
    out = feed(s, 10.0, mac="3c:22:fb:12:34:56", rssi=-60, temperature=21.5)
    assert [(o.property, o.result) for o in out] == [("temperature", 21.5)]
    assert s.dropped[("s1", "personal")] == 2


def test_undeclared_fields_are_dropped_by_default() -> None:
    s = stage(plan())
    assert feed(s, 10.0, plate="AB12CDE") == []
    assert s.dropped[("s1", "undeclared")] == 1


def test_distinct_devices_counted_per_window_and_small_counts_suppressed() -> None:
    s = stage(plan(min_count=3))
    for t, mac in [(1, "aa"), (2, "bb"), (3, "aa"), (4, "cc"), (5, "CC")]:
        feed(s, float(t), mac=mac)
    assert s.due(59.0) == []
    (o,) = s.due(60.0)
    assert o.property == "footfall" and o.result == 3
    assert (o.phenomenon_time, o.phenomenon_end) == (0.0, 60.0)
    assert o.parameters == {"aggregation": "distinct_count", "period": "PT1M", "disclosure": "suppress"}
    feed(s, 61.0, mac="aa")
    (o2,) = s.due(120.0)
    assert o2.result is None and o2.parameters["suppressed"] is True and o2.parameters["min_count"] == 3
    assert s.suppressed["s1"] == 1


def test_one_charging_session_leaves_nothing_beside_its_suppressed_count() -> None:
    """The issue's first attack: `sessions_started: null` next to that session's energy."""
    for policy in ("suppress", "ten_five", "cell_key"):
        s = stage(plan(disclosure=policy))
        feed(s, 5.0, session_start=True)
        feed(s, 50.0, session_energy=12.3, session="tx-5531")
        out = by_property(s.due(60.0))
        assert set(out) == {"sessions", "energy"}
        for o in out.values():
            assert o.result is None and o.parameters["suppressed"] is True, (policy, o)
            assert "samples" not in o.parameters and o.parameters["disclosure"] == policy


def test_a_sum_needs_min_count_sessions_not_readings() -> None:
    s = stage(plan(min_count=3))
    for i in range(6):  # one session reported six times: one contributor
        feed(s, 1.0 + i, session_energy=2.0, session="tx-1")
    (o,) = s.due(60.0)
    assert o.property == "energy" and o.result is None and o.parameters["suppressed"] is True
    for i, (tx, e) in enumerate([("tx-2", 3.0), ("tx-3", 3.0), ("tx-4", 2.0), ("tx-4", 2.0)]):
        feed(s, 61.0 + i, session_energy=e, session=tx)  # three sessions, none over half
    (o,) = s.due(120.0)
    assert o.result == 10.0 and o.parameters["samples"] == 3  # samples: sessions, not readings


def test_parts_of_a_sum_count_only_for_the_sessions_the_readings_name() -> None:
    """A device reporting one session's energy every few seconds (OpenEVSE's energy since the
    last report) must not pass for many people: unnamed parts never count towards the threshold."""
    s = stage(plan(min_count=3))
    for i in range(30):
        feed(s, 1.0 + i, session_energy=0.05)
    (o,) = s.due(60.0)
    assert o.property == "energy" and o.result is None and o.parameters["suppressed"] is True


def test_samples_and_sums_leave_protected_under_the_cell_key_policy() -> None:
    s = stage(plan(min_count=3, disclosure="cell_key"))
    parts = [1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0]
    for i, e in enumerate(parts):
        feed(s, 1.0 + i, session_energy=e, session=f"tx-{i}")
    (o,) = s.due(60.0)
    assert isinstance(o.result, float) and o.parameters["disclosure"] == "cell_key"
    assert abs(o.result - sum(parts)) <= 0.2 * max(parts)  # magnitude noise: ±20 % of the largest
    samples = o.parameters["samples"]
    assert isinstance(samples, int) and abs(samples - len(parts)) <= 3  # the ptable's noise: ±3


def test_out_of_range_readings_are_flagged() -> None:
    s = stage(plan())
    (hot,) = feed(s, 3.0, temperature=75.0)
    assert hot.parameters["quality"] == "out_of_range"


def test_a_crossing_total_leaves_only_as_window_increments() -> None:
    """The issue's second attack: 41, 42, 43 with millisecond times are single people."""
    s = stage(plan(min_count=3))
    out: list[Observation] = []
    for i, total in enumerate([40, 41, 42, 43, 43, 44]):  # baseline 40, then 4 crossings
        out += feed(s, 1.0 + i * 5, crossings_total=total)
    for i, total in enumerate([45, 46]):  # two crossings in the next window
        out += feed(s, 61.0 + i, crossings_total=total)
    out += s.due(60.0) + s.due(120.0)
    assert not any(o.property == "crossings_total" for o in out)
    crossings = [o for o in out if o.property == "crossings"]
    assert [o.result for o in crossings] == [4, None]
    assert crossings[0].parameters["aggregation"] == "increment"
    assert crossings[1].parameters["suppressed"] is True


def test_register_steps_count_only_for_the_sessions_the_device_names() -> None:
    s = stage(plan(min_count=3))
    feed(s, 0.0, register=1000.0)
    for i in range(3):  # steps with no session named: one bay's energy, never published
        feed(s, 10.0 + i, register=1001.0 + i)
    (o,) = s.due(60.0)
    assert o.property == "metered" and o.result is None and o.parameters["suppressed"] is True
    for i, tx in enumerate(["a", "b", "c", "a"]):  # steps 1, 2, 2, 2 from 1003
        feed(s, 70.0 + i, register=1004.0 + 2 * i, session=tx)
    (o,) = s.due(120.0)
    assert o.result == 7.0 and o.parameters["samples"] == 3


def test_counts_made_by_the_device_need_min_count_people_at_once() -> None:
    s = stage(plan(min_count=3))
    for i, n in enumerate([1, 2, 1]):  # Paxcounter `wifi: 1` is one person
        feed(s, 1.0 + i, pax=n)
    for i, n in enumerate([4, 7, 5]):
        feed(s, 61.0 + i, pax=n)
    out = s.due(60.0) + s.due(120.0)
    assert [o.result for o in out] == [None, 7]


def test_first_window_after_a_restart_is_flagged_partial() -> None:
    s = stage(plan(min_count=3), started=30.0)
    for mac in ("aa", "bb", "cc"):
        feed(s, 31.0, mac=mac)
    (o,) = s.due(60.0)
    assert o.parameters["quality"] == "partial_window" and o.result == 3


def test_key_rotates_on_schedule_while_windows_hold_pseudonyms() -> None:
    """The issue's third attack: rotation used to wait for a moment with no pseudonym in RAM,
    which never comes on a busy street."""
    s = stage(plan(min_count=3, window=60))
    for t in range(3000, 3700):  # a device every second, across the hour
        feed(s, float(t), mac=f"02:00:00:00:{t // 256 % 256:02x}:{t % 256:02x}")
        if t % 10 == 0:
            s.due(float(t))
        if t == 3599:
            assert s.key_generation == 1 and s.holding().pseudonyms > 0
        if t == 3600:
            assert s.key_generation == 2  # rotated although the new window holds pseudonyms
    assert s.keys.live == (1,)


def test_a_reading_of_a_retired_epoch_is_dropped_and_counted() -> None:
    s = stage(plan(min_count=3, window=60))
    feed(s, 3590.0, mac="aa")
    s.due(3601.0)
    assert s.process(Reading("s1", 3595.0, {"mac": "bb"}), 3602.0) == []  # its key is gone
    assert s.late["s1"] == 1 and s.dropped[("s1", "late")] == 1


def test_a_delay_keeps_the_window_open_until_its_end_plus_the_delay() -> None:
    s = stage(plan(min_count=3, window=60, delay=30))
    for mac in ("aa", "bb", "cc"):
        feed(s, 10.0, mac=mac)
    feed(s, 61.0, mac="dd")  # the next window's first reading does not close this one
    assert s.due(60.0) == [] and s.due(89.0) == []
    feed(s, 59.5, mac="ee")  # and a late reading inside the delay still counts
    (o,) = s.due(90.0)
    assert o.result == 4 and o.phenomenon_end == 60.0


def test_a_flood_past_the_cap_is_published_as_an_estimate_and_counted() -> None:
    s = stage(plan(min_count=3, cap=100))
    for i in range(2000):
        feed(s, i / 40, mac=f"02:00:00:00:{i // 256:02x}:{i % 256:02x}")
    assert s.holding().pseudonyms == 0  # folded into the fixed-size sketch
    (o,) = s.due(60.0)
    assert o.parameters["estimate"] is True and isinstance(o.result, int)
    assert abs(o.result - 2000) < 2000 * 0.05  # HyperLogLog, p = 14: standard error 0.81 %
    assert s.sketched["s1"] == 1


def test_force_rotate_wipes_every_key_and_open_personal_window() -> None:
    s = stage(plan(min_count=3))
    for mac in ("aa", "bb", "cc"):
        feed(s, 10.0, mac=mac)
    feed(s, 11.0, temperature=20.0)
    s.force_rotate(12.0)
    assert s.keys.live == () and s.holding().pseudonyms == 0 and s.dropped[("s1", "rotated")] == 1
    assert s.due(60.0) == []  # the wiped window publishes nothing


def test_the_guard_allows_exactly_the_parameters_the_stage_writes() -> None:
    assert ALLOWED_PARAMETERS == PARAMETER_KEYS >= {"disclosure", "estimate", "suppressed", "samples"}


def test_metrics_show_sketched_windows_rotations_and_pseudonyms_held() -> None:
    s = stage(plan(min_count=3, cap=100))
    registry = Registry()
    PipelineMetrics(registry, EgressGuard(), s, lambda: 0.0)
    for i in range(500):
        feed(s, i / 10, mac=f"02:00:00:00:{i // 256:02x}:{i % 256:02x}", temperature=20.0)
    s.due(60.0)
    feed(s, 61.0, mac="aa")
    text = registry.render()
    assert 'gateway_privacy_sketch_windows_total{sensor="s1"} 1' in text
    assert "gateway_privacy_pseudonyms_held 1" in text
    s.due(3600.0)
    text = registry.render()
    assert "gateway_privacy_key_rotations_total 1" in text and "gateway_privacy_pseudonyms_held 0" in text


def test_repr_of_a_reading_shows_no_values() -> None:
    r = Reading("s1", 1.0, {"mac": "3c:22:fb:12:34:56"})
    assert "3c:22" not in repr(r)
