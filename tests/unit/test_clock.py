"""GatewayClock with fake wall, monotonic and sync probe: no 1970, no future, sync switches over."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.model import Observation, Reading
from gateway.ops.clock import FLAG, RELEASE_FLOOR, GatewayClock
from gateway.ops.metrics import Registry

REAL_NOW = RELEASE_FLOOR + 40 * 86400.0  # the true time in these scenarios
EPOCH_1971 = 365 * 86400.0


class Fake:
    def __init__(self, wall: float, synced: bool | None = False) -> None:
        self.wall = wall
        self.mono = 100.0
        self.synced = synced

    def advance(self, s: float) -> None:
        self.wall += s
        self.mono += s

    def clock(self, **kw: object) -> GatewayClock:
        return GatewayClock(
            wall=lambda: self.wall, monotonic=lambda: self.mono, probe=lambda: self.synced,
            probe_every=0.0, **kw,  # type: ignore[arg-type]
        )  # fmt: skip


def test_a_1970_wall_clock_never_produces_a_1970_time() -> None:
    f = Fake(wall=12.0)  # a Pi just booted without a battery clock
    c = f.clock()
    for _ in range(100):
        t = c.now()
        assert t >= RELEASE_FLOOR > EPOCH_1971
        assert c.quality_flags(t) == (FLAG,)
        f.advance(7.0)
    assert not c.synchronised


def test_an_unsynchronised_plausible_wall_clock_is_preferred_but_not_trusted() -> None:
    """No sync evidence, but the system clock is later than the lower bound: stamp with it
    (a month in the past is worse), still provisional and flagged."""
    f = Fake(wall=REAL_NOW, synced=False)  # fake-hwclock restored something that looks fine
    c = f.clock()
    t = c.now()
    assert t == REAL_NOW and c.mode == "provisional" and c.quality_flags(t) == (FLAG,)


def test_provisional_time_is_last_trusted_plus_monotonic_elapsed(tmp_path: Path) -> None:
    state = tmp_path / "clock.json"
    state.write_text(json.dumps({"last_trusted": REAL_NOW - 3600}))
    f = Fake(wall=0.0)
    c = f.clock(state_file=state)
    assert c.now() == REAL_NOW - 3600
    f.advance(90.0)
    assert c.now() == REAL_NOW - 3600 + 90.0


def test_provisional_times_never_run_ahead_of_the_true_time(tmp_path: Path) -> None:
    state = tmp_path / "clock.json"
    state.write_text(json.dumps({"last_trusted": REAL_NOW - 86400}))  # powered off for a day
    f = Fake(wall=0.0)
    true_time = REAL_NOW
    c = f.clock(state_file=state)
    for _ in range(50):
        assert c.now() <= true_time
        f.advance(60.0)
        true_time += 60.0


def test_sync_arrival_switches_to_wall_time_and_stops_flagging() -> None:
    f = Fake(wall=5.0)
    c = f.clock()
    provisional = c.now()
    f.advance(30.0)
    f.wall, f.synced = REAL_NOW, True  # NTP answered and stepped the clock
    t = c.now()
    assert t == REAL_NOW
    assert c.synchronised
    assert c.correction == REAL_NOW - (provisional + 30.0)
    assert c.quality_flags(t) == ()
    assert c.quality_flags(provisional) == (FLAG,)  # earlier stamps stay flagged
    f.advance(1.5)
    assert c.now() == REAL_NOW + 1.5


def test_a_clock_that_jumps_into_the_future_is_refused_and_time_held() -> None:
    f = Fake(wall=REAL_NOW, synced=True)
    c = f.clock()
    assert c.now() == REAL_NOW
    f.advance(10.0)
    f.wall += 5 * 365 * 86400.0  # someone ran `date -s 2031-…`
    t = c.now()
    assert t == REAL_NOW + 10.0  # continued on the monotonic clock
    assert c.mode == "held" and c.refused_steps == 1
    assert c.quality_flags(t) == (FLAG,)
    f.advance(10.0)
    assert c.now() == REAL_NOW + 20.0
    f.wall = REAL_NOW + 20.5  # NTP corrects it: agreement again
    assert c.now() == REAL_NOW + 20.5
    assert c.synchronised and c.refused_steps == 1


def test_a_far_future_wall_clock_is_refused_even_when_the_probe_says_synchronised() -> None:
    f = Fake(wall=4_102_444_800.0 * 2, synced=True)  # year ~2200: beyond the ceiling
    c = f.clock()
    t = c.now()
    assert t == RELEASE_FLOOR and not c.synchronised


def test_unknown_probe_trusts_only_a_wall_clock_past_what_we_know(tmp_path: Path) -> None:
    f = Fake(wall=12.0, synced=None)
    c = f.clock()
    assert c.now() == RELEASE_FLOOR and not c.synchronised
    f.wall = REAL_NOW
    assert c.now() == REAL_NOW and c.synchronised


def test_last_trusted_time_is_persisted_and_used_after_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "clock.json"
    f = Fake(wall=REAL_NOW, synced=True)
    c = f.clock(state_file=state)
    c.now()  # the first sync is saved at once
    assert json.loads(state.read_text())["last_trusted"] == REAL_NOW
    assert not c.persist()  # rate limited
    f.advance(3600.0)
    c.now()
    assert c.persist()
    assert json.loads(state.read_text())["last_trusted"] == REAL_NOW + 3600.0
    # power cut, reboot to 1970, no network yet
    g = Fake(wall=3.0, synced=False)
    c2 = g.clock(state_file=state)
    assert c2.now() == REAL_NOW + 3600.0


TRUE_OFFSET = REAL_NOW - 100.0  # the true time of monotonic instant m is m + TRUE_OFFSET


def provisional_run(f: Fake, state: Path, boot: str) -> tuple[GatewayClock, dict[float, float]]:
    """A Pi booted to 1970 without network: three stamps 10 s apart, and each stamp's true time."""
    c = f.clock(state_file=state, boot_id=lambda: boot)
    truth = {}
    for _ in range(3):
        truth[c.now()] = f.mono + TRUE_OFFSET
        f.advance(10.0)
    assert not c.synchronised
    return c, truth


