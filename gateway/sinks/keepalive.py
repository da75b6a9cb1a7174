"""One keep-alive HTTP(S) client for the sinks that talk HTTP (InfluxDB, SensorThings), over the
standard library's `http.client`: no dependency, and nothing held between calls but idle sockets.

- Connections are pooled and reused while idle less than `IDLE_S` (servers and proxies drop
  idle keep-alive connections; reusing one they dropped costs a failed request).
- TLS: the system CAs or a `ca_file`, verification on unless `verify_tls` is off. The context is
  built by `load_tls` (it reads the CA file: callers do it at start, so a missing file shows as a
  start failure) or, failing that, on the first connection.
- No answer raises `Unreachable`, saying whether the request may have reached the server
  (`sent`): a caller whose request is not idempotent must find out what happened before sending
  it again. An *idempotent* request that fails on a reused connection the server had already
  closed (reset, broken pipe, closed without an answer) is sent once more on a fresh one.

Each call blocks: run it on a worker thread. The pool is safe to use from several at once.
"""

from __future__ import annotations

import http.client
import re
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

IDLE_S = 4.0  # a kept-alive connection idle longer than this is not reused (servers drop them)
# how a connection the server closed while it sat idle in the pool shows on the next request
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class Unreachable(Exception):
    """No HTTP answer; `sent` when the request may have reached the server."""

    def __init__(self, message: str, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    location: str | None
    body: bytes

    def json(self) -> Any:
        import json

        return json.loads(self.body) if self.body else None

    def detail(self) -> str:
        """A short, single-line excerpt of the server's message for logs."""
        return re.sub(r"\s+", " ", self.body[:300].decode("utf-8", "replace")).strip()


def tls_context(ca_file: Path | None, verify_tls: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if not verify_tls:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class KeepAlive:
    def __init__(self, url: str, *, timeout: float, headers: dict[str, str],
                 ca_file: Path | None = None, verify_tls: bool = True) -> None:  # fmt: skip
        u = urlsplit(url)
        self.https = u.scheme == "https"
        self.host = u.hostname or ""
        self.port = u.port or (443 if self.https else 80)
        self.origin = f"{u.scheme}://{u.netloc}"
        self.root = u.path.rstrip("/")
        self.timeout = timeout
        self.headers = headers  # sent with every request
        self._own_accept_encoding = any(k.lower() == "accept-encoding" for k in headers)
        self._ca_file = ca_file
        self._verify_tls = verify_tls
        self.tls: ssl.SSLContext | None = None
        self._idle: list[tuple[float, http.client.HTTPConnection]] = []
        self._lock = threading.Lock()

    def load_tls(self) -> None:
        """Build the TLS context now (reads the CA file); nothing to do for plain HTTP."""
        if self.https and self.tls is None:
            self.tls = tls_context(self._ca_file, self._verify_tls)

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """A connection, and whether it was reused from the pool."""
        now = time.monotonic()
        with self._lock:
            while self._idle:
                since, conn = self._idle.pop()
                if now - since < IDLE_S:
                    return conn, True
                conn.close()
        if self.https:
            self.load_tls()
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self.tls), False
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout), False

    def request(self, method: str, target: str, body: bytes | None = None, *,
                idempotent: bool = False) -> Response:  # fmt: skip
        """One request to `target` (a path with its query, already encoded) with the pool's
        headers and the body's Content-Length."""
        while True:
            conn, reused = self._connection()
            sent = False
            try:
                # `Accept-Encoding: identity` unless the caller says otherwise: an answer's text
                # (a store's "could not parse") is read as sent
                conn.putrequest(method, target, skip_accept_encoding=self._own_accept_encoding)
                for k, v in self.headers.items():
                    conn.putheader(k, v)
                conn.putheader("Content-Length", str(len(body) if body is not None else 0))
                conn.endheaders()
                sent = True  # from here on the server may act on the request
                if body is not None:
                    conn.send(body)
                resp = conn.getresponse()
                payload = resp.read()
            except _STALE as e:
                conn.close()
                if reused and idempotent:
                    continue  # an idle connection the server had closed: once more, on a fresh one
                raise Unreachable(_describe(e), sent) from e
            except (OSError, http.client.HTTPException) as e:  # incl. TimeoutError, ssl.SSLError
                conn.close()
                raise Unreachable(_describe(e), sent) from e
            if resp.will_close:
                conn.close()
            else:
                with self._lock:
                    self._idle.append((time.monotonic(), conn))
            return Response(resp.status, resp.getheader("Location"), payload)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for _, conn in idle:
            conn.close()


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
