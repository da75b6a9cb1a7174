"""What pydantic costs `street-gateway run` in memory: the modules `run` imports, loaded in a
fresh interpreter as the systemd unit runs it (bench/deployed.py), once as they are and once with
pydantic, pydantic-core, annotated-types and typing-inspection replaced by an empty stand-in
(every name a do-nothing class, so the gateway's own modules, their config models included,
still import and run their class bodies). The difference is what a `run` that took its
configuration already validated, without importing pydantic, would not load (issue 19: the
RSS target). It is a floor of the saving, not a forecast: a real `run` also builds the
configured plugins' models and validates the YAML (bench_imports.py's "load_config +
build_plan", ~1.1 MiB), and plain settings objects in their place would cost a little.

The module list is `-X importtime` of importing the modules a `run` with every sink and an MQTT
source uses (the gateway's service, pipeline, sinks, sources, outbox, privacy stage and guard),
in their finishing order. Run from the repo root: `.venv/bin/python bench/bench_pydantic_floor.py`.
Prints figures; asserts nothing.
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

# run in a fresh interpreter: argv = mode ("real" or "stub"), the module list (JSON file), the
# stubbed packages (JSON)
_MEASURE = r'''
import importlib, json, sys, types
mode, mods, STUBBED = sys.argv[1], json.load(open(sys.argv[2])), tuple(json.loads(sys.argv[3]))

def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

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
failed = []
for m in mods:
    if m not in sys.modules:
        try:
            importlib.import_module(m)
        except ImportError:  # another platform's module (nt, _winapi, ...)
            if m.split(".")[0] in ("gateway", "firmware_bridge"):
                raise
print(json.dumps({"rss": rss_mib(), "modules": len(sys.modules),
                  "stubbed": sum(1 for m in sys.modules if m.split(".")[0] in STUBBED)}))
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
              f"{sum(1 for m in mods if m.split('.')[0] in STUBBED)} of them pydantic's and its dependencies'")  # fmt: skip
        print(f"{'round':<6} {'with pydantic MiB':>18} {'stand-in MiB':>13} {'difference':>11}")
        for i in range(3):
            got = {}
            for mode in ("real", "stub"):
                out = subprocess.run([sys.executable, "-c", _MEASURE, mode, f.name, json.dumps(STUBBED)], cwd=ROOT, env=env,
                                     capture_output=True, text=True, check=True).stdout  # fmt: skip
                got[mode] = json.loads(out)["rss"]
            print(f"{i + 1:<6} {got['real']:18.1f} {got['stub']:13.1f} {got['stub'] - got['real']:+11.1f}")
    finally:
        os.unlink(f.name)


if __name__ == "__main__":
    main()
