"""The one place that builds MQTT connections (aiomqtt on paho-mqtt) for sources and sinks.

aiomqtt gives the asyncio shape (async context manager, async message iterator) but exposes no
manual acknowledgement; paho-mqtt 2.x does. `AckingClient` switches paho to manual ack so a
message is PUBACKed only after its reading is committed (`ack(message)`). An ack from a previous
connection is a no-op (paho refuses it when disconnected): the broker redelivers the message to
the persistent session instead, which is at-least-once, never loss.
"""

from __future__ import annotations

import ssl
from typing import Any

import aiomqtt

from gateway.config import MqttBroker


class AckingClient(aiomqtt.Client):
    def __init__(self, *args: Any, manual_ack: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if manual_ack:
            self._client.manual_ack_set(True)

    def ack(self, message: aiomqtt.Message) -> None:
        if message.qos > 0:
            self._client.ack(message.mid, message.qos)


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
