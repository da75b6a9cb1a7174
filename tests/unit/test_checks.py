"""gateway/checks.py: the security checks on config values, and `check` applying them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.checks import (
    Finding,
    address_key_findings,
    filters_overlap,
    influx_url_findings,
    is_loopback_host,
    mqtt_broker_findings,
    ops_http_findings,
    publishable_site_keys,
    url_credential_findings,
)
from gateway.config import parse_config
from gateway.plan import build_plan
from gateway.standards.catalogue import ckan_package
from gateway.standards.sensorthings import entity_messages

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("footfall/s1/probes", "footfall/s1/probes", True),
        ("footfall/#", "footfall/s1/probes", True),
        ("footfall/#", "footfall", True),  # '#' matches the parent level too
        ("footfall/+/probes", "footfall/s1/#", True),
        ("+/s1/probes", "footfall/+/probes", True),
        ("#", "anything/at/all", True),
        ("footfall/s1/probes", "footfall/s10/probes", False),
        ("footfall/s1", "footfall/s1/probes", False),
        ("footfall/+", "footfall/s1/probes", False),
        ("axis/+/event/#", "footfall/s1/probes", False),
    ],
)
def test_topic_filters_overlap(a: str, b: str, overlap: bool) -> None:
    assert filters_overlap(a, b) is overlap
    assert filters_overlap(b, a) is overlap


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.50.1", "10.0.0.1", "pi.local", "", "127.0.0.1.evil.example"])
def test_not_loopback_hosts(host: str) -> None:
    assert not is_loopback_host(host)


def test_ops_beyond_loopback_needs_a_token() -> None:
    assert ops_http_findings("127.0.0.1:9108", False) == []
    assert ops_http_findings("[::1]:9108", False) == []
    assert ops_http_findings(None, False) == []
    for addr in ("0.0.0.0:9108", "192.168.50.1:9108", "[::]:9108"):
        (f,) = ops_http_findings(addr, False)
        assert f.severity == "error" and "token_file" in f.message
        assert ops_http_findings(addr, True) == []


@pytest.mark.parametrize(
    "url",
    [
        "https://user:hunter2@tsdb.example.london",
        "https://:hunter2@tsdb.example.london/api",
        "https://tsdb.example.london/write?token=hunter2",
        "https://tsdb.example.london/write?db=x&u=me&p=hunter2",
    ],
)
def test_credentials_in_urls_are_refused(url: str) -> None:
    found = url_credential_findings(url)
    assert found and all(f.severity == "error" for f in found)
    assert all("hunter2" not in f.message for f in found), "never echo the secret"


def test_secrets_in_clear_to_another_host() -> None:
    assert influx_url_findings("https://tsdb.example.london", True, False) == []
    assert influx_url_findings("http://127.0.0.1:8428", True, False) == []
    assert influx_url_findings("http://tsdb.example.london", False, False) == []  # nothing to leak
    (err,) = influx_url_findings("http://tsdb.example.london", True, False)
    assert err.severity == "error" and "tsdb.example.london" in err.message
    (warn,) = influx_url_findings("http://tsdb.example.london", True, True)
    assert warn.severity == "warning" and "allow_plaintext" in warn.message
    assert mqtt_broker_findings("city broker", "broker.example.london", True, True, False) == []
    assert mqtt_broker_findings("local broker", "127.0.0.1", False, True, False) == []
    (e,) = mqtt_broker_findings("city broker", "broker.example.london", False, True, False)
    assert e == Finding("error", e.message) and "in clear" in e.message


def test_address_keys_stay_off_public_feeds_unless_opted_in() -> None:
    keys = {"usrn": "20500123", "uprn": "5045394", "name": None}
    assert publishable_site_keys(keys, False) == {}
    assert publishable_site_keys(keys, True) == {"usrn": "20500123", "uprn": "5045394"}
    (w,) = address_key_findings(["uprn", "usrn"], False)
    assert w.severity == "warning" and "publish_address_keys" in w.message
    assert address_key_findings(["uprn"], True) == []


SITE = """
gateway: {id: camden-lc-0423, borough: camden, usrn: "20500123", uprn: "5045394", location: {lat: 51.539, lon: -0.1426}%s}
sensors: [{id: pm-north, driver: pms5003, serial: {port: /dev/null}}]
sinks: {file: {path: o.jsonl}}
"""


def test_uprn_and_usrn_are_not_on_the_thing_or_in_the_catalogue_by_default() -> None:
    for opt_in, present in (("", False), (", publish_address_keys: true", True)):
        cfg = parse_config(SITE % opt_in, "t.yaml", {})
        plan = build_plan(cfg)
        text = json.dumps(entity_messages(plan)) + json.dumps(ckan_package(cfg, plan))
        assert ("5045394" in text) is present and ("20500123" in text) is present


# ------------------------------------------------------------------ `check` applies them


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True,
                          text=True, env={**os.environ}, cwd=ROOT, timeout=60)  # fmt: skip


BASE = """gateway: {id: x1, borough: camden, location: {lat: 51.5, lon: 0}}
sinks:
  file: {path: o.jsonl}
"""


def test_check_refuses_an_ops_port_beyond_loopback_without_a_token(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(BASE + "ops: {http: '0.0.0.0:9108'}\n")
    r = cli("check", "--no-devices", "-c", str(cfg))
    assert r.returncode == 2
    assert r.stderr.startswith(f"{cfg}:4 ops.http: 0.0.0.0 is reachable from the network: give ops.token_file")
    (tmp_path / "ops-token").write_text("s3cret-token\n")
    cfg.write_text(BASE + f"ops: {{http: '0.0.0.0:9108', token_file: '{tmp_path / 'ops-token'}'}}\n")
    r = cli("check", "--no-devices", "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    assert "s3cret" not in r.stdout + r.stderr


def test_check_refuses_credentials_in_a_url_and_a_token_in_clear(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(BASE + "  influxdb: {url: 'https://me:hunter2@tsdb.example.london', org: o, bucket: b}\n")
    r = cli("check", "--no-devices", "-c", str(cfg))
    assert r.returncode == 2 and f"{cfg}:4 sinks.influxdb.url: credentials in the URL" in r.stderr
    assert "hunter2" not in r.stderr
    cfg.write_text(BASE + "  influxdb: {url: 'http://tsdb.example.london', org: o, bucket: b, token: t0k}\n")
    r = cli("check", "--no-devices", "-c", str(cfg))
    assert r.returncode == 2 and "the InfluxDB token is sent in clear to tsdb.example.london" in r.stderr
    cfg.write_text(BASE + "  influxdb: {url: 'http://tsdb.example.london', org: o, bucket: b, token: t0k, allow_plaintext: true}\n")
    r = cli("check", "--no-devices", "-c", str(cfg))
    assert r.returncode == 0 and r.stderr.startswith("warning: ") and "allow_plaintext: true" in r.stderr
    cfg.write_text(BASE + "  mqtt: {host: broker.example.london, port: 1883, tls: false, username: u, password: pw}\n")
    r = cli("check", "--no-devices", "-c", str(cfg))
    assert r.returncode == 2 and "sinks.mqtt.tls: the city broker password is sent in clear" in r.stderr
