"""Generic JSON profile: declarative mapping, default deny, readable option problems."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
import yaml

from firmware_bridge.base import Aggregation, Decoded, DecodeError, ObservationType
from firmware_bridge.drivers import generic_json as gj
from gateway.config import ConfigError, parse_config

OPTIONS: dict[str, Any] = {
    "fields": [
        {"path": "data.pm25", "property": "pm2_5", "unit": "ug/m3"},
        {"path": "data.temp_dc", "property": "temperature", "unit": "Cel", "scale": 0.1},
        {"path": "sensors[0].status", "property": "sensor_status", "type": "category",
         "allowed": ["ok", "warming_up", "fault"]},
        {"path": "counts.people", "property": "people", "type": "count", "optional": True},
        {"path": "door", "property": "door_open", "type": "truth", "optional": True},
    ],
    "time_path": "ts",
}  # fmt: skip
PAYLOAD = {
    "ts": 1741946401,
    "data": {"pm25": 8.5, "temp_dc": 143},
    "sensors": [{"status": "ok"}],
    "device": {"id": "aq-node-7", "owner": "Jane Doe"},
    "counts": {"people": "12"},
    "door": 1,
}
TOPIC = "sensors/aq-node-7/json"


def decode(payload: Any, options: dict[str, Any] | None = None) -> list[Any]:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return list(gj.Decoder(gj.Options.model_validate(options or OPTIONS)).decode(TOPIC, raw))


def test_mapped_paths_decode_with_scale_types_and_device_time() -> None:
    assert decode(PAYLOAD) == [Decoded(
        {"pm2_5": 8.5, "temperature": 14.3, "sensor_status": "ok", "people": 12,
         "door_open": True}, device_time=1741946401.0)]  # fmt: skip


def test_unmapped_content_is_never_emitted() -> None:
    text = repr(decode(PAYLOAD))
    assert "aq-node-7" not in text and "Jane" not in text


def test_missing_required_field_is_an_error_alongside_a_partial_reading() -> None:
    payload = {**PAYLOAD, "data": {"pm25": 8.5}}
    reading, error = decode(payload)
    assert isinstance(reading, Decoded) and "temperature" not in reading.values
    assert isinstance(error, DecodeError) and error.reason == "missing_field"
    assert "#1" in error.detail


def test_missing_optional_field_is_quiet() -> None:
    payload = {k: v for k, v in PAYLOAD.items() if k not in ("counts", "door")}
    [reading] = decode(payload)
    assert isinstance(reading, Decoded) and "people" not in reading.values


@pytest.mark.parametrize(
    ("path", "value"),
    [("data.pm25", "lots"), ("data.pm25", True), ("counts", {"people": 2.5}), ("door", "ajar"),
     ("sensors", [{"status": ["ok"]}])],
)  # fmt: skip
def test_values_of_the_wrong_type_are_errors(path: str, value: Any) -> None:
    payload = json.loads(json.dumps(PAYLOAD))
    target = payload
    *parents, last = path.split(".")
    for key in parents:
        target = target[key]
    target[last] = value
    errors = [e for e in decode(payload) if isinstance(e, DecodeError)]
    assert [e.reason for e in errors] == ["wrong_type"]


def test_a_word_outside_the_vocabulary_is_its_own_error() -> None:
    payload = json.loads(json.dumps(PAYLOAD))
    payload["sensors"] = [{"status": "on_fire"}]
    events = decode(payload)
    assert [e.reason for e in events if isinstance(e, DecodeError)] == ["not_in_vocabulary"]
    assert all("on_fire" not in e.detail for e in events if isinstance(e, DecodeError))


@pytest.mark.parametrize(
    ("fmt", "raw", "expected"),
    [("auto", 1741946401, 1741946401.0), ("auto", 1741946401500, 1741946401.5),
     ("auto", "2025-03-14T10:00:01Z", 1741946401.0), ("ms", 1741946401000, 1741946401.0),
     ("rfc3339", "2025-03-14T11:00:01+01:00", 1741946401.0), ("s", "1741946401", 1741946401.0)],
)  # fmt: skip
def test_time_formats(fmt: str, raw: object, expected: float) -> None:
    [reading] = decode({**PAYLOAD, "ts": raw}, {**OPTIONS, "time_format": fmt})
    assert isinstance(reading, Decoded) and reading.device_time == expected


def test_unusable_time_leaves_device_time_to_the_gateway_with_a_flag() -> None:
    [reading] = decode({**PAYLOAD, "ts": "yesterday"})
    assert isinstance(reading, Decoded) and reading.device_time is None
    assert reading.flags == ("no_device_time",)


@pytest.mark.parametrize(
    ("text", "parts"),
    [("a", ("a",)), ("a.b[0].c", ("a", "b", 0, "c")), ("[2].x", (2, "x")),
     ("a[0][1]", ("a", 0, 1)), ("a.[0]", None), ("a.", None), (".a", None), ("a..b", None),
     ("a[x]", None), ("a[0]b", None), ("a]", None), ("", None), (3, None)],
)  # fmt: skip
def test_path_syntax(text: object, parts: tuple[object, ...] | None) -> None:
    assert gj.parse_path(text) == parts


def problems(options: dict[str, Any]) -> list[str]:
    """What `check` prints for a generic_json sensor with these options (key path: message)."""
    doc = {"gateway": {"id": "g", "borough": "camden", "location": {"lat": 51.5, "lon": -0.1}},
           "inputs": {"mqtt": {}}, "sinks": {"file": {}},
           "sensors": [{"id": "node", "driver": "generic_json", "mqtt": {"topic": "t"},
                        "options": options}]}  # fmt: skip
    try:
        parse_config(yaml.safe_dump(doc), "gw.yaml", {})
    except ConfigError as e:
        return [f"{p.path.removeprefix('sensors[0].options.')}: {p.message}" for p in e.problems]
    return []


def test_option_problems_name_the_key_and_say_what_is_wrong() -> None:
    got = problems({
        "fields": [
            {"path": "data..pm25", "property": "PM25", "unit": "ug/m^3", "type": "gauge"},
            {"path": "a", "property": "x", "type": "category", "unit": "Cel"},
            {"path": "b", "property": "x", "unit": "Cel", "colour": "red"},
            {"path": "c", "property": "y", "unit": "Cel", "scale": "ten"},
        ],
        "aggregates": [{"property": "z", "of": "nope", "aggregation": "median"}],
        "time_format": "julian",
        "extra": 1,
    })  # fmt: skip
    expected_prefixes = [
        "extra:", "fields[0].path:", "fields[0].property:", "fields[0].type:",
        "fields[1].unit:", "fields[2].colour:", "fields[3].scale:",
        "aggregates[0].aggregation:", "time_format:",
    ]  # fmt: skip
    for prefix in expected_prefixes:
        assert any(p.startswith(prefix) for p in got), (prefix, got)
    assert problems({"fields": []}) == ["fields: List should have at least 1 item after validation, not 0"]
    duplicate = {"fields": [{"path": "a", "property": "x", "unit": "Cel"}] * 2}
    assert problems(duplicate) == ["fields[1].property: `x` is already mapped"]
    assert problems({"fields": [{"path": "a", "property": "x", "unit": "Cel"}],
                     "aggregates": [{"property": "z", "of": "nope", "aggregation": "sum"}]}) == [
        "aggregates[0].of: must name a mapped field's property"]  # fmt: skip


def test_annotation_and_compound_units_are_accepted_and_valid_options_have_no_problems() -> None:
    assert problems(OPTIONS) == []
    assert problems({"fields": [
        {"path": "n", "property": "bikes", "type": "count", "unit": "{bikes}"},
        {"path": "v", "property": "vehicles", "type": "count", "unit": "{vehicles}"},
        {"path": "e", "property": "energy", "unit": "W.h"}]}) == []  # fmt: skip


def test_a_unit_typo_is_refused_with_a_sentence() -> None:
    (got,) = problems({"fields": [{"path": "a", "property": "pm", "unit": "ug/m^3"}]})
    assert got.startswith("fields[0].unit: 'ug/m^3' is not a valid UCUM code")


def test_options_are_required() -> None:
    assert problems({})[0] == "fields: is required"


def test_catalogue_is_built_from_the_mapping_with_personal_and_aggregate_fields() -> None:
    options = {
        "fields": [
            {"path": "badge", "property": "badge_id", "type": "category", "personal": True},
            {"path": "kwh", "property": "energy", "unit": "kW.h"},
        ],
        "aggregates": [
            {"property": "visitors", "of": "badge_id", "aggregation": "distinct_count"},
            {"property": "energy_sum", "of": "energy", "aggregation": "sum"},
        ],
        "description": "Borough door counter",
    }  # fmt: skip
    cat = gj.catalogue_for(gj.Options.model_validate(options))
    assert cat.description == "Borough door counter"
    badge, energy = cat.field("badge_id"), cat.field("energy")
    visitors, energy_sum = cat.field("visitors"), cat.field("energy_sum")
    assert badge is not None and badge.personal and badge.unit is None
    assert energy is not None and not energy.personal
    assert visitors is not None and visitors.aggregation is Aggregation.DISTINCT_COUNT
    assert visitors.unit == "{count}" and visitors.observation_type is ObservationType.COUNT
    assert energy_sum is not None and energy_sum.unit == "kW.h" and energy_sum.source == "energy"
    [reading] = gj.Decoder(gj.Options.model_validate(options)).decode(TOPIC, b'{"badge": "B-1", "kwh": 2}')
    assert isinstance(reading, Decoded) and set(reading.values) == {"badge_id", "energy"}


def test_aggregate_of_a_category_needs_a_counting_aggregation() -> None:
    options = {"fields": [{"path": "s", "property": "state", "type": "category", "allowed": ["on"]}],
               "aggregates": [{"property": "m", "of": "state", "aggregation": "mean"}]}  # fmt: skip
    assert problems(options) == ["aggregates[0].aggregation: mean needs a numeric source"]


def test_simulated_message_decodes_with_the_documented_mapping() -> None:
    options = {"fields": [{"path": "data.pm25", "property": "pm2_5", "unit": "ug/m3"},
                          {"path": "data.temp", "property": "temperature", "unit": "Cel"}],
               "time_path": "ts"}  # fmt: skip
    [(topic, payload)] = gj.simulate(random.Random(4), 1741946401.0, "sensors/+/json")
    assert topic == "sensors/aq-node-7/json"
    [reading] = gj.Decoder(gj.Options.model_validate(options)).decode(topic, payload)
    assert isinstance(reading, Decoded) and set(reading.values) == {"pm2_5", "temperature"}
    assert reading.device_time == 1741946401.0
