"""The one explicit registry of drivers. Adding a sensor: one module, one line here.

Each driver name maps to the module under `firmware_bridge/drivers/` that exports its `DRIVER`;
serial drivers may serve several model names (`aliases`, e.g. pms7003), and every name maps to
the same module. A module is imported when its driver is first looked up (`DRIVERS[name]`), so a
gateway loads only the drivers it is configured with (issue 19: ~4 MiB less resident memory on a
Pi); the names alone (`name in DRIVERS`, `sorted(DRIVERS)`) import nothing. `REGISTERED`,
`SERIAL_DRIVERS` and `MESSAGE_DRIVERS` — what `schema`, the docs, the simulators and the test
matrices iterate — import every driver on first use. A module whose `DRIVER` does not answer to
the names listed for it here fails loudly when it is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from firmware_bridge.driver import Driver, MessageDriver, SerialDriver
from firmware_bridge.lazy import LazyRegistry

# name -> module (in this package); aliases right after their driver
MODULES: dict[str, str] = {
    "pms5003": "pms5003",
    "pms7003": "pms5003",
    "sds011": "sds011",
    "sps30": "sps30",
    "senseair_s8": "senseair_s8",
    "eastron_sdm": "eastron_sdm",
    "node": "node",
    "openevse": "openevse",
    "ocpp16j": "ocpp16j",
    "ocpp201j": "ocpp201j",
    "axis_object_analytics": "axis_object_analytics",
    "wifi_probe_sniffer": "wifi_probe_sniffer",
    "paxcounter": "paxcounter",
    "generic_json": "generic_json",
    "senml": "senml",
    "chirpstack": "chirpstack",
    "thethingsstack": "thethingsstack",
}


def _names(d: Driver) -> tuple[str, ...]:
    return (d.name, *d.aliases) if isinstance(d, SerialDriver) else (d.name,)


DRIVERS: Mapping[str, Driver] = LazyRegistry(__name__, MODULES, "DRIVER", _names)

if TYPE_CHECKING:
    REGISTERED: tuple[Driver, ...]  # every driver once, in registry order
    SERIAL_DRIVERS: dict[str, SerialDriver]
    MESSAGE_DRIVERS: dict[str, MessageDriver]


def __getattr__(name: str) -> Any:
    """`REGISTERED`, `SERIAL_DRIVERS`, `MESSAGE_DRIVERS`: every driver, imported on first use."""
    if name == "REGISTERED":
        first: dict[str, str] = {}  # module -> its driver's own name (listed before its aliases)
        for n, m in MODULES.items():
            first.setdefault(m, n)
        value: Any = tuple(DRIVERS[n] for n in first.values())
    elif name == "SERIAL_DRIVERS":
        value = {n: d for n, d in DRIVERS.items() if isinstance(d, SerialDriver)}
    elif name == "MESSAGE_DRIVERS":
        value = {n: d for n, d in DRIVERS.items() if isinstance(d, MessageDriver)}
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def driver_names() -> list[str]:
    return sorted(DRIVERS)
