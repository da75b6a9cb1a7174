"""City time-series store sink: the InfluxDB v2 write API (`POST /api/v2/write`) over
`http.client`.

Keep-alive HTTP(S) through `gateway/sinks/keepalive.py` (shared with the SensorThings sink),
used from one worker thread at a time; gzip, TLS verification (system CAs or `ca_file`),
`timeout` and the `Authorization: Token` header as influxdb-client sent them. Until issue 19 this sink wrote through influxdb-client's synchronous
write API; measured on the same lines to the same store, that cost 659 us of CPU per small
write against 159 us here, and importing the client cost 12.1 MiB of resident memory (521
modules) against none: a fifth of the Pi's memory target for a POST of text.

Works against InfluxDB 2.x and VictoriaMetrics (`/api/v2/write`). Network errors, 5xx, 408 and
429 are retried by the runner with backoff. Only the store's verdict on the points themselves (a
400 that says it could not parse them, 413, 422) splits the batch to quarantine the bad points;
every other refusal (401, 403, 404, a 400 from a proxy…) means the sink is *blocked*: nothing is
quarantined, the backlog waits. Writes are idempotent: the same series and timestamp overwrite.

Encoding and writing a batch is one call on a worker thread, so the event loop keeps committing
live data meanwhile. A line is built only from parts the egress guard cleared: the
measurement-and-tags prefix, constant per Datastream, is scanned once and cached; the field and
the timestamp are the row's values as the guard scanned them (`EgressGuard.clear_record`); so the
line is not scanned again.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr, field_validator

from gateway.checks import Finding, influx_url_findings
from gateway.configtypes import PositiveDuration
from gateway.model import Observation
from gateway.outbox import Row
from gateway.privacy.guard import EgressGuard, record_observation
from gateway.sinks.base import (
    BlockedError,
    Destination,
    Loc,
    Offer,
    PermanentError,
    RetryableError,
    SinkContext,
    SinkError,
    SinkSettings,
    SinkSpec,
    WriteResult,
)
from gateway.sinks.keepalive import KeepAlive, Unreachable
from gateway.standards import lineprotocol

if TYPE_CHECKING:
    from gateway.plan import SitePlan


class Settings(SinkSettings):
    type: Literal["influxdb"] = "influxdb"
    url: str = Field(description="Base URL of the store, e.g. https://tsdb.example.london")
    org: str
    bucket: str
    token: SecretStr | None = None
    # at most this many lines per write (fewer when live data lingers `flush_interval`): 5,000
    # is InfluxDB's documented optimum ("Optimize writes"); a backlog drains in writes of it
    batch_size: int = Field(5000, ge=1, le=100000)
    timeout: PositiveDuration = 10
    gzip: bool = True
    verify_tls: bool = True
    ca_file: Path | None = None
    # no cap by default, as Telegraf, Vector and Fluent Bit: a 1,000,000-observation backlog drains
    # into VictoriaMetrics in 14-17 s uncapped against 49 s at the old 20,000/s default, with the
    # slowest live commit meanwhile 82-136 ms against 74-104 (bench/bench_outbox.py); a cap is
    # for an uplink that others share or that is paid by the byte
    max_rate: float | None = Field(
        None, gt=0, description="Observations/s cap on writes (a backlog's drain); none by default."
    )
    allow_plaintext: bool = Field(
        False, description="Allow the token over http:// to a non-loopback host (warned)."
    )

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v

    @field_validator("token")
    @classmethod
    def _not_empty(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value():
            raise ValueError("is empty (an unset ${VAR} or an empty secret file?)")
        return v


InfluxConfig = Settings  # the name the sink's code uses


BLOCKED = {401: ("unauthorised", "credentials refused"), 403: ("forbidden", "no permission to write"),
           404: ("not_found", "no such org, bucket or path")}  # fmt: skip


def classify(status: int, body: object) -> Exception:
    """What an HTTP answer means for the rows. Only a verdict on the points themselves
    quarantines anything; a refusal of the gateway leaves the backlog where it is."""
    if status in (0, 408, 429) or status >= 500:
        return RetryableError(f"store answered HTTP {status}")
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
    if status in (413, 422) or (status == 400 and "parse" in text.lower()):
        return PermanentError(f"store refused the points: HTTP {status}")
    code, why = BLOCKED.get(status, ("refused", "the store refuses the gateway's writes"))
    return BlockedError(code, f"HTTP {status}: {why}")


_NO_PARAMETERS: dict[str, object] = {}
GZIP_LEVEL = 6  # zlib's default: ~10x smaller line protocol for ~1 us of CPU per line
GZIP_WBITS = 31  # zlib's deflate in a gzip wrapper (16 + a 32 KiB window)
BODY_LINES = 256  # lines joined, encoded and compressed at a time (`_body`)


class InfluxSink:
    def __init__(self, cfg: InfluxConfig, *, site_tags: dict[str, str], guard: EgressGuard,
                 name: str = "influxdb") -> None:  # fmt: skip
        self.name = name
        self.cfg = cfg
        self.batch_size = cfg.batch_size
        self.site_tags = site_tags
        self.guard = guard
        self._budget_t = time.monotonic()
        self.quarantined = 0
        # (property, sensor, Datastream) -> the line's constant prefix and the identifier kind
        # the guard found in it, if any (every row of that Datastream is then blocked, per row)
        self._prefix: dict[tuple[str, str, int], tuple[str, str | None]] = {}
        parts = urllib.parse.urlsplit(cfg.url)
        query = urllib.parse.urlencode({"org": cfg.org, "bucket": cfg.bucket, "precision": "ms"})
        self._path = f"{parts.path.rstrip('/')}/api/v2/write?{query}"
        headers = {"Content-Type": "text/plain; charset=utf-8", "Accept": "application/json",
                   "User-Agent": "street-gateway"}  # fmt: skip
        if cfg.token is not None:
            headers["Authorization"] = "Token " + cfg.token.get_secret_value()
        if cfg.gzip:
            headers["Content-Encoding"] = "gzip"
            headers["Accept-Encoding"] = "identity"
        self.http = KeepAlive(cfg.url, timeout=float(cfg.timeout), headers=headers,
                              ca_file=cfg.ca_file, verify_tls=cfg.verify_tls)  # fmt: skip

    async def start(self) -> None:
        # the CA file is read once, here: a missing one shows as a start failure
        await asyncio.to_thread(self.http.load_tls)

    # ------------------------------------------------------------------ lines

    def _prefix_of(self, obs: Observation) -> tuple[str, str | None]:
        """(the constant measurement-and-tags prefix of the Datastream's lines, the identifier
        kind the guard found in it or None): built and scanned once per Datastream."""
        key = (obs.property, obs.sensor_id, obs.datastream_id)
        got = self._prefix.get(key)
        if got is None:
            prefix = lineprotocol.prefix(obs, self.site_tags)  # LineProtocolError: unencodable
            # scanned with the separator after it, as it stands in every line
            self._prefix[key] = got = (prefix, self.guard.scan(prefix + " "))
        return got

    def _lines(self, rows: Sequence[Row], problems: list[tuple[str, str | None]],
               unencodable: list[int]) -> Iterator[tuple[int, str]]:
        """(seq, line) for each row the guard cleared, built only from what it cleared, one at a
        time; into `problems` the guard's verdicts on the rows it did not clear (counted on the
        loop thread: `_count`), into `unencodable` the seqs of rows no line can carry (refused by
        the encoder: quarantined, never sent split). Counts nothing: runs on a worker thread."""
        record_fields = self.guard.record_fields
        known = self._prefix
        for row in rows:
            doc, problem = record_fields(row.body)
            if problem is not None or doc is None:
                problems.append(problem or ("undeclared_field", None))
                continue
            try:
                got = known.get((doc["p"], doc["s"], doc["ds"]))
                if got is None:
                    got = self._prefix_of(record_observation(doc))
                prefix, kind = got
                if kind is not None:
                    problems.append((kind, None))
                    continue
                line = f"{prefix} {lineprotocol.fields(doc.get('r'), doc.get('pa', _NO_PARAMETERS))} {round(doc['t'] * 1000)}"
            except lineprotocol.LineProtocolError:
                unencodable.append(row.seq)
                continue
            yield row.seq, line

    def _encode_unguarded(self, rows: Sequence[Row]) -> tuple[list[tuple[int, str]], list[tuple[str, str | None]], int, list[int]]:
        """Lines for a batch (`_lines`), the guard's verdicts on the rows it did not clear, how
        many rows it cleared, and the seqs of rows no line can carry. Counts nothing."""
        problems: list[tuple[str, str | None]] = []
        unencodable: list[int] = []
        lines = list(self._lines(rows, problems, unencodable))
        return lines, problems, len(lines), unencodable

    def _count(self, problems: Sequence[tuple[str, str | None]], cleared: int) -> int:
        for problem in problems:
            self.guard.count(problem)
        self.guard.count_passed(cleared)
        return len(problems)

    def encode(self, rows: Sequence[Row]) -> tuple[list[tuple[int, str]], int]:
        """(seq, line) for every row that may leave, and how many the guard blocked (counted)."""
        lines, problems, cleared, _ = self._encode_unguarded(rows)
        return lines, self._count(problems, cleared)

    # ------------------------------------------------------------------ HTTP

    def _body(self, lines: Iterable[str]) -> tuple[bytes, int]:
        """The request body for `lines` (separated by newlines; gzipped unless `gzip: false`)
        and how many lines it holds. Built BODY_LINES lines at a time, each piece compressed as
        soon as it is joined, so a write of 5,000 lines never holds them all as strings, nor
        their joined text, nor its UTF-8, at once: only the compressed body grows (issue 19:
        the flat-out peak RSS). The bytes are what `gzip.compress` of the joined text gave but
        for the header's mtime and OS fields: one deflate stream, the same level, fed in pieces
        (zlib's output does not depend on how its input is split)."""
        z = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, GZIP_WBITS) if self.cfg.gzip else None
        out: list[bytes] = []
        piece: list[str] = []  # from the second piece on, it starts with "": its leading newline
        n = 0

        def flush() -> None:
            data = "\n".join(piece).encode()
            out.append(z.compress(data) if z is not None else data)

        for line in lines:
            piece.append(line)
            n += 1
            if len(piece) >= BODY_LINES:
                flush()
                piece = [""]
        if piece and piece != [""]:  # lines not yet in a piece
            flush()
        if z is not None:
            out.append(z.flush())
        return b"".join(out), n

    def _post_sync(self, lines: Iterable[str]) -> int:
        """One write of `lines` (how many: returned; none sends nothing); writes are idempotent,
        so one on a kept-alive connection the store had closed is sent again on a fresh one
        (`KeepAlive`). Anything else is classified."""
        body, n = self._body(lines)
        if not n:
            return 0
        try:
            resp = self.http.request("POST", self._path, body, idempotent=True)
        except Unreachable as e:
            raise RetryableError(f"store unreachable: {e}") from e
        if not 200 <= resp.status < 300:
            raise classify(resp.status, resp.body)
        return n

    def _encode_and_post(self, rows: Sequence[Row]) -> tuple[list[tuple[str, str | None]], int, list[int], SinkError | None]:
        """Encode and write in one worker-thread call (one hand-off per batch, not two), each
        line going into the body as it is made (`_body`): (the guard's verdicts on the rows it
        did not clear, how many it cleared, the seqs no line can carry, the write's error)."""
        problems: list[tuple[str, str | None]] = []
        unencodable: list[int] = []
        error: SinkError | None = None
        try:
            self._post_sync(line for _, line in self._lines(rows, problems, unencodable))
        except SinkError as e:
            error = e
        # every row is cleared (a line), refused by the guard, or unencodable
        cleared = len(rows) - len(problems) - len(unencodable)
        return problems, cleared, unencodable, error

    async def _post(self, lines: list[str]) -> int:
        return await asyncio.to_thread(self._post_sync, lines)

    async def _pace(self, n: int) -> None:
        """Token bucket, when `max_rate` is set: writes carry at most `max_rate` observations/s
        (a second's worth may go at once), so a backlog's drain leaves room on a shared uplink."""
        if self.cfg.max_rate is None:
            return
        now = time.monotonic()
        self._budget_t = max(self._budget_t, now - 1.0) + n / self.cfg.max_rate
        if self._budget_t > now:
            await asyncio.sleep(self._budget_t - now)

    async def write(self, rows: Sequence[Row]) -> WriteResult:
        await self._pace(len(rows))
        problems, cleared, rejected, error = await asyncio.to_thread(self._encode_and_post, rows)
        blocked = self._count(problems, cleared)  # guard counters: on the loop thread only
        if isinstance(error, PermanentError):
            # the lines again, as a list this time (the same rows, the prefixes cached): rare
            lines = list(self._lines(rows, [], []))
            await self._bisect(lines, rejected)
        elif error is not None:
            raise error
        self.quarantined += len(rejected)
        return WriteResult(len(rows) - blocked - len(rejected), rejected, blocked)

    async def _bisect(self, lines: list[tuple[int, str]], rejected: list[int]) -> None:
        """A batch the store refused for some points' sake: halves until they are found."""
        if len(lines) == 1:
            rejected.append(lines[0][0])
            return
        mid = len(lines) // 2
        for half in (lines[:mid], lines[mid:]):
            try:
                await self._post([line for _, line in half])
            except PermanentError:
                await self._bisect(half, rejected)

    async def close(self) -> None:
        await asyncio.to_thread(self.http.close)


