from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config, parse_config, parse_duration, parse_size
from gateway.plan import PlanError, build_plan

GOOD = """\
gateway: {id: camden-lc-0423, borough: camden, location: {lat: 51.5390, lon: -0.1426}, data_dir: /tmp/x}
sensors:
  - {id: pm-north, driver: pms5003, serial: {port: /dev/ttyUSB0}}
sinks:
  influxdb: {url: "https://tsdb.example.london", org: london, bucket: street, token: "${INFLUX_TOKEN}"}
  file: {path: observations.jsonl}
outbox: {max_bytes: 1GiB, max_age: 30d, when_full: drop_oldest}
"""


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as e:
        parse_config(text, "gw.yaml", env or {})
    return [str(p) for p in e.value.problems]


def test_good_config_parses_units_and_secret() -> None:
    cfg = parse_config(GOOD, "gw.yaml", {"INFLUX_TOKEN": "s3cret"})
    assert cfg.outbox.max_bytes == 2**30
    assert cfg.outbox.max_age == 30 * 86400
    assert cfg.privacy.window == 900
    influx = cfg.sinks["influxdb"]
    assert influx.type == "influxdb" and influx.token is not None  # type: ignore[attr-defined]
    assert influx.token.get_secret_value() == "s3cret"  # type: ignore[attr-defined]
    assert "s3cret" not in repr(cfg)


def test_missing_secret_is_reported_with_file_line_and_key() -> None:
    assert problems(GOOD) == ["gw.yaml:5 sinks.influxdb.token: environment variable INFLUX_TOKEN is not set"]


def test_every_problem_is_reported_once_with_its_line() -> None:
    bad = GOOD.replace("port: /dev/ttyUSB0}", "port: /dev/ttyUSB0, baud: 9601}").replace(
        "when_full: drop_oldest", "when_full: drop_newest, colour: red"
    )
    got = problems(bad, {"INFLUX_TOKEN": "x"})
    assert got[0].startswith("gw.yaml:3 sensors[0].serial.baud: must be one of 1200")
    assert any(p.startswith("gw.yaml:7 outbox.when_full:") for p in got)
    assert "gw.yaml:7 outbox.colour: unknown key (check spelling; see `street-gateway schema`)" in got
    assert len(got) == 3


def test_wrong_type_names_the_key() -> None:
    got = problems(GOOD.replace("lat: 51.5390", "lat: north"), {"INFLUX_TOKEN": "x"})
    assert got == ["gw.yaml:1 gateway.location.lat: Input should be a valid number, unable to parse string as a number"]


# A YAML parser error becomes one plain sentence naming the line it is about (for an unclosed
# bracket or quote, the line where it opened)
YAML_MISTAKES = [
    pytest.param(
        "gateway: {id: a}\nsensors:\n  - id: pm\n    driver: pms5003\n   serial: {port: x}\n",
        "gw.yaml:5: this line is indented differently from the lines above it: keys of one mapping, "
        "and items of one list, must line up exactly", id="mis-indented-sensor-key"),
    pytest.param(
        "gateway: {id: a}\nsensors:\n- id: pm\n  driver: pms5003\n    serial: {port: x}\n",
        "gw.yaml:5: a `key:` where YAML cannot take one: check this line's indentation, or put quotes "
        "around a value that contains `: `", id="over-indented-key"),
    pytest.param(
        "gateway:\n  id: a\n  name: Camden: lamp 4\n",
        "gw.yaml:3: a `key:` where YAML cannot take one: check this line's indentation, or put quotes "
        "around a value that contains `: `", id="colon-in-value"),
    pytest.param(
        "sensors:\n  - id: a\n - id: b\n",
        "gw.yaml:3: this line is indented differently from the lines above it: keys of one mapping, "
        "and items of one list, must line up exactly", id="mis-indented-list-item"),
    pytest.param(
        "gateway:\n\tid: a\n",
        "gw.yaml:2: a tab or another character YAML cannot start a value with: indent with spaces only, "
        "and quote values that start with `@` or a backtick", id="tab"),
    pytest.param(
        "gateway: {id: a}\nsinks: [unclosed\nops: {}\n",
        "gw.yaml:2: a `[` list opened on this line is not closed with `]` (or a `,` is missing)", id="unclosed-list"),
    pytest.param(
        "gateway: {id: a, borough: b\nsensors: []\n",
        "gw.yaml:1: a `{` mapping opened on this line is not closed with `}` (or a `,` is missing)", id="unclosed-mapping"),
    pytest.param(
        "gateway: {id: 'a}\nsensors: []\n",
        "gw.yaml:1: a quote opened on this line is not closed", id="unclosed-quote"),
    pytest.param(
        "gateway:\n  id: a\n  borough\n  x: 1\n",
        "gw.yaml:3: a line in a mapping without `key: value` (a missing `:`?)", id="missing-colon"),
    pytest.param(
        "gateway: {id: a}\n---\ngateway: {id: b}\n",
        "gw.yaml:2: a second YAML document (`---`): one gateway per file", id="two-documents"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), YAML_MISTAKES)
