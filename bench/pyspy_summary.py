"""Where the gateway's CPU goes, from py-spy's collapsed stacks (`py-spy record -f raw`).

A sample whose leaf frame is a thread hand-off (executor submit, the event loop's self-pipe)
is charged to that; any other goes to the first category (in the order below) that any frame of its stack falls
in, so nested work is charged to the most specific owner (the guard's regex scan inside the
committer is "egress guard", not "committer"). Cross-cutting totals (every sample with a JSON,
sqlite-outbox or paho frame anywhere) and the hottest lines (leaf frames) follow.

py-spy (non-blocking) also counts some samples of threads that are waiting: a thread caught in
epoll, in a thread pool's queue get, or waiting for an HTTP response. Those leaf frames are set
apart as "waiting" and the shares are of the remaining samples, which match the CPU time
/proc reports for the process. With `--us N` (the bench's measured CPU µs per reading) each
category is also given in µs per reading.

Usage: python bench/pyspy_summary.py [--us N] PROFILE.txt [more.txt ...]
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

# (category, substrings of a frame "function (path:line)"); first match wins
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("egress guard (regex scans)", ("privacy/guard.py",)),
    ("outbox: append (INSERT+COMMIT, fsync)", ("append (gateway/outbox.py",)),
    ("outbox: advance (cursor UPDATE, fsync)", ("advance (gateway/outbox.py",)),
    ("outbox: read, reclaim, other", ("gateway/outbox.py",)),
    ("influx sink: HTTP (http.client, gzip)", ("_post_sync (gateway/sinks/influxdb.py", "influxdb_client/", "urllib3/", "http/client.py", "gzip.py")),
    ("influx sink: encode lines", ("sinks/influxdb.py", "standards/lineprotocol.py")),
    ("file sink", ("gateway/sinks/file.py",)),
    ("privacy stage", ("gateway/privacy/",)),
    ("Observation / record (model.py)", ("gateway/model.py",)),
    ("decoder (firmware_bridge)", ("firmware_bridge/",)),
    ("MQTT source (routing, stamping, submit)", ("gateway/sources/",)),
    ("paho / aiomqtt / mqttconn (socket, packets, acks)", ("paho/", "aiomqtt/", "gateway/mqttconn.py")),
    ("committer (gather, loop)", ("gateway/committer.py",)),
    ("sink runner", ("gateway/sinkrunner.py",)),
    ("clock probe (ctypes.util.find_library forks ldconfig)", ("ctypes/util.py",)),
    ("metrics / logs / ops / clock", ("gateway/ops/",)),
    ("asyncio / threads / executor plumbing", ("asyncio/", "threading.py", "concurrent/futures/", "queue.py")),
]
WAITING = (
    "select (selectors.py", "_worker (concurrent/futures/thread.py:81)", "wait (threading.py",
    "do_poll (urllib3/util/wait.py", "readinto (socket.py",
)
# leaf frames that are the cost of handing work to a thread and back (executor submit wakes a
# worker; its result wakes the event loop through the self-pipe)
HANDOFF = (
    "_write_to_self (asyncio/selector_events.py", "_read_from_self (asyncio/selector_events.py",
    "ThreadPoolExecutor.submit (concurrent/futures/thread.py",
)
CROSS: list[tuple[str, tuple[str, ...]]] = [
    ("json (loads/dumps anywhere)", ("json/",)),
    ("sqlite (any outbox call)", ("gateway/outbox.py",)),
    ("paho/aiomqtt anywhere", ("paho/", "aiomqtt/")),
    ("influxdb-client anywhere", ("influxdb_client/",)),
]


def load(paths: list[str]) -> list[tuple[list[str], int]]:
    stacks = []
    for p in paths:
        for line in Path(p).read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            if stack and n.isdigit():
                stacks.append((stack.split(";"), int(n)))
    return stacks


def main() -> None:
    argv = sys.argv[1:]
    us = None
    if argv[:1] == ["--us"]:
        us, argv = float(argv[1]), argv[2:]
    every = load(argv)
    stacks = [(f, n) for f, n in every if not any(w in f[-1] for w in WAITING)]
    waiting = sum(n for _, n in every) - sum(n for _, n in stacks)
    total = sum(n for _, n in stacks)
    if not total:
        print("no samples")
        return
    cats: Counter[str] = Counter()
    for frames, n in stacks:
        joined = ";".join(frames)
        if any(h in frames[-1] for h in HANDOFF):
            cats["thread hand-offs (executor submit, loop wake-up)"] += n
            continue
        cats[next((c for c, keys in CATEGORIES if any(k in joined for k in keys)), "other")] += n
    print(f"{total} samples on CPU (at 100 Hz: {total / 100:.1f} CPU-seconds), {waiting} more waiting (left out)")
    print(f"{'category':<52} {'share':>6}" + ("  µs/reading" if us else ""))
    for c, n in cats.most_common():
        print(f"{c:<52} {n / total * 100:5.1f} %" + (f"  {us * n / total:8.0f}" if us else ""))
    print()
    for c, keys in CROSS:
        n = sum(n for frames, n in stacks if any(k in f for f in frames for k in keys))
        print(f"{c:<52} {n / total * 100:5.1f} % (inclusive)" + (f"  {us * n / total:8.0f}" if us else ""))
    print()
    leaves: Counter[str] = Counter()
    for frames, n in stacks:
        leaves[frames[-1]] += n
    print("hottest leaf frames (self time):")
    for f, n in leaves.most_common(25):
        print(f"  {n / total * 100:5.1f} %  {f}")


if __name__ == "__main__":
    main()
