"""The OCPP-J tap: chargers connect to the gateway, the gateway connects on to their operator.

For each configured charger (chargeBoxId) the tap accepts `ws(s)://gateway:PORT/<chargeBoxId>`
with subprotocol `ocpp1.6` or `ocpp2.0.1`. During the charger's opening handshake it opens the
operator's CSMS URL + `/<chargeBoxId>`, offering the charger's own subprotocols, and answers the
charger with whatever the operator chose. Then it relays every message unchanged both ways, in
order, one task per direction, including messages it cannot parse. It never pretends to be the
operator: no upstream, no charger connection (503); upstream gone, charger socket closed.
Upstream attempts per charger back off (0.5 s doubling to `upstream_backoff_max`), so a charger
retrying fast does not hammer the operator; a charger that reconnects while its old link still
looks open is taken at once and the old pair is closed. In `standalone` mode the gateway is the
CSMS (`standalone.py`).

Every message seen is handed to `on_frame(charge_box_id, direction, text, subprotocol)` after it
was passed on: synchronous, so the relay never waits for the pipeline (`ingest.py` queues).
Nothing a charger or operator sends can stop the tap: errors end that charger's session only.
Logs and metrics name the sensor id from the config, never a path, header, idTag or payload.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import logging
import random
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote, urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    WebSocketException,
)
from websockets.frames import CloseCode
from websockets.headers import build_www_authenticate_basic, parse_subprotocol
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.typing import Data, Subprotocol

from firmware_bridge import ocppj
from gateway.ops.logs import Throttle
from gateway.ops.metrics import Registry
from gateway.sources.ocpp.settings import InputsOcpp, OcppSensor, UpstreamCredentials
from gateway.sources.ocpp.standalone import StandaloneCsms

log = logging.getLogger("gateway.sources.ocpp")
ws_log = logging.getLogger("gateway.sources.ocpp.websockets")
ws_log.setLevel(logging.WARNING)  # the tap logs connects itself, by sensor id, not by address

BACKOFF_MIN = 0.5
CLOSE_TIMEOUT = 5.0  # seconds for a closing handshake before the TCP connection is dropped
REALM = "street-gateway OCPP"
UNKNOWN = "(unknown)"  # metric label for a handshake not matched to a configured charger


class Direction(StrEnum):
    """As the MQTT relay names its topics: `in` from the charger, `out` towards it."""

    IN = "in"  # charger -> CSMS
    OUT = "out"  # CSMS -> charger


OnFrame = Callable[[str, Direction, str, str], None]
# on_frame(charge_box_id, direction, text, subprotocol): called for every text message, in order


class _PeerNoise(logging.Filter):
    """websockets logs a failed opening handshake (garbage, a TLS hello on plain ws, an 8 KiB
    header line) at ERROR with a traceback that quotes the request: count it instead. Other
    records keep their message but lose the traceback, which may quote what a peer sent."""

    def __init__(self, count: Callable[[], None]) -> None:
        super().__init__()
        self.count = count

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "opening handshake failed":
            self.count()
            return False
        record.exc_info, record.exc_text = None, None
        return True


class TokenBucket:
    """`rate` frames per second sustained, `burst` at once; pure (the caller passes `now`)."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.at = float(burst), now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


@dataclass
class _Session:
    charger: ServerConnection
    upstream: ClientConnection | None
    subprotocol: str
    superseded: bool = False


@dataclass
class _Charger:
    """A configured charger; lives as long as the tap, across its connections."""

    sensor_id: str
    cfg: OcppSensor
    csms: StandaloneCsms | None = None
    session: _Session | None = None
    generation: int = 0  # handshakes started; a newer one wins over an older one still opening
    backoff: float = 0.0
    next_attempt: float = 0.0  # monotonic time before which the upstream is not tried again


