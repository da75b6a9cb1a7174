"""SenML and NGSI-LD exports compared with golden files, one observation set per sensor kind.

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
    pack = senml.encode("camden-lc-0423", observation_sets(p)[driver], p.datastreams)
    compare(GOLDEN / "senml" / f"{driver}.json", pack)


@pytest.mark.parametrize("driver", SETS)
def test_ngsi_ld_entities_match_golden(driver: str) -> None:
    p = plan()
    compare(GOLDEN / "ngsi_ld" / f"{driver}.json", ngsi_ld.entities(p, observation_sets(p)[driver]))


# --------------------------------------------------------------------------- SenML rules


def test_senml_declares_bver_26_only_when_a_secondary_unit_is_used() -> None:
    p = plan()
    sets = observation_sets(p)
    pm = senml.encode("gw", sets["pms5003"], p.datastreams)
    assert pm[0]["bver"] == 26 and pm[0]["bn"] == "urn:dev:street-gateway:gw:pm-north:"
    assert {r.get("u") for r in pm if r["n"] == "pm2_5"} == {"ug/m3"}
    meter = senml.encode("gw", [o for o in sets["eastron_sdm"] if o.property != "energy_total"],
                         p.datastreams)  # fmt: skip
    assert "bver" not in meter[0]  # W and V are primary units
    assert senml.encode("gw", sets["senseair_s8"], p.datastreams)[0]["u"] == "ppm"


def test_senml_values_by_type_and_absolute_times() -> None:
    p = plan()
    pack = senml.encode("gw", observation_sets(p)["openevse"], p.datastreams)
    by_name = {r["n"]: r for r in pack}
    assert by_name["status"]["vs"] == "CHARGING" and "u" not in by_name["status"]
    assert by_name["vehicle_connected"]["vb"] is True
    assert by_name["energy_delivered"] == {"n": "energy_delivered", "u": "kWh", "v": 3.25,
                                           "t": int(T0), "ut": 900}  # fmt: skip
    assert all(r["t"] > 2**28 for r in pack)  # absolute, not relative (RFC 8428 4.5.3)


def test_senml_leaves_out_suppressed_counts_which_have_no_value() -> None:
    p = plan()
    pack = senml.encode("gw", observation_sets(p)["wifi_probe_sniffer"], p.datastreams)
    assert len(pack) == 1 and pack[0]["v"] == 42 and pack[0]["u"] == "count"
    assert senml.encode("gw", [], p.datastreams) == []


def test_senml_names_are_valid_rfc8428_names() -> None:
    import re

    p = plan()
    for observations in observation_sets(p).values():
        bn = ""
        for r in senml.encode("camden-lc-0423", observations, p.datastreams):
            bn = str(r.get("bn", bn))
            assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9:./_-]*", bn + str(r["n"]))


# --------------------------------------------------------------------------- NGSI-LD rules


FORBIDDEN = ("transaction", "idtag", "stateofcharge", "amount", "session", "rfid", "vehicleid")


def test_ngsi_ld_ev_entity_has_no_transaction_or_personal_fields() -> None:
    p = plan()
    [ev] = ngsi_ld.entities(p, observation_sets(p)["openevse"])
    assert ev["id"] == "urn:ngsi-ld:EVChargingStation:camden-lc-0423-ev-1"
    assert ev["status"]["value"] == "full"  # type: ignore[index]
    for key in ev:
        assert not any(word in key.lower() for word in FORBIDDEN), key


def test_ngsi_ld_air_quality_uses_uncefact_codes_and_snapped_location() -> None:
    p = plan()
    [aq] = ngsi_ld.entities(p, observation_sets(p)["pms5003"])
    assert aq["id"] == "urn:ngsi-ld:AirQualityObserved:camden-lc-0423-pm-north"
    assert aq["pm25"] == {"type": "Property", "value": 8.1, "unitCode": "GQ",  # latest wins
                          "observedAt": "2026-09-21T14:00:01.000Z"}  # fmt: skip
    assert aq["@context"][-1] == ngsi_ld.CORE_CONTEXT  # type: ignore[index]
    assert aq["location"]["value"]["coordinates"] != [-0.1426, 51.539]  # type: ignore[index]
    [co2] = ngsi_ld.entities(p, observation_sets(p)["senseair_s8"])
    assert co2["co2"]["unitCode"] == "59"  # type: ignore[index]


def test_ngsi_ld_crowd_flow_window_and_suppression() -> None:
    p = plan()
    sets = observation_sets(p)["wifi_probe_sniffer"]
    [latest] = ngsi_ld.entities(p, sets)
    assert "peopleCount" not in latest  # the latest window was suppressed
    assert latest["dateObservedFrom"]["value"]["@value"] == "2026-09-21T14:15:00.000Z"  # type: ignore[index]
    [first] = ngsi_ld.entities(p, sets[:1])
    assert first["peopleCount"]["value"] == 42  # type: ignore[index]


def test_ngsi_ld_skips_sensors_without_a_model() -> None:
    p = plan()
    assert ngsi_ld.entities(p, observation_sets(p)["eastron_sdm"]) == []
