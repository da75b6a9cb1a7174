"""Append-only JSON Lines files the sinks keep in the data dir (the file store, the SensorThings
sink's parked rows): what they share about a write that was cut short."""

from __future__ import annotations

import os
from pathlib import Path


def trim_torn_line(path: Path) -> int:
    """Cut what follows the last newline of an append-only JSON Lines file, and return how many
    bytes that was. Such a tail is the start of a line whose write a crash, a power cut or a full
    disk interrupted; the batch it belonged to was not acknowledged (a cursor moves only after the
    fsync of whole lines), so it is written again whole. Left in place, the fragment would glue
    itself onto the first line appended after it and spoil that line too."""
    try:
        fh = open(path, "r+b")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return 0
    with fh:
        size = end = fh.seek(0, os.SEEK_END)
        keep = 0
        while end > 0:
            start = max(0, end - 65536)
            fh.seek(start)
            nl = fh.read(end - start).rfind(b"\n")
            if nl >= 0:
                keep = start + nl + 1
                break
            end = start
        if keep == size:
            return 0
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
        return size - keep
