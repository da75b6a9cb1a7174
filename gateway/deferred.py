"""A standard-library module imported only when something uses it (issue 19: peak RSS).

paho-mqtt imports `urllib.request` at its top for one thing: reading a proxy from the
environment, which it does only when PySocks is installed (`paho.mqtt.client._get_proxy`), and
PySocks is not among the gateway's dependencies. `urllib.request` brings `tempfile` and more:
0.4 MiB resident for nothing. `defer("urllib.request")` (in `run`, gateway/ops/memory.py before
anything imports paho) puts a stand-in in its place until first
use: the first attribute read of it (`urllib.request.getproxies`, `from urllib.request import
urlopen`) imports the real module, puts it where the stand-in was, and answers from it, so any
use behaves exactly as if it had been imported up front. A module already imported is left as
it is.

(importlib.util.LazyLoader does not do here: on Python 3.11 the `import` statement itself reads
the module's `__spec__`, which makes LazyLoader load it at once.)
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


class _Deferred(types.ModuleType):
    """Stands in for a module until one of its attributes is read (PEP 562 `__getattr__`)."""

    def __getattr__(self, attr: str) -> Any:
        real = _load(self.__name__)
        return getattr(real, attr)


def _load(name: str) -> types.ModuleType:
    stand_in = sys.modules.get(name)
    if isinstance(stand_in, _Deferred):
        del sys.modules[name]
    real = importlib.import_module(name)  # sets the parent package's attribute to it too
    return real


def defer(name: str) -> None:
    """Put a stand-in for `name` (a submodule such as urllib.request) in sys.modules and on its
    parent package, unless it is imported already."""
    if name in sys.modules:
        return
    parent, _, child = name.rpartition(".")
    stand_in = _Deferred(name)
    stand_in.__spec__ = None
    sys.modules[name] = stand_in
    if parent:
        setattr(importlib.import_module(parent), child, stand_in)
