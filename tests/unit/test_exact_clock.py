"""Exact clocks, with fake wall, monotonic and sync-probe clocks driving the real pipeline (real
privacy stage, real SQLite outbox, real file sink, real sink runner):

- a Pi boots at fake-hwclock's saved time (hours behind), NTP synchronises hours later: every
  row stamped provisionally meanwhile leaves re-stamped with its exact true time, the sink held
  them until then, and nothing stamped after the sync is touched;
- a run off a Pi (the kernel says unsynchronised, the host keeps good time) never stamps earlier
  than the system clock, even across a step of the host's clock;
- the gateway killed while rows wait for the clock, restarted in the same boot: the new run
  continues the provisional time and the earlier run's rows leave re-stamped exactly too;
- a clock that never synchronises: rows leave flagged once they were held `clock.max_hold`;
- aggregates inherit `clock_unsynced` from any provisional reading in their window;
- the clock's state is logged at start and on every change.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from gateway.config import parse_config
from gateway.model import Reading, iso
from gateway.ops.clock import CORRECTED, FLAG, RELEASE_FLOOR, GatewayClock
from gateway.pipeline import Pipeline

TRUE_START = RELEASE_FLOOR + 29 * 86400.0  # the real date when the Pi boots
SAVED = TRUE_START - 6 * 3600.0  # fake-hwclock saved this at the last shutdown, 6 h ago


class FakeClocks:
    """Wall, monotonic and the sync probe of a machine, moved by the test."""

    def __init__(self, wall: float, synced: bool | None) -> None:
        self.wall, self.mono, self.synced = wall, 500.0, synced
        self.true = 0.0  # the real time, for checking

    def advance(self, s: float) -> None:
        self.wall += s
        self.mono += s
        self.true += s

    def gateway_clock(self, state_file: Path | None = None, boot: str | None = None) -> GatewayClock:
        return GatewayClock(wall=lambda: self.wall, monotonic=lambda: self.mono,
                            probe=lambda: self.synced, probe_every=0.0, state_file=state_file,
                            boot_id=lambda: boot)  # fmt: skip


def config(tmp: Path, max_hold: str = "1h", extra: str = "") -> Any:
    return parse_config(f"""
gateway: {{id: clock-gw, borough: camden, location: {{lat: 51.5, lon: -0.14}}, data_dir: '{tmp}'}}
inputs: {{mqtt: {{}}}}
sensors:
  - {{id: pm, driver: pms5003, serial: {{port: /dev/null-no-such}}}}
  - {{id: gj, driver: generic_json, mqtt: {{topic: a/+}}, options: {{fields: [{{path: v, property: pm2_5, unit: ug/m3}}],
      aggregates: [{{property: pm2_5_mean, of: pm2_5, aggregation: mean}}]}}}}
