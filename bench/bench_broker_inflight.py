"""Does the broker bound what a slow QoS 1 subscriber holds unacknowledged? (Mosquitto, as installed)

A subscriber acknowledges every message, 1 ms after taking it (slower than the publisher: what a
gateway that acks after an fsync'd commit looks like while it falls behind), and counts the
largest number of messages it has received but not yet acknowledged. Tried as MQTT 3.1.1 with
the broker's `max_inflight_messages 100` (the tests' broker config) and as MQTT v5 with
Receive Maximum 100. If the broker kept its limit the figure would be <= 100; whatever it is
above that is memory the gateway has to bound itself (stop reading the socket).

Run from the repo root: `.venv/bin/python bench/bench_broker_inflight.py [--n 5000]`. Prints figures.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from tests.conftest import _spawn_mosquitto, free_port, write_mosquitto_conf  # noqa: E402


def trial(port: int, v5: bool, n: int) -> tuple[int, int]:
    cid = f"slow-sub-v5-{v5}"
    pending: collections.deque[mqtt.MQTTMessage] = collections.deque()
    got, acked, peak = [0], [0], [0]
    if v5:
        s = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5, manual_ack=True)
    else:
        s = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, clean_session=False, manual_ack=True)

    def on_message(c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        got[0] += 1
        pending.append(m)
        peak[0] = max(peak[0], got[0] - acked[0])

    s.on_message = on_message
    props = None
    if v5:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.ReceiveMaximum = 100
        props.SessionExpiryInterval = 3600
        s.connect("127.0.0.1", port, properties=props, clean_start=False)
    else:
        s.connect("127.0.0.1", port)
    s.loop_start()
    s.subscribe("t/#", 1)
    time.sleep(0.5)
    stop = threading.Event()

    def acker() -> None:
        while not stop.is_set():
            try:
                m = pending.popleft()
            except IndexError:
                time.sleep(0.001)
                continue
            time.sleep(0.001)
            s.ack(m.mid, m.qos)
            acked[0] += 1

    threading.Thread(target=acker, daemon=True).start()
    p = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pub-" + cid)
    p.connect("127.0.0.1", port)
    p.loop_start()
    for i in range(n):
        p.publish(f"t/{i % 32}", b'{"ts": 1, "pm2_5": 1.0, "pm10": 2.0, "temperature": 3.0}', qos=1)
    deadline = time.time() + 60
    while acked[0] < n and time.time() < deadline:
        time.sleep(0.1)
    stop.set()
    p.loop_stop()
    p.disconnect()
    s.loop_stop()
    s.disconnect()
    return got[0], peak[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    args = ap.parse_args()
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    version = subprocess.run([binary, "-h"], capture_output=True, text=True).stdout.splitlines()[0]
    tmp = Path(tempfile.mkdtemp(prefix="bench-inflight-"))
    port = free_port()
    (tmp / "mq").mkdir()
    mq = _spawn_mosquitto(binary, write_mosquitto_conf(tmp / "mq", port), port, tmp / "mq" / "log")
    try:
        print(f"{version}; {args.n} QoS 1 messages, subscriber acks each 1 ms after taking it")
        got, peak = trial(port, False, args.n)
        print(f"MQTT 3.1.1, broker max_inflight_messages 100: received {got}, peak unacknowledged {peak}")
        got, peak = trial(port, True, args.n)
        print(f"MQTT v5, client Receive Maximum 100:          received {got}, peak unacknowledged {peak}")
    finally:
        mq.terminate()
        mq.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
