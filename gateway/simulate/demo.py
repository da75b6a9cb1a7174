"""`street-gateway demo`: simulated devices end to end into the embedded file store.

Nothing to install beyond the package: serial sensors are simulated on real pseudo-terminals,
MQTT devices publish on a local broker, the config is a real YAML file loaded through the same
path as `run`, and observations land in `<data dir>/observations.jsonl` as SensorThings
Observations, with the Datastream legend beside them. One of every registered driver takes part.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from firmware_bridge.driver import MessageDriver, SerialDriver
from firmware_bridge.drivers import MESSAGE_DRIVERS, REGISTERED, SERIAL_DRIVERS
from gateway.config import load_config
from gateway.datastreams import LegendRow
from gateway.pipeline import Pipeline
from gateway.simulate.mqtt_devices import EmbeddedBroker, MqttDevice
from gateway.simulate.serial_pty import PtyDevice

log = logging.getLogger("gateway.demo")

SITE = {"id": "demo-lc-0001", "borough": "camden", "lat": 51.5390, "lon": -0.1426}
DEMO_MARK = "# Written by `street-gateway demo`"
STATUS_PORT = 9108  # the status page's usual port, when it is free
# what a demo run leaves in its data dir (cleared before the next run unless --reuse)
DEMO_FILES = ("demo.yaml", "gateway.log", "clock.json", "datastreams.txt", "datastreams.json")
DEMO_GLOBS = ("outbox.sqlite*", "observations.jsonl*")


def demo_serial_drivers() -> list[str]:
    """One of each serial driver (aliases skipped), in registry order (PMS5003 first)."""
    return [d.name for d in REGISTERED if isinstance(d, SerialDriver)]


# (sensor id, driver, topic filter, options) for the MQTT devices where the real topic or options
# matter, each publishing what its firmware or network server does (the driver's `simulate`); a
# topic of None is the one the driver derives from the options (a charger's hostname, a DevEUI)
CURATED_MQTT: list[tuple[str, str, str | None, dict[str, Any]]] = [
    ("footfall-1", "wifi_probe_sniffer", "footfall/sniffer-1/probes", {}),
    ("people-cam-1", "axis_object_analytics", "axis/ACCC8E000001/event/#", {}),
    ("pax-1", "paxcounter", "paxout/+", {}),
    ("ev-bay-1", "openevse", None, {"base_topic": "openevse-5a1e"}),
    ("ev-hub-1", "ocpp16j", "ocpp/CB-SIM-1/in", {}),
    ("pax-lora-1", "chirpstack", None, {"example": True}),
    ("aq-lora-1", "thethingsstack", None, {"example": True}),
]


def _demo_mqtt() -> list[tuple[str, str, str | None, dict[str, Any]]]:
    """The curated devices, then one of every other MQTT profile in the registry: its example
    options, and its default topic with the device's name for the first `+` (two profiles may
    share a default, e.g. the OCPP versions)."""
    out = list(CURATED_MQTT)
    have = {d for _, d, _, _ in out}
    for d in REGISTERED:
        if isinstance(d, MessageDriver) and "mqtt" in d.transports and d.name not in have:
            sid = f"{d.name.replace('_', '-')}-1"
            topic = d.default_topic.replace("+", sid, 1) if d.default_topic else None
            out.append((sid, d.name, topic, {"example": True} if d.example_options else {}))
    return out


DEMO_MQTT = _demo_mqtt()


def demo_options(driver: str, options: dict[str, Any]) -> dict[str, Any]:
    """`{"example": True}`: the driver's own example options (what its simulator speaks)."""
    return dict(MESSAGE_DRIVERS[driver].example_options) if options.get("example") else options


def demo_topic(driver: str, topic: str | None, options: dict[str, Any]) -> str:
    spec = MESSAGE_DRIVERS[driver]
    found = topic or spec.topic(spec.options.model_validate(options))
    if found is None:
        raise AssertionError(driver)
    return found