def test_a_yaml_mistake_is_one_plain_sentence_with_its_line(text: str, expected: str) -> None:
    assert problems(text) == [expected]


def test_a_key_given_twice_is_refused_at_the_second_keys_line() -> None:
    text = GOOD + "sensors:\n  - {id: pm-south, driver: pms5003, serial: {port: /dev/ttyUSB1}}\n"
    assert problems(text, {"INFLUX_TOKEN": "x"}) == [
        "gw.yaml:8 sensors: given twice in one mapping (first at line 2); YAML would silently keep "
        "only the last: merge them or remove one"]


def test_a_nested_key_given_twice_is_refused_with_its_path() -> None:
    text = GOOD.replace("  file: {path: observations.jsonl}",
                        "  file: {path: observations.jsonl, path: other.jsonl}")  # fmt: skip
    (p,) = problems(text, {"INFLUX_TOKEN": "x"})
    assert p.startswith("gw.yaml:6 sinks.file.path: given twice in one mapping (first at line 6)")


def test_a_duplicate_sensor_id_is_refused_at_its_own_line() -> None:
    text = GOOD.replace(
        "  - {id: pm-north, driver: pms5003, serial: {port: /dev/ttyUSB0}}",
        "  - {id: pm-north, driver: pms5003, serial: {port: /dev/ttyUSB0}}\n"
        "  - {id: pm-south, driver: pms5003, serial: {port: /dev/ttyUSB2}}\n"
        "  - id: pm-north\n"
        "    driver: pms5003\n"
        "    serial: {port: /dev/ttyUSB1}",
    )
    assert problems(text, {"INFLUX_TOKEN": "x"}) == [
        "gw.yaml:5 sensors[2].id: sensor id 'pm-north' is used twice (first by sensors[0]); "
        "Datastream ids derive from it, so each sensor needs its own"]


def _duration_fields() -> list[tuple[str, list[object]]]:
    """Every Duration-typed field (optional ones too) of the whole config, sinks, sources and
    driver options, with the constraints that apply to it."""
    from pydantic import BaseModel

    from firmware_bridge.drivers import REGISTERED
    from firmware_bridge.options import parse_duration as fb_parse
    from gateway.config import full_config_model, parse_duration
    from gateway.sinks import SINKS
    from gateway.sources import SOURCES

    models: list[type[BaseModel]] = [full_config_model(), *(s.settings for s in SINKS.values()),
                                     *(d.options for d in REGISTERED)]  # fmt: skip
    models += [m for s in SOURCES.values() for m in (s.section, s.inputs) if m is not None]
    out: list[tuple[str, list[object]]] = []
    seen: set[type[BaseModel]] = set()

    def is_duration(meta: list[object]) -> bool:
        return any(getattr(m, "func", None) in (parse_duration, fb_parse) for m in meta)

    def walk(model: type[BaseModel]) -> None:
        if model in seen:
            return
        seen.add(model)
        for name, info in model.model_fields.items():
            types, metas = _parts(info.annotation)
            for meta in [list(info.metadata), *metas]:
                if is_duration(meta):
                    out.append((f"{model.__name__}.{name}", [*meta, *info.metadata]))
                    break
            for t in types:
                if isinstance(t, type) and issubclass(t, BaseModel):
                    walk(t)

    for m in models:
        walk(m)
    return out


