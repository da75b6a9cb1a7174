"""The InfluxDB sink builds a write's body a piece at a time (issue 19, peak RSS flat out): a
5,000-line write never holds its lines, their joined text and its UTF-8 all at once, and the bytes
it sends are those `gzip.compress` of the joined text gave (the same deflate stream and trailer;
the header differs only in its mtime and OS fields, which no store reads)."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib
from collections.abc import Iterator

import pytest

from gateway.model import Observation, stable_id
from gateway.outbox import Row
from gateway.privacy.guard import EgressGuard
from gateway.sinks.influxdb import BODY_LINES, GZIP_LEVEL, InfluxSink, Settings
from gateway.sinks.keepalive import Response


def sink(gz: bool = True) -> InfluxSink:
    return InfluxSink(Settings(url="http://127.0.0.1:9", org="o", bucket="b", gzip=gz),
                      site_tags={"gateway": "g", "borough": "camden"}, guard=EgressGuard())  # fmt: skip


def rows(n: int) -> list[Row]:
    out = []
    for i in range(n):
        prop = ("pm2_5", "pm10", "temperature")[i % 3]
        o = Observation(stable_id("datastream", "g", "s1", prop), "s1", prop, 1.8e9 + i / 10, 1.8e9 + i / 10,
                        12.5 + i % 97)  # fmt: skip
        out.append(Row(i + 1, o.datastream_id, o.phenomenon_time, o.to_record()))
    return out


@pytest.mark.parametrize("n", [0, 1, 2, BODY_LINES - 1, BODY_LINES, BODY_LINES + 1, 2 * BODY_LINES, 5000])
@pytest.mark.parametrize("gz", [True, False])
def test_the_body_is_the_lines_joined_and_gzip_gives_the_same_deflate_stream(n: int, gz: bool) -> None:
    lines = [f"pm2_5,gateway=g,sensor=s{i} value={i}.5 {1_800_000_000_000 + i}" for i in range(n)]
    body, count = sink(gz)._body(iter(lines))
    text = "\n".join(lines).encode()
    assert count == n
    assert (gzip.decompress(body) if gz else body) == text
    if gz:  # header (10 bytes) aside, byte for byte what the one-shot compression gave
        assert body[:3] == b"\x1f\x8b\x08"
        assert body[10:] == gzip.compress(text, compresslevel=GZIP_LEVEL)[10:]
        assert body[10:-8] == zlib.compress(text, GZIP_LEVEL, wbits=-15)


class Line(str):
    """A line that counts how many of its kind are alive."""

    alive = 0
    most = 0

    def __new__(cls, text: str) -> Line:
        obj = super().__new__(cls, text)
        Line.alive += 1
        Line.most = max(Line.most, Line.alive)
        return obj

    def __del__(self) -> None:
        Line.alive -= 1


def test_a_write_holds_at_most_one_piece_of_its_lines_at_once() -> None:
    def made() -> Iterator[str]:
        for i in range(10 * BODY_LINES):
            yield Line(f"m,t=x value={i}.5 {i}")

    Line.alive = Line.most = 0
    body, n = sink()._body(made())
    assert n == 10 * BODY_LINES and Line.alive == 0
    assert gzip.decompress(body) == "\n".join(f"m,t=x value={i}.5 {i}" for i in range(n)).encode()
    assert Line.most <= BODY_LINES + 1  # joining all of them first would hold 2,560


class Store:
    """Stands in for the HTTP connection pool: keeps what was posted (the HTTP path itself is
    tested against VictoriaMetrics in tests/integration/test_influx_http.py)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def request(self, method: str, target: str, body: bytes | None = None, *, idempotent: bool = False) -> Response:
        self.bodies.append(body or b"")
        return Response(204, None, b"")


def test_a_5000_line_write_never_holds_its_text_at_once() -> None:
    """Encoding and compressing a full batch takes less extra memory than the batch's text
    alone (the rows themselves are the caller's; zlib's own state is ~260 KiB of it): the lines,
    their joined text and its UTF-8 were each at least that size when built whole (1.9 MiB in
    all for this batch of 470 KiB of text)."""
    s = sink()
    batch = rows(5000)
    store = Store()
    s.http = store  # type: ignore[assignment]
    s._encode_and_post(batch[:3])  # Datastream prefixes cached, as after the first write
    want, blocked = s.encode(batch)
    text = "\n".join(line for _, line in want).encode()
    del want
    tracemalloc.start()
    try:
        problems, cleared, unencodable, error = s._encode_and_post(batch)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (problems, cleared, unencodable, error) == ([], 5000, [], None) and blocked == 0
    assert gzip.decompress(store.bodies[-1]) == text
    assert peak < len(text), (peak, len(text))
