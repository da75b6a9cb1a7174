"""`street-gateway simulate`: simulated devices for a gateway to read, without the gateway.

Serial devices speak their real protocol on pseudo-terminals behind a stable symlink (as
`/dev/serial/by-id/…`); MQTT devices publish what their driver's `simulate()` says the real
firmware sends. Symlinks are removed on every way out: the end of `--duration`, Ctrl-C, SIGTERM,
or an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from firmware_bridge.drivers import MESSAGE_DRIVERS, SERIAL_DRIVERS
from gateway.simulate.mqtt_devices import EmbeddedBroker, MqttDevice
from gateway.simulate.serial_pty import PtyDevice

EXIT_OK, EXIT_USAGE = 0, 2


class UsageError(ValueError):
    pass


def parse_serial(spec: str) -> tuple[str, Path]:
    driver, sep, link = spec.partition(":")
    if not sep or not link or driver not in SERIAL_DRIVERS:
        raise UsageError(f"--serial {spec!r}: expected DRIVER:LINK with DRIVER one of {', '.join(sorted(SERIAL_DRIVERS))}")
    path = Path(link)
    if path.exists() and not path.is_symlink():
        raise UsageError(f"--serial {spec!r}: {path} exists and is not a symlink; not replacing it")
    return driver, path


def parse_mqtt(spec: str) -> tuple[str, str]:
    driver, _, topic = spec.partition(":")
    if driver not in MESSAGE_DRIVERS:
        raise UsageError(f"--mqtt {spec!r}: expected DRIVER:TOPIC with DRIVER one of {', '.join(sorted(MESSAGE_DRIVERS))}")
    if not topic:  # the topic a sensor with the driver's example options subscribes to
        profile = MESSAGE_DRIVERS[driver]
        try:
            topic = profile.topic(profile.options.model_validate(profile.example_options)) or ""
        except ValueError:
            topic = profile.default_topic or ""
    if not topic:
        raise UsageError(f"--mqtt {spec!r}: {driver} has no default topic: give one")
    return driver, topic


def parse_broker(spec: str) -> tuple[str, int]:
    host, sep, port = spec.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--broker {spec!r}: expected HOST:PORT, e.g. 127.0.0.1:1883")
    return host.strip("[]"), int(port)


def run_simulators(serial: list[str], mqtt: list[str], *, broker: str | None = None, duration: float = 0,
                   noise: float = 0.0, period: float = 2.0) -> int:  # fmt: skip
    try:
        serial_devs = [parse_serial(s) for s in serial]
        mqtt_devs = [parse_mqtt(s) for s in mqtt]
        address = parse_broker(broker) if broker else None
    except UsageError as e:
        print(f"street-gateway simulate: {e}", file=sys.stderr)
        return EXIT_USAGE
    sims = [PtyDevice(SERIAL_DRIVERS[d], link, seed=i, noise=noise) for i, (d, link) in enumerate(serial_devs)]
    try:
        asyncio.run(_simulate(sims, mqtt_devs, address, duration, period))
    except KeyboardInterrupt:
        pass
    finally:
        for sim in sims:
            sim.remove_link()
    return EXIT_OK


async def _simulate(sims: list[PtyDevice], mqtt: list[tuple[str, str]], address: tuple[str, int] | None,
                    duration: float, period: float) -> None:  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    own_broker: EmbeddedBroker | None = None
    devices: list[MqttDevice] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        for sim in sims:
            sim.plug()
            tasks.append(sim.start())
            print(f"{sim.driver.name}: {sim.link}", flush=True)
        if mqtt:
            if address is None:
                own_broker = EmbeddedBroker()
                await own_broker.start()
                address = ("127.0.0.1", own_broker.port)
                print(f"MQTT broker: {address[0]}:{address[1]} ({own_broker.kind}, started for this run)", flush=True)
            for i, (driver, topic) in enumerate(mqtt):
                dev = MqttDevice(MESSAGE_DRIVERS[driver], topic, *address, seed=i, period_s=period)
                devices.append(dev)
                tasks.append(dev.start())
                print(f"{driver}: publishes to {address[0]}:{address[1]}, topics matching {topic}", flush=True)
        if duration > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(duration):
                    await stop.wait()
        else:
            await stop.wait()
    finally:
        for sim in sims:
            await sim.stop()
        for dev in devices:
            await dev.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        if own_broker is not None:
            await own_broker.stop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
