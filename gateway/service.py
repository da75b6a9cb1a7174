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
from gateway.datastreams import for_status, legend
from gateway.model import iso
from gateway.ops.clock import GatewayClock
from gateway.ops.http import OpsServer
from gateway.pipeline import Pipeline
from gateway.supervisor import Supervisor

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


def _values(p: Pipeline, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    m = p.metrics.metrics.get(name)
    return m.values if m is not None else {}


def _by_label(p: Pipeline, name: str, label: str) -> dict[str, float]:
    """Sum a metric's samples per value of one label (e.g. frame errors per sensor)."""
    out: dict[str, float] = {}
    for key, v in _values(p, name).items():
        for k, lv in key:
            if k == label:
                out[lv] = out.get(lv, 0.0) + v
    return out


STALE_S = 120.0  # a sensor silent this long is shown as a fault
SINK_BEHIND_S = 60.0  # a sink whose oldest undelivered observation is older is "behind"
# Sink state -> the colour the status page shows it in: ok green, warn amber, fault red. A state
# not listed here (a new one, e.g. a supervisor's "blocked") shows red until it is placed.
SINK_LEVELS = {"ok": "ok", "behind": "warn", "holding": "warn", "blocked": "fault", "down": "fault"}


def status_of(p: Pipeline, clock: GatewayClock | None = None) -> dict[str, Any]:
    """What the status page and /status.json show: per sensor its last non-personal values
    (observations that passed the privacy stage and the guard) and its fault, sinks, clock."""
    p.metrics.render()  # run the collectors so derived gauges are fresh
    now = p.clock()
    last_seen = _by_label(p, "gateway_sensor_last_seen_timestamp_seconds", "sensor")
    serial_up = _by_label(p, "gateway_serial_connected", "sensor")
    frame_errors = _by_label(p, "gateway_serial_frame_errors_total", "sensor")
    bad_messages = _by_label(p, "gateway_mqtt_bad_messages_total", "sensor")
    mqtt_up = sum(_values(p, "gateway_mqtt_connected").values())
    datastreams = for_status(legend(p.cfg, p.plan))
    sensors = []
    for sid, sp in p.plan.sensors.items():
        seen = last_seen.get(sid)
        fault, level = None, "fault"
        if sp.transport == "serial" and not serial_up.get(sid):
            fault = "serial port not open (unplugged?)"
        elif sp.transport == "mqtt" and not mqtt_up:
            fault = "local MQTT broker not connected"
        elif seen is None:
            fault, level = "no reading yet", "warn"
        elif now - seen > STALE_S:
            fault = f"no reading for {int(now - seen)} s"
        errs = frame_errors.get(sid, 0) + bad_messages.get(sid, 0)
        if errs and not fault:
            fault, level = f"{int(errs)} bad frames/messages since start", "warn"
        values = {prop: v for (s, prop), v in p.stats.last_values.items() if s == sid}
        sensors.append({
            "id": sid,
            "driver": sp.driver.name,
            "transport": sp.transport,
            "last_seen": iso(seen) if seen else None,
            "last_seen_age_s": round(max(0.0, now - seen), 1) if seen else None,
            "values": values,
            "bad_frames": int(errs),
            "fault": fault,
            "level": level if fault else "ok",
            "window_s": sp.window_s,
            # its Datastreams with the last value of each: absent = none yet, None = withheld
            "datastreams": [{**ds, **({"value": values[ds["property"]]} if ds["property"] in values else {})}
                            for ds in datastreams.get(sid, [])],
        })  # fmt: skip
    lag = _by_label(p, "gateway_sink_lag_observations", "sink")
    oldest = _by_label(p, "gateway_sink_oldest_pending_age_seconds", "sink")
    failures = _by_label(p, "gateway_sink_failures_total", "sink")
    dropped = _by_label(p, "gateway_outbox_dropped_total", "sink")
    sinks = {}
    runners = {r.sink.name: r for r in p.runners}
    for s in p.sinks:
        behind = oldest.get(s.name, 0.0) > SINK_BEHIND_S
        runner = runners.get(s.name)
        blocked = runner.blocked if runner is not None else None
        state = "blocked" if blocked is not None else "behind" if behind else "ok"
        if state == "ok" and runner is not None and runner.holding:
            state = "holding"  # provisional rows wait for the clock to synchronise
        if runner is not None and not p.supervisor.up(runner.name) and p.supervisor.down:
            state = "down" if runner.name in p.supervisor.down else state
        sinks[s.name] = {
            "state": state,
            "level": SINK_LEVELS.get(state, "fault"),
            "reason": str(blocked) if blocked is not None else None,
            "delivered": p.stats.delivered.get(s.name, 0),
            "lag": int(lag.get(s.name, 0)),
            "oldest_pending_age_s": round(oldest.get(s.name, 0.0), 1),
            "failures": int(failures.get(s.name, 0)),
            "dropped": int(dropped.get(s.name, 0)),
        }
    if clock is not None:
        cs = clock.state()
        clock_st = {**cs, "time": iso(cs["time"]),
                    "last_trusted": iso(cs["last_trusted"]) if cs["last_trusted"] else None}  # fmt: skip
    else:
        clock_st = {"time": iso(now), "synchronised": True, "mode": "system"}
    return {
        "gateway": p.cfg.gateway.id,
        "clock": clock_st,
        "sensors": sensors,
        "sinks": sinks,
        "outbox": {"observations": int(sum(_values(p, "gateway_outbox_observations").values()))},
        "readings": p.stats.readings,
        "committed": p.stats.committed,
        "quarantined": p.stats.quarantined,
        "problems": p.problems(),
    }


class _Live:
    """The pipeline the ops server answers for; replaced at every reload."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.pipeline: Pipeline | None = None
        self.switching = False
        self.supervisor = supervisor  # the service's own tasks: ops, clock, watchdog

    def ready(self) -> list[str]:
        """What keeps the gateway from being ready (empty: ready), for /readyz."""
        if self.pipeline is None or not self.pipeline.ready.is_set() or self.switching:
            return ["starting"]
        return self.supervisor.problems() + self.pipeline.problems()

    def alive(self) -> bool:
        """Feed the systemd watchdog? Not while the committer is down: if it cannot be
        restarted, systemd restarts the whole service."""
        return self.pipeline is None or self.switching or self.pipeline.committer_alive


def _outbox_collector(p: Pipeline) -> Callable[[], None]:
    oldest = p.metrics.gauge("gateway_outbox_oldest_pending_age_seconds",
                             "Age of the oldest observation some sink has not received")  # fmt: skip

    def collect() -> None:
        ages = _values(p, "gateway_sink_oldest_pending_age_seconds").values()
        oldest.set(max(ages, default=0.0))

    return collect


async def serve(
    cfg: Config,
    *,
    until: asyncio.Event | None = None,
    on_started: Callable[[Pipeline], Any] | None = None,
    reload: Callable[[], Config | None] | None = None,
    clock: GatewayClock | None = None,
    supervisor: Supervisor | None = None,
) -> int:
    """Run until SIGTERM/SIGINT (or `until`); SIGHUP reloads the config without losing data.

    A reload stops the running pipeline the way SIGTERM does (sources stop, queued readings are
    committed, open windows closed, sinks drained as far as they go; the outbox keeps the rest)
    and starts one with the new config on the same outbox. An invalid new config is refused and
    the running pipeline keeps going untouched. The clock and the ops server live across reloads.
    """
    loop = asyncio.get_running_loop()
    stop = until or asyncio.Event()
    hup = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, hup.set)
    if clock is None:
        clock = GatewayClock(state_file=cfg.gateway.data_dir / "clock.json")
    # the service's own long-running tasks, beside each pipeline's (which it supervises itself)
    sup = supervisor or Supervisor()
    live = _Live(sup)
    ops: OpsServer | None = None
    ops_addr: object = None
    sup.start("watchdog", lambda: _watchdog(live))
    sup.start("clock", lambda: _clock_upkeep(clock))
    try:
        while True:
            pipeline = Pipeline(cfg, clock=clock)
            clock.bind(pipeline.metrics)
            pipeline.metrics.collectors.append(_outbox_collector(pipeline))
            await pipeline.start()
            live.pipeline, live.switching = pipeline, False
            ops_key = (cfg.ops.http, cfg.ops.token, tuple(cfg.ops.allowed_hosts))
            if ops_key != ops_addr:
                if ops is not None:
                    await sup.stop(["ops"])
                ops, ops_addr = await _start_ops(cfg.ops.http, live, clock), ops_key
                if ops is not None:
                    sup.start("ops", ops.run)
            sd_notify(
                f"READY=1\nSTATUS=running: {len(pipeline.plan.sensors)} sensors, clock {clock.mode}"
            )
            if on_started is not None:
                on_started(pipeline)
            reloaded = await _wait_for_stop_or_reload(stop, hup, reload)
            live.switching = True
            if reloaded is None:
                sd_notify("STOPPING=1")
            else:
                sd_notify(
                    f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"
                )
            started = time.monotonic()
            await pipeline.stop()
            log.info("pipeline stopped", extra={"seconds": round(time.monotonic() - started, 2)})
            if reloaded is None:
                return 0
            cfg = reloaded
            log.info("config reloaded")
    finally:
        await sup.stop()
        if ops is not None:
            await ops.close()
        clock.persist(force=True)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)


async def _wait_for_stop_or_reload(
    stop: asyncio.Event, hup: asyncio.Event, reload: Callable[[], Config | None] | None
) -> Config | None:
    """None: stop. A config: reload with it. An invalid config keeps the pipeline running."""
    while True:
        waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(hup.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
        if stop.is_set():
            return None
        hup.clear()
        new = await _reload_unless_stopped(stop, reload) if reload is not None else None
        if stop.is_set():
            return None
        if new is not None:
            return new
        log.error(
            "reload refused: config invalid or reload unsupported; keeping the running config"
        )
        sd_notify("STATUS=reload refused: config invalid; running the previous config")


async def _reload_unless_stopped(stop: asyncio.Event, reload: Callable[[], Config | None]) -> Config | None:
    """`reload()` off the loop: `run` validates in a child process (gateway/validated_config.py),
    a second or more on a Pi, while the pipeline goes on. A SIGTERM meanwhile wins: None at once,
    and whatever the check gives is dropped when it ends."""
    pending: asyncio.Future[Config | None] = asyncio.get_running_loop().run_in_executor(None, reload)
    stopping: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((pending, stopping), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if stop.is_set() and not pending.done():
        return None
    return pending.result()


async def _start_ops(address: str | None, live: _Live, clock: GatewayClock) -> OpsServer | None:
    if not address:
        return None
    host, _, port = address.rpartition(":")

    def metrics() -> str:
        return live.pipeline.metrics.render() if live.pipeline is not None else ""

    def status() -> dict[str, Any]:
        if live.pipeline is None:
            return {}
        return {**status_of(live.pipeline, clock), "problems": live.ready()}

    cfg = live.pipeline.cfg if live.pipeline is not None else None
    token = cfg.ops.token.get_secret_value() if cfg is not None and cfg.ops.token is not None else None
    allowed = frozenset(cfg.ops.allowed_hosts) if cfg is not None else frozenset()
    ops = OpsServer(host.strip("[]"), int(port), metrics=metrics, status=status, ready=live.ready,
                    token=token, allowed_hosts=allowed)  # fmt: skip
    try:
        await ops.start()
    except OSError as e:
        log.error("ops http not started", extra={"address": address, "reason": e.strerror})
        return None
    return ops


async def _clock_upkeep(clock: GatewayClock) -> None:
    """Probe the clock even when no reading arrives, and persist the last trusted time."""
    while True:
        clock.now()
        clock.persist()
        await asyncio.sleep(10.0)


async def _watchdog(live: _Live) -> None:
    """WATCHDOG=1 from the event loop itself, at half the interval systemd expects, and only
    while the committer is alive: a gateway that cannot commit is restarted by systemd."""
    usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        await asyncio.Event().wait()  # no watchdog asked for: idle, not finished
    withheld = False
    while True:
        if live.alive():
            sd_notify("WATCHDOG=1")
            withheld = False
        elif not withheld:
            log.error("committer down: systemd watchdog not fed until it is back")
            withheld = True
        await asyncio.sleep(usec / 2e6)
