"""Spares the CLI pydantic's plugin search: the gateway has no pydantic plugin to find.

When pydantic builds its first model it asks `pydantic.plugin._loader.get_plugins()` for the
plugins installed as entry points; importing that loader imports `importlib.metadata` (and with
it zipfile, email.message, csv, tempfile, shutil, bz2, lzma: 15 modules, ~1 MiB resident, issue
19) and the call reads the metadata of every installed distribution. The CLI imports this module
before anything imports pydantic, and it puts a loader in its place that finds no plugin (what
`PYDANTIC_DISABLE_PLUGINS=__all__` makes the real one answer, without its imports). If pydantic
is loaded already, or a later pydantic stops using this loader, nothing changes but the memory;
one that wants more from it than `get_plugins` fails at start, loudly.
"""

from __future__ import annotations

import sys
import types

_LOADER = "pydantic.plugin._loader"


def get_plugins() -> tuple[()]:
    return ()


if _LOADER not in sys.modules:
    _module = types.ModuleType(_LOADER, __doc__)
    _module.get_plugins = get_plugins  # type: ignore[attr-defined]
    sys.modules[_LOADER] = _module
