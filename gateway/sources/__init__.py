"""The one explicit registry of sources. A new source: one module exporting `SPEC`, one line here.

Importing this must stay cheap: source modules import their I/O libraries inside `build`/`run`.
"""

from __future__ import annotations

from gateway.sources import mqtt, ocpp, serial
from gateway.sources.base import SourceSpec

SOURCES: dict[str, SourceSpec] = {
    "serial": serial.SPEC,
    "mqtt": mqtt.SPEC,
    "ocpp": ocpp.SPEC,
}
