"""Every published location comes from the plan, and address-level keys stay off public outputs.

The plan is the one place that coarsens the site (grid, street segment, privacy zones) and
withholds it (a `suppress` zone: only its 1 km square is shown). Every output (SensorThings
entities, DCAT and CKAN catalogue records, NGSI-LD entities, the privacy report) must show
`SitePlan.shown_location` and nothing else: a module that computed its own position from the
config could skip a zone. UPRN and USRN appear only when the site opts in.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest

from gateway.config import parse_config
from gateway.model import Observation
from gateway.plan import build_plan
from gateway.privacy.report import render
from gateway.standards.catalogue import ckan_package, dcat_catalogue
from gateway.standards.formats import encode
from gateway.standards.sensorthings import entity_messages

ROOT = Path(__file__).parents[2]
LAT, LON = 51.538917, -0.142613  # the exact site: never published
ZONE = "[[-0.15, 51.53], [-0.13, 51.53], [-0.13, 51.55], [-0.15, 51.55]]"
SITE = f"""
gateway: {{id: camden-lc-0423, borough: camden, usrn: "20500123", uprn: "5045394",
          location: {{lat: {LAT}, lon: {LON}}}%s}}
sensors:
  - {{id: pm-north, driver: pms5003, serial: {{port: /dev/null}}}}
  - {{id: pax-1, driver: paxcounter, mqtt: {{topic: pax/1}}}}
inputs: {{mqtt: {{host: 127.0.0.1}}}}
privacy: {{location_grid_m: 100%s}}
sinks:
  file: {{path: o.jsonl}}
  influxdb: {{url: 'https://tsdb.example.london', org: o, bucket: b}}
  mqtt: {{host: broker.example.london}}
