"""`check` refuses a config that would let a published value describe one person (issue 12):
min_count below 3, an aggregate that publishes one person's value of a personal field, a window
that would need two keys, a delay that outlives its key. Each problem with FILE:LINE."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import ConfigError, parse_config
from gateway.model import Reading
from gateway.plan import PlanError, build_plan
from gateway.privacy.stage import PrivacyStage

HEAD = """\
gateway: {id: t-gw, borough: camden, location: {lat: 51.539, lon: -0.1426}}
inputs: {mqtt: {host: 127.0.0.1}}
"""


def check(text: str) -> list[str]:
    """Every problem `check` would print (config model, then plan)."""
    try:
        build_plan(parse_config(text, "gw.yaml", {}))
    except (ConfigError, PlanError) as e:
        return [str(p) for p in e.problems]
    return []


@pytest.mark.parametrize("where", ["privacy: {min_count: 2}",
                                   "sensors: [{id: s, driver: wifi_probe_sniffer, mqtt: {topic: x}, privacy: {min_count: 1}}]",
                                   "privacy: {zones: [{name: z, polygon: [[0, 0], [1, 0], [1, 1]], action: coarsen, min_count: 2}]}"])  # fmt: skip
def test_min_count_below_three_is_refused_with_its_line(where: str) -> None:
    (p,) = check(HEAD + where + "\n")
    assert p.startswith("gw.yaml:3 ") and "min_count: must be at least 3" in p


def test_an_unknown_disclosure_policy_is_refused() -> None:
    (p,) = check(HEAD + "privacy: {disclosure: k_anonymity}\n")
    assert p.startswith("gw.yaml:3 privacy.disclosure:") and "'cell_key'" in p


GENERIC = HEAD + """\
sensors:
  - id: kiosk
    driver: generic_json
    mqtt: {topic: kiosk/+/json}
    options:
      fields:
        - {path: card, property: card, type: category, personal: true}
        - {path: kwh, property: spend, unit: kW.h, personal: true}
        - {path: visitors, property: visitors, type: count, role: person_count}
        - {path: total, property: total, type: count, role: running_total}
      aggregates:
        - property: cards
          of: card
          aggregation: distinct_count
        - property: spend_total
          of: spend
          aggregation: sum
        - property: last_spend
          of: spend
          aggregation: last
        - property: card_seen
          of: card
          aggregation: last
        - property: visitors_max
          of: visitors
          aggregation: max
        - property: total_sum
          of: total
          aggregation: sum
        - property: passes
          of: total
          aggregation: increment
"""


def test_an_aggregate_that_publishes_one_persons_value_is_refused_with_its_line() -> None:
    got = check(GENERIC)
    lines = GENERIC.splitlines()
    assert [p.split(" ", 1)[0] for p in got] == [f"gw.yaml:{n}" for n in (22, 25, 31)]
    assert [lines[int(p.split(" ", 1)[0].split(":")[1]) - 1].strip() for p in got] == ["aggregation: last"] * 2 + [
        "aggregation: sum"]  # fmt: skip
    assert got[0] == ("gw.yaml:22 sensors[0].options.aggregates[2].aggregation: last_spend: last of a "
                      "person_event field would publish one person's value; allowed: count, mean, sum")  # fmt: skip
    assert "card_seen: last of a identifier field" in got[1] and "allowed: count, distinct_count" in got[1]
    assert "total_sum: sum of a running_total field" in got[2] and "allowed: increment" in got[2]


def test_the_allowed_aggregates_of_personal_fields_plan() -> None:
    text = GENERIC
    for prop, of, agg in (("last_spend", "spend", "last"), ("card_seen", "card", "last"),
                          ("total_sum", "total", "sum")):  # fmt: skip
        text = text.replace(f"        - property: {prop}\n          of: {of}\n          aggregation: {agg}\n", "")
    assert check(text) == []
    sp = build_plan(parse_config(text, "gw.yaml", {})).sensors["kiosk"]
    assert {f.key for f in sp.aggregates} == {"cards", "spend_total", "visitors_max", "passes"}


def test_a_window_that_would_need_two_keys_is_refused_with_the_rotation_line() -> None:
    text = HEAD + """\
