"""The reference for the end-to-end benchmark: a do-nothing MQTT -> VictoriaMetrics forwarder.

No durability (QoS 1 messages are acknowledged on receipt, paho's default), no privacy stage, no
egress guard, no outbox: parse the JSON, write one line-protocol line per value with the same
layout as street-gateway's InfluxDB sink (measurement per property; tags borough, datastream,
gateway, sensor; field `value`; millisecond timestamp), and POST the lines collected so far every
`--flush-ms` (or at 5,000 lines) on one keep-alive HTTP connection, uncompressed.

Prints `ready` once its subscription is acknowledged. Stops on SIGTERM.
Usage: python bench/minimal_forwarder.py --port P --filter 'bench/run/+/json' --vm URL --gateway G
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import signal
import sys
import threading
import time
import urllib.parse
import zlib
from collections.abc import Callable, Iterator
from typing import Any

PROPERTIES = ("pm2_5", "pm10", "temperature")
MAX_LINES = 5000


def arguments(flush_ms: float, *more: tuple[str, str]) -> argparse.Namespace:
    """The forwarders' command line (`more`: (option, help) of further required options)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--filter", required=True)
    ap.add_argument("--vm", required=True)
    ap.add_argument("--gateway", required=True)
    ap.add_argument("--flush-ms", type=float, default=flush_ms)
    for option, help_text in more:
        ap.add_argument(option, required=True, help=help_text)
    return ap.parse_args()


def line_maker(gateway: str) -> Callable[[str, bytes], list[str]]:
    """The lines of one message, one per property, laid out as street-gateway's InfluxDB sink
    writes them (measurement per property; tags borough, datastream, gateway, sensor; field
    `value`; the device's millisecond timestamp)."""
    tags = f"borough=camden,gateway={gateway}"
    prefix: dict[str, list[str]] = {}

    def lines_of(topic: str, payload: bytes) -> list[str]:
        sensor = topic.split("/")[2]
        p = prefix.get(sensor)
        if p is None:
            ds = zlib.crc32(sensor.encode())
            p = prefix[sensor] = [f"{prop},{tags},datastream={ds}{i},sensor={sensor} value="
                                  for i, prop in enumerate(PROPERTIES)]  # fmt: skip
        doc = json.loads(payload)
        ts = doc["ts"]
        return [f"{p[i]}{float(doc[prop])!r} {ts}" for i, prop in enumerate(PROPERTIES)]

    return lines_of


class Store:
    """VictoriaMetrics' InfluxDB v2 write endpoint on one keep-alive connection."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.url = urllib.parse.urlsplit(url)
        self.path = "/api/v2/write?" + urllib.parse.urlencode({"org": "london", "bucket": "street", "precision": "ms"})
        self.headers = headers or {}
        self.conn = self._connect()

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.url.hostname, self.url.port, timeout=10)

    def post(self, body: bytes) -> bool:
        """One write, tried up to three times (on a fresh connection after a failure): whether
        the store took it (the minimal forwarder drops what it did not; the durable one keeps it)."""
        for _ in range(3):
            try:
                self.conn.request("POST", self.path, body, self.headers)
                r = self.conn.getresponse()
                r.read()
                if 200 <= r.status < 300:
                    return True
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = self._connect()
            time.sleep(0.1)
        return False


def client(mqtt: Any, args: argparse.Namespace, client_id: str, **options: Any) -> Any:
    """A paho client (clean session) that subscribes at QoS 1 on connecting and prints `ready`
    once the broker acknowledged the subscription."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True, **options)

    def on_subscribe(client, userdata, mid, rcs, props):  # type: ignore[no-untyped-def]
        print("ready", flush=True)

    c.on_subscribe = on_subscribe
    c.on_connect = lambda client, *a: client.subscribe(args.filter, qos=1)
    return c


class Stop(BaseException):  # not swallowed by paho's `except Exception`
    pass


@contextlib.contextmanager
def until_sigterm() -> Iterator[None]:
    """The body runs until SIGTERM, which unwinds it even while paho retries a lost broker."""

    def on_term(*_: object) -> None:
        raise Stop

    signal.signal(signal.SIGTERM, on_term)
    with contextlib.suppress(Stop):
        yield


def main() -> None:
    args = arguments(100.0)
    import paho.mqtt.client as mqtt

    lines: list[str] = []
    lock = threading.Lock()
    have = threading.Event()
    stop = threading.Event()
    lines_of = line_maker(args.gateway)

    def on_message(client, userdata, msg):  # type: ignore[no-untyped-def]
        new = lines_of(msg.topic, msg.payload)
        with lock:
            lines.extend(new)
            if len(lines) >= MAX_LINES:
                have.set()

    def writer() -> None:
        store = Store(args.vm)
        while not stop.is_set():
            have.wait(args.flush_ms / 1000)
            have.clear()
            with lock:
                batch = lines[:]
                lines.clear()
            if batch:
                store.post("\n".join(batch).encode())

    c = client(mqtt, args, f"fwd-{args.gateway}")
    c.on_message = on_message
    w = threading.Thread(target=writer, daemon=True)
    w.start()
    c.connect("127.0.0.1", args.port)
    # paho's own loop in the main thread: with loop_start() (a network thread) the same work
    # measured about twice the CPU per reading here
    with until_sigterm():
        c.loop_forever()
    time.sleep(args.flush_ms / 1000 * 2)
    stop.set()
    w.join(5)
    sys.exit(0)


if __name__ == "__main__":
    main()
