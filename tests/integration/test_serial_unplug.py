"""Three simulated sensors on three real ptys; one is unplugged and replugged mid-run (its
stable symlink re-pointed at a new pty, as /dev/serial/by-id/ does). Every frame sent while the
gateway had the port open arrives; the other sensors are served throughout."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from firmware_bridge.drivers import SERIAL_DRIVERS
from gateway.config import parse_config
from gateway.pipeline import Pipeline
from gateway.simulate.serial_pty import PtyDevice
from tests.integration.test_mqtt_ingest import wait_for

pytestmark = pytest.mark.integration

SENSORS = [("pm-a", "pms5003"), ("pm-b", "sds011"), ("co2-c", "senseair_s8")]
KEY = {"pms5003": "pm2_5", "sds011": "pm2_5", "senseair_s8": "co2"}


def test_unplugged_sensor_is_reopened_and_every_frame_sent_while_plugged_in_arrives(tmp_path: Path) -> None:
    links = {sid: tmp_path / f"usb-{sid}-if00-port0" for sid, _ in SENSORS}
    lines = [f"gateway: {{id: test-gw-02, borough: hackney, location: {{lat: 51.545, lon: -0.055}}, data_dir: '{tmp_path / 'data'}'}}",
             "sensors:"]  # fmt: skip
    for sid, driver in SENSORS:
        opts = ", options: {mode: query, interval_s: 0.2, warmup_s: 0}" if driver == "sds011" else ""
        opts = ", options: {interval_s: 0.2}" if driver == "senseair_s8" else opts
        lines.append(f"  - {{id: {sid}, driver: {driver}, serial: {{port: '{links[sid]}'}}{opts}}}")
    lines += ["sinks: {file: {path: observations.jsonl}}", "ops: {http: null}"]
    cfg = parse_config("\n".join(lines) + "\n", "t.yaml", {})

    async def scenario() -> tuple[Pipeline, dict[str, PtyDevice]]:
        sims = {sid: PtyDevice(SERIAL_DRIVERS[d], links[sid], seed=i) for i, (sid, d) in enumerate(SENSORS)}
        for sim in sims.values():
            if hasattr(sim.device, "period"):
                sim.device.period = 0.2  # type: ignore[attr-defined]
            sim.plug()
            sim.start()
        p = Pipeline(cfg)
        await p.start()
        await wait_for(lambda: all(len(s.delivered) >= 5 for s in sims.values()), what="frames from all three")
        victim = sims["pm-a"]
        victim.unplug()  # USB adapter pulled: pyserial sees the port die
        reconnects = p.metrics.counter("gateway_serial_reconnects_total", "")
        connected = p.metrics.gauge("gateway_serial_connected", "")
        await wait_for(lambda: connected.get(sensor="pm-a") == 0, what="port loss noticed")
        others = {sid: len(s.delivered) for sid, s in sims.items() if sid != "pm-a"}
        await asyncio.sleep(1.0)
        # the other sensors kept being served while pm-a was away
        assert all(len(sims[sid].delivered) > n for sid, n in others.items())
        victim.plug()  # plugged back in: a new pty behind the same stable path
        await wait_for(lambda: reconnects.get(sensor="pm-a") >= 1, what="pm-a reopened")
        n_after = len(victim.delivered)
        await wait_for(lambda: len(victim.delivered) >= n_after + 5, what="frames after replug")
        for sim in sims.values():
            await sim.stop()
        frames_ok = p.metrics.counter("gateway_serial_frames_ok_total", "")
        await wait_for(lambda: all(frames_ok.get(sensor=sid) >= len(s.delivered) for sid, s in sims.items()),
                       what="every delivered frame decoded")  # fmt: skip
        await wait_for(lambda: p.queue.empty(), what="committed")
        await p.stop()
        return p, sims

    p, sims = asyncio.run(scenario())
    obs = [json.loads(line) for line in (p.cfg.gateway.data_dir / "observations.jsonl").read_text().splitlines()]
    for sid, driver in SENSORS:
        ds = p.plan.sensors[sid].datastreams[KEY[driver]].id
        got = [o["result"] for o in sorted(obs, key=lambda o: o["phenomenonTime"]) if o["Datastream"]["@iot.id"] == ds]
        want = [frame[KEY[driver]] for frame in sims[sid].delivered]
        assert got == want, f"{sid}: {len(got)} stored vs {len(want)} delivered while plugged in"
    assert p.metrics.counter("gateway_serial_reconnects_total", "").get(sensor="pm-a") >= 1
