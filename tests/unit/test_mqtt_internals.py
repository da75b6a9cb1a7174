"""The paho-mqtt and aiomqtt internals gateway/mqttconn.py relies on, pinned and checked.

mqttconn patches paho's read path (`_sock_recv`, `_packet_read`, `_loop_rc_handle`, `loop_read`)
and reaches into aiomqtt (`Client._client`, `Client._queue`) because neither library offers
manual acknowledgement or bulk reads publicly (docs/mqtt-internals.md). pyproject.toml pins both
exactly; when someone bumps a pin, this test fails naming the internal that changed, before any
integration test has to puzzle out why messages stopped being acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
from importlib.metadata import version

import aiomqtt
import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

PINNED = {"paho-mqtt": "2.2.0", "aiomqtt": "2.5.1"}

PAHO_METHODS = {
    "_sock_recv": "(self, bufsize: 'int') -> 'bytes'",
    "_packet_read": "(self) -> 'MQTTErrorCode'",
    "_loop_rc_handle": "(self, rc: 'MQTTErrorCode') -> 'MQTTErrorCode'",
    "loop_read": "(self, max_packets: 'int' = 1) -> 'MQTTErrorCode'",
    "manual_ack_set": "(self, on: 'bool') -> 'None'",
    "ack": "(self, mid: 'int', qos: 'int') -> 'MQTTErrorCode'",
    "_packet_queue": "(self, command: 'int', packet: 'bytes | bytearray', mid: 'int', qos: 'int', info: 'MQTTMessageInfo | None' = None) -> 'MQTTErrorCode'",
    "_handle_publish": "(self) -> 'MQTTErrorCode'",
    # AckingClient.publish_all: paho's packet ids and topic checks, its window
    "_mid_generate": "(self) -> 'int'",
    "_raise_for_invalid_topic": "(topic: 'bytes') -> 'None'",
    "max_inflight_messages_set": "(self, inflight: 'int') -> 'None'",
}


@pytest.mark.parametrize("package", sorted(PINNED))
def test_the_installed_version_is_the_pinned_one(package: str) -> None:
    assert version(package) == PINNED[package], (
        f"{package} {version(package)} is installed but mqttconn.py was checked against "
        f"{PINNED[package]}: re-check the internals below, then update the pin and this test"
    )


@pytest.mark.parametrize("name", sorted(PAHO_METHODS))
def test_paho_internal_method_is_unchanged(name: str) -> None:
    method = getattr(mqtt.Client, name, None)
    assert method is not None, f"paho.mqtt.client.Client.{name} is gone: mqttconn.py patches it"
    assert str(inspect.signature(method)) == PAHO_METHODS[name], (
        f"paho.mqtt.client.Client.{name} changed signature: mqttconn.py patches it"
    )


def test_paho_client_keeps_its_socket_in_sock_and_reads_through_sock_recv() -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    assert hasattr(client, "_sock"), "paho Client._sock is gone: mqttconn's loop_read checks it"
    source = inspect.getsource(mqtt.Client._packet_read)
    assert "_sock_recv" in source, "paho _packet_read no longer reads through _sock_recv"


def test_aiomqtt_client_exposes_its_paho_client_and_message_queue() -> None:
    async def build() -> aiomqtt.Client:
        return aiomqtt.Client("127.0.0.1")

    client = asyncio.run(build())
    assert isinstance(getattr(client, "_client", None), mqtt.Client), (
        "aiomqtt.Client._client (the paho client) is gone: mqttconn's AckingClient uses it"
    )
    assert isinstance(getattr(client, "_queue", None), asyncio.Queue), (
        "aiomqtt.Client._queue is gone: AckingClient.queued() drains it"
    )


AIOMQTT_INTERNALS = {
    # AckingClient registers its own socket reader (to pause it under back-pressure) in place of
    # aiomqtt's, so it starts aiomqtt's misc task itself and relies on its close hook
    "_on_socket_open": "(self, client: 'mqtt.Client', userdata: 'Any', sock: 'PahoSocket') -> 'None'",
    "_on_socket_close": "(self, client: 'mqtt.Client', userdata: 'Any', sock: 'PahoSocket') -> 'None'",
    "_misc_loop": "(self) -> 'None'",
}


@pytest.mark.parametrize("name", sorted(AIOMQTT_INTERNALS))
def test_aiomqtt_socket_hooks_are_unchanged(name: str) -> None:
    method = getattr(aiomqtt.Client, name, None)
    assert method is not None, f"aiomqtt.Client.{name} is gone: mqttconn's AckingClient overrides or calls it"
    assert str(inspect.signature(method)) == AIOMQTT_INTERNALS[name], f"aiomqtt.Client.{name} changed"
    source = inspect.getsource(aiomqtt.Client._on_socket_open)
    assert "add_reader" in source and "_misc_loop" in source, "aiomqtt's socket-open hook changed"


def test_aiomqtt_takes_a_queue_type_and_the_client_keeps_its_loop_and_disconnected_future() -> None:
    from gateway.mqttconn import AckingClient, _PendingQueue

    assert "queue_type" in inspect.signature(aiomqtt.Client.__init__).parameters

    async def build() -> AckingClient:
        return AckingClient("127.0.0.1", max_pending=8)

    client = asyncio.run(build())
    assert isinstance(client._queue, _PendingQueue) and client._queue.low == 4
    assert isinstance(client._loop, asyncio.AbstractEventLoop) and isinstance(client._disconnected, asyncio.Future)


@settings(max_examples=300, deadline=None)
@given(filters=st.lists(st.from_regex(r"(?:[ab+]|\$x)(?:/[ab+])*(?:/#)?|#", fullmatch=True), max_size=4),
       topic=st.from_regex(r"\$?[ab](?:/[ab]){0,3}", fullmatch=True))  # fmt: skip
def test_the_filtered_callbacks_trie_matches_as_pahos_own(filters: list[str], topic: str) -> None:
    """paho walks its per-topic callbacks for every message; the client's trie skips the walk
    only when it is empty (issue 19), and otherwise answers as paho's MQTTMatcher."""
    from paho.mqtt.matcher import MQTTMatcher

    from gateway.mqttconn import _Filters

    ours, pahos = _Filters(), MQTTMatcher()
    for i, f in enumerate(filters):
        ours[f] = pahos[f] = i
    assert list(ours.iter_match(topic)) == list(pahos.iter_match(topic))
    for f in filters:
        with contextlib.suppress(KeyError):
            del ours[f]
    assert list(ours.iter_match(topic)) == []


