"""The one explicit registry of drivers. Adding a sensor: one module, one line here."""

from __future__ import annotations

from firmware_bridge.driver import MqttDriver, SerialDriver
from firmware_bridge.drivers import pms5003

SERIAL_DRIVERS: dict[str, SerialDriver] = {
    "pms5003": pms5003.DRIVER,
    "pms7003": pms5003.DRIVER,
}

MQTT_DRIVERS: dict[str, MqttDriver] = {}


def driver_names() -> list[str]:
    return sorted({*SERIAL_DRIVERS, *MQTT_DRIVERS})