def _parts(annotation: object) -> tuple[list[object], list[list[object]]]:
    """(the plain types inside an annotation, the metadata of every Annotated inside it)."""
    import typing

    if typing.get_origin(annotation) is typing.Annotated:
        types, metas = _parts(typing.get_args(annotation)[0])
        from pydantic.fields import FieldInfo

        meta = [x for m in annotation.__metadata__  # type: ignore[attr-defined]
                for x in (m.metadata if isinstance(m, FieldInfo) else [m])]  # fmt: skip
        return types, [meta, *metas]
    args = typing.get_args(annotation)
    if not args:
        return [annotation], []
    types, metas = [], []
    for a in args:
        t, m = _parts(a)
        types += t
        metas += m
    return types, metas


# Durations where zero is a meaningful setting; every other Duration must refuse zero
ZERO_MEANS = {
    "SensorPrivacy.delay": "publish without holding back",
    "PrivacyZone.delay": "publish without holding back",
    "OutboxSection.group_commit": "commit each reading at once",
    "ClockSection.max_hold": "send provisional rows at once, flagged, without waiting for a sync",
    "Settings.flush_interval": "a sink writes as soon as rows are committed (every sink's Settings)",
    "SensorThingsSettings.flush_interval": "the same, for the sensorthings sink",
}


def test_every_duration_refuses_zero_unless_zero_means_something() -> None:
    fields = _duration_fields()
    names = {n for n, _ in fields}
    assert {"PrivacySection.window", "SensorPrivacy.window", "PrivacyZone.window", "Options.dwell_max",
            *ZERO_MEANS} <= names, names  # fmt: skip
    for name, meta in fields:
        gt = [m.gt for m in meta if type(m).__name__ == "Gt"]  # type: ignore[attr-defined]
        ge = [m.ge for m in meta if type(m).__name__ == "Ge"]  # type: ignore[attr-defined]
        if name in ZERO_MEANS:
            assert ge and max(ge) >= 0, f"{name} accepts negative durations"
        else:
            assert (gt and max(gt) >= 0) or (ge and max(ge) > 0), f"{name} accepts 0 s, which makes no sense there"


@pytest.mark.parametrize(("replace", "expected"), [
    (("outbox: {", "privacy: {window: 0s}\noutbox: {"), "gw.yaml:7 privacy.window: Input should be greater than 0"),
    (("outbox: {", "privacy: {salt_rotation: 0}\noutbox: {"), "gw.yaml:7 privacy.salt_rotation: Input should be greater than 0"),
    (("outbox: {", "privacy: {footfall: {dwell_max: 0m}}\noutbox: {"), "gw.yaml:7 privacy.footfall.dwell_max: Input should be greater than 0"),
    (("max_age: 30d", "max_age: 0d"), "gw.yaml:7 outbox.max_age: Input should be greater than 0"),
    (("port: /dev/ttyUSB0}}", "port: /dev/ttyUSB0}, privacy: {window: 0s}}"), "gw.yaml:3 sensors[0].privacy.window: Input should be greater than 0"),
    (("port: /dev/ttyUSB0}}", "port: /dev/ttyUSB0}, privacy: {delay: -5}}"), "gw.yaml:3 sensors[0].privacy.delay: Input should be greater than or equal to 0"),
    (("port: /dev/ttyUSB0}}", "port: /dev/ttyUSB0}, privacy: {delay: -5s}}"), "gw.yaml:3 sensors[0].privacy.delay: must be a duration like 15m, 24h or 30d, not '-5s'"),
    (("token: \"${INFLUX_TOKEN}\"}", "token: \"${INFLUX_TOKEN}\", timeout: 0s}"), "gw.yaml:5 sinks.influxdb.timeout: Input should be greater than 0"),
])  # fmt: skip
def test_a_zero_or_negative_duration_is_refused_with_its_line(replace: tuple[str, str], expected: str) -> None:
    assert replace[0] in GOOD
    assert problems(GOOD.replace(*replace), {"INFLUX_TOKEN": "x"}) == [expected]


