"""`format: sensorthings | senml | ngsi-ld` on the file sink (the MQTT sink's is in
tests/integration/test_sensorthings_mqtt.py): what it writes is what the official validators
accept, and every format's bytes pass the egress guard."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from gateway.config import parse_config
from gateway.model import Observation
from gateway.outbox import Row
from gateway.plan import SitePlan, build_plan
from gateway.privacy.guard import EgressGuard
from gateway.sinks import SINKS
from gateway.sinks.base import SinkContext
from gateway.sinks.file import FileSink
from tests.validators import sdm_errors, senml_errors, senml_validator, unresolved_terms

SCHEMAS = Path(__file__).parent.parent / "schemas"
T0 = 1_789_999_200.0

CONFIG = """
gateway: {id: camden-lc-0423, borough: camden, location: {lat: 51.5390, lon: -0.1426}, data_dir: '%s'}
sensors:
  - {id: pm-north, driver: pms5003, serial: {port: /dev/ttyUSB0}}
  - {id: meter-1, driver: eastron_sdm, serial: {port: /dev/ttyUSB1}}
  - {id: footfall-1, driver: wifi_probe_sniffer, mqtt: {topic: footfall/1/probes}}
  - {id: ev-1, driver: openevse, mqtt: {topic: openevse/+}}
  - {id: %s, driver: sds011, serial: {port: /dev/ttyUSB2}}
inputs: {mqtt: {host: 127.0.0.1}}
privacy: {window: 15m, min_count: 10}
sinks: {file: {format: %s}}
"""
ODD = "kiosk-07700900123"  # a sensor id shaped like a UK phone number: only SenML and NGSI-LD name sensors


def setup(tmp: Path, fmt: str) -> tuple[SitePlan, FileSink, EgressGuard]:
    cfg = parse_config(CONFIG % (tmp, ODD, fmt), "f.yaml", env={})
    plan = build_plan(cfg)
    guard = EgressGuard(frozenset(plan.datastreams))
    ctx = SinkContext(cfg.gateway.id, cfg.gateway.borough, cfg.gateway.data_dir, plan, guard)
    sink = SINKS["file"].build(ctx, "file", cfg.sinks["file"])
    assert isinstance(sink, FileSink)
    return plan, sink, guard


def observations(plan: SitePlan) -> list[Observation]:
    def o(sensor: str, prop: str, result: object, t: float = T0, end: float | None = None) -> Observation:
        ds = plan.sensors[sensor].datastreams[prop]
        return Observation(ds.id, sensor, prop, t, (end or t) + 0.5, result, end)  # type: ignore[arg-type]

    w = 900.0
    return [
        o("pm-north", "pm2_5", 7.3), o("pm-north", "pm10", 11), o("pm-north", "pm1_0", 4),
        o("pm-north", "pm2_5", 8.1, T0 + 1),
        o("meter-1", "power", 230.4), o("meter-1", "energy_total", 1234.5),
        o("footfall-1", "footfall", 42, T0, T0 + w), o("footfall-1", "footfall", None, T0 + w, T0 + 2 * w),
        o("ev-1", "status", "CHARGING"), o("ev-1", "power", 7200.0),
        o(ODD, "pm2_5", 5.0),
    ]  # fmt: skip


def rows(obs: list[Observation]) -> list[Row]:
    return [Row(i + 1, o.datastream_id, o.phenomenon_time, o.to_record()) for i, o in enumerate(obs)]


def write(sink: FileSink, batch: list[Row]) -> tuple[int, int, list[dict[str, object]]]:
    async def go() -> tuple[int, int]:
        await sink.start()
        r = await sink.write(batch)
        await sink.close()
        return r.written, r.blocked

    written, blocked = asyncio.run(go())
    lines = [json.loads(line) for line in sink.path.read_text().splitlines()]
    return written, blocked, lines


def test_sensorthings_lines_are_observations(tmp_path: Path) -> None:
    plan, sink, _ = setup(tmp_path, "sensorthings")
    written, blocked, lines = write(sink, rows(observations(plan)))
    assert (written, blocked, len(lines)) == (11, 0, 11)  # the odd sensor id is not in these bytes
    v = Draft202012Validator(json.loads((SCHEMAS / "Observation.json").read_text()))
    assert all(list(v.iter_errors(line)) == [] for line in lines)


def test_senml_lines_are_one_rfc_8428_pack_per_sensor(tmp_path: Path) -> None:
    plan, sink, guard = setup(tmp_path, "senml")
    written, blocked, packs = write(sink, rows(observations(plan)))
    # the odd sensor's pack names it in `bn`: the guard stops that pack, and counts it
    assert blocked == 1 and guard.blocked["phone"] == 1
    v = senml_validator()
    assert [p[0]["bn"].split(":")[-2] for p in packs] == ["pm-north", "meter-1", "footfall-1", "ev-1"]  # type: ignore[index]
    for pack in packs:
        assert senml_errors(pack, v) == []
    assert written == 10
    assert sum(len(p) for p in packs) == 9  # type: ignore[arg-type]  # the suppressed window has no value


def test_ngsi_ld_lines_are_smart_data_models_entities(tmp_path: Path) -> None:
    plan, sink, guard = setup(tmp_path, "ngsi-ld")
    written, blocked, entities = write(sink, rows(observations(plan)))
    assert blocked == 1 and guard.blocked["phone"] == 1  # the odd sensor's entity id names it
    assert written == 10
    assert [e["type"] for e in entities] == ["AirQualityObserved", "AirQualityObserved", "CrowdFlowObserved",
                                             "CrowdFlowObserved", "EVChargingStation"]  # fmt: skip
    for e in entities:
        assert sdm_errors(e) == [] and unresolved_terms(e) == []


def test_a_format_the_sinks_do_not_know_is_a_config_error_with_its_line(tmp_path: Path) -> None:
    from gateway.config import ConfigError

    with pytest.raises(ConfigError) as err:
        parse_config(CONFIG % (tmp_path, "s1", "csv"), "f.yaml", env={})
    assert "f.yaml:11 sinks.file.format" in str(err.value)  # the line of `sinks:`
    with pytest.raises(ValidationError):
        SINKS["mqtt"].settings.model_validate({"type": "mqtt", "format": "cbor"})


def test_mqtt_topics_per_format() -> None:
    from gateway.sinks.mqtt import Settings
    from gateway.standards.formats import Message

    m = Message("pm-north", 1234567890123456, b"{}", 1)
    assert Settings().topic("gw", m) == "v1.1/Datastreams(1234567890123456)/Observations"
    assert Settings(format="senml").topic("gw", m) == "senml/gw/pm-north"
    assert Settings(format="ngsi-ld", topic_prefix="city/ngsi/").topic("gw", m) == "city/ngsi/gw/pm-north"
