"""Loading the firmware and network-server vectors in tests/data/ (never /work/shared)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent.parent / "data"


def load(*parts: str) -> Any:
    return json.loads(DATA.joinpath(*parts).read_text())


def payload_bytes(text: str) -> bytes:
    """Vector payloads are text; non-UTF-8 bytes are stored as surrogate escapes."""
    return text.encode("utf-8", "surrogateescape")
