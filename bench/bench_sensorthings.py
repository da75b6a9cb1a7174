"""SensorThings server sink figures: observations/s into a real SensorThings server
(django-ogc-sensorthings on SQLite, the tests' server) with dataArray and one by one, and the
sink's memory: RSS of a process that has loaded the gateway, then the sink, then drained.

Run from the repo root on an otherwise idle machine: `python bench/bench_sensorthings.py [--n N]`.
Prints figures only; nothing here is asserted. The server runs Django's development server in
another process on the same 2 cores, so the rate is the server's more than the sink's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rss_mib(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


async def child(data_dir: Path, url: str, mode: str) -> None:
    """Load what a running gateway has loaded, then the sink, then drain the outbox into it."""
    import gateway.pipeline
    import gateway.sinks.mqtt  # noqa: F401
    from gateway.outbox import Outbox

    base = rss_mib()
    from tests.integration.sta_helpers import load, make_sink

    cfg, plan = load(data_dir)
    imported = rss_mib()
    outbox = Outbox(data_dir / "outbox.sqlite", sinks=["sta"])
    sink = make_sink(cfg, plan, url, data_array=mode, batch_size=500)
    await sink.start()
    t0 = time.perf_counter()
    n = 0
    while rows := outbox.read("sta", sink.batch_size):
        result = await sink.write(rows)
        outbox.advance("sta", rows[-1].seq)
        n += result.written
    elapsed = time.perf_counter() - t0
    await sink.close()
    print(json.dumps({"n": n, "s": elapsed, "base": base, "imported": imported, "peak": rss_mib("VmHWM")}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000, help="observations per run (one by one: a fifth)")
    ap.add_argument("--child", nargs=3, metavar=("DATA", "URL", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        asyncio.run(child(Path(args.child[0]), args.child[1], args.child[2]))
        return

    from tests.conftest import free_port
    from tests.integration.sta_helpers import fill_outbox, load, numeric_observations
    from tests.integration.sta_server import StaServer

    with tempfile.TemporaryDirectory() as tmp:
        for mode, n in (("always", args.n), ("never", max(1, args.n // 5))):
            d = Path(tmp) / mode
            d.mkdir()
            srv = StaServer(free_port(), d / "sta.sqlite3", d / "sta.log")
            srv.start()
            try:
                _, plan = load(d / "data")
                fill_outbox(d / "data" / "outbox.sqlite", ["sta"], numeric_observations(plan, n))
                out = subprocess.run([sys.executable, __file__, "--child", str(d / "data"), srv.url, mode],
                                     cwd=ROOT, capture_output=True, text=True, check=True)  # fmt: skip
                r = json.loads(out.stdout.strip().splitlines()[-1])
            finally:
                srv.stop()
            label = "dataArray (CreateObservations)" if mode == "always" else "one by one (4 in flight)"
            print(f"{label:32s} {r['n']:6d} obs in {r['s']:6.2f} s = {r['n'] / r['s']:7.0f} obs/s")
            print(f"{'':32s} RSS: gateway loaded {r['base']:.1f} MiB, + sink module {r['imported'] - r['base']:+.1f} MiB,"
                  f" peak after the drain {r['peak']:.1f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
