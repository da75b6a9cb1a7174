"""First real path: PMS5003 frames on a pty -> pyserial -> pipeline -> InfluxDB sink (HTTP) ->
a real VictoriaMetrics, read back through /api/v1/export and compared value for value."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from firmware_bridge.drivers import SERIAL_DRIVERS
from firmware_bridge.drivers.pms5003 import PUBLISHED
from gateway.config import parse_config
from gateway.pipeline import Pipeline
from gateway.simulate.serial_pty import PtyDevice
from tests.conftest import VictoriaMetrics

pytestmark = pytest.mark.integration


async def wait_for(cond, timeout: float = 30.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def config_for(tmp: Path, link: Path, vm_url: str) -> str:
    return f"""
gateway: {{id: camden-lc-0423, borough: camden, location: {{lat: 51.539, lon: -0.1426}}, data_dir: '{tmp / "data"}'}}
sensors:
  - {{id: pm-north, driver: pms5003, serial: {{port: '{link}'}}}}
sinks:
  influxdb: {{url: '{vm_url}', org: london, bucket: street, token: '${{INFLUX_TOKEN}}'}}
ops: {{http: null}}
"""


def test_pms5003_frames_arrive_in_victoriametrics_value_for_value(
    tmp_path: Path, victoria: VictoriaMetrics
) -> None:
    frames_wanted = 6

    async def scenario() -> list[dict[str, int | float | str | bool]]:
        link = tmp_path / "usb-FTDI_FT232R-if00-port0"
        sim = PtyDevice(SERIAL_DRIVERS["pms5003"], link, seed=7)
        sim.device.period = 0.2  # type: ignore[attr-defined]
        sim.plug()
        task = sim.start()
        cfg = parse_config(config_for(tmp_path, link, victoria.url), "test.yaml", {"INFLUX_TOKEN": "t0ken-not-used"})
        p = Pipeline(cfg)
        await p.start()
        await wait_for(lambda: len(sim.delivered) >= frames_wanted, what="frames from the simulator")
        sent = list(sim.delivered)
        await wait_for(lambda: p.stats.readings >= len(sent), what="gateway to read every frame")
        await sim.stop()
        await task if not task.done() else None
        await wait_for(lambda: p.stats.delivered.get("influxdb", 0) >= p.stats.committed, what="delivery")
        await p.stop()
        return sent

    sent = asyncio.run(scenario())
    assert len(sent) >= frames_wanted
    series = victoria.export_until('{__name__=~"(pm|nc).*_value"}', len(sent) * len(PUBLISHED))
    by_name = {s["metric"]["__name__"]: s for s in series}  # type: ignore[index]
    for prop in PUBLISHED:
        s = by_name[f"{prop}_value"]
        metric = s["metric"]
        assert metric["gateway"] == "camden-lc-0423"  # type: ignore[index]
        assert metric["sensor"] == "pm-north"  # type: ignore[index]
        assert metric["borough"] == "camden"  # type: ignore[index]
        pairs = sorted(zip(s["timestamps"], s["values"], strict=True))  # type: ignore[arg-type]
        got = [v for _, v in pairs]
        want = [float(frame[prop]) for frame in sent[: len(got)]]
        assert len(got) == len(sent), f"{prop}: {len(got)} points stored, {len(sent)} frames sent"
        assert got == want, f"{prop} differs: {got} vs {[float(f[prop]) for f in sent]}"
