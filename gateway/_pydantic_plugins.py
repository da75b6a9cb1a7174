"""Spares the CLI pydantic's plugin search: the gateway has no pydantic plugin to find.

When pydantic builds its first model it asks `pydantic.plugin._loader.get_plugins()` for the
plugins installed as entry points; importing that loader imports `importlib.metadata` (and with
it zipfile, email.message, csv, tempfile, shutil, bz2, lzma: 15 modules, ~1 MiB resident, issue
19) and the call reads the metadata of every installed distribution. The CLI imports this module
before anything imports pydantic, and it puts a loader in its place that finds no plugin (what
`PYDANTIC_DISABLE_PLUGINS=__all__` makes the real one answer, without its imports). If pydantic
is loaded already, or a later pydantic stops using this loader, nothing changes but the memory;
one that wants more from it than `get_plugins` gets the real loader (`__getattr__` below), so a
pydantic upgrade outside the lock costs the memory back, never a start.
"""

from __future__ import annotations

import importlib
import sys
import types

_LOADER = "pydantic.plugin._loader"


def get_plugins() -> tuple[()]:
    return ()


def _real_loader(name: str) -> object:
    """Any other name: the stand-in steps aside for pydantic's own loader. (Dunder names are
    the import system asking what kind of module this is, e.g. `__path__`: not a request.)"""
    if name.startswith("__"):
        raise AttributeError(name)
    if sys.modules.get(_LOADER) is _module:
        del sys.modules[_LOADER]
    return getattr(importlib.import_module(_LOADER), name)


_module = types.ModuleType(_LOADER, __doc__)
_module.get_plugins = get_plugins  # type: ignore[attr-defined]
setattr(_module, "__getattr__", _real_loader)  # noqa: B010  (a module-level __getattr__, PEP 562)
if _LOADER not in sys.modules:
    sys.modules[_LOADER] = _module
