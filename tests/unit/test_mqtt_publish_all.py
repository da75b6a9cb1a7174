"""`AckingClient.publish_all`, the MQTT sink's batch publish, against paho's own `publish`.

publish_all writes QoS 1 PUBLISH packets itself and takes their PUBACKs off the read buffer
(issue 19: paho's per-message path cost more than the rest of the gateway per reading). What
paho would do is the reference: the same broker, simulated below on a socket of our own, gets
the same bytes in the same order from both, for any topics, payload sizes, in-flight windows
and ways the broker's PUBACKs arrive. A PUBACK publish_all did not ask for stays paho's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiomqtt
import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.mqttconn import AckingClient


class Broker:
    """The broker's side of one connection: keeps every byte the client sends, parses the
    PUBLISH packets out of them, and answers with PUBACKs only when told (`ack`), handed to the
    client one recv() at a time."""

    def __init__(self) -> None:
        self.sent = bytearray()
        self.sends = 0  # send() calls
        self.chunks: list[bytes] = []
        self.unacked: list[int] = []  # QoS 1 packet ids received, in order
        self._parsed = 0

    # the socket the client holds
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
        self.sends += 1
        return len(data)

    def fileno(self) -> int:
        return -1

    def close(self) -> None:
        pass

    def take_publishes(self) -> None:
        buf, pos = self.sent, self._parsed
        while pos < len(buf):
            cmd, i, length, shift = buf[pos], pos + 1, 0, 0
            while True:
                length |= (buf[i] & 0x7F) << shift
                shift += 7
                i += 1
                if buf[i - 1] < 0x80:
                    break
            if cmd & 0xF0 == 0x30 and cmd & 0x06:
                tlen = buf[i] << 8 | buf[i + 1]
                self.unacked.append(buf[i + 2 + tlen] << 8 | buf[i + 3 + tlen])
            pos = i + length
        self._parsed = pos

    def ack(self, n: int, split: int = 0) -> None:
        """PUBACK the oldest `n` packets received, as one recv() (or cut at byte `split`)."""
        self.take_publishes()
        mids, self.unacked = self.unacked[:n], self.unacked[n:]
        data = b"".join(bytes((0x40, 2, m >> 8, m & 0xFF)) for m in mids)
        if 0 < split < len(data):
            self.chunks += [data[:split], data[split:]]
        elif data:
            self.chunks.append(data)


def _pahos_way(messages: list[tuple[str, bytes]], window: int, chunk: Callable[[int], int]) -> Broker:
    """paho's `publish` of each message at QoS 1, the broker PUBACKing `chunk(i)` at a time."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.max_inflight_messages_set(window)
    broker = Broker()
    client._sock = broker  # type: ignore[assignment]
    infos = [client.publish(t, p, qos=1) for t, p in messages]
    for i in range(10_000):
        if all(info.is_published() for info in infos):
            break
        broker.ack(chunk(i))
        while broker.chunks:
            client.loop_read()
    client._sock = None
    return broker


def _ours(messages: list[tuple[str, bytes]], window: int, chunk: Callable[[int], int],
          split: int = 0) -> tuple[Broker, int]:  # fmt: skip
    """publish_all of the messages, the broker PUBACKing the same way; and the most messages
    paho itself held at any time (its `_out_messages`: publish_all leaves it empty)."""

    async def run() -> tuple[Broker, int]:
        client = AckingClient("127.0.0.1", max_inflight_messages=window)
        paho = client._client
        broker = Broker()
        paho._sock = broker  # type: ignore[assignment]
        paho.on_socket_register_write = None  # paho writes what is queued at once
        task = asyncio.create_task(client.publish_all(messages, timeout=60))
        held = 0
        for i in range(10_000):
            await asyncio.sleep(0)
            held = max(held, len(paho._out_messages))
            if task.done():
                break
            broker.ack(chunk(i), split)
            while broker.chunks:
                paho.loop_read()
        await task
        assert client._outgoing == {} and client._batches == []
        paho._sock = None
        return broker, held

    return asyncio.run(run())


_topic = st.text(st.characters(blacklist_characters="+#\x00", blacklist_categories=("Cs",)), min_size=1,
                 max_size=40)  # fmt: skip