def test_a_restart_in_the_same_boot_continues_provisional_time_and_corrects_the_earlier_runs_stamps(
    tmp_path: Path,
) -> None:
    state = tmp_path / "clock.json"
    f = Fake(wall=3.0, synced=False)
    _, truth = provisional_run(f, state, "boot-A")
    f.advance(5.0)  # the process is killed (no clean stop) and restarts 5 s later, same boot
    c2 = f.clock(state_file=state, boot_id=lambda: "boot-A")
    t, t_mono = c2.now(), f.mono
    assert t == max(truth) + 15.0  # the same monotonic line, not the lower bound again
    assert all(c2.provisional(x) for x in truth) and c2.quality_flags(t) == (FLAG,)
    f.wall, f.synced = f.mono + TRUE_OFFSET, True  # NTP answers
    assert c2.now() == f.mono + TRUE_OFFSET and c2.synchronised
    for stamp, true in truth.items():
        assert c2.restamp(stamp) == pytest.approx(true, abs=1e-6)
    assert c2.restamp(t) == pytest.approx(t_mono + TRUE_OFFSET, abs=1e-6)  # the new run's own stamp too


def test_a_restart_after_the_sync_still_corrects_the_rows_the_earlier_run_stamped(tmp_path: Path) -> None:
    state = tmp_path / "clock.json"
    f = Fake(wall=3.0, synced=False)
    c1, truth = provisional_run(f, state, "boot-A")
    f.wall, f.synced = f.mono + TRUE_OFFSET, True
    c1.now()  # synchronised: saved at once; the sinks had not sent the rows yet when it died
    f.advance(5.0)
    c2 = f.clock(state_file=state, boot_id=lambda: "boot-A")
    assert not any(c2.provisional(x) for x in truth)
    for stamp, true in truth.items():
        assert c2.restamp(stamp) == pytest.approx(true, abs=1e-6)


def test_after_a_reboot_the_earlier_runs_stamps_cannot_be_corrected(tmp_path: Path) -> None:
    """A new boot restarts the monotonic clock: the old line means nothing, and is not used."""
    state = tmp_path / "clock.json"
    f = Fake(wall=3.0, synced=False)
    _, truth = provisional_run(f, state, "boot-A")
    f.mono = 7.0  # power cut and reboot
    c2 = f.clock(state_file=state, boot_id=lambda: "boot-B")
    assert c2.now() == RELEASE_FLOOR
    f.wall, f.synced = f.mono + TRUE_OFFSET, True
    c2.now()
    assert all(c2.restamp(x) is None for x in truth if x > RELEASE_FLOOR + 1.0)
    g = Fake(wall=3.0, synced=False)  # and no boot id at all (not Linux): nothing is resumed
    g.mono = f.mono + 30.0
    c3 = g.clock(state_file=state, boot_id=lambda: None)
    assert not c3.provisional(max(truth))


def test_a_corrupt_state_file_is_ignored(tmp_path: Path) -> None:
    state = tmp_path / "clock.json"
    state.write_text("{not json")
    c = Fake(wall=3.0).clock(state_file=state)
    assert c.now() == RELEASE_FLOOR


def test_clock_metrics() -> None:
    f = Fake(wall=10.0)
    c = f.clock()
    reg = Registry()
    c.bind(reg)
    text = reg.render()
    assert "gateway_clock_synchronised 0" in text
    assert "# TYPE gateway_clock_refused_steps_total counter" in text
    f.wall, f.synced = REAL_NOW, True
    c.now()
    text = reg.render()
    assert "gateway_clock_synchronised 1" in text
    assert "gateway_clock_offset_seconds 0" in text


def test_pipeline_flags_observations_stamped_before_sync(tmp_path: Path) -> None:
    import asyncio

    from gateway.config import parse_config
    from gateway.pipeline import Pipeline

    cfg = parse_config(
        f"""
gateway: {{id: t-1, borough: camden, location: {{lat: 51.5, lon: -0.14}}, data_dir: '{tmp_path}'}}
sensors:
  - {{id: pm-north, driver: pms5003, serial: {{port: /nonexistent}}}}
sinks: {{file: {{path: obs.jsonl}}}}
ops: {{http: null}}
""",
        "t.yaml",
        {},
    )
    f = Fake(wall=1.0)
    clock = f.clock()
    committed: list[Observation] = []

    async def run() -> None:
        p = Pipeline(cfg, clock=clock, sinks=[])

        def capture(obs: list[Observation]) -> list[object]:
            committed.extend(obs)
            return []

        p.committer.stage = capture  # type: ignore[method-assign,assignment]
        values = {"pm2_5": 12, "pm10": 20, "pm1_0": 5}
        await p.committer.commit_items([(Reading("pm-north", clock.now(), values), None)])
        f.wall, f.synced = REAL_NOW, True
        await p.committer.commit_items([(Reading("pm-north", clock.now(), values), None)])

    asyncio.run(run())
    before = [o for o in committed if o.phenomenon_time < REAL_NOW]
    after = [o for o in committed if o.phenomenon_time >= REAL_NOW]
    assert before and after
    assert all(FLAG in str(o.parameters.get("quality", "")) for o in before)
    assert all(FLAG not in str(o.parameters.get("quality", "")) for o in after)
    assert all(o.phenomenon_time >= RELEASE_FLOOR for o in committed)
