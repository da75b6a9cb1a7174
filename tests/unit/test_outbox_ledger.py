"""Honest drops: a stateful property test of the outbox's per-sink accounting.

Random interleavings of append, read-and-advance (each sink at its own pace), enforce_bounds
(both `when_full` policies, age and byte bounds), reclaim and reopen, on a real SQLite outbox.
A model kept here learns which rows the outbox removed (from the database itself) and decides,
independently, what each removal means: a row removed while a sink's cursor had not passed it is
dropped for that sink; one every sink had passed costs nothing. After every step, for each sink,
the outbox's ledger equals the model's and delivered + dropped + pending == committed.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from gateway.outbox import Outbox

SINKS = ("a", "b", "c")


class OutboxLedger(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="ledger-"))
        self.now = 10_000.0
        self.cursor = dict.fromkeys(SINKS, 0)
        self.committed = dict.fromkeys(SINKS, 0)
        self.delivered = dict.fromkeys(SINKS, 0)
        self.dropped = dict.fromkeys(SINKS, 0)
        self.ob: Outbox | None = None

    @initialize(when_full=st.sampled_from(["drop_oldest", "downsample"]),
                max_bytes=st.integers(400, 3000), max_age=st.floats(20, 200))  # fmt: skip
    def open(self, when_full: str, max_bytes: int, max_age: float) -> None:
        self.settings = {"max_bytes": max_bytes, "max_age_s": max_age, "when_full": when_full}
        self.ob = Outbox(self.dir / "o.sqlite", sinks=list(SINKS), **self.settings)  # type: ignore[arg-type]

    def stored(self) -> list[int]:
        assert self.ob is not None
        return [r[0] for r in self.ob.db.execute("SELECT seq FROM obs ORDER BY seq")]

    def removed(self, before: list[int]) -> list[int]:
        after = set(self.stored())
        return [s for s in before if s not in after]

    @rule(n=st.integers(1, 15), ds=st.integers(1, 4), size=st.integers(1, 60), dt=st.floats(0, 30))
    def append(self, n: int, ds: int, size: int, dt: float) -> None:
        assert self.ob is not None
        self.now += dt
        self.ob.append([(ds, self.now + i * 0.01, b"x" * size) for i in range(n)])
        for s in SINKS:
            self.committed[s] += n

    @rule(sink=st.sampled_from(SINKS), k=st.integers(1, 20))
    def deliver(self, sink: str, k: int) -> None:
        assert self.ob is not None
        rows = self.ob.read(sink, k)
        if not rows:
            return
        stored = set(self.stored())
        expect = sum(1 for s in stored if self.cursor[sink] < s <= rows[-1].seq)
        got = self.ob.advance(sink, rows[-1].seq)
        assert got == expect == len(rows)
        self.delivered[sink] += got
        self.cursor[sink] = rows[-1].seq

    @rule(dt=st.floats(0, 120))
    def enforce_bounds(self, dt: float) -> None:
        assert self.ob is not None
        self.now += dt
        before = self.stored()
        self.ob.enforce_bounds(self.now)
        for seq in self.removed(before):
            for s in SINKS:
                if seq > self.cursor[s]:
                    self.dropped[s] += 1

    @rule()
    def reclaim(self) -> None:
        assert self.ob is not None
        before = self.stored()
        while self.ob.reclaim():
            pass
        gone = self.removed(before)
        assert all(seq <= min(self.cursor.values()) for seq in gone), "reclaimed an undelivered row"

    @precondition(lambda self: self.ob is not None)
    @rule(crash=st.booleans())
    def reopen(self, crash: bool) -> None:
        assert self.ob is not None
        if crash:
            self.ob.db.close()  # no checkpoint: as after kill -9
        else:
            self.ob.close()
        self.ob = Outbox(self.dir / "o.sqlite", sinks=list(SINKS), **self.settings)  # type: ignore[arg-type]

    @invariant()
    def ledger_matches_the_model_and_adds_up(self) -> None:
        if self.ob is None:
            return
        stored = self.stored()
        for s in SINKS:
            pending = sum(1 for seq in stored if seq > self.cursor[s])
            want = {"committed": self.committed[s], "delivered": self.delivered[s],
                    "dropped": self.dropped[s], "pending": pending}  # fmt: skip
            got = self.ob.ledger(s)
            assert got == want, (s, got, want)
            assert got["delivered"] + got["dropped"] + got["pending"] == got["committed"]
        per_sink: dict[str, int] = {}
        for (sink, _, _), n in self.ob.drops().items():
            per_sink[sink] = per_sink.get(sink, 0) + n
        assert {s: per_sink.get(s, 0) for s in SINKS} == self.dropped

    def teardown(self) -> None:
        if self.ob is not None:
            self.ob.close()
        shutil.rmtree(self.dir, ignore_errors=True)


OutboxLedger.TestCase.settings = settings(max_examples=40, stateful_step_count=40, deadline=None)
test_outbox_ledger = OutboxLedger.TestCase


def test_a_row_every_sink_delivered_is_never_counted_as_dropped(tmp_path: Path) -> None:
    """The phantom drops of issue 14: the byte bound removes delivered rows first, free."""
    ob = Outbox(tmp_path / "o.sqlite", sinks=["a", "b"], max_bytes=40 * 100)
    ob.append([(1, 1000.0 + i, b"y" * 60) for i in range(100)])
    ob.advance("a", 100)
    ob.advance("b", 30)
    ob.enforce_bounds(2000.0)  # 60 of the 100 rows must go: 30 b had, 30 it had not
    assert ob.ledger("a") == {"committed": 100, "delivered": 100, "dropped": 0, "pending": 0}
    assert ob.ledger("b") == {"committed": 100, "delivered": 30, "dropped": 30, "pending": 40}
    assert ob.drops() == {("b", 1, "max_bytes"): 30}
