from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.outbox import ROW_OVERHEAD, Outbox


def rows(n: int, start: int = 0, ds: int = 7, size: int = 60) -> list[tuple[int, float, bytes]]:
    return [(ds, 1000.0 + i, b"x" * size) for i in range(start, start + n)]


def test_each_sink_has_its_own_cursor(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite", sinks=["a", "b"])
    ob.append(rows(10))
    got = ob.read("a", 4)
    assert [r.seq for r in got] == [1, 2, 3, 4]
    ob.advance("a", got[-1].seq)
    assert ob.lag("a") == 6 and ob.lag("b") == 10
    assert [r.seq for r in ob.read("b", 100)] == list(range(1, 11))


def test_reclaim_deletes_only_what_every_sink_delivered(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite", sinks=["a", "b"])
    ob.append(rows(10))
    ob.advance("a", 10)
    ob.advance("b", 3)
    assert ob.reclaim() == 3
    assert ob.count() == 7
    ob.advance("b", 10)
    assert ob.reclaim() == 7 and ob.count() == 0


def test_sequence_numbers_never_reused_after_everything_is_reclaimed(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    ob = Outbox(path, sinks=["a"])
    ob.append(rows(5))
    ob.advance("a", 5)
    ob.reclaim()
    ob.close()
    ob = Outbox(path, sinks=["a"])
    ob.append(rows(2))
    assert [r.seq for r in ob.read("a", 10)] == [6, 7]


def test_committed_rows_and_cursors_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    ob = Outbox(path, sinks=["a"])
    ob.append(rows(100))
    ob.advance("a", 40)
    ob.db.close()  # no checkpoint: as after kill -9, the WAL holds the data
    ob2 = Outbox(path, sinks=["a"])
    assert ob2.cursor("a") == 40 and ob2.count() == 100


def test_byte_bound_drops_oldest_and_counts_per_datastream(tmp_path: Path) -> None:
    per_row = 60 + ROW_OVERHEAD
    ob = Outbox(tmp_path / "o.sqlite", sinks=["a"], max_bytes=per_row * 50)
    ob.append(rows(40, ds=1))
    ob.append(rows(30, start=40, ds=2))
    dropped = ob.enforce_bounds(now=1000.0)
    assert dropped == {"max_age": 0, "max_bytes": 20, "downsampled": 0}
    assert ob.count() == 50
    assert [r.seq for r in ob.read("a", 1)] == [21]  # the oldest went first
    assert ob.drops() == {("a", 1, "max_bytes"): 20}


def test_age_bound_drops_old_rows(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite", sinks=["a"], max_age_s=50)
    ob.append(rows(100))  # t = 1000..1099
    assert ob.enforce_bounds(now=1100.0)["max_age"] == 50
    assert ob.drops() == {("a", 7, "max_age"): 50}


def test_new_sink_starts_at_the_oldest_retained_row_and_removed_sink_is_forgotten(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    ob = Outbox(path, sinks=["a"])
    ob.append(rows(5))
    ob.close()
    ob = Outbox(path, sinks=["b"])
    assert ob.lag("b") == 5
    assert "cursor of removed sink 'a' dropped" in ob.events


def test_corrupt_database_is_moved_aside_and_readable_rows_kept(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    ob = Outbox(path, sinks=["a"])
    ob.append(rows(3000, size=200))
    ob.close()
    raw = bytearray(path.read_bytes())
    page = 4096
    # damage a page in the middle of the table's b-tree
    mid = (len(raw) // page // 2) * page
    raw[mid : mid + page] = b"\xff" * page
    path.write_bytes(bytes(raw))
    ob = Outbox(path, sinks=["a"])
    assert ob.events and ob.events[0].startswith("outbox recovered")
    assert 0 < ob.count() < 3000
    assert list(tmp_path.glob("o.sqlite.corrupt-*"))
    ob.append(rows(1))  # and it keeps working
    sqlite3.connect(path).execute("PRAGMA quick_check").fetchone()


def _damage_leaves(path: Path, pick: list[int]) -> set[int]:
    """Overwrite the `pick`-th leaf pages of the obs table (SQLite's own dbstat says which pages
    they are) and return the seqs SQLite can still read one by one: the rows a salvage must keep."""
    db = sqlite3.connect(path)
    leaves = [p for (p,) in db.execute("SELECT pageno FROM dbstat WHERE name = 'obs' AND pagetype = 'leaf' ORDER BY pageno")]
    page = db.execute("PRAGMA page_size").fetchone()[0]
    n = db.execute("SELECT MAX(seq) FROM obs").fetchone()[0]
    db.close()
    raw = bytearray(path.read_bytes())
    for i in pick:
        at = (leaves[i] - 1) * page
        raw[at : at + page] = b"\xff" * page
    path.write_bytes(bytes(raw))
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    readable = set()
    for seq in range(1, n + 1):
        try:
            if db.execute("SELECT body FROM obs WHERE seq = ?", (seq,)).fetchone():
                readable.add(seq)
        except sqlite3.DatabaseError:
            pass
    db.close()
    return readable


@pytest.mark.parametrize("pick", [[80], [3, 40, 41, 42, 43, 44, 120], [0], [-1], list(range(0, 150, 2)),
                                  *(random.Random(seed).sample(range(150), seed * 6) for seed in range(1, 9))])  # fmt: skip
def test_salvage_keeps_every_row_sqlite_can_still_read(tmp_path: Path, pick: list[int]) -> None:
    """A damaged leaf costs the rows on it, not the rows around it. The salvage used to leap
    1,000 seqs past any failing read: one bad 4 KiB page cost up to 1,000 readable rows (and a
    read of 1,000 that crossed the page lost the rows before it too). What SQLite can read row by
    row on the damaged file is what is kept, no more (nothing invented) and no less."""
    path = tmp_path / "o.sqlite"
    ob = Outbox(path, sinks=["a"])
    for i in range(0, 3000, 500):
        ob.append(rows(500, start=i, size=200))
    ob.close()
    readable = _damage_leaves(path, pick)
    assert 0 < len(readable) < 3000
    ob = Outbox(path, sinks=["a"])
    assert ob.events and ob.events[0].startswith("outbox recovered")
    kept = ob.read("a", 5000)
    assert {r.seq for r in kept} == readable
    assert all(r.body == b"x" * 200 and r.t == 1000.0 + r.seq - 1 for r in kept)


def test_downsample_thins_the_oldest_rows_per_datastream_and_counts_them(tmp_path: Path) -> None:
    per_row = 60 + ROW_OVERHEAD
    ob = Outbox(tmp_path / "o.sqlite", sinks=["a"], max_bytes=per_row * 80, when_full="downsample")
    ob.append([(1 + i % 2, 1000.0 + i, b"x" * 60) for i in range(100)])  # two datastreams
    dropped = ob.enforce_bounds(now=1000.0)
    assert dropped["downsampled"] >= 20 and dropped["max_bytes"] == 0
    assert ob.count() == 100 - dropped["downsampled"] <= 80
    seqs = [r.seq for r in ob.read("a", 200)]
    assert seqs[0] == 1 and seqs[-1] == 100  # the oldest period is kept, thinner; newest intact
    assert sum(ob.drops().values()) == dropped["downsampled"]
    assert {reason for _, _, reason in ob.drops()} == {"downsampled"}
    assert ob.lag("a") == ob.count()


def test_page_cache_is_bounded_below_sqlites_default(tmp_path: Path) -> None:
    """Issue 19: 128 KiB of SQLite page cache (the default 2 MiB added 1.6 MiB to the gateway's
    peak RSS at saturation, 512 KiB 0.35 MiB at 200 readings/s, bench_e2e.py), on a new outbox
    and on one opened again."""
    for _ in range(2):
        ob = Outbox(tmp_path / "o.sqlite", sinks=["a"])
        ob.append(rows(3))
        assert ob.db.execute("PRAGMA cache_size").fetchone() == (-128,)
        ob.close()


@pytest.mark.parametrize("damage", ["garbage", "header_only"])
def test_an_outbox_file_with_nothing_readable_is_moved_aside_and_the_gateway_starts_empty(
    tmp_path: Path, damage: str
) -> None:
    """A file whose every query fails (garbage bytes; a valid header over garbage pages) used to
    keep the salvage loop stepping 1,000 seqs at a time towards 10**12: the gateway never
    started. It is moved aside, reported, and a fresh outbox opens. Run in a child process so
    a hang fails the test (60 s is a hang detector, not a speed target)."""
    path = tmp_path / "o.sqlite"
    if damage == "garbage":
        path.write_bytes(bytes(range(256)) * 64)
    else:
        ob = Outbox(path, sinks=["a"])
        ob.append(rows(500, size=200))
        ob.close()
        raw = bytearray(path.read_bytes())
        raw[4096:] = b"\xa5" * (len(raw) - 4096)
        path.write_bytes(bytes(raw))
    code = (
        "import sys, json; from pathlib import Path; from gateway.outbox import Outbox\n"
        "ob = Outbox(Path(sys.argv[1]), sinks=['a']); ob.append([(1, 1.0, b'{}')])\n"
        "print(json.dumps([ob.count(), ob.events]))\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60,
                       cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    assert r.returncode == 0, r.stderr
    count, events = json.loads(r.stdout)
    assert count == 1 and events and events[0].startswith("outbox recovered")
    assert list(tmp_path.glob("o.sqlite.corrupt-*"))


def test_a_batch_of_any_size_is_appended_whole_and_in_order(tmp_path: Path) -> None:
    """Rows go in many to a statement (issue 19): every size, across the chunk boundaries, keeps
    each row's values and its order; the bytes counted are the rows'."""
    ob = Outbox(tmp_path / "o.sqlite", sinks=["a"])
    expected: list[tuple[int, float, bytes]] = []
    for n in (1, 2, 3, 7, 255, 256, 257, 511, 600, 1000):
        batch = [(n * 10_000 + i, 1000.0 + i / 7, f"row {n}/{i}".encode()) for i in range(n)]
        assert ob.append(batch) == len(expected) + n
        expected += batch
    got = ob.read("a", 10_000)
    assert [r.seq for r in got] == list(range(1, len(expected) + 1))
    assert [(r.ds, r.t, r.body) for r in got] == expected
    assert ob.payload_bytes == sum(len(b) for *_, b in expected) + ROW_OVERHEAD * len(expected)


def test_a_row_sqlite_refuses_fails_the_whole_batch_and_appends_nothing(tmp_path: Path) -> None:
    """What the committer's bisection relies on: one bad row anywhere in a batch (here a NULL in
    a NOT NULL column, a value SQLite cannot bind, a row of the wrong width) raises, and the
    transaction leaves nothing behind."""
    ob = Outbox(tmp_path / "o.sqlite", sinks=["a"])
    ob.append(rows(3))
    for bad in ((7, None, b"x"), (7, 1.0, {"not": "bindable"}), (7, 1.0), (2**70, 1.0, b"x")):
        for at in (0, 200, 299):
            batch: list = rows(300)  # type: ignore[type-arg]
            batch[at] = bad
            try:
                ob.append(batch)
            except (sqlite3.Error, OverflowError):
                pass
            else:
                raise AssertionError(f"{bad!r} at {at} was appended")
            assert ob.head() == 3 and ob.count() == 3