privacy:
  window: 7m
  salt_rotation: 1h
sensors:
  - {id: f1, driver: wifi_probe_sniffer, mqtt: {topic: a}}
  - {id: aq, driver: generic_json, mqtt: {topic: b}, options: {fields: [{path: pm, property: pm2_5, unit: ug/m3}], aggregates: [{property: pm_mean, of: pm2_5, aggregation: mean}]}}
"""
    (p,) = check(text)  # the air-quality sensor's windows hold nobody: any window is fine there
    assert p.startswith("gw.yaml:5 privacy.salt_rotation: sensor f1: key rotation 3600s is not a whole "
                        "multiple of the 420s window")  # fmt: skip
    assert check(text.replace("window: 7m", "window: 12m")) == []


def test_a_delay_that_outlives_its_key_is_refused_at_the_delay() -> None:
    text = HEAD + """\
privacy: {window: 1m, salt_rotation: 1h}
sensors:
  - id: f1
    driver: wifi_probe_sniffer
    mqtt: {topic: a}
    privacy: {delay: 2h}
"""
    (p,) = check(text)
    assert p.startswith("gw.yaml:8 sensors[0].privacy.delay: sensor f1: a delay of 7200s is not shorter")


def test_check_prints_the_refusal_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(GENERIC)
    assert main(["check", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"{cfg}:22 sensors[0].options.aggregates[2].aggregation: last_spend: last of a person_event" in err


def test_a_zone_turns_only_non_personal_fields_into_last_per_window() -> None:
    text = HEAD + """\
privacy:
  window: 1h
  zones: [{name: z, polygon: [[-0.2, 51.5], [-0.1, 51.5], [-0.1, 51.6], [-0.2, 51.6]], action: coarsen, last_per_window: true}]
sensors:
  - {id: ev, driver: ocpp16j, mqtt: {topic: ocpp/x/in}}
"""
    sp = build_plan(parse_config(text, "gw.yaml", {})).sensors["ev"]
    lasts = {f.key for f in sp.aggregates if f.aggregation.value == "last"}
    assert lasts == {"connector_status", "connector_id", "error_code"}
    sources = [sp.catalogue.field(f.source or "") for f in sp.aggregates if f.key in lasts]
    assert all(f is not None and not f.personal for f in sources)


def test_a_residential_bay_publishes_a_coarse_status_per_hour_an_hour_late() -> None:
    text = HEAD + """\
privacy: {window: 15m}
sensors:
  - {id: home-bay, driver: ocpp16j, mqtt: {topic: ocpp/x/in}, privacy: {residential: true}}
"""
    plan = build_plan(parse_config(text, "gw.yaml", {}))
    sp = plan.sensors["home-bay"]
    assert (sp.window_s, sp.delay_s, sp.published) == (3600, 3600, ())
    assert set(sp.datastreams) == {"connector_status", "sessions_started", "sessions_ended",
                                   "energy_delivered", "energy_metered"}  # fmt: skip
    s = PrivacyStage(plan, key_factory=lambda: b"k" * 32, salt_rotation_s=86400, started_at=0)
    out = []
    for t, status in ((600, "CHARGING"), (1800, "AVAILABLE"), (3000, "CHARGING"), (4000, "OUTOFORDER")):
        out += s.process(Reading("home-bay", t, {"connector_status": status, "connector_id": "1"}), t)
    assert out == [] and s.due(3600) == [] and s.due(7199) == []
    (first,) = s.due(7200)
    assert (first.property, first.result, first.phenomenon_end) == ("connector_status", "UNKNOWN", 3600)
    (second,) = s.due(10800)
    assert second.result == "OUTOFORDER"  # what a borough maintains still shows
