"""End to end, side by side: `street-gateway run` and a do-nothing forwarder under the same load.

Starts a real Mosquitto (max_queued_messages raised) and a real VictoriaMetrics
(`-dedup.minScrapeInterval=1ms`) on free ports. For each offered rate (default 200/s, 1,000/s and
"max") it runs, one at a time on the same machine:

- `ref`: bench/minimal_forwarder.py (paho, JSON -> line protocol -> VM every 100 ms; no
  durability, no privacy, acks on receipt): the reference the issue's targets are stated against;
- `dref` (only when asked for, `--targets ref,dref,gw`): bench/durable_forwarder.py, the same
  forwarder doing what durability costs the gateway (ack after an fsync'd SQLite commit, the
  lines read back from it, gzip, deleted after the write) and nothing else: gw/dref is the cost
  of decoding, the privacy stage, the egress guard and the rest (issue 19, phase 12);
- `gw`: a real `street-gateway run` process: MQTT QoS 1 (ack after commit) -> privacy stage ->
  egress guard -> outbox (SQLite WAL, the config's `sync`, default full) -> InfluxDB sink -> VM.

Load: bench/loadgen.py, several publisher processes (own paho client and sensors each), QoS 1
JSON readings of three values (generic_json), each carrying its publish time as its device
timestamp. A "reading" below is one such message (three observations).

Per run it prints:
- offered/s: readings the broker acknowledged to the generator per second of publishing;
- stored/s: readings readable in VM / (first publish -> last reading readable); loss: published
  minus stored (all three properties counted after a forced flush, exact: no duplicates can hide
  a loss because every (sensor, ts) is unique and VM deduplicates per millisecond);
- CPU: user+sys of the target process (all threads, /proc via psutil) over the same interval,
  as % of one core and as µs per reading; idle: its CPU over 3 s before the load started;
- RSS: after start-up (before load) and peak (VmHWM);
- latency: a poller forces a VM flush and exports the new points every 0.1 s (0.5 s at "max");
  a reading's latency is (end of the export that first returned it) - (its publish time), so it
  includes up to one poll period plus the export itself (resolution, stated with the figures);
- HTTP writes/s: VM's own counter `vm_http_requests_total{path="/influx/write"}` (delta over the
  run), and readings per write;
- fsyncs/s: the target runs under `strace -f --seccomp-bpf -e trace=fsync,fdatasync` (only those
  two syscalls stop the process, so the tracing cost is per fsync, not per syscall); every call
  from first publish until the target is stopped is counted. `--no-strace` turns it off.

Everything (generator, broker, store, poller, target) shares this machine's cores, as on a Pi.
The gateway runs as the systemd unit runs it (bench/deployed.py: -OO, bytecode compiled so;
BENCH_PLAIN_PYTHON=1 for the ordinary bytecode instead).
Run from the repo root: `.venv/bin/python bench/bench_e2e.py [--duration 20] [--rates 200,1000,max]`.
`--profile DIR` also records py-spy (PyPI `py-spy`, not a project dependency) of each gateway
run from first publish until the last reading is stored, non-blocking at 100 Hz, as collapsed
stacks for bench/pyspy_summary.py (profiling costs CPU: take figures from runs without it). Prints figures;
asserts nothing; never part of the test suite.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import psutil  # noqa: E402
from loadgen import LoadGenerator, sensor_names, topic  # noqa: E402

from bench.deployed import deployed_env  # noqa: E402
from tests.conftest import (  # noqa: E402
    VictoriaMetrics,
    _spawn_mosquitto,
    _spawn_vm,
    free_port,
    write_mosquitto_conf,
)

PROPS = ("pm2_5", "pm10", "temperature")


# ------------------------------------------------------------------------------ the store side


def vm_writes(vm: VictoriaMetrics) -> int:
    body = urllib.request.urlopen(f"{vm.url}/metrics", timeout=10).read().decode()
    m = re.search(r'^vm_http_requests_total\{path="/influx/write"[^}]*\} (\d+)', body, re.M)
    return int(m.group(1)) if m else 0


def export(vm: VictoriaMetrics, match: str, start: float) -> list[dict[str, object]]:
    q = urllib.parse.urlencode({"match[]": match, "start": f"{start:.3f}", "end": str(int(time.time()) + 3600)})
    body = urllib.request.urlopen(f"{vm.url}/api/v1/export?{q}", timeout=60).read()
    return [json.loads(line) for line in body.splitlines() if line.strip()]


class StorePoller(threading.Thread):
    """Watches VM for the run's readings (their pm2_5 point) and samples the target's CPU/RSS."""

    def __init__(self, vm: VictoriaMetrics, run: str, period: float, proc: psutil.Process, t0: float) -> None:
        super().__init__(daemon=True)
        self.vm, self.run_id, self.period, self.proc = vm, run, period, proc
        self.first_seen: dict[tuple[str, int], float] = {}
        self.last_ts: dict[str, int] = {}
        self.t_start = t0
        self.samples: list[tuple[float, int, float, int, float]] = []  # (time, seen, cpu s, rss, kernel cpu s)
        self.stop = threading.Event()

    def cpu(self) -> tuple[float, float]:
        """CPU seconds so far: (user + system, system)."""
        c = self.proc.cpu_times()
        return c.user + c.system, c.system

    def poll_once(self) -> None:
        lo = min(self.last_ts.values(), default=0) / 1000 - 2.0
        start = max(self.t_start - 1.0, lo) if self.last_ts else self.t_start - 1.0
        self.vm.flush()
        series = export(self.vm, f'{{__name__="pm2_5_value",gateway="{self.run_id}"}}', start)
        t = time.time()
        for s in series:
            sensor = s["metric"]["sensor"]  # type: ignore[index]
            for ts in s["timestamps"]:  # type: ignore[union-attr]
                key = (sensor, ts)
                if key not in self.first_seen:
                    self.first_seen[key] = t
                    if ts > self.last_ts.get(sensor, 0):
                        self.last_ts[sensor] = ts
        with contextlib.suppress(psutil.Error):
            total, kernel = self.cpu()
            self.samples.append((t, len(self.first_seen), total, self.proc.memory_info().rss, kernel))

    def run(self) -> None:
        while not self.stop.is_set():
            t = time.monotonic()
            try:
                self.poll_once()
            except Exception as e:  # a slow export must not end the run
                print(f"  poller: {type(e).__name__}: {e}", file=sys.stderr)
            self.stop.wait(max(0.0, self.period - (time.monotonic() - t)))


# ------------------------------------------------------------------------------ the targets


@dataclass
class Target:
    kind: str  # "gw", "ref" or "dref"
    run: str
    proc: subprocess.Popen[bytes]
    pid: int  # the measured process (strace's child when traced)
    strace_log: Path | None
    workdir: Path


def traced(cmd: list[str], log: Path | None) -> list[str]:
    if log is None:
        return cmd
    return ["strace", "-f", "--seccomp-bpf", "-qq", "-ttt", "-e", "trace=fsync,fdatasync",
            "-e", "signal=none", "-o", str(log), *cmd]  # fmt: skip


def child_pid(proc: subprocess.Popen[bytes], marker: str) -> int:
    """The measured process: under strace, its child whose command line has `marker` (strace
    --seccomp-bpf first forks a short-lived probe child of its own, so "the first child" is not it)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for kid in psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []:
            with contextlib.suppress(psutil.Error):
                cmd = kid.cmdline()
                if cmd and not cmd[0].endswith("strace") and any(marker in part for part in cmd):
                    return kid.pid
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    raise RuntimeError("the traced process did not start")


