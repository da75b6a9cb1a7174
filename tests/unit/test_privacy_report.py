"""The privacy report is generated from the enforced plan: personal fields never listed as
leaving, every Datastream listed, governance fields present (or clearly "not set")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import load_config, parse_config
from gateway.plan import build_plan
from gateway.privacy.report import GOVERNANCE_LABELS, NOT_SET, render

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "config").glob("*.yaml"))
ENV = {"INFLUX_TOKEN": "t", "LOCAL_MQTT_PASSWORD": "p1", "CITY_MQTT_PASSWORD": "p2"}

WIFI_EV = """
gateway: {id: t-gw, borough: camden, location: {lat: 51.539, lon: -0.1426}}
sensors:
  - {id: footfall-1, driver: wifi_probe_sniffer, mqtt: {topic: footfall/+/probes}}
  - {id: bay-3, driver: openevse, mqtt: {topic: openevse/bay3/+}}
inputs: {mqtt: {host: 127.0.0.1}}
privacy:
  governance: {controller: Camden, dpo_contact: dpo@camden.example}
  zones: [{name: home, polygon: [[-0.15, 51.53], [-0.13, 51.53], [-0.13, 51.55], [-0.15, 51.55]], action: suppress, sensors: [bay-3]}]
sinks:
  mqtt: {host: broker.example.london, username: u, password: "${CITY_MQTT_PASSWORD}"}
"""


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    (tmp_path / "influx-token").write_text("from-file\n")
    (tmp_path / "sta-token").write_text("sta-from-file\n")
    e = {**ENV, "CREDENTIALS_DIRECTORY": str(tmp_path)}
    for k, v in e.items():
        monkeypatch.setenv(k, v)
    return e


def check_report(md: str, data: dict[str, object], plan_datastreams: set[int]) -> None:
    sensors = data["sensors"]
    assert isinstance(sensors, list)
    listed: set[int] = set()
    for s in sensors:
        for f in s["fields"]:
            if f["personal"]:
                assert f["leaves"] is False, (s["id"], f["key"])
                assert f"| `{f['key']}` |" in md and "| **no** |" in md
        listed |= {ds["id"] for ds in s["datastreams"]}
        personal = {f["key"] for f in s["fields"] if f["personal"]}
        for ds in s["datastreams"]:
            rule = ds["disclosure"]
            derived = next(f for f in s["fields"] if f["key"] == ds["property"])
            if rule is None:
                assert ds["property"] not in personal
                continue
            assert derived["derived"] and ds["min_count"] == rule["threshold"] >= 3
            assert rule["rule"].startswith(f"Published only when at least {rule['threshold']} ")
            assert rule["rule"] in md.replace("\\|", "|")
    assert listed == plan_datastreams
    for ds_id in plan_datastreams:
        assert str(ds_id) in md
    gov = data["governance"]
    assert isinstance(gov, dict) and set(gov) == set(GOVERNANCE_LABELS)
    for label in GOVERNANCE_LABELS.values():
        assert label in md
    assert "```mermaid" in md and "flowchart LR" in md
    assert "RAM only, never on disk" in md


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_report_for_every_example_config(path: Path, env: dict[str, str]) -> None:
    cfg = load_config(path)
    plan = build_plan(cfg)
    md, data = render(cfg, plan, generated_at=0, source=str(path))
    check_report(md, data, set(plan.datastreams))
    for k, v in data["governance"].items():
        assert v == (getattr(cfg.privacy.governance, k) or NOT_SET)
    json.dumps(data)  # JSON-ready


def test_report_for_footfall_and_a_suppressed_ev_bay(env: dict[str, str]) -> None:
    cfg = parse_config(WIFI_EV)
    plan = build_plan(cfg)
    md, data = render(cfg, plan, generated_at=0, source="wifi.yaml")
    check_report(md, data, set(plan.datastreams))
    foot, bay = data["sensors"]
    fields = {f["key"]: f for f in foot["fields"]}
    assert fields["mac"]["personal"] and "pseudonymised in RAM" in fields["mac"]["transform"]
    assert fields["footfall"]["leaves"] and foot["estimators"][0]["estimator"] == "wifi_footfall"
    assert "read in RAM by the estimator" in fields["rssi"]["transform"]
    assert bay["suppressed"] and bay["datastreams"] == []
    assert not any(f["leaves"] for f in bay["fields"])
    assert data["governance"]["dpia_reference"] == NOT_SET and "**not set**" in md
    assert "broker.example.london" in md and "Footfall dwell table" in md


def test_cli_writes_markdown_and_json(env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert main(["privacy-report", "-c", str(CONFIGS[0]), "--out", str(out)]) == 0
    assert (out / "privacy-report.md").read_text().startswith("# Privacy report")
    assert json.loads((out / "privacy-report.json").read_text())["gateway"]["id"]


def test_cli_bad_config_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("gateway: {id: x}\n")
    assert main(["privacy-report", "-c", str(bad), "--out", str(tmp_path)]) == 2


def test_each_datastream_of_personal_data_states_its_rule_in_plain_words(env: dict[str, str]) -> None:
    cfg = parse_config(WIFI_EV.replace("zones: [", "disclosure: ten_five\n  zones: [").replace(
        "  - {id: bay-3, driver: openevse, mqtt: {topic: openevse/bay3/+}}",
        "  - {id: bay-3, driver: openevse, mqtt: {topic: openevse/bay3/+}}\n"
        "  - {id: hub, driver: ocpp16j, mqtt: {topic: ocpp/hub/in}, privacy: {disclosure: cell_key, window: 1d}}"))
    plan = build_plan(cfg)
    md, data = render(cfg, plan, generated_at=0, source="wifi.yaml")
    check_report(md, data, set(plan.datastreams))
    foot = {ds["property"]: ds for ds in data["sensors"][0]["datastreams"]}
    hub = {ds["property"]: ds for ds in data["sensors"][2]["datastreams"]}
    rule = foot["footfall"]["disclosure"]
    assert (rule["policy"], rule["threshold"], rule["expected_abs_error"]) == ("ten_five", 10, 1.2)
    assert "rounded to the nearest 5" in rule["rule"] and "index of passing devices" in rule["rule"]
    assert hub["connector_status"]["disclosure"] is None  # open data, as OCPI feeds publish it
    energy = hub["energy_delivered"]["disclosure"]
    assert energy["policy"] == "cell_key" and energy["contributors"] == "named sessions or people"
    assert "more than 50% of it" in energy["rule"] and "does not give one person's part" in energy["rule"]
    metered = hub["energy_metered"]["disclosure"]
    assert "steps it does not attribute never count" in metered["rule"]
    assert "Disclosure rule per Datastream" in md and "whatever the traffic" in md
