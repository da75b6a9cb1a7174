"""The one explicit registry of drivers. Adding a sensor: one module, one line here.

Serial drivers may serve several model names (`aliases`, e.g. pms7003); every name maps to the
same spec. `DRIVERS` is what config validation, `check`, `schema`, the docs and the test
matrices iterate.
"""

from __future__ import annotations

from firmware_bridge.driver import Driver, MessageDriver, SerialDriver
from firmware_bridge.drivers import (
    axis_object_analytics,
    chirpstack,
    eastron_sdm,
    generic_json,
    node,
    ocpp16j,
    ocpp201j,
    openevse,
    paxcounter,
    pms5003,
    sds011,
    senml,
    senseair_s8,
    sps30,
    thethingsstack,
    wifi_probe_sniffer,
)

REGISTERED: tuple[Driver, ...] = (
    pms5003.DRIVER,
    sds011.DRIVER,
    sps30.DRIVER,
    senseair_s8.DRIVER,
    eastron_sdm.DRIVER,
    node.DRIVER,
    openevse.DRIVER,
    ocpp16j.DRIVER,
    ocpp201j.DRIVER,
    axis_object_analytics.DRIVER,
    wifi_probe_sniffer.DRIVER,
    paxcounter.DRIVER,
    generic_json.DRIVER,
    senml.DRIVER,
    chirpstack.DRIVER,
    thethingsstack.DRIVER,
)


def _by_name(drivers: tuple[Driver, ...]) -> dict[str, Driver]:
    out: dict[str, Driver] = {}
    for d in drivers:
        names = (d.name, *d.aliases) if isinstance(d, SerialDriver) else (d.name,)
        for name in names:
            if name in out:
                raise RuntimeError(f"driver name {name!r} registered twice")
            out[name] = d
    return out


DRIVERS: dict[str, Driver] = _by_name(REGISTERED)
SERIAL_DRIVERS: dict[str, SerialDriver] = {
    n: d for n, d in DRIVERS.items() if isinstance(d, SerialDriver)
}
MESSAGE_DRIVERS: dict[str, MessageDriver] = {
    n: d for n, d in DRIVERS.items() if isinstance(d, MessageDriver)
}


def driver_names() -> list[str]:
    return sorted(DRIVERS)
