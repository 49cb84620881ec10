"""Where the broker is and how to log in: one URL plus optional credentials and TLS files.

`mqtt://HOST:PORT` is plain TCP, `mqtts://HOST:PORT` is TLS (system CAs unless `ca_file` is set).
Credentials come from the URL (`mqtt://user:pass@host`) or the fields; the password is a SecretStr so it
never reaches a log line or /healthz.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import ssl
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import aiomqtt
import paho.mqtt.client as mqtt
from aiomqtt.types import PahoSocket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import BaseModel, ConfigDict, Field, SecretStr

MAX_BACKOFF_S = 10.0
T = TypeVar("T")


class BrokerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="mqtt://HOST:PORT or mqtts://HOST:PORT (TLS)")
    username: str | None = None
    password: SecretStr | None = None
    ca_file: Path | None = Field(None, description="TLS: the CA that signed the broker's certificate")
    cert_file: Path | None = Field(None, description="TLS: a client certificate, if the broker wants one")
    key_file: Path | None = None
    keepalive_s: int = Field(5, ge=1, description="a dead connection is noticed within 1.5 x this")
    max_payload_bytes: int = Field(
        256 * 1024, ge=4096, description="larger messages are chunked (EMQX's default limit is 1 MiB)"
    )

    @classmethod
    def parse(cls, url: str, **fields: object) -> BrokerConfig:
        config = cls(url=url, **fields)
        config.endpoint()  # validates the URL now, not at the first connect
        return config

    def endpoint(self) -> tuple[str, int, bool]:
        parts = urlsplit(self.url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"broker URL {self.url!r}: expected mqtt://HOST:PORT or mqtts://HOST:PORT")
        tls = parts.scheme == "mqtts"
        return parts.hostname, parts.port or (8883 if tls else 1883), tls

    def credentials(self) -> tuple[str | None, str | None]:
        parts = urlsplit(self.url)
        user = self.username or (unquote(parts.username) if parts.username else None)
        password = self.password.get_secret_value() if self.password else None
        if password is None and parts.password:
            password = unquote(parts.password)
        return user, password

    def display(self) -> str:
        """The URL without credentials, for logs and /healthz."""
        host, port, tls = self.endpoint()
        return f"{'mqtts' if tls else 'mqtt'}://{host}:{port}"

    def tls_context(self) -> ssl.SSLContext | None:
        if not self.endpoint()[2]:
            return None
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def client(
        self, identifier: str, will: aiomqtt.Will | None = None, *, ack_when_handled: bool = False
    ) -> PromptClient:
        """`ack_when_handled`: the caller acknowledges every QoS 1 message itself (`PromptClient.ack`)."""
        host, port, _ = self.endpoint()
        user, password = self.credentials()
        client = PromptClient(
            host,
            port,
            username=user,
            password=password,
            identifier=identifier,
            protocol=aiomqtt.ProtocolVersion.V5,
            will=will,
            clean_start=True,  # no session survives us: a dead worker's jobs must not wait for it
            keepalive=self.keepalive_s,
            timeout=10,
            max_inflight_messages=1000,
            tls_context=self.tls_context(),
            # Small request/response messages: Nagle plus delayed ACKs would add ~40 ms per exchange.
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        client._client.manual_ack_set(ack_when_handled)
        return client


class PromptClient(aiomqtt.Client):
    """Writes each packet to the socket when it is queued, not on a later turn of the event loop.

    aiomqtt defers every write to a writer callback; a busy loop (a job starting in the worker's pool)
    then holds an `accepted`, a result or a PUBACK for a millisecond or more. paho writes at once when
    it owns the loop and is not inside a callback; this does the same and falls back to aiomqtt's
    writer callback for what the socket does not take now.

    On loopback or a LAN every packet is a send and a wake-up of the broker, which on a busy machine
    costs more than the packet's own work; so messages that start work are acknowledged after that work
    has started (`ack`), and a reply can be written without waiting for its acknowledgement
    (`publish_now`).
    """

    def ack(self, message: aiomqtt.Message) -> None:
        """Sends the PUBACK of a QoS 1 message (clients made with `ack_when_handled`; else a no-op)."""
        self._client.ack(message.mid, message.qos)

    def publish_now(self, topic: str, payload: bytes, props: Properties) -> None:
        """Publishes at QoS 1 and returns once the packet is written (or queued behind earlier ones, in
        order), without waiting for the broker's acknowledgement."""
        info = self._client.publish(topic, payload, 1, False, props)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "could not publish the message")

    async def _wait_for(self, fut: Awaitable[T], timeout: float | None) -> T:  # noqa: ASYNC109 (aiomqtt's signature)
        """aiomqtt awaits acknowledgements through `asyncio.wait_for`, which on Python 3.11 returns the
        result and drops a cancellation that arrives as the acknowledgement does: a turn interrupted
        while its job's PUBACK came in went on waiting for the job. Cancelled is cancelled."""
        result = await super()._wait_for(fut, timeout)
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError
        return result

    def _on_socket_register_write(self, client: mqtt.Client, userdata: Any, sock: PahoSocket) -> None:
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:  # paho's connect runs in an executor thread
            on_loop = False
        mutex = getattr(client, "_in_callback_mutex", None)  # paho's private lock: absent, fall back
        if on_loop and mutex is not None and mutex.acquire(blocking=False):  # as paho's own check
            mutex.release()
            with contextlib.suppress(Exception):  # the writer callback meets the error again and reports it
                client.loop_write()
            if not client.want_write():
                return
        super()._on_socket_register_write(client, userdata, sock)


def properties(correlation: str, response_topic: str | None = None) -> Properties:
    """MQTT 5 publish properties: the job id as correlation data, and where to answer."""
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.CorrelationData = correlation.encode()
    if response_topic is not None:
        props.ResponseTopic = response_topic
    return props


def correlation(message: aiomqtt.Message) -> str | None:
    data = getattr(message.properties, "CorrelationData", None)
    return data.decode(errors="replace") if isinstance(data, bytes) else None


def response_topic(message: aiomqtt.Message) -> str | None:
    topic = getattr(message.properties, "ResponseTopic", None)
    return topic if isinstance(topic, str) else None


async def backoff(attempt: int) -> None:
    """Capped, jittered exponential backoff between connection attempts."""
    delay = min(MAX_BACKOFF_S, 0.2 * 2**attempt) * random.uniform(0.5, 1.0)
    await asyncio.sleep(delay)  # nothing to wait for but time
