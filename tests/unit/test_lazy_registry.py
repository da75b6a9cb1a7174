"""The one lazy registry (firmware_bridge/lazy.py) that drivers, sources and sinks share."""

from __future__ import annotations

import pytest

from firmware_bridge.drivers import DRIVERS, MODULES, _names
from firmware_bridge.lazy import LazyRegistry
from gateway.sinks import SINKS
from gateway.sources import SOURCES


def test_names_are_answered_without_importing_and_a_lookup_imports() -> None:
    reg: LazyRegistry[object] = LazyRegistry("no_such_package_here", {"a": "a", "b": "a"}, "SPEC", lambda o: ())
    assert "a" in reg and "c" not in reg and list(reg) == ["a", "b"] and len(reg) == 2
    with pytest.raises(ModuleNotFoundError):
        reg["a"]
    with pytest.raises(KeyError):
        reg["c"]


def test_a_module_that_does_not_answer_to_its_listed_names_fails_loudly() -> None:
    wrong = {**MODULES, "pms9003": "pms5003"}  # an alias the driver does not declare
    reg = LazyRegistry("firmware_bridge.drivers", wrong, "DRIVER", _names)
    with pytest.raises(RuntimeError, match="pms9003"):
        reg["pms5003"]
    specs: LazyRegistry[object] = LazyRegistry("gateway.sinks", {"archive": "file"}, "SPEC", lambda s: (s.name,))  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match="archive"):
        specs["archive"]


def test_aliases_share_one_driver_and_every_registry_loads_what_it_lists() -> None:
    assert DRIVERS["pms7003"] is DRIVERS["pms5003"]
    assert all(spec.name == name for name, spec in SINKS.items())
    assert all(spec.name == name for name, spec in SOURCES.items())
