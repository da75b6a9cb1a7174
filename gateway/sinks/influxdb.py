"""City time-series store sink: InfluxDB v2 write API through `influxdb-client`.

The client's synchronous write API runs on a worker thread rather than its aiohttp-based async
client: same requests, but ~9 MiB less resident memory on a Pi (no aiohttp), and a blocking
HTTP call never touches the event loop anyway.

Works against InfluxDB 2.x and VictoriaMetrics (`/api/v2/write`). Network errors, 5xx, 408 and
429 are retried by the runner with backoff. Only the store's verdict on the points themselves (a
400 that says it could not parse them, 413, 422) splits the batch to quarantine the bad points;
every other refusal (401, 403, 404, a 400 from a proxy…) means the sink is *blocked*: nothing is
quarantined, the backlog waits. Writes are idempotent: the same series and timestamp overwrite.

Encoding a batch is CPU work (~20 us per row on one core), so it runs on a worker thread and the
event loop keeps committing live data meanwhile. The measurement-and-tags prefix of a line is
constant per Datastream and cached; the egress guard scans the batch's text in one pass and
re-checks line by line (and counts) only when that pass finds something.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr, field_validator

from gateway.checks import Finding, influx_url_findings
from gateway.configtypes import PositiveDuration
from gateway.model import Observation
from gateway.outbox import Row
from gateway.privacy.guard import EgressGuard, find_identifier
from gateway.sinks.base import (
    BlockedError,
    Destination,
    Loc,
    Offer,
    PermanentError,
    RetryableError,
    SinkContext,
    SinkSettings,
    SinkSpec,
    WriteResult,
)
from gateway.standards import lineprotocol

if TYPE_CHECKING:
    from gateway.plan import SitePlan


class Settings(SinkSettings):
    type: Literal["influxdb"] = "influxdb"
    url: str = Field(description="Base URL of the store, e.g. https://tsdb.example.london")
    org: str
    bucket: str
    token: SecretStr | None = None
    batch_size: int = Field(1000, ge=1, le=100000)
    timeout: PositiveDuration = 10
    gzip: bool = True
    verify_tls: bool = True
    ca_file: Path | None = None
    max_rate: float = Field(20000, gt=0, description="Observations/s cap while catching up.")
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


def _import_client() -> Any:
    """influxdb-client imports numpy when it is installed (for Point/DataFrame helpers this sink
    never uses: it writes line protocol strings). Keep numpy out: ~11 MiB of RSS on a Pi."""
    import sys

    block = "numpy" not in sys.modules
    if block:
        sys.modules["numpy"] = None  # type: ignore[assignment]  # import raises ModuleNotFoundError
    try:
        from influxdb_client.client.influxdb_client import InfluxDBClient
    finally:
        if block:
            del sys.modules["numpy"]
    return InfluxDBClient


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


class InfluxSink:
    def __init__(self, cfg: InfluxConfig, *, site_tags: dict[str, str], guard: EgressGuard,
                 name: str = "influxdb") -> None:  # fmt: skip
        self.name = name
        self.cfg = cfg
        self.batch_size = cfg.batch_size
        self.site_tags = site_tags
        self.guard = guard
        self._client: Any = None
        self._write: Any = None
        self._budget_t = time.monotonic()
        self.quarantined = 0
        self._prefix: dict[tuple[str, str, int], str | None] = {}  # None: use the slow path

    async def start(self) -> None:
        # imported here: influxdb-client is heavy and only needed when this sink is configured
        InfluxDBClient = _import_client()
        from influxdb_client.client.write_api import SYNCHRONOUS

        token = self.cfg.token.get_secret_value() if self.cfg.token else ""
        self._client = InfluxDBClient(
            url=self.cfg.url,
            token=token,
            org=self.cfg.org,
            timeout=int(self.cfg.timeout * 1000),
            enable_gzip=self.cfg.gzip,
            verify_ssl=self.cfg.verify_tls,
            ssl_ca_cert=str(self.cfg.ca_file) if self.cfg.ca_file else None,
            retries=False,  # the sink runner retries, with backoff and jitter, in one place
        )
        self._write = self._client.write_api(write_options=SYNCHRONOUS)

    def _line(self, body: bytes) -> str:
        """`lineprotocol.encode(Observation.from_record(body), site_tags)`, with the constant
        measurement-and-tags prefix cached per Datastream (checked against the reference
        encoder the first time a Datastream is seen)."""
        rec = json.loads(body)
        key = (rec["p"], rec["s"], rec["ds"])
        prefix = self._prefix.get(key, "")
        if prefix == "":
            obs = Observation.from_record(body)
            ref = lineprotocol.encode(obs, self.site_tags)
            tmpl = Observation(obs.datastream_id, obs.sensor_id, obs.property, 0.0, 0.0, 0.0)
            tail = " value=0.0 0"
            line0 = lineprotocol.encode(tmpl, self.site_tags)
            prefix = line0[: -len(tail)] if line0.endswith(tail) else None
            self._prefix[key] = prefix
            if prefix is None or self._fast(prefix, rec) != ref:
                self._prefix[key] = None
            return ref
        if prefix is None:
            return lineprotocol.encode(Observation.from_record(body), self.site_tags)
        return self._fast(prefix, rec)

    @staticmethod
    def _fast(prefix: str, rec: dict[str, Any]) -> str:
        r = rec["r"]
        if r is None:
            fields = "suppressed=true" if rec.get("pa", {}).get("suppressed") else "withheld=true"
        elif isinstance(r, str):
            fields = "state=" + lineprotocol._field(r)
        else:
            fields = "value=" + lineprotocol._field(r)
        samples = rec.get("pa", {}).get("samples") if "pa" in rec else None
        if isinstance(samples, int) and not isinstance(samples, bool):
            fields += f",samples={float(samples)!r}"
        return f"{prefix} {fields} {round(float(rec['t']) * 1000)}"

    def _encode_unguarded(self, rows: Sequence[Row]) -> tuple[list[tuple[int, str]], bool, list[str], list[int]]:
        """Lines for a batch, whether the one-pass identifier scan found anything, the sensors
        of the rows whose text result is outside their Datastream's vocabulary (left out of the
        lines; counted by `_guard` on the loop thread), and the seqs of rows no line can carry
        (refused by the encoder: quarantined, never sent split)."""
        lines: list[tuple[int, str]] = []
        off: list[str] = []
        unencodable: list[int] = []
        for row in rows:
            sensor = self.guard.record_off_vocabulary(row.body)
            if sensor is not None:
                off.append(sensor)
                continue
            try:
                lines.append((row.seq, self._line(row.body)))
            except lineprotocol.LineProtocolError:
                unencodable.append(row.seq)
        suspect = find_identifier("\n".join(line for _, line in lines)) is not None
        return lines, suspect, off, unencodable

    def _guard(self, lines: list[tuple[int, str]], suspect: bool,
               off: Sequence[str] = ()) -> tuple[list[tuple[int, str]], int]:  # fmt: skip
        """Any match on one line is also a match in the joined text ("\n" is in no pattern's
        look-around class), so a clean scan passes every line; otherwise check line by line."""
        for sensor in off:
            self.guard.block_off_vocabulary(sensor)
        if not suspect:
            self.guard.passed += len(lines)
            return lines, len(off)
        kept = [(seq, line) for seq, line in lines if self.guard.check_text(line).ok]
        return kept, len(lines) - len(kept) + len(off)

    def encode(self, rows: Sequence[Row]) -> tuple[list[tuple[int, str]], int]:
        lines, suspect, off, _ = self._encode_unguarded(rows)
        return self._guard(lines, suspect, off)

    async def _post(self, lines: list[str]) -> None:
        from influxdb_client.domain.write_precision import WritePrecision
        from influxdb_client.rest import ApiException

        try:
            await asyncio.to_thread(
                self._write.write, bucket=self.cfg.bucket, record=lines, write_precision=WritePrecision.MS
            )
        except ApiException as e:
            raise classify(int(e.status or 0), e.body) from e
        except (TimeoutError, OSError) as e:
            raise RetryableError(f"store unreachable: {type(e).__name__}") from e
        except Exception as e:  # urllib3's connection errors, without importing urllib3 here
            if type(e).__module__.startswith(("urllib3", "http.client")):
                raise RetryableError(f"store unreachable: {type(e).__name__}") from e
            raise

    async def _pace(self, n: int) -> None:
        """Token bucket: a backlog drains at most `max_rate` observations/s, so live data and
        the uplink are not starved while catching up."""
        now = time.monotonic()
        self._budget_t = max(self._budget_t, now - 1.0) + n / self.cfg.max_rate
        if self._budget_t > now:
            await asyncio.sleep(self._budget_t - now)

    async def write(self, rows: Sequence[Row]) -> WriteResult:
        # encode off the event loop; guard counters are touched on the loop thread only
        encoded, suspect, off, rejected = await asyncio.to_thread(self._encode_unguarded, rows)
        lines, blocked = self._guard(encoded, suspect, off)
        if lines:
            await self._pace(len(lines))
            await self._bisect(lines, rejected)
        self.quarantined += len(rejected)
        return WriteResult(len(rows) - blocked - len(rejected), rejected, blocked)

    async def _bisect(self, lines: list[tuple[int, str]], rejected: list[int]) -> None:
        try:
            await self._post([line for _, line in lines])
        except PermanentError:
            if len(lines) == 1:
                rejected.append(lines[0][0])
                return
            mid = len(lines) // 2
            await self._bisect(lines[:mid], rejected)
            await self._bisect(lines[mid:], rejected)

    async def close(self) -> None:
        if self._client is not None:
            await asyncio.to_thread(self._client.close)
            self._client = None


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