def build(ctx: SinkContext, name: str, settings: Settings) -> InfluxSink:
    tags = {"gateway": ctx.gateway_id, "borough": ctx.borough}
    return InfluxSink(settings, site_tags=tags, guard=ctx.guard, name=name)


def public_url(url: str) -> str:
    """The URL without any credentials, for reports and catalogues."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def describe(name: str, settings: Settings, data_dir: Path) -> Destination:
    secure = "HTTPS" if settings.url.startswith("https://") else "plain HTTP (unencrypted)"
    return Destination(
        name, "influxdb", public_url(settings.url),
        f"time-series store, org {settings.org}, bucket {settings.bucket}, {secure}: line "
        "protocol, one measurement per property, tags gateway, borough, sensor, datastream",
    )  # fmt: skip


def _findings(settings: Settings) -> list[Finding]:
    return influx_url_findings(settings.url, settings.token is not None, settings.allow_plaintext)


def check(settings: Settings) -> list[tuple[Loc, str]]:
    """Credentials in the URL (they would be copied into the catalogue and logs) and a token
    sent over http:// to another machine are refused (gateway/checks.py)."""
    return [(("url",), f.message) for f in _findings(settings) if f.severity == "error"]


def offers(name: str, settings: Settings, plan: SitePlan) -> list[Offer]:
    """Per sensor: the store, its bucket, and the measurements and tags that select the sensor."""
    out = []
    for sp in plan.sensors.values():
        if not sp.datastreams:
            continue
        out.append(Offer(sp.id, "line-protocol", (public_url(settings.url),),
                         f"{sp.id}: time-series store ({name})",
                         f"org {settings.org}, bucket {settings.bucket}, measurements "
                         f"{', '.join(sorted(sp.datastreams))}, tags gateway={plan.gateway_id} "
                         f"sensor={sp.id} datastream=<id>"))  # fmt: skip
    return out


def warn(settings: Settings) -> list[tuple[Loc, str]]:
    return [(("url",), f.message) for f in _findings(settings) if f.severity == "warning"]


SPEC: SinkSpec = SinkSpec("influxdb", Settings, build, describe, check, doc="docs/sinks/influxdb.md",
                          offers=offers, warn=warn)  # fmt: skip