def test_secret_file_is_read_and_missing_file_reported(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("from-file\n")
    text = GOOD.replace('token: "${INFLUX_TOKEN}"', f"token_file: {token}")
    cfg = parse_config(text, "gw.yaml", {})
    influx = cfg.sinks["influxdb"]
    assert influx.token.get_secret_value() == "from-file"  # type: ignore[attr-defined]
    got = problems(text.replace(str(token), str(tmp_path / "absent")))
    assert got == [f"gw.yaml:5 sinks.influxdb.token_file: cannot read secret file {tmp_path / 'absent'}: No such file or directory"]
    token.write_text("\n")
    assert problems(text) == [f"gw.yaml:5 sinks.influxdb.token_file: secret file {token} is empty"]


def test_an_empty_secret_is_refused_wherever_it_comes_from() -> None:
    assert problems(GOOD, {"INFLUX_TOKEN": ""}) == [
        "gw.yaml:5 sinks.influxdb.token: environment variable INFLUX_TOKEN is set but empty"]
    text = GOOD + "inputs: {mqtt: {host: 127.0.0.1, username: gw, password: \"${LOCAL_PW}\"}}\n"
    assert problems(text, {"INFLUX_TOKEN": "x", "LOCAL_PW": ""}) == [
        "gw.yaml:8 inputs.mqtt.password: environment variable LOCAL_PW is set but empty"]


def test_an_empty_secret_field_of_any_plugin_is_refused() -> None:
    """The generic walk finds every empty `SecretStr`, whichever plugin declared it, even one
    without a validator of its own."""
    from pydantic import SecretStr

    from gateway.config import _empty_secrets
    from gateway.configtypes import Strict

    class Nested(Strict):
        api_key: SecretStr | None = None

    class Settings(Strict):
        inner: Nested
        keys: list[SecretStr]

    got = list(_empty_secrets(Settings(inner=Nested(api_key=SecretStr("")), keys=[SecretStr("k"), SecretStr("")]), ("sinks", "x")))
    assert got == [("sinks", "x", "inner", "api_key"), ("sinks", "x", "keys", 1)]


def test_without_secrets_a_config_loads_with_placeholders_that_cannot_run(tmp_path: Path) -> None:
    from gateway.pipeline import Pipeline

    text = GOOD.replace('token: "${INFLUX_TOKEN}"', "token_file: /nonexistent/influx-token")
    cfg = parse_config(text, "gw.yaml", {}, secrets=False)
    assert not cfg.secrets_resolved
    token = cfg.sinks["influxdb"].token.get_secret_value()  # type: ignore[attr-defined]
    assert token == "<secret from /nonexistent/influx-token, not read>"
    cfg = parse_config(GOOD, "gw.yaml", {}, secrets=False)
    assert cfg.sinks["influxdb"].token.get_secret_value() == "${INFLUX_TOKEN}"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="without its secrets"):
        Pipeline(cfg)


def test_unknown_driver_is_refused_with_line() -> None:
    (p,) = problems(GOOD.replace("pms5003", "pms9999"), {"INFLUX_TOKEN": "x"})
    assert p.startswith("gw.yaml:3 sensors[0].driver: unknown driver 'pms9999'; known:")
    assert "pms5003" in p and "wifi_probe_sniffer" in p


def test_publishing_a_personal_or_unknown_field_is_refused() -> None:
    text = GOOD.replace("port: /dev/ttyUSB0}}", "port: /dev/ttyUSB0}, privacy: {publish: [pm2_5, mac]}}")
    cfg = parse_config(text, "gw.yaml", {"INFLUX_TOKEN": "x"})
    with pytest.raises(PlanError) as e:
        build_plan(cfg)
    assert "'mac' is not a property of this driver" in str(e.value)


@pytest.mark.parametrize(("options", "expected"), [
    ("{mode: querry}", "gw.yaml:3 sensors[0].options.mode: Input should be 'active' or 'passive'"),
    ("{interval_s: -5}", "gw.yaml:3 sensors[0].options.interval_s: Input should be greater than or equal to 0.2"),
    ("{colour: red}", "gw.yaml:3 sensors[0].options.colour: unknown key (check spelling; see `street-gateway schema`)"),
    ("{duty_cycle: {work_s: 30}}", "gw.yaml:3 sensors[0].options.duty_cycle.sleep_s: is required"),
])  # fmt: skip
def test_a_bad_driver_option_is_refused_at_check_with_its_line(options: str, expected: str) -> None:
    text = GOOD.replace("port: /dev/ttyUSB0}}", f"port: /dev/ttyUSB0}}, options: {options}}}")
    assert problems(text, {"INFLUX_TOKEN": "x"}) == [expected]


def test_a_bad_option_is_located_on_its_own_line_in_block_style() -> None:
    text = GOOD.replace("  - {id: pm-north, driver: pms5003, serial: {port: /dev/ttyUSB0}}", (
        "  - id: meter\n"
        "    driver: eastron_sdm\n"
        "    serial: {port: /dev/ttyUSB0}\n"
        "    options:\n"
        "      model: sdm999\n"
        "      address: 999\n"))  # fmt: skip
    got = problems(text, {"INFLUX_TOKEN": "x"})
    assert got == [
        "gw.yaml:7 sensors[0].options.model: Input should be 'sdm120' or 'sdm630'",
        "gw.yaml:8 sensors[0].options.address: Input should be less than or equal to 247",
    ]