"""
CASES = {
    "grid": "",
    "coarsen zone": f", zones: [{{name: estate, polygon: {ZONE}, action: coarsen, grid_m: 500}}]",
    "suppress zone": f", zones: [{{name: refuge, polygon: {ZONE}, action: suppress}}]",
    "street segment": ", street_segment: [[-0.1440, 51.5385], [-0.1410, 51.5395]]",
}


def outputs(opt_in: str = "", privacy: str = "") -> tuple[Any, dict[str, Any]]:
    cfg = parse_config(SITE % (opt_in, privacy), "site.yaml", {})
    plan = build_plan(cfg)
    pm = plan.sensors["pm-north"].datastreams
    observations = [Observation(pm["pm2_5"].id, "pm-north", "pm2_5", 1.79e9, 1.79e9, 7.5)] if pm else []
    items = [(o, json.dumps(o.sensorthings()).encode()) for o in observations]
    _, report = render(cfg, plan, generated_at=1.79e9, source="site.yaml")
    return plan, {
        "sensorthings": entity_messages(plan),
        "dcat": dcat_catalogue(cfg, plan),
        "ckan": ckan_package(cfg, plan),
        **{f"feed {fmt}": [json.loads(m.payload) for m in encode(fmt, plan, items)]
           for fmt in ("sensorthings", "senml", "ngsi-ld")},
        "privacy report": report,
    }


NUMBER = re.compile(r"-?\d+\.\d+")
BBOX = re.compile(r'"dcat:bbox": \{"@value": "POLYGON\(\(([^)]*)\)\)"')  # the shown cell's square


def coordinates(text: str) -> set[float]:
    """Every decimal in the text that could be a latitude or longitude near the site."""
    found = {float(n) for n in NUMBER.findall(text)}
    return {x for x in found if abs(x - LAT) < 0.05 or abs(x - LON) < 0.05}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_output_shows_the_plans_location_and_no_other(case: str) -> None:
    plan, out = outputs(privacy=CASES[case])
    assert plan.shown_location is not None
    lon, lat = plan.shown_location
    assert (lon, lat) != (LON, LAT)
    if case == "suppress zone":
        assert plan.location is None and plan.shown_grid_m == 1000
    if case == "coarsen zone":
        assert plan.shown_grid_m == 500
    if case != "suppress zone":
        assert any(body.get("location") for body in out["feed ngsi-ld"]), "the NGSI-LD entity shows the site"
    bbox = BBOX.search(json.dumps(out["dcat"]))
    assert bbox is not None
    corners = {float(x) for x in NUMBER.findall(bbox.group(1))}
    width_m = (max(c for c in corners if abs(c - LAT) < 0.05) - min(c for c in corners if abs(c - LAT) < 0.05)) * 111_320
    assert abs(width_m - plan.shown_grid_m) < 1, (width_m, plan.shown_grid_m)  # the shown cell, nothing finer
    for name, value in out.items():
        text = BBOX.sub("", json.dumps(value))
        assert coordinates(text) <= {lon, lat}, (name, coordinates(text) - {lon, lat})
    assert str(lat) in json.dumps(out["sensorthings"]) and str(lat) in json.dumps(out["ckan"])
    thing = next(body for topic, body in out["sensorthings"] if topic.startswith("v1.1/Things("))
    assert thing["properties"]["locationGridMetres"] == plan.shown_grid_m
    extras = {e["key"]: e["value"] for e in out["ckan"]["extras"]}
    assert extras["location_grid_m"] == f"{plan.shown_grid_m:g}"


def test_the_search_for_coordinates_would_find_the_exact_site() -> None:
    assert coordinates(json.dumps({"lat": LAT, "lon": LON})) == {LAT, LON}


@pytest.mark.parametrize("case", sorted(CASES))
def test_uprn_and_usrn_are_in_no_output_unless_the_site_opts_in(case: str) -> None:
    for opt_in, present in (("", False), (", publish_address_keys: true", True)):
        _, out = outputs(opt_in, CASES[case])
        public = {k: json.dumps(v) for k, v in out.items() if k != "privacy report"}
        for name, text in public.items():
            assert ("5045394" in text) is (present and name in ("sensorthings", "ckan")), (name, opt_in)
            assert ("20500123" in text) is (present and name in ("sensorthings", "ckan")), (name, opt_in)
        assert "5045394" not in json.dumps(out["privacy report"])


def site_readers(source: str, rel: str) -> list[str]:
    """Where a module reads `gateway.location` (or its lat/lon) or snaps/coarsens a position,
    unless it is the plan (or, for the snapping, the location module itself)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and rel != "gateway/plan.py":
            inner = node.value
            reads_site = node.attr == "location" and isinstance(inner, ast.Attribute) and inner.attr == "gateway"
            reads_latlon = node.attr in ("lat", "lon") and isinstance(inner, ast.Attribute) and inner.attr == "location"
            if reads_site or reads_latlon:
                found.append(f"{rel}:{node.lineno} .{node.attr}")
        if isinstance(node, ast.Call) and rel not in ("gateway/plan.py", "gateway/privacy/location.py"):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            if name in ("snap_to_grid", "snap_to_segment", "coarsen"):
                found.append(f"{rel}:{node.lineno} {name}()")
    return found


def test_only_the_plan_reads_the_site_position_from_the_config() -> None:
    offenders = [hit for path in sorted((ROOT / "gateway").rglob("*.py"))
                 for hit in site_readers(path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix())]  # fmt: skip
    assert not offenders, offenders


def test_the_scan_would_catch_a_module_that_reads_the_site() -> None:
    planted = "def f(cfg):\n    g = cfg.gateway\n    return cfg.gateway.location.lat, snap_to_grid(1, 2, 3)\n"
    assert sorted(site_readers(planted, "gateway/standards/x.py")) == [
        "gateway/standards/x.py:3 .lat", "gateway/standards/x.py:3 .location", "gateway/standards/x.py:3 snap_to_grid()"]
    assert site_readers(planted, "gateway/plan.py") == []
