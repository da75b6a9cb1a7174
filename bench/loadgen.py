"""Multi-process MQTT load generator for the end-to-end benchmarks (not a test helper).

Each publisher process has its own paho-mqtt client and its own sensors (topics) and publishes
QoS 1 JSON readings of three values each, like a generic_json device:

    {"ts": 1712345678901, "pm2_5": 12.3, "pm10": 20.1, "temperature": 14.2}

`ts` is the wall-clock time of the publish call in milliseconds (strictly increasing per sensor,
so no two readings of one Datastream share a store timestamp and none is deduplicated away). The
store keeps `ts` as the point's timestamp, so "publish -> stored" latency is the time a point
first becomes readable in the store minus its own timestamp.

Flow control: each process keeps at most `window` messages unacknowledged by the broker, so
"max" means as fast as the broker acknowledges, not as fast as paho can queue in memory.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import threading
import time
from dataclasses import dataclass


def sensor_names(run: str, publishers: int, per_publisher: int) -> list[list[str]]:
    return [[f"{run}-p{p}s{k}" for k in range(per_publisher)] for p in range(publishers)]


def topic(run: str, sensor: str) -> str:
    return f"bench/{run}/{sensor}/json"


@dataclass
class Result:
    published: int  # acknowledged by the broker
    t_first: float  # wall clock of the first publish
    t_last_ack: float  # wall clock of the last broker acknowledgement


def _publisher(port: int, run: str, idx: int, sensors: list[str], rate: float | None,
               duration: float, window: int, ready: mp.Event, go: mp.Event,  # type: ignore[valid-type]
               out: mp.Queue) -> None:  # type: ignore[type-arg]  # fmt: skip
    import paho.mqtt.client as mqtt

    cond = threading.Condition()
    acked = [0]
    last_ack = [0.0]

    def on_publish(client, userdata, mid, rc, props):  # type: ignore[no-untyped-def]
        with cond:
            acked[0] += 1
            last_ack[0] = time.time()
            cond.notify()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"gen-{run}-{idx}", clean_session=True)
    c.max_inflight_messages_set(window)
    c.max_queued_messages_set(0)
    c.on_publish = on_publish
    c.connect("127.0.0.1", port)
    c.loop_start()
    topics = [topic(run, s) for s in sensors]
    last_ts = [0] * len(sensors)
    ready.set()
    go.wait()
    t0 = time.monotonic()
    t_first = time.time()
    n = 0
    k = len(sensors)
    while True:
        now = time.monotonic()
        if now - t0 >= duration:
            break
        if rate is not None:
            due = t0 + n / rate
            if due > now:
                time.sleep(due - now)
        with cond:
            while n - acked[0] >= window:
                cond.wait(1.0)
        i = n % k
        ts = max(int(time.time() * 1000), last_ts[i] + 1)
        last_ts[i] = ts
        body = json.dumps({"ts": ts, "pm2_5": (n % 1000) / 10, "pm10": (n % 1500) / 10 + 0.5,
                           "temperature": 10 + (n % 200) / 10})  # fmt: skip
        c.publish(topics[i], body, qos=1)
        n += 1
    deadline = time.monotonic() + 120
    with cond:
        while acked[0] < n and time.monotonic() < deadline:
            cond.wait(1.0)
    c.loop_stop()
    c.disconnect()
    out.put((idx, Result(acked[0], t_first, last_ack[0])))


class LoadGenerator:
    """`publishers` processes, started and connected up front, released together by `go()`."""

    def __init__(self, port: int, run: str, sensors: list[list[str]], rate: float | None,
                 duration: float, window: int = 100) -> None:  # fmt: skip
        ctx = mp.get_context("spawn")
        self.go_event = ctx.Event()
        self.out: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
        self.procs = []
        readies = []
        per = None if rate is None else rate / len(sensors)
        for i, names in enumerate(sensors):
            ready = ctx.Event()
            readies.append(ready)
            p = ctx.Process(target=_publisher, args=(port, run, i, names, per, duration, window, ready,
                                                     self.go_event, self.out), daemon=True)  # fmt: skip
            p.start()
            self.procs.append(p)
        for r in readies:
            if not r.wait(30):
                raise RuntimeError("a publisher process did not connect")

    def go(self) -> None:
        self.go_event.set()

    def join(self, timeout: float) -> list[Result]:
        results = [self.out.get(timeout=timeout)[1] for _ in self.procs]
        for p in self.procs:
            p.join(10)
        return results

    def kill(self) -> None:
        for p in self.procs:
            if p.is_alive():
                p.kill()
                p.join(5)
