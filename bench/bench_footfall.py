"""Footfall method vs naive distinct-MAC counting on a simulated high street with ground truth,
and what each disclosure policy adds to the published figure, through the real privacy stage.

    .venv/bin/python bench/bench_footfall.py [--hours 12] [--seed 1] [--window 900] [--min-count 10]

The street: a sniffer on a shop front; passers-by on the near pavement (the field we want to
count) and on the far pavement across the road (not footfall here); shop staff behind glass and
residents upstairs present all day. People carry 1-3 devices; most devices randomise their MAC
every few minutes; each probes every 10-60 s. Signal: log-distance path loss with per-device
offset, wall losses and 4 dB noise. Ground truth per window: the near-pavement devices (and
people) that pass the sensor in that window. The second table runs the same probes through
`PrivacyStage` built from a config (wifi_probe_sniffer, min_count, each `privacy.disclosure`
policy) and scores what it publishes: windows withheld, the policy's own change to the figure,
and the error against ground truth. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.config import parse_config
from gateway.model import Reading
from gateway.plan import build_plan
from gateway.privacy.footfall import FootfallEstimator, FootfallOptions
from gateway.privacy.stage import PrivacyStage

P0_DBM = -45.0  # received power at 1 m
PATH_EXP = 2.8  # urban, body-shadowed
NOISE_DB = 4.0
RANGE_X = 60.0  # metres either side of the sensor we simulate


@dataclass
class Device:
    randomises: bool
    rotate_s: float  # MAC lifetime when randomising
    phase: float
    interval_s: float  # mean time between probe bursts
    tx_offset: float
    serial: int

    def mac(self, t: float) -> bytes:
        if not self.randomises:
            return f"g{self.serial}".encode()
        epoch = math.floor((t + self.phase) / self.rotate_s)
        return f"r{self.serial}.{epoch}".encode()


@dataclass(frozen=True)
class Probe:
    t: float
    mac: bytes
    rssi: float
    randomised: bool


def rssi_at(d: float, wall_db: float, dev: Device, rng: random.Random) -> float:
    loss = 10 * PATH_EXP * math.log10(max(d, 0.5))
    return max(-100.0, min(-20.0, P0_DBM - loss - wall_db + dev.tx_offset + rng.gauss(0, NOISE_DB)))


def new_device(rng: random.Random, serial: int) -> Device:
    return Device(randomises=rng.random() < 0.7, rotate_s=rng.uniform(120, 600),
                  phase=rng.uniform(0, 600), interval_s=rng.uniform(10, 60),
                  tx_offset=rng.gauss(0, 3), serial=serial)  # fmt: skip


def probe_times(rng: random.Random, dev: Device, start: float, end: float) -> list[float]:
    out: list[float] = []
    t = start + rng.uniform(0, dev.interval_s)
    while t < end:
        out.extend(t + 0.05 * k for k in range(rng.choice((1, 1, 2, 3))))
        t += rng.expovariate(1 / dev.interval_s)
    return out


def rate_per_min(hour: float) -> float:
    """Pedestrians per minute on one pavement: morning and lunchtime peaks, quiet evening."""
    return 2 + 10 * math.exp(-((hour - 8.5) ** 2) / 1.0) + 14 * math.exp(-((hour - 13) ** 2) / 2.0) \
        + 8 * math.exp(-((hour - 17.5) ** 2) / 1.5)  # fmt: skip


Truth = dict[int, int]


def simulate(hours: float, window_s: float, seed: int) -> tuple[list[Probe], Truth, Truth, Truth]:
    """Probes heard, and per window index: true passing devices, people (near pavement) and
    the passing devices heard at least once above the default threshold (detectable)."""
    rng = random.Random(seed)
    probes: list[Probe] = []
    devices_truth: dict[int, int] = {}
    people_truth: dict[int, int] = {}
    heard_truth: dict[int, int] = {}
    threshold = FootfallOptions().rssi_min_dbm
    serial = 0
    day0 = 7 * 3600.0  # start at 07:00
    end = day0 + hours * 3600

    def add(
        dev: Device, start: float, stop: float, where: Callable[[float], tuple[float, float]]
    ) -> bool:
        heard = False
        for t in probe_times(rng, dev, start, stop):
            d, wall = where(t)
            p = Probe(t, dev.mac(t), rssi_at(d, wall, dev, rng), dev.randomises)
            heard = heard or p.rssi >= threshold
            probes.append(p)
        return heard

    for pavement_y, counted in ((2.0, True), (15.0, False)):
        t = day0
        while t < end:
            t += rng.expovariate(rate_per_min((t / 3600) % 24) / 60)
            speed = rng.uniform(1.0, 1.6)
            y = pavement_y + rng.uniform(-1, 1.5)
            direction = rng.choice((-1.0, 1.0))
            start = t - RANGE_X / speed
            n_dev = rng.choices((1, 2, 3), (0.6, 0.3, 0.1))[0]
            if counted and t < end:
                w = math.floor(t / window_s)
                devices_truth[w] = devices_truth.get(w, 0) + n_dev
                people_truth[w] = people_truth.get(w, 0) + 1
            for _ in range(n_dev):
                serial += 1
                dev = new_device(rng, serial)

                def where(tt: float, s0: float = start, v: float = speed, yy: float = y,
                          dirn: float = direction) -> tuple[float, float]:  # fmt: skip
                    x = dirn * (-RANGE_X + v * (tt - s0))
                    return math.hypot(x, yy), 0.0

                if add(dev, start, start + 2 * RANGE_X / speed, where) and counted and t < end:
                    w = math.floor(t / window_s)
                    heard_truth[w] = heard_truth.get(w, 0) + 1
    # dwellers: shop staff behind glass, residents upstairs, all day
    for n, dist, wall in ((8, (3.0, 12.0), 6.0), (12, (5.0, 20.0), 12.0)):
        for _ in range(n):
            serial += 1
            dev = new_device(rng, serial)
            dev.interval_s = rng.uniform(30, 120)
            d = rng.uniform(*dist)
            add(dev, day0, end, lambda _t, d=d, wall=wall: (d, wall))
    probes.sort(key=lambda p: p.t)
    first, last = math.floor(day0 / window_s), math.floor(end / window_s) - 1
    for w in range(first, last + 1):
        devices_truth.setdefault(w, 0)
        people_truth.setdefault(w, 0)
        heard_truth.setdefault(w, 0)
    return probes, devices_truth, people_truth, heard_truth


Counter = Callable[[list[Probe], float], dict[int, int]]


def naive(probes: list[Probe], window_s: float) -> dict[int, int]:
    seen: dict[int, set[bytes]] = {}
    for p in probes:
        seen.setdefault(math.floor(p.t / window_s), set()).add(p.mac)
    return {w: len(s) for w, s in seen.items()}


def method(options: FootfallOptions) -> Counter:
    def run(probes: list[Probe], window_s: float) -> dict[int, int]:
        est = FootfallEstimator(options)
        out: dict[int, int] = {}
        current: int | None = None
        for p in probes:
            w = math.floor(p.t / window_s)
            if current is not None and w != current:
                out[current] = est.close((current + 1) * window_s).estimate
            current = w
            est.observe(p.mac, p.t, p.rssi, p.randomised)
        if current is not None:
            out[current] = est.close((current + 1) * window_s).estimate
        return out

    return run


def through_stage(probes: list[Probe], window_s: float, policy: str, min_count: int) -> dict[int, int | None]:
    """What the real privacy stage publishes per window index (None: withheld)."""
    cfg = parse_config(f"""\
