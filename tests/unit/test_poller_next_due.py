"""Timed pollers (`firmware_bridge.driver.TimedPoller`): the serial source sleeps until
`next_due(now)` instead of asking `due` on a fixed tick, so `next_due` must never be later than
the first moment `due` has a command, and at `next_due` (when finite) `due` must have one.

Every option combination that changes a poller's timing, driven through random time steps from
`on_open`; `due` is probed on copies so the poller's own state moves only as the source moves it.
(The SPS30's poller is timed too; it reads again soon after an empty reply, which
test_driver_sps30.py tests against its free-running simulated device.)
"""

from __future__ import annotations

import copy
import math
import random

import pytest

from firmware_bridge.driver import PacedPoller, TimedPoller
from firmware_bridge.drivers import pms5003, sds011, sps30

DUTY = {"work_s": 7.0, "sleep_s": 13.0}
CASES = [
    ("pms5003 active", pms5003.Poller, pms5003.Options()),
    ("pms5003 passive", pms5003.Poller, pms5003.Options(mode="passive", interval_s=2.0)),
    ("pms5003 active duty", pms5003.Poller, pms5003.Options(duty_cycle=DUTY)),
    ("pms5003 passive duty", pms5003.Poller, pms5003.Options(mode="passive", interval_s=1.5, duty_cycle=DUTY)),
    ("sds011 active", sds011.Poller, sds011.Options()),
    ("sds011 query", sds011.Poller, sds011.Options(mode="query", interval_s=1.0, warmup_s=3.0)),
    ("sds011 active duty", sds011.Poller, sds011.Options(duty_cycle=DUTY)),
    ("sds011 query duty", sds011.Poller, sds011.Options(mode="query", interval_s=2.0, warmup_s=2.0, duty_cycle=DUTY)),
    ("sps30", sps30.Poller, sps30.Options()),
    ("sps30 slow", sps30.Poller, sps30.Options(interval_s=7.5)),
]  # fmt: skip


@pytest.mark.parametrize(("name", "cls", "options"), CASES, ids=[c[0] for c in CASES])
def test_next_due_is_when_due_first_has_a_command(name: str, cls: type, options: object) -> None:
    poller = cls(options)
    assert isinstance(poller, TimedPoller) and not isinstance(poller, PacedPoller)
    rng = random.Random(name)
    now = 1000.0
    poller.on_open(now)
    sent = 0
    for _ in range(400):
        nd = poller.next_due(now)
        assert nd == math.inf or nd >= 0
        for t in sorted(rng.uniform(now, min(nd, now + 30.0)) for _ in range(5)):
            if t < nd:
                assert copy.deepcopy(poller).due(t) == [], f"{name}: due at {t - now:.3f} s, before next_due"
        if nd != math.inf:
            assert copy.deepcopy(poller).due(max(nd, now)) != [], f"{name}: nothing due at next_due"
        # the source wakes at next_due, or earlier for data, and always asks `due`
        step = rng.choice([rng.uniform(0, 0.3), rng.uniform(0, 3.0), max(0.0, nd - now) if nd != math.inf else 5.0])
        now += step
        sent += len(poller.due(now))
    polls = getattr(options, "mode", "query") in ("passive", "query")
    cycles = getattr(options, "duty_cycle", None) is not None
    assert (sent > 0) == (polls or cycles), f"{name}: {sent} commands"
