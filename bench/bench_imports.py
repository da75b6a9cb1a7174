"""The import floor: what `street-gateway run` costs in memory before any data flows.

1. Peak RSS (VmHWM) of a real `run` process, nothing flowing, for: the file sink only; + the
   InfluxDB sink (a real VictoriaMetrics); + the MQTT sink (a real Mosquitto as the city broker)
   = every sink configured. Then ten readings are published so every sink has written once (the
   MQTT sink connects and the InfluxDB sink opens its connection on first use) and RSS is read
   again.
2. What each import costs: `python -X importtime` of that same `run` (every sink) gives the
   modules in the order they finished importing; a fresh interpreter then imports them in that
   order, grouped by package (and by module for gateway.* / firmware_bridge.*), and prints the
   RSS growth of each group (/proc/self/statm) and its Python-heap share (tracemalloc). As `run`
   does, it puts gateway/pydantic_stand_in.py in pydantic's place first and takes the config
   from the validating child (gateway/validated_config.py), whose own memory is its process's.

Both run as the systemd unit runs the service (bench/deployed.py: its PYTHONOPTIMIZE=2,
PYTHONNODEBUGRANGES=1 and bytecode compiled so beforehand, as install.sh does; the unit has
PYTHONDONTWRITEBYTECODE=1). Without compiled bytecode (a work tree here has
PYTHONDONTWRITEBYTECODE=1 set) every start compiles ~60 modules from source, which leaves ~1.7 MiB
more resident. BENCH_PLAIN_PYTHON=1: as started by hand instead (ordinary bytecode, no -OO).

Run from the repo root: `.venv/bin/python bench/bench_imports.py`. Prints figures; asserts nothing.
"""

from __future__ import annotations

import compileall
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.deployed import deployed_env  # noqa: E402
from tests.conftest import (  # noqa: E402
    VictoriaMetrics,
    _spawn_mosquitto,
    _spawn_vm,
    free_port,
    write_mosquitto_conf,
)

SETTLE_S = 6.0
# BENCH_GATEWAY_PYTHON=/path/venv/bin/python: the first table runs `run` under that interpreter, a
# venv installed as on a Pi (`pip install --require-hashes -r requirements.lock` then
# `pip install --no-deps .`): no editable-install finder imported at start (pathlib, urllib.parse,
# ipaddress... by the dev venv's .pth), and the gateway's bytecode as pip compiled it
DEPLOYED = os.environ.get("BENCH_GATEWAY_PYTHON", "")


def config(d: Path, broker: int, vm_url: str, sinks: list[str]) -> Path:
    lines = [
        f"gateway: {{id: imports, borough: camden, location: {{lat: 51.539, lon: -0.1426}}, data_dir: '{d / 'data'}'}}",
        f"inputs: {{mqtt: {{host: 127.0.0.1, port: {broker}}}}}",
        "sensors:",
        "  - {id: aq-1, driver: generic_json, mqtt: {topic: sensors/aq-1/json}, options: "
        "{time_path: ts, time_format: ms, fields: [{path: pm2_5, property: pm2_5, unit: ug/m3}]}}",
        "sinks:",
    ]
    if "file" in sinks:
        lines.append("  file: {path: observations.jsonl}")
    if "influxdb" in sinks:
        lines.append(f"  influxdb: {{url: '{vm_url}', org: london, bucket: street, token: not-used}}")
    if "mqtt" in sinks:
        lines.append(f"  mqtt: {{host: 127.0.0.1, port: {broker}, tls: false}}")
    lines.append("ops: {http: '127.0.0.1:0', log_level: warning}")
    d.mkdir(parents=True, exist_ok=True)
    p = d / "gateway.yaml"
    p.write_text("\n".join(lines) + "\n")
    return p


def status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            out[k] = int(v.split()[0]) * 1024
    return out


def publish(port: int, n: int) -> None:
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="imports-dev", clean_session=True)
    c.connect("127.0.0.1", port)
    c.loop_start()
    for i in range(n):
        c.publish("sensors/aq-1/json", json.dumps({"ts": int(time.time() * 1000), "pm2_5": i}), qos=1).wait_for_publish(10)
        time.sleep(0.05)
    c.loop_stop()
    c.disconnect()


