"""The command-line contract: exit codes, one readable line per problem, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "config").glob("*.yaml"))
ENV = {
    "INFLUX_TOKEN": "test-token", "LOCAL_MQTT_PASSWORD": "pw1", "CITY_MQTT_PASSWORD": "pw2",
}  # fmt: skip


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True,
                          text=True, env=full_env, cwd=ROOT, timeout=timeout)  # fmt: skip


@pytest.fixture
def creds(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "influx-token").write_text("from-credential-file\n")
    (tmp_path / "sta-token").write_text("sta-from-credential-file\n")
    return {**ENV, "CREDENTIALS_DIRECTORY": str(tmp_path)}


def test_there_are_example_configs() -> None:
    assert len(CONFIGS) >= 2


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_check_accepts_every_example_config(path: Path, creds: dict[str, str]) -> None:
    r = cli("check", "--no-devices", "-c", str(path), env=creds)
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout


def test_check_rejects_a_broken_config_with_line_numbers(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text(
        "gateway: {id: x1, borough: camden, location: {lat: 95, lon: 0}}\n"
        "sensors:\n"
        "  - {id: pm-a, driver: nosuch, serial: {port: /dev/ttyUSB9}}\n"
        "sinks: {file: {path: o.jsonl}, influxdb: {url: 'https://x', org: o, bucket: b, token: '${NOPE}'}}\n"
    )
    r = cli("check", "-c", str(bad), env={})
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert f"{bad}:1 gateway.location.lat: Input should be less than or equal to 90" in lines
    assert f"{bad}:4 sinks.influxdb.token: environment variable NOPE is not set" in lines
    assert "Traceback" not in r.stderr


def test_check_reports_unknown_driver_and_missing_port(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "gateway: {id: x1, borough: camden, location: {lat: 51.5, lon: 0}}\n"
        "sensors:\n"
        "  - {id: pm-a, driver: pms5003, serial: {port: /dev/does-not-exist}}\n"
        "  - {id: pm-b, driver: pms9000, serial: {port: /dev/does-not-exist}}\n"
        "sinks: {file: {path: o.jsonl}}\n"
    )
    r = cli("check", "-c", str(cfg))
    assert r.returncode == 2
    assert r.stderr.startswith(f"{cfg}:4 sensors[1].driver: unknown driver 'pms9000'")
    cfg.write_text(cfg.read_text().replace("  - {id: pm-b, driver: pms9000, serial: {port: /dev/does-not-exist}}\n", ""))
    r = cli("check", "-c", str(cfg))
    assert r.returncode == 2
    assert r.stderr.strip() == f"{cfg}:3 sensors[0].serial.port: no such device (is the adapter plugged in? see `ls /dev/serial/by-id/`)"


def test_run_with_bad_config_exits_2_without_traceback(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("gateway: [1, 2]\n")
    r = cli("run", "-c", str(cfg))
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1


def test_usage_error_exits_2() -> None:
    assert cli("frobnicate").returncode == 2


def test_schema_is_json_schema_from_the_models() -> None:
    r = cli("schema")
    schema = json.loads(r.stdout)
    assert schema["title"] == "street-gateway configuration"
    assert {"gateway", "sensors", "sinks", "outbox", "privacy", "ops"} <= set(schema["properties"])


@pytest.mark.integration
def test_demo_prints_a_summary_and_writes_observations(tmp_path: Path) -> None:
    r = cli("demo", "--duration", "8", "--data-dir", str(tmp_path), "--quiet", timeout=90)
    assert r.returncode == 0, r.stderr
    assert "summary:" in r.stdout
    lines = (tmp_path / "observations.jsonl").read_text().splitlines()
    assert lines
    for line in lines:
        obs = json.loads(line)
        assert set(obs) <= {"phenomenonTime", "resultTime", "result", "Datastream", "parameters"}
        assert isinstance(obs["Datastream"]["@iot.id"], int)


def test_check_reads_secrets_from_an_env_file_like_systemd(tmp_path: Path, creds: dict[str, str]) -> None:
    env_file = tmp_path / "secrets.env"
    env_file.write_text('# secrets\nINFLUX_TOKEN=abc\nLOCAL_MQTT_PASSWORD="two words"\nexport CITY_MQTT_PASSWORD=z\n')
    path = str(ROOT / "config" / "camden-lamp-column.yaml")
    bare = {k: v for k, v in creds.items() if k not in ENV}
    missing = cli("check", "--no-devices", "-c", path, env=bare)
    assert missing.returncode == 2 and "INFLUX_TOKEN is not set" in missing.stderr
    r = cli("check", "--no-devices", "-c", path, "--env-file", str(env_file), env=bare)
    assert r.returncode == 0, r.stderr
    r = cli("check", "--no-devices", "-c", path, "--env-file", str(tmp_path / "absent.env"), env=bare)
    assert r.returncode == 2 and r.stderr.strip().endswith("cannot read: No such file or directory")
