"""The embedded default store: JSON Lines of SensorThings Observations, rotated by size.

Each line is one Observation entity with its `Datastream` id. A batch is flushed and fsynced
before the outbox cursor moves, so a crash can repeat the last batch but never lose it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from gateway.outbox import Row
from gateway.privacy.guard import EgressGuard
from gateway.sinks.base import RetryableError, WriteResult, guarded_observations


class FileSink:
    name = "file"
    batch_size = 2000

    def __init__(self, path: Path, *, max_bytes: int, keep: int, guard: EgressGuard) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self.guard = guard
        self._fh: IO[bytes] | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def _open(self) -> IO[bytes]:
        if self._fh is None:
            self._fh = open(self.path, "ab")  # noqa: SIM115 - kept open across batches
        return self._fh

    def _rotate(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        for i in range(self.keep - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        oldest = self.path.with_name(f"{self.path.name}.{self.keep + 1}")
        if oldest.exists():
            oldest.unlink()

    def _write_sync(self, rows: Sequence[Row]) -> WriteResult:
        payloads, blocked = guarded_observations(rows, self.guard)
        out = b"".join(payload + b"\n" for _, payload in payloads)
        try:
            fh = self._open()
            fh.write(out)
            fh.flush()
            os.fsync(fh.fileno())
            if fh.tell() >= self.max_bytes:
                self._rotate()
        except OSError as e:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
            raise RetryableError(f"cannot write {self.path.name}: {e.strerror}") from e
        return WriteResult(len(rows) - blocked, blocked=blocked)

    async def write(self, rows: Sequence[Row]) -> WriteResult:
        return await asyncio.to_thread(self._write_sync, rows)

    async def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