def run_rss(tmp: Path, broker: int, vm: VictoriaMetrics, sinks: list[str], flow: bool) -> tuple[dict[str, int], dict[str, int] | None]:
    d = tmp / "-".join(sinks)
    cfg = config(d, broker, vm.url, sinks)
    python, cwd = DEPLOYED or sys.executable, d if DEPLOYED else ROOT
    env = deployed_env({**os.environ, "PYTHONPATH": str(ROOT), "STREET_GATEWAY_CLOCK": "system"}, python)
    if DEPLOYED:  # an interpreter whose venv has the gateway installed as on a Pi (not editable)
        env.pop("PYTHONPATH")
    proc = subprocess.Popen([python, "-m", "gateway.cli", "run", "-c", str(cfg)], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=(d / "gw.log").open("w"))  # fmt: skip
    try:
        time.sleep(SETTLE_S)
        if proc.poll() is not None:
            raise RuntimeError((d / "gw.log").read_text()[-2000:])
        idle = status(proc.pid)
        after = None
        if flow:
            publish(broker, 10)
            time.sleep(3.0)
            after = status(proc.pid)
        return idle, after
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


STEPS: list[tuple[str, list[str]]] = [
    ("gateway._pydantic_plugins (gateway.cli's first)", ["gateway._pydantic_plugins"]),
    ("stdlib: json, logging, argparse, re, threads", ["json", "logging", "argparse", "re", "concurrent.futures"]),
    ("stdlib: asyncio", ["asyncio"]),
    ("stdlib: ssl (libssl, libcrypto)", ["ssl"]),
    ("stdlib: sqlite3", ["sqlite3"]),
    ("stdlib: urllib.request, http.client, email", ["urllib.request", "http.client"]),
    ("pydantic's stand-in (gateway/pydantic_stand_in.py)", ["@stand_in"]),
    ("PyYAML", ["yaml"]),
    ("firmware_bridge: base, options, driver registry", ["firmware_bridge.drivers"]),
    ("gateway.config (models; plugin registries)", ["gateway.config"]),
    ("gateway.plan + gateway.cli", ["gateway.plan", "gateway.cli"]),
    ("paho-mqtt + aiomqtt", ["paho.mqtt.client", "aiomqtt"]),
    ("gateway.service, pipeline, ops, mqtt source", ["gateway.service", "gateway.pipeline", "gateway.mqttconn",
                                                     "gateway.sources.mqtt", "gateway.sinks.mqtt"]),
    ("config from the validating child + build_plan", ["@config"]),
    ("every other module `run` imported", ["@rest"]),
]

IMPORTER = textwrap.dedent("""
    import sys, time, tracemalloc, importlib, json, os
    steps, rest, cfg, mode = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
    if mode == "heap":
        tracemalloc.start()
    page = os.sysconf("SC_PAGE_SIZE")
    def rss():
        return int(open("/proc/self/statm").read().split()[1]) * page
    def heap():
        return tracemalloc.get_traced_memory()[0] if mode == "heap" else 0
    out = [["(interpreter + site)", rss(), heap(), 0.0, len(sys.modules)]]
    for label, mods in steps:
        r0, h0, n0, c0 = rss(), heap(), len(sys.modules), time.perf_counter()
        for m in mods:
            if m == "@stand_in":
                from gateway import pydantic_stand_in
                pydantic_stand_in.install()
            elif m == "@config":
                from gateway import validated_config
                from gateway.plan import build_plan
                build_plan(validated_config.load(cfg, None))
            elif m == "@rest":
                for r in rest:
                    if r not in sys.modules:
                        try:
                            importlib.import_module(r)
                        except Exception:
                            pass
            else:
                importlib.import_module(m)
        out.append([label, rss() - r0, heap() - h0, time.perf_counter() - c0, len(sys.modules) - n0])
    out.append(["(total)", rss(), heap(), 0.0, len(sys.modules)])
    print(json.dumps(out))
""")


def group_of(mod: str) -> str:
    parts = mod.split(".")
    return ".".join(parts[:2]) if parts[0] in ("gateway", "firmware_bridge") and len(parts) > 1 else parts[0]


def import_order(tmp: Path, broker: int, vm: VictoriaMetrics) -> tuple[list[list[str]], dict[str, float], Path]:
    """Modules `run` (every sink) imports, in finishing order, grouped; and self time per group."""
    d = tmp / "importtime"
    cfg = config(d, broker, vm.url, ["file", "influxdb", "mqtt"])
    env = deployed_env({**os.environ, "PYTHONPATH": str(ROOT), "STREET_GATEWAY_CLOCK": "system"})
    err = d / "importtime.txt"
    proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "gateway.cli", "run", "-c", str(cfg)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err.open("w"))  # fmt: skip
    time.sleep(SETTLE_S + 2)
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    order: list[list[str]] = []
    self_us: dict[str, float] = {}
    for line in err.read_text().splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        parts = line[len("import time:"):].split("|")
        mod = parts[2].strip()
        g = group_of(mod)
        order.append([g, mod])
        self_us[g] = self_us.get(g, 0.0) + float(parts[0])
    return order, self_us, cfg