@pytest.mark.parametrize("chunk", [1, 3, 5, 10_000])
def test_pubacks_queued_together_leave_in_one_send_as_the_same_bytes(chunk: int) -> None:
    """After a group commit the source acknowledges hundreds of messages at once; the client
    joins each run of whole PUBACKs into one send (issue 19). On the wire: paho's own bytes, in
    paho's order, other packets untouched between the runs, also when the socket takes only a
    few bytes at a time (`chunk`)."""
    from gateway.mqttconn import _write_in_bulk

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, manual_ack=True)
    _write_in_bulk(client)  # as AckingClient does to its paho client
    sent: list[bytes] = []

    def send(buf: bytes) -> int:
        sent.append(bytes(buf[:chunk]))
        return len(sent[-1])

    for mid in (1, 2, 3):
        client._send_puback(mid)
    client._packet_queue(0xC0, b"\xc0\x00", 0, 0)  # a PINGREQ between two runs
    for mid in (4, 5):
        client._send_puback(mid)
    expected = b"".join(bytes(p["packet"]) for p in client._out_packet)
    client._sock = object()  # type: ignore[assignment]  # "connected": paho checks it is set
    client._sock_send = send  # type: ignore[method-assign]
    for _ in range(100):
        if not client._out_packet:
            break
        client.loop_write()
    client._sock = None  # nothing to close
    assert b"".join(sent) == expected and not client._out_packet
    if chunk >= 10:
        assert sent == [expected[:12], b"\xc0\x00", expected[14:]]  # three sends, not six


# ------------------------------------------------------------------ PUBLISH packets taken in bulk


