"""The one place that builds MQTT connections (aiomqtt on paho-mqtt) for sources and sinks.

aiomqtt gives the asyncio shape (async context manager, async message iterator) but exposes no
manual acknowledgement; paho-mqtt 2.x does. `AckingClient` switches paho to manual ack so a
message is PUBACKed only after its reading is committed (`ack(message)`). An ack from a previous
connection is a no-op (paho refuses it when disconnected): the broker redelivers the message to
the persistent session instead, which is at-least-once, never loss.

Back-pressure: Mosquitto (2.0.11) sends a resumed persistent session its whole queue, far past
`max_inflight_messages` and MQTT 5's Receive Maximum (bench/bench_broker_inflight.py), so acking
after commit does not bound what the gateway holds. `AckingClient` stops reading the socket while
`max_pending` received messages wait to be taken (and resumes at half that): the rest of a backlog
stays in the broker and the kernel's socket buffer, and the gateway's memory stays flat. A pause
longer than the keepalive ends in a reconnect (paho misses the PINGRESP); unacknowledged messages
are then redelivered, never lost.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import ssl
import struct
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import aiomqtt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.matcher import MQTTMatcher

from gateway.configtypes import MqttBroker

if TYPE_CHECKING:
    from gateway.sources.mqtt import Delivery

MAX_PENDING = 256  # received messages waiting to be taken: above it the socket is not read


class _PendingQueue(asyncio.Queue[aiomqtt.Message]):
    """aiomqtt's queue of received messages, telling its client when it has drained."""

    low = 0
    peak = 0  # the most messages it ever held
    drained: Callable[[], None] = staticmethod(lambda: None)

    def _put(self, item: aiomqtt.Message) -> None:
        queue = self._queue  # type: ignore[attr-defined]  # asyncio.Queue's deque: its _put, inline
        queue.append(item)
        if len(queue) > self.peak:
            self.peak = len(queue)

    def _get(self) -> aiomqtt.Message:  # asyncio.Queue's hook under get() and get_nowait()
        item: aiomqtt.Message = super()._get()
        if self.qsize() <= self.low:
            self.drained()
        return item


class _Filters(MQTTMatcher):
    """paho's per-topic callbacks (`message_callback_add`, which aiomqtt never uses): walked for
    every message received, a generator per topic level; an empty trie matches nothing."""

    def iter_match(self, topic: str) -> Iterator[Any]:
        root = self._root
        if not root._children and root._content is None:
            return iter(())
        return super().iter_match(topic)  # type: ignore[no-untyped-call,no-any-return]


class _Batch:
    """One `AckingClient.publish_all`: its messages as PUBLISH packets less their packet ids
    (`heads[i] + mid + payloads[i]`), how many are sent and acknowledged, and the future that
    is done when the broker has acknowledged the last one."""

    __slots__ = ("acked", "done", "heads", "payloads", "sent")

    def __init__(self, heads: list[bytes], payloads: list[bytes], done: asyncio.Future[None]) -> None:
        self.heads, self.payloads, self.done = heads, payloads, done
        self.sent = self.acked = 0


class QuietLossClient(aiomqtt.Client):
    """aiomqtt's client, but a lost connection leaves asyncio no exception to log.

    aiomqtt sets its `_disconnected` future's exception (MqttCodeError "Unexpected disconnection")
    when the broker goes away, and only its message iterator retrieves it: a publisher's or
    `publish_all`'s wait does not, `__aexit__` returns early once it is done, and each connection
    gets a new future. So every lost connection left an exception nobody retrieved, logged by
    asyncio at ERROR ("Future exception was never retrieved") whenever the garbage collector
    reached it: in whatever test or hour that was (CI failed a test that asserts a quiet log on
    another test's lost connection). The loss is reported by whoever sees it (a sink retries and
    logs, a source or a simulated device reconnects): here the future aiomqtt assigns to
    `_disconnected` is a `_LossFuture`, whose exception is marked retrieved as it is set (there
    and then: a done callback would run only if the loop ran again). Awaiting it still raises it."""

    @property
    def _disconnected(self) -> asyncio.Future[None]:
        return self.__disconnected

    @_disconnected.setter
    def _disconnected(self, future: asyncio.Future[None]) -> None:
        self.__disconnected = _LossFuture.replacing(future)