def gateway_yaml(d: Path, run: str, broker: int, vm_url: str, sensors: list[str], outbox: str,
                 also: tuple[str, ...] = (), flush_interval: str = "") -> Path:  # fmt: skip
    lines = [
        f"gateway: {{id: {run}, borough: camden, location: {{lat: 51.539, lon: -0.1426}}, data_dir: '{d / 'data'}'}}",
        f"inputs: {{mqtt: {{host: 127.0.0.1, port: {broker}}}}}",
        "sensors:",
    ]
    for s in sensors:
        lines.append(
            f"  - {{id: {s}, driver: generic_json, mqtt: {{topic: {topic(run, s)}}}, options: "
            "{time_path: ts, time_format: ms, fields: [{path: pm2_5, property: pm2_5, unit: ug/m3}, "
            "{path: pm10, property: pm10, unit: ug/m3}, {path: temperature, property: temperature, unit: Cel}]}}"
        )
    more = f", flush_interval: {flush_interval}" if flush_interval else ""  # every sink's
    lines += ["sinks:", f"  influxdb: {{url: '{vm_url}', org: london, bucket: street, token: not-used{more}}}"]
    if "file" in also:
        lines.append(f"  file: {{path: observations.jsonl{more}}}")
    if "mqtt" in also:  # the city feed, on the same broker under its own prefix
        lines.append(f"  mqtt: {{host: 127.0.0.1, port: {broker}, tls: false{more}}}")
    if outbox:
        lines.append(f"outbox: {outbox}")
    lines.append("ops: {http: null, log_level: warning}")
    path = d / "gateway.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def precreate_session(port: int, client_id: str, topics: list[str]) -> None:
    """The gateway's persistent session exists before devices publish (as on an installed
    gateway), so nothing published before its first subscription is dropped by the broker."""
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    c.connect("127.0.0.1", port)
    c.loop_start()
    c.subscribe([(t, 1) for t in topics])
    time.sleep(0.5)
    c.loop_stop()
    c.disconnect()


