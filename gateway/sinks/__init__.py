"""The one explicit registry of sinks. A new sink: one module exporting `SPEC`, one line here.

Importing this must stay cheap: sink modules import their client libraries inside `build`/`start`.
"""

from __future__ import annotations

from gateway.sinks import file, influxdb, mqtt, sensorthings
from gateway.sinks.base import SinkSpec

SINKS: dict[str, SinkSpec] = {
    "file": file.SPEC,
    "influxdb": influxdb.SPEC,
    "mqtt": mqtt.SPEC,
    "sensorthings": sensorthings.SPEC,
}
