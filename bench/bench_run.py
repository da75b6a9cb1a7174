"""`street-gateway run` with 10 simulated serial sensors at 1 Hz: peak RSS and average CPU.

Targets (issue: Foundation): peak RSS <= 64 MB, average CPU <= 2 % of one core.
Usage: python bench/bench_run.py [--seconds 60] [--outbox '{group_commit: 1s}'] [--file-sink
'flush_interval: 1s']. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
MIX = ["pms5003", "sds011", "sps30", "senseair_s8"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metric(port: int, name: str) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line.startswith(name))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--sensors", type=int, default=10)
    ap.add_argument("--outbox", default="", help="YAML flow mapping for the outbox section, e.g. '{group_commit: 1s}'")
    ap.add_argument("--file-sink", default="", help="more file sink settings, e.g. 'flush_interval: 1s'")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sg-bench-run-"))
    specs, sensors = [], []
    for i in range(args.sensors):
        driver = MIX[i % len(MIX)]
        link = tmp / f"{driver}-{i}"
        specs += ["--serial", f"{driver}:{link}"]
        opts = ""
        if driver in ("sps30", "senseair_s8"):
            opts = ", options: {interval_s: 1}"
        elif driver == "sds011":
            opts = ", options: {mode: query, interval_s: 1, warmup_s: 0}"
        sensors.append(f"  - {{id: s{i}-{driver.replace('_', '-')}, driver: {driver}, serial: {{port: '{link}'}}{opts}}}")
    port = free_port()
    cfg = tmp / "gateway.yaml"
    cfg.write_text(
        f"gateway: {{id: bench-lc-0001, borough: camden, location: {{lat: 51.539, lon: -0.1426}}, data_dir: '{tmp / 'data'}'}}\n"
        "sensors:\n" + "\n".join(sensors) + "\n"
        f"sinks: {{file: {{path: observations.jsonl{', ' + args.file_sink if args.file_sink else ''}}}}}\n"
        f"ops: {{http: '127.0.0.1:{port}'}}\n" + (f"outbox: {args.outbox}\n" if args.outbox else "")
    )
    sim = subprocess.Popen([sys.executable, "-m", "gateway.cli", "simulate", *specs], cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    time.sleep(1.5)
    # a host-kept clock the kernel calls unsynchronised: trusted, as on a synchronised Pi
    gw = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "-c", str(cfg)], cwd=ROOT,
                          env={**os.environ, "STREET_GATEWAY_CLOCK": "system"},
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    proc = psutil.Process(gw.pid)
    try:
        time.sleep(5.0)  # start-up (imports, port opening) is not steady state
        r0 = metric(port, "gateway_readings_total")
        c0 = proc.cpu_times()
        t0 = time.monotonic()
        peak = 0
        while time.monotonic() - t0 < args.seconds:
            peak = max(peak, proc.memory_info().rss)
            time.sleep(1.0)
        c1 = proc.cpu_times()
        elapsed = time.monotonic() - t0
        r1 = metric(port, "gateway_readings_total")
        hwm = 0
        with open(f"/proc/{gw.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) * 1024
        cpu = (c1.user + c1.system - c0.user - c0.system) / elapsed * 100
        t_stop = time.monotonic()
        gw.send_signal(signal.SIGTERM)
        rc = gw.wait(30)
        stop_s = time.monotonic() - t_stop
    finally:
        if gw.poll() is None:
            gw.kill()
        sim.terminate()
        sim.wait(10)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, {platform.processor() or platform.platform()}, Python {platform.python_version()}")
    print(f"sensors: {args.sensors} serial (simulated on ptys, 1 Hz each), measured over {elapsed:.0f} s")
    if args.outbox or args.file_sink:
        print(f"outbox: {args.outbox or 'defaults'}; file sink: {args.file_sink or 'defaults'}")
    print(f"readings/s: {(r1 - r0) / elapsed:.2f}")
    print(f"average CPU: {cpu:.2f} % of one core")
    print(f"peak RSS: {max(peak, hwm) / 2**20:.1f} MiB (VmHWM {hwm / 2**20:.1f} MiB)")
    print(f"SIGTERM to exit: {stop_s:.2f} s, exit code {rc}")


if __name__ == "__main__":
    main()