@dataclass
class _Opening:
    """What process_request found out, for select_subprotocol and the handler."""

    charger: _Charger
    subprotocol: str  # the version frames are decoded as
    answer: Subprotocol | None  # what the charger is told (the operator's choice)
    upstream: ClientConnection | None
    generation: int


@dataclass
class _End:
    """Why a session ended: counted, and turned into close codes for the other side."""

    by: str  # charger | upstream | flood | too_large | upstream_too_large | superseded
    code: int = CloseCode.NORMAL_CLOSURE
    reason: str = ""


class _UpstreamError(Exception):
    def __init__(self, status: int, retry_after: float | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.retry_after = retry_after


def _sendable(code: int | None) -> bool:
    """May this close code be sent in a close frame (RFC 6455 7.4)?"""
    if code is None:
        return False
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def _close_of(e: ConnectionClosed) -> tuple[int | None, str]:
    return (e.rcvd.code, e.rcvd.reason) if e.rcvd is not None else (None, "")


class OcppTap:
    """One WebSocket server for every configured charger. `async with tap:` serves until the
    block ends; `run()` serves for ever (the source supervisor's Runnable)."""

    name = "ocpp-tap"

    def __init__(
        self,
        inputs: InputsOcpp,
        chargers: Sequence[tuple[str, OcppSensor]],
        on_frame: OnFrame | None,
        metrics: Registry,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.inputs = inputs
        self.on_frame = on_frame
        self.clock = clock
        self.chargers: dict[str, _Charger] = {}
        for sensor_id, cfg in chargers:
            charger = _Charger(sensor_id, cfg)
            if cfg.mode == "standalone":
                charger.csms = StandaloneCsms(_policy(cfg), int(cfg.heartbeat_interval), clock())
            self.chargers[cfg.charge_box_id] = charger
        self._opening: dict[ServerConnection, _Opening] = {}
        self._handshakes = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: Server | None = None
        self._ssl = inputs.tls.context() if inputs.tls is not None else None
        self._upstream_ssl = {
            c.cfg.charge_box_id: _client_ssl(c.cfg) for c in self.chargers.values()
        }
        self.throttle = Throttle()
        self.m_handshakes = metrics.counter(
            "gateway_ocpp_handshakes_total", "Charger handshakes, by sensor and result"
        )
        self.m_connected = metrics.gauge(
            "gateway_ocpp_connected", "1 while the charger is connected through the tap"
        )
        self.m_frames = metrics.counter(
            "gateway_ocpp_frames_total", "Messages relayed, by sensor and direction"
        )
        self.m_bytes = metrics.counter(
            "gateway_ocpp_bytes_total", "Message bytes relayed, by sensor and direction"
        )
        self.m_bad = metrics.counter(
            "gateway_ocpp_bad_frames_total",
            "Messages relayed that are not OCPP-J, by sensor, direction and reason",
        )
        self.m_refused = metrics.counter(
            "gateway_ocpp_refused_total", "Connections cut for oversized frames or floods"
        )
        self.m_upstream = metrics.counter(
            "gateway_ocpp_upstream_failures_total", "Failed upstream attempts, by sensor and reason"
        )
        self.m_ended = metrics.counter(
            "gateway_ocpp_sessions_ended_total", "Charger sessions ended, by sensor and cause"
        )
        self.m_callback = metrics.counter(
            "gateway_ocpp_callback_errors_total", "on_frame raised, by sensor"
        )
        for charger in self.chargers.values():
            self.m_connected.set(0, sensor=charger.sensor_id)
        self._noise = _PeerNoise(
            lambda: self.m_handshakes.inc(sensor=UNKNOWN, result="bad_request")
        )

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        if self._server is None:
            raise AssertionError("the tap is not serving")
        return int(next(iter(self._server.sockets)).getsockname()[1])

    async def __aenter__(self) -> OcppTap:
        cfg = self.inputs
        ws_log.addFilter(self._noise)
        self._server = await serve(
            self._handler,
            cfg.host,
            cfg.port,
            process_request=self._process_request,
            process_response=self._process_response,
            select_subprotocol=self._select_subprotocol,
            compression=None,  # no per-connection zlib state; OCPP frames are small
            max_size=cfg.max_frame_bytes,
            ping_interval=cfg.ping_interval,
            ping_timeout=cfg.ping_interval,
            open_timeout=cfg.handshake_timeout,
            close_timeout=CLOSE_TIMEOUT,
            ssl=self._ssl,
            logger=ws_log,
            server_header=None,
        )
        log.info("ocpp tap listening", extra={"host": cfg.host, "port": self.port, "tls": self._ssl is not None, "chargers": len(self.chargers)})  # fmt: skip
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for opening in list(self._opening.values()):
            await _quietly_close(opening.upstream, CloseCode.GOING_AWAY, "gateway stopping")
        self._opening.clear()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=CLOSE_TIMEOUT)
        for task in list(self._tasks):
            task.cancel()
        ws_log.removeFilter(self._noise)

    async def run(self) -> None:
        async with self:
            await asyncio.get_running_loop().create_future()

    # ------------------------------------------------------------------ handshake

    def _identity(self, request: Request) -> _Charger | None:
        path = urlsplit(request.path).path
        last = path.rstrip("/").rsplit("/", 1)[-1] if path.strip("/") else ""
        return self.chargers.get(unquote(last)) if last else None

    def _authorised(self, charger: _Charger, headers: Headers) -> bool:
        if charger.cfg.auth is None:
            raise AssertionError("charger.cfg.auth is not None")
        header = headers.get("Authorization")
        if header is None:
            return False
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user, sep, password = decoded.partition(b":")
        want = charger.cfg.auth.password.get_secret_value().encode()
        good_user = hmac.compare_digest(user, charger.cfg.charge_box_id.encode())
        return bool(sep) & good_user & hmac.compare_digest(password, want)

    def _reject(
        self, conn: ServerConnection, sensor: str, result: str, status: int, text: str
    ) -> Response:
        self.m_handshakes.inc(sensor=sensor, result=result)
        if self.throttle.should_log((sensor, result), time.monotonic()) is not None:
            log.warning("charger refused", extra={"sensor": sensor, "reason": result, "status": status})  # fmt: skip
        return conn.respond(status, text + "\n")

    async def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        self._handshakes += 1
        try:
            return await self._open(conn, request)
        finally:
            self._handshakes -= 1

    async def _open(self, conn: ServerConnection, request: Request) -> Response | None:
        busy = self._handshakes + sum(c.session is not None for c in self.chargers.values())
        if busy > self.inputs.max_connections:
            return self._reject(conn, UNKNOWN, "busy", HTTPStatus.SERVICE_UNAVAILABLE, "busy")
        charger = self._identity(request)
        if charger is None:
            return self._reject(conn, UNKNOWN, "unknown_charger", HTTPStatus.NOT_FOUND, "unknown charge point")  # fmt: skip
        sid, cfg = charger.sensor_id, charger.cfg
        if cfg.auth is not None and not self._authorised(charger, request.headers):
            response = self._reject(conn, sid, "bad_auth", HTTPStatus.UNAUTHORIZED, "unauthorised")
            response.headers["WWW-Authenticate"] = build_www_authenticate_basic(REALM)
            return response
        try:
            offered = [p for h in request.headers.get_all("Sec-WebSocket-Protocol") for p in parse_subprotocol(h)]  # fmt: skip
        except InvalidHandshake:
            offered = []
        wanted = [p for p in offered if p in cfg.subprotocols]
        if not wanted:
            return self._reject(conn, sid, "no_subprotocol", HTTPStatus.BAD_REQUEST, "no OCPP version in common")  # fmt: skip
        charger.generation += 1
        generation = charger.generation
        await self._supersede(charger)
        upstream: ClientConnection | None = None
        answer: Subprotocol | None = wanted[0]
        if charger.csms is None:
            try:
                upstream = await self._connect_upstream(charger, wanted, request.headers)
            except _UpstreamError as e:
                result = "upstream_down" if e.status >= 500 else "upstream_refused"
                response = self._reject(conn, sid, result, e.status, "operator not reachable" if e.status >= 500 else "refused by the operator")  # fmt: skip
                if e.retry_after is not None:
                    response.headers["Retry-After"] = str(max(1, round(e.retry_after)))
                return response
            answer = upstream.subprotocol
        if generation != charger.generation:  # a newer handshake of this charger took over
            await _quietly_close(upstream, CloseCode.GOING_AWAY, "charger reconnected")
            return self._reject(conn, sid, "superseded", HTTPStatus.CONFLICT, "superseded by a newer connection")  # fmt: skip
        self._opening[conn] = _Opening(charger, answer or wanted[0], answer, upstream, generation)
        self._spawn(self._reap(conn))
        return None

    def _select_subprotocol(self, conn: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:  # fmt: skip
        opening = self._opening.get(conn)
        return opening.answer if opening is not None else None

    async def _process_response(self, conn: ServerConnection, request: Request, response: Response) -> None:  # fmt: skip
        if response.status_code != HTTPStatus.SWITCHING_PROTOCOLS:
            opening = self._opening.pop(conn, None)
            if opening is not None:
                await _quietly_close(opening.upstream, CloseCode.GOING_AWAY, "charger handshake failed")  # fmt: skip

    async def _reap(self, conn: ServerConnection) -> None:
        """An upstream opened for a charger whose handshake then died is closed, not leaked."""
        await conn.wait_closed()
        opening = self._opening.pop(conn, None)
        if opening is not None:
            await _quietly_close(opening.upstream, CloseCode.GOING_AWAY, "charger handshake failed")  # fmt: skip

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _supersede(self, charger: _Charger) -> None:
        """The charger is back while its old link still looks open (a dead TCP connection is
        only noticed by the next ping): drop the old pair first, so the operator never sees
        two connections of one charger."""
        old = charger.session
        if old is None:
            return
        old.superseded = True
        charger.session = None
        self.m_connected.set(0, sensor=charger.sensor_id)
        old.charger.transport.abort()
        await _quietly_close(old.upstream, CloseCode.GOING_AWAY, "charger reconnected")

    async def _connect_upstream(
        self, charger: _Charger, wanted: Sequence[str], headers: Headers
    ) -> ClientConnection:
        cfg, inputs = charger.cfg, self.inputs
        deadline = time.monotonic() + inputs.upstream_connect_timeout
        extra: list[tuple[str, str]] = []
        if isinstance(cfg.upstream_auth, UpstreamCredentials):
            extra.append(("Authorization", _basic(cfg.upstream_auth, cfg.charge_box_id)))
        elif cfg.upstream_auth == "passthrough" and "Authorization" in headers:
            extra.append(("Authorization", headers["Authorization"]))
        while True:
            wait = charger.next_attempt - time.monotonic()
            if wait > 0:
                if time.monotonic() + wait >= deadline:
                    raise _UpstreamError(HTTPStatus.SERVICE_UNAVAILABLE, retry_after=wait)
                await asyncio.sleep(wait)
            reason = "unreachable"
            try:
                async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                    upstream = await connect(
                        cfg.upstream_url(),
                        subprotocols=[Subprotocol(p) for p in wanted],
                        additional_headers=extra,
                        user_agent_header=headers.get("User-Agent"),
                        compression=None,
                        proxy=None,
                        open_timeout=None,  # bounded by the timeout around it
                        ping_interval=inputs.ping_interval,
                        ping_timeout=inputs.ping_interval,
                        close_timeout=CLOSE_TIMEOUT,
                        max_size=inputs.max_upstream_frame_bytes,
                        ssl=self._upstream_ssl[cfg.charge_box_id],
                        logger=ws_log,
                    )
            except InvalidStatus as e:
                status = e.response.status_code
                if 400 <= status < 500 and status not in (408, 429):
                    self.m_upstream.inc(sensor=charger.sensor_id, reason=f"http_{status}")
                    raise _UpstreamError(status) from None  # the operator said no: tell the charger
                reason = f"http_{status}"
            except TimeoutError:
                reason = "timeout"
            except OSError as e:
                reason = "tls" if isinstance(e, ssl.SSLError) else "unreachable"
            except WebSocketException:
                reason = "bad_handshake"
            else:
                if upstream.subprotocol is not None and upstream.subprotocol not in wanted:
                    await _quietly_close(upstream, CloseCode.PROTOCOL_ERROR, "subprotocol")
                    reason = "bad_handshake"
                else:
                    charger.backoff, charger.next_attempt = 0.0, 0.0
                    return upstream
            self.m_upstream.inc(sensor=charger.sensor_id, reason=reason)
            charger.backoff = min(
                max(charger.backoff * 2, BACKOFF_MIN), inputs.upstream_backoff_max
            )
            charger.next_attempt = time.monotonic() + charger.backoff * random.uniform(0.8, 1.2)
            if self.throttle.should_log((charger.sensor_id, "upstream"), time.monotonic()) is not None:  # fmt: skip
                log.warning("operator unreachable, charger refused", extra={"sensor": charger.sensor_id, "reason": reason, "retry_s": round(charger.backoff, 1)})  # fmt: skip
            if time.monotonic() >= deadline:
                raise _UpstreamError(HTTPStatus.SERVICE_UNAVAILABLE, retry_after=charger.backoff)

    # ------------------------------------------------------------------ sessions

    async def _handler(self, conn: ServerConnection) -> None:
        opening = self._opening.pop(conn, None)
        if opening is None:  # the tap is closing, or the handshake raced a reconnect
            await conn.close(CloseCode.TRY_AGAIN_LATER, "try again")
            return
        charger = opening.charger
        if opening.generation != charger.generation:
            await _quietly_close(opening.upstream, CloseCode.GOING_AWAY, "charger reconnected")
            await conn.close(CloseCode.POLICY_VIOLATION, "superseded by a newer connection")
            return
        session = _Session(conn, opening.upstream, opening.subprotocol)
        charger.session = session
        sid = charger.sensor_id
        self.m_handshakes.inc(sensor=sid, result="accepted")
        self.m_connected.set(1, sensor=sid)
        log.info("charger connected", extra={"sensor": sid, "ocpp": opening.subprotocol, "mode": charger.cfg.mode})  # fmt: skip
        end = _End("charger")
        try:
            if session.upstream is None:
                end = await self._serve_standalone(charger, session)
            else:
                end = await self._relay(charger, session, session.upstream)
        finally:
            if session.upstream is not None and session.upstream.state is not State.CLOSED:
                # only when the relay was cancelled midway: never leave the operator hanging
                self._spawn(_quietly_close(session.upstream, CloseCode.GOING_AWAY, ""))
            if session.superseded:
                end = _End("superseded")
            elif charger.session is session:
                charger.session = None
                self.m_connected.set(0, sensor=sid)
            self.m_ended.inc(sensor=sid, cause=end.by)
            log.info("charger disconnected", extra={"sensor": sid, "cause": end.by, "code": end.code})  # fmt: skip

    async def _relay(
        self, charger: _Charger, session: _Session, upstream: ClientConnection
    ) -> _End:
        bucket = TokenBucket(self.inputs.max_frames_per_s, self.inputs.burst, time.monotonic())
        up = asyncio.create_task(self._pump_in(charger, session, upstream, bucket))
        down = asyncio.create_task(self._pump_out(charger, session, upstream))
        try:
            done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (up, down):
                task.cancel()
            results = await asyncio.gather(up, down, return_exceptions=True)
        first = up if up in done else down
        end = results[0] if first is up else results[1]
        if not isinstance(end, _End):  # a bug; the session ends, the tap goes on
            log.error("relay failed", extra={"sensor": charger.sensor_id, "error": type(end).__name__})  # fmt: skip
            end = _End("error", CloseCode.INTERNAL_ERROR, "gateway error")
        if end.by in ("upstream", "upstream_too_large", "error"):
            code = end.code if end.by == "upstream" and _sendable(end.code) else CloseCode.INTERNAL_ERROR  # fmt: skip
            reason = end.reason if end.by == "upstream" and _sendable(end.code) else "operator connection lost"  # fmt: skip
            await _hang_up(session.charger, code, reason)
            await _quietly_close(upstream, CloseCode.GOING_AWAY, "")
        else:
            await _hang_up(session.charger, end.code, end.reason)
            code = end.code if end.by == "charger" and _sendable(end.code) else CloseCode.GOING_AWAY  # fmt: skip
            await _quietly_close(upstream, code, end.reason if end.by == "charger" else "")
        return end

    async def _pump_in(
        self, charger: _Charger, session: _Session, upstream: ClientConnection, bucket: TokenBucket
    ) -> _End:
        """Charger -> operator, with the flood and size limits."""
        sid = charger.sensor_id
        while True:
            try:
                message = await session.charger.recv()
            except ConnectionClosed as e:
                return self._charger_gone(sid, e)
            if not bucket.take(time.monotonic()):
                self.m_refused.inc(sensor=sid, reason="flood")
                self._warn(sid, "flood", "charger flooding, connection cut")
                return _End("flood", CloseCode.POLICY_VIOLATION, "rate limit")
            try:
                await upstream.send(message)
            except ConnectionClosed as e:
                code, reason = _close_of(e)
                return _End("upstream", code or CloseCode.ABNORMAL_CLOSURE, reason)
            self._seen(charger, session, Direction.IN, message)

    async def _pump_out(self, charger: _Charger, session: _Session, upstream: ClientConnection) -> _End:  # fmt: skip
        """Operator -> charger."""
        sid = charger.sensor_id
        while True:
            try:
                message = await upstream.recv()
            except ConnectionClosed as e:
                if e.sent is not None and e.sent.code == CloseCode.MESSAGE_TOO_BIG:
                    self.m_refused.inc(sensor=sid, reason="upstream_too_large")
                    self._warn(sid, "upstream_too_large", "operator frame over the limit, connection cut")  # fmt: skip
                    return _End("upstream_too_large")
                code, reason = _close_of(e)
                return _End("upstream", code or CloseCode.ABNORMAL_CLOSURE, reason)
            try:
                await session.charger.send(message)
            except ConnectionClosed as e:
                return self._charger_gone(sid, e)
            self._seen(charger, session, Direction.OUT, message)

    def _charger_gone(self, sid: str, e: ConnectionClosed) -> _End:
        if e.sent is not None and e.sent.code == CloseCode.MESSAGE_TOO_BIG:
            self.m_refused.inc(sensor=sid, reason="too_large")
            self._warn(sid, "too_large", "charger frame over max_frame_bytes, connection cut")
            return _End("too_large", CloseCode.MESSAGE_TOO_BIG, "frame too large")
        code, reason = _close_of(e)
        return _End("charger", code or CloseCode.ABNORMAL_CLOSURE, reason)

    async def _serve_standalone(self, charger: _Charger, session: _Session) -> _End:
        if charger.csms is None:
            raise AssertionError("charger.csms is not None")
        sid, conn = charger.sensor_id, session.charger
        bucket = TokenBucket(self.inputs.max_frames_per_s, self.inputs.burst, time.monotonic())
        end: _End
        while True:
            try:
                message = await conn.recv()
            except ConnectionClosed as e:
                end = self._charger_gone(sid, e)
                break
            if not bucket.take(time.monotonic()):
                self.m_refused.inc(sensor=sid, reason="flood")
                self._warn(sid, "flood", "charger flooding, connection cut")
                end = _End("flood", CloseCode.POLICY_VIOLATION, "rate limit")
                break
            parsed = self._seen(charger, session, Direction.IN, message)
            if not isinstance(message, str):
                continue
            reply = charger.csms.reply(parsed, message, session.subprotocol, self.clock())
            if reply is None:
                continue
            try:
                await conn.send(reply)
            except ConnectionClosed as e:
                end = self._charger_gone(sid, e)
                break
            self._seen(charger, session, Direction.OUT, reply)
        await _hang_up(conn, end.code, end.reason)
        return end

    def _seen(self, charger: _Charger, session: _Session, direction: Direction, message: Data) -> ocppj.Frame | str:  # fmt: skip
        """Count a relayed message, sort it, and hand it to on_frame."""
        sid = charger.sensor_id
        self.m_frames.inc(sensor=sid, direction=direction.value)
        self.m_bytes.inc(len(message), sensor=sid, direction=direction.value)
        if not isinstance(message, str):
            self.m_bad.inc(sensor=sid, direction=direction.value, reason="binary")
            self._warn(sid, "binary", "binary WebSocket message relayed (OCPP-J is text)")
            return "binary"
        parsed = ocppj.parse(message)
        if isinstance(parsed, str):
            self.m_bad.inc(sensor=sid, direction=direction.value, reason=parsed)
            self._warn(sid, parsed, "message that is not OCPP-J relayed unchanged")
        if self.on_frame is not None:
            try:
                self.on_frame(charger.cfg.charge_box_id, direction, message, session.subprotocol)
            except Exception as e:  # the pipeline's trouble must not cut a charger off
                self.m_callback.inc(sensor=sid)
                self._warn(sid, "callback", f"frame consumer raised {type(e).__name__}")
        return parsed

    def _warn(self, sid: str, reason: str, message: str) -> None:
        n = self.throttle.should_log((sid, reason), time.monotonic())
        if n is not None:
            log.warning(message, extra={"sensor": sid, "reason": reason, "suppressed_since_last": n})  # fmt: skip


def _policy(cfg: OcppSensor) -> Callable[[str], bool]:
    """standalone Authorize: everyone, or the local list (idTags are case-insensitive)."""
    if cfg.authorize == "accept_all":
        return lambda tag: True
    tags = cfg.local_list
    return lambda tag: tag.casefold() in tags


def _basic(creds: UpstreamCredentials, charge_box_id: str) -> str:
    user = creds.username or charge_box_id
    token = base64.b64encode(f"{user}:{creds.password.get_secret_value()}".encode()).decode()
    return f"Basic {token}"


def _client_ssl(cfg: OcppSensor) -> ssl.SSLContext | None:
    """wss:// upstream: certificate and host name verified, against `upstream_ca_file` if set."""
    if cfg.upstream is None or not cfg.upstream.startswith("wss://"):
        return None
    ctx = ssl.create_default_context(cafile=cfg.upstream_ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


async def _quietly_close(conn: ServerConnection | ClientConnection | None, code: int, reason: str) -> None:  # fmt: skip
    """Close, bounded by CLOSE_TIMEOUT inside websockets; a peer already gone is no error."""
    if conn is None:
        return
    with contextlib.suppress(Exception):
        await conn.close(code if _sendable(code) else CloseCode.INTERNAL_ERROR, reason[:120])


async def _hang_up(conn: ServerConnection, code: int, reason: str) -> None:
    """Close a charger's socket while reading and discarding what it still sends: a charger
    cut off mid-flood has frames queued ahead of its close frame, and unread they would hold
    the closing handshake until its timeout."""

    async def drain() -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await conn.recv()

    drainer = asyncio.get_running_loop().create_task(drain())
    try:
        await _quietly_close(conn, code, reason)
    finally:
        drainer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await drainer
