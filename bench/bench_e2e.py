"""End to end on this machine: devices publish generic_json over a local Mosquitto, a real
`street-gateway run` process commits them to its outbox and writes them to a real
VictoriaMetrics. Prints:

- sustained observations/s with zero loss (N messages as fast as the publisher can, until every
  one is visible in VictoriaMetrics; the count is verified exactly);
- latency at 100 obs/s from publish to committed in the outbox (the observation's resultTime is
  stamped at commit; read back from the file sink), p50/p99/max;
- peak RSS of the gateway process (psutil).

Run from the repo root: `python bench/bench_e2e.py [--n 60000]`. Needs `mosquitto` and
`victoria-metrics` installed. Everything shares the machine's cores (publisher, broker, gateway,
store), so the figures are a floor for the gateway alone. Prints figures only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from tests.conftest import (  # noqa: E402
    VictoriaMetrics,
    _spawn_mosquitto,
    _spawn_vm,
    free_port,
    write_mosquitto_conf,
)
from tests.integration.test_durability import (  # noqa: E402
    Gateway,
    Publisher,
    delivered_everything,
    gateway_config,
    outbox_state,
    precreate_session,
    wait_until,
)


class RssWatch:
    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self.pids: list[int] = []

    def watch(self, pid: int) -> None:
        self.pids.append(pid)

    def run(self) -> None:
        while not self._stop.is_set():
            for pid in self.pids:
                with contextlib.suppress(psutil.Error):
                    self.peak = max(self.peak, psutil.Process(pid).memory_info().rss)
            time.sleep(0.2)

    def start(self) -> None:
        threading.Thread(target=self.run, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


def throughput(tmp: Path, broker: int, vm: VictoriaMetrics, n_total: int, rss: RssWatch) -> None:
    d = tmp / "throughput"
    d.mkdir()
    sensors = ("aq-1", "aq-2", "aq-3")
    precreate_session(broker, "bench1", sensors)
    gw = Gateway(gateway_config(d, broker_port=broker, vm_url=vm.url, gateway_id="bench1"), d / "gw.log")
    gw.start()
    assert gw.proc is not None
    rss.watch(gw.proc.pid)
    wait_until(lambda: (d / "data" / "outbox.sqlite").exists(), 30, "gateway start")
    time.sleep(1.5)
    per = n_total // len(sensors)
    pub = Publisher(broker, per, 1e9, sensors=sensors, step_ms=1)
    t0 = time.monotonic()
    pub.run()
    t_pub = time.monotonic() - t0
    t_commit = None
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            st = outbox_state(d / "data")
        except Exception:
            time.sleep(0.1)
            continue
        if t_commit is None and st["head"] >= per * len(sensors):
            t_commit = time.monotonic() - t0
        if delivered_everything(d / "data", ("influxdb",)) and st["head"] >= per * len(sensors):
            break
        time.sleep(0.1)
    t_delivered = time.monotonic() - t0
    series = vm.export_until('{__name__="pm2_5_value"}', per * len(sensors), timeout=60)
    stored = sum(len(s["values"]) for s in series)  # type: ignore[arg-type]
    gw.stop()
    print(f"published {per * len(sensors):,} messages (QoS 1) in {t_pub:.1f} s "
          f"({per * len(sensors) / t_pub:,.0f}/s, the publisher's own limit)")  # fmt: skip
    print(f"committed to the outbox after {t_commit:.1f} s: {per * len(sensors) / (t_commit or 1):,.0f} obs/s")
    print(f"all in VictoriaMetrics after {t_delivered:.1f} s: {per * len(sensors) / t_delivered:,.0f} obs/s "
          f"sustained; stored {stored:,} of {per * len(sensors):,} "
          f"({'zero loss' if stored == per * len(sensors) else 'LOSS'})")  # fmt: skip


def latency(tmp: Path, broker: int, vm: VictoriaMetrics, seconds: float, rss: RssWatch) -> None:
    d = tmp / "latency"
    d.mkdir()
    sensors = ("aq-1",)
    precreate_session(broker, "bench2", sensors)
    cfg = gateway_config(d, broker_port=broker, vm_url=vm.url, file_sink=True, sensors=sensors,
                         gateway_id="bench2")  # fmt: skip
    gw = Gateway(cfg, d / "gw.log")
    gw.start()
    assert gw.proc is not None
    rss.watch(gw.proc.pid)
    wait_until(lambda: (d / "data" / "outbox.sqlite").exists(), 30, "gateway start")
    time.sleep(1.5)
    n = int(100 * seconds)
    pub = Publisher(broker, n, 100.0, sensors=sensors, step_ms=10)
    pub.run()
    wait_until(lambda: delivered_everything(d / "data", ("influxdb", "file")) and
               outbox_state(d / "data")["head"] >= n, 60, "delivery")  # fmt: skip
    gw.stop()
    lat = []
    for line in (d / "data" / "observations.jsonl").read_text().splitlines():
        o = json.loads(line)
        rt = datetime.fromisoformat(o["resultTime"].replace("Z", "+00:00")).timestamp()
        lat.append(rt - pub.publish_times[("aq-1", int(o["result"]))])
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000  # noqa: E731
    print(f"latency at 100 obs/s, publish -> committed (resultTime), {len(lat)} obs: "
          f"p50 {q(0.5):.1f} ms, p99 {q(0.99):.1f} ms, max {lat[-1] * 1000:.1f} ms")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=60_000, help="messages for the throughput run")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the latency run")
    args = ap.parse_args()
    os.environ.setdefault("STREET_GATEWAY_CLOCK", "system")
    mosq_bin = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    vm_bin = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
    tmp = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    vm_port, mq_port = free_port(), free_port()
    vm = VictoriaMetrics(vm_port, _spawn_vm(vm_bin, vm_port, tmp / "vm"), tmp / "vm", vm_bin)
    (tmp / "mq").mkdir()
    mq = _spawn_mosquitto(mosq_bin, write_mosquitto_conf(tmp / "mq", mq_port), mq_port, tmp / "mq" / "log")
    rss = RssWatch()
    rss.start()
    print(f"machine: {os.cpu_count()} CPUs shared by publisher, Mosquitto, gateway and VictoriaMetrics")
    try:
        throughput(tmp, mq_port, vm, args.n, rss)
        latency(tmp, mq_port, vm, args.seconds, rss)
    finally:
        rss.stop()
        mq.terminate()
        mq.wait()
        vm.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"peak RSS of the gateway process: {rss.peak / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
