"""AsyncOutbox's tail: a sink that keeps up reads the rows of the last commits from memory, and
what it reads is exactly what the database would have given it at that moment, whatever
happened before (appends of any size, advances, reclaims, rows dropped at a bound, a tail
outgrown). And `write_then_advance`: the cursor moves only after the write returned.

The equivalence is checked against `Outbox.read` on the same database after every step of
random runs, so a tail that served a stale, missing or extra row fails here.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from gateway.outbox import TAIL_ROWS, AsyncOutbox, Outbox, Row
from gateway.sinks.base import RetryableError

SINKS = ["a", "b"]


def records(rng: random.Random, n: int) -> list[tuple[int, float, bytes]]:
    return [(rng.randrange(1, 4), 1000.0 + rng.random(), b"r%d" % rng.randrange(10**9)) for _ in range(n)]


@pytest.mark.parametrize("seed", range(12))
def test_what_a_sink_reads_is_what_the_database_holds(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)

    async def run() -> tuple[int, int]:
        ob = AsyncOutbox(Outbox(tmp_path / "o.sqlite", sinks=SINKS, max_bytes=40_000))
        queries = 0
        read_db = ob.sync.read

        def counted(*args: object) -> list[Row]:
            nonlocal queries
            queries += 1
            return read_db(*args)  # type: ignore[arg-type]

        ob.sync.read = counted  # type: ignore[method-assign]
        reads = 0
        try:
            for _ in range(300):
                step = rng.random()
                if step < 0.4:
                    big = rng.random() < 0.05
                    await ob.append(records(rng, rng.randrange(TAIL_ROWS, TAIL_ROWS + 300) if big else rng.randrange(1, 40)))
                elif step < 0.75:
                    sink = rng.choice(SINKS)
                    limit = rng.choice([1, 7, 50, 2000])
                    before = queries
                    got = await ob.read(sink, limit)
                    served = queries == before
                    expected = await ob.call(read_db, sink, limit)
                    assert got == expected
                    reads += served
                    if got and rng.random() < 0.8:
                        await ob.advance(sink, got[rng.randrange(len(got))].seq)
                elif step < 0.85:
                    await ob.call(ob.sync.reclaim)
                elif step < 0.92:
                    await ob.call(ob.sync.enforce_bounds, 2000.0)  # the byte bound drops the oldest
                else:
                    sink = rng.choice(SINKS)
                    await ob.advance(sink, ob.head)  # caught up
        finally:
            await ob.close()
        return reads, queries

    from_memory, _ = asyncio.run(run())
    assert from_memory > 0  # the tail served reads (no query), and each matched the database


def test_a_sink_that_keeps_up_reads_without_a_query_and_one_behind_reads_the_database(tmp_path: Path) -> None:
    async def run() -> None:
        ob = AsyncOutbox(Outbox(tmp_path / "o.sqlite", sinks=["a"]))
        calls: list[str] = []
        read_db = ob.sync.read
        ob.sync.read = lambda *a: calls.append("read") or read_db(*a)  # type: ignore[method-assign]
        try:
            await ob.append([(1, 1.0, b"one"), (1, 2.0, b"two")])
            assert [r.body for r in await ob.read("a", 10)] == [b"one", b"two"]
            await ob.advance("a", 2)
            assert await ob.read("a", 10) == []
            assert calls == []
            await ob.append([(1, float(i), b"x") for i in range(TAIL_ROWS + 5)])
            got = await ob.read("a", 10)  # its next rows are no longer in memory
            assert calls == ["read"] and [r.seq for r in got] == list(range(3, 13))
        finally:
            await ob.close()

    asyncio.run(run())


def test_the_cursor_moves_only_after_the_local_write_returned(tmp_path: Path) -> None:
    async def run() -> None:
        ob = AsyncOutbox(Outbox(tmp_path / "o.sqlite", sinks=["a"]))
        try:
            await ob.append([(1, 1.0, b"one"), (1, 2.0, b"two")])
            rows = await ob.read("a", 10)

            def failing(batch: list[Row]) -> None:
                raise RetryableError("disk gone")

            with pytest.raises(RetryableError):
                await ob.write_then_advance("a", rows, failing)
            assert ob.cursors["a"] == 0 and await ob.call(ob.sync.cursor, "a") == 0
            assert await ob.read("a", 10) == rows
            written: list[int] = []
            assert await ob.write_then_advance("a", rows, lambda b: written.extend(r.seq for r in b) or "ok") == "ok"
            assert written == [1, 2]
            assert ob.cursors["a"] == 2 and await ob.call(ob.sync.cursor, "a") == 2
        finally:
            await ob.close()

    asyncio.run(run())


def test_no_tail_is_kept_while_every_sink_is_further_behind_and_it_comes_back(tmp_path: Path) -> None:
    """Rows a tail could not serve (every sink further behind than TAIL_ROWS) are not kept in
    memory; once a sink is near the head again, the rows of the next commits are, and serve it."""

    async def run() -> None:
        ob = AsyncOutbox(Outbox(tmp_path / "o.sqlite", sinks=["a", "b"]))
        calls: list[str] = []
        read_db = ob.sync.read
        ob.sync.read = lambda *a: calls.append("read") or read_db(*a)  # type: ignore[method-assign]
        try:
            await ob.append([(1, float(i), b"x%d" % i) for i in range(TAIL_ROWS + 5)])
            await ob.append([(1, 0.0, b"far")])  # both sinks more than TAIL_ROWS behind
            assert ob._tail == []
            rows = await ob.read("a", TAIL_ROWS + 6)  # the database, and what it holds
            assert calls == ["read"] and rows[-1].body == b"far" and len(rows) == TAIL_ROWS + 6
            await ob.advance("a", ob.head)  # "a" caught up; "b" still far behind
            await ob.append([(1, 1.0, b"near")])
            assert [r.body for r in await ob.read("a", 10)] == [b"near"] and calls == ["read"]
            assert await ob.read("b", 3) == await ob.call(read_db, "b", 3)
        finally:
            await ob.close()

    asyncio.run(run())
