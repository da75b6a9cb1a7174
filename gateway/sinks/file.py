"""The embedded default store: JSON Lines of SensorThings Observations, rotated by size.

Each line is one Observation entity with its `Datastream` id. A batch is flushed and fsynced
before the outbox cursor moves, so a crash can repeat the last batch but never lose it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Literal

from pydantic import Field

from gateway.configtypes import Size
from gateway.outbox import Row
from gateway.privacy.guard import EgressGuard
from gateway.sinks.base import (
    Destination,
    RetryableError,
    SinkContext,
    SinkSettings,
    SinkSpec,
    WriteResult,
    guarded_observations,
)


class Settings(SinkSettings):
    type: Literal["file"] = "file"
    path: Path = Field(Path("observations.jsonl"), description="Relative to the data dir.")
    max_bytes: Size = Field(64 * 2**20, gt=0, description="Rotate when the file reaches this.")
    keep: int = Field(5, ge=1, le=1000, description="Rotated files kept.")


class FileSink:
    batch_size = 2000

    def __init__(self, path: Path, *, max_bytes: int, keep: int, guard: EgressGuard,
                 name: str = "file") -> None:  # fmt: skip
        self.name = name
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


def build(ctx: SinkContext, name: str, settings: Settings) -> FileSink:
    return FileSink(ctx.resolve(settings.path), max_bytes=settings.max_bytes, keep=settings.keep,
                    guard=ctx.guard, name=name)  # fmt: skip


def describe(name: str, settings: Settings, data_dir: Path) -> Destination:
    where = str(settings.path if settings.path.is_absolute() else data_dir / settings.path)
    mib = settings.max_bytes / 2**20
    return Destination(
        name, "file", where,
        "SensorThings Observations as JSON Lines (the embedded default store)",
        on_device=f"{where}: rotated at {mib:g} MiB, {settings.keep} files kept",
    )  # fmt: skip


SPEC: SinkSpec = SinkSpec("file", Settings, build, describe, doc="docs/sinks/file.md")
