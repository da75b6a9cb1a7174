"""The one explicit registry of drivers. Adding a sensor: one module, one line here."""

from __future__ import annotations

from firmware_bridge.driver import MqttDriver, SerialDriver
from firmware_bridge.drivers import (
    axis_object_analytics,
    eastron_sdm,
    generic_json,
    node,
    ocpp16j,
    openevse,
    paxcounter,
    pms5003,
    sds011,
    senml,
    senseair_s8,
    sps30,
    wifi_probe_sniffer,
)

SERIAL_DRIVERS: dict[str, SerialDriver] = {
    "pms5003": pms5003.DRIVER,
    "pms7003": pms5003.DRIVER,
    "sds011": sds011.DRIVER,
    "sps30": sps30.DRIVER,
    "senseair_s8": senseair_s8.DRIVER,
    "eastron_sdm": eastron_sdm.DRIVER,
    "node": node.DRIVER,
}

MQTT_DRIVERS: dict[str, MqttDriver] = {
    "openevse": openevse.DRIVER,
    "ocpp16j": ocpp16j.DRIVER,
    "axis_object_analytics": axis_object_analytics.DRIVER,
    "wifi_probe_sniffer": wifi_probe_sniffer.DRIVER,
    "paxcounter": paxcounter.DRIVER,
    "generic_json": generic_json.DRIVER,
    "senml": senml.DRIVER,
}


def driver_names() -> list[str]:
    return sorted({*SERIAL_DRIVERS, *MQTT_DRIVERS})
