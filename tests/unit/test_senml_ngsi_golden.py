"""SenML and NGSI-LD exports compared with golden files, one observation set per sensor kind,
and checked by the official validators: RFC 8428's CDDL for every SenML pack, the Smart Data
Models JSON Schemas and the published @contexts (expanded by PyLD) for every NGSI-LD entity.

Run with UPDATE_GOLDEN=1 to rewrite the goldens after an intended change; review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gateway.config import parse_config
from gateway.model import Observation
from gateway.plan import SitePlan, build_plan
from gateway.standards import ngsi_ld, senml

GOLDEN = Path(__file__).parent.parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"

CONFIG = """
gateway: {id: camden-lc-0423, borough: camden, location: {lat: 51.5390, lon: -0.1426}}
sensors:
  - {id: pm-north, driver: pms5003, serial: {port: /dev/ttyUSB0}}
  - {id: co2-1, driver: senseair_s8, serial: {port: /dev/ttyUSB1}}
  - {id: meter-1, driver: eastron_sdm, serial: {port: /dev/ttyUSB2}}
  - {id: footfall-1, driver: wifi_probe_sniffer, mqtt: {topic: footfall/1/probes}}
  - {id: ev-1, driver: openevse, mqtt: {topic: openevse/+}}
inputs: {mqtt: {host: 127.0.0.1}}
privacy: {window: 15m, min_count: 10, location_grid_m: 100}
sinks: {file: {path: observations.jsonl}}
"""

T0 = 1_789_999_200.0  # 2026-09-21T14:00:00Z, on a 15-minute boundary


def plan() -> SitePlan:
    return build_plan(parse_config(CONFIG, "golden.yaml", env={}))


def obs(p: SitePlan, sensor: str, prop: str, result: object, t: float = T0, *,
        end: float | None = None, **params: object) -> Observation:  # fmt: skip
    ds = p.sensors[sensor].datastreams[prop]
    return Observation(ds.id, sensor, prop, t, (end or t) + 0.5, result, end, params)  # type: ignore[arg-type]


def observation_sets(p: SitePlan) -> dict[str, list[Observation]]:
    w = 900.0
    return {
        "pms5003": [obs(p, "pm-north", "pm1_0", 4), obs(p, "pm-north", "pm2_5", 7.3),
                    obs(p, "pm-north", "pm10", 11), obs(p, "pm-north", "nc0_3", 1520),
                    obs(p, "pm-north", "pm2_5", 8.1, T0 + 1)],
        "senseair_s8": [obs(p, "co2-1", "co2", 612), obs(p, "co2-1", "co2", 2100, T0 + 4,
                                                          quality="out_of_range")],
        "eastron_sdm": [obs(p, "meter-1", "energy_total", 1234.56), obs(p, "meter-1", "power", 230.4),
                        obs(p, "meter-1", "voltage", 239.8)],
        "wifi_probe_sniffer": [
            obs(p, "footfall-1", "footfall", 42, T0, end=T0 + w, aggregation="distinct_count",
                period="PT15M"),
            obs(p, "footfall-1", "footfall", None, T0 + w, end=T0 + 2 * w,
                aggregation="distinct_count", period="PT15M", suppressed=True, min_count=10),
        ],
        "openevse": [obs(p, "ev-1", "status", "CHARGING"), obs(p, "ev-1", "vehicle_connected", True),
                     obs(p, "ev-1", "power", 7200.0),
                     obs(p, "ev-1", "energy_delivered", 3.25, T0, end=T0 + w, aggregation="sum",
                         period="PT15M", samples=30)],
    }  # fmt: skip


def compare(path: Path, actual: object) -> None:
    text = json.dumps(actual, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"missing golden {path}: run with UPDATE_GOLDEN=1"
    assert json.loads(path.read_text(encoding="utf-8")) == json.loads(text), (
        f"{path} differs; if intended, rerun with UPDATE_GOLDEN=1 and review the diff"
    )


SETS = ("pms5003", "senseair_s8", "eastron_sdm", "wifi_probe_sniffer", "openevse")


@pytest.mark.parametrize("driver", SETS)
def test_senml_pack_matches_golden(driver: str) -> None:
    p = plan()
    [(_, pack)] = senml.packs("camden-lc-0423", observation_sets(p)[driver], p.datastreams)
    compare(GOLDEN / "senml" / f"{driver}.json", pack)


@pytest.mark.parametrize("driver", SETS)
def test_ngsi_ld_entities_match_golden(driver: str) -> None:
    p = plan()
    compare(GOLDEN / "ngsi_ld" / f"{driver}.json", [e for _, e in ngsi_ld.encode(p, observation_sets(p)[driver])])


# --------------------------------------------------------------------------- official validators


def all_observations(p: SitePlan) -> list[Observation]:
    return [o for obs in observation_sets(p).values() for o in obs]


def test_every_senml_pack_passes_rfc_8428_cddl_and_a_broken_one_does_not() -> None:
    from tests.validators import senml_errors, senml_validator

    p = plan()
    v = senml_validator()
    packs = senml.packs("camden-lc-0423", all_observations(p), p.datastreams)
    assert len(packs) == 5
    for sensor, pack in packs:
        assert senml_errors(pack, v) == [], sensor
    assert senml_errors([], v)  # a pack has at least one record
    assert senml_errors({"n": "pm2_5", "v": 1}, v)  # a pack is an array of records
    assert senml_errors([{"n": "pm2_5", "v": 1, "bad label": 2}], v)  # labels follow RFC 8428's grammar
    assert senml_errors([{"n": "pm2_5", "v": [1]}], v)  # values are scalars
    # (the RFC's CDDL lets any label carry any scalar through its extension rule, so a wrongly
    # typed `n` or `bver` passes it: test_senml_names_are_valid_rfc8428_names covers names)


@pytest.mark.parametrize("driver", SETS)
def test_every_ngsi_ld_entity_passes_its_smart_data_model_schema(driver: str) -> None:
    from tests.validators import sdm_errors

    p = plan()
    entities = ngsi_ld.encode(p, observation_sets(p)[driver])
    for _, e in entities:
        assert sdm_errors(e) == [], e["type"]
    if driver == "eastron_sdm":
        assert entities == []  # an energy meter fits none of the three models


def test_the_smart_data_models_schemas_can_refuse_our_entities() -> None:
    import copy

    from tests.validators import sdm_errors

    p = plan()
    [(_, ev)] = ngsi_ld.encode(p, observation_sets(p)["openevse"])
    bad = copy.deepcopy(ev)
    bad["status"]["value"] = "CHARGING"  # type: ignore[index]  # the OCPI word is not SDM's enum
    assert sdm_errors(bad)
    no_socket = {k: v for k, v in ev.items() if k != "socketType"}
    assert sdm_errors(no_socket)


@pytest.mark.parametrize("driver", SETS)
def test_every_ngsi_ld_term_resolves_in_the_published_contexts(driver: str) -> None:
    """Expanded by a JSON-LD processor against copies of the @contexts each entity names: no
    term falls to the core context's default vocabulary (which names nothing)."""
    from tests.validators import unresolved_terms

    p = plan()
    for _, e in ngsi_ld.encode(p, observation_sets(p)[driver]):
        assert unresolved_terms(e) == [], e["type"]


