"""An asyncio server for Asterisk's AudioSocket protocol: live audio of a call, one TCP
connection per stream. The protocol only; what the audio is for is the handler's business.

The wire format (Asterisk's ``res_audiosocket``): every message is one byte of kind, two bytes
of payload length (big-endian), then the payload.

=========  =====================================================================
kind       payload
=========  =====================================================================
``0x00``   hangup: the stream ends (no payload)
``0x01``   the stream's UUID (16 bytes), always the first message
``0x03``   a DTMF digit (1 byte, ASCII)
``0x10``   audio: 16-bit signed linear, little-endian, 8 kHz, mono
``0xff``   error (1 byte of error code: 1 hangup, 2 frame forwarding, 3 memory)
=========  =====================================================================

What goes wrong and what it costs (each connection is on its own; nothing here can harm
another stream):

* a connection that sends no UUID first (another kind, or nothing within
  ``first_frame_timeout``), or a malformed one, is closed without a stream;
* a message of an unknown kind is skipped (its length is known) and counted;
* a message whose length runs past the data the peer sent (the connection ends inside it)
  ends the stream as ``truncated``; a peer silent for ``idle_timeout`` ends it as ``idle``;
* a hangup or error message, or the connection closing, ends it as ``hangup``, ``error`` or
  ``closed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)

KIND_HANGUP = 0x00
KIND_UUID = 0x01
KIND_DTMF = 0x03
KIND_AUDIO = 0x10
KIND_ERROR = 0xFF
HEADER_BYTES = 3
SAMPLE_RATE = 8000
"""Hz of the ``0x10`` audio kind (16-bit mono): 16,000 bytes a second."""


def encode(kind: int, payload: bytes = b"") -> bytes:
    """One AudioSocket message (what Asterisk sends; tests and benchmarks play it)."""
    if not 0 <= kind <= 0xFF or len(payload) > 0xFFFF:
        raise ValueError("kind is one byte and a payload at most 65,535 bytes")
    return bytes([kind]) + len(payload).to_bytes(2, "big") + payload


class StreamSink(Protocol):
    """Where one stream's content goes; called on the event loop, must not block."""

    def audio(self, pcm: bytes) -> None: ...

    def ended(self, reason: str) -> None: ...


OpenStream = Callable[[uuid.UUID], "StreamSink | None"]
"""Called with a new stream's UUID; returns its sink, or None to refuse it (closed at once)."""


@dataclass
class ServerCounts:
    connections: int = 0
    streams: int = 0
    refused: int = 0
    unknown_messages: int = 0
    bad_streams: int = 0
    """Connections closed for a broken protocol: no or bad UUID, a message cut short."""


class _StreamEnded(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


class AudioSocketServer:
    """Listens on ``host:port`` (port 0: any free one, see :attr:`port`)."""

    def __init__(
        self,
        open_stream: OpenStream,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        first_frame_timeout: float = 5.0,
        idle_timeout: float = 30.0,
    ) -> None:
        self._open_stream = open_stream
        self._host, self._port = host, port
        self._first_frame_timeout = first_frame_timeout
        self._idle_timeout = idle_timeout
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.counts = ServerCounts()

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self._host, self._port)

    async def stop(self) -> None:
        """Stop listening and end every open stream (each sink hears ``stopped``)."""
        if self._server is None:
            return
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        for task in list(self._handlers):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._server.wait_closed()
        self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.counts.connections += 1
        try:
            await self._serve(reader, writer)
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            stream_id = await self._read_uuid(reader)
        except _StreamEnded as end:
            if end.reason not in ("hangup", "closed"):
                self.counts.bad_streams += 1
            log.info("AudioSocket connection closed before a stream began: %s", end.reason)
            return
        sink = self._open_stream(stream_id)
        if sink is None:
            self.counts.refused += 1
            writer.write(encode(KIND_HANGUP))
            return
        self.counts.streams += 1
        reason = "stopped"
        try:
            await self._pump(reader, sink)
        except _StreamEnded as end:
            reason = end.reason
            if reason == "truncated":
                self.counts.bad_streams += 1
        finally:
            sink.ended(reason)

    async def _read_uuid(self, reader: asyncio.StreamReader) -> uuid.UUID:
        kind, payload = await self._read_message(reader, self._first_frame_timeout)
        if kind == KIND_HANGUP:
            raise _StreamEnded("hangup")
        if kind != KIND_UUID or len(payload) != 16:
            raise _StreamEnded(f"first message kind {kind:#04x}, {len(payload)} bytes: no UUID")
        return uuid.UUID(bytes=payload)

    async def _pump(self, reader: asyncio.StreamReader, sink: StreamSink) -> None:
        while True:
            kind, payload = await self._read_message(reader, self._idle_timeout)
            if kind == KIND_AUDIO:
                sink.audio(payload[: len(payload) & ~1])
            elif kind == KIND_HANGUP:
                raise _StreamEnded("hangup")
            elif kind == KIND_ERROR:
                code = payload[0] if payload else 0
                raise _StreamEnded(f"error {code}")
            elif kind != KIND_DTMF:
                self.counts.unknown_messages += 1

    @staticmethod
    async def _read_message(reader: asyncio.StreamReader, timeout: float) -> tuple[int, bytes]:
        in_payload = False
        try:
            async with asyncio.timeout(timeout):
                header = await reader.readexactly(HEADER_BYTES)
                in_payload = True
                payload = await reader.readexactly(int.from_bytes(header[1:], "big"))
        except TimeoutError:
            raise _StreamEnded("idle") from None
        except asyncio.IncompleteReadError as exc:
            raise _StreamEnded("truncated" if in_payload or exc.partial else "closed") from None
        except OSError:
            raise _StreamEnded("closed") from None
        return header[0], payload
