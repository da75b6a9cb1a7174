"""The one explicit registry of sinks. A new sink: one module exporting `SPEC`, one name here.

A sink's module is imported when its spec is first looked up (`SINKS[type]`), so `run` loads only
the sinks it is configured with (`firmware_bridge/lazy.py`). Importing a sink module must stay cheap as
well: it imports its client library inside `build`/`start`.
"""

from __future__ import annotations

from firmware_bridge.lazy import LazyRegistry
from gateway.sinks.base import SinkSpec

# the names of the modules in this package; `SPEC.name` is the same
SINKS: LazyRegistry[SinkSpec] = LazyRegistry.specs(__name__, ("file", "influxdb", "mqtt", "sensorthings"))
