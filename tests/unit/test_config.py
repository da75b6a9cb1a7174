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
    assert cfg.sinks.influxdb is not None and cfg.sinks.influxdb.token is not None
    assert cfg.sinks.influxdb.token.get_secret_value() == "s3cret"
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
    assert cfg.sinks.influxdb and cfg.sinks.influxdb.token
    assert cfg.sinks.influxdb.token.get_secret_value() == "from-file"
    got = problems(text.replace(str(token), str(tmp_path / "absent")))
    assert got == ["gw.yaml:5 sinks.influxdb.token_file: cannot read secret file: No such file or directory"]


def test_unknown_driver_is_a_plan_problem_with_line() -> None:
    cfg = parse_config(GOOD.replace("pms5003", "pms9999"), "gw.yaml", {"INFLUX_TOKEN": "x"})
    with pytest.raises(PlanError) as e:
        build_plan(cfg)
    (p,) = e.value.problems
    assert str(p).startswith("gw.yaml:3 sensors[0].driver: unknown driver 'pms9999'; known:")


def test_publishing_a_personal_or_unknown_field_is_refused() -> None:
    text = GOOD.replace("port: /dev/ttyUSB0}}", "port: /dev/ttyUSB0}, privacy: {publish: [pm2_5, mac]}}")
    cfg = parse_config(text, "gw.yaml", {"INFLUX_TOKEN": "x"})
    with pytest.raises(PlanError) as e:
        build_plan(cfg)
    assert "'mac' is not a property of this driver" in str(e.value)


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
