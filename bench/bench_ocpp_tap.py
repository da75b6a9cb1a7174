"""The OCPP tap with 50 chargers through one gateway. Prints:

- latency the tap adds per frame: charger -> operator one way, and the call's round trip
  (call out, result back: two frames through the tap), p50/p99/max, with the same load sent
  straight to the operator as the baseline;
- CPU of the tap process (% of one core) and its peak RSS (VmHWM), at a steady load and flat out.

The tap runs in a process of its own (`OcppTap` + `FrameIngest` with the real ocpp16j decoder
behind on_frame, readings counted and discarded), so psutil sees only the tap. The 50 chargers
and the operator are plain `websockets` peers in this process: each charger sends a 1.6
MeterValues call and waits for its result, as OCPP-J allows one call in flight. Times are
`time.monotonic_ns()`, one clock for the whole machine. Everything shares the machine's cores,
so the figures are a ceiling for the tap's cost. Run from the repo root:
`python bench/bench_ocpp_tap.py [--chargers 50] [--seconds 30] [--rate 1]`. Prints figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402
from websockets.asyncio.server import ServerConnection, serve  # noqa: E402
from websockets.typing import Subprotocol  # noqa: E402

OCPP16 = [Subprotocol("ocpp1.6")]


def cbid(i: int) -> str:
    return f"CB-{i:04d}"


# --------------------------------------------------------------------------- the tap process


def serve_tap(csms_port: int, n: int) -> None:
    """The tap as `street-gateway run` builds it: config -> plan -> the `ocpp` source's build."""
    import time as clock

    from gateway.config import parse_config
    from gateway.ops.metrics import Registry
    from gateway.plan import build_plan
    from gateway.sources import SOURCES
    from gateway.sources.base import SourceContext
    from gateway.sources.ocpp.ingest import FrameIngest
    from gateway.sources.ocpp.tap import OcppTap

    readings = 0

    async def submit(reading: Any, ack: Any) -> None:
        nonlocal readings
        readings += 1

    up = f"ws://127.0.0.1:{csms_port}/ocpp"
    sensors = "\n".join(f"  - {{id: ev-{i}, driver: ocpp16j, ocpp: {{charge_box_id: {cbid(i)}, upstream: '{up}', upstream_auth: none}}}}" for i in range(n))  # fmt: skip
    text = (
        "gateway: {id: bench, borough: camden, location: {lat: 51.539, lon: -0.1426}}\n"
        # one call in flight per charger, but flat out that is far above a real charger's rate
        "inputs: {ocpp: {host: 127.0.0.1, port: 0, max_frames_per_s: 100000, burst: 100000}}\n"
        f"sensors:\n{sensors}\nsinks: {{file: {{}}}}\n"
    )
    cfg = parse_config(text, "bench.yaml", {})
    plan = build_plan(cfg)
    ctx = SourceContext(cfg.gateway.id, submit, Registry(), clock.time, inputs=cfg.input("ocpp"))
    tap, ingest = SOURCES["ocpp"].build(ctx, list(plan.sensors.values()))
    assert isinstance(tap, OcppTap) and isinstance(ingest, FrameIngest)

    async def main() -> None:
        ingest_task = asyncio.create_task(ingest.run())
        async with tap:
            print(f"PORT {tap.port}", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until EOF
        ingest_task.cancel()
        print(f"READINGS {readings}", flush=True)

    asyncio.run(main())


# --------------------------------------------------------------------------- load


@dataclass
class Stats:
    sent: dict[str, int] = field(default_factory=dict)  # uid -> send time
    one_way: list[float] = field(default_factory=list)  # ms, charger -> operator
    round_trip: list[float] = field(default_factory=list)  # ms, call -> result at the charger


def meter_values(uid: str, energy: int) -> str:
    body = {"connectorId": 1, "transactionId": 5531, "meterValue": [{"timestamp": "2026-03-14T10:27:30Z",
            "sampledValue": [{"value": str(energy), "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
                             {"value": "7200", "measurand": "Power.Active.Import", "unit": "W"},
                             {"value": "54", "measurand": "SoC", "unit": "Percent", "location": "EV"}]}]}  # fmt: skip
    return json.dumps([2, uid, "MeterValues", body], separators=(",", ":"))


async def operator(stats: Stats, port: int) -> Any:
    async def handle(ws: ServerConnection) -> None:
        async for message in ws:
            now = time.monotonic_ns()
            text = str(message)
            uid = text.split('"', 2)[1]
            sent = stats.sent.get(uid)
            if sent is not None:
                stats.one_way.append((now - sent) / 1e6)
            await ws.send(f'[3,"{uid}",{{}}]')

    return await serve(handle, "127.0.0.1", port, subprotocols=OCPP16, compression=None)


async def one_charger(i: int, url: str, stats: Stats, until: float, period: float | None) -> int:
    frames = 0
    async with connect(f"{url}/{cbid(i)}", subprotocols=OCPP16, compression=None, proxy=None,
                       open_timeout=30) as ws:  # fmt: skip
        rng = random.Random(i)
        if period:
            await asyncio.sleep(rng.uniform(0, period))  # chargers are not in step
        while time.monotonic() < until:
            uid = f"{i}-{frames}"
            text = meter_values(uid, 100_000 + frames)
            t0 = time.monotonic_ns()
            stats.sent[uid] = t0
            await ws.send(text)
            await ws.recv()
            stats.round_trip.append((time.monotonic_ns() - t0) / 1e6)
            frames += 1
            if period:
                await asyncio.sleep(period * rng.uniform(0.9, 1.1))
    return frames


async def load(url: str, n: int, seconds: float, period: float | None, stats: Stats) -> int:
    until = time.monotonic() + seconds
    counts = await asyncio.gather(*(one_charger(i, url, stats, until, period) for i in range(n)))
    return sum(counts)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def summary(label: str, s: Stats) -> str:
    return (f"{label:<14} one-way p50 {pct(s.one_way, 50):6.3f} ms  p99 {pct(s.one_way, 99):6.3f} ms"
            f"  max {max(s.one_way, default=float('nan')):7.3f} ms | round trip p50 "
            f"{pct(s.round_trip, 50):6.3f} ms  p99 {pct(s.round_trip, 99):6.3f} ms")  # fmt: skip


async def phase(name: str, tap_url: str, csms_port: int, tap: psutil.Process, n: int,
                seconds: float, period: float | None) -> None:  # fmt: skip
    direct, through = Stats(), Stats()
    server = await operator(direct, csms_port)
    try:
        frames_direct = await load(f"ws://127.0.0.1:{csms_port}/ocpp", n, seconds, period, direct)
        server.close()
        await server.wait_closed()
        server = await operator(through, csms_port)
        cpu0 = sum(tap.cpu_times()[:2])
        t0 = time.monotonic()
        frames = await load(tap_url, n, seconds, period, through)
        cpu = (sum(tap.cpu_times()[:2]) - cpu0) / (time.monotonic() - t0) * 100
    finally:
        server.close()
        await server.wait_closed()
    rate = frames / seconds
    print(f"\n{name}: {n} chargers, {seconds:.0f} s, {frames} calls through the tap "
          f"({rate:.0f} calls/s = {2 * rate:.0f} frames/s), {frames_direct} direct")  # fmt: skip
    print(summary("direct", direct))
    print(summary("through tap", through))
    print(f"{'tap adds':<14} one-way p50 {pct(through.one_way, 50) - pct(direct.one_way, 50):6.3f} ms"
          f" | round trip p50 {pct(through.round_trip, 50) - pct(direct.round_trip, 50):6.3f} ms"
          "  (p99: compare the two lines above; their difference is noise on a shared machine)")  # fmt: skip
    print(f"tap CPU {cpu:.1f} % of one core; tap RSS now {tap.memory_info().rss / 2**20:.1f} MiB")


async def main(args: argparse.Namespace) -> None:
    from tests.conftest import free_port

    csms_port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve-tap", str(csms_port), str(args.chargers)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)  # fmt: skip
    assert proc.stdout is not None and proc.stdin is not None
    line = proc.stdout.readline().split()
    assert line and line[0] == "PORT", line
    tap_url = f"ws://127.0.0.1:{line[1]}"
    tap = psutil.Process(proc.pid)
    idle_rss = tap.memory_info().rss
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; tap pid {proc.pid}, "
          f"RSS at start {idle_rss / 2**20:.1f} MiB")  # fmt: skip
    try:
        await phase("steady", tap_url, csms_port, tap, args.chargers, args.seconds, 1 / args.rate)
        await phase("flat out", tap_url, csms_port, tap, args.chargers, min(args.seconds, 10), None)
        print(f"\ntap peak RSS (VmHWM) {vm_hwm_kib(proc.pid) / 1024:.1f} MiB")
    finally:
        out, _ = proc.communicate(timeout=30)  # closes its stdin: the tap stops
        print(out.strip())


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve-tap":
        serve_tap(int(sys.argv[2]), int(sys.argv[3]))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chargers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rate", type=float, default=1.0, help="calls per second per charger (steady)")
    asyncio.run(main(parser.parse_args()))