class AckingClient(QuietLossClient):
    def __init__(self, *args: Any, manual_ack: bool = False, max_pending: int = MAX_PENDING,
                 on_pause: Callable[[], None] = lambda: None, **kwargs: Any) -> None:  # fmt: skip
        super().__init__(*args, queue_type=_PendingQueue, **kwargs)
        if manual_ack:
            self._client.manual_ack_set(True)
        self._client._on_message_filtered = _Filters()  # type: ignore[no-untyped-call]
        self.max_pending = max_pending
        self.paused = False  # not reading the socket: `max_pending` messages wait
        self.on_pause = on_pause
        self._fd: int | None = None
        self._acks: list[int] = []  # packet ids acknowledged, their PUBACKs not yet queued
        self._batches: list[_Batch] = []  # publish_all calls waiting for PUBACKs, oldest first
        self._outgoing: dict[int, _Batch] = {}  # their packet ids sent and not yet acknowledged
        queue = self._queue
        if not isinstance(queue, _PendingQueue):
            raise AssertionError("isinstance(queue, _PendingQueue)")
        queue.low, queue.drained = max_pending // 2, self._resume
        _read_in_bulk(self._client, self)
        _write_in_bulk(self._client)

    # aiomqtt registers a reader of its own here; this one is the same callback, kept so that
    # the reader can be removed and added again (back-pressure)
    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        fd = sock.fileno()

        def opened() -> None:  # on the loop: paho calls this from the connecting thread
            self._fd, self.paused = fd, False
            self._loop.add_reader(fd, self._readable)
            self._misc_task = self._loop.create_task(self._misc_loop())

        self._loop.call_soon_threadsafe(opened)

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._fd = None
        super()._on_socket_close(client, userdata, sock)

    def _readable(self) -> None:
        """aiomqtt's reader callback: read what is there; a failure is a lost connection."""
        try:
            while True:
                self._client.loop_read()
                pending = getattr(self._client._sock, "pending", None)
                if not self.paused and pending is not None and pending() > 0:  # TLS: decrypted bytes left
                    continue
                break
        except Exception as exc:
            if not self._disconnected.done():
                self._disconnected.set_exception(exc)

    def _pause(self) -> None:
        if not self.paused and self._fd is not None:
            self._loop.remove_reader(self._fd)
            self.paused = True
            self.on_pause()

    def _resume(self) -> None:
        if self.paused:
            self.paused = False
            if self._fd is not None:
                self._loop.add_reader(self._fd, self._readable)
                self._loop.call_soon(self._readable)  # what was read before the pause

    def queued(self) -> list[aiomqtt.Message]:
        """Messages already received, without aiomqtt's one-task-per-message iteration (which
        costs more than decoding them at thousands of messages/s)."""
        out: list[aiomqtt.Message] = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                return out

    def ack(self, message: aiomqtt.Message | Delivery) -> None:
        """Acknowledge `message` (with manual acknowledgement: once its reading is committed).
        The PUBACKs of one group commit leave together: each is noted here and, once the
        committer has acknowledged the group (its next await), `_send_acks` queues them all as
        one packet of paho's PUBACK bytes, in the order acknowledged."""
        if message.qos == 1 and self._client._manual_ack:
            self._acks.append(message.mid)
            if len(self._acks) == 1:
                self._loop.call_soon(self._send_acks)
        elif message.qos > 0:
            self._client.ack(message.mid, message.qos)

    async def publish_all(self, messages: Sequence[tuple[str, bytes]], *, timeout: float) -> None:
        """Publish every (topic, payload) at QoS 1, not retained, in order, and return once the
        broker has acknowledged them all. TimeoutError if it has not in `timeout`; MqttError if
        the connection is or goes down first; ValueError for a topic or payload paho refuses.

        A feed is hundreds of messages a second, and paho's `publish` costs more per message
        than the rest of the gateway does per reading (issue 19): an MQTTMessage, an info with
        its lock and condition, a log call, a send() and a self-pipe write each, and per PUBACK
        a decode into MQTT 5 reason-code and property objects and a walk of every message in
        flight. aiomqtt's `publish` adds a task, an event and a timer, and above 10 pending
        logs a WARNING per message. So here (MQTT 3.1.1, which `make_client` speaks) the batch
        is written as paho's `_send_publish` writes a QoS 1 PUBLISH, the packets of up to
        paho's `max_inflight_messages` at a time joined in one queued write, with packet ids
        from paho's own counter; their PUBACKs are taken in bulk off the read buffer
        (`_take_pubacks`), and each brings the next packet of the batch. A PUBACK of a packet
        id not sent here (paho's own `publish`: the state topic, the entities) is left to paho.
        tests/unit/test_mqtt_internals.py holds the bytes equal to paho's."""
        client = self._client
        if client._protocol == mqtt.MQTTv5:
            raise AssertionError("publish_all writes MQTT 3.1.1 packets; make_client connects so")
        heads: list[bytes] = []
        payloads: list[bytes] = []
        for topic, payload in messages:
            if not topic:
                raise ValueError("Invalid topic.")  # paho's checks and messages, as `publish` has them
            raw = topic.encode()
            client._raise_for_invalid_topic(raw)  # a wildcard, over 65535 bytes
            if len(payload) > MAX_REMAINING_LENGTH:
                raise ValueError("Payload too large.")
            heads.append(_publish_head(raw, len(payload)))
            payloads.append(payload)
        if not heads:
            return
        if client._sock is None:
            raise aiomqtt.MqttCodeError(MQTTErrorCode.MQTT_ERR_NO_CONN, "Could not publish message")
        batch = _Batch(heads, payloads, self._loop.create_future())
        self._batches.append(batch)
        lost = self._disconnected
        try:
            self._send_more()
            await asyncio.wait((batch.done, lost), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if batch.done.done():
                return
            if lost.done():
                raise aiomqtt.MqttError(
                    f"connection lost with {len(heads) - batch.acked} messages unacknowledged"
                ) from (None if lost.cancelled() else lost.exception())
            raise TimeoutError(f"{len(heads) - batch.acked} of {len(heads)} messages not acknowledged in {timeout} s")
        finally:
            self._batches.remove(batch)
            for mid in [m for m, b in self._outgoing.items() if b is batch]:
                del self._outgoing[mid]  # a late PUBACK of these goes to paho, which ignores it
            if not batch.done.done():
                batch.done.cancel()

    def _send_more(self) -> None:
        """Queue the next packets of the waiting batches, oldest first, up to paho's in-flight
        window, as one write."""
        client = self._client
        window = client._max_inflight_messages or 65535
        room = window - len(self._outgoing)
        if room <= 0 or client._sock is None:
            return
        chunks: list[bytes] = []
        outgoing, next_mid = self._outgoing, client._mid_generate
        for batch in self._batches:
            n = min(room, len(batch.heads) - batch.sent)
            for i in range(batch.sent, batch.sent + n):
                mid = next_mid()
                outgoing[mid] = batch
                chunks += (batch.heads[i], _MID.pack(mid), batch.payloads[i])
            batch.sent += n
            room -= n
            if room == 0:
                break
        if chunks:
            client._packet_queue(mqtt.PUBLISH, b"".join(chunks), 0, 1)

    def _acked(self, batches: set[_Batch]) -> None:
        """PUBACKs came for packets of `batches`: finish those now acknowledged whole, send more."""
        for batch in batches:
            if batch.acked == len(batch.heads) and not batch.done.done():
                batch.done.set_result(None)
        self._send_more()

    def _send_acks(self) -> None:
        mids, self._acks = self._acks, []
        client = self._client
        if client._sock is None or not mids:
            return  # the connection is gone: the broker sends these messages again
        # paho's `_send_puback` of each, joined: what `_write_in_bulk` would send in one piece
        client._packet_queue(mqtt.PUBACK, b"".join(map(_puback, mids)), 0, 1)


class _LossFuture(asyncio.Future[None]):
    """The future of a connection's end (`QuietLossClient`): its exception is marked retrieved
    as it is set, so asyncio never logs it as lost; whoever awaits it still gets it."""

    def set_exception(self, exception: type | BaseException, /) -> None:
        super().set_exception(exception)
        self.exception()

    @classmethod
    def replacing(cls, future: asyncio.Future[None]) -> asyncio.Future[None]:
        """One of these in place of aiomqtt's fresh `asyncio.Future()`, on the same loop (aiomqtt
        assigns a new one and only then waits on it); a future already done, or not a plain
        asyncio.Future, is kept as it is."""
        if type(future) is not asyncio.Future or future.done():
            return future
        return cls(loop=future.get_loop())


MAX_PACKETS_PER_WAKEUP = 5000


def _read_in_bulk(client: mqtt.Client, owner: AckingClient | None = None) -> None:
    """paho reads a packet in three small recv() calls and one packet per readable event, which
    at thousands of messages/s costs more than everything else the gateway does. Give this
    client a buffered recv (one 64 KiB read serves many packets) and a loop_read that processes
    every packet already received, so one wake-up drains the socket. With `owner`, reading
    stops while `owner.max_pending` messages wait in its queue (`AckingClient._pause`)."""
    raw_recv = client._sock_recv
    buf = bytearray()
    # PUBLISH packets are taken from `buf` here, many per call (`_take_publishes`), when they
    # would reach `owner`'s queue through paho and aiomqtt anyway (MQTT 3.1.1, QoS 0 and 1)
    take: Callable[[], int] | None = None
    if owner is not None and client._protocol != mqtt.MQTTv5:
        publishes, pubacks = _take_publishes(client, owner, buf), _take_pubacks(client, owner, buf)

        def take_either() -> int:
            return publishes() or pubacks()

        take = take_either

    def buffered_recv(bufsize: int) -> bytes:
        if not buf:
            data = raw_recv(65536)  # BlockingIOError propagates: paho treats it as "no data"
            if not data:
                return data  # connection closed
            buf.extend(data)
        out = bytes(buf[:bufsize])
        del buf[:bufsize]
        return out

    def loop_read(max_packets: int = 1) -> MQTTErrorCode:
        for _ in range(MAX_PACKETS_PER_WAKEUP):
            if client._sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            if owner is not None and owner._queue.qsize() >= owner.max_pending:
                owner._pause()  # resumed, with what `buf` holds, when the queue has drained
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            if take is not None and client._in_packet["command"] == 0:  # (paho is not half-way
                # through a packet of its own) read first, and a PUBACK whole: one of `publish_all`
                # must not reach paho, which knows nothing of its packet id and would drop it
                while not buf or (buf[0] == _PUBACK and len(buf) < 4):
                    try:
                        data = raw_recv(65536)
                    except BlockingIOError:
                        return MQTTErrorCode.MQTT_ERR_SUCCESS  # the rest is not there yet
                    except OSError:
                        break  # paho reads again below and reports the lost connection its way
                    if not data:
                        break  # closed: likewise
                    buf.extend(data)
                if buf and take():
                    continue
            rc = client._packet_read()
            if rc > 0:
                return client._loop_rc_handle(rc)
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN and not buf:
                return MQTTErrorCode.MQTT_ERR_SUCCESS
        if buf and (owner is None or not owner.paused):  # bounded per wake-up; the rest next turn
            asyncio.get_running_loop().call_soon(loop_read)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    client._sock_recv = buffered_recv  # type: ignore[method-assign]
    client.loop_read = loop_read  # type: ignore[method-assign]


TOPICS_KEPT = 4096  # distinct topics whose aiomqtt Topic is kept (devices reuse a few)


def _take_publishes(client: mqtt.Client, owner: AckingClient, buf: bytearray) -> Callable[[], int]:
    """A function that takes every whole MQTT 3.1.1 PUBLISH of QoS 0 or 1 at the head of `buf`
    (up to the room left in `owner`'s queue) and puts each in the queue as the aiomqtt Message
    paho and aiomqtt would have made of it (`_handle_publish`, `Message._from_paho_message`):
    same topic, payload, QoS, retain flag and packet id, in the same order; returns how many.

    It stops at the first packet it does not take, which paho then reads as before: any other
    packet type, QoS 2, a packet not yet wholly received, anything malformed (an empty topic, a
    length past its packet, a topic that is not UTF-8, a remaining length over four bytes).
    paho would take a QoS 0 or 1 PUBLISH with manual acknowledgement to `on_message` and
    nothing else (no state, no reply), and aiomqtt's `on_message` only puts it in the queue; so
    taking it here is the same, without paho's per-packet reads, dicts, struct formats, log
    calls and locks (at thousands of messages/s those cost more than decoding the payload).
    tests/unit/test_mqtt_internals.py holds the two ways equal on random streams."""
    from aiomqtt.topic import Topic

    queue = owner._queue
    topics: dict[bytes, Topic] = {}
    message = aiomqtt.Message
    filters = client._on_message_filtered

    def take() -> int:
        if client._on_message != owner._on_message or filters._root._children:
            return 0  # a callback other than aiomqtt's queue: paho's way
        # without manual acknowledgement paho PUBACKs a QoS 1 message itself: paho's way
        kinds = (0x30, 0x32) if client._manual_ack else (0x30,)
        n, pos, taken = len(buf), 0, 0
        room = owner.max_pending - queue.qsize()
        got = []
        while taken < room and pos + 4 <= n:
            cmd = buf[pos]
            if cmd & 0xF6 not in kinds:  # PUBLISH (any dup, retain) of QoS 0 (or 1)
                break
            i, length, shift = pos + 1, 0, 0
            while True:  # the remaining length: 1 to 4 bytes of 7 bits, least significant first
                byte = buf[i]
                length |= (byte & 0x7F) << shift
                i += 1
                if byte < 0x80 or i - pos > 4 or i >= n:
                    break
                shift += 7
            if byte >= 0x80:
                break  # more than four bytes (malformed: paho's verdict), or not all received
            end = i + length
            if end > n:
                break  # not all received yet
            qos = (cmd >> 1) & 3
            tlen = (buf[i] << 8 | buf[i + 1]) if length >= 2 else 0
            start = i + 2 + tlen + (2 if qos else 0)  # the payload
            if tlen == 0 or start > end:
                break  # malformed: paho's verdict
            raw = bytes(buf[i + 2 : i + 2 + tlen])
            topic = topics.get(raw)
            if topic is None:
                try:
                    topic = Topic(raw.decode())
                except ValueError:  # not UTF-8 (UnicodeDecodeError), or not a topic name
                    break
                if len(topics) >= TOPICS_KEPT:
                    topics.clear()
                topics[raw] = topic
            mid = (buf[start - 2] << 8 | buf[start - 1]) if qos else 0
            got.append(message(topic, bytes(buf[start:end]), qos, bool(cmd & 1), mid, None))
            pos = end
            taken += 1
        if taken:
            del buf[:pos]
            for m in got:
                queue.put_nowait(m)
            with client._msgtime_mutex:
                client._last_bytes_received = mqtt.time_func()
        return taken

    return take


def _take_pubacks(client: mqtt.Client, owner: AckingClient, buf: bytearray) -> Callable[[], int]:
    """A function that takes every PUBACK at the head of `buf` whose packet id `owner.publish_all`
    sent, counts it to its batch, and lets the owner finish the batches acknowledged whole and
    send more (`AckingClient._acked`); returns how many. It stops at any other packet, which
    paho then reads as before: a PUBACK of paho's own `publish` (its id is not one of
    `owner._outgoing`, so paho finds it in its `_out_messages`), any other type, a PUBACK not
    yet wholly received, or one of another length (malformed for MQTT 3.1.1)."""
    outgoing = owner._outgoing

    def take() -> int:
        n, pos = len(buf), 0
        touched: set[_Batch] = set()
        while pos + 4 <= n and buf[pos] == _PUBACK and buf[pos + 1] == 2:
            batch = outgoing.pop(buf[pos + 2] << 8 | buf[pos + 3], None)
            if batch is None:
                break
            batch.acked += 1
            touched.add(batch)
            pos += 4
        if not pos:
            return 0
        del buf[:pos]
        with client._msgtime_mutex:
            client._last_bytes_received = mqtt.time_func()
        owner._acked(touched)
        return pos // 4

    return take


MAX_REMAINING_LENGTH = 268_435_455  # MQTT 3.1.1 §2.2.3: four bytes of seven bits
_MID = struct.Struct("!H")


def _publish_head(topic: bytes, payload_length: int) -> bytes:
    """A QoS 1 PUBLISH (not dup, not retained) up to its packet id, as paho's `_send_publish`
    packs it for MQTT 3.1.1: the fixed header, the remaining length, the topic as a string."""
    remaining = 2 + len(topic) + 2 + payload_length
    if remaining > MAX_REMAINING_LENGTH:
        raise ValueError("Packet too large")
    head = bytearray((mqtt.PUBLISH | 2,))
    while True:
        byte, remaining = remaining & 0x7F, remaining >> 7
        head.append(byte | 0x80 if remaining else byte)
        if not remaining:
            break
    head += _MID.pack(len(topic))
    head += topic
    return bytes(head)


_PUBACK = 0x40  # paho.mqtt.client.PUBACK: the fixed header's packet type
# a PUBACK packet for a packet id, as paho's `_send_command_with_mid(PUBACK, mid, False)` packs it
_puback: Callable[[int], bytes] = functools.partial(struct.Struct("!BBH").pack, _PUBACK, 2)


def _whole_puback(packet: Any) -> bool:
    """A PUBACK in paho's send queue of which nothing is written yet."""
    return bool((packet["command"] & 0xF0) == _PUBACK and packet["pos"] == 0)


def _write_in_bulk(client: mqtt.Client) -> None:
    """paho sends each queued packet with a send() of its own; after a group commit that is one
    PUBACK per message, hundreds at once. Before paho writes, join each run of whole, unsent
    PUBACKs into one packet: the same bytes on the wire in the same order, one send(). A PUBACK
    needs nothing after it is sent (no callback, no state), so one merged packet is written,
    partially or whole, exactly as paho writes any packet."""
    raw_write = client.loop_write

    def loop_write() -> MQTTErrorCode:
        queue = client._out_packet
        if len(queue) > 1:
            merged: list[Any] = []
            for whole_ack, run in itertools.groupby(queue, key=_whole_puback):
                packets = list(run)
                if whole_ack and len(packets) > 1:
                    body = b"".join(p["packet"] for p in packets)
                    merged.append({**packets[-1], "packet": body, "to_process": len(body)})
                else:
                    merged.extend(packets)
            if len(merged) < len(queue):
                queue.clear()
                queue.extend(merged)
        return raw_write()

    client.loop_write = loop_write  # type: ignore[method-assign]


def tls_context(cfg: MqttBroker) -> ssl.SSLContext | None:
    if not cfg.tls:
        return None
    ctx = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
    if cfg.cert_file is not None:
        ctx.load_cert_chain(str(cfg.cert_file), str(cfg.key_file) if cfg.key_file else None)
    return ctx


def make_client(
    cfg: MqttBroker,
    client_id: str,
    *,
    will: aiomqtt.Will | None = None,
    manual_ack: bool = False,
    clean_session: bool = False,
    max_inflight: int | None = None,
    on_pause: Callable[[], None] = lambda: None,
) -> AckingClient:
    """A client for `async with`. Persistent session (clean_session=False) by default, so QoS 1
    messages published while the gateway restarts wait in the broker."""
    return AckingClient(
        cfg.host,
        cfg.port,
        username=cfg.username,
        password=cfg.password.get_secret_value() if cfg.password else None,
        identifier=cfg.client_id or client_id,
        will=will,
        clean_session=clean_session,
        keepalive=cfg.keepalive_s,
        tls_context=tls_context(cfg),
        max_inflight_messages=max_inflight,
        timeout=10,
        manual_ack=manual_ack,
        on_pause=on_pause,
    )