gateway: {{id: bench, borough: camden, location: {{lat: 51.539, lon: -0.1426}}}}
inputs: {{mqtt: {{host: 127.0.0.1}}}}
privacy: {{window: {window_s:g}s, min_count: {min_count}, disclosure: {policy}, salt_rotation: 24h}}
sensors: [{{id: ff, driver: wifi_probe_sniffer, mqtt: {{topic: x}}}}]
""", "bench.yaml", {})
    rng = random.Random(7)
    stage = PrivacyStage(build_plan(cfg), key_factory=lambda: rng.randbytes(32), salt_rotation_s=86400,
                         started_at=0)  # fmt: skip
    out: dict[int, int | None] = {}

    def take(now: float) -> None:
        for o in stage.due(now):
            r = o.result
            out[math.floor(o.phenomenon_time / window_s)] = r if isinstance(r, int) else None

    next_due = 0.0
    for p in probes:
        if p.t >= next_due:
            take(p.t)
            next_due = p.t + 1.0
        stage.process(Reading("ff", p.t, {"mac": p.mac.decode(), "rssi": p.rssi,
                                          "randomised": p.randomised, "ch": 6}), p.t)  # fmt: skip
    take(probes[-1].t + 2 * window_s)
    return out


def policy_table(probes: list[Probe], devices: Truth, window_s: float, min_count: int) -> None:
    unprotected = method(FootfallOptions())(probes, window_s)
    ws = [w for w, n in devices.items() if n >= min_count]
    print(f"\nthrough the privacy stage, {len(devices)} windows of {window_s / 60:g} min, min_count "
          f"{min_count} ({len(ws)} windows with at least {min_count} passing devices, scored):")  # fmt: skip
    print(f"{'policy':<10} {'withheld':>8} {'|policy change|':>16} {'max':>4} {'|error| vs devices':>19} "
          f"{'MAPE':>7} {'unprotected |error|':>20}")  # fmt: skip
    for policy in ("suppress", "ten_five", "cell_key"):
        t0 = time.perf_counter()
        got = through_stage(probes, window_s, policy, min_count)
        withheld = [w for w in ws if got.get(w) is None]
        shown = [w for w in ws if got.get(w) is not None]
        change = [abs(got[w] - unprotected.get(w, 0)) for w in shown]  # type: ignore[operator]
        err = [abs(got[w] - devices[w]) for w in shown]  # type: ignore[operator]
        ape = [e / devices[w] * 100 for e, w in zip(err, shown, strict=True)]
        raw = [abs(unprotected.get(w, 0) - devices[w]) for w in shown]
        print(f"{policy:<10} {len(withheld):>8} {statistics.fmean(change):>16.2f} {max(change):>4.0f} "
              f"{statistics.fmean(err):>19.2f} {statistics.fmean(ape):>6.1f}% {statistics.fmean(raw):>20.2f}"
              f"   ({time.perf_counter() - t0:.0f} s)")  # fmt: skip


def score(est: dict[int, int], truth: dict[int, int]) -> tuple[float, float, float]:
    """(mean absolute % error, mean signed % error = bias, ratio of totals) over windows with
    a true count of at least 10 (small windows would be suppressed anyway)."""
    ws = [w for w, n in truth.items() if n >= 10]
    ape = [abs(est.get(w, 0) - truth[w]) / truth[w] * 100 for w in ws]
    spe = [(est.get(w, 0) - truth[w]) / truth[w] * 100 for w in ws]
    total = sum(est.get(w, 0) for w in ws) / max(1, sum(truth[w] for w in ws))
    return statistics.fmean(ape), statistics.fmean(spe), total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--hours", type=float, default=12)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--window", type=float, default=900, help="seconds (default 900)")
    ap.add_argument("--min-count", type=int, default=10)
    args = ap.parse_args()
    probes, devices, people, heard = simulate(args.hours, args.window, args.seed)
    d = FootfallOptions()
    print(f"simulated {args.hours:g} h, {len(probes)} probes, {sum(devices.values())} passing "
          f"devices ({sum(heard.values())} of them heard above {d.rssi_min_dbm:g} dBm), "
          f"{sum(people.values())} people, {len(devices)} windows of {args.window:g} s")  # fmt: skip
    rows: list[tuple[str, Counter]] = [
        ("naive distinct MACs", naive),
        ("rssi threshold only", method(FootfallOptions(d.rssi_min_dbm, 1e9, 1.0))),
        ("rssi + dwell removal", method(FootfallOptions(d.rssi_min_dbm, d.dwell_max_s, 1.0))),
        (f"method (defaults, factor {d.randomised_factor:g})", method(d)),
    ]
    rows += [(f"method, randomised_factor {f:g}", method(FootfallOptions(randomised_factor=f)))
             for f in (0.5, 0.7, 0.9)]  # fmt: skip
    print(f"{'estimator':<36} {'vs devices: MAPE':>16} {'bias':>8} {'total':>6}   "
          f"{'vs heard: MAPE':>14} {'bias':>8}   {'vs people: MAPE':>15} {'bias':>8}")  # fmt: skip
    for name, fn in rows:
        est = fn(probes, args.window)
        m, b, t = score(est, devices)
        hm, hb, _ = score(est, heard)
        pm, pb, _ = score(est, people)
        print(f"{name:<36} {m:>15.1f}% {b:>+7.1f}% {t:>6.2f}   {hm:>13.1f}% {hb:>+7.1f}%"
              f"   {pm:>14.1f}% {pb:>+7.1f}%")  # fmt: skip
    policy_table(probes, devices, args.window, args.min_count)


if __name__ == "__main__":
    main()
