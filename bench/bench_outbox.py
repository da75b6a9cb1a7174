"""Outbox figures: group-commit appends/s at sync=full and sync=normal, bytes written per
observation, the longest reclaim pause, draining a 1,000,000-observation backlog (to a null
sink, and to a real VictoriaMetrics if the binary is installed) while live appends keep flowing,
and peak RSS.

Run from the repo root on an otherwise idle machine: `python bench/bench_outbox.py [--quick]`.
Prints figures only (the README quotes them); nothing here is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.model import Observation  # noqa: E402
from gateway.outbox import AsyncOutbox, Outbox  # noqa: E402

DATASTREAMS = [7240822753567310 + i for i in range(20)]


def records(n: int, start: float, offset: int = 0) -> list[tuple[int, float, bytes]]:
    """Realistic rows: what `Observation.to_record` makes for a PM2.5 reading."""
    out = []
    for i in range(offset, offset + n):
        ds = DATASTREAMS[i % len(DATASTREAMS)]
        t = start + i * 0.001
        obs = Observation(ds, f"pm-{i % len(DATASTREAMS)}", "pm2_5", t, t + 0.02, float(i % 500) / 10)
        out.append((ds, t, obs.to_record()))
    return out


def io_written() -> tuple[int, int]:
    """(bytes passed to write syscalls, bytes the block layer was asked to write)."""
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(fields["wchar"]), int(fields["write_bytes"])


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def bench_append(tmp: Path, sync: str, batch: int, n: int, rows: list[tuple[int, float, bytes]]) -> None:
    path = tmp / f"append-{sync}-{batch}.sqlite"
    ob = Outbox(path, sinks=["a"], sync=sync)
    w0 = io_written()
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        ob.append(rows[i : i + batch])
    dt = time.perf_counter() - t0
    w1 = io_written()
    ob.close()
    payload = sum(len(r[2]) for r in rows[:n])
    print(
        f"append sync={sync:6} batch={batch:5}: {n / dt:9,.0f} obs/s  "
        f"({dt / (n / batch) * 1000:6.2f} ms/commit)  written {(w1[0] - w0[0]) / n:6.0f} B/obs "
        f"(block layer {(w1[1] - w0[1]) / n:5.0f} B/obs; payload {payload / n:.0f} B/obs; "
        f"db file after checkpoint {disk_bytes(path) / n:.0f} B/obs)"
    )


def bench_reclaim(tmp: Path, n: int, rows: list[tuple[int, float, bytes]]) -> None:
    path = tmp / "reclaim.sqlite"
    ob = Outbox(path, sinks=["a"], sync="full")
    for i in range(0, n, 5000):
        ob.append(rows[i : i + 5000])
    ob.advance("a", ob.head())
    pauses = []
    while True:
        t0 = time.perf_counter()
        k = ob.reclaim()
        pauses.append(time.perf_counter() - t0)
        if not k:
            break
    ob.close()
    pauses.sort()
    print(
        f"reclaim of {n:,} delivered rows: {len(pauses) - 1} chunks, max pause "
        f"{pauses[-1] * 1000:.1f} ms, median {pauses[len(pauses) // 2] * 1000:.1f} ms"
    )


class NullSink:
    name = "null"
    batch_size = 5000

    async def start(self) -> None: ...

    async def write(self, rows):  # type: ignore[no-untyped-def]
        from gateway.sinks.base import WriteResult

        return WriteResult(len(rows))

    async def close(self) -> None: ...


async def drain(ob: AsyncOutbox, sink, backlog: int, live_rate: float) -> tuple[float, int, float]:  # type: ignore[no-untyped-def]
    """Sink runner (read, write, advance) and housekeeping (reclaim) as the pipeline runs them,
    with live appends at `live_rate` obs/s in 20 ms group commits. Returns (seconds to deliver
    the backlog, live rows appended meanwhile, max live-commit latency in ms)."""
    stop = asyncio.Event()
    live = 0
    worst = 0.0
    start = time.time()

    async def appender() -> None:
        nonlocal live, worst
        per = max(1, int(live_rate * 0.02))
        while not stop.is_set():
            t0 = time.perf_counter()
            await ob.append(records(per, start, offset=10**8 + live))
            worst = max(worst, time.perf_counter() - t0)
            live += per
            await asyncio.sleep(0.02)

    async def reclaimer() -> None:
        while not stop.is_set():
            await asyncio.sleep(1.0)
            while await ob.call(ob.sync.reclaim):
                await asyncio.sleep(0)

    tasks = [asyncio.create_task(appender()), asyncio.create_task(reclaimer())]
    target = ob.sync.head() - live  # the backlog's last seq is below this
    target = backlog
    t0 = time.perf_counter()
    delivered = 0
    while delivered < target:
        rows = await ob.read(sink.name, sink.batch_size)
        if not rows:
            await asyncio.sleep(0.01)
            continue
        await sink.write(rows)
        await ob.advance(sink.name, rows[-1].seq)
        delivered += len(rows)
    dt = time.perf_counter() - t0
    stop.set()
    await asyncio.gather(*tasks)
    return dt, live, worst * 1000


def fill(path: Path, sink: str, n: int, start: float) -> None:
    ob = Outbox(path, sinks=[sink], sync="normal")
    for i in range(0, n, 10000):
        ob.append(records(min(10000, n - i), start, offset=i))
    ob.close()


def bench_drain(tmp: Path, n: int, live_rate: float, vm_url: str | None, max_rate: float | None) -> None:
    start = time.time() - 3600
    if vm_url is None:
        path = tmp / "drain-null.sqlite"
        fill(path, "null", n, start)
        sink = NullSink()
        label = "null sink"
    else:
        from gateway.privacy.guard import EgressGuard
        from gateway.sinks.influxdb import InfluxSink
        from gateway.sinks.influxdb import Settings as InfluxConfig

        path = tmp / f"drain-vm-{max_rate}.sqlite"
        fill(path, "influxdb", n, start)
        cfg = InfluxConfig(url=vm_url, org="london", bucket="street", **({"max_rate": max_rate} if max_rate else {}))
        sink = InfluxSink(cfg, site_tags={"gateway": "bench", "borough": "camden"},
                          guard=EgressGuard(frozenset(DATASTREAMS)))  # fmt: skip
        label = f"VictoriaMetrics, max_rate={cfg.max_rate:,.0f}/s" if cfg.max_rate else "VictoriaMetrics, no rate cap (the default)"

    async def run() -> tuple[float, int, float]:
        ob = AsyncOutbox(Outbox(path, sinks=[sink.name], sync="full"))
        await sink.start()
        try:
            return await drain(ob, sink, n, live_rate)
        finally:
            await sink.close()
            await ob.close()

    dt, live, worst = asyncio.run(run())
    print(
        f"drain {n:,} backlog to {label}: {dt:6.1f} s ({n / dt:,.0f} obs/s) with {live:,} live "
        f"obs appended meanwhile at {live_rate:,.0f}/s; slowest live commit {worst:.0f} ms"
    )
    path.unlink()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller numbers, for a smoke run")
    ap.add_argument("--no-vm", action="store_true", help="skip the VictoriaMetrics drain")
    args = ap.parse_args()
    n_append = 50_000 if args.quick else 300_000
    backlog = 100_000 if args.quick else 1_000_000
    print(f"machine: {os.cpu_count()} CPUs; python {sys.version.split()[0]}; sqlite "
          f"{__import__('sqlite3').sqlite_version}; one process, outbox on one thread")  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="bench-outbox-", dir=os.environ.get("BENCH_DIR")))
    try:
        rows = records(n_append, time.time())
        for sync in ("full", "normal"):
            for batch in (1, 10, 100, 1000, 5000):
                bench_append(tmp, sync, batch, {1: 2000, 10: 20000, 100: n_append // 5}.get(batch, n_append), rows)
        bench_reclaim(tmp, n_append, rows)
        del rows
        bench_drain(tmp, backlog, 1000.0, None, None)
        vm = shutil.which("victoria-metrics") and not args.no_vm
        if vm:
            sys.path.insert(0, str(ROOT))
            from tests.conftest import _spawn_vm, free_port

            port = free_port()
            proc = _spawn_vm(shutil.which("victoria-metrics"), port, tmp / "vm-data")  # type: ignore[arg-type]
            try:
                for max_rate in (None, 20000.0):  # the default (no cap), and the old default cap
                    bench_drain(tmp, backlog, 100.0, f"http://127.0.0.1:{port}", max_rate)
            finally:
                proc.terminate()
                proc.wait()
        else:
            print("drain to VictoriaMetrics: skipped (victoria-metrics not installed)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak RSS: {peak / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
