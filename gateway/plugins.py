"""A registry of plugin modules that imports a module when its entry is first looked up.

The source and sink registries (`gateway/sources/__init__.py`, `gateway/sinks/__init__.py`) list
names; `run` imports only the plugins its config names (issue 19: resident memory on a Pi), as
the driver registry does (`firmware_bridge/drivers/__init__.py`). The names alone (`name in
SINKS`, `sorted(SINKS)`, `for name in SINKS`) import nothing; `.values()`, `.items()` and
`registry[name]` import (what `schema`, the docs and the test matrices iterate gets every plugin).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any, Generic, Protocol, TypeVar


class _Named(Protocol):
    @property
    def name(self) -> str: ...


S = TypeVar("S", bound=_Named)


class LazyRegistry(Mapping[str, S], Generic[S]):
    """name -> the `SPEC` of the module `<package>.<name>`, imported on first lookup. A module
    whose `SPEC` answers to another name fails loudly when it is loaded."""

    def __init__(self, package: str, names: tuple[str, ...]) -> None:
        self._package = package
        self._names = names
        self._loaded: dict[str, S] = {}

    def __getitem__(self, name: str) -> S:
        spec = self._loaded.get(name)
        if spec is None:
            if name not in self._names:
                raise KeyError(name)
            module: Any = importlib.import_module(f"{self._package}.{name}")
            spec = module.SPEC
            if spec.name != name:
                raise RuntimeError(f"{self._package}.{name} exports SPEC named {spec.name!r}, the registry lists {name!r}")
            self._loaded[name] = spec
        return spec

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __repr__(self) -> str:
        return f"LazyRegistry({self._package!r}, {self._names!r})"