def start_gateway(tmp: Path, run: str, broker: int, vm: VictoriaMetrics, sensors: list[str],
                  args: argparse.Namespace) -> Target:  # fmt: skip
    d = tmp / run
    d.mkdir()
    cfg = gateway_yaml(d, run, broker, vm.url, sensors, args.outbox, tuple(filter(None, args.also.split(","))),
                       args.flush_interval)  # fmt: skip
    if not args.fresh_session:
        precreate_session(broker, f"street-gateway-{run}-in", [topic(run, s) for s in sensors])
    env = deployed_env({**os.environ, "PYTHONPATH": str(ROOT), "STREET_GATEWAY_CLOCK": "system"})
    slog = None if args.no_strace else d / "strace.txt"
    cmd = traced([sys.executable, "-m", "gateway.cli", "run", "-c", str(cfg)], slog)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=(d / "gw.log").open("ab"), stderr=subprocess.STDOUT)
    pid = proc.pid if slog is None else child_pid(proc, "gateway.cli")
    deadline = time.monotonic() + 60
    while not (d / "data" / "outbox.sqlite").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"gateway did not start: {(d / 'gw.log').read_text()[-2000:]}")
        time.sleep(0.1)
    time.sleep(2.0)  # connected, subscribed, sinks started
    return Target("gw", run, proc, pid, slog, d)


def start_forwarder(tmp: Path, run: str, broker: int, vm: VictoriaMetrics, args: argparse.Namespace,
                    kind: str = "ref") -> Target:  # fmt: skip
    """`ref`: bench/minimal_forwarder.py; `dref`: bench/durable_forwarder.py (acks after an
    fsync'd SQLite commit, reads the rows back, gzip)."""
    d = tmp / run
    d.mkdir()
    slog = None if args.no_strace else d / "strace.txt"
    script = "durable_forwarder.py" if kind == "dref" else "minimal_forwarder.py"
    more = ["--dir", str(d)] if kind == "dref" else []
    cmd = traced([sys.executable, str(ROOT / "bench" / script), "--port", str(broker),
                  "--filter", f"bench/{run}/+/json", "--vm", vm.url, "--gateway", run, *more], slog)  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=(d / "fwd.log").open("ab"))
    pid = proc.pid if slog is None else child_pid(proc, script)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if b"ready" not in line:
        raise RuntimeError("forwarder did not subscribe")
    time.sleep(1.0)
    return Target(kind, run, proc, pid, slog, d)


