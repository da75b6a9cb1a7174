"""A registry of plugin modules that imports a module when one of its names is first looked up.

The driver registry (`firmware_bridge/drivers/__init__.py`) and the gateway's source and sink
registries (`gateway/sources/__init__.py`, `gateway/sinks/__init__.py`) list names; a gateway
imports only the plugins its config names (issue 19: resident memory on a Pi). The names alone
(`name in registry`, `sorted(registry)`, `for name in registry`) import nothing; `.values()`,
`.items()` and `registry[name]` import (what `schema`, the docs and the test matrices iterate
gets every plugin). Pure: no I/O but the import.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class LazyRegistry(Mapping[str, T], Generic[T]):
    """name -> the object `attr` of the module `<package>.<module>` its name is listed with
    (several names may share a module: a driver's aliases). A module whose object does not
    answer to exactly the names listed for it (`names_of`) fails loudly when it is loaded."""

    def __init__(self, package: str, modules: Mapping[str, str], attr: str,
                 names_of: Callable[[T], tuple[str, ...]]) -> None:  # fmt: skip
        self._package = package
        self._modules = dict(modules)
        self._attr = attr
        self._names_of = names_of
        self._loaded: dict[str, T] = {}  # module -> its object

    @classmethod
    def specs(cls, package: str, names: tuple[str, ...]) -> LazyRegistry[T]:
        """One plugin per module, named as its module, exporting `SPEC` (sources, sinks)."""
        return cls(package, {n: n for n in names}, "SPEC", lambda spec: (spec.name,))  # type: ignore[attr-defined]

    def __getitem__(self, name: str) -> T:
        module = self._modules[name]  # KeyError: no such plugin
        obj = self._loaded.get(module)
        if obj is None:
            loaded: Any = importlib.import_module(f"{self._package}.{module}")
            obj = getattr(loaded, self._attr)
            listed = tuple(n for n, m in self._modules.items() if m == module)
            if self._names_of(obj) != listed:
                raise RuntimeError(f"{self._package}.{module}.{self._attr} answers to {self._names_of(obj)}, "
                                   f"the registry lists {listed}")  # fmt: skip
            self._loaded[module] = obj
        return obj

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __len__(self) -> int:
        return len(self._modules)

    def __contains__(self, name: object) -> bool:
        return name in self._modules

    def __repr__(self) -> str:
        return f"LazyRegistry({self._package!r}, {tuple(self._modules)!r})"
