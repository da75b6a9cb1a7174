"""Shared by the SensorThings server tests, their kill -9 child process and bench/bench_sensorthings.py:
a gateway config, its plan and entities, and outbox rows of real Observations."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from gateway.config import Config, parse_config
from gateway.model import Observation
from gateway.outbox import Outbox, Row
from gateway.plan import SitePlan, build_plan
from gateway.privacy.guard import EgressGuard
from gateway.sinks.sensorthings import SensorThingsSettings, SensorThingsSink
from gateway.standards import sensorthings

T0 = 1_795_000_000.0  # 2026-11-18: a fixed start, so runs are reproducible


def config_text(data_dir: Path, *, extra_sensors: str = "", description: str = "") -> str:
    """Three air-quality sensors on serial ports that need not exist (no source is started)."""
    desc = f", description: '{description}'" if description else ""
    return f"""
gateway: {{id: sta-test, borough: camden, location: {{lat: 51.5390, lon: -0.1426}}, data_dir: '{data_dir}'{desc}}}
sensors:
  - {{id: aq-1, driver: pms5003, serial: {{port: /dev/sta-test-aq-1}}, privacy: {{publish: [pm1_0, pm2_5, pm10]}}}}
  - {{id: aq-2, driver: sds011, serial: {{port: /dev/sta-test-aq-2}}}}
  - {{id: co2-1, driver: senseair_s8, serial: {{port: /dev/sta-test-co2-1}}}}
{extra_sensors}
{"inputs: {mqtt: {host: 127.0.0.1, port: 1}}" if "mqtt:" in extra_sensors else ""}
sinks: {{file: {{path: observations.jsonl}}}}
ops: {{http: null}}
"""


def load(data_dir: Path, **kw: Any) -> tuple[Config, SitePlan]:
    cfg = parse_config(config_text(data_dir, **kw), "sta-test.yaml", {})
    return cfg, build_plan(cfg)


def make_sink(cfg: Config, plan: SitePlan, url: str, *, name: str = "sta", guard: EgressGuard | None = None,
              **settings: Any) -> SensorThingsSink:  # fmt: skip
    s = SensorThingsSettings.model_validate({"url": url, **settings})
    return SensorThingsSink(name, s, entities=sensorthings.entities(plan), data_dir=cfg.gateway.data_dir,
                            guard=guard or EgressGuard(frozenset(plan.datastreams)))  # fmt: skip


def numeric_observations(plan: SitePlan, n: int, seed: int = 1) -> list[Observation]:
    """`n` instant Observations spread over every numeric Datastream, 1 s apart per stream."""
    rng = random.Random(seed)
    streams = [ds for ds in plan.datastreams.values() if ds.unit is not None]
    out = []
    for i in range(n):
        ds = streams[i % len(streams)]
        t = T0 + (i // len(streams)) + rng.randint(0, 999) / 1000
        value: float | int = round(rng.uniform(0, 500), 3) if i % 3 else rng.randint(0, 5000)
        out.append(Observation(ds.id, ds.sensor_id, ds.property, t, t + 0.021, value))
    return out


def rows_of(observations: list[Observation], start: int = 1) -> list[Row]:
    return [Row(start + i, o.datastream_id, o.phenomenon_time, o.to_record()) for i, o in enumerate(observations)]


def fill_outbox(path: Path, sinks: list[str], observations: list[Observation]) -> None:
    ob = Outbox(path, sinks=sinks)
    ob.append((o.datastream_id, o.phenomenon_time, o.to_record()) for o in observations)
    ob.db.close()