def test_a_cross_field_option_problem_names_the_key() -> None:
    text = GOOD.replace("  - {id: pm-north, driver: pms5003, serial: {port: /dev/ttyUSB0}}", (
        "  - id: meter\n"
        "    driver: eastron_sdm\n"
        "    serial: {port: /dev/ttyUSB0}\n"
        "    options:\n"
        "      model: sdm630\n"
        "      interval_s: 0.5\n"))  # fmt: skip
    (p,) = problems(text, {"INFLUX_TOKEN": "x"})
    assert p.startswith("gw.yaml:8 sensors[0].options.interval_s: a sdm630 cycle reads")


def test_sinks_are_named_instances_with_a_type() -> None:
    text = GOOD.replace("  file: {path: observations.jsonl}",
                        "  file: {path: observations.jsonl}\n"
                        "  open-data: {type: mqtt, host: a.example, password: x}\n"
                        "  backup-feed: {type: mqtt, host: b.example, port: 8884}")  # fmt: skip
    cfg = parse_config(text, "gw.yaml", {"INFLUX_TOKEN": "x"})
    assert [(n, s.type) for n, s in cfg.sinks.items()] == [
        ("influxdb", "influxdb"), ("file", "file"), ("open-data", "mqtt"), ("backup-feed", "mqtt")]


def test_a_sink_without_a_type_is_refused_with_the_known_types() -> None:
    text = GOOD.replace("  file: {path: observations.jsonl}", "  archive: {path: observations.jsonl}")
    (p,) = problems(text, {"INFLUX_TOKEN": "x"})
    assert p.startswith("gw.yaml:6 sinks.archive.type: is required (one of: file, influxdb, mqtt")


@pytest.mark.parametrize(("text", "seconds"), [("15m", 900), ("24h", 86400), ("30d", 2592000), ("500ms", 0.5), (90, 90)])
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "size"), [("1GiB", 2**30), ("64MiB", 64 * 2**20), ("500MB", 500 * 10**6), (1024, 1024)])
def test_sizes(text: str | int, size: int) -> None:
    assert parse_size(text) == size


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "nope.yaml")
    assert str(e.value).endswith("cannot read: No such file or directory")


def test_two_sensors_on_one_serial_port_are_refused_at_the_second() -> None:
    text = GOOD.replace(
        "  - {id: pm-north, driver: pms5003, serial: {port: /dev/ttyUSB0}}",
        "  - {id: pm-north, driver: pms5003, serial: {port: /dev/ttyUSB0}}\n"
        "  - {id: pm-south, driver: sds011, serial: {port: /dev/ttyUSB0}}",
    )
    with pytest.raises(PlanError) as e:
        build_plan(parse_config(text, "gw.yaml", {"INFLUX_TOKEN": "x"}))
    assert [str(p) for p in e.value.problems] == [
        "gw.yaml:4 sensors[1].serial.port: this port is already used by sensor 'pm-north'"]


def test_two_sensors_on_one_topic_filter_are_refused_at_the_second() -> None:
    text = GOOD.replace(
        "  - {id: pm-north, driver: pms5003, serial: {port: /dev/ttyUSB0}}",
        "  - {id: a, driver: paxcounter, mqtt: {topic: pax/+}}\n"
        "  - {id: b, driver: paxcounter, mqtt: {topic: pax/+}}\n"
        "inputs: {mqtt: {}}",
    )
    with pytest.raises(PlanError) as e:
        build_plan(parse_config(text, "gw.yaml", {"INFLUX_TOKEN": "x"}))
    assert [str(p) for p in e.value.problems] == [
        "gw.yaml:4 sensors[1].mqtt.topic: this topic filter is already used by sensor 'a'"]


