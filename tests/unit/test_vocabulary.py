"""Default deny for free text, driver by driver from the registry.

A text value leaves only if it is a word of its Datastream's declared vocabulary (the driver's
catalogue, or `allowed:` in a generic_json/senml mapping). Each layer enforces that on its own:
the privacy stage drops any other text (counted per sensor as `not_in_vocabulary`), and the
egress guard, given the plan's vocabularies, blocks an Observation holding it in every encoding a
sink sends (outbox record, SensorThings JSON, line protocol), per observation, never per batch.
A published category without a vocabulary is refused by `check` for the configurable profiles;
for a built-in driver it is a warning at `check` and nothing of it leaves.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
import yaml

from firmware_bridge.base import Aggregation, ObservationType
from firmware_bridge.driver import Driver, MessageDriver
from firmware_bridge.drivers import REGISTERED
from firmware_bridge.drivers import ocpp16j as ocpp
from firmware_bridge.drivers import ocpp201j as ocpp201
from gateway.cli import semantic_problems, vocabulary_warnings
from gateway.config import Config, ConfigError, parse_config
from gateway.model import Observation, Reading
from gateway.outbox import Row
from gateway.pipeline import Pipeline
from gateway.plan import SensorPlan, SitePlan, build_plan
from gateway.privacy.guard import EgressGuard, Verdict, find_identifier
from gateway.privacy.stage import PrivacyStage
from gateway.sinks.base import guarded_messages, guarded_observations
from gateway.sinks.influxdb import InfluxSink, Settings

# Options for the configurable profiles that exercise a category (their registry examples may not)
OPTIONS: dict[str, dict[str, Any]] = {
    "senml": {"fields": [{"suffix": ":temp", "property": "temperature", "unit": "Cel"},
                         {"suffix": ":state", "property": "state", "type": "category", "allowed": ["ok", "fault"]}]},
    "generic_json": {"fields": [{"path": "pm25", "property": "pm2_5", "unit": "ug/m3"},
                                {"path": "state", "property": "state", "type": "category", "allowed": ["ok", "fault", "0", "1"]},
                                {"path": "badge", "property": "badge", "type": "category", "personal": True}],
                     "aggregates": [{"property": "state_last", "of": "state", "aggregation": "last"},
                                    {"property": "visitors", "of": "badge", "aggregation": "distinct_count"}]},
}  # fmt: skip

# Text that is no device's word: a name and a message (no identifier shape: only the vocabulary
# stops them), identifier shapes, and near-misses of real words.
FREE_TEXT = ["Priya Patel", "meet me at bay 2", "AB12 CDE", "3c:22:fb:12:34:56", "alex@example.org",
             "", " ", "ok ", "AVAILABLE\n", "Available"]  # fmt: skip


def driver_named(name: str) -> Driver:
    return next(d for d in REGISTERED if d.name == name)


def options_of(driver: Driver) -> dict[str, Any]:
    if driver.name in OPTIONS:
        return OPTIONS[driver.name]
    return dict(driver.example_options) if isinstance(driver, MessageDriver) else {}


def config_for(driver: Driver, privacy: str = "") -> Config:
    transport = driver.transports[0]
    section = {"port": "/dev/ttyUSB0"} if transport == "serial" else {"topic": "t/+"}
    doc = {"gateway": {"id": "g", "borough": "camden", "location": {"lat": 51.5, "lon": -0.1}},
           "inputs": {"mqtt": {}}, "sinks": {"file": {}},
           "sensors": [{"id": "s", "driver": driver.name, transport: section, "options": options_of(driver)}]}  # fmt: skip
    text = yaml.safe_dump(doc, sort_keys=False) + privacy
    return parse_config(text, "gw.yaml", {})


def plan_for(driver: Driver, privacy: str = "") -> SitePlan:
    return build_plan(config_for(driver, privacy))


def stage_of(plan: SitePlan) -> PrivacyStage:
    return PrivacyStage(plan, key_factory=lambda: b"k" * 32, salt_rotation_s=86400, started_at=0.0)


def guard_of(plan: SitePlan) -> EgressGuard:
    return EgressGuard(frozenset(plan.datastreams), vocabularies=plan.vocabularies)


def word_fields(sp: SensorPlan) -> list[Any]:
    """Fields that leave carrying a value as is: per-reading ones and `last` aggregates."""
    return [*sp.published, *(f for f in sp.aggregates if f.aggregation is Aggregation.LAST)]


@pytest.mark.parametrize("driver", REGISTERED, ids=[d.name for d in REGISTERED])
def test_every_published_category_of_every_driver_declares_its_vocabulary(driver: Driver) -> None:
    sp = plan_for(driver).sensors["s"]
    for f in (*sp.published, *sp.aggregates):
        if f.observation_type is ObservationType.CATEGORY:
            assert f.vocabulary, f"{driver.name}: {f.key} is a category without a vocabulary"
            for word in f.vocabulary:
                assert 0 < len(word) <= 64 and word == word.strip(), (f.key, word)
                assert find_identifier(word) is None, f"{driver.name}: {f.key} word {word!r} trips the guard"


def test_the_registry_cases_include_categories() -> None:
    """The test above must have something to check: these drivers publish categories."""
    having = {d.name for d in REGISTERED
              if any(f.observation_type is ObservationType.CATEGORY for f in word_fields(plan_for(d).sensors["s"]))}  # fmt: skip
    assert {"ocpp16j", "ocpp201j", "openevse", "generic_json", "senml"} <= having, having


@pytest.mark.parametrize("driver", REGISTERED, ids=[d.name for d in REGISTERED])
def test_text_outside_the_vocabulary_is_dropped_by_the_stage_and_counted_per_sensor(driver: Driver) -> None:
    """Every field that leaves with its value as is (category or not): text that is not one of
    its declared words is dropped and counted; each declared word leaves."""
    plan = plan_for(driver)
    sp, stage = plan.sensors["s"], stage_of(plan)
    t, dropped = 100.0, 0
    for f in word_fields(sp):
        words = f.vocabulary or frozenset()
        key = f.source or f.key
        routes = sum(1 for g in word_fields(sp) if (g.source or g.key) == key)  # e.g. state and its last
        for text in [*FREE_TEXT, *(w.lower() for w in words), *(w.upper() for w in words)]:
            if text in words:
                continue
            t += 1000.0  # a new window each time, so a `last` aggregate closes
            out = [*stage.process(Reading("s", t, {key: text}), t), *stage.due(t + 5000)]
            dropped += routes
            assert all(not isinstance(o.result, str) for o in out), out
            assert stage.dropped[("s", "not_in_vocabulary")] == dropped, (f.key, text)
        for word in sorted(words):
            t += 1000.0
            out = [*stage.process(Reading("s", t, {key: word}), t), *stage.due(t + 5000)]
            assert [o.result for o in out if o.property == f.key] == [word], (f.key, word, out)
    assert stage.dropped[("s", "not_in_vocabulary")] == dropped


@pytest.mark.parametrize("driver", REGISTERED, ids=[d.name for d in REGISTERED])
def test_the_guard_blocks_text_outside_the_vocabulary_on_its_own(driver: Driver) -> None:
    """No privacy stage here: an Observation holding the text goes straight to the guard, on
    every Datastream the plan publishes (a count or a measurement has no words at all)."""
    plan = plan_for(driver)
    guard = guard_of(plan)
    sp = plan.sensors["s"]
    n = 0
    for f in (*sp.published, *sp.aggregates):
        ds = sp.datastreams[f.key].id
        words = f.vocabulary or frozenset()
        for text in FREE_TEXT:
            if text in words:
                continue
            o = Observation(ds, "s", f.key, 10.0, 10.0, text)
            assert guard.check_record(o.to_record()) == Verdict(False, "not_in_vocabulary"), (f.key, text)
            assert guard.check_observation_json(json.dumps(o.sensorthings()).encode()) == Verdict(False, "not_in_vocabulary")
            n += 2
        for word in words:
            o = Observation(ds, "s", f.key, 10.0, 10.0, word)
            assert guard.check_record(o.to_record()).ok and guard.check_observation_json(json.dumps(o.sensorthings()).encode()).ok
        numeric = Observation(ds, "s", f.key, 10.0, 10.0, 3)
        assert guard.check_record(numeric.to_record()).ok
    assert guard.blocked_by_sensor[("s", "not_in_vocabulary")] == n == guard.blocked["not_in_vocabulary"]


def test_the_guard_blocks_per_observation_in_every_encoding_a_sink_sends() -> None:
    """A batch with a word, a name and a number: the name alone is blocked, for the line
    protocol (InfluxDB), the SensorThings JSON (SensorThings server; MQTT and file in every
    format), and counted per sensor."""
    plan = plan_for(ocpp.DRIVER)
    sp = plan.sensors["s"]
    # a number: the energy of the window's sessions (the register itself is personal, issue 12)
    status, energy = sp.datastreams["connector_status"].id, sp.datastreams["energy_delivered"].id
    batch = [Observation(status, "s", "connector_status", 10.0, 10.0, "CHARGING"),
             Observation(status, "s", "connector_status", 11.0, 11.0, "Priya Patel"),
             Observation(energy, "s", "energy_delivered", 12.0, 12.0, 4.5)]  # fmt: skip
    rows = [Row(i + 1, o.datastream_id, o.phenomenon_time, o.to_record()) for i, o in enumerate(batch)]

    guard = guard_of(plan)
    sink = InfluxSink(Settings(url="http://127.0.0.1:1", org="o", bucket="b"), site_tags={"gateway": "g"}, guard=guard)
    lines, blocked = sink.encode(rows)
    assert blocked == 1 and [seq for seq, _ in lines] == [1, 3]
    assert 'state="CHARGING"' in lines[0][1] and "Priya" not in "\n".join(line for _, line in lines)
    assert guard.blocked_by_sensor[("s", "not_in_vocabulary")] == 1

    kept, blocked = guarded_observations(rows, guard)
    assert blocked == 1 and [o.result for o, _ in kept] == ["CHARGING", 4.5]
    assert guard.blocked_by_sensor[("s", "not_in_vocabulary")] == 2

    for n, fmt in enumerate(("sensorthings", "senml", "ngsi-ld"), start=3):  # the file and MQTT formats
        messages, blocked = guarded_messages(rows, guard, fmt, plan)
        assert blocked == 1 and messages and all(b"Priya" not in m.payload for m in messages), fmt
        assert guard.blocked_by_sensor[("s", "not_in_vocabulary")] == n


def test_the_pipeline_builds_its_guard_with_the_plans_vocabularies_and_exports_the_counters() -> None:
    cfg = config_for(ocpp.DRIVER)
    p = Pipeline(cfg)
    assert p.guard.vocabularies == p.plan.vocabularies
    assert p.plan.vocabularies[p.plan.sensors["s"].datastreams["connector_status"].id] == ("s", ocpp.STATUS_WORDS)
    ds = p.plan.sensors["s"].datastreams["connector_status"].id
    assert not p.guard.check_record(Observation(ds, "s", "connector_status", 1.0, 1.0, "Priya Patel").to_record()).ok
    assert p.privacy.process(Reading("s", 1.0, {"connector_status": "Priya Patel"}), 1.0) == []
    metrics = p.metrics.render()
    assert 'gateway_guard_blocked_by_sensor_total{reason="not_in_vocabulary",sensor="s"} 1' in metrics
    assert 'gateway_privacy_dropped_total{reason="not_in_vocabulary",sensor="s"} 1' in metrics
    assert "Priya" not in metrics


def test_the_ocpp201_vocabularies_are_what_its_decoder_can_say() -> None:
    assert {*ocpp201.OCPP_TO_OCPI.values(), "UNKNOWN"} == ocpp201.STATUS_WORDS
    cat = ocpp201.DRIVER.catalogue_for(ocpp201.Options())
    assert cat.field("connector_status").vocabulary == ocpp201.STATUS_WORDS  # type: ignore[union-attr]
    assert cat.field("connector_id").vocabulary == {str(n) for n in range(ocpp201.MAX_EVSE + 1)}  # type: ignore[union-attr]


def test_the_ocpp_vocabularies_are_what_its_decoder_can_say() -> None:
    assert {*ocpp.OCPP_TO_OCPI.values(), "UNKNOWN"} == ocpp.STATUS_WORDS
    cat = ocpp.DRIVER.catalogue_for(ocpp.Options())
    assert [cat.field(k).vocabulary for k in ("connector_status", "error_code")] == [ocpp.STATUS_WORDS, ocpp.ERROR_CODES]  # type: ignore[union-attr]
    assert cat.field("connector_id").vocabulary == {str(n) for n in range(ocpp.MAX_CONNECTOR + 1)}  # type: ignore[union-attr]


# --------------------------------------------------------------------------- at `check`


@pytest.mark.parametrize("driver", ["generic_json", "senml"])
def test_a_published_category_without_allowed_is_refused_at_check_with_its_line(driver: str) -> None:
    field = ({"path": "note", "property": "note", "type": "category"} if driver == "generic_json"
             else {"suffix": ":note", "property": "note", "type": "category"})  # fmt: skip
    doc = {"gateway": {"id": "g", "borough": "camden", "location": {"lat": 51.5, "lon": -0.1}},
           "inputs": {"mqtt": {}}, "sinks": {"file": {}},
           "sensors": [{"id": "s", "driver": driver, "mqtt": {"topic": "t"}, "options": {"fields": [field]}}]}  # fmt: skip
    text = yaml.safe_dump(doc, sort_keys=False)
    with pytest.raises(ConfigError) as e:
        parse_config(text, "gw.yaml", {})
    line = 1 + next(i for i, t in enumerate(text.splitlines()) if "- path: note" in t or "- suffix: :note" in t)
    assert [str(p) for p in e.value.problems] == [
        f"gw.yaml:{line} sensors[0].options.fields[0].allowed: a published category needs its vocabulary, "
        "the words that may leave (free text never does): list the device's words, or mark the field personal"]
    field["personal"] = True  # an identifier never leaves raw: no vocabulary needed
    parse_config(yaml.safe_dump(doc), "gw.yaml", {})


def test_numeric_status_codes_in_allowed_are_words() -> None:
    plan = plan_for(driver_named("generic_json"))
    state = next(f for f in plan.sensors["s"].published if f.key == "state")
    assert state.vocabulary == {"ok", "fault", "0", "1"}
    cfg = yaml.safe_load(yaml.safe_dump(OPTIONS["generic_json"]))
    cfg["fields"][1]["allowed"] = [0, 1, True]
    with pytest.raises(ValueError):
        type(plan.sensors["s"].options).model_validate(cfg)  # a bool is no word
    cfg["fields"][1]["allowed"] = [0, 1]
    opts = type(plan.sensors["s"].options).model_validate(cfg)
    assert opts.fields[1].allowed == ["0", "1"]  # type: ignore[attr-defined]


def test_a_last_aggregate_of_a_category_keeps_its_vocabulary() -> None:
    plan = plan_for(driver_named("generic_json"))
    last = next(f for f in plan.sensors["s"].aggregates if f.key == "state_last")
    assert last.vocabulary == {"ok", "fault", "0", "1"}
    assert plan.vocabularies[plan.sensors["s"].datastreams["state_last"].id][1] == last.vocabulary


def test_a_zone_that_publishes_the_last_value_per_window_still_checks_the_words() -> None:
    zone = """privacy:
  zones: [{name: z, polygon: [[-1, 51], [1, 51], [1, 52], [-1, 52]], action: coarsen, last_per_window: true}]
