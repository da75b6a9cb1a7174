"""The one explicit registry of sources. A new source: one module exporting `SPEC`, one name here.

A source's module is imported when its spec is first looked up (`SOURCES[name]`), so `run` loads
only the sources its sensors arrive through (`firmware_bridge/lazy.py`). Importing a source module must
stay cheap as well: it imports its I/O libraries inside `build`/`run`.
"""

from __future__ import annotations

from firmware_bridge.lazy import LazyRegistry
from gateway.sources.base import SourceSpec

# the names of the modules in this package; `SPEC.name` is the same
SOURCES: LazyRegistry[SourceSpec] = LazyRegistry.specs(__name__, ("serial", "mqtt", "ocpp"))
