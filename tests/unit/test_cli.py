"""The command-line contract: exit codes, one readable line per problem, no tracebacks."""

from __future__ import annotations

import json
import os
import shutil
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


def _instant(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@pytest.mark.integration
@pytest.mark.slow
def test_demo_prints_a_summary_and_writes_observations(tmp_path: Path) -> None:
    from firmware_bridge.drivers import REGISTERED

    r = cli("demo", "--duration", "8", "--data-dir", str(tmp_path), "--quiet", timeout=90)
    assert r.returncode == 0, r.stderr
    assert "summary:" in r.stdout
    assert f"data dir:    {tmp_path}" in r.stdout
    assert "status page: http://127.0.0.1:" in r.stdout
    config = (tmp_path / "demo.yaml").read_text()
    for d in REGISTERED:  # every driver the README lists takes part
        assert f"driver: {d.name}," in config, d.name
    legend = {row["id"]: row for row in json.loads((tmp_path / "datastreams.json").read_text())}
    lines = (tmp_path / "observations.jsonl").read_text().splitlines()
    assert lines
    for line in lines:
        obs = json.loads(line)
        assert set(obs) <= {"phenomenonTime", "resultTime", "result", "Datastream", "parameters"}
        assert obs["Datastream"]["@iot.id"] in legend
        assert _instant(obs["phenomenonTime"].split("/")[-1]) <= _instant(obs["resultTime"]), line
    assert not list((tmp_path / "dev").iterdir()), "pty links left behind"

    # a second run in the same folder starts empty; a folder that is not a demo's is refused
    again = cli("demo", "--duration", "3", "--data-dir", str(tmp_path), "--quiet", timeout=90)
    assert again.returncode == 0 and "cleared the earlier demo run" in again.stdout
    assert len((tmp_path / "observations.jsonl").read_text().splitlines()) < len(lines)
    other = tmp_path / "mine"
    other.mkdir()
    (other / "thesis.tex").write_text("x")
    refused = cli("demo", "--duration", "1", "--data-dir", str(other), timeout=30)
    assert refused.returncode == 2 and "is not an earlier demo's folder" in refused.stderr
    assert (other / "thesis.tex").exists()


@pytest.mark.integration
def test_demo_keep_stays_up_with_its_status_page_until_ctrl_c(tmp_path: Path) -> None:
    import re
    import signal
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "demo", "--keep", "--duration", "3", "--quiet",
                             "--sensors", "1", "--data-dir", str(tmp_path)], text=True, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("--keep:"):
            break
    url = re.search(r"Status page: (http://\S+)", "".join(seen))
    assert url, "".join(seen)
    with urllib.request.urlopen(url.group(1), timeout=10) as page:
        assert page.status == 200 and b'data-sensor="pms5003-1"' in page.read()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "summary:" in out
    assert not list((tmp_path / "dev").iterdir()), "pty links left behind"


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


# --------------------------------------------------------------------------- data dir at check


def _config_with_data_dir(path: Path, data_dir: Path) -> Path:
    path.write_text(
        f"gateway: {{id: x1, borough: camden, location: {{lat: 51.5, lon: 0}}, data_dir: '{data_dir}'}}\n"
        "sinks: {file: {path: o.jsonl}}\n"
    )
    return path


def test_check_refuses_a_data_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    cfg = _config_with_data_dir(tmp_path / "c.yaml", tmp_path / "a-file")
    r = cli("check", "-c", str(cfg))
    assert r.returncode == 2
    assert r.stderr.strip() == f"{cfg}:1 gateway.data_dir: {tmp_path / 'a-file'} is not a folder"
    assert cli("check", "--no-devices", "-c", str(cfg)).returncode == 0  # for another machine


def _check_as_unprivileged_user(cfg: Path) -> tuple[list[str], str]:
    """`check`'s problems for this config as an unprivileged user (root may write anywhere): in a
    forked child that drops to `nobody` when the tests run as root. (The venv's interpreter may
    sit under /root, which `nobody` cannot run, so the check runs in-process after fork.)"""
    import pwd

    from gateway.cli import semantic_problems
    from gateway.config import load_config
    from gateway.plan import build_plan

    config = load_config(cfg)
    plan = build_plan(config)
    if os.geteuid() != 0:
        return [str(p) for p in semantic_problems(config, plan)], pwd.getpwuid(os.geteuid()).pw_name
    nobody = pwd.getpwnam("nobody")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            os.write(write, json.dumps([str(p) for p in semantic_problems(config, plan)]).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        out = f.read()
    os.waitpid(pid, 0)
    return json.loads(out), nobody.pw_name


def test_check_refuses_a_data_dir_the_user_cannot_write(tmp_path: Path) -> None:
    """A folder the user cannot write, and one it cannot create, are refused with the config line
    and the path."""
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="sg-datadir-"))  # reachable by others, unlike tmp_path
    base.chmod(0o755)
    locked = base / "locked"
    locked.mkdir(mode=0o555)
    cfg = _config_with_data_dir(tmp_path / "c.yaml", locked)
    problems, user = _check_as_unprivileged_user(cfg)
    assert problems == [f"{cfg}:1 gateway.data_dir: {locked} is not writable by user {user}"]
    _config_with_data_dir(cfg, locked / "sub" / "data")
    problems, user = _check_as_unprivileged_user(cfg)
    assert problems == [f"{cfg}:1 gateway.data_dir: {locked / 'sub' / 'data'} does not exist and user "
                        f"{user} cannot create it ({locked} is not writable)"]  # fmt: skip
    locked.chmod(0o755)
    shutil.rmtree(base)


