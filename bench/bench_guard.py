"""Egress guard figures: CPU per 1000 observations for the checks every record and every sink
batch goes through, with and without the plan's vocabularies (default deny for free text).

Run from the repo root: `python bench/bench_guard.py`. Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.model import Observation  # noqa: E402
from gateway.outbox import Row  # noqa: E402
from gateway.privacy.guard import EgressGuard  # noqa: E402
from gateway.sinks.influxdb import InfluxSink, Settings  # noqa: E402

N = 1000
NUMERIC_DS, TEXT_DS = 7240822753567310, 7240822753567311
WORDS = frozenset({"AVAILABLE", "CHARGING", "OUTOFORDER", "INOPERATIVE", "RESERVED", "UNKNOWN"})
VOCAB = {NUMERIC_DS: ("pm-1", frozenset[str]()), TEXT_DS: ("ev-1", WORDS)}


def observations(text_share: float) -> list[Observation]:
    out = []
    for i in range(N):
        t = 1_790_000_000.0 + i
        if i < N * text_share:
            out.append(Observation(TEXT_DS, "ev-1", "connector_status", t, t, sorted(WORDS)[i % len(WORDS)]))
        else:
            out.append(Observation(NUMERIC_DS, "pm-1", "pm2_5", t, t + 0.02, float(i % 500) / 10))
    return out


def per_1000(fn: Callable[[], object], repeat: int = 7) -> float:
    """Best of `repeat` runs, in ms of CPU per 1000 observations."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best * 1000


def main() -> None:
    print(f"machine: {os.cpu_count()} CPUs; python {sys.version.split()[0]}; {N} observations per run, best of 7")
    allowed = frozenset(VOCAB)
    for share in (0.0, 0.5):
        obs = observations(share)
        records = [o.to_record() for o in obs]
        payloads = [json.dumps(o.sensorthings(), separators=(",", ":")).encode() for o in obs]
        rows = [Row(i, o.datastream_id, o.phenomenon_time, r) for i, (o, r) in enumerate(zip(obs, records, strict=True))]
        label = f"{share:.0%} text results"
        for name, guard in (("shapes only", EgressGuard(allowed)), ("with vocabularies", EgressGuard(allowed, VOCAB))):
            rec = per_1000(lambda g=guard, rs=records: [g.check_record(r) for r in rs])  # type: ignore[misc]
            js = per_1000(lambda g=guard, ps=payloads: [g.check_observation_json(p) for p in ps])  # type: ignore[misc]
            sink = InfluxSink(Settings(url="http://127.0.0.1:1", org="o", bucket="b"), site_tags={"gateway": "g"}, guard=guard)
            lp = per_1000(lambda s=sink, rs=rows: s.encode(rs))  # type: ignore[misc]
            print(f"{label:>16}, {name:<17}: outbox record {rec:5.1f} ms, SensorThings JSON {js:5.1f} ms, "
                  f"line protocol (encode + guard) {lp:5.1f} ms")


if __name__ == "__main__":
    main()