privacy: {{window: 1m, min_count: 3}}
sinks: {{file: {{path: obs.jsonl}}}}
clock: {{max_hold: {max_hold}}}
{extra}""", "t.yaml", {})  # fmt: skip


def file_rows(tmp: Path) -> list[dict[str, Any]]:
    path = tmp / "obs.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


async def until(cond: Any, what: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def test_boot_at_fake_hwclock_time_then_sync_hours_later_restamps_every_provisional_row_exactly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.ops.clock")
    f = FakeClocks(wall=SAVED, synced=False)
    f.true = TRUE_START
    clock = f.gateway_clock()
    truth: dict[float, float] = {}  # pm2_5 value -> the true time it was read

    async def run() -> None:
        p = Pipeline(config(tmp_path), clock=clock, sinks=None)
        p.supervisor.restart_min = 0.1
        await p.start()
        # an aggregate's window on provisional time, then three hours of readings every 20 min
        await p.submit(Reading("gj", clock.now(), {"pm2_5": 4.5}))
        for i in range(10):
            t = clock.now()
            await p.submit(Reading("pm", t, {"pm2_5": float(i), "pm10": 100.0 + i, "pm1_0": 200.0 + i}))
            truth[float(i)] = f.true
            f.advance(1200.0)
        await until(lambda: p.stats.committed >= 31, "provisional rows committed")
        await asyncio.sleep(1.5)  # the sink runner has looked at them: held, not sent
        assert file_rows(tmp_path) == [] and p.runners[0].holding
        # NTP answers: the wall clock jumps to the true time
        f.wall, f.synced = f.true, True
        for i in range(10, 13):
            t = clock.now()
            await p.submit(Reading("pm", t, {"pm2_5": float(i), "pm10": 100.0 + i, "pm1_0": 200.0 + i}))
            truth[float(i)] = f.true
            f.advance(60.0)
        await until(lambda: len(file_rows(tmp_path)) >= 40, "every row delivered")
        assert not p.runners[0].holding
        await p.stop()

    asyncio.run(run())
    seen = {o["result"]: o for o in file_rows(tmp_path) if o["result"] in truth}  # the pm2_5 rows
    assert sorted(seen) == sorted(truth)
    for value, o in seen.items():
        assert o["phenomenonTime"] == iso(truth[value]), f"reading {value} is not at its true time"
        quality = o.get("parameters", {}).get("quality", "")
        if value < 10:
            assert CORRECTED in quality and FLAG not in quality
        else:
            assert quality == ""
    (mean,) = [o for o in file_rows(tmp_path) if o["result"] == 4.5 and "/" in o["phenomenonTime"]]
    start = SAVED // 60 * 60 + (TRUE_START - SAVED)  # the provisional window, moved as a whole
    assert mean["phenomenonTime"] == f"{iso(start)}/{iso(start + 60)}"
    assert CORRECTED in mean["parameters"]["quality"] and FLAG not in mean["parameters"]["quality"]
    log = " ".join(r.getMessage() for r in caplog.records)
    assert "clock starting provisional" in log and "following the unsynchronised system clock" in log
    assert "system clock synchronised" in log


def test_rows_of_a_run_killed_before_the_sync_are_restamped_exactly_by_the_next_run(tmp_path: Path) -> None:
    """Provisional rows committed, the process dies (no clean stop, nothing persisted at stop),
    systemd restarts it in the same boot, NTP answers later: every row of both runs leaves at
    its true time, flagged clock_corrected."""
    f = FakeClocks(wall=SAVED, synced=False)
    f.true = TRUE_START
    state = tmp_path / "clock.json"
    truth: dict[float, float] = {}

    async def one_run(values: range, sync_after: bool) -> None:
        clock = f.gateway_clock(state, boot="boot-1")
        p = Pipeline(config(tmp_path), clock=clock, sinks=None)
        await p.start()
        for i in values:
            await p.submit(Reading("pm", clock.now(), {"pm2_5": float(i), "pm10": 100.0 + i, "pm1_0": 200.0 + i}))
            truth[float(i)] = f.true
            f.advance(600.0)
        await until(lambda: p.stats.committed >= 3 * len(values), "provisional rows committed")
        await asyncio.sleep(1.2)
        assert p.runners[0].holding  # held, waiting for the clock
        if sync_after:
            f.wall, f.synced = f.true, True
            clock.now()
            await until(lambda: len(file_rows(tmp_path)) >= 3 * len(truth), "every row delivered")
        await p.stop()  # the first run's stop stands for the kill: the clock saves nothing at stop

    asyncio.run(one_run(range(0, 4), sync_after=False))
    assert file_rows(tmp_path) == []
    f.advance(20.0)  # restart delay
    asyncio.run(one_run(range(4, 8), sync_after=True))
    seen = {o["result"]: o for o in file_rows(tmp_path) if o["result"] in truth}
    assert sorted(seen) == sorted(truth)
    for value, o in seen.items():
        assert o["phenomenonTime"] == iso(truth[value]), f"reading {value} is not at its true time"
        assert CORRECTED in o["parameters"]["quality"] and FLAG not in o["parameters"]["quality"]


def test_a_backlog_held_for_the_clock_leaves_whole_after_the_sync_without_new_readings(tmp_path: Path) -> None:
    """Rows held for the clock are many batches; after the sync nothing new arrives (a quiet
    site): every batch still goes, not only the first (the runner must not take held rows for
    an empty outbox)."""
    f = FakeClocks(wall=SAVED, synced=False)
    f.true = TRUE_START
    clock = f.gateway_clock()

    async def run() -> None:
        p = Pipeline(config(tmp_path), clock=clock, sinks=None)
        await p.start()
        p.runners[0].sink.batch_size = 4  # 30 rows: eight batches
        for i in range(10):
            await p.submit(Reading("pm", clock.now(), {"pm2_5": float(i), "pm10": 100.0 + i, "pm1_0": 200.0 + i}))
            f.advance(60.0)
        await until(lambda: p.stats.committed >= 30, "provisional rows committed")
        await asyncio.sleep(1.5)
        assert file_rows(tmp_path) == [] and p.runners[0].holding
        f.wall, f.synced = f.true, True
        clock.now()  # the clock synchronises; no reading follows
        await until(lambda: len(file_rows(tmp_path)) >= 30, "the whole held backlog delivered", timeout=15)
        await p.stop()

    asyncio.run(run())
    assert all(CORRECTED in o["parameters"]["quality"] for o in file_rows(tmp_path))


def test_off_a_pi_the_clock_never_stamps_earlier_than_the_system_clock() -> None:
    """A container or PC: the kernel says unsynchronised, the host keeps good time and steps it
    once. Stamps follow the system clock (flagged) and never fall behind it."""
    f = FakeClocks(wall=TRUE_START, synced=False)
    clock = f.gateway_clock()
    stamps = []
    for step in range(200):
        t = clock.now()
        assert t >= f.wall, f"step {step}: stamped {t} while the system clock said {f.wall}"
        assert clock.quality_flags(t) == (FLAG,) and clock.provisional(t)
        stamps.append(t)
        f.advance(0.5)
        if step == 100:
            f.wall += 37.0  # the host's NTP steps the clock forward
    assert stamps == sorted(stamps)
    assert stamps[0] == TRUE_START and stamps[-1] == f.wall - 0.5


def test_rows_never_synchronised_leave_flagged_after_max_hold(tmp_path: Path) -> None:
    f = FakeClocks(wall=SAVED, synced=False)
    clock = f.gateway_clock()

    async def run() -> None:
        p = Pipeline(config(tmp_path, max_hold="10m"), clock=clock)
        await p.start()
        await p.submit(Reading("pm", clock.now(), {"pm2_5": 7.0, "pm10": 8.0, "pm1_0": 9.0}))
        await until(lambda: p.stats.committed >= 3, "committed")
        await asyncio.sleep(1.5)
        assert file_rows(tmp_path) == []
        f.advance(601.0)  # held longer than max_hold, still no sync
        await until(lambda: len(file_rows(tmp_path)) >= 3, "rows sent after max_hold")
        await p.stop()

    asyncio.run(run())
    for o in file_rows(tmp_path):
        assert FLAG in o["parameters"]["quality"] and o["phenomenonTime"] == iso(SAVED)


def test_an_aggregate_inherits_the_flag_of_any_provisional_reading_in_it(tmp_path: Path) -> None:
    f = FakeClocks(wall=SAVED, synced=False)
    clock = f.gateway_clock()
    p = Pipeline(config(tmp_path), clock=clock)
    window = 60.0
    start = (SAVED // window + 1) * window
    provisional = Reading("gj", start + 1, {"pm2_5": 5.0}, (FLAG,))
    synced = Reading("gj", start + 2, {"pm2_5": 6.0})
    p.privacy.process(provisional, start + 1)
    p.privacy.process(synced, start + 2)
    (mean,) = [o for o in p.privacy.due(start + window + 1) if o.property == "pm2_5_mean"]
    assert FLAG in str(mean.parameters["quality"])
    p.privacy.process(Reading("gj", start + window + 2, {"pm2_5": 6.0}), start + window + 2)
    (clean,) = [o for o in p.privacy.due(start + 2 * window + 1) if o.property == "pm2_5_mean"]
    assert FLAG not in str(clean.parameters.get("quality", ""))
