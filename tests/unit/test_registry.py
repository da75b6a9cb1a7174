"""The plugin contract, checked for everything in the registries the moment it is registered.

Drivers, codecs, sources, sinks and estimators are each one module plus one registry line. These tests
iterate the registries, so a new plugin is held to the same rules without anyone listing it:
its options model refuses unknown keys, wrong types and out-of-range values (generated from its
own JSON Schema, and reported by `check` with the key path); its catalogue is consistent (valid
UCUM units, unique keys, known estimators); it has a doc; a serial driver's simulated device
round-trips through the same session the serial source runs.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from firmware_bridge import units
from firmware_bridge.base import Decoded, Role
from firmware_bridge.codecs import CODECS
from firmware_bridge.driver import Driver, MessageDriver, SerialDriver
from firmware_bridge.drivers import DRIVERS, REGISTERED
from firmware_bridge.lorawan_profile import LorawanOptions
from firmware_bridge.options import DriverOptions
from gateway.config import ConfigError, json_schema, parse_config
from gateway.plan import build_plan
from gateway.privacy.disclosure import validate_aggregation
from gateway.privacy.estimators import ESTIMATORS
from gateway.sinks import SINKS
from gateway.sources import SOURCES
from tests.unit.stream_harness import exchange

ROOT = Path(__file__).parents[2]
IDS = [d.name for d in REGISTERED]
SERIAL = [d for d in REGISTERED if isinstance(d, SerialDriver)]


def valid_options(driver: Driver) -> DriverOptions:
    """Defaults, or the driver's example when its options are a mapping the user must write."""
    if isinstance(driver, MessageDriver) and driver.example_options:
        return driver.options.model_validate(driver.example_options)
    return driver.options()


def base_options(driver: Driver) -> dict[str, Any]:
    if isinstance(driver, MessageDriver):
        return dict(driver.example_options)
    return {}


# --------------------------------------------------------------------------- generated bad options


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref:
        return _resolve(root["$defs"][ref.rsplit("/", 1)[-1]], root)
    any_of = [s for s in schema.get("anyOf", []) if s.get("type") != "null"]
    if len(any_of) == 1:
        return _resolve(any_of[0], root)
    return schema


WRONG_TYPE = {
    "integer": "not-a-number", "number": "not-a-number", "boolean": "not-a-bool",
    "string": ["a", "list"], "array": 7, "object": "text",
}  # fmt: skip


