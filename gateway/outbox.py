"""Durable store-and-forward: SQLite in WAL mode, group commits, one cursor per sink.

Durability: `PRAGMA synchronous=FULL` in WAL mode fsyncs the WAL at every commit, so a batch
that `append` returned for survives power loss; batching many observations per commit (group
commit) pays the fsync once per batch. A cursor advance is a transaction of its own without an
fsync (`synchronous=NORMAL` for it alone): it is made durable by the next append's fsync (or
checkpoint), and SQLite's WAL recovers a prefix of the commits, so a power cut can only move a
cursor back to an earlier position (its rows are sent again: writes are idempotent), never past
rows not delivered, and its ledger moves back with it. Bounds: `max_bytes` (payload bytes) and `max_age`; when
either is exceeded the oldest rows go first. Delivered rows (below every sink's cursor) are
deleted in small chunks to avoid long pauses.

Honest accounting, per sink, in the same transactions as the changes it counts (so it survives
a crash or restart): a row removed at a bound counts as *dropped* only for the sinks that had
not delivered it (`sink_drops`, per sink, Datastream and reason); a row a sink's cursor moves
over while it is still stored counts as *delivered* for that sink (`ledger`). For every sink,
delivered + dropped + pending == committed (rows appended since the sink's cursor was made).

This class is synchronous and not thread-safe: `AsyncOutbox` runs it on one worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

log = logging.getLogger("gateway.outbox")

ROW_OVERHEAD = 40  # approximate bytes per row beyond the payload (rowid, ds, t, b-tree)
RECLAIM_CHUNK = 5000
CACHE_KIB = 128  # SQLite page cache per connection (_connect)

SCHEMA = """
CREATE TABLE IF NOT EXISTS obs(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ds INTEGER NOT NULL,
    t REAL NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS cursor(sink TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sink_drops(
    sink TEXT NOT NULL, ds INTEGER NOT NULL, reason TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY(sink, ds, reason)
);
CREATE TABLE IF NOT EXISTS ledger(
    sink TEXT PRIMARY KEY, base INTEGER NOT NULL, delivered INTEGER NOT NULL
);
"""


def _rows_from(db: sqlite3.Connection, seq: int, limit: int) -> list[tuple[int, int, float, bytes]]:
    return db.execute("SELECT seq, ds, t, body FROM obs WHERE seq >= ? ORDER BY seq LIMIT ?", (seq, limit)).fetchall()


def _readable_from(db: sqlite3.Connection, seq: int) -> bool:
    try:
        _rows_from(db, seq, 1)
    except sqlite3.DatabaseError:
        return False
    return True


def salvage(db: sqlite3.Connection, hi: int | None) -> Iterator[list[tuple[int, int, float, bytes]]]:
    """The rows of a damaged outbox that SQLite can still read, in seq order, in batches; an
    empty batch for each unreadable range skipped.

    A read that fails is retried in smaller bites (1,000, 100, 10, 1 rows) so the rows before
    the damage are kept. When the very next row cannot be read, the seqs after it are tried one
    by one (a read from a seq that a damaged leaf would hold fails, from the first seq past the
    leaf it works; a failing read costs microseconds), so a damaged page costs the rows on it and
    not its neighbours' (`test_salvage_keeps_every_row_sqlite_can_still_read`). Past
    SALVAGE_SCAN unreadable seqs the steps double and then halve back to where reads work: a
    readable island inside such a long damaged range can be missed, and a file of garbage,
    where every read fails, is given up after ~10,000 + 30 reads (doubling to SALVAGE_LAST_SEQ),
    not 10**9. `hi`: the table's last seq if the b-tree still says, else None.
    """
    first, limit = 1, SALVAGE_BATCH
    while hi is None or first <= hi:
        try:
            rows = _rows_from(db, first, limit)
        except sqlite3.DatabaseError:
            if limit > 1:
                limit //= 10
                continue
            bad = first  # the row at or after `first` is unreadable: where do reads work again?
            while True:
                good = bad + (1 if bad - first < SALVAGE_SCAN else bad - first)
                if good > SALVAGE_LAST_SEQ or (hi is not None and good > hi):
                    yield []
                    return
                if _readable_from(db, good):
                    break
                bad = good
            while good - bad > 1:  # reads from `bad` fail, from `good` work
                mid = (bad + good) // 2
                if _readable_from(db, mid):
                    good = mid
                else:
                    bad = mid
            yield []
            first, limit = good, SALVAGE_BATCH
            continue
        if not rows:
            return
        yield rows
        first = rows[-1][0] + 1


class Row(NamedTuple):
    """One outbox row as a sink reads it. A tuple: read for every observation, so made cheaply
    (straight from SQLite's row, no per-field set-up)."""

    seq: int
    ds: int
    t: float
    body: bytes


# salvage of a damaged file: rows read per query where nothing failed yet, how many seqs past a
# damaged range are tried one by one before the steps double, and the highest seq a gateway could
# have written (where the search for readable rows past a damaged range gives up)
SALVAGE_BATCH = 1000
SALVAGE_SCAN = 10_000
SALVAGE_LAST_SEQ = 10**12

# Row(*r) for a row SQLite returns (always its four columns), without a Python-level call
_row: Callable[[tuple[int, int, float, bytes]], Row] = functools.partial(tuple.__new__, Row)


# Rows are inserted many to a statement (a statement per row costs the AUTOINCREMENT counter's
# update and the statement's own overhead each time: 2.5x the CPU of a batch per row), in chunks
# of powers of two up to INSERT_CHUNK rows (768 parameters, under any SQLite's limit of 999), so
# a handful of statements, always the same few, serve every batch size.
INSERT_CHUNK = 256
_INSERT = {1 << i: "INSERT INTO obs(ds, t, body) VALUES " + ",".join(["(?, ?, ?)"] * (1 << i))
           for i in range(INSERT_CHUNK.bit_length())}  # fmt: skip


def _insert(db: sqlite3.Connection, rows: list[tuple[int, float, bytes]]) -> None:
    """`INSERT INTO obs(ds, t, body)` every row, in order, in the caller's transaction.

    Bodies are bound as bytearrays: the same BLOB bytes (both bind through the buffer protocol),
    but the sqlite3 module looks a `bytes` parameter up in its adapter registry each time (not a
    bytearray: it is one of the types it binds as they are), which cost more than the rest of the
    row's insert (tests/unit/test_outbox_insert.py holds the stored rows to the plain insert's)."""
    if not all(type(r) is tuple and len(r) == 3 for r in rows):  # let SQLite judge odd rows
        db.executemany("INSERT INTO obs(ds, t, body) VALUES (?, ?, ?)", rows)
        return
    i, n = 0, len(rows)
    while i < n:
        k = min(INSERT_CHUNK, 1 << ((n - i).bit_length() - 1))
        params: list[Any] = list(itertools.chain.from_iterable(rows[i : i + k]))
        bodies = params[2::3]
        if set(map(type, bodies)) == {bytes}:  # anything else is bound as it is
            params[2::3] = map(bytearray, bodies)
        db.execute(_INSERT[k], params)
        i += k


class OutboxError(Exception):
    pass


class Outbox:
    def __init__(
        self,
        path: Path,
        *,
        sinks: Sequence[str],
        max_bytes: int = 2**30,
        max_age_s: float = 30 * 86400,
        sync: str = "full",
        when_full: str = "drop_oldest",
    ) -> None:
        self.path = path
        self.sync_full = sync == "full"
        self.max_bytes = max_bytes
        self.when_full = when_full
        self.max_age_s = max_age_s
        self.events: list[str] = []  # notable events at open (recovery), for the log and metrics
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = self._open(sync)
        self.sinks = list(sinks)
        self._init_cursors()
        row = self.db.execute("SELECT COALESCE(SUM(LENGTH(body)), 0), COUNT(*) FROM obs").fetchone()
        self.payload_bytes: int = row[0] + ROW_OVERHEAD * row[1]
        # seqs are contiguous (appends, reclaim and drops only ever add at the head or cut at
        # the tail), so counts are head arithmetic, O(1) at any backlog; a salvaged database
        # may have holes, and then exact COUNT(*) queries are used instead
        lo, hi = self.db.execute("SELECT MIN(seq), MAX(seq) FROM obs").fetchone()
        self._contiguous = row[1] == 0 or (hi - lo + 1) == row[1]
        self.appended = 0
        self.bytes_appended = 0
        self.deletions = 0  # deletes of rows at a bound, so far (AsyncOutbox's tail forgets then)

    # ------------------------------------------------------------------ open / recover

    def _connect(self, sync: str) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if sync == 'full' else 'NORMAL'}")
        db.execute("PRAGMA wal_autocheckpoint=1000")
        db.execute("PRAGMA busy_timeout=5000")
        # 128 KiB of page cache, not SQLite's 2 MiB default: the outbox is appended at its tail and
        # read at its head (sinks that keep up read the in-memory tail, AsyncOutbox), so more cache
        # holds little that is read again; what it misses comes from the OS's page cache. The
        # default added 1.6 MiB to peak RSS at saturation (bench_e2e.py at max: 50.1 vs 48.5 MiB),
        # 512 KiB still 0.35 MiB at 200 readings/s (issue 19, bench/RESULTS-issue19.md)
        db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        db.executescript(SCHEMA)
        return db

    def _open(self, sync: str) -> sqlite3.Connection:
        try:
            db = self._connect(sync)
            status = db.execute("PRAGMA quick_check").fetchone()[0]
            if status == "ok":
                return db
            db.close()
            reason = f"integrity check failed: {status}"
        except sqlite3.DatabaseError as e:
            reason = f"cannot open: {e}"
        return self._recover(sync, reason)

    def _recover(self, sync: str, reason: str) -> sqlite3.Connection:
        """Move the damaged file aside, keep every row that can still be read, report it."""
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():  # within its folder: a rename (shutil, with bz2 and lzma, stays out of `run`)
                os.replace(src, Path(str(aside) + suffix))
        db = self._connect(sync)
        kept = lost = 0
        try:
            old = sqlite3.connect(f"file:{aside}?mode=ro", uri=True)
            try:
                cursors = old.execute("SELECT sink, seq FROM cursor").fetchall()
                db.executemany("INSERT OR REPLACE INTO cursor VALUES (?, ?)", cursors)
            except sqlite3.DatabaseError:
                pass
            try:  # the table's last row, if its b-tree still says: where to stop skipping
                hi = old.execute("SELECT MAX(seq) FROM obs").fetchone()[0]
            except sqlite3.DatabaseError:
                hi = None
            for rows in salvage(old, hi):
                if rows:
                    db.execute("BEGIN")
                    db.executemany("INSERT INTO obs(seq, ds, t, body) VALUES (?, ?, ?, ?)", rows)
                    db.execute("COMMIT")
                    kept += len(rows)
                else:
                    lost += 1
            old.close()
        except sqlite3.DatabaseError as e:
            reason += f"; salvage stopped: {e}"
        event = f"outbox recovered: {reason}; kept {kept} rows; {lost} unreadable ranges; damaged file kept as {aside.name}"
        self.events.append(event)
        log.error(event)
        return db

    def _init_cursors(self) -> None:
        existing = dict(self.db.execute("SELECT sink, seq FROM cursor").fetchall())
        ledgers = {r[0] for r in self.db.execute("SELECT sink FROM ledger")}
        start = self.db.execute("SELECT COALESCE(MIN(seq) - 1, 0) FROM obs").fetchone()[0]
        for sink in self.sinks:
            if sink not in existing:
                self.db.execute("INSERT INTO cursor VALUES (?, ?)", (sink, start))
                existing[sink] = start
            if sink not in ledgers:
                # a new sink owns every row still stored: committed counts from its cursor
                # (for an outbox made before the ledger existed, likewise from now on)
                self.db.execute("INSERT INTO ledger VALUES (?, ?, 0)", (sink, existing[sink]))
        for sink in set(existing) - set(self.sinks):
            for table in ("cursor", "ledger", "sink_drops"):
                self.db.execute(f"DELETE FROM {table} WHERE sink = ?", (sink,))
            self.events.append(f"cursor of removed sink {sink!r} dropped")

    # ------------------------------------------------------------------ writes

    def append(self, records: Iterable[tuple[int, float, bytes]]) -> int:
        """Commit a batch in one transaction (group commit). Returns the last sequence number."""
        rows = list(records)
        if not rows:
            return self.head()
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            _insert(db, rows)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        n = sum(len(b) for _, _, b in rows)
        self.payload_bytes += n + ROW_OVERHEAD * len(rows)
        self.appended += len(rows)
        self.bytes_appended += n
        return self.head()

    def head(self) -> int:
        row = self.db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'obs'").fetchone()
        return int(row[0]) if row else 0

    def read(self, sink: str, limit: int, after: int | None = None) -> list[Row]:
        start = self.cursor(sink) if after is None else after
        cur = self.db.execute("SELECT seq, ds, t, body FROM obs WHERE seq > ? ORDER BY seq LIMIT ?", (start, limit))
        return list(map(_row, cur))

    def cursor(self, sink: str) -> int:
        row = self.db.execute("SELECT seq FROM cursor WHERE sink = ?", (sink,)).fetchone()
        if row is None:
            raise OutboxError(f"no cursor for sink {sink!r}")
        return int(row[0])

    def advance(self, sink: str, seq: int) -> int:
        """Move `sink`'s cursor to `seq`; the rows it passes that are still stored count as
        delivered (rows dropped before were counted as dropped). Returns how many."""
        db = self.db
        if self.sync_full:  # no fsync of its own: see the module docstring
            db.execute("PRAGMA synchronous=NORMAL")
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                old = self.cursor(sink)
                n = 0
                if seq > old:
                    n = int(db.execute("SELECT COUNT(*) FROM obs WHERE seq > ? AND seq <= ?", (old, seq)).fetchone()[0])
                    db.execute("UPDATE cursor SET seq = ? WHERE sink = ?", (seq, sink))
                    db.execute("UPDATE ledger SET delivered = delivered + ? WHERE sink = ?", (n, sink))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        finally:
            if self.sync_full:
                db.execute("PRAGMA synchronous=FULL")
        return n

    def ledger(self, sink: str) -> dict[str, int]:
        """committed, delivered, dropped, pending for one sink: delivered + dropped + pending
        == committed, always."""
        base, delivered = self.db.execute("SELECT base, delivered FROM ledger WHERE sink = ?", (sink,)).fetchone()
        dropped = self.db.execute("SELECT COALESCE(SUM(n), 0) FROM sink_drops WHERE sink = ?", (sink,)).fetchone()[0]
        return {"committed": max(0, self.head() - base), "delivered": int(delivered),
                "dropped": int(dropped), "pending": self.lag(sink)}  # fmt: skip

    def _min_seq(self) -> int | None:
        row = self.db.execute("SELECT seq FROM obs ORDER BY seq LIMIT 1").fetchone()
        return int(row[0]) if row else None

    def lag(self, sink: str) -> int:
        c = self.cursor(sink)
        if self._contiguous:
            lo = self._min_seq()
            return 0 if lo is None else max(0, self.head() - max(c, lo - 1))
        return int(self.db.execute("SELECT COUNT(*) FROM obs WHERE seq > ?", (c,)).fetchone()[0])

    def oldest_pending_time(self, sink: str) -> float | None:
        row = self.db.execute(
            "SELECT t FROM obs WHERE seq > ? ORDER BY seq LIMIT 1", (self.cursor(sink),)
        ).fetchone()
        return float(row[0]) if row else None

    def count(self) -> int:
        if self._contiguous:
            lo = self._min_seq()
            return 0 if lo is None else self.head() - lo + 1
        return int(self.db.execute("SELECT COUNT(*) FROM obs").fetchone()[0])

    # ------------------------------------------------------------------ housekeeping

    def reclaim(self) -> int:
        """Delete up to one chunk of rows every sink has delivered. Returns rows deleted."""
        low = self.db.execute("SELECT MIN(seq) FROM cursor").fetchone()[0]
        if low is None:
            low = self.head()  # no sinks: nothing will ever read the rows
        last, n, size = self.db.execute(  # the chunk summed by SQLite, not row by row here
            "SELECT MAX(seq), COUNT(*), TOTAL(LENGTH(body)) FROM "
            "(SELECT seq, body FROM obs WHERE seq <= ? ORDER BY seq LIMIT ?)",
            (low, RECLAIM_CHUNK),
        ).fetchone()
        if not n:
            return 0
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("DELETE FROM obs WHERE seq <= ?", (last,))
        self.db.execute("COMMIT")
        self.payload_bytes -= int(size) + ROW_OVERHEAD * n
        return int(n)

    def enforce_bounds(self, now: float) -> dict[str, int]:
        """Drop the oldest rows beyond max_age, then beyond max_bytes; count every one.

        Age is checked from the front of the queue (oldest seq first) and stops at the first row
        young enough, so a pass costs O(rows dropped), not a scan of the whole backlog."""
        dropped = {"max_age": 0, "max_bytes": 0, "downsampled": 0}
        cutoff = now - self.max_age_s
        oldest = self.db.execute("SELECT t FROM obs ORDER BY seq LIMIT 1").fetchone()
        while oldest is not None and oldest[0] < cutoff:  # not a chunk read each pass for nothing
            rows = self.db.execute(
                "SELECT seq, ds, LENGTH(body), t FROM obs ORDER BY seq LIMIT ?", (RECLAIM_CHUNK,)
            ).fetchall()
            old = []
            for r in rows:
                if r[3] >= cutoff:
                    break
                old.append(r[:3])
            if not old:
                break
            dropped["max_age"] += self._drop(old, "max_age")
            if len(old) < len(rows):
                break
        while self.payload_bytes > self.max_bytes:
            excess = self.payload_bytes - self.max_bytes
            rows = self.db.execute(
                "SELECT seq, ds, LENGTH(body) FROM obs ORDER BY seq LIMIT ?", (RECLAIM_CHUNK,)
            ).fetchall()
            if not rows:
                self.payload_bytes = 0
                break
            if self.when_full == "downsample":
                thinned = self._thin(rows, excess)
                if thinned:
                    dropped["downsampled"] += thinned
                    continue
            take, acc = [], 0
            for r in rows:
                take.append(r)
                acc += r[2] + ROW_OVERHEAD
                if acc >= excess:
                    break
            dropped["max_bytes"] += self._drop(take, "max_bytes")
        return dropped

    def _thin(self, rows: list[Any], excess: int) -> int:
        """`when_full: downsample`: halve the time resolution of the oldest rows (every second
        observation per Datastream) instead of losing the oldest period whole. Once the oldest
        rows are down to one per Datastream, the caller falls back to dropping the oldest."""
        span, acc = [], 0
        for r in rows:  # enough of the oldest rows that removing half of them frees `excess`
            span.append(r)
            acc += r[2] + ROW_OVERHEAD
            if acc >= 2 * excess:
                break
        seen: dict[int, int] = {}
        victims = []
        for seq, ds, size in span:
            seen[ds] = seen.get(ds, 0) + 1
            if seen[ds] % 2 == 0:
                victims.append((seq, ds, size))
        if not victims:
            return 0
        return self._delete(victims, "downsampled", oldest_first=False)

    def _drop(self, rows: list[Any], reason: str) -> int:
        return self._delete(rows, reason, oldest_first=True)

    def _delete(self, rows: list[Any], reason: str, *, oldest_first: bool) -> int:
        """Delete `rows` (seq, ds, size). Each counts as dropped, per Datastream and reason, for
        every sink whose cursor had not passed it; a row every sink had delivered is reclaimed
        early, not lost. `oldest_first`: the rows are the head of the queue, so one range delete
        keeps sequence numbers contiguous; otherwise counts become exact queries."""
        self.deletions += 1  # first: from now on AsyncOutbox reads from the database
        cursors = dict(self.db.execute("SELECT sink, seq FROM cursor").fetchall())
        per = Counter((sink, ds) for seq, ds, _ in rows for sink, c in cursors.items() if seq > c)
        self.db.execute("BEGIN IMMEDIATE")
        if oldest_first:
            self.db.execute("DELETE FROM obs WHERE seq <= ?", (rows[-1][0],))
        else:
            self.db.executemany("DELETE FROM obs WHERE seq = ?", [(r[0],) for r in rows])
        self.db.executemany(
            "INSERT INTO sink_drops VALUES (?, ?, ?, ?) "
            "ON CONFLICT(sink, ds, reason) DO UPDATE SET n = n + excluded.n",
            [(sink, ds, reason, n) for (sink, ds), n in per.items()],
        )
        self.db.execute("COMMIT")
        if not oldest_first:
            self._contiguous = False
        self.payload_bytes -= sum(r[2] for r in rows) + ROW_OVERHEAD * len(rows)
        lost = {sink: 0 for sink in cursors}
        for (sink, _), n in per.items():
            lost[sink] += n
        log.warning("outbox bound reached: %d observations removed (reason=%s); undelivered: %s",
                    len(rows), reason, ", ".join(f"{k}={v}" for k, v in sorted(lost.items())) or "none")  # fmt: skip
        return len(rows)

    def drops(self) -> dict[tuple[str, int, str], int]:
        """Rows dropped before a sink had them: (sink, Datastream, reason) -> count."""
        return {(sink, ds, r): n for sink, ds, r, n in self.db.execute("SELECT sink, ds, reason, n FROM sink_drops")}

    def checkpoint(self) -> None:
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.checkpoint()
        self.db.close()


T = TypeVar("T")
TAIL_ROWS = 1000  # rows kept in memory after their commit, for the sinks that keep up


class AsyncOutbox:
    """Runs every outbox call on one worker thread so fsyncs never block the event loop. Keeps
    the head and each sink's cursor in memory too, so a sink runner knows how many rows wait
    for it without a call (`pending`).

    The tail: the rows of the last commits (up to TAIL_ROWS) stay in memory, so a sink that
    keeps up reads them without a thread hop and a query; what it reads is what the database
    holds (the same seqs and bytes, committed). A sink behind the tail reads the database; a
    delete at a bound makes every read go to the database until the tail is rebuilt."""

    def __init__(self, outbox: Outbox) -> None:
        self.sync = outbox
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="outbox")
        self.changed = asyncio.Event()  # set after each append, so sinks wake up
        self.head = outbox.head()
        self.cursors = {sink: outbox.cursor(sink) for sink in outbox.sinks}
        self._tail: list[Row] = []  # contiguous seqs ending at `head`, or empty
        self._deletions = outbox.deletions

    async def call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def append(self, records: list[tuple[int, float, bytes]]) -> int:
        seq: int = await self.call(self.sync.append, records)
        self._remember(seq, records)
        self.head = max(self.head, seq)
        self.changed.set()
        return seq

    def _remember(self, last: int, records: list[tuple[int, float, bytes]]) -> None:
        """Keep the rows just committed (one transaction: seqs last-n+1 .. last)."""
        tail = self._tail
        first = last - len(records) + 1
        if self.cursors and max(self.cursors.values()) + TAIL_ROWS < first:
            tail.clear()  # every sink is further behind than a tail reaches: none would read
            return  # these rows from memory (kept again from the first commit one could)
        if (tail and tail[-1].seq != first - 1) or (not tail and self.head != first - 1) \
                or self.sync.deletions != self._deletions:  # fmt: skip
            tail.clear()  # not contiguous with what is kept: start again from these rows
            self._deletions = self.sync.deletions
        tail.extend(Row(first + i, ds, t, body) for i, (ds, t, body) in enumerate(records))
        low = min(self.cursors.values(), default=last)  # every sink has passed up to here
        cut = max(low + 1 - tail[0].seq, len(tail) - TAIL_ROWS, 0)
        if cut:
            del tail[:cut]

    def _from_tail(self, sink: str, limit: int) -> list[Row] | None:
        """`sink`'s next rows from memory, or None: read the database."""
        tail = self._tail
        cursor = self.cursors.get(sink)
        if cursor is None or self.sync.deletions != self._deletions:
            return None
        if not tail:
            return [] if cursor >= self.head else None
        if tail[-1].seq != self.head or cursor + 1 < tail[0].seq:
            return None
        start = max(0, cursor + 1 - tail[0].seq)
        return tail[start : start + limit]

    async def read(self, sink: str, limit: int, after: int | None = None) -> list[Row]:
        if after is None and (kept := self._from_tail(sink, limit)) is not None:
            return kept
        rows: list[Row] = await self.call(self.sync.read, sink, limit, after)
        return rows

    async def advance(self, sink: str, seq: int) -> int:
        n: int = await self.call(self.sync.advance, sink, seq)
        self.cursors[sink] = max(self.cursors.get(sink, 0), seq)
        return n

    async def write_then_advance(self, sink: str, rows: Sequence[Row], write: Any) -> Any:
        """`write(rows)` and then `sink`'s cursor past them, in one call on the outbox's thread
        (for a sink whose write is quick local I/O: one thread hop instead of two). If `write`
        raises, the cursor stays. Returns what `write` returned."""
        seq = rows[-1].seq

        def run() -> Any:
            result = write(rows)
            self.sync.advance(sink, seq)
            return result

        result = await self.call(run)
        self.cursors[sink] = max(self.cursors.get(sink, 0), seq)
        return result

    def pending(self, sink: str) -> int:
        """Rows appended after `sink`'s cursor (an upper bound: rows dropped at a bound count)."""
        return self.head - self.cursors.get(sink, 0)

    async def close(self) -> None:
        await self.call(self.sync.close)
        self._pool.shutdown(wait=True)


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename or new file in it survives power loss."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
