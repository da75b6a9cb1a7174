"""`street-gateway demo`: simulated devices end to end into the embedded file store.

Nothing to install beyond the package: serial sensors are simulated on real pseudo-terminals,
the config is a real YAML file loaded through the same path as `run`, and observations land in
`<data dir>/observations.jsonl` as SensorThings Observations.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from firmware_bridge.driver import SerialDriver
from firmware_bridge.drivers import MESSAGE_DRIVERS, REGISTERED, SERIAL_DRIVERS
from gateway.config import load_config
from gateway.pipeline import Pipeline
from gateway.simulate.mqtt_devices import EmbeddedBroker, MqttDevice
from gateway.simulate.serial_pty import PtyDevice

log = logging.getLogger("gateway.demo")

SITE = {"id": "demo-lc-0001", "borough": "camden", "lat": 51.5390, "lon": -0.1426}


def demo_serial_drivers() -> list[str]:
    """One of each serial driver (aliases skipped), in registry order (PMS5003 first)."""
    return [d.name for d in REGISTERED if isinstance(d, SerialDriver)]


# (sensor id, driver, topic filter, options) for the MQTT devices the demo simulates, each
# publishing what its firmware or network server does (the driver's `simulate`); a topic of
# None is the one the driver derives from the options (a charger's hostname, a DevEUI)
DEMO_MQTT: list[tuple[str, str, str | None, dict[str, Any]]] = [
    ("footfall-1", "wifi_probe_sniffer", "footfall/sniffer-1/probes", {}),
    ("people-cam-1", "axis_object_analytics", "axis/ACCC8E000001/event/#", {}),
    ("pax-1", "paxcounter", "paxout/+", {}),
    ("ev-bay-1", "openevse", None, {"base_topic": "openevse-5a1e"}),
    ("ev-hub-1", "ocpp16j", "ocpp/CB-SIM-1/in", {}),
    ("pax-lora-1", "chirpstack", None, {"example": True}),
    ("aq-lora-1", "thethingsstack", None, {"example": True}),
]


def demo_options(driver: str, options: dict[str, Any]) -> dict[str, Any]:
    """`{"example": True}`: the driver's own example options (what its simulator speaks)."""
    return dict(MESSAGE_DRIVERS[driver].example_options) if options.get("example") else options


def demo_topic(driver: str, topic: str | None, options: dict[str, Any]) -> str:
    spec = MESSAGE_DRIVERS[driver]
    found = topic or spec.topic(spec.options.model_validate(options))
    assert found is not None, driver
    return found


def write_demo_config(data_dir: Path, serial: list[tuple[str, str, Path]],
                      mqtt: list[tuple[str, str, str | None, dict[str, Any]]] = (),  # type: ignore[assignment]
                      mqtt_port: int | None = None) -> Path:  # fmt: skip
    lines = [
        "# Written by `street-gateway demo`: simulated devices, embedded file store.",
        f"gateway: {{id: {SITE['id']}, borough: {SITE['borough']}, "
        f"location: {{lat: {SITE['lat']}, lon: {SITE['lon']}}}, data_dir: '{data_dir}'}}",
        "sensors:",
    ]
    for sid, driver, link in serial:
        lines.append(f"  - {{id: {sid}, driver: {driver}, serial: {{port: '{link}'}}}}")
    for sid, driver, topic, options in mqtt:
        section = f"{{topic: '{topic}'}}" if topic else "{}"
        opts = f", options: {json.dumps(options)}" if options else ""
        lines.append(f"  - {{id: {sid}, driver: {driver}, mqtt: {section}{opts}}}")
    if mqtt and mqtt_port:
        lines.append(f"inputs: {{mqtt: {{host: 127.0.0.1, port: {mqtt_port}}}}}")
    lines += [
        "privacy: {window: 1m, min_count: 3, location_grid_m: 100, salt_rotation: 24h}",
        "sinks:",
        "  file: {path: observations.jsonl, max_bytes: 16MiB, keep: 3}",
        "outbox: {max_bytes: 256MiB, max_age: 7d, when_full: drop_oldest}",
        "ops: {http: '127.0.0.1:0'}",
    ]
    path = data_dir / "demo.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_demo(duration: float, data_dir: Path | None, sensors: int, quiet: bool) -> int:
    from gateway.ops.logs import setup_logging

    # the demo runs on a desktop or CI box whose clock the host keeps, even where the kernel
    # reports "unsynchronised"; the no-clock-battery guard is for the Pi (docs/operations.md)
    os.environ.setdefault("STREET_GATEWAY_CLOCK", "system")
    if data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix="street-gateway-demo-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    logfile = (data_dir / "gateway.log").open("a")
    setup_logging("info", stream=logfile)
    try:
        return asyncio.run(_demo(duration, data_dir, sensors, quiet))
    except KeyboardInterrupt:
        return 0
    finally:
        logfile.close()


