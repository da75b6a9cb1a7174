"""What the MQTT feed's first connection costs in memory: it publishes the site's SensorThings
entities (retained), once per configuration (a fingerprint file skips them on later starts).

Runs a real Mosquitto on a free port, builds the plan `bench_e2e.py` runs (4 × 8 sensors of 3
Datastreams: 133 messages), and measures the process's RSS before and after `MqttSink`'s first
connection (entities published), then a second sink's connection (fingerprint unchanged:
nothing published), each in a fresh process, and the Python heap's peak during the first
(tracemalloc, a separate run: it inflates RSS).

    .venv/bin/python bench/bench_feed_entities.py [--runs 3] [--publishers 4 --sensors-per-publisher 8]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_sensorthings import rss_mib  # noqa: E402


def one(publishers: int, per: int, heap: bool) -> dict[str, float]:
    """In this process: a broker, the plan, a warmed MQTT client, then the sink's connections."""
    import bench_e2e as be

    from gateway.config import load_config
    from gateway.configtypes import MqttBroker
    from gateway.mqttconn import make_client
    from gateway.plan import build_plan
    from gateway.privacy.guard import EgressGuard
    from gateway.sinks.mqtt import MqttSink
    from gateway.sinks.mqtt import Settings as MqttSettings
    from tests.conftest import _spawn_mosquitto, free_port, require_binary, write_mosquitto_conf

    d = Path(tempfile.mkdtemp(prefix="feed-entities-"))
    port = free_port()
    (d / "mosq").mkdir()
    broker = _spawn_mosquitto(require_binary("mosquitto", "mosquitto"), write_mosquitto_conf(d / "mosq", port),
                              port, d / "mosq" / "mosquitto.log")  # fmt: skip
    try:
        sensors = [s for group in be.sensor_names("feed", publishers, per) for s in group]
        cfg = load_config(be.gateway_yaml(d, "feed", port, "http://127.0.0.1:1", sensors, "", ("mqtt",)))
        plan = build_plan(cfg)
        guard = EgressGuard(frozenset(plan.datastreams))
        settings = MqttSettings(host="127.0.0.1", port=port, tls=False)

        async def scenario() -> dict[str, float]:
            warm = make_client(MqttBroker(host="127.0.0.1", port=port, tls=False), "feed-warm")
            async with warm:  # what the gateway's MQTT ingest has already loaded and allocated
                await warm.publish("warm/x", b"1", qos=1, retain=True)
                await warm.publish_all([("warm/y", b"2")], timeout=10)
            gc.collect()
            out = {"rss_before": rss_mib()}
            first = MqttSink(settings, plan, guard=guard, data_dir=d)
            if heap:
                tracemalloc.start()
            await first._connect()
            if heap:
                out["heap_peak_kib"] = tracemalloc.get_traced_memory()[1] / 1024
                tracemalloc.stop()
            out["rss_first"] = rss_mib()
            await first.close()
            second = MqttSink(settings, plan, guard=guard, data_dir=d)
            await second._connect()
            out["rss_second"] = rss_mib()
            await second.close()
            return out

        return asyncio.run(scenario())
    finally:
        broker.terminate()
        broker.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--publishers", type=int, default=4)
    ap.add_argument("--sensors-per-publisher", type=int, default=8)
    ap.add_argument("--child", choices=("rss", "heap"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(one(args.publishers, args.sensors_per_publisher, args.child == "heap")))
        return
    common = ["--publishers", str(args.publishers), "--sensors-per-publisher", str(args.sensors_per_publisher)]

    def child(kind: str) -> dict[str, float]:
        done = subprocess.run([sys.executable, __file__, "--child", kind, *common], check=True,
                              capture_output=True, text=True, cwd=ROOT)  # fmt: skip
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))

    runs = [child("rss") for _ in range(args.runs)]
    first = [r["rss_first"] - r["rss_before"] for r in runs]
    second = [r["rss_second"] - r["rss_first"] for r in runs]
    heap = child("heap")["heap_peak_kib"]
    n = args.publishers * args.sensors_per_publisher
    print(f"{n} sensors, {args.runs} runs, each in a fresh process")
    print(f"RSS added by the first connection (entities published): "
          f"{', '.join(f'{x:+.2f}' for x in first)} MiB (median {statistics.median(first):+.2f})")  # fmt: skip
    print(f"RSS added by a second connection (fingerprint unchanged): "
          f"{', '.join(f'{x:+.2f}' for x in second)} MiB")  # fmt: skip
    print(f"Python heap peak during the first connection: {heap:.0f} KiB (tracemalloc, a separate run)")


if __name__ == "__main__":
    main()