def write_demo_config(data_dir: Path, serial: list[tuple[str, str, Path]],
                      mqtt: list[tuple[str, str, str | None, dict[str, Any]]] = (),  # type: ignore[assignment]
                      mqtt_port: int | None = None, ops_port: int = 0) -> Path:  # fmt: skip
    lines = [
        f"{DEMO_MARK}: simulated devices, embedded file store.",
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
        f"ops: {{http: '127.0.0.1:{ops_port}'}}",
    ]
    path = data_dir / "demo.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def prepare_data_dir(data_dir: Path | None, reuse: bool) -> tuple[Path, str | None]:
    """(the data dir, why it cannot be used). A new temp folder by default; a given folder must be
    new, empty, or an earlier demo's (whose files are cleared unless `reuse`), so the summary
    counts this run only. Nothing that is not the demo's own is ever deleted."""
    if data_dir is None:
        return Path(tempfile.mkdtemp(prefix="street-gateway-demo-")), None
    if data_dir.exists() and any(data_dir.iterdir()) and not reuse:
        config = data_dir / "demo.yaml"
        if not (config.is_file() and config.read_text(errors="replace").startswith(DEMO_MARK)):
            return data_dir, f"{data_dir} is not empty and is not an earlier demo's folder: give a new or empty one"
        for name in DEMO_FILES:
            (data_dir / name).unlink(missing_ok=True)
        for pattern in DEMO_GLOBS:
            for path in data_dir.glob(pattern):
                path.unlink(missing_ok=True)
        shutil.rmtree(data_dir / "dev", ignore_errors=True)
        print(f"street-gateway demo: cleared the earlier demo run in {data_dir} (--reuse keeps it)")
    data_dir.mkdir(parents=True, exist_ok=True)
    return data_dir, None


