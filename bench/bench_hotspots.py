"""What each step on a reading's way costs, in isolation, with the gateway's own objects.

The same reading as bench/bench_e2e.py (generic_json, three values), through the real decoder,
privacy stage, egress guard, outbox (SQLite WAL on this disk, `sync=full` unless told) and
InfluxDB sink (its http.client write to a real VictoriaMetrics; influxdb-client's before issue
19), each step timed
alone: CPU (time.process_time) and wall (perf_counter) per call, and per reading. Beside them,
what the do-nothing forwarder does for the same reading (json.loads, three f-strings, a plain
http.client POST). The end-to-end bench says how much of each is paid per reading at a given rate
(one commit and one HTTP write per message at 200/s, batches at saturation); this one says what
each costs.

Run from the repo root: `.venv/bin/python bench/bench_hotspots.py`. Prints figures only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from firmware_bridge.base import Decoded  # noqa: E402
from gateway.config import parse_config  # noqa: E402
from gateway.model import Reading  # noqa: E402
from gateway.outbox import Outbox, Row  # noqa: E402
from gateway.plan import build_plan  # noqa: E402
from gateway.privacy.guard import EgressGuard, find_identifier  # noqa: E402
from gateway.privacy.stage import PrivacyStage  # noqa: E402
from gateway.sinks.influxdb import InfluxSink, Settings  # noqa: E402
from tests.conftest import VictoriaMetrics, _spawn_vm, free_port  # noqa: E402

SENSORS = 32


def config_text(data_dir: Path, vm_url: str) -> str:
    lines = [
        f"gateway: {{id: hotspots, borough: camden, location: {{lat: 51.539, lon: -0.1426}}, data_dir: '{data_dir}'}}",
        "inputs: {mqtt: {host: 127.0.0.1, port: 1883}}",
        "sensors:",
    ]
    for i in range(SENSORS):
        lines.append(
            f"  - {{id: hs-p{i // 8}s{i % 8}, driver: generic_json, mqtt: {{topic: bench/hs/hs-p{i // 8}s{i % 8}/json}}, options: "
            "{time_path: ts, time_format: ms, fields: [{path: pm2_5, property: pm2_5, unit: ug/m3}, "
            "{path: pm10, property: pm10, unit: ug/m3}, {path: temperature, property: temperature, unit: Cel}]}}"
        )
    lines += ["sinks:", f"  influxdb: {{url: '{vm_url}', org: london, bucket: street, token: not-used}}"]
    return "\n".join(lines) + "\n"


def timed(fn: Callable[[], object], n: int) -> tuple[float, float]:
    """(CPU µs, wall µs) per call."""
    fn()
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        fn()
    return (time.process_time() - c0) / n * 1e6, (time.perf_counter() - w0) / n * 1e6


def row(what: str, cpu: float, wall: float, per_reading: float | None = None, note: str = "") -> None:
    pr = "" if per_reading is None else f"{per_reading:9.1f}"
    print(f"  {what:<58} {cpu:9.1f} {wall:9.1f} {pr:>9}  {note}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sync", default="full", choices=["full", "normal"])
    ap.add_argument("--n", type=int, default=2000, help="calls per cheap step")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-hotspots-"))
    vm_bin = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
    port = free_port()
    (tmp / "vm").mkdir()
    vm = VictoriaMetrics(port, _spawn_vm(vm_bin, port, tmp / "vm"), tmp / "vm", vm_bin)
    try:
        cfg = parse_config(config_text(tmp / "data", vm.url))
        plan = build_plan(cfg)
        sid = "hs-p0s0"
        sp = plan.sensors[sid]
        decoder = sp.driver.new_decoder(sp.options)  # type: ignore[union-attr]
        topic = f"bench/hs/{sid}/json"
        now = time.time()
        payload = json.dumps({"ts": int(now * 1000), "pm2_5": 12.3, "pm10": 20.5, "temperature": 14.2}).encode()
        privacy = PrivacyStage(plan, key_factory=lambda: os.urandom(32), salt_rotation_s=86400, started_at=now)
        guard = EgressGuard(frozenset(plan.datastreams))
        ev = decoder.decode(topic, payload)[0]
        assert isinstance(ev, Decoded)
        reading = Reading(sid, now, ev.values, ev.flags)
        obs = privacy.process(reading, now)
        assert len(obs) == 3, obs
        records = [o.to_record() for o in obs]
        sink = InfluxSink(Settings(url=vm.url, org="london", bucket="street"), site_tags={"gateway": "hotspots", "borough": "camden"}, guard=guard)  # type: ignore[call-arg]
        rows3 = [Row(i + 1, o.datastream_id, o.phenomenon_time, r) for i, (o, r) in enumerate(zip(obs, records, strict=True))]
        lines3 = [line for _, line in sink.encode(rows3)[0]]
        n = args.n

        print(f"one reading = one MQTT message of 3 values = 3 Observations; outbox sync={args.sync}; "
              f"record {len(records[0])} B, line {len(lines3[0])} B")  # fmt: skip
        print(f"  {'step':<58} {'CPU µs':>9} {'wall µs':>9} {'CPU µs/rdg':>9}")
        print("per message / reading, street-gateway:")
        c, w = timed(lambda: decoder.decode(topic, payload), n)
        row("decode (generic_json)", c, w, c)
        c, w = timed(lambda: privacy.process(reading, now), n)
        row("privacy stage (3 values -> 3 Observations)", c, w, c)
        c, w = timed(lambda: [o.to_record() for o in obs], n)
        row("Observation.to_record x3", c, w, c)
        c, w = timed(lambda: [guard.check_observation(o) for o in obs], n)
        row("egress guard at commit: check_observation x3", c, w, c)
        from gateway.committer import Committer, Stats
        from gateway.ops.metrics import Registry

        committer = Committer(privacy=privacy, guard=guard, clock=time.time, group_commit_s=0.05,
                              metrics=Registry(), stats=Stats())  # fmt: skip
        c, w = timed(lambda: committer.stage(obs), n)
        row("committer: 3 Observations -> outbox rows (to_record, times, guard)", c, w, c)
        c, w = timed(lambda: [guard.check_record(r) for r in records], n)
        row("egress guard: check_record x3 (parse + check by parts)", c, w, c)
        c, w = timed(lambda: find_identifier(records[0].decode()), n)
        row("  one find_identifier on one record", c, w)
        c, w = timed(lambda: sink._encode_unguarded(rows3), n)
        row("influx sink: encode 3 lines from what the guard cleared", c, w, c)
        c, w = timed(lambda: find_identifier("\n".join(lines3)), n)
        row("  a full scan of the 3 joined lines (what the sink did before)", c, w, c)
        batch = [Row(i + 1, rows3[i % 3].ds, rows3[i % 3].t, rows3[i % 3].body) for i in range(3000)]
        c, w = timed(lambda: sink._encode_unguarded(batch), 20)
        row("influx sink: encode 1,000 readings (3,000 lines)", c, w, c / 1000)
        big = "\n".join(line for _, line in sink.encode(batch)[0])
        c, w = timed(lambda: find_identifier(big), 20)
        row("  a full scan of 3,000 joined lines (before)", c, w, c / 1000)

        import asyncio
        from concurrent.futures import ThreadPoolExecutor

        async def hops(k: int) -> tuple[float, float]:
            loop = asyncio.get_running_loop()
            pool = ThreadPoolExecutor(1)
            await loop.run_in_executor(pool, int)
            c0, w0 = time.process_time(), time.perf_counter()
            for _ in range(k):
                await loop.run_in_executor(pool, int)
            pool.shutdown()
            return (time.process_time() - c0) / k * 1e6, (time.perf_counter() - w0) / k * 1e6

        c, w = asyncio.run(hops(n))
        row("one hop event loop -> worker thread -> loop, no work", c, w, None,
            "outbox calls, encode, POST: each is one")  # fmt: skip

        print("outbox (SQLite WAL, this disk):")
        ob = Outbox(tmp / "outbox.sqlite", sinks=["influxdb"], sync=args.sync)
        recs3 = [(o.datastream_id, o.phenomenon_time, r) for o, r in zip(obs, records, strict=True)]
        c, w = timed(lambda: ob.append(recs3), 300)
        row("append one reading (3 rows), one transaction", c, w, c, "fsync each")
        recs3000 = recs3 * 1000
        c, w = timed(lambda: ob.append(recs3000), 20)
        row("append 1,000 readings (3,000 rows), one transaction", c, w, c / 1000)
        seq = [ob.head()]

        def adv() -> None:
            seq[0] += 1
            ob.advance("influxdb", seq[0])

        c, w = timed(adv, 300)
        row("advance the sink's cursor (UPDATE, no fsync of its own)", c, w, c)
        c, w = timed(lambda: ob.read("influxdb", 3), 1000)
        row("read 3 rows for the sink", c, w, c)
        c, w = timed(lambda: ob.head(), 1000)
        row("head()", c, w)
        ob.close()

        lines3000 = big.split("\n")
        print("InfluxDB sink: its synchronous http.client write to VictoriaMetrics (issue 19; influxdb-client before):")
        for gz in (True, False):
            s2 = InfluxSink(Settings(url=vm.url, org="london", bucket="street", gzip=gz), site_tags={"gateway": "hotspots", "borough": "camden"}, guard=guard)  # type: ignore[call-arg]
            asyncio.run(s2.start())

            def post(lines: list[str], s2: InfluxSink = s2) -> None:
                s2._post_sync(lines)

            c, w = timed(lambda: post(lines3), 200)
            row(f"POST one reading (3 lines), gzip={gz}", c, w, c)
            c, w = timed(lambda: post(lines3000), 20)
            row(f"POST 1,000 readings (3,000 lines), gzip={gz}", c, w, c / 1000)
            asyncio.run(s2.close())

        print("the minimal forwarder's work for the same reading:")
        prefix = [f"{p},borough=camden,gateway=g,datastream=1{i},sensor={sid} value=" for i, p in enumerate(("pm2_5", "pm10", "temperature"))]

        def fwd_encode() -> list[str]:
            doc = json.loads(payload)
            return [f"{prefix[i]}{float(doc[p])!r} {doc['ts']}" for i, p in enumerate(("pm2_5", "pm10", "temperature"))]

        c, w = timed(fwd_encode, n)
        row("json.loads + 3 lines", c, w, c)
        u = urllib.parse.urlsplit(vm.url)
        conn = http.client.HTTPConnection(u.hostname, u.port)
        path = "/api/v2/write?org=london&bucket=street&precision=ms"

        def fpost(body: bytes) -> None:
            conn.request("POST", path, body)
            conn.getresponse().read()

        body3 = "\n".join(fwd_encode()).encode()
        c, w = timed(lambda: fpost(body3), 200)
        row("http.client POST of 3 lines", c, w, c)
        body3000 = "\n".join(fwd_encode()[i % 3] for i in range(3000)).encode()
        c, w = timed(lambda: fpost(body3000), 20)
        row("http.client POST of 3,000 lines", c, w, c / 1000)
    finally:
        vm.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
