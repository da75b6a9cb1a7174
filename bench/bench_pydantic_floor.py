"""What pydantic costs `street-gateway run` in memory. In a fresh interpreter, as the systemd
unit runs it (bench/deployed.py), the modules a `run` with an MQTT source and the sinks
bench_imports.py and bench_e2e.py call "every sink" (file, InfluxDB, MQTT feed; not the
SensorThings-server sink) use: once as they are, and once with pydantic, pydantic-core,
annotated-types and typing-inspection replaced by an empty stand-in (every name a do-nothing
class, so the gateway's own modules, their config models included, still import and run their
class bodies; the script fails if one does not), importing only what those modules then pull
in. The difference is what such a `run`, given its configuration already validated, would not
load (issue 19: the RSS target): a lower bound of the saving, since a real `run` also builds
and fills the configured plugins' models (bench_imports.py's "load_config + build_plan",
~1.1 MiB with pydantic), less whatever plain settings objects in their place would cost.

Run from the repo root: `.venv/bin/python bench/bench_pydantic_floor.py`. Prints figures;
asserts nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.deployed import deployed_env  # noqa: E402

RUN_MODULES = (
    "gateway.cli", "gateway.service", "gateway.pipeline", "gateway.outbox", "gateway.committer",
    "gateway.privacy.stage", "gateway.privacy.guard", "gateway.mqttconn", "gateway.sources.mqtt",
    "gateway.sinks.influxdb", "gateway.sinks.file", "gateway.sinks.mqtt",
    "firmware_bridge.drivers.generic_json",
)  # fmt: skip
STUBBED = ("pydantic", "pydantic_core", "annotated_types", "typing_inspection")

# run in a fresh interpreter: argv = mode ("real" or "stub"), the modules to import (JSON), the
# stubbed packages (JSON)
_MEASURE = r'''
import importlib, importlib.util, json, os, sys, types
mode, RUN_MODULES, STUBBED = sys.argv[1], json.loads(sys.argv[2]), tuple(json.loads(sys.argv[3]))

def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

if mode == "stub":
    class _Meta(type):
        def __getattr__(cls, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return _Stub()
        def __getitem__(cls, item):
            return cls
    class _Stub(metaclass=_Meta):
        def __init__(self, *a, **k): pass
        def __init_subclass__(cls, **kw): pass
        def __call__(self, *a, **k):
            return a[0] if len(a) == 1 and callable(a[0]) and not k else _Stub()  # decorators
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return _Stub()
        def __getitem__(self, item): return _Stub()
        def __or__(self, other): return _Stub()
        def __ror__(self, other): return _Stub()
        def __iter__(self): return iter(())
    class _Module(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return _Stub
    class _StandIns:  # finder and loader: any module of a stubbed package is a _Module
        def find_spec(self, fullname, path=None, target=None):
            if fullname.split(".")[0] in STUBBED:
                return importlib.util.spec_from_loader(fullname, self, is_package=True)
            return None
        def create_module(self, spec):
            return _Module(spec.name)
        def exec_module(self, module):
            pass
    sys.meta_path.insert(0, _StandIns())
for m in RUN_MODULES:
    importlib.import_module(m)
ours = sorted(m for m in sys.modules if m.split(".")[0] in ("gateway", "firmware_bridge"))
stubbed = sum(1 for m in sys.modules if m.split(".")[0] in STUBBED)
print(json.dumps({"rss": rss_mib(), "modules": len(sys.modules) - stubbed, "stubbed": stubbed, "ours": ours}))
'''


def measure(mode: str, env: dict[str, str]) -> dict[str, Any]:
    cmd = [sys.executable, "-c", _MEASURE, mode, json.dumps(RUN_MODULES), json.dumps(STUBBED)]
    got: dict[str, Any] = json.loads(subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                                                    check=True).stdout)  # fmt: skip
    return got


def main() -> None:
    env = deployed_env({**os.environ, "PYTHONPATH": str(ROOT)})
    print(f"{'round':<6} {'with pydantic MiB':>18} {'modules':>8} {'stand-in MiB':>13} {'modules':>8} {'difference':>11}")
    for i in range(3):
        real, stub = measure("real", env), measure("stub", env)
        if real["ours"] != stub["ours"]:
            raise SystemExit("the stand-in changed which of the gateway's modules were imported")
        print(f"{i + 1:<6} {real['rss']:18.1f} {real['modules']:8d} {stub['rss']:13.1f} {stub['modules']:8d} "
              f"{stub['rss'] - real['rss']:+11.1f}")  # fmt: skip
    print(f"modules: those loaded besides pydantic's ({real['stubbed']}) or its stand-ins ({stub['stubbed']})")


if __name__ == "__main__":
    main()