# --------------------------------------------------------------------------- describing commands


def test_privacy_report_and_catalogue_need_no_secret_and_write_a_folder_named_after_the_gateway(tmp_path: Path) -> None:
    config = str(ROOT / "config" / "camden-lamp-column.yaml")
    bare = {k: v for k, v in os.environ.items() if k not in {*ENV, "CREDENTIALS_DIRECTORY"}}
    for command, files in (("privacy-report", ("privacy-report.md", "privacy-report.json")),
                           ("catalogue", ("catalogue.jsonld", "ckan_package.json"))):  # fmt: skip
        r = subprocess.run([sys.executable, "-m", "gateway.cli", command, "-c", config], capture_output=True,
                           text=True, env=bare, cwd=tmp_path, timeout=60)  # fmt: skip
        assert r.returncode == 0, r.stderr
        for name in files:
            body = (tmp_path / "camden-lc-0423" / name).read_text()
            assert "${" not in body and "not read>" not in body, f"{name} shows a secret placeholder"
    # a secret that happens to be set is not printed either
    r = subprocess.run([sys.executable, "-m", "gateway.cli", "privacy-report", "-c", config, "--out", "o"],
                       capture_output=True, text=True, env={**bare, "INFLUX_TOKEN": "s3cret-t0ken"}, cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0 and "s3cret-t0ken" not in (tmp_path / "o" / "privacy-report.md").read_text()


def test_datastreams_lists_every_id_with_sensor_property_unit_and_destinations() -> None:
    from gateway.config import load_config
    from gateway.plan import build_plan

    path = ROOT / "config" / "camden-lamp-column.yaml"
    cfg = load_config(path, {}, secrets=False)
    plan = build_plan(cfg)
    sinks = [name if name == s.type else f"{name} ({s.type})" for name, s in cfg.sinks.items()]
    assert len(sinks) >= 2
    r = cli("datastreams", "-c", str(path), "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert {row["id"] for row in rows} == set(plan.datastreams)
    for row in rows:
        ds = plan.datastreams[row["id"]]
        assert (row["sensor"], row["property"], row["unit"], row["aggregation"]) == (ds.sensor_id, ds.property, ds.unit, ds.aggregation)
        assert row["destinations"] == sinks
    footfall = next(row for row in rows if row["property"] == "footfall")
    assert footfall["how"] == "distinct_count per PT15M" and footfall["min_count"] == 10
    table = cli("datastreams", "-c", str(path)).stdout.splitlines()
    assert table[0].split() == ["datastream", "sensor", "property", "unit", "published", "destinations"]
    assert any(line.split()[:4] == [str(footfall["id"]), "footfall-1", "footfall", "{devices}"] for line in table)


def test_simulate_with_nothing_to_simulate_is_a_usage_error() -> None:
    r = cli("simulate", timeout=20)
    assert r.returncode == 2
    assert r.stderr.startswith("usage: street-gateway simulate")
    assert "nothing to simulate" in r.stderr
    r = cli("simulate", "--mqtt", "nosuch:t", timeout=20)
    assert r.returncode == 2 and "expected DRIVER:TOPIC" in r.stderr


def test_the_cli_spares_pydantic_its_plugin_search_and_still_validates() -> None:
    """Issue 19: pydantic's plugin loader imports importlib.metadata (zipfile, email, csv,
    tempfile...: ~1 MiB of a Pi's memory) for plugins the gateway never has; the CLI puts a loader
    that finds none in its place before any model is built. Config errors read as before."""
    code = """
import json, sys
import gateway.cli
from gateway.config import ConfigError, load_config, parse_config
from gateway.plan import build_plan
build_plan(load_config(sys.argv[1], {**dict(__import__('os').environ), **json.loads(sys.argv[2])}))
try:
    parse_config('gateway: {id: g, borough: camden, location: {lat: 91, lon: 0}}', 'g.yaml', {})
    bad = ''
except ConfigError as e:
    bad = str(e)
import pydantic.plugin._loader as loader
print(json.dumps([sorted(m for m in ('importlib.metadata', 'zipfile', 'csv', 'tempfile') if m in sys.modules),
                  loader.__name__, list(loader.get_plugins()), bad]))
"""
    config = str(ROOT / "config" / "camden-lamp-column.yaml")
    r = subprocess.run([sys.executable, "-c", code, config, json.dumps(ENV)], capture_output=True, text=True, cwd=ROOT,
                       timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    loaded, name, plugins, bad = json.loads(r.stdout)
    assert loaded == [] and name == "pydantic.plugin._loader" and plugins == []
    assert bad == "g.yaml:1 gateway.location.lat: Input should be less than or equal to 90"


def test_the_plugin_loader_stand_in_steps_aside_for_anything_but_get_plugins() -> None:
    """A pydantic outside the lock that asks its loader for more than `get_plugins` gets the
    real loader (and pays its imports) instead of failing at start."""
    code = """
import json, sys
import gateway._pydantic_plugins as stand_in
first = sys.modules['pydantic.plugin._loader']
before = 'importlib.metadata' in sys.modules
hit = first._plugins  # a name only pydantic's own loader has
real = sys.modules['pydantic.plugin._loader']
print(json.dumps([before, real is not first, 'importlib.metadata' in sys.modules, real.get_plugins is not stand_in.get_plugins]))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [False, True, True, True]