"""
    plan = plan_for(ocpp.DRIVER, zone)
    sp = plan.sensors["s"]
    assert sp.published == () and any(f.key == "connector_status" for f in sp.aggregates)
    stage = stage_of(plan)
    assert stage.process(Reading("s", 10.0, {"connector_status": "Priya Patel"}), 10.0) == []
    stage.process(Reading("s", 20.0, {"connector_status": "CHARGING"}), 20.0)
    stage.process(Reading("s", 30.0, {"connector_status": "Priya Patel"}), 30.0)
    out = stage.due(10_000.0)
    assert [o.result for o in out if o.property == "connector_status"] == ["CHARGING"]
    assert stage.dropped[("s", "not_in_vocabulary")] == 2


def test_check_refuses_a_vocabulary_word_the_guard_would_block() -> None:
    opts = json.loads(json.dumps(OPTIONS["generic_json"]))
    opts["fields"][1]["allowed"] = ["ok", "AB12 CDE"]
    doc = {"gateway": {"id": "g", "borough": "camden", "location": {"lat": 51.5, "lon": -0.1}},
           "inputs": {"mqtt": {}}, "sinks": {"file": {}},
           "sensors": [{"id": "s", "driver": "generic_json", "mqtt": {"topic": "t"}, "options": opts}]}  # fmt: skip
    cfg = parse_config(yaml.safe_dump(doc, sort_keys=False), "gw.yaml", {})
    problems = semantic_problems(cfg, build_plan(cfg), devices=False)
    # the field itself and its `last` aggregate both publish the word
    assert [(p.path, p.message.split(":")[0]) for p in problems] == [
        ("sensors[0].options", "state"), ("sensors[0].options", "state_last")], problems
    assert "the word 'AB12 CDE' looks like a vehicle registration" in problems[0].message


def test_check_warns_about_a_published_category_that_has_no_vocabulary() -> None:
    cfg = config_for(ocpp.DRIVER)
    plan = build_plan(cfg)
    assert vocabulary_warnings(cfg, plan) == []
    sp = plan.sensors["s"]
    bare = tuple(replace(f, vocabulary=None) if f.key == "error_code" else f for f in sp.published)
    plan = replace(plan, sensors={"s": replace(sp, published=bare)})
    (w,) = vocabulary_warnings(cfg, plan)
    assert w.path == "sensors[0].driver" and "declares no vocabulary for error_code" in w.message
    assert "not_in_vocabulary" in w.message


def test_the_privacy_report_lists_the_words_each_category_may_leave_as() -> None:
    from gateway.privacy.report import render

    cfg = config_for(ocpp.DRIVER)
    md, data = render(cfg, build_plan(cfg), generated_at=0.0)
    (sensor,) = data["sensors"]
    by_key = {d["property"]: d["vocabulary"] for d in sensor["datastreams"]}
    assert by_key["connector_status"] == sorted(ocpp.STATUS_WORDS) and by_key["energy_delivered"] is None
    assert "`connector_status` leaves only as one of these words: `AVAILABLE`, `CHARGING`" in md
    assert any("declared vocabulary" in line for line in data["egress_guard_blocks"])