async def _demo(duration: float, data_dir: Path, n_sensors: int, quiet: bool) -> int:
    from gateway.service import serve

    drivers = demo_serial_drivers()
    dev_dir = data_dir / "dev"
    dev_dir.mkdir(exist_ok=True)
    serial = []
    for i in range(n_sensors):
        driver = drivers[i % len(drivers)]
        serial.append((f"{driver}-{i + 1}", driver, dev_dir / f"{driver}-{i + 1}"))
    sims = [PtyDevice(SERIAL_DRIVERS[d], link, seed=i) for i, (_, d, link) in enumerate(serial)]
    for sim in sims:
        sim.plug()  # before the gateway opens the ports, as a sensor plugged in at boot
    tasks = [sim.start() for sim in sims]
    mqtt = [(sid, d, topic, demo_options(d, opts)) for sid, d, topic, opts in DEMO_MQTT
            if d in MESSAGE_DRIVERS]  # fmt: skip
    broker = EmbeddedBroker()
    devices: list[MqttDevice] = []
    if mqtt:
        await broker.start()
        devices = [MqttDevice(MESSAGE_DRIVERS[d], demo_topic(d, topic, opts), "127.0.0.1", broker.port,
                              seed=i, period_s=1.0)
                   for i, (_, d, topic, opts) in enumerate(mqtt)]  # fmt: skip
        tasks += [d.start() for d in devices]
    cfg = load_config(write_demo_config(data_dir, serial, mqtt, broker.port))
    stop = asyncio.Event()
    holder: dict[str, Pipeline] = {}
    out = sys.stdout
    live = out.isatty() and not quiet

    print(f"street-gateway demo: {len(sims)} simulated serial sensors "
          f"({', '.join(sorted({d for _, d, _ in serial}))}) for {duration:g} s", file=out)  # fmt: skip
    if mqtt:
        print(f"  {len(devices)} simulated MQTT devices ({', '.join(d for _, d, _, _ in mqtt)}) "
              f"on a local {broker.kind} broker", file=out)  # fmt: skip
    print(f"  data dir: {data_dir}", file=out)

    async def ticker() -> None:
        start = time.monotonic()
        while time.monotonic() - start < duration:
            await asyncio.sleep(1.0)
            p = holder.get("p")
            if p is not None and not quiet:
                line = _summary_line(p, time.monotonic() - start)
                print(("\r" + line) if live else line, end="" if live else "\n", file=out, flush=True)
        stop.set()

    tick = asyncio.create_task(ticker())
    rc = await serve(cfg, until=stop, on_started=lambda p: holder.__setitem__("p", p))
    tick.cancel()
    for sim in sims:
        await sim.stop()
    for dev in devices:
        await dev.stop()
    await asyncio.gather(*tasks, return_exceptions=True)
    await broker.stop()
    if live:
        print(file=out)
    p = holder["p"]
    _final_summary(p, data_dir, out)
    return rc


def _summary_line(p: Pipeline, elapsed: float) -> str:
    delivered = sum(p.stats.delivered.values())
    latest = []
    for (sensor, prop), v in sorted(p.stats.last_values.items()):
        if prop in ("pm2_5", "co2", "power", "footfall", "passages_increment", "wifi_devices_max",
                    "connector_status"):  # fmt: skip
            latest.append(f"{sensor}.{prop}={v}")
    return (f"[{elapsed:4.0f}s] readings {p.stats.readings}  observations {p.stats.committed}  "
            f"delivered {delivered}  {'  '.join(latest[:4])}")  # fmt: skip


def _final_summary(p: Pipeline, data_dir: Path, out: Any) -> None:
    path = data_dir / "observations.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    per_ds: dict[int, int] = {}
    for line in lines:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            ds = json.loads(line)["Datastream"]["@iot.id"]
            per_ds[ds] = per_ds.get(ds, 0) + 1
    print("summary:", file=out)
    print(f"  readings decoded:        {p.stats.readings}", file=out)
    print(f"  observations committed:  {p.stats.committed}", file=out)
    for name, n in p.stats.delivered.items():
        print(f"  delivered to {name + ':':<12} {n}", file=out)
    print(f"  guard blocks:            {sum(p.guard.blocked.values())}", file=out)
    print(f"  datastreams with data:   {len(per_ds)} of {len(p.plan.datastreams)}", file=out)
    print(f"  file store:              {path} ({len(lines)} lines)", file=out)
    if lines:
        print(f"  last observation:        {lines[-1]}", file=out)
    print(f"  log:                     {data_dir / 'gateway.log'}", file=out)


def run_simulators(specs: list[str], duration: float, noise: float) -> int:
    """`street-gateway simulate --serial pms5003:/tmp/pm1 …`: devices for a gateway to read."""
    devices = []
    for i, spec in enumerate(specs):
        driver, sep, link = spec.partition(":")
        if not sep or driver not in SERIAL_DRIVERS:
            print(f"simulate: --serial {spec!r}: expected DRIVER:LINK with DRIVER one of "
                  f"{', '.join(sorted(SERIAL_DRIVERS))}", file=sys.stderr)  # fmt: skip
            return 2
        devices.append(PtyDevice(SERIAL_DRIVERS[driver], Path(link), seed=i, noise=noise))

    async def go() -> None:
        tasks = [d.start() for d in devices]
        await asyncio.sleep(0.1)
        for d in devices:
            print(f"{d.driver.name}: {d.link}", flush=True)
        if duration > 0:
            await asyncio.sleep(duration)
        else:
            await asyncio.Event().wait()
        for d in devices:
            await d.stop()
        await asyncio.gather(*tasks, return_exceptions=True)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(go())
    return 0
