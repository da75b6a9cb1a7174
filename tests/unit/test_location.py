"""Location coarsening (grid, street segment) and privacy zones applied by the plan."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.base import Aggregation
from gateway.config import parse_config
from gateway.model import Reading
from gateway.plan import PlanError, build_plan
from gateway.privacy.location import distance_m, in_zone, snap_to_grid, snap_to_segment
from gateway.privacy.stage import PrivacyStage

SITE = (-0.1426, 51.5390)
STREET = [(-0.1440, 51.5385), (-0.1410, 51.5395)]  # ~230 m of street


@given(st.floats(-179, 179), st.floats(-80, 80), st.sampled_from([50.0, 100.0, 500.0]))
def test_grid_snap_moves_at_most_half_a_cell_diagonal(lon: float, lat: float, grid: float) -> None:
    out = snap_to_grid(lon, lat, grid)
    assert distance_m((lon, lat), out) <= grid * 0.72
    assert snap_to_grid(*out, grid) == out  # the cell centre is its own cell


def test_grid_snap_agrees_with_the_published_thing_location() -> None:
    from gateway.standards.sensorthings import location

    plan = build_plan(parse_config(
        "gateway: {id: gw, borough: camden, location: {lat: 51.5390, lon: -0.1426}}\n"
        "privacy: {location_grid_m: 100}\nsinks: {file: {}}\n", "t.yaml", {}))
    body = location(plan)
    assert tuple(body["location"]["coordinates"]) == snap_to_grid(*SITE, 100)  # type: ignore[index]


def test_segment_snap_lands_on_the_street_in_grid_bins() -> None:
    a = snap_to_segment(*SITE, STREET, 50)
    b = snap_to_segment(SITE[0] + 0.00005, SITE[1], STREET, 50)  # 3 m along: same bin
    assert a == b
    assert distance_m(STREET[0], a) % 50 == pytest.approx(25, abs=0.5)
    mid = snap_to_segment(*SITE, STREET, 50, midpoint=True)
    assert distance_m(mid, STREET[0]) == pytest.approx(distance_m(mid, STREET[1]), rel=1e-3)
    assert snap_to_segment(*SITE, STREET, 10_000) == mid  # grid longer than the street


def test_zone_membership_includes_the_boundary() -> None:
    square = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]
    assert in_zone(0.5, 0.5, square) and in_zone(1.0, 0.5, square) and not in_zone(1.5, 0.5, square)


BASE = """
gateway: {id: t-gw, borough: camden, location: {lat: 51.539, lon: -0.1426}}
sensors:
  - {id: footfall-1, driver: wifi_probe_sniffer, mqtt: {topic: footfall/+/probes}}
  - {id: bay-3, driver: openevse, mqtt: {topic: openevse/bay3/+}}
inputs: {mqtt: {host: 127.0.0.1}}
sinks: {file: {path: o.jsonl}}
"""
AROUND = "[[-0.15, 51.53], [-0.13, 51.53], [-0.13, 51.55], [-0.15, 51.55]]"
ELSEWHERE = "[[0.0, 51.0], [0.1, 51.0], [0.1, 51.1]]"


def plan_with(privacy: str):  # type: ignore[no-untyped-def]
    return build_plan(parse_config(BASE + f"privacy: {privacy}\n", env={}))


def test_suppress_zone_withholds_a_sensor_entirely() -> None:
    p = plan_with(f"{{zones: [{{name: home, polygon: {AROUND}, action: suppress, sensors: [bay-3]}}]}}")
    bay, foot = p.sensors["bay-3"], p.sensors["footfall-1"]
    assert bay.suppressed and bay.datastreams == {} and bay.zones == ("home",)
    assert not foot.suppressed and "footfall" in foot.datastreams
    s = PrivacyStage(p, key_factory=lambda: b"k" * 32, salt_rotation_s=3600, started_at=0)
    assert s.process(Reading("bay-3", 1, {"status": "CHARGING", "power": 7000.0}), 1) == []
    assert s.dropped[("bay-3", "privacy_zone")] == 2
    assert p.location is not None  # the zone names sensors: the site location still publishes


def test_coarsen_zone_only_ever_makes_things_more_private() -> None:
    p = plan_with(f"{{window: 15m, min_count: 10, zones: [{{name: resi, polygon: {AROUND}, action: coarsen, "
                  "grid_m: 500, window: 1h, min_count: 5, delay: 30m}]}")  # fmt: skip
    sp = p.sensors["footfall-1"]
    assert (sp.window_s, sp.min_count, sp.delay_s) == (3600, 10, 1800)
    assert p.location_grid_m == 500 and p.location == snap_to_grid(-0.1426, 51.539, 500)


def test_zone_elsewhere_has_no_effect() -> None:
    p = plan_with(f"{{zones: [{{name: far, polygon: {ELSEWHERE}, action: suppress}}]}}")
    assert not any(sp.suppressed or sp.zones for sp in p.sensors.values())


def test_site_wide_suppress_zone_withholds_the_location() -> None:
    p = plan_with(f"{{zones: [{{name: all, polygon: {AROUND}, action: suppress}}]}}")
    assert p.location is None and all(sp.suppressed for sp in p.sensors.values())


def test_last_per_window_turns_bay_status_into_a_windowed_aggregate() -> None:
    p = plan_with(f"{{window: 1h, zones: [{{name: bay, polygon: {AROUND}, action: coarsen, "
                  "last_per_window: true, sensors: [bay-3]}]}")  # fmt: skip
    bay = p.sensors["bay-3"]
    assert bay.published == ()
    status = next(f for f in bay.aggregates if f.key == "status")
    assert status.aggregation is Aggregation.LAST and bay.datastreams["status"].aggregation == "last"
    s = PrivacyStage(p, key_factory=lambda: b"k" * 32, salt_rotation_s=86400, started_at=0)
    assert s.process(Reading("bay-3", 10, {"status": "CHARGING"}), 10) == []
    s.process(Reading("bay-3", 20, {"status": "AVAILABLE"}), 20)
    out = [o for o in s.due(3600) if o.property == "status"]
    assert [(o.result, o.phenomenon_time, o.phenomenon_end) for o in out] == [("AVAILABLE", 0, 3600)]
    assert s.dropped[("bay-3", "not_selected")] == 0


def test_street_segment_publishes_a_point_on_the_street() -> None:
    seg = "[[-0.1440, 51.5385], [-0.1410, 51.5395]]"
    p = plan_with(f"{{location_grid_m: 50, street_segment: {seg}, street_segment_publish: midpoint}}")
    assert p.location == snap_to_segment(-0.1426, 51.539, STREET, 50, midpoint=True)


def test_invalid_zone_polygon_is_a_config_problem_with_its_line() -> None:
    bow = "[[0, 0], [1, 1], [1, 0], [0, 1]]"  # edges cross
    with pytest.raises(PlanError) as e:
        plan_with(f"{{zones: [{{name: bad, polygon: {bow}, action: suppress, sensors: [nope]}}]}}")
    text = str(e.value)
    assert "privacy.zones[0].polygon" in text and "not a simple area" in text
