"""The embedded default store: JSON Lines, rotated by size.

Each line is one message of the configured format: a SensorThings Observation with its
`Datastream` id (the default), a SenML pack (one per sensor and batch) or an NGSI-LD entity. A
batch is flushed and fsynced before the outbox cursor moves, so a crash can repeat the last
batch but never lose it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal

from pydantic import Field

from gateway.configtypes import Size
from gateway.outbox import Row
from gateway.privacy.guard import EgressGuard
from gateway.sinks.base import (
    BlockedError,
    Destination,
    RetryableError,
    SinkContext,
    SinkSettings,
    SinkSpec,
    WriteResult,
    guarded_messages,
    guarded_observations,
)
from gateway.sinks.jsonlines import trim_torn_line
from gateway.standards.formats import DESCRIBED, Format

if TYPE_CHECKING:
    from gateway.plan import SitePlan

log = logging.getLogger("gateway.sinks.file")


class Settings(SinkSettings):
    type: Literal["file"] = "file"
    path: Path = Field(Path("observations.jsonl"), description="Relative to the data dir.")
    max_bytes: Size = Field(64 * 2**20, gt=0, description="Rotate when the file reaches this.")
    keep: int = Field(5, ge=1, le=1000, description="Rotated files kept.")
    format: Format = Field("sensorthings", description="sensorthings, senml or ngsi-ld (docs/sinks/file.md).")


class FileSink:
    # rows per write (and fsync) when more wait than a flush interval gathers: flat out, or
    # draining a backlog. 2,000 held 0.9-1.9 MiB more at peak with every sink flat out, for no
    # more readings/s (bench/RESULTS-issue19.md, phase 11); at a street's rates a write holds a
    # flush interval's rows, far fewer.
    batch_size = 500

    def __init__(self, path: Path, *, max_bytes: int, keep: int, guard: EgressGuard,
                 name: str = "file", fmt: Format = "sensorthings",
                 plan: SitePlan | None = None) -> None:  # fmt: skip
        if fmt != "sensorthings" and plan is None:
            raise ValueError("SenML and NGSI-LD need the site plan")
        self.name = name
        self.format: Format = fmt
        self.plan = plan
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self.guard = guard
        self._fh: IO[bytes] | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def _open(self) -> IO[bytes]:
        if self._fh is None:
            # after a crash or a failed write the file may end in part of a line: its batch is
            # written again whole, so the part goes first
            cut = trim_torn_line(self.path)
            if cut:
                log.warning("the file ended in part of a line from an interrupted write; cut it, "
                            "its batch is written again", extra={"sink": self.name, "bytes": cut})  # fmt: skip
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

    def write_local(self, rows: Sequence[Row]) -> WriteResult:
        """The write, blocking (guard, serialise, write, fsync): the sink runner runs a small
        batch on the outbox's thread with the cursor advance after it, one hand-off for both."""
        if self.format == "sensorthings":
            payloads, blocked = guarded_observations(rows, self.guard)
            out = b"".join(payload + b"\n" for _, payload in payloads)
        else:
            if self.plan is None:
                raise AssertionError("self.plan is not None")
            messages, blocked = guarded_messages(rows, self.guard, self.format, self.plan)
            out = b"".join(m.payload + b"\n" for m in messages)
        try:
            fh = self._open()
            start = fh.tell()
            try:
                fh.write(out)
                fh.flush()
                os.fsync(fh.fileno())
            except OSError:
                # a full disk, say: what reached the file of this batch goes, the retry writes it whole
                self._close_quietly()
                with contextlib.suppress(OSError):
                    os.truncate(self.path, start)  # if not, the next open cuts at least a part-line
                raise
            if fh.tell() >= self.max_bytes:
                self._rotate()
        except OSError as e:
            self._close_quietly()
            if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise BlockedError("forbidden", f"cannot write {self.path.name}: {e.strerror}") from e
            raise RetryableError(f"cannot write {self.path.name}: {e.strerror}") from e
        return WriteResult(len(rows) - blocked, blocked=blocked)

    async def write(self, rows: Sequence[Row]) -> WriteResult:
        return await asyncio.to_thread(self.write_local, rows)

    def _close_quietly(self) -> None:
        """Let go of the file after a failed write; closing may fail the same way (a full disk
        cannot take the buffered rest), and that is already being reported."""
        if self._fh is not None:
            fh, self._fh = self._fh, None
            with contextlib.suppress(OSError):
                fh.close()

    async def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def build(ctx: SinkContext, name: str, settings: Settings) -> FileSink:
    return FileSink(ctx.resolve(settings.path), max_bytes=settings.max_bytes, keep=settings.keep,
                    guard=ctx.guard, name=name, fmt=settings.format, plan=ctx.plan)  # fmt: skip


def describe(name: str, settings: Settings, data_dir: Path) -> Destination:
    where = str(settings.path if settings.path.is_absolute() else data_dir / settings.path)
    mib = settings.max_bytes / 2**20
    return Destination(
        name, "file", where,
        f"{DESCRIBED[settings.format].label} as JSON Lines (the embedded default store)",
        on_device=f"{where}: rotated at {mib:g} MiB, {settings.keep} files kept",
    )  # fmt: skip


SPEC: SinkSpec = SinkSpec("file", Settings, build, describe, doc="docs/sinks/file.md")