def bad_variants(model: type[BaseModel], base: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(what, key, options) that must be refused: an unknown key, and for every option a wrong
    type, a value below its minimum, above its maximum, and outside its choices."""
    root = model.model_json_schema()
    out: list[tuple[str, str, dict[str, Any]]] = [("unknown key", "colour", {**base, "colour": 1})]
    for key, prop in root.get("properties", {}).items():
        s = _resolve(prop, root)
        kind = s.get("type")
        if kind in WRONG_TYPE:
            out.append(("wrong type", key, {**base, key: WRONG_TYPE[kind]}))
        for bound, delta in (("minimum", -1), ("exclusiveMinimum", 0), ("maximum", 1), ("exclusiveMaximum", 0)):
            if bound in s:
                value = s[bound] + delta if kind != "integer" or delta else s[bound]
                if kind == "integer":
                    value = int(value)
                out.append((bound, key, {**base, key: value}))
        choices = s.get("enum") or ([s["const"]] if "const" in s else None)
        if choices:
            out.append(("not a choice", key, {**base, key: "no-such-choice"}))
        if kind == "array" and s.get("minItems"):
            out.append(("too few items", key, {**base, key: []}))
    return out


CASES = [(d.name, what, key, opts) for d in REGISTERED
         for what, key, opts in bad_variants(d.options, base_options(d))]  # fmt: skip


@pytest.mark.parametrize(("driver", "what", "key", "options"), CASES,
                         ids=[f"{c[0]}-{c[2]}-{c[1]}" for c in CASES])  # fmt: skip
def test_every_driver_options_model_refuses_bad_values(driver: str, what: str, key: str,
                                                       options: dict[str, Any]) -> None:  # fmt: skip
    with pytest.raises(ValidationError) as e:
        DRIVERS[driver].options.model_validate(options)
    assert any(err["loc"] and err["loc"][0] == key for err in e.value.errors()), e.value


@pytest.mark.parametrize("driver", REGISTERED, ids=IDS)
def test_check_reports_a_bad_option_with_its_line_and_key(driver: Driver) -> None:
    """End to end through the config loader, as `check` prints it."""
    transport = driver.transports[0]
    section = {"port": "/dev/ttyUSB0"} if transport == "serial" else {"topic": "t/+"}
    doc = {"gateway": {"id": "g", "borough": "camden", "location": {"lat": 51.5, "lon": -0.1}},
           "inputs": {"mqtt": {}}, "sinks": {"file": {}},
           "sensors": [{"id": "s", "driver": driver.name, transport: section,
                        "options": {**base_options(driver), "colour": 1}}]}  # fmt: skip
    text = yaml.safe_dump(doc, sort_keys=False)
    line = 1 + next(i for i, t in enumerate(text.splitlines()) if t.strip().startswith("colour:"))
    with pytest.raises(ConfigError) as e:
        parse_config(text, "gw.yaml", {})
    assert [str(p) for p in e.value.problems] == [
        f"gw.yaml:{line} sensors[0].options.colour: unknown key (check spelling; see `street-gateway schema`)"
    ]


def test_the_generated_cases_cover_every_driver_option() -> None:
    for d in REGISTERED:
        keys = set(d.options.model_json_schema().get("properties", {}))
        tested = {key for name, _, key, _ in CASES if name == d.name}
        assert keys <= tested, (d.name, keys - tested)


# --------------------------------------------------------------------------- codecs

# the message profiles that choose a codec per fPort: every codec is checked through each of them
CODEC_HOSTS = [d for d in REGISTERED if issubclass(d.options, LorawanOptions)]
CODEC_CASES = [(name, what, key, opts) for name, spec in CODECS.items()
               for what, key, opts in bad_variants(spec.Options, dict(spec.example_options))]  # fmt: skip


def test_codecs_have_a_host_profile() -> None:
    assert CODEC_HOSTS and CODECS


@pytest.mark.parametrize(("codec", "what", "key", "options"), CODEC_CASES,
                         ids=[f"{c[0]}-{c[2]}-{c[1]}" for c in CODEC_CASES])  # fmt: skip
def test_every_codec_options_model_refuses_bad_values(codec: str, what: str, key: str,
                                                      options: dict[str, Any]) -> None:  # fmt: skip
    with pytest.raises(ValidationError) as e:
        CODECS[codec].Options.model_validate(options)
    assert any(err["loc"] and err["loc"][0] == key for err in e.value.errors()), e.value


def test_the_generated_cases_cover_every_codec_option() -> None:
    for name, spec in CODECS.items():
        keys = set(spec.Options.model_json_schema().get("properties", {}))
        tested = {key for codec, _, key, _ in CODEC_CASES if codec == name}
        assert keys <= tested, (name, keys - tested)


def _lorawan_doc(host: Driver, options: dict[str, Any]) -> str:
    doc = {"gateway": {"id": "g", "borough": "camden", "location": {"lat": 51.5, "lon": -0.1}},
           "inputs": {"mqtt": {}}, "sinks": {"file": {}},
           "sensors": [{"id": "s", "driver": host.name, "mqtt": {"topic": "t/+"},
                        "options": options}]}  # fmt: skip
    return yaml.safe_dump(doc, sort_keys=False)


@pytest.mark.parametrize("host", CODEC_HOSTS, ids=[d.name for d in CODEC_HOSTS])
@pytest.mark.parametrize("codec", sorted(CODECS))
def test_check_reports_a_bad_codec_option_with_its_line_and_key(host: Driver, codec: str) -> None:
    """Through the profile that hosts it, as `check` prints it: the codec's own options path."""
    spec = CODECS[codec]
    options = {**base_options(host), "ports": {7: {"codec": codec,
                                                   "options": {**spec.example_options, "colour": 1}}}}  # fmt: skip
    text = _lorawan_doc(host, options)
    line = 1 + next(i for i, t in enumerate(text.splitlines()) if t.strip().startswith("colour:"))
    with pytest.raises(ConfigError) as e:
        parse_config(text, "gw.yaml", {})
    assert [str(p) for p in e.value.problems] == [
        f"gw.yaml:{line} sensors[0].options.ports[7].options.colour: unknown key (check spelling; see `street-gateway schema`)"
    ]


@pytest.mark.parametrize("host", CODEC_HOSTS, ids=[d.name for d in CODEC_HOSTS])
def test_check_names_the_known_codecs_when_one_is_unknown(host: Driver) -> None:
    text = _lorawan_doc(host, {**base_options(host), "ports": {7: {"codec": "no_such_codec"}}})
    with pytest.raises(ConfigError) as e:
        parse_config(text, "gw.yaml", {})
    [problem] = [str(p) for p in e.value.problems]
    assert "sensors[0].options.ports[7].codec: unknown codec 'no_such_codec'; known: " in problem
    assert all(name in problem for name in CODECS)


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_every_codec_has_a_doc_a_strict_options_model_and_a_consistent_catalogue(codec: str) -> None:
    spec = CODECS[codec]
    assert spec.name == codec and (ROOT / spec.doc).is_file(), spec.doc
    assert issubclass(spec.Options, DriverOptions)
    assert spec.Options.model_config.get("extra") == "forbid"
    assert spec.Options.model_config.get("frozen") is True
    cat = spec.catalogue_for(spec.Options.model_validate(spec.example_options))
    assert cat.driver == codec and cat.fields
    keys = [f.key for f in cat.fields]
    assert len(keys) == len(set(keys))
    for f in cat.fields:
        assert f.unit is None or units.problem(f.unit) is None, (f.key, f.unit)
        if f.derived:
            assert f.source in keys and not f.personal, f.key
        if f.role is Role.PERSON_COUNT:  # a person count never leaves raw: it has an aggregate
            assert any(a.source == f.key for a in cat.fields if a.derived), f.key
    for host in CODEC_HOSTS:  # and the hosting profile's catalogue carries it whole
        options = host.options.model_validate({**base_options(host), "ports": {
            7: {"codec": codec, "options": spec.example_options}}, "decoded": None})  # fmt: skip
        assert set(keys) <= {f.key for f in host.catalogue_for(options).fields}


# --------------------------------------------------------------------------- catalogues and docs


@pytest.mark.parametrize("driver", REGISTERED, ids=IDS)
def test_every_driver_has_a_doc_a_strict_options_model_and_a_consistent_catalogue(driver: Driver) -> None:
    assert (ROOT / driver.doc).is_file(), driver.doc
    assert issubclass(driver.options, DriverOptions)
    assert driver.options.model_config.get("extra") == "forbid"
    cat = driver.catalogue_for(valid_options(driver))
    keys = [f.key for f in cat.fields]
    assert len(keys) == len(set(keys))
    for f in cat.fields:
        assert f.unit is None or units.problem(f.unit) is None, (f.key, f.unit)
        if f.derived:
            assert f.source in keys and not f.personal, f.key
            assert f.estimator is None or f.estimator in ESTIMATORS, f.estimator
            assert all(i in keys for i in f.inputs), f.inputs
        if f.role is Role.IDENTIFIER:
            assert f.unit is None, f"identifier {f.key} has a unit"
    described = driver.describe(valid_options(driver))
    assert described["driver"] == driver.name and len(described["fields"]) == len(cat.fields)


@pytest.mark.parametrize("driver", REGISTERED, ids=IDS)
def test_no_catalogue_aggregate_publishes_one_persons_value(driver: Driver) -> None:
    """Disclosure control (issue 12): an aggregate of a personal field must be one the privacy
    stage can protect in contributors (e.g. an increment of a running total, the max of a
    device-made people count), never the last, min or max of a person's value."""
    cat = driver.catalogue_for(valid_options(driver))
    for f in cat.fields:
        source = cat.field(f.source) if f.source is not None else None
        if f.derived and source is not None and source.personal and f.estimator is None:
            assert validate_aggregation(source.role.value, f.aggregation.value) is None, (f.key, source.role)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_every_source_has_a_doc_and_strict_sections(name: str) -> None:
    spec = SOURCES[name]
    assert spec.name == name and (ROOT / spec.doc).is_file(), spec.doc
    assert spec.section.model_config.get("extra") == "forbid"
    if spec.inputs is not None:
        assert spec.inputs.model_config.get("extra") == "forbid"


@pytest.mark.parametrize("name", sorted(SINKS))
def test_every_sink_has_a_doc_a_strict_typed_settings_model_and_describes_itself(name: str) -> None:
    spec = SINKS[name]
    assert spec.name == name and (ROOT / spec.doc).is_file(), spec.doc
    settings = spec.settings
    assert settings.model_config.get("extra") == "forbid"
    schema = settings.model_json_schema()
    assert schema["properties"]["type"].get("const", schema["properties"]["type"].get("default")) == name


def test_every_driver_sink_and_source_is_in_the_exported_schema() -> None:
    text = str(json_schema())
    for d in REGISTERED:
        assert f"Sensor_{d.name}" in text
    for name in SINKS:
        assert f"'{name}'" in text


def test_every_registered_driver_is_documented_in_the_readme_driver_table() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [d.name for d in REGISTERED if f"`{d.name}`" not in readme]
    assert not missing, f"README does not list: {missing}"


# --------------------------------------------------------------------------- serial round trip


@pytest.mark.parametrize("driver", SERIAL, ids=[d.name for d in SERIAL])
@pytest.mark.parametrize("seed", [1, 2])
def test_every_serial_driver_round_trips_its_simulated_device_through_the_source_session(
    driver: SerialDriver, seed: int
) -> None:
    """What the serial source runs for one port (decoder and poller from `session`), against the
    driver's simulated device: every value the device reported is decoded, nothing else."""
    decoder, poller = driver.session(driver.options())
    device = driver.new_device(random.Random(seed))
    events = exchange(device, poller, decoder, start=100.0, step=0.1, steps=400)  # type: ignore[arg-type]
    decoded = [dict(e.values) for e in events if isinstance(e, Decoded)]
    assert device.sent, "the device never reported"
    assert decoded == [{k: v for k, v in s.items() if k in d} for s, d in zip(device.sent, decoded, strict=True)]


def test_a_config_using_every_driver_plans() -> None:
    """One sensor per registered driver (example options) plans without a problem."""
    sensors = []
    for i, d in enumerate(REGISTERED):
        transport = d.transports[0]
        section = {"port": f"/dev/ttyUSB{i}"} if transport == "serial" else {"topic": f"t/{i}/+"}
        sensors.append({"id": f"s{i}", "driver": d.name, transport: section, "options": base_options(d)})
    doc = {"gateway": {"id": "g", "borough": "camden", "location": {"lat": 51.5, "lon": -0.1}},
           "inputs": {"mqtt": {}}, "sinks": {"file": {}}, "sensors": sensors}  # fmt: skip
    plan = build_plan(parse_config(yaml.safe_dump(doc), "gw.yaml", {}))
    assert len(plan.sensors) == len(REGISTERED)