def test_a_config_loads_only_the_drivers_it_names_and_the_schema_has_them_all() -> None:
    """Issue 19: `run` imports the configured drivers only (each is ~0.3 MiB of a Pi's memory);
    options are still checked by the driver's own model, and `schema` still has every driver."""
    import subprocess
    import sys

    code = """
import json, sys
from gateway.config import parse_config, json_schema
cfg = parse_config('''
gateway: {id: g, borough: camden, location: {lat: 51.5, lon: -0.1}}
inputs: {mqtt: {host: 127.0.0.1}}
sensors:
  - {id: a, driver: generic_json, mqtt: {topic: a/json}, options: {fields: [{path: v, property: pm2_5, unit: ug/m3}]}}
  - {id: b, driver: pms7003, serial: {port: /dev/ttyUSB0}}
''', 'g.yaml', env={})
loaded = sorted(m.rsplit('.', 1)[1] for m in sys.modules if m.startswith('firmware_bridge.drivers.'))
try:
    parse_config('''
gateway: {id: g, borough: camden, location: {lat: 51.5, lon: -0.1}}
inputs: {mqtt: {host: 127.0.0.1}}
sensors:
  - {id: a, driver: generic_json, mqtt: {topic: a/json}, options: {fields: [{path: v, property: pm2_5, unit: bogus}]}}
''', 'g.yaml', env={})
    bad = ''
except Exception as e:
    bad = str(e)
drivers = json_schema()['$defs']
print(json.dumps([loaded, bad, sorted(k for k in drivers if k.startswith('Sensor_'))]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout  # fmt: skip
    import json

    from firmware_bridge.drivers import REGISTERED

    loaded, bad, in_schema = json.loads(out)
    assert loaded == ["generic_json", "pms5003"]  # pms7003 is an alias of pms5003
    assert bad.startswith("g.yaml:5 sensors[0].options.fields[0].unit")
    assert in_schema == sorted(f"Sensor_{d.name}" for d in REGISTERED)


def test_a_config_loads_only_the_sinks_and_sources_it_names_and_the_schema_has_them_all() -> None:
    """Issue 19: the sink and source registries import a plugin when it is first looked up, so
    loading and planning a config imports only the sinks and sources it names; an unknown sink
    type is still refused with every registered name, and `schema` still has every plugin."""
    import subprocess
    import sys

    code = """
import json, sys
from gateway.config import parse_config, json_schema, ConfigError
from gateway.plan import build_plan
head = '''
gateway: {id: g, borough: camden, location: {lat: 51.5, lon: -0.1}}
inputs: {mqtt: {host: 127.0.0.1}}
sensors:
  - {id: a, driver: generic_json, mqtt: {topic: a/json}, options: {fields: [{path: v, property: pm2_5, unit: ug/m3}]}}
'''
cfg = parse_config(head + '''
sinks:
  file: {path: o.jsonl}
  tsdb: {type: influxdb, url: 'http://127.0.0.1:8428', org: o, bucket: b, token: t}
''', 'g.yaml', env={})
build_plan(cfg)
plugins = sorted(m for m in sys.modules if m.startswith(('gateway.sinks.', 'gateway.sources.')) or m == 'serial')
try:
    parse_config(head + '''
sinks:
  file: {path: o.jsonl}
  x: {type: bogus}
''', 'g.yaml', env={})
    bad = ''
except ConfigError as e:
    bad = str(e)
schema = json_schema()
sinks = next(iter(schema['properties']['sinks']['patternProperties'].values()))['discriminator']['mapping']
print(json.dumps([plugins, bad, sorted(sinks), sorted(schema['$defs']['Inputs']['properties'])]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout  # fmt: skip
    import json

    from gateway.sinks import SINKS
    from gateway.sources import SOURCES

    plugins, bad, sink_types, inputs = json.loads(out)
    # jsonlines: the torn-line trim of the file sink (and of sensorthings' parked rows);
    # keepalive: the HTTP client of the influxdb sink (and of sensorthings, not loaded here)
    assert plugins == ["gateway.sinks.base", "gateway.sinks.file", "gateway.sinks.influxdb", "gateway.sinks.jsonlines",
                       "gateway.sinks.keepalive", "gateway.sources.base", "gateway.sources.mqtt",
                       "gateway.sources.stamp"]  # fmt: skip
    assert bad == "g.yaml:9 sinks.x.type: unknown sink type 'bogus'; known: file, influxdb, mqtt, sensorthings"
    assert sink_types == sorted(SINKS) == ["file", "influxdb", "mqtt", "sensorthings"]
    assert inputs == sorted(n for n, spec in SOURCES.items() if spec.inputs) == ["mqtt", "ocpp"]