def compile_tree() -> None:
    """Bytecode for the project's own modules, as pip writes it at install (see the docstring)."""
    for d in ("gateway", "firmware_bridge"):
        compileall.compile_dir(str(ROOT / d), quiet=1)


@contextlib.contextmanager
def store_and_broker(prefix: str) -> Iterator[tuple[Path, VictoriaMetrics, int]]:
    """(a temp dir, a real VictoriaMetrics, a real Mosquitto's port) for a bench's `run`s;
    both stopped and the dir removed after."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    vm_bin = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
    mosq_bin = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    vm_port, mq_port = free_port(), free_port()
    (tmp / "vm").mkdir()
    vm = VictoriaMetrics(vm_port, _spawn_vm(vm_bin, vm_port, tmp / "vm"), tmp / "vm", vm_bin)
    (tmp / "mq").mkdir()
    mq = _spawn_mosquitto(mosq_bin, write_mosquitto_conf(tmp / "mq", mq_port), mq_port, tmp / "mq" / "log")
    try:
        yield tmp, vm, mq_port
    finally:
        mq.terminate()
        mq.wait()
        vm.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    compile_tree()
    with store_and_broker("bench-imports-") as (tmp, vm, mq_port):
        print(f"`street-gateway run`, one MQTT sensor, nothing flowing for {SETTLE_S:g} s (MiB):")
        print(f"{'sinks':<22} {'VmHWM':>6} {'VmRSS':>6} {'anon':>6} {'file':>6}   after 10 readings: VmHWM / VmRSS")
        for sinks in (["file"], ["file", "influxdb"], ["file", "mqtt"], ["file", "influxdb", "mqtt"]):
            idle, after = run_rss(tmp, mq_port, vm, sinks, flow=True)
            m = lambda k, s=idle: f"{s[k] / 2**20:6.1f}"  # noqa: E731
            tail = f"   {after['VmHWM'] / 2**20:.1f} / {after['VmRSS'] / 2**20:.1f}" if after else ""
            print(f"{'+'.join(sinks):<22} {m('VmHWM')} {m('VmRSS')} {m('RssAnon')} {m('RssFile')}{tail}")
        order, self_us, cfg = import_order(tmp, mq_port, vm)
        res, heap = (json.loads(subprocess.run(
            [sys.executable, "-c", IMPORTER, json.dumps(STEPS), json.dumps([m for _, m in order]), str(cfg), mode],
            cwd=ROOT, capture_output=True, text=True, env=deployed_env({**os.environ, "PYTHONPATH": str(ROOT)}),
            check=True).stdout) for mode in ("rss", "heap"))  # fmt: skip
        print()
        print("what `run` (every sink) imports, step by step in a fresh interpreter; each step is charged with")
        print("whatever it pulls in that is not loaded yet. RSS: /proc/self/statm; py heap: tracemalloc (second")
        print("run; the rest of the RSS is code pages, C extensions, shared libraries, allocator slack):")
        print(f"{'step':<48} {'modules':>7} {'RSS MiB':>7} {'py heap MiB':>11} {'ms':>6}")
        for (label, d_rss, _h, secs, n), (_, _r, d_heap, _s, _n) in zip(res, heap, strict=True):
            if label == "(total)":
                continue
            print(f"{label:<48} {n:7d} {d_rss / 2**20:7.1f} {d_heap / 2**20:11.1f} {secs * 1000:6.0f}")
        print(f"{'total':<48} {res[-1][4]:7d} {res[-1][1] / 2**20:7.1f} {heap[-1][2] / 2**20:11.1f}")
        top = sorted(self_us.items(), key=lambda kv: -kv[1])[:12]
        print()
        print(f"-X importtime of the real `run`: {len(order)} modules, {sum(self_us.values()) / 1e6:.2f} s of import "
              "self time (on a loaded shared machine); the largest groups: "
              + ", ".join(f"{g} {us / 1000:.0f} ms" for g, us in top))  # fmt: skip


if __name__ == "__main__":
    main()
