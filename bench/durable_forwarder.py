"""A second reference for the end-to-end benchmark: the do-nothing forwarder made durable.

What `bench/minimal_forwarder.py` does (parse the JSON, one line-protocol line per value, same
layout as street-gateway's InfluxDB sink, POST every `--flush-ms` or at 5,000 lines on one
keep-alive connection), plus the work street-gateway's durability costs and nothing else:

- QoS 1 messages are acknowledged only once their lines are committed: a thread gathers what
  arrived (up to 2 ms of linger, as the gateway's group commit with acks pending) and appends it
  to an SQLite outbox in WAL mode with `synchronous=FULL` (an fsync per commit), one row per
  line; the acknowledgements go out from paho's loop thread after the commit.
- The writer, every 250 ms (the gateway's default `flush_interval`) or as soon as 5,000 lines
  wait, reads them back from the outbox (5,000 rows after its cursor), POSTs them gzip'd at
  deflate level 6 (the gateway's default), then deletes them (no fsync of its own); rows the
  store did not take stay for the next write.

No privacy stage, no egress guard, no device decoding, no metrics, no config: the floor under
what the gateway must do, so a gateway/this ratio shows the cost of those alone.

Prints `ready` once its subscription is acknowledged. Stops on SIGTERM.
Usage: python bench/durable_forwarder.py --port P --filter 'bench/run/+/json' --vm URL --gateway G --dir D
"""

from __future__ import annotations

import collections
import contextlib
import sqlite3
import sys
import threading
import time
import zlib
from pathlib import Path

from minimal_forwarder import MAX_LINES, Store, arguments, client, line_maker, until_sigterm

LINGER_S = 0.002
MAX_PENDING = 256  # messages received and not yet committed, as the gateway's bound


def main() -> None:
    args = arguments(250.0, ("--dir", "where the outbox goes"))
    import paho.mqtt.client as mqtt

    db_path = Path(args.dir) / "outbox.sqlite"
    setup = sqlite3.connect(db_path)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE IF NOT EXISTS obs(seq INTEGER PRIMARY KEY AUTOINCREMENT, body BLOB NOT NULL)")
    setup.commit()
    setup.close()

    arrived: list[tuple[int, list[str]]] = []  # (mid, its lines), appended on paho's thread
    lock = threading.Lock()
    have = threading.Event()  # something arrived
    committed: collections.deque[int] = collections.deque()  # mids to acknowledge
    full = threading.Event()  # a whole write's rows are committed: the writer need not linger
    unread = [0]  # rows committed since the writer last read (approximate: no lock)
    stop = threading.Event()
    lines_of = line_maker(args.gateway)

    def on_message(client, userdata, msg):  # type: ignore[no-untyped-def]
        new = lines_of(msg.topic, msg.payload)
        with lock:
            arrived.append((msg.mid, new))
        have.set()

    def committer() -> None:
        db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA synchronous=FULL")
        while not stop.is_set():
            if not have.wait(0.1):
                continue
            time.sleep(LINGER_S)
            have.clear()
            with lock:
                batch = arrived[:]
                arrived.clear()
            if not batch:
                continue
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT INTO obs(body) VALUES (?)", ((line.encode(),) for _, lines in batch for line in lines))
            db.execute("COMMIT")
            committed.extend(mid for mid, _ in batch)
            wake = c._sockpairW  # paho's own wake-up for its loop (it acks, in its thread)
            if wake is not None:
                with contextlib.suppress(OSError):
                    wake.send(b"\0")
            unread[0] += 3 * len(batch)
            if unread[0] >= MAX_LINES:
                full.set()

    def writer() -> None:
        db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA synchronous=NORMAL")
        store = Store(args.vm, {"Content-Encoding": "gzip", "Content-Type": "text/plain; charset=utf-8"})
        cursor = 0
        while not stop.is_set():
            full.wait(args.flush_ms / 1000)  # linger as the gateway's sink (flush_interval 250 ms)
            full.clear()
            unread[0] = 0
            rows = db.execute("SELECT seq, body FROM obs WHERE seq > ? ORDER BY seq LIMIT ?", (cursor, MAX_LINES)).fetchall()
            if not rows:
                continue
            z = zlib.compressobj(6, zlib.DEFLATED, 31)
            if not store.post(z.compress(b"\n".join(b for _, b in rows)) + z.flush()):
                continue  # kept: sent again at the next flush
            cursor = rows[-1][0]
            db.execute("DELETE FROM obs WHERE seq <= ?", (cursor,))
            if len(rows) >= MAX_LINES:
                full.set()  # more is waiting

    c = client(mqtt, args, f"dfwd-{args.gateway}", manual_ack=True)
    c.on_message = on_message
    threads = [threading.Thread(target=committer, daemon=True), threading.Thread(target=writer, daemon=True)]
    for t in threads:
        t.start()
    c.connect("127.0.0.1", args.port)
    # paho's loop in this thread (as the minimal forwarder), acknowledging what was committed
    # between its calls (paho's client is not safe to write from the committer's thread, which
    # wakes this loop through paho's socket pair instead)
    with until_sigterm():
        while True:
            while committed:
                c.ack(committed.popleft(), 1)
            if len(arrived) >= MAX_PENDING:  # as the gateway: stop reading the socket above a bound
                time.sleep(LINGER_S)  # (Mosquitto sends past its in-flight limit)
                continue
            c.loop(timeout=1.0)
    time.sleep(args.flush_ms / 1000 * 2)
    stop.set()
    for t in threads:
        t.join(5)
    sys.exit(0)


if __name__ == "__main__":
    main()
