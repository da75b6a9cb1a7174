"""`street-gateway run` with 10 simulated serial sensors at 1 Hz: peak RSS and average CPU.

Targets (issue: Foundation): peak RSS <= 64 MB, average CPU <= 2 % of one core.
Usage: python bench/bench_run.py [--seconds 60] [--outbox '{group_commit: 1s}'] [--file-sink
'flush_interval: 1s'] [--silent] [--strace]. Prints figures; asserts nothing.

Besides the process's CPU it prints each thread's CPU and its voluntary context switches per
second (/proc/PID/task: a thread that blocks and is woken again counts one; the event loop's
are its epoll wakeups), so the cost per wakeup shows without a profiler. `--silent` opens the
ports on ptys that never send (the idle floor: timers, polls that go unanswered); `--strace`
counts system calls with `strace -c -f` over the window (it slows the process: its CPU figure
is not comparable). The gateway runs as the systemd unit runs it (bench/deployed.py: -OO,
bytecode compiled so; BENCH_PLAIN_PYTHON=1 for the ordinary bytecode instead).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tty
import urllib.request
from pathlib import Path

import psutil

TICK = os.sysconf("SC_CLK_TCK")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.deployed import deployed_env  # noqa: E402

MIX = ["pms5003", "sds011", "sps30", "senseair_s8"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metric(port: int, name: str) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line.startswith(name))


def threads(pid: int) -> dict[int, tuple[str, float, int]]:
    """tid -> (name, CPU seconds, voluntary context switches)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                vol = next(int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt_switches"))
        except (FileNotFoundError, ProcessLookupError):
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / TICK, vol)
    return out


def silent_ports(links: list[Path]) -> list[int]:
    """A pty per port that never sends; the masters are kept open (and drained) by the caller."""
    masters = []
    for link in links:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        os.symlink(os.ttyname(slave), link)
        os.close(slave)
        masters.append(master)
    return masters


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--sensors", type=int, default=10)
    ap.add_argument("--outbox", default="", help="YAML flow mapping for the outbox section, e.g. '{group_commit: 1s}'")
    ap.add_argument("--file-sink", default="", help="more file sink settings, e.g. 'flush_interval: 1s'")
    ap.add_argument("--silent", action="store_true", help="ports that never send: the idle floor")
    ap.add_argument("--strace", action="store_true", help="count system calls (slows the process)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sg-bench-run-"))
    specs, sensors, links = [], [], []
    for i in range(args.sensors):
        driver = MIX[i % len(MIX)]
        link = tmp / f"{driver}-{i}"
        specs += ["--serial", f"{driver}:{link}"]
        links.append(link)
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
    masters: list[int] = []
    if args.silent:
        masters = silent_ports(links)
        sim = subprocess.Popen(["sleep", "infinity"])
    else:
        sim = subprocess.Popen([sys.executable, "-m", "gateway.cli", "simulate", *specs], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    time.sleep(1.5)
    # a host-kept clock the kernel calls unsynchronised: trusted, as on a synchronised Pi
    gw = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "-c", str(cfg)], cwd=ROOT,
                          env=deployed_env({**os.environ, "STREET_GATEWAY_CLOCK": "system"}),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    proc = psutil.Process(gw.pid)
    try:
        time.sleep(5.0)  # start-up (imports, port opening) is not steady state
        r0 = metric(port, "gateway_readings_total")
        strace = None
        if args.strace:
            strace = subprocess.Popen(["strace", "-c", "-f", "-q", "-p", str(gw.pid), "-o", str(tmp / "strace.txt")])
        th0 = threads(gw.pid)
        c0 = proc.cpu_times()
        t0 = time.monotonic()
        peak = 0
        while time.monotonic() - t0 < args.seconds:
            peak = max(peak, proc.memory_info().rss)
            for m in masters:  # drain the commands a poller sends, as a device would read them
                with contextlib.suppress(BlockingIOError):
                    os.read(m, 4096)
            time.sleep(1.0)
        c1 = proc.cpu_times()
        th1 = threads(gw.pid)
        if strace is not None:
            strace.send_signal(signal.SIGINT)
            strace.wait(10)
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
    by_name: dict[str, list[float]] = {}
    for tid, (name, cpu1, vol1) in th1.items():
        _, cpu0, vol0 = th0.get(tid, (name, 0.0, 0))
        # Python 3.11 names no native thread: the others are told apart by start order
        label = "event loop" if tid == gw.pid else f"thread {sorted(th1).index(tid)} ({name})"
        agg = by_name.setdefault(label, [0.0, 0, 0])
        agg[0] += cpu1 - cpu0
        agg[1] += vol1 - vol0
        agg[2] += 1
    total_sw = sum(v[1] for v in by_name.values())
    print(f"threads (CPU % of a core, voluntary context switches/s), all: {total_sw / elapsed:.1f} switches/s")
    for name, (cpu_s, sw, n) in sorted(by_name.items(), key=lambda kv: -kv[1][0]):
        print(f"  {name:<16} x{n}: {cpu_s / elapsed * 100:5.2f} %  {sw / elapsed:6.1f}/s")
    if args.strace:
        print((tmp / "strace.txt").read_text())
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
