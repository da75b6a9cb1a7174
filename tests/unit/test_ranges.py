"""Nothing the store cannot hold: every numeric field of every registered driver states its
physical range, and a value outside it is withheld (flagged, counted), never sent as a number;
no line-protocol line can be split by what a device sent.

Registry-driven: a new driver is held to it without being listed here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pytest

from firmware_bridge.base import ObservationType
from firmware_bridge.driver import Driver
from firmware_bridge.drivers import REGISTERED
from gateway.config import parse_config
from gateway.model import Observation, Reading
from gateway.plan import build_plan
from gateway.privacy.stage import PrivacyStage
from gateway.standards import lineprotocol
from tests.unit.test_registry import IDS, valid_options

NUMERIC = (ObservationType.MEASUREMENT, ObservationType.COUNT)


@pytest.mark.parametrize("driver", REGISTERED, ids=IDS)
def test_every_numeric_field_of_every_driver_states_a_physical_range(driver: Driver) -> None:
    cat = driver.catalogue_for(valid_options(driver))
    missing = [f.key for f in cat.fields
               if f.observation_type in NUMERIC and not f.derived and (f.minimum is None or f.maximum is None)]  # fmt: skip
    assert not missing, f"{driver.name}: no minimum/maximum for {missing}"
    for f in cat.fields:
        if f.minimum is not None and f.maximum is not None:
            assert f.minimum < f.maximum, f.key


CONFIG = """
gateway: {id: range-gw, borough: camden, location: {lat: 51.5, lon: -0.14}}
inputs: {mqtt: {}}
sensors:
  - {id: meter, driver: eastron_sdm, serial: {port: /dev/ttyUSB0}}
  - {id: gj, driver: generic_json, mqtt: {topic: a/+}, options: {fields: [
      {path: v, property: pm2_5, unit: ug/m3, minimum: 0, maximum: 1000},
      {path: x, property: other, unit: '1'}],
      aggregates: [{property: pm2_5_mean, of: pm2_5, aggregation: mean}]}}
sinks: {file: {}}
"""


def test_a_value_outside_its_range_is_withheld_flagged_counted_and_kept_out_of_aggregates() -> None:
    plan = build_plan(parse_config(CONFIG, "t.yaml", {}))
    stage = PrivacyStage(plan, key_factory=lambda: b"k" * 32, salt_rotation_s=86400, started_at=0.0)
    t = 1_800_000_000.0
    out = stage.process(Reading("meter", t, {"power": 1e300, "voltage": 231.5}), t)
    by = {o.property: o for o in out}
    assert by["power"].result is None and by["power"].parameters["quality"] == "out_of_range"
    assert by["voltage"].result == 231.5 and "quality" not in by["voltage"].parameters
    assert stage.dropped[("meter", "out_of_range")] == 1
    line = lineprotocol.encode(by["power"], {"gateway": "g"})
    assert " withheld=true " in line and "e+300" not in line and "value=" not in line
    # generic_json: the mapping's range, and the default bound where none is given
    out = stage.process(Reading("gj", t, {"pm2_5": 5000.0, "other": 2e9}), t)
    assert [o.result for o in out] == [None, None]
    stage.process(Reading("gj", t + 1, {"pm2_5": 10.0, "other": 1.0}), t + 1)
    mean = [o for o in stage.drain(t + 2) if o.property == "pm2_5_mean"]
    assert mean[0].result == 10.0 and mean[0].parameters["samples"] == 1  # 5000 never absorbed


@pytest.mark.parametrize("word", ["two\nlines", "cr\rhere", "nul\x00", "tab\there", "del\x7f"])
def test_no_line_protocol_line_can_be_split(word: str) -> None:
    obs = Observation(1, "s", "state", 1.8e9, 1.8e9, word)
    with pytest.raises(lineprotocol.LineProtocolError):
        lineprotocol.encode(obs, {"gateway": "g"})
    with pytest.raises(lineprotocol.LineProtocolError):
        lineprotocol.encode(Observation(1, "s", "state", 1.8e9, 1.8e9, "ok"), {"borough": word})
    ok = lineprotocol.encode(Observation(1, "s", "state", 1.8e9, 1.8e9, 'quote" back\\ comma, eq='), {"g": "a b"})
    assert "\n" not in ok and ok.count(" ") >= 2


def test_the_influx_sink_refuses_an_unencodable_row_and_sends_the_rest(tmp_path: Path) -> None:
    import asyncio

    from gateway.outbox import Row
    from gateway.privacy.guard import EgressGuard
    from gateway.sinks.influxdb import InfluxSink, Settings

    sink = InfluxSink(Settings(url="http://127.0.0.1:9", org="o", bucket="b"), site_tags={"gateway": "g"},
                      guard=EgressGuard())  # fmt: skip
    rows = [Row(i, 1, 1.8e9 + i, Observation(1, "s", "state", 1.8e9 + i, 1.8e9, w).to_record())
            for i, w in enumerate(["ok", "bad\nword", "fine"], start=1)]  # fmt: skip
    sent: list[list[str]] = []

    def post(lines: Iterable[str]) -> int:  # the HTTP call itself is tested in test_blocked_sink
        sent.append(list(lines))
        return len(sent[-1])

    sink._post_sync = post  # type: ignore[method-assign]
    result = asyncio.run(sink.write(rows))
    assert result.rejected == [2] and result.written == 2
    assert len(sent[0]) == 2 and all("\n" not in line for line in sent[0])
    assert json.loads(rows[1].body)["r"] == "bad\nword"


def test_a_plan_that_lists_a_personal_field_as_published_still_never_publishes_it() -> None:
    """The stage fails closed on its own: even a hand-built plan (a bug in the plan, a plugin)
    that puts a personal field among the published ones gets no observation of it."""
    from dataclasses import replace

    from firmware_bridge.base import Role

    cfg = parse_config(CONFIG.replace("{path: x, property: other, unit: '1'}",
                                      "{path: x, property: other, unit: '1'}, {path: c, property: card, "
                                      "type: category, personal: true}"), "t.yaml", {})  # fmt: skip
    plan = build_plan(cfg)
    sp = plan.sensors["gj"]
    card = sp.catalogue.field("card")
    assert card is not None and card.personal and all(f.key != "card" for f in sp.published)
    plan.sensors["gj"] = replace(sp, published=(*sp.published, replace(card, role=Role.READING)))
    stage = PrivacyStage(plan, key_factory=lambda: b"k" * 32, salt_rotation_s=86400, started_at=0.0)
    t = 1_800_000_000.0
    out = stage.process(Reading("gj", t, {"pm2_5": 10.0, "other": 1.0, "card": "04A1B2C3D4E5F6"}), t)
    assert [o.property for o in out] == ["pm2_5", "other"]
    assert stage.dropped[("gj", "personal")] == 1
