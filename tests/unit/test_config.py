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


def test_yaml_syntax_error_has_a_line() -> None:
    got = problems(GOOD + "sinks: [unclosed\n")
    assert len(got) == 1 and got[0].startswith("gw.yaml:") and "YAML syntax" in got[0]


def test_secret_file_is_read_and_missing_file_reported(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("from-file\n")
    text = GOOD.replace('token: "${INFLUX_TOKEN}"', f"token_file: {token}")
    cfg = parse_config(text, "gw.yaml", {})
    influx = cfg.sinks["influxdb"]
    assert influx.token.get_secret_value() == "from-file"  # type: ignore[attr-defined]
    got = problems(text.replace(str(token), str(tmp_path / "absent")))
    assert got == ["gw.yaml:5 sinks.influxdb.token_file: cannot read secret file: No such file or directory"]


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


def test_duplicate_sensor_ids_are_refused() -> None:
    text = GOOD.replace(
        "  - {id: pm-north, driver: pms5003, serial: {port: /dev/ttyUSB0}}",
        "  - {id: pm-north, driver: pms5003, serial: {port: /dev/ttyUSB0}}\n"
        "  - {id: pm-north, driver: pms5003, serial: {port: /dev/ttyUSB1}}",
    )
    assert any("used twice" in p for p in problems(text, {"INFLUX_TOKEN": "x"}))


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
