"""The outbox binds row bodies as bytearrays (issue 19: the sqlite3 module adapts a `bytes`
parameter through its registry on every bind). Held here to the plain insert (`executemany` of the
rows as they are, what the outbox did before batching): the same rows, bytes and storage class,
in the real SQLite file, for every batch size around the chunk boundaries and every kind of body
(empty, non-UTF-8, large, a body of another type in the batch)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.outbox import INSERT_CHUNK, Outbox, _insert

SCHEMA = "CREATE TABLE obs(seq INTEGER PRIMARY KEY AUTOINCREMENT, ds INTEGER NOT NULL, t REAL NOT NULL, body BLOB NOT NULL)"


def stored(db: sqlite3.Connection) -> list[tuple[object, ...]]:
    return db.execute("SELECT seq, ds, t, body, typeof(body), typeof(ds), typeof(t) FROM obs ORDER BY seq").fetchall()


def both(tmp: Path, rows: list[tuple[object, ...]]) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    new, old = sqlite3.connect(tmp / "new.sqlite", isolation_level=None), sqlite3.connect(tmp / "old.sqlite", isolation_level=None)
    for db in (new, old):
        db.execute("DROP TABLE IF EXISTS obs")
        db.execute(SCHEMA)
    _insert(new, rows)  # type: ignore[arg-type]
    old.executemany("INSERT INTO obs(ds, t, body) VALUES (?, ?, ?)", rows)
    got = stored(new), stored(old)
    new.close()
    old.close()
    return got


bodies = st.one_of(st.binary(max_size=300), st.sampled_from([b"", b"\x00", b"\xff\xfe", b'{"ds":1}', b"x" * 70_000]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), bodies), max_size=2 * INSERT_CHUNK + 3))
def test_the_rows_stored_are_the_plain_inserts(tmp_path: Path, rows: list[tuple[int, float, bytes]]) -> None:
    new, old = both(tmp_path, rows)  # type: ignore[arg-type]
    assert new == old
    assert all(r[4] == "blob" and type(r[3]) is bytes for r in new)


@pytest.mark.parametrize("n", [1, 2, 3, INSERT_CHUNK - 1, INSERT_CHUNK, INSERT_CHUNK + 1, 3 * INSERT_CHUNK + 7])
def test_every_batch_size_around_the_chunks(tmp_path: Path, n: int) -> None:
    rows = [(1234567890123456 + i % 7, 1.79e9 + i / 3, f'{{"i":{i}}}'.encode() * (i % 5)) for i in range(n)]
    new, old = both(tmp_path, rows)  # type: ignore[arg-type]
    assert new == old and len(new) == n


@pytest.mark.parametrize("odd", ["text", None, 7, bytearray(b"ba"), memoryview(b"mv")])
def test_a_batch_with_a_body_of_another_type_is_bound_as_before(tmp_path: Path, odd: object) -> None:
    """Not bytes: bound as it is, so SQLite's verdict (a NULL refused, text stored as text) is
    the plain insert's."""
    rows = [(1, 1.0, b"a"), (2, 2.0, odd), (3, 3.0, b"c")]
    new_db, old_db = sqlite3.connect(tmp_path / "n.sqlite"), sqlite3.connect(tmp_path / "o.sqlite")
    results = []
    for db, insert in ((new_db, lambda db: _insert(db, rows)),  # type: ignore[arg-type]
                       (old_db, lambda db: db.executemany("INSERT INTO obs(ds, t, body) VALUES (?, ?, ?)", rows))):  # fmt: skip
        db.execute(SCHEMA)
        try:
            insert(db)
            results.append(stored(db))
        except sqlite3.Error as e:
            results.append(type(e))
    assert results[0] == results[1]


def test_the_outbox_reads_back_bytes(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "outbox.sqlite", sinks=["influxdb"])
    recs = [(1234567890123456, 1.79e9, b'{"r":1.5}'), (1234567890123457, 1.79e9, b"")]
    ob.append(recs)
    rows = ob.read("influxdb", 10)
    assert [(r.ds, r.t, r.body) for r in rows] == recs and all(type(r.body) is bytes for r in rows)
    ob.close()