class _Wire:
    """The broker's side of a connection: hands the client `chunks` one recv() at a time, then
    has nothing more (BlockingIOError); keeps what the client sends."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)
        self.sent = bytearray()

    def recv(self, bufsize: int) -> bytes:
        if not self.chunks:
            raise BlockingIOError
        data = self.chunks.pop(0)
        if len(data) > bufsize:
            self.chunks.insert(0, data[bufsize:])
            data = data[:bufsize]
        return data

    def send(self, data: bytes) -> int:
        self.sent += data
        return len(data)

    def fileno(self) -> int:
        return -1

    def close(self) -> None:
        pass


def _paho_publish(topic: bytes, payload: bytes, qos: int, retain: bool, dup: bool, mid: int) -> bytes:
    """A PUBLISH packet as paho itself encodes one (its `_send_publish`, as a broker's would be)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    wire = _Wire([])
    client._sock = wire  # type: ignore[assignment]
    client._send_publish(mid, topic, payload, qos, retain, dup, info=mqtt.MQTTMessageInfo(mid))
    client._sock = None
    return bytes(wire.sent)


_TOPICS = [b"bench/run/s1/json", b"a", "caf\u00e9/\u2603".encode(), b"t/" + b"x" * 300]
_publish = st.builds(
    lambda topic, payload, qos, retain, dup, mid: _paho_publish(topic, payload, qos, retain, dup, mid if qos else 0),
    st.sampled_from(_TOPICS), st.one_of(st.binary(max_size=40), st.binary(min_size=120, max_size=200),
                                        st.just(20_000).map(lambda n: b"p" * n)),
    st.sampled_from([0, 1, 1, 1, 2]), st.booleans(), st.booleans(), st.integers(1, 65535),
)  # fmt: skip
_other = st.sampled_from([b"\xd0\x00",  # PINGRESP
                          b"\x40\x02\x12\x34",  # PUBACK of a message this client never sent
                          b"\x62\x02\x00\x07"])  # PUBREL (of QoS 2 message 7, if there was one)  # fmt: skip


def _receive(chunks: list[bytes], bulk: bool, max_pending: int = 10_000) -> tuple[list[tuple[str, bytes, int, bool, int]], bytes, int]:
    """(the messages an AckingClient's queue receives from `chunks`, what it sends back, how
    many PUBLISH packets paho handled itself); `bulk`: with `_take_publishes`."""
    import gateway.mqttconn as conn

    async def run() -> tuple[list[tuple[str, bytes, int, bool, int]], bytes, int]:
        real = conn._take_publishes
        if not bulk:
            conn._take_publishes = lambda *args: lambda: 0  # type: ignore[assignment,return-value]  # takes none
        try:
            client = conn.AckingClient("127.0.0.1", manual_ack=True, max_pending=max_pending)
        finally:
            conn._take_publishes = real
        paho = client._client
        wire = _Wire(chunks)
        paho._sock = wire  # type: ignore[assignment]
        paho.on_socket_register_write = None  # paho writes its PUBREC/PUBCOMP at once
        handled = 0
        handle = paho._handle_publish

        def counted() -> mqtt.MQTTErrorCode:
            nonlocal handled
            handled += 1
            return handle()

        paho._handle_publish = counted  # type: ignore[method-assign]
        got: list[tuple[str, bytes, int, bool, int]] = []
        for _ in range(10_000):
            if not wire.chunks and not client.paused and not client._queue.qsize():
                paho.loop_read()  # what is still buffered
                if not client._queue.qsize():
                    break
            if not client.paused:
                paho.loop_read()
            for m in client.queued():  # takes them: a paused client resumes (call_soon)
                assert isinstance(m, aiomqtt.Message) and isinstance(m.topic, aiomqtt.Topic)
                got.append((str(m.topic), m.payload, m.qos, m.retain, m.mid))
            await asyncio.sleep(0)
        paho._sock = None
        return got, bytes(wire.sent), handled

    return asyncio.run(run())


@settings(max_examples=200, deadline=None)
@given(packets=st.lists(st.one_of(_publish, _publish, _publish, _other), min_size=1, max_size=40),
       cuts=st.lists(st.integers(1, 70_000), max_size=12))  # fmt: skip
def test_publishes_taken_in_bulk_are_the_messages_paho_and_aiomqtt_make(packets: list[bytes], cuts: list[int]) -> None:
    """The same stream, cut into recv() chunks anywhere (mid-header, mid-length, mid-payload):
    the same messages (topic, payload, QoS, retain, packet id) in the same order, and the same
    bytes sent back (PUBREC/PUBCOMP of QoS 2), as paho and aiomqtt deliver on their own."""
    stream = b"".join(packets)
    bounds = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    chunks = [stream[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    expected = _receive(chunks, bulk=False)
    got = _receive(chunks, bulk=True)
    assert got[:2] == expected[:2]


def test_publishes_already_received_skip_pahos_per_packet_path() -> None:
    packets = [_paho_publish(b"bench/run/s%d/json" % (i % 8), b'{"pm2_5": %d}' % i, 1, False, False, i + 1)
               for i in range(300)]  # fmt: skip
    got, sent, handled = _receive([b"".join(packets)], bulk=True)
    assert [m[4] for m in got] == list(range(1, 301)) and sent == b""  # acked later, by the source
    assert handled == 0  # not even the first: the socket is read into the buffer before paho reads


def test_publishes_taken_in_bulk_stop_at_the_pending_bound_and_resume() -> None:
    packets = [_paho_publish(b"t", b"%d" % i, 1, False, False, i + 1) for i in range(1000)]
    got, _, _ = _receive([b"".join(packets)], bulk=True, max_pending=64)
    assert [m[4] for m in got] == list(range(1, 1001))


def test_a_publish_that_is_not_utf8_or_malformed_is_left_to_paho() -> None:
    """paho's verdict on it, whatever it is, stays paho's: the bulk path does not take it."""
    good = _paho_publish(b"ok", b"1", 1, False, False, 1)
    bad_topic = _paho_publish(b"\xff\xfe", b"2", 1, False, False, 2)
    for bulk in (False, True):
        with pytest.raises(UnicodeDecodeError):
            _receive([good + good + bad_topic + good], bulk=bulk)


def test_the_pubacks_of_a_group_are_pahos_bytes_queued_once_in_order() -> None:
    """The source acknowledges a committed group message by message; the PUBACKs leave as one
    packet once the committer yields: each as paho's own `_send_puback` writes it, in the order
    acknowledged. QoS 0 needs none; after the connection is gone none is queued (the broker
    redelivers)."""
    from gateway.mqttconn import AckingClient

    mids = [7, 1, 65535, 300, 2]
    reference = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, manual_ack=True)
    ref_wire = _Wire([])
    reference._sock = ref_wire  # type: ignore[assignment]
    for mid in mids:
        reference.ack(mid, 1)
    reference._sock = None

    async def run() -> tuple[bytes, int, bytes]:
        client = AckingClient("127.0.0.1", manual_ack=True)
        paho = client._client
        wire = _Wire([])
        paho._sock = wire  # type: ignore[assignment]
        paho.on_socket_register_write = None  # paho writes what is queued at once
        queued = 0
        queue_packet = paho._packet_queue

        def counted(*args: object) -> mqtt.MQTTErrorCode:
            nonlocal queued
            queued += 1
            return queue_packet(*args)  # type: ignore[arg-type]

        paho._packet_queue = counted  # type: ignore[method-assign]
        for mid in mids:
            client.ack(aiomqtt.Message("t", b"", 1, False, mid, None))
        client.ack(aiomqtt.Message("t", b"", 0, False, 0, None))
        before = bytes(wire.sent)
        await asyncio.sleep(0)
        sent = bytes(wire.sent)
        client.ack(aiomqtt.Message("t", b"", 1, False, 9, None))
        paho._sock = None  # the connection is gone before the group's acks leave
        await asyncio.sleep(0)
        return before + b"|" + sent, queued, bytes(paho._out_packet[-1]["packet"]) if paho._out_packet else b""

    sent, queued, left = asyncio.run(run())
    assert sent == b"|" + bytes(ref_wire.sent) and len(ref_wire.sent) == 4 * len(mids)
    assert queued == 1 and left == b""


def test_a_lost_connection_leaves_asyncio_no_exception_to_log() -> None:
    """aiomqtt sets `_disconnected`'s exception when the broker goes away and assigns a fresh
    `asyncio.Future()` to it for each client and connection. QuietLossClient's is a _LossFuture:
    the exception is marked retrieved as it is set, even if the loop never runs again (a done
    callback would not), and awaiting it still raises it. A plain aiomqtt client left the same
    exception for the garbage collector to log at ERROR, in whatever test or hour that was."""
    import gc
    import logging

    from gateway.mqttconn import AckingClient, QuietLossClient, _LossFuture

    logged: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.ERROR:
                logged.append(record.getMessage())

    handler = Keep()
    log = logging.getLogger("asyncio")
    log.addHandler(handler)
    try:
        def lose(make: type[aiomqtt.Client], expect_raise: bool) -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                async def made() -> aiomqtt.Client:
                    return make("127.0.0.1", 1)

                client = loop.run_until_complete(made())
                lost = client._disconnected
                lost.set_exception(aiomqtt.MqttCodeError(128, "Unexpected disconnection"))
                if expect_raise:
                    with pytest.raises(aiomqtt.MqttCodeError):
                        loop.run_until_complete(lost)  # whoever awaits it still gets it
                # (otherwise the loop never runs again: no callback of the future would run)
                client._disconnected = loop.create_future()  # as aiomqtt does at the next connection
                assert type(client._disconnected) is (asyncio.Future if make is aiomqtt.Client else _LossFuture)
            finally:
                loop.close()
                asyncio.set_event_loop(None)
            del client, lost
            gc.collect()

        gc.collect()
        logged.clear()
        for make in (QuietLossClient, AckingClient):
            lose(make, expect_raise=False)
            lose(make, expect_raise=True)
        assert logged == []
        lose(aiomqtt.Client, expect_raise=False)  # the control: what the clients above prevent
        assert any("Future exception was never retrieved" in m and "Unexpected disconnection" in m for m in logged)
    finally:
        log.removeHandler(handler)
