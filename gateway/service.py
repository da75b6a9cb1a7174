"""The running service: pipeline + ops HTTP + signals + systemd notify. Used by `run` and `demo`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from gateway.config import Config
from gateway.model import iso
from gateway.ops.http import OpsServer
from gateway.pipeline import Pipeline

log = logging.getLogger("gateway.service")


def sd_notify(message: str) -> None:
    """Tell systemd (Type=notify) we are ready / alive. No-op outside systemd."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(addr)
        s.sendall(message.encode())


def status_of(p: Pipeline) -> dict[str, Any]:
    sensors = []
    last_seen = p.metrics.gauge("gateway_sensor_last_seen_timestamp_seconds", "")
    errors = p.metrics.counter("gateway_serial_frame_errors_total", "")
    connected = p.metrics.gauge("gateway_serial_connected", "")
    for sid, sp in p.plan.sensors.items():
        seen = last_seen.get(sensor=sid)
        fault = None
        if sp.serial is not None and connected.get(sensor=sid) == 0:
            fault = "serial port not open"
        elif seen and p.clock() - seen > 120:
            fault = f"no reading for {int(p.clock() - seen)} s"
        errs = sum(v for k, v in errors.values.items() if ("sensor", sid) in k)
        if errs and not fault:
            fault = f"{int(errs)} bad frames since start"
        values = {prop: v for (s, prop), v in p.stats.last_values.items() if s == sid}
        sensors.append({"id": sid, "driver": sp.sensor.driver,
                        "last_seen": iso(seen) if seen else None, "values": values, "fault": fault})  # fmt: skip
    lag = p.metrics.gauge("gateway_sink_lag_observations", "")
    return {
        "gateway": p.cfg.gateway.id,
        "clock": iso(p.clock()),
        "sensors": sensors,
        "sinks": {s.name: {"delivered": p.stats.delivered.get(s.name, 0), "lag": lag.get(sink=s.name)} for s in p.sinks},
        "outbox": {"observations": p.metrics.gauge("gateway_outbox_observations", "").get()},
        "readings": p.stats.readings,
    }  # fmt: skip


async def serve(
    cfg: Config,
    *,
    until: asyncio.Event | None = None,
    on_started: Callable[[Pipeline], Any] | None = None,
    reload: Callable[[], Config | None] | None = None,
) -> int:
    """Run until SIGTERM/SIGINT (or `until`); SIGHUP reloads the config without losing data."""
    loop = asyncio.get_running_loop()
    stop = until or asyncio.Event()
    hup = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, hup.set)
    try:
        while True:
            pipeline = Pipeline(cfg)
            ops: OpsServer | None = None
            await pipeline.start()
            if cfg.ops.http:
                host, _, port = cfg.ops.http.rpartition(":")
                ops = OpsServer(
                    host, int(port),
                    metrics=pipeline.metrics.render,
                    status=lambda p=pipeline: status_of(p),  # type: ignore[misc]
                    ready=pipeline.ready.is_set,
                )  # fmt: skip
                try:
                    await ops.start()
                except OSError as e:
                    log.error("ops http not started", extra={"address": cfg.ops.http, "reason": e.strerror})  # fmt: skip
                    ops = None
            sd_notify("READY=1")
            if on_started is not None:
                on_started(pipeline)
            watchdog = asyncio.create_task(_watchdog())
            waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(hup.wait())]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
            watchdog.cancel()
            reloaded: Config | None = None
            if hup.is_set() and not stop.is_set():
                hup.clear()
                reloaded = reload() if reload is not None else None
                if reloaded is None:
                    log.error("reload refused: config invalid; keeping the running config")
                    if ops is not None:
                        await ops.close()
                    await pipeline.stop()
                    sd_notify("RELOADING=0")
                    continue  # restart with the old config
                sd_notify("RELOADING=1")
            else:
                sd_notify("STOPPING=1")
            if ops is not None:
                await ops.close()
            started = time.monotonic()
            await pipeline.stop()
            log.info("pipeline stopped", extra={"seconds": round(time.monotonic() - started, 2)})
            if reloaded is None:
                return 0
            cfg = reloaded
            log.info("config reloaded")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)


async def _watchdog() -> None:
    usec = int(os.environ.get("WATCHDOG_USEC", "0"))
    if not usec:
        return
    while True:
        sd_notify("WATCHDOG=1")
        await asyncio.sleep(usec / 2e6)