def stop_target(t: Target) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(t.pid, signal.SIGTERM)
    try:
        t.proc.wait(30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(t.pid, signal.SIGKILL)
        t.proc.kill()
        t.proc.wait()


def vm_hwm(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def count_fsyncs(log: Path | None, t0: float) -> int | None:
    if log is None or not log.exists():
        return None
    n = 0
    for line in log.read_text().splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[2].startswith(("fsync(", "fdatasync(")) and float(parts[1]) >= t0:
            n += 1
    return n


# ------------------------------------------------------------------------------ one run


@dataclass
class Figures:
    kind: str
    rate: str
    published: int = 0
    offered: float = 0.0
    stored: int = 0
    stored_rate: float = 0.0
    seconds: float = 0.0
    cpu_pct: float = 0.0
    sys_share: float = 0.0  # of cpu_pct, the part in the kernel (system time: syscalls, fsync, sockets)
    us_per_reading: float = 0.0
    idle_pct: float = 0.0
    rss_start: int = 0
    rss_peak: int = 0
    p50: float = float("nan")
    p99: float = float("nan")
    pmax: float = float("nan")
    writes: int = 0
    fsyncs: int | None = None
    load: float = 0.0
    notes: list[str] = field(default_factory=list)


def run_once(kind: str, rate: float | None, tmp: Path, broker: int, vm: VictoriaMetrics,
             args: argparse.Namespace, seq: int) -> Figures:  # fmt: skip
    label = "max" if rate is None else f"{rate:g}"
    run = f"{kind}{seq}-{label}"
    sensors = sensor_names(run, args.publishers, args.sensors_per_publisher)
    flat = [s for group in sensors for s in group]
    if kind == "gw":
        target = start_gateway(tmp, run, broker, vm, flat, args)
    elif kind in ("ref", "dref"):
        target = start_forwarder(tmp, run, broker, vm, args, kind)
    else:
        raise ValueError(f"unknown target {kind!r}: ref, dref or gw")
    f = Figures(kind, label, load=os.getloadavg()[0])
    gen = None
    poller = None
    spy = None
    try:
        proc = psutil.Process(target.pid)
        c = proc.cpu_times()
        idle0, ti0 = c.user + c.system, time.monotonic()
        gen = LoadGenerator(broker, run, sensors, rate, args.duration, window=args.window)
        time.sleep(max(0.0, 3.0 - (time.monotonic() - ti0)))
        c = proc.cpu_times()
        f.idle_pct = (c.user + c.system - idle0) / (time.monotonic() - ti0) * 100
        f.rss_start = proc.memory_info().rss
        w0 = vm_writes(vm)
        t0 = time.time()
        poller = StorePoller(vm, run, args.poll if rate is not None else max(args.poll, 0.5), proc, t0)
        cpu0, sys0 = poller.cpu()
        if args.profile and kind == "gw":
            out = Path(args.profile) / f"{run}.txt"
            spy = subprocess.Popen([shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"), "record", "--nonblocking", "-r", "100", "-f", "raw", "-o", str(out),
                                    "-p", str(target.pid)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        gen.go()
        poller.start()
        results = gen.join(args.duration + 180)
        f.published = sum(r.published for r in results)
        t_pub_end = max(r.t_last_ack for r in results)
        f.offered = f.published / max(1e-9, t_pub_end - min(r.t_first for r in results))
        last_progress, last_seen = time.monotonic(), -1
        while True:
            seen = len(poller.first_seen)
            if seen >= f.published:
                break
            if seen != last_seen:
                last_seen, last_progress = seen, time.monotonic()
            elif time.monotonic() - last_progress > args.stall:
                f.notes.append(f"stalled at {seen} of {f.published} readings visible")
                break
            time.sleep(0.1)
        time.sleep(poller.period * 2)
        poller.stop.set()
        poller.join(30)
        done = next((s for s in poller.samples if s[1] >= min(f.published, len(poller.first_seen))), poller.samples[-1])
        t1, _, cpu1, _, sys1 = done
        f.seconds = t1 - t0
        f.cpu_pct = (cpu1 - cpu0) / f.seconds * 100
        f.sys_share = (sys1 - sys0) / max(1e-9, cpu1 - cpu0) * 100
        f.rss_peak = max(vm_hwm(target.pid), max(s[3] for s in poller.samples))
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
        vm.flush()
        counts = [sum(len(s["values"]) for s in export(vm, f'{{__name__="{p}_value",gateway="{run}"}}', t0 - 60))  # type: ignore[arg-type, misc]
                  for p in PROPS]  # fmt: skip
        f.stored = min(counts)
        if len(set(counts)) > 1:
            f.notes.append(f"per property stored {counts}")
        f.stored_rate = f.stored / f.seconds
        f.us_per_reading = (cpu1 - cpu0) / max(1, f.stored) * 1e6
        lat = sorted(t - ts / 1000 for (_, ts), t in poller.first_seen.items())
        if lat:
            f.p50 = statistics.median(lat) * 1000
            f.p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1000
            f.pmax = lat[-1] * 1000
        f.writes = vm_writes(vm) - w0
    finally:
        if spy is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                spy.wait(30)
            if spy.poll() is None:
                spy.kill()
                spy.wait()
        if gen is not None:
            gen.kill()
        if poller is not None:
            poller.stop.set()
        stop_target(target)
    f.fsyncs = count_fsyncs(target.strace_log, t0)
    return f


# ------------------------------------------------------------------------------ report


def table(rows: list[Figures], poll: float) -> None:
    hdr = (f"{'rate':>5} {'who':>3} {'offered/s':>9} {'stored/s':>8} {'loss':>6} {'CPU%':>6} {'sys%':>5} {'µs/rdg':>7} "
           f"{'idle%':>5} {'RSS0':>5} {'RSSpk':>5} {'p50ms':>7} {'p99ms':>7} {'maxms':>7} "
           f"{'wr/s':>6} {'rdg/wr':>6} {'fs/s':>6} {'rdg/fs':>6} {'load':>4}")  # fmt: skip
    print(hdr)
    for f in rows:
        fs = "-" if f.fsyncs is None else f"{f.fsyncs / f.seconds:6.1f}"
        rpf = "-" if not f.fsyncs else f"{f.stored / f.fsyncs:6.1f}"
        print(f"{f.rate:>5} {f.kind:>3} {f.offered:9,.0f} {f.stored_rate:8,.0f} {f.published - f.stored:6d} "
              f"{f.cpu_pct:6.1f} {f.sys_share:5.0f} {f.us_per_reading:7.0f} {f.idle_pct:5.1f} {f.rss_start / 2**20:5.1f} "
              f"{f.rss_peak / 2**20:5.1f} {f.p50:7.0f} {f.p99:7.0f} {f.pmax:7.0f} {f.writes / f.seconds:6.1f} "
              f"{f.stored / max(1, f.writes):6.1f} {fs:>6} {rpf:>6} {f.load:4.1f}"
              + ("  " + "; ".join(f.notes) if f.notes else ""))  # fmt: skip
    by = {(f.rate, f.kind): f for f in rows}
    for rate in dict.fromkeys(f.rate for f in rows):
        g = by.get((rate, "gw"))
        for ref in ("ref", "dref"):
            r = by.get((rate, ref))
            if g and r:
                print(f"{rate:>5} gw/{ref}: CPU per reading {g.us_per_reading / max(1e-9, r.us_per_reading):.2f}x, "
                      f"CPU % {g.cpu_pct / max(1e-9, r.cpu_pct):.2f}x, stored/s {g.stored_rate / max(1e-9, r.stored_rate):.2f}x, "
                      f"peak RSS {g.rss_peak / max(1, r.rss_peak):.2f}x")  # fmt: skip
    print(f"latency resolution: one poll ({poll * 1000:.0f} ms; 500 ms at max) plus the flush+export; "
          "loss counts all three properties")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="200,1000,max", help="comma-separated readings/s, or max")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of publishing per run")
    ap.add_argument("--publishers", type=int, default=4, help="publisher processes")
    ap.add_argument("--sensors-per-publisher", type=int, default=8)
    ap.add_argument("--window", type=int, default=100, help="unacknowledged messages per publisher")
    ap.add_argument("--targets", default="ref,gw", help="ref (minimal forwarder), dref (the same, durable: bench/durable_forwarder.py), gw (street-gateway)")
    ap.add_argument("--outbox", default="", help="YAML flow mapping for the gateway's outbox section")
    ap.add_argument("--flush-interval", default="",
                    help="every sink's flush_interval (e.g. 1s; default: the gateway's own, 250ms)")  # fmt: skip
    ap.add_argument("--also", default="", help="sinks besides InfluxDB, comma-separated: file, mqtt "
                    "(every sink, as bench_imports.py counts them: file,mqtt); rates are still judged "
                    "by what reaches the store")  # fmt: skip
    ap.add_argument("--poll", type=float, default=0.1, help="store poll period, s")
    ap.add_argument("--stall", type=float, default=30.0, help="give up after this long without progress")
    ap.add_argument("--fresh-session", action="store_true",
                    help="let the gateway create its MQTT session (default: pre-created, so it resumes one, "
                    "as an installed gateway does after its first start)")  # fmt: skip
    ap.add_argument("--no-strace", action="store_true", help="do not count fsyncs (no strace)")
    ap.add_argument("--profile", metavar="DIR", help="py-spy record each gateway run into DIR")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, outboxes)")
    args = ap.parse_args()
    for package in ("gateway", "firmware_bridge"):  # bytecode as pip writes it at install (bench_imports.py)
        compileall.compile_dir(str(ROOT / package), quiet=1)
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    mosq_bin = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    vm_bin = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
    tmp = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    vm_port, mq_port = free_port(), free_port()
    (tmp / "vm").mkdir()
    vm = VictoriaMetrics(vm_port, _spawn_vm(vm_bin, vm_port, tmp / "vm"), tmp / "vm", vm_bin)
    (tmp / "mq").mkdir()
    mq = _spawn_mosquitto(mosq_bin, write_mosquitto_conf(tmp / "mq", mq_port), mq_port, tmp / "mq" / "log")
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), platform.processor())  # fmt: skip
    print(f"machine: {model}, {os.cpu_count()} CPUs (shared by generator, Mosquitto, VictoriaMetrics, poller "
          f"and the target), Python {platform.python_version()}; {args.publishers} publisher processes x "
          f"{args.sensors_per_publisher} sensors, QoS 1, 3 values per reading, {args.duration:g} s per run")  # fmt: skip
    rows: list[Figures] = []
    try:
        seq = 0
        for r in args.rates.split(","):
            rate = None if r.strip() == "max" else float(r)
            for kind in args.targets.split(","):
                seq += 1
                try:
                    f = run_once(kind.strip(), rate, tmp, mq_port, vm, args, seq)
                except Exception as e:  # one failed run is reported, the others still run
                    print(f"  {kind} at {r}: FAILED: {type(e).__name__}: {e}", flush=True)
                    for log in sorted(tmp.glob(f"{kind.strip()}{seq}-*/*.log")):
                        print(textwrap.indent(log.read_text()[-3000:], "    "))
                    continue
                rows.append(f)
                print(f"  {f.kind} at {f.rate}: {f.stored:,} of {f.published:,} stored, {f.stored_rate:,.0f}/s, "
                      f"CPU {f.cpu_pct:.1f} % ({f.us_per_reading:.0f} µs/reading), peak RSS "
                      f"{f.rss_peak / 2**20:.1f} MiB, p99 {f.p99:.0f} ms", flush=True)  # fmt: skip
    finally:
        mq.terminate()
        mq.wait()
        vm.stop()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print()
    table(rows, args.poll)


if __name__ == "__main__":
    main()