_payload = st.one_of(
    st.binary(max_size=200),
    # around each length where the remaining length takes one more byte (127, 16,383)
    st.sampled_from([118, 119, 120, 121, 122, 123, 124, 125, 16370, 16374, 16378, 16380, 20000]).map(
        lambda n: b"p" * n),
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(messages=st.lists(st.tuples(_topic, _payload), min_size=1, max_size=40),
       window=st.sampled_from([1, 2, 3, 20, 100]), chunks=st.lists(st.integers(1, 7), min_size=1, max_size=5))  # fmt: skip
def test_the_broker_receives_what_pahos_publish_sends(messages: list[tuple[str, bytes]], window: int,
                                                     chunks: list[int]) -> None:  # fmt: skip
    """Any topics (any UTF-8, any length of remaining-length field), any window, the broker's
    PUBACKs arriving a few at a time: the same bytes, in the same order, as paho's `publish`."""

    def chunk(i: int) -> int:
        return chunks[i % len(chunks)]

    reference = _pahos_way(messages, window, chunk)
    got, held = _ours(messages, window, chunk)
    assert bytes(got.sent) == bytes(reference.sent)
    assert held == 0  # no paho message, info, lock or condition per message


def test_a_batch_is_written_once_per_window_not_once_per_message() -> None:
    """500 messages, 100 in flight, the broker's PUBACKs 100 at a time: 5 writes (paho: 500)."""
    messages = [(f"v1.1/Datastreams({1000 + i % 7})/Observations", b'{"result":%d}' % i) for i in range(500)]
    got, _ = _ours(messages, 100, lambda i: 100)
    assert got.sends == 5
    assert bytes(got.sent) == bytes(_pahos_way(messages, 100, lambda i: 100).sent)


def test_pubacks_cut_anywhere_by_the_socket_are_all_counted() -> None:
    messages = [("t", b"%d" % i) for i in range(60)]
    for split in (1, 2, 3, 5, 6, 7):
        got, _ = _ours(messages, 20, lambda i: 20, split=split)
        assert bytes(got.sent) == bytes(_pahos_way(messages, 20, lambda i: 20).sent)


def test_a_puback_of_pahos_own_publish_is_left_to_paho() -> None:
    """The sink's own retained state and entities go through paho's `publish`: their PUBACKs,
    arriving between a batch's, reach paho (which marks them published), and the batch
    completes around them; a PUBACK nobody asked for (a stale one) is paho's to ignore."""

    async def run() -> None:
        client = AckingClient("127.0.0.1", max_inflight_messages=10)
        paho = client._client
        broker = Broker()
        paho._sock = broker  # type: ignore[assignment]
        paho.on_socket_register_write = None
        state = paho.publish("street-gateway/g/state", b"online", qos=1, retain=True)  # mid 1
        task = asyncio.create_task(client.publish_all([("t", b"%d" % i) for i in range(25)], timeout=60))
        await asyncio.sleep(0)
        broker.take_publishes()
        assert broker.unacked == list(range(1, 12))  # paho's, then the batch's first 10
        own = broker.unacked.pop(0)
        broker.unacked[3:3] = [own, 999]  # paho's PUBACK after three of the batch's; one stale
        for _ in range(100):
            if task.done():
                break
            broker.ack(4)
            while broker.chunks:
                paho.loop_read()
            await asyncio.sleep(0)
        await task
        assert state.is_published() and paho._out_messages == {}
        assert client._outgoing == {} and client._batches == []
        paho._sock = None

    asyncio.run(run())


def test_a_batch_not_acknowledged_in_time_leaves_nothing_behind() -> None:
    """TimeoutError, no packet id left waiting; the late PUBACKs are harmless, the next batch
    goes on with the next packet ids."""

    async def run() -> None:
        client = AckingClient("127.0.0.1", max_inflight_messages=5)
        paho = client._client
        broker = Broker()
        paho._sock = broker  # type: ignore[assignment]
        paho.on_socket_register_write = None
        with pytest.raises(TimeoutError, match="12 of 12 messages not acknowledged"):
            await client.publish_all([("t", b"x")] * 12, timeout=0.05)
        assert client._outgoing == {} and client._batches == []
        broker.ack(5)  # the late PUBACKs of the first window
        paho.loop_read()
        task = asyncio.create_task(client.publish_all([("u", b"y")] * 3, timeout=60))
        await asyncio.sleep(0)
        broker.ack(3)
        paho.loop_read()
        await task
        assert broker.unacked == [] and client._outgoing == {}
        paho._sock = None

    asyncio.run(run())


@pytest.mark.parametrize(("topic", "payload", "error"), [
    ("", b"x", "Invalid topic."),
    ("a/+/b", b"x", "Publish topic cannot contain wildcards."),
    ("a/#", b"x", "Publish topic cannot contain wildcards."),
    ("x" * 65536, b"x", "Publish topic is too long."),
])  # fmt: skip
def test_a_topic_paho_refuses_is_refused_before_anything_is_sent(topic: str, payload: bytes, error: str) -> None:
    async def run() -> Broker:
        client = AckingClient("127.0.0.1")
        broker = Broker()
        client._client._sock = broker  # type: ignore[assignment]
        try:
            with pytest.raises(ValueError, match=error.replace(".", r"\.")) as e:
                await client.publish_all([("ok", b"1"), (topic, payload)], timeout=1)
            with pytest.raises(ValueError) as pahos:
                client._client.publish(topic, payload, qos=1)
            assert str(e.value) == str(pahos.value)
        finally:
            client._client._sock = None
        return broker

    assert asyncio.run(run()).sent == b""


def test_without_a_connection_nothing_is_queued() -> None:
    async def run() -> None:
        client = AckingClient("127.0.0.1")
        with pytest.raises(aiomqtt.MqttCodeError):
            await client.publish_all([("t", b"x")], timeout=1)
        assert client._client._out_packet == type(client._client._out_packet)() and client._outgoing == {}
        await client.publish_all([], timeout=1)  # nothing to publish: nothing to wait for

    asyncio.run(run())