def test_ocpi_status_resolves_only_through_its_inline_context_term() -> None:
    from tests.validators import unresolved_terms

    p = plan()
    [(_, ev)] = ngsi_ld.encode(p, observation_sets(p)["openevse"])
    assert ev["@context"] == [ngsi_ld.TRANSPORTATION_CONTEXT, {"ocpiStatus": ngsi_ld.OCPI_STATUS}, ngsi_ld.CORE_CONTEXT]
    bare = {**ev, "@context": [ngsi_ld.TRANSPORTATION_CONTEXT, ngsi_ld.CORE_CONTEXT]}
    assert unresolved_terms(bare) == ["https://uri.etsi.org/ngsi-ld/default-context/ocpiStatus"]


# --------------------------------------------------------------------------- SenML rules


def test_senml_one_pack_per_sensor_with_bver_26_only_where_a_secondary_unit_is_used() -> None:
    p = plan()
    sets = observation_sets(p)
    packs = dict(senml.packs("gw", [*sets["pms5003"], *sets["eastron_sdm"], *sets["senseair_s8"]], p.datastreams))
    assert list(packs) == ["pm-north", "meter-1", "co2-1"]
    pm = packs["pm-north"]
    assert pm[0]["bver"] == 26 and pm[0]["bn"] == "urn:dev:street-gateway:gw:pm-north:"
    assert {r.get("u") for r in pm if r["n"] == "pm2_5"} == {"ug/m3"}
    assert not any("bver" in r for r in pm[1:])
    assert packs["meter-1"][0]["bver"] == 26  # kWh (the energy register) is a secondary unit
    [(_, meter)] = senml.packs("gw", [o for o in sets["eastron_sdm"] if o.property != "energy_total"], p.datastreams)
    assert all("bver" not in r for r in meter)  # W and V are primary units: any RFC 8428 reader takes it
    assert packs["co2-1"][0]["u"] == "ppm"


def test_senml_values_by_type_and_absolute_times() -> None:
    p = plan()
    [(_, pack)] = senml.packs("gw", observation_sets(p)["openevse"], p.datastreams)
    by_name = {r["n"]: r for r in pack}
    assert by_name["status"]["vs"] == "CHARGING" and "u" not in by_name["status"]
    assert by_name["vehicle_connected"]["vb"] is True
    assert by_name["energy_delivered"] == {"n": "energy_delivered", "u": "kWh", "v": 3.25,
                                           "t": int(T0), "ut": 900}  # fmt: skip
    assert all(r["t"] > 2**28 for r in pack)  # absolute, not relative (RFC 8428 4.5.3)


