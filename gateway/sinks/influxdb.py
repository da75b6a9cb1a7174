"""City time-series store sink: InfluxDB v2 write API through `influxdb-client`'s async client.

Works against InfluxDB 2.x and VictoriaMetrics (`/api/v2/write`). Network errors, 5xx and 429
are retried by the runner with backoff; a 4xx rejects the batch, which is bisected to quarantine
only the bad points. Writes are idempotent: the same series and timestamp overwrite.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from gateway.config import InfluxSink as InfluxConfig
from gateway.model import Observation
from gateway.outbox import Row
from gateway.privacy.guard import EgressGuard
from gateway.sinks.base import PermanentError, RetryableError, WriteResult
from gateway.standards import lineprotocol


class InfluxSink:
    name = "influxdb"

    def __init__(self, cfg: InfluxConfig, *, site_tags: dict[str, str], guard: EgressGuard) -> None:
        self.cfg = cfg
        self.batch_size = cfg.batch_size
        self.site_tags = site_tags
        self.guard = guard
        self._client: Any = None
        self._write: Any = None
        self._budget_t = time.monotonic()
        self.quarantined = 0

    async def start(self) -> None:
        # imported here: influxdb-client is heavy and only needed when this sink is configured
        from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

        token = self.cfg.token.get_secret_value() if self.cfg.token else ""
        self._client = InfluxDBClientAsync(
            url=self.cfg.url,
            token=token,
            org=self.cfg.org,
            timeout=int(self.cfg.timeout * 1000),
            enable_gzip=self.cfg.gzip,
            verify_ssl=self.cfg.verify_tls,
            ssl_ca_cert=str(self.cfg.ca_file) if self.cfg.ca_file else None,
        )
        self._write = self._client.write_api()

    def encode(self, rows: Sequence[Row]) -> tuple[list[tuple[int, str]], int]:
        lines: list[tuple[int, str]] = []
        blocked = 0
        for row in rows:
            line = lineprotocol.encode(Observation.from_record(row.body), self.site_tags)
            if not self.guard.check_text(line).ok:
                blocked += 1
                continue
            lines.append((row.seq, line))
        return lines, blocked

    async def _post(self, lines: list[str]) -> None:
        from influxdb_client.client.write_api import WritePrecision
        from influxdb_client.rest import ApiException

        try:
            await self._write.write(
                bucket=self.cfg.bucket, record=lines, write_precision=WritePrecision.MS
            )
        except ApiException as e:
            status = int(e.status or 0)
            if status == 429 or status >= 500 or status == 0:
                raise RetryableError(f"store answered HTTP {status}") from e
            raise PermanentError(f"store rejected the batch with HTTP {status}") from e
        except (TimeoutError, OSError) as e:
            raise RetryableError(f"store unreachable: {type(e).__name__}") from e
        except Exception as e:  # aiohttp.ClientError and friends, without importing aiohttp
            if type(e).__module__.startswith("aiohttp"):
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
        lines, blocked = self.encode(rows)
        rejected: list[int] = []
        if lines:
            await self._pace(len(lines))
            await self._bisect(lines, rejected)
        self.quarantined += len(rejected)
        return WriteResult(len(lines) - len(rejected), rejected, blocked)

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
            await self._client.close()
            self._client = None
