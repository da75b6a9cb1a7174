"""The `sensorthings` sink's registry entry without a server: what `check` refuses, what the
privacy report and the catalogue say (the sink against a real server: tests/integration/
test_sensorthings_server.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import parse_config
from gateway.plan import build_plan
from gateway.sinks import SINKS
from gateway.sinks.sensorthings import SensorThingsSettings, check, describe, offers

SPEC = SINKS["sensorthings"]


def settings(**kw: object) -> SensorThingsSettings:
    return SensorThingsSettings.model_validate({"url": "https://sta.example.london/FROST-Server/v1.1", **kw})


@pytest.mark.parametrize(
    ("kw", "key", "words"),
    [
        ({"url": "https://gw:s3cret@sta.example.london/v1.1"}, ("url",), "must not carry credentials"),
        ({"url": "https://sta.example.london/v1.1?$top=5"}, ("url",), "service root"),
        ({"url": "http://sta.example.london/v1.1", "token": "t0k"}, ("url",), "in clear"),
        ({"token": "t0k", "verify_tls": False}, ("verify_tls",), "whoever answers"),
    ],
)
def test_check_refuses_credentials_that_would_leak(kw: dict[str, object], key: tuple[str, ...], words: str) -> None:
    [(loc, msg)] = check(settings(**kw))
    assert loc == key and words in msg


def test_check_accepts_plain_http_on_the_machine_itself_and_https_with_a_token() -> None:
    assert check(settings(url="http://127.0.0.1:8080/v1.1", username="gw", password="pw")) == []
    assert check(settings(token="t0k")) == []
    assert check(settings(url="http://sta.example.london/v1.1")) == []  # no credential to leak


def test_check_reports_through_the_cli_with_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "gw.yaml"
    f.write_text(f"gateway: {{id: gw-1, borough: camden, location: {{lat: 51.5, lon: -0.1}}, data_dir: '{tmp_path}'}}\n"
                 "sensors: [{id: pm-1, driver: pms5003, serial: {port: /dev/null}}]\n"
                 "sinks:\n  city: {type: sensorthings, url: 'https://u:p@sta.example/v1.1'}\n")  # fmt: skip
    assert main(["check", "--no-devices", "-c", str(f)]) == 2
    assert f"{f}:4 sinks.city.url: must not carry credentials" in capsys.readouterr().err


def test_describe_names_the_service_root_never_a_credential(tmp_path: Path) -> None:
    d = describe("city", settings(token="t0k-secret"), tmp_path)
    assert d.where == "https://sta.example.london/FROST-Server/v1.1"
    assert "t0k-secret" not in repr(d) and "Bearer" in d.what
    assert d.on_device is not None and "sensorthings-city.json" in d.on_device and "parked" in d.on_device
    assert describe("c", settings(url="https://a:b@h.example/v1.1/"), tmp_path).where == "https://h.example/v1.1"


def test_offers_name_each_sensors_datastreams_by_their_key() -> None:
    cfg = parse_config("gateway: {id: gw-1, borough: camden, location: {lat: 51.5, lon: -0.1}}\n"
                       "sensors: [{id: pm-1, driver: pms5003, serial: {port: /dev/null}, privacy: {publish: [pm2_5, pm10]}}]\n",
                       "x.yaml", env={})  # fmt: skip
    plan = build_plan(cfg)
    [o] = offers("city", settings(token="t0k"), plan)
    ids = [ds.id for ds in plan.sensors["pm-1"].datastreams.values()]
    assert o.sensor == "pm-1" and o.format == "sensorthings"
    assert o.access_urls == tuple(
        f"https://sta.example.london/FROST-Server/v1.1/Datastreams?$filter=properties/streetGatewayKey%20eq%20{i}"
        for i in ids
    )
    assert SPEC.offers is offers and SPEC.check is check
