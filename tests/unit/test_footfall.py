"""The Wi-Fi footfall method: threshold, de-duplication, dweller removal, randomised MACs."""

from __future__ import annotations

import itertools

import pytest

from gateway.config import parse_config
from gateway.model import Reading
from gateway.plan import build_plan
from gateway.privacy.footfall import FootfallEstimator, FootfallOptions, is_locally_administered
from gateway.privacy.stage import PrivacyStage

GLOBAL = "3c:22:fb:12:34:56"
RANDOM = "3e:22:fb:12:34:56"  # locally administered bit set


def est(**kw: float) -> FootfallEstimator:
    return FootfallEstimator(FootfallOptions(**kw))  # type: ignore[arg-type]


def test_locally_administered_bit_marks_randomised_macs() -> None:
    assert is_locally_administered(RANDOM) and is_locally_administered("DA-00-00-00-00-01")
    assert not is_locally_administered(GLOBAL)
    assert not is_locally_administered("aa")  # not a MAC: an ordinary device


def test_probes_weaker_than_threshold_are_ignored_and_duplicates_counted_once() -> None:
    e = est()
    assert e.observe(b"a", 1, -60, False)
    assert e.observe(b"a", 2, -50, False)
    assert not e.observe(b"b", 3, -72, False)
    assert e.observe(b"c", 4, None, False)  # no signal strength: counted
    c = e.close(60)
    assert (c.estimate, c.distinct, c.weak, c.probes) == (2, 2, 1, 4)
    assert not e.holds_pseudonyms


def test_long_dwellers_are_removed_from_later_windows() -> None:
    e = est(dwell_max_s=1800)
    for w in range(4):  # a shop worker's phone every minute, 15-minute windows
        for t in range(w * 900, (w + 1) * 900, 60):
            e.observe(b"staff", t, -65, False)
        e.observe(f"passer{w}".encode(), w * 900 + 5, -60, False)
        c = e.close((w + 1) * 900)
        dweller = w >= 2  # seen across more than 30 min from the third window on
        assert c.estimate == (1 if dweller else 2) and c.dwellers == int(dweller)


def test_weak_probes_still_extend_dwell_time() -> None:
    e = est(dwell_max_s=600)
    e.observe(b"staff", 0, -80, False)
    e.observe(b"staff", 700, -65, False)
    assert e.close(900).estimate == 0


def test_absent_devices_are_forgotten_after_dwell_max() -> None:
    e = est(dwell_max_s=600)
    e.observe(b"x", 0, -60, False)
    e.close(60)
    assert e.tracked == 1
    e.observe(b"y", 1000, -60, False)
    e.close(1000)
    assert e.tracked == 1  # x gone: absent for longer than dwell_max
    e.observe(b"x", 1010, -60, False)
    assert e.close(1060).estimate == 1  # counts anew, not as a dweller


def test_randomised_macs_are_scaled_by_the_factor() -> None:
    e = est(randomised_factor=0.5)
    for i in range(10):
        e.observe(f"r{i}".encode(), i, -60, True)
    for i in range(4):
        e.observe(f"g{i}".encode(), i, -60, False)
    c = e.close(60)
    assert (c.estimate, c.distinct, c.fixed, c.randomised) == (9, 14, 4, 10)


def test_dwell_table_is_bounded_and_forgotten() -> None:
    e = est(max_tracked=100)
    for i in range(250):
        e.observe(i.to_bytes(4, "big"), i, -60, False)
    assert e.tracked == 100
    e.close(300)
    e.forget()
    assert e.tracked == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [({"rssi_min_dbm": 5}, "rssi_min_dbm"), ({"dwell_max": "soon"}, "dwell_max"),
     ({"randomised_factor": 2}, "randomised_factor"), ({"max_tracked": True}, "max_tracked")],
)  # fmt: skip
def test_bad_options_name_the_key(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FootfallOptions.from_mapping(options)


def test_options_parse_durations_and_keep_the_base() -> None:
    base = FootfallOptions(rssi_min_dbm=-80)
    o = FootfallOptions.from_mapping({"dwell_max": "45m"}, base)
    assert (o.dwell_max_s, o.rssi_min_dbm) == (2700, -80)


# ---------------------------------------------------------------- in the privacy stage

CFG = """
gateway: {id: t-gw, borough: camden, location: {lat: 51.539, lon: -0.1426}}
sensors:
  - {id: footfall-1, driver: wifi_probe_sniffer, mqtt: {topic: footfall/+/probes}}
inputs: {mqtt: {host: 127.0.0.1}}
privacy: {window: 1m, min_count: 3, footfall: {rssi_min_dbm: -70, dwell_max: 2m, randomised_factor: 0.5}}
sinks: {file: {path: o.jsonl}}
"""


def wifi_stage() -> PrivacyStage:
    keys = itertools.count(1)
    plan = build_plan(parse_config(CFG, env={}))
    return PrivacyStage(plan, key_factory=lambda: bytes([next(keys)]) * 32, salt_rotation_s=3600, started_at=0)


def probe(t: float, mac: str, rssi: int) -> Reading:
    return Reading("footfall-1", t, {"mac": mac, "rssi": rssi, "randomised": is_locally_administered(mac), "ch": 6})


def mac(i: int, randomised: bool = False) -> str:
    return f"{'3e' if randomised else '3c'}:00:00:00:00:{i:02x}"


def test_plan_carries_the_site_footfall_settings() -> None:
    sp = build_plan(parse_config(CFG, env={})).sensors["footfall-1"]
    assert sp.estimator_options("footfall") == FootfallOptions(-70, 120, 0.5)


def test_stage_publishes_the_estimate_not_the_raw_distinct_count() -> None:
    s = wifi_stage()
    for i in range(4):
        s.process(probe(1 + i, mac(i), -60), 5)
    for i in range(4):
        s.process(probe(10 + i, mac(i, True), -60), 15)
    s.process(probe(20, mac(99), -90), 20)  # too far away
    (o,) = s.due(60)
    assert o.property == "footfall" and o.result == 6  # 4 + 0.5 * 4
    assert s.dropped[("footfall-1", "personal")] == 4 * 9


def test_small_counts_are_suppressed_on_devices_heard_not_only_the_estimate() -> None:
    s = wifi_stage()
    for i in range(2):
        s.process(probe(1 + i, mac(i), -60), 5)
    (o,) = s.due(60)
    assert o.result is None and o.parameters["suppressed"] is True and o.parameters["min_count"] == 3


def test_key_rotation_forgets_the_dwell_table() -> None:
    s = wifi_stage()
    for t in range(0, 600, 30):  # a resident heard for 10 minutes, plus passers-by each minute
        s.process(probe(t, mac(1), -60), t)
        s.process(probe(t, mac(100 + t // 30), -60), t)
        s.process(probe(t + 1, mac(200 + t // 30), -60), t)
        s.process(probe(t + 2, mac(300 + t // 30), -60), t)
    s.due(600)
    assert s.holding().pseudonyms > 0  # the dwell table, across windows
    generation = s.key_generation
    s.due(3600)
    assert s.key_generation == generation + 1 and s.holding() == type(s.holding())(0, 0, 0)