def _port_for_status_page() -> int:
    """9108 as on a real gateway when free, else any free port (the demo prints the address)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", STATUS_PORT))
            return STATUS_PORT
        except OSError:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])


def run_demo(duration: float, data_dir: Path | None, sensors: int | None, quiet: bool,
             keep: bool = False, reuse: bool = False) -> int:  # fmt: skip
    from gateway.ops.logs import setup_logging

    # the demo runs on a desktop or CI box whose clock the host keeps, even where the kernel
    # reports "unsynchronised"; the no-clock-battery guard is for the Pi (docs/operations.md)
    os.environ.setdefault("STREET_GATEWAY_CLOCK", "system")
    data_dir, why = prepare_data_dir(data_dir, reuse)
    if why:
        print(f"street-gateway demo: {why}", file=sys.stderr)
        return 2
    logfile = (data_dir / "gateway.log").open("a")
    setup_logging("info", stream=logfile)
    n = len(demo_serial_drivers()) if sensors is None else sensors
    try:
        return asyncio.run(_demo(duration, data_dir, n, quiet, keep))
    except KeyboardInterrupt:
        return 0
    finally:
        logfile.close()


async def _demo(duration: float, data_dir: Path, n_sensors: int, quiet: bool, keep: bool = False) -> int:
    from gateway.datastreams import as_json, as_table, legend
    from gateway.plan import build_plan
    from gateway.service import serve

    drivers = demo_serial_drivers()
    dev_dir = data_dir / "dev"
    dev_dir.mkdir(exist_ok=True)
    serial = []
    for i in range(n_sensors):
        driver = drivers[i % len(drivers)]
        serial.append((f"{driver.replace('_', '-')}-{i + 1}", driver, dev_dir / f"{driver}-{i + 1}"))
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
    ops_port = _port_for_status_page()
    cfg = load_config(write_demo_config(data_dir, serial, mqtt, broker.port, ops_port))
    rows = legend(cfg, build_plan(cfg))
    (data_dir / "datastreams.txt").write_text(as_table(rows))
    (data_dir / "datastreams.json").write_text(as_json(rows))
    stop = asyncio.Event()
    holder: dict[str, Pipeline] = {}
    out = sys.stdout
    live = out.isatty() and not quiet
    url = f"http://127.0.0.1:{ops_port}/"

    print(f"street-gateway demo: {len(sims)} simulated serial sensors "
          f"({', '.join(d for _, d, _ in serial)}) for {duration:g} s", file=out)  # fmt: skip
    if mqtt:
        print(f"  {len(devices)} simulated MQTT devices ({', '.join(d for _, d, _, _ in mqtt)}) "
              f"on a local {broker.kind} broker at 127.0.0.1:{broker.port}", file=out)  # fmt: skip
    print(f"  data dir:    {data_dir}", file=out)
    print(f"  status page: {url}  (open it in a browser while the demo runs)", file=out)
    print(f"  datastreams: {data_dir / 'datastreams.txt'}  (which sensor and property each id is)", file=out)

    async def ticker() -> None:
        start = time.monotonic()
        while time.monotonic() - start < duration:
            await asyncio.sleep(1.0)
            p = holder.get("p")
            if p is not None and not quiet:
                line = _summary_line(p, time.monotonic() - start)
                print(("\r" + line) if live else line, end="" if live else "\n", file=out, flush=True)
        if not keep:
            stop.set()
            return
        if live:
            print(file=out)
        _final_summary(holder["p"], data_dir, out, rows)
        print(f"\n--keep: the gateway and the simulated devices keep running. Status page: {url}\n"
              f"  config: {data_dir / 'demo.yaml'}; Ctrl-C stops.", file=out, flush=True)  # fmt: skip

    tick = asyncio.create_task(ticker())
    try:
        rc = await serve(cfg, until=stop, on_started=lambda p: holder.__setitem__("p", p))
    finally:
        tick.cancel()
        for sim in sims:
            await sim.stop()
        for dev in devices:
            await dev.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sim in sims:
            sim.remove_link()
        await broker.stop()
    if live:
        print(file=out)
    _final_summary(holder["p"], data_dir, out, rows)
    return rc


def _summary_line(p: Pipeline, elapsed: float) -> str:
    delivered = sum(p.stats.delivered.values())
    latest = []
    for (sensor, prop), v in sorted(p.stats.last_values.items()):
        if v is not None and prop in ("pm2_5", "co2", "power", "footfall", "passages_increment",
                                      "wifi_devices_max", "connector_status"):  # fmt: skip
            latest.append(f"{sensor}.{prop}={v}")
    return (f"[{elapsed:4.0f}s] readings {p.stats.readings}  observations {p.stats.committed}  "
            f"delivered {delivered}  {'  '.join(latest[:4])}")  # fmt: skip


def describe_observation(obs: dict[str, Any], by_id: dict[int, LegendRow]) -> str:
    """One observation in words (`pms5003-1 pm2_5 = 12 ug/m3`), and what a null result means."""
    row = by_id.get(obs.get("Datastream", {}).get("@iot.id"))
    if row is None:
        return "(a Datastream not in this config)"
    params = obs.get("parameters") or {}
    what = f"{row.sensor} {row.property}"
    if params.get("suppressed"):
        return (f"{what}: withheld — fewer than {params.get('min_count')} contributors in the "
                f"window, so its number is not published (the window is: result null)")  # fmt: skip
    unit = f" {row.symbol}" if row.symbol else ""
    how = "" if row.aggregation == "none" else f" ({row.aggregation} over {row.window})"
    return f"{what} = {obs.get('result')}{unit}{how}"


def _final_summary(p: Pipeline, data_dir: Path, out: Any, rows: list[LegendRow] | None = None) -> None:
    rows = rows or []
    by_id = {r.id: r for r in rows}
    path = data_dir / "observations.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    per_ds: dict[int, int] = {}
    last: dict[str, Any] | None = None
    for line in lines:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            obs = json.loads(line)
            per_ds[obs["Datastream"]["@iot.id"]] = per_ds.get(obs["Datastream"]["@iot.id"], 0) + 1
            last = obs
    print("summary:", file=out)
    print(f"  readings decoded:        {p.stats.readings}", file=out)
    print(f"  observations committed:  {p.stats.committed}", file=out)
    for name, n in p.stats.delivered.items():
        print(f"  delivered to {name + ':':<12} {n}", file=out)
    print(f"  guard blocks:            {sum(p.guard.blocked.values())}", file=out)
    print(f"  datastreams with data:   {len(per_ds)} of {len(p.plan.datastreams)}", file=out)
    for why in _why_empty([r for r in rows if r.id not in per_ds]):
        print(f"    {why}", file=out)
    print(f"  file store:              {path} ({len(lines)} lines)", file=out)
    print(f"  datastream legend:       {data_dir / 'datastreams.txt'} (and .json)", file=out)
    if last is not None:
        print(f"  last observation:        {json.dumps(last, separators=(',', ':'))}", file=out)
        print(f"                           = {describe_observation(last, by_id)}", file=out)
    print(f"  log:                     {data_dir / 'gateway.log'}", file=out)


def _why_empty(empty: list[LegendRow]) -> list[str]:
    """Why some Datastreams have no observation yet, in words."""
    out = []
    windows = [r for r in empty if r.aggregation != "none"]
    readings = [r for r in empty if r.aggregation == "none"]
    if windows:
        out.append(f"{len(windows)} without data are per-window aggregates (counts, sums, increments): "
                   f"each appears when its {windows[0].window} window closes (or the demo stops) and "
                   f"only if the devices reported what it counts, e.g. {windows[0].sensor} {windows[0].property}")  # fmt: skip
    if readings:
        out.append(f"{len(readings)} without data are properties the simulated devices did not report "
                   f"in this run, e.g. {readings[0].sensor} {readings[0].property}")  # fmt: skip
    return out
