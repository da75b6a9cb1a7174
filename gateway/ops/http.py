"""Health, metrics and a commissioning page over plain HTTP on localhost. No framework.

`/healthz` answers 200 while the event loop runs; `/readyz` 200 once the pipeline started and
the outbox is open, and while nothing stops data from getting through (503 with one line per
problem otherwise: a task down, a sink blocked, the outbox not writable); `/metrics` is
Prometheus text; `/` is a small status page; `/status.json` the same data for scripts.

Two gates before any route: the `Host` header must name this server (loopback names, the bound
address, or `allowed_hosts`), so a web page in an engineer's browser cannot reach the page by
DNS rebinding; and with a `token`, every request but `/healthz` needs
`Authorization: Bearer <token>` (`check` refuses a non-loopback address without one).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import Callable
from typing import Any

from gateway.ops.statuspage import render_status_page

__all__ = ["OpsServer", "render_status_page"]

log = logging.getLogger("gateway.ops.http")

MAX_REQUEST = 8192
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARDS = frozenset({"0.0.0.0", "::", ""})


def host_of(header: str) -> str:
    """`Host` header value without its port: `[::1]:9108` -> `::1`, `Pi.local:80` -> `pi.local`."""
    h = header.strip().lower()
    if h.startswith("["):
        return h[1:].split("]", 1)[0]
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


class OpsServer:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        metrics: Callable[[], str],
        status: Callable[[], dict[str, Any]],
        ready: Callable[[], list[str]],  # what keeps the gateway from being ready; [] = ready
        token: str | None = None,
        allowed_hosts: frozenset[str] = frozenset(),
    ) -> None:
        self.host, self.port = host, port
        self.metrics, self.status, self.ready = metrics, status, ready
        self.token = token.encode() if token else None
        bound = frozenset() if host in WILDCARDS else frozenset({host.lower()})
        self.allowed_hosts = LOOPBACK_NAMES | bound | frozenset(h.lower() for h in allowed_hosts)
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        sock = self._server.sockets[0].getsockname()
        self.port = sock[1]
        log.info("ops http listening", extra={"address": f"{self.host}:{self.port}"})

    async def run(self) -> None:
        """Serve until cancelled (the supervisor's task `ops`). A listener that stops serving
        raises here, so the supervisor logs it and starts the server again on the same port."""
        if self._server is None or not self._server.is_serving():
            await self.start()
        try:
            while True:
                await asyncio.sleep(1.0)
                if self._server is None or not self._server.is_serving():
                    raise RuntimeError("ops http listener stopped serving")
        finally:
            await self.close()

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            if len(head) > MAX_REQUEST:
                raise ValueError("request too large")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, target, _ = request_line.split(" ", 2)
            path = target.split("?", 1)[0]
            headers: dict[str, str] = {}
            for line in header_lines:
                name, sep, value = line.partition(":")
                if sep:
                    headers.setdefault(name.strip().lower(), value.strip())
            gate = self._gate(path, headers)
            status, ctype, body = gate if gate is not None else self._route(method, path)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            status, ctype, body = 400, "text/plain", b"bad request\n"
        except Exception:
            log.exception("ops http handler failed")
            status, ctype, body = 500, "text/plain", b"internal error\n"
        reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
                  405: "Method Not Allowed", 421: "Misdirected Request",
                  500: "Internal Server Error", 503: "Service Unavailable"}.get(status, "OK")  # fmt: skip
        auth = 'WWW-Authenticate: Bearer realm="street-gateway"\r\n' if status == 401 else ""
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n{auth}"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        with contextlib.suppress(Exception):
            await writer.drain()
            writer.close()
            await writer.wait_closed()

    def _gate(self, path: str, headers: dict[str, str]) -> tuple[int, str, bytes] | None:
        """A foreign or missing Host (DNS rebinding, a stray proxy) is refused with 421; a
        missing or wrong bearer token, when one is configured, with 401."""
        host = headers.get("host")
        if host is None or host_of(host) not in self.allowed_hosts:
            return 421, "text/plain", b"unknown host\n"
        if self.token is not None and path != "/healthz":
            scheme, _, given = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token):
                return 401, "text/plain", b"bearer token required\n"
        return None

    def _route(self, method: str, path: str) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"method not allowed\n"
        if path == "/healthz":
            return 200, "text/plain", b"ok\n"
        if path == "/readyz":
            problems = self.ready()
            if not problems:
                return 200, "text/plain", b"ready\n"
            return 503, "text/plain", "".join(f"not ready: {p}\n" for p in problems).encode()
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4", self.metrics().encode()
        if path == "/status.json":
            return 200, "application/json", json.dumps(self.status(), indent=1).encode()
        if path == "/":
            return 200, "text/html; charset=utf-8", render_status_page(self.status()).encode()
        return 404, "text/plain", b"not found\n"
