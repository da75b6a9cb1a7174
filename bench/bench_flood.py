"""A flood of random MACs on the real gateway: `street-gateway run` with a real Mosquitto, a Wi-Fi
sniffer sensor, and a publisher sending random-MAC probe requests at a sustained rate (default
1,000 probes/s, the cheap-ESP32-on-the-pavement attack of issue 12) for a whole window.

    .venv/bin/python bench/bench_flood.py [--rate 1000] [--window 900]

The flood starts as soon as the gateway is up and runs until the first window that began after
it started has ended (so a whole window is flooded; up to two windows of wall time). Prints the
gateway's RSS (baseline after start-up, peak, and at the end), what /metrics says (windows
published as a sketch estimate, pseudonyms held), and the published footfall of the whole window
against the true number of distinct MACs sent in it. The unit's MemoryHigh is 96 MiB
(deploy/raspberrypi/street-gateway.service). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiomqtt  # noqa: E402
import psutil  # noqa: E402

from tests.conftest import _spawn_mosquitto, free_port, write_mosquitto_conf  # noqa: E402
from tests.integration.test_durability import Gateway, wait_until  # noqa: E402

MEMORY_HIGH_MIB = 96
BATCH = 100  # probes per MQTT message (the sniffer firmware batches; the driver takes up to 500)


class Rss:
    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = 0
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                rss = self.proc.memory_info().rss
            except psutil.Error:
                return
            self.peak = max(self.peak, rss)
            self.samples.append((time.time(), rss))
            time.sleep(0.5)

    def start(self) -> None:
        threading.Thread(target=self.run, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


def metrics(port: int) -> dict[str, float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def metric(m: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in m.items() if k.startswith(prefix))


async def flood(port: int, rate: int, until: float, sent: dict[int, set[bytes]], window: float) -> int:
    """Publish random-MAC probes at `rate`/s until `until`; remember each MAC by the window of
    its publish time. Returns probes sent."""
    rng = random.Random(1)
    n = 0
    interval = BATCH / rate
    async with aiomqtt.Client("127.0.0.1", port, identifier="flooder") as c:
        t_next = time.time()
        while time.time() < until:
            macs = [rng.randbytes(6) for _ in range(BATCH)]
            now = time.time()
            sent.setdefault(math.floor(now / window), set()).update(macs)
            body = json.dumps([{"mac": m.hex(":"), "rssi": -55, "seq": rng.randrange(4096), "ch": 6}
                               for m in macs], separators=(",", ":"))  # fmt: skip
            await c.publish("footfall/sniffer-1/probes", body, qos=1)
            n += BATCH
            t_next += interval
            await asyncio.sleep(max(0.0, t_next - time.time()))
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--rate", type=int, default=1000, help="probes per second")
    ap.add_argument("--window", type=int, default=900, help="seconds (default 900 = 15 min)")
    args = ap.parse_args()
    mosq_bin = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    tmp = Path(tempfile.mkdtemp(prefix="bench-flood-"))
    mq_port, http_port = free_port(), free_port()
    (tmp / "mq").mkdir()
    mq = _spawn_mosquitto(mosq_bin, write_mosquitto_conf(tmp / "mq", mq_port), mq_port, tmp / "mq" / "log")
    cfg = tmp / "gateway.yaml"
    cfg.write_text(f"""\
gateway: {{id: bench-flood, borough: camden, location: {{lat: 51.539, lon: -0.1426}}, data_dir: '{tmp / "data"}'}}
sensors:
  - {{id: footfall-1, driver: wifi_probe_sniffer, mqtt: {{topic: footfall/sniffer-1/probes}}}}
inputs: {{mqtt: {{host: 127.0.0.1, port: {mq_port}, client_id: bench-flood-gw}}}}
privacy: {{window: {args.window}s, min_count: 10, salt_rotation: 24h}}
sinks: {{file: {{path: observations.jsonl}}}}
outbox: {{sync: normal}}
ops: {{http: '127.0.0.1:{http_port}'}}
""")
    gw = Gateway(cfg, tmp / "gw.log")
    os.environ.setdefault("STREET_GATEWAY_CLOCK", "system")
    gw.start()
    assert gw.proc is not None
    rss = Rss(gw.proc.pid)
    try:
        wait_until(lambda: (tmp / "data" / "outbox.sqlite").exists(), 60, "gateway start")
        time.sleep(3.0)
        baseline = psutil.Process(gw.proc.pid).memory_info().rss
        rss.start()
        start = time.time()
        w0 = math.floor(start / args.window) + 1  # the first window that begins after the start
        until = (w0 + 1) * args.window + 1.0
        print(f"gateway up, RSS {baseline / 2**20:.1f} MiB; flooding {args.rate:,} random-MAC probes/s "
              f"for {until - start:.0f} s (whole window [{w0 * args.window}, {(w0 + 1) * args.window}))")  # fmt: skip
        sent: dict[int, set[bytes]] = {}
        t0 = time.monotonic()
        n = asyncio.run(flood(mq_port, args.rate, until, sent, args.window))
        elapsed = time.monotonic() - t0
        out = tmp / "data" / "observations.jsonl"

        def published() -> dict[str, object] | None:
            if not out.exists():
                return None
            for line in out.read_text().splitlines():
                o = json.loads(line)
                if str(o["phenomenonTime"]).startswith(time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(w0 * args.window))):
                    return o  # type: ignore[no-any-return]
            return None

        wait_until(lambda: published() is not None, 60, "the flooded window published")
        m = metrics(http_port)
        end_rss = psutil.Process(gw.proc.pid).memory_info().rss
    finally:
        rss.stop()
        gw.stop()
        mq.terminate()
        mq.wait()
    o = published()
    assert o is not None
    truth = len(sent.get(w0, set()))
    result = o["result"]
    params = o.get("parameters", {})
    readings = metric(m, "gateway_readings_total")
    print(f"sent {n:,} probes in {elapsed:.0f} s ({n / elapsed:,.0f}/s); the gateway took {readings:,.0f} readings")
    print(f"RSS: baseline {baseline / 2**20:.1f} MiB, peak {rss.peak / 2**20:.1f} MiB, at the end "
          f"{end_rss / 2**20:.1f} MiB (MemoryHigh {MEMORY_HIGH_MIB} MiB)")  # fmt: skip
    err = (result - truth) / truth if isinstance(result, int | float) and truth else float("nan")
    print(f"flooded window: {truth:,} distinct MACs sent; published footfall {result} {params} "
          f"({err:+.2%})")  # fmt: skip
    print(f"/metrics: gateway_privacy_sketch_windows_total {metric(m, 'gateway_privacy_sketch_windows_total'):.0f}, "
          f"gateway_privacy_pseudonyms_held {metric(m, 'gateway_privacy_pseudonyms_held'):.0f}, "
          f"gateway_privacy_key_rotations_total {metric(m, 'gateway_privacy_key_rotations_total'):.0f}")  # fmt: skip
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
