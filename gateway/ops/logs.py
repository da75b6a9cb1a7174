"""Structured logs: one logfmt line per event, scrubbed of anything shaped like an identifier.

The scrubber is defence in depth: code never logs payload content, but if a library's exception
text carries a MAC or an idTag, the line is redacted before it is written.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable
from typing import TextIO

from gateway.privacy.guard import PATTERNS, normalise

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Secrets masked, then the line NFKC-normalised (as the egress guard sees text) and every
    identifier shape redacted to its kind."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[secret]")
    text = normalise(text)
    for kind, pattern in PATTERNS:
        text = pattern.sub(_redactor(kind), text)
    return text


def _redactor(kind: str) -> Callable[[re.Match[str]], str]:
    return lambda m: _keep_or_redact(m.group(0), kind)


def _keep_or_redact(token: str, kind: str) -> str:
    """Loopback and wildcard addresses are the gateway's own, not anyone's identifier."""
    if kind == "ip_address" and (token.startswith("127.") or token in ("0.0.0.0", "::1", "::")):
        return token
    return f"[{kind}]"


def _quote(v: object) -> str:
    s = str(v)
    if s == "" or any(c in s for c in ' ="\n'):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return s


class LogfmtFormatter(logging.Formatter):
    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [f"ts={ts}.{int(record.msecs):03d}Z", f"level={record.levelname.lower()}",
                 f"logger={record.name}", f"msg={_quote(record.getMessage())}"]  # fmt: skip
        for k, v in record.__dict__.items():
            if k not in _RESERVED and not k.startswith("_"):
                parts.append(f"{k}={_quote(v)}")
        if record.exc_info and record.exc_info[1] is not None:
            e = record.exc_info[1]
            parts.append(f"error={_quote(type(e).__name__ + ': ' + str(e))}")
        return scrub(" ".join(parts), self.secrets)


def setup_logging(level: str = "info", stream: TextIO | None = None,
                  secrets: tuple[str, ...] = ()) -> None:  # fmt: skip
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(LogfmtFormatter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("asyncio", "aiohttp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class Throttle:
    """Log a recurring problem once per period with a count, instead of once per occurrence."""

    def __init__(self, period_s: float = 60.0) -> None:
        self.period = period_s
        self._last: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = {}

    def should_log(self, key: tuple[str, str], now: float) -> int | None:
        """None: stay quiet. Otherwise the number of occurrences suppressed since last time."""
        last = self._last.get(key)
        if last is None or now - last >= self.period:
            self._last[key] = now
            return self._suppressed.pop(key, 0)
        self._suppressed[key] = self._suppressed.get(key, 0) + 1
        return None
