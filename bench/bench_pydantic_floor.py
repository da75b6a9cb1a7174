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
import tempfile
from pathlib import Path

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

# run in a fresh interpreter: argv = mode ("real" or "stub"), the modules to import (JSON file),
# the stubbed packages (JSON)
_MEASURE = r'''
import importlib, json, os, sys, types
mode, mods, STUBBED = sys.argv[1], json.load(open(sys.argv[2])), tuple(json.loads(sys.argv[3]))

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
    for name in {m for m in mods if m.split(".")[0] in STUBBED} | set(STUBBED):
        stub = _Module(name)
        stub.__path__ = []
        sys.modules[name] = stub
    mods = json.loads(sys.argv[4])  # only the run's modules: what they pull in comes with them
for m in mods:
    if m not in sys.modules:
        try:
            importlib.import_module(m)
        except ImportError:  # another platform's module (nt, _winapi, ...)
            if m.split(".")[0] in ("gateway", "firmware_bridge"):
                raise
ours = sorted(m for m in sys.modules if m.split(".")[0] in ("gateway", "firmware_bridge"))
others = sum(1 for m in sys.modules if m.split(".")[0] not in STUBBED)
print(json.dumps({"rss": rss_mib(), "modules": others, "ours": ours}))
'''


def module_order(env: dict[str, str]) -> list[str]:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import " + ", ".join(RUN_MODULES)],
                          cwd=ROOT, env=env, capture_output=True, text=True, check=True)  # fmt: skip
    return [line.split("|")[2].strip() for line in proc.stderr.splitlines()
            if line.startswith("import time:") and "self [us]" not in line]  # fmt: skip


def main() -> None:
    env = deployed_env({**os.environ, "PYTHONPATH": str(ROOT)})
    mods = module_order(env)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(mods, f)
    try:
        print(f"{len(mods)} modules imported by a run's modules, "
              f"{sum(1 for m in mods if m.split('.')[0] in STUBBED)} of them pydantic's and its dependencies'; "
              "modules: those loaded besides pydantic's (or its stand-in's)")  # fmt: skip
        print(f"{'round':<6} {'with pydantic MiB':>18} {'modules':>8} {'stand-in MiB':>13} {'modules':>8} {'difference':>11}")
        for i in range(3):
            got = {}
            for mode in ("real", "stub"):
                cmd = [sys.executable, "-c", _MEASURE, mode, f.name, json.dumps(STUBBED), json.dumps(RUN_MODULES)]
                got[mode] = json.loads(subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                                                      check=True).stdout)  # fmt: skip
            if got["real"]["ours"] != got["stub"]["ours"]:
                raise SystemExit("the stand-in changed which of the gateway's modules were imported")
            real, stub = got["real"], got["stub"]
            print(f"{i + 1:<6} {real['rss']:18.1f} {real['modules']:8d} {stub['rss']:13.1f} {stub['modules']:8d} "
                  f"{stub['rss'] - real['rss']:+11.1f}")  # fmt: skip
    finally:
        os.unlink(f.name)


if __name__ == "__main__":
    main()
