"""The one place that builds MQTT connections (aiomqtt on paho-mqtt) for sources and sinks.

aiomqtt gives the asyncio shape (async context manager, async message iterator) but exposes no
manual acknowledgement; paho-mqtt 2.x does. `AckingClient` switches paho to manual ack so a
message is PUBACKed only after its reading is committed (`ack(message)`). An ack from a previous
connection is a no-op (paho refuses it when disconnected): the broker redelivers the message to
the persistent session instead, which is at-least-once, never loss.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import aiomqtt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from gateway.configtypes import MqttBroker


class AckingClient(aiomqtt.Client):
    def __init__(self, *args: Any, manual_ack: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if manual_ack:
            self._client.manual_ack_set(True)
        _read_in_bulk(self._client)

    def queued(self) -> list[aiomqtt.Message]:
        """Messages already received, without aiomqtt's one-task-per-message iteration (which
        costs more than decoding them at thousands of messages/s)."""
        out: list[aiomqtt.Message] = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                return out

    def ack(self, message: aiomqtt.Message) -> None:
        if message.qos > 0:
            self._client.ack(message.mid, message.qos)


MAX_PACKETS_PER_WAKEUP = 5000


def _read_in_bulk(client: mqtt.Client) -> None:
    """paho reads a packet in three small recv() calls and one packet per readable event, which
    at thousands of messages/s costs more than everything else the gateway does. Give this
    client a buffered recv (one 64 KiB read serves many packets) and a loop_read that processes
    every packet already received, so one wake-up drains the socket."""
    raw_recv = client._sock_recv
    buf = bytearray()

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
            rc = client._packet_read()
            if rc > 0:
                return client._loop_rc_handle(rc)
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN and not buf:
                return MQTTErrorCode.MQTT_ERR_SUCCESS
        if buf:  # bounded per wake-up; what is already buffered gets its own turn
            asyncio.get_running_loop().call_soon(loop_read)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    client._sock_recv = buffered_recv  # type: ignore[method-assign]
    client.loop_read = loop_read  # type: ignore[method-assign]


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
    )
