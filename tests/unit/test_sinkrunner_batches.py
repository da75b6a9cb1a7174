"""A sink runner holds one batch at a time (issue 19, peak RSS flat out): the rows it delivered
are freed before it lingers and reads the next batch, so a backlog drained in batches of 5,000
rows never has two of them in memory. Real outbox (SQLite), real runner; the sink keeps only
the seqs it was given."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from pathlib import Path

from gateway.committer import Stats
from gateway.ops.metrics import Registry
from gateway.outbox import AsyncOutbox, Outbox, Row
from gateway.sinkrunner import SinkRunner
from gateway.sinks.base import WriteResult


class Batch(list[Row]):
    """A list of rows a weak reference can watch."""


class WatchedOutbox(AsyncOutbox):
    """The real outbox; each batch it hands out is watched, and at each read it notes how many
    batches handed out before are still alive."""

    def __init__(self, outbox: Outbox) -> None:
        super().__init__(outbox)
        self.handed: list[weakref.ref[Batch]] = []
        self.alive_at_read: list[int] = []

    async def read(self, sink: str, limit: int, after: int | None = None) -> list[Row]:
        self.alive_at_read.append(sum(r() is not None for r in self.handed))
        rows = Batch(await super().read(sink, limit, after))
        if rows:
            self.handed.append(weakref.ref(rows))
        return rows


class Collecting:
    name = "collect"
    batch_size = 100

    def __init__(self) -> None:
        self.seqs: list[int] = []

    async def start(self) -> None:
        pass

    async def write(self, rows: Sequence[Row]) -> WriteResult:
        self.seqs.extend(r.seq for r in rows)
        return WriteResult(len(rows))

    async def close(self) -> None:
        pass


def test_a_delivered_batch_is_freed_before_the_next_read(tmp_path: Path) -> None:
    async def main() -> tuple[WatchedOutbox, Collecting]:
        outbox = WatchedOutbox(Outbox(tmp_path / "outbox.sqlite", sinks=["collect"]))
        await outbox.append([(1, 1.8e9 + i, b'{"r":%d}' % i) for i in range(1000)])
        sink = Collecting()
        stopping = asyncio.Event()
        runner = SinkRunner(sink, outbox, Stats(), Registry(), stopping)  # type: ignore[arg-type]
        task = asyncio.create_task(runner.run())
        for _ in range(500):
            if len(sink.seqs) == 1000:
                break
            await asyncio.sleep(0.01)
        stopping.set()
        runner.wake.set()
        await task
        await outbox.close()
        return outbox, sink

    outbox, sink = asyncio.run(main())
    assert sink.seqs == list(range(1, 1001))  # every row once, in order
    assert len(outbox.handed) == 10
    assert outbox.alive_at_read[1:] and max(outbox.alive_at_read) == 0