def test_senml_leaves_out_suppressed_counts_which_have_no_value() -> None:
    p = plan()
    [(_, pack)] = senml.packs("gw", observation_sets(p)["wifi_probe_sniffer"], p.datastreams)
    assert len(pack) == 1 and pack[0]["v"] == 42 and pack[0]["u"] == "count"
    assert senml.packs("gw", [], p.datastreams) == []


def test_senml_names_are_valid_rfc8428_names() -> None:
    import re

    p = plan()
    for observations in observation_sets(p).values():
        for _, pack in senml.packs("camden-lc-0423", observations, p.datastreams):
            bn = ""
            for r in pack:
                bn = str(r.get("bn", bn))
                assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9:./_-]*", bn + str(r["n"]))


# --------------------------------------------------------------------------- NGSI-LD rules


FORBIDDEN = ("transaction", "idtag", "stateofcharge", "amount", "session", "rfid", "vehicleid")


def test_ngsi_ld_ev_entity_has_no_transaction_or_personal_fields() -> None:
    p = plan()
    [(_, ev)] = ngsi_ld.encode(p, observation_sets(p)["openevse"])
    assert ev["id"] == "urn:ngsi-ld:EVChargingStation:camden-lc-0423-ev-1"
    assert ev["status"]["value"] == "full"  # type: ignore[index]
    assert ev["ocpiStatus"]["value"] == "CHARGING"  # type: ignore[index]
    for key in ev:
        assert not any(word in key.lower() for word in FORBIDDEN), key


def test_ngsi_ld_air_quality_is_one_snapshot_per_time_with_uncefact_codes_and_the_shown_location() -> None:
    p = plan()
    first, second = (e for _, e in ngsi_ld.encode(p, observation_sets(p)["pms5003"]))
    assert first["id"] == second["id"] == "urn:ngsi-ld:AirQualityObserved:camden-lc-0423-pm-north"
    assert first["pm25"] == {"type": "Property", "value": 7.3, "unitCode": "GQ",
                             "observedAt": "2026-09-21T14:00:00.000Z"}  # fmt: skip
    assert set(first) >= {"pm1", "pm10"} and "nc0_3" not in first  # particle counts: no SDM term
    assert second["pm25"]["value"] == 8.1 and "pm10" not in second  # type: ignore[index]
    assert second["dateObserved"]["value"]["@value"] == "2026-09-21T14:00:01.000Z"  # type: ignore[index]
    assert first["@context"][-1] == ngsi_ld.CORE_CONTEXT  # type: ignore[index]
    assert p.shown_location is not None
    assert first["location"]["value"]["coordinates"] == list(p.shown_location)  # type: ignore[index]
    [(_, co2), _] = ngsi_ld.encode(p, observation_sets(p)["senseair_s8"])
    assert co2["co2"]["unitCode"] == "59"  # type: ignore[index]


def test_ngsi_ld_location_is_the_plans_shown_location_inside_a_privacy_zone() -> None:
    """A zone around the site that coarsens to 1 km: entities show the coarser position."""
    zone = ("privacy: {window: 15m, min_count: 10, location_grid_m: 100, zones: [{name: home, action: coarsen, "
            "grid_m: 1000, polygon: [[-0.15, 51.53], [-0.13, 51.53], [-0.13, 51.55], [-0.15, 51.55]]}]}")  # fmt: skip
    cfg = parse_config(CONFIG.replace("privacy: {window: 15m, min_count: 10, location_grid_m: 100}", zone), "z.yaml", env={})
    p = build_plan(cfg)
    [(_, e)] = ngsi_ld.encode(p, observation_sets(p)["pms5003"][:1])
    assert p.shown_location is not None and p.shown_location != plan().shown_location
    assert e["location"]["value"]["coordinates"] == list(p.shown_location)  # type: ignore[index]


def test_ngsi_ld_crowd_flow_counts_per_window_only() -> None:
    p = plan()
    sets = observation_sets(p)["wifi_probe_sniffer"]
    first, latest = (e for _, e in ngsi_ld.encode(p, sets))
    assert first["peopleCount"]["value"] == 42  # type: ignore[index]
    assert first["dateObservedFrom"]["value"]["@value"] == "2026-09-21T14:00:00.000Z"  # type: ignore[index]
    assert first["dateObservedTo"]["value"]["@value"] == "2026-09-21T14:15:00.000Z"  # type: ignore[index]
    assert "peopleCount" not in latest  # the latest window was suppressed: no number is sent
    # a count at an instant (a running total, or people present now) is no peopleCount
    instant = Observation(sets[0].datastream_id, "footfall-1", "footfall", T0, T0 + 0.5, 42)
    assert ngsi_ld.encode(p, [instant]) == []


def test_ngsi_ld_skips_sensors_without_a_model_and_values_in_units_it_cannot_label() -> None:
    p = plan()
    assert ngsi_ld.encode(p, observation_sets(p)["eastron_sdm"]) == []
    assert ngsi_ld.covered(p) == ["pm-north", "co2-1", "footfall-1", "ev-1"]
