"""SenML profile: base-field resolution, relative times, unit conversion, default deny."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
import yaml

from firmware_bridge.base import Decoded, DecodeError, ObservationType, Role
from firmware_bridge.drivers import senml
from gateway.config import ConfigError, parse_config

BN = "urn:dev:ow:10e2073a01080063:"
OPTIONS: dict[str, Any] = {
    "fields": [
        {"name": f"{BN}temp", "property": "temperature", "unit": "Cel"},
        {"suffix": ":humidity", "property": "humidity", "unit": "%"},
        {"suffix": "pm25", "property": "pm2_5", "unit": "ug/m3"},
        {"suffix": ":energy", "property": "energy", "unit": "kW.h"},
        {"suffix": ":door", "property": "door_open", "type": "truth"},
        {"suffix": ":mode", "property": "mode", "type": "category", "allowed": ["eco", "boost"]},
        {"suffix": ":count", "property": "passes", "type": "count"},
    ],
}  # fmt: skip
T0 = 1_741_946_400.0


def decode(pack: Any, options: dict[str, Any] | None = None) -> list[Any]:
    raw = pack if isinstance(pack, bytes) else json.dumps(pack).encode()
    return list(senml.Decoder(senml.Options.model_validate(options or OPTIONS)).decode("senml/node-1", raw))


def test_rfc8428_style_pack_resolves_base_name_time_and_unit() -> None:
    pack = [
        {"bn": BN, "bt": T0, "bu": "Cel", "n": "temp", "v": 23.1},
        {"n": "humidity", "u": "%RH", "v": 67},
        {"n": "temp", "t": -60, "v": 22.9},
        {"n": "voltage", "u": "V", "v": 120.1},  # not mapped: dropped
    ]  # fmt: skip
    assert decode(pack) == [
        Decoded({"temperature": 23.1, "humidity": 67.0}, device_time=T0),
        Decoded({"temperature": 22.9}, device_time=T0 - 60),
    ]


def test_relative_times_leave_device_time_to_the_gateway_with_a_flag() -> None:
    pack = [{"bn": BN, "n": "temp", "u": "Cel", "v": 20.0},
            {"n": "temp", "t": -5, "u": "Cel", "v": 19.5}]  # fmt: skip
    assert decode(pack) == [
        Decoded({"temperature": 20.0}, flags=("relative_time",)),
        Decoded({"temperature": 19.5}, flags=("relative_time",)),
    ]


def test_same_time_same_name_twice_becomes_two_readings() -> None:
    pack = [{"bn": BN, "bt": T0, "n": "temp", "v": 1.0}, {"n": "temp", "v": 2.0}]
    assert [e.values for e in decode(pack)] == [{"temperature": 1.0}, {"temperature": 2.0}]


@pytest.mark.parametrize(
    ("record", "expected"),
    [({"n": "temp", "u": "K", "v": 300.15}, {"temperature": 27.0}),
     ({"n": "x:energy", "u": "Wh", "v": 5230}, {"energy": 5.23}),
     ({"n": "x:energy", "u": "kWh", "s": 12.5}, {"energy": 12.5}),
     ({"n": "x:pm25", "u": "ug/m3", "v": 8}, {"pm2_5": 8.0}),
     ({"n": "x:door", "vb": True}, {"door_open": True}),
     ({"n": "x:mode", "vs": "eco"}, {"mode": "eco"}),
     ({"n": "x:count", "u": "count", "v": 4}, {"passes": 4}),
     ({"n": "temp", "v": 21.5}, {"temperature": 21.5})],  # no unit: assume the mapped unit
)  # fmt: skip
def test_values_and_unit_conversions(record: dict[str, Any], expected: dict[str, Any]) -> None:
    [reading] = decode([{"bn": BN, "bt": T0, **record}])
    assert isinstance(reading, Decoded)
    assert reading.values == pytest.approx(expected)


def test_base_value_and_base_sum_are_added() -> None:
    pack = [{"bn": BN, "bt": T0, "bv": 20, "n": "temp", "v": 1.5},
            {"bs": 100, "n": "x:energy", "u": "kWh", "s": 2}]  # fmt: skip
    [reading] = decode(pack)
    assert isinstance(reading, Decoded)
    assert reading.values == {"temperature": 21.5, "energy": 102.0}


def test_exact_name_wins_and_longest_suffix_is_preferred() -> None:
    options = {"fields": [{"suffix": "5", "property": "five", "unit": "1"},
                          {"suffix": "pm2_5", "property": "pm2_5", "unit": "ug/m3"}]}  # fmt: skip
    [reading] = decode([{"bt": T0, "n": "node:pm2_5", "v": 3}], options)
    assert isinstance(reading, Decoded) and reading.values == {"pm2_5": 3.0}


@pytest.mark.parametrize(
    ("pack", "reason"),
    [({"n": "temp"}, "wrong_type"), ([{"bn": BN, "n": "temp", "v": 1, "crit_": 1}],
     "unsupported_extension"), ([{"bver": 11, "bn": BN, "n": "temp", "v": 1}],
     "unsupported_version"), ([{"bver": 42, "bn": BN, "n": "temp", "v": 1}],
     "unsupported_version"), ([{"bn": 7, "n": "temp", "v": 1}], "wrong_type"),
     ([{"bt": "now", "n": "temp", "v": 1}], "wrong_type")],
)  # fmt: skip
def test_whole_pack_rejections(pack: Any, reason: str) -> None:
    [event] = decode(pack)
    assert isinstance(event, DecodeError) and event.reason == reason


def test_secondary_units_are_accepted_with_or_without_bver_26() -> None:
    for extra in ({}, {"bver": 26}, {"bver": 10}):
        [reading] = decode([{**extra, "bn": "n:", "bt": T0, "n": "pm25", "u": "ug/m3", "v": 5}])
        assert isinstance(reading, Decoded) and reading.values == {"pm2_5": 5.0}


@pytest.mark.parametrize(
    ("record", "reason"),
    [({"n": "temp", "u": "furlong", "v": 1}, "wrong_unit"),
     ({"n": "temp", "u": "V", "v": 1}, "wrong_unit"),
     ({"n": "temp", "u": None, "v": 1}, "wrong_unit"),
     ({"n": "temp", "vs": "warm"}, "wrong_type"),
     ({"n": "x:mode", "vs": "Alex Smith"}, "not_in_vocabulary"),
     ({"n": "x:count", "v": 2.5}, "wrong_type"),
     ({"n": "temp", "t": "later", "v": 1}, "wrong_type"),
     ({"n": "temp", "t": 1e300, "v": 1}, "bad_time"),
     ({"n": ["temp"], "v": 1}, "wrong_type")],
)  # fmt: skip
def test_record_errors_do_not_stop_the_rest_of_the_pack(record: dict[str, Any],
                                                         reason: str) -> None:  # fmt: skip
    pack = [{"bn": BN, "bt": T0, **record}, {"n": "x:pm25", "v": 3}]
    events = decode(pack)
    assert events[0] == Decoded({"pm2_5": 3.0}, device_time=T0)
    assert isinstance(events[1], DecodeError) and events[1].reason == reason


def test_names_are_never_part_of_a_reading() -> None:
    pack = [{"bn": "urn:dev:mac:0024befffe804ff1:", "bt": T0, "n": "x:pm25", "v": 3}]
    assert "0024befffe804ff1" not in repr(decode(pack))


def option_problems(options: dict[str, Any]) -> list[str]:
    """What `check` prints for a senml sensor with these options (key path: message)."""
    doc = {"gateway": {"id": "g", "borough": "camden", "location": {"lat": 51.5, "lon": -0.1}},
           "inputs": {"mqtt": {}}, "sinks": {"file": {}},
           "sensors": [{"id": "node", "driver": "senml", "mqtt": {"topic": "t"},
                        "options": options}]}  # fmt: skip
    try:
        parse_config(yaml.safe_dump(doc), "gw.yaml", {})
    except ConfigError as e:
        return [f"{p.path.removeprefix('sensors[0].options.')}: {p.message}" for p in e.problems]
    return []


def test_option_problems() -> None:
    problems = option_problems({"fields": [
        {"property": "t", "unit": "Cel"},
        {"name": "a", "suffix": "b", "property": "u", "unit": "Cel"},
        {"name": "", "property": "Bad", "unit": "degC"},
        {"suffix": "m", "property": "m", "type": "category", "unit": "Cel"},
        {"suffix": "n", "property": "n", "type": "category"},
        {"suffix": "o", "property": "o", "type": "category", "personal": True},
    ], "other": 1})  # fmt: skip
    for prefix in ("other:", "fields[0]: give exactly one", "fields[1]: give exactly one",
                   "fields[2].name:", "fields[2].property:", "fields[3].unit:",
                   "fields[4].allowed: a published category needs its vocabulary"):  # fmt: skip
        assert any(p.startswith(prefix) for p in problems), (prefix, problems)
    assert not any(p.startswith("fields[5]") for p in problems), problems  # personal: never leaves
    assert option_problems(OPTIONS) == []
    with pytest.raises(ValueError):
        senml.Decoder(senml.Options.model_validate({"fields": []}))


def test_catalogue_from_the_mapping() -> None:
    cat = senml.catalogue_for(senml.Options.model_validate(OPTIONS))
    assert [f.key for f in cat.fields] == ["temperature", "humidity", "pm2_5", "energy",
                                           "door_open", "mode", "passes"]  # fmt: skip
    passes = cat.field("passes")
    assert passes is not None and passes.unit == "{count}"
    assert passes.observation_type is ObservationType.COUNT


def test_a_mapped_role_makes_the_field_personal_as_for_generic_json() -> None:
    opts = senml.Options.model_validate({"fields": [
        {"suffix": ":people", "property": "people", "type": "count", "role": "person_count"},
        {"suffix": ":card", "property": "card", "type": "category", "personal": True},
    ]})  # fmt: skip
    cat = senml.catalogue_for(opts)
    people, card = cat.field("people"), cat.field("card")
    assert people is not None and people.role is Role.PERSON_COUNT and people.personal
    assert card is not None and card.role is Role.IDENTIFIER
    problems = option_problems({"fields": [
        {"suffix": ":x", "property": "x", "type": "count", "role": "reading", "personal": True}]})
    assert any("contradicts" in p for p in problems), problems


def test_simulated_pack_decodes() -> None:
    options = {"fields": [{"suffix": ":temp", "property": "temperature", "unit": "Cel"},
                          {"suffix": ":humidity", "property": "humidity", "unit": "%"},
                          {"suffix": ":pm25", "property": "pm2_5", "unit": "ug/m3"}]}  # fmt: skip
    [(topic, payload)] = senml.simulate(random.Random(8), T0, "senml/+")
    assert topic == "senml/node-1"
    events = senml.Decoder(senml.Options.model_validate(options)).decode(topic, payload)
    assert [(sorted(e.values), e.device_time) for e in events if isinstance(e, Decoded)] == [
        (["humidity", "pm2_5", "temperature"], T0), (["temperature"], T0 - 60)]  # fmt: skip
