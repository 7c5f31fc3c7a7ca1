"""The AudioSocket server over real sockets: a good stream, and every broken one Asterisk or a
stranger could send, each without harm to a good stream running beside it."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telephony.audiosocket import (
    KIND_AUDIO,
    KIND_DTMF,
    KIND_ERROR,
    KIND_HANGUP,
    KIND_UUID,
    AudioSocketServer,
    encode,
)


class Sink:
    def __init__(self) -> None:
        self.pcm = bytearray()
        self.reason: str | None = None
        self.done = asyncio.Event()

    def audio(self, pcm: bytes) -> None:
        self.pcm += pcm

    def ended(self, reason: str) -> None:
        self.reason = reason
        self.done.set()


class Streams:
    """Opens a sink for every UUID in ``expected``; refuses any other."""

    def __init__(self) -> None:
        self.sinks: dict[uuid.UUID, Sink] = {}
        self.expected: set[uuid.UUID] = set()

    def open(self, stream_id: uuid.UUID) -> Sink | None:
        if stream_id not in self.expected:
            return None
        return self.sinks.setdefault(stream_id, Sink())


async def started(**timeouts: float) -> tuple[AudioSocketServer, Streams]:
    streams = Streams()
    server = AudioSocketServer(streams.open, **timeouts)
    await server.start()
    return server, streams


async def send(port: int, data: bytes, *, close: bool = True) -> asyncio.StreamWriter:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    if close:
        writer.close()
    return writer


def hello(stream_id: uuid.UUID) -> bytes:
    return encode(KIND_UUID, stream_id.bytes)


async def good_stream(server: AudioSocketServer, streams: Streams, seconds: float = 0.2) -> Sink:
    """A stream of ``seconds`` of audio in 20 ms frames, then a hangup."""
    stream_id = uuid.uuid4()
    streams.expected.add(stream_id)
    frames = [encode(KIND_AUDIO, bytes([i % 256]) * 320) for i in range(int(seconds / 0.02))]
    await send(server.port, hello(stream_id) + b"".join(frames) + encode(KIND_HANGUP))
    sink = await wait_for_sink(streams, stream_id)
    await asyncio.wait_for(sink.done.wait(), 5)
    return sink


async def wait_for_sink(streams: Streams, stream_id: uuid.UUID) -> Sink:
    for _ in range(200):
        if stream_id in streams.sinks:
            return streams.sinks[stream_id]
        await asyncio.sleep(0.01)
    raise AssertionError("the stream never opened")


async def test_a_stream_gives_its_audio_in_order_and_ends_at_hangup():
    server, streams = await started()
    try:
        sink = await good_stream(server, streams, seconds=1.0)
        assert sink.reason == "hangup"
        assert len(sink.pcm) == 50 * 320
        assert sink.pcm[:320] == bytes([0]) * 320 and sink.pcm[-320:] == bytes([49]) * 320
    finally:
        await server.stop()


async def test_dtmf_and_unknown_kinds_are_skipped_and_counted():
    server, streams = await started()
    stream_id = uuid.uuid4()
    streams.expected.add(stream_id)
    try:
        data = (hello(stream_id) + encode(KIND_AUDIO, b"\x01\x00" * 80)
                + encode(KIND_DTMF, b"5") + encode(0x42, b"junk" * 10) + encode(0x12, b"")
                + encode(KIND_AUDIO, b"\x02\x00" * 80) + encode(KIND_HANGUP))  # fmt: skip
        await send(server.port, data)
        sink = await wait_for_sink(streams, stream_id)
        await asyncio.wait_for(sink.done.wait(), 5)
        assert bytes(sink.pcm) == b"\x01\x00" * 80 + b"\x02\x00" * 80
        assert server.counts.unknown_messages == 2
    finally:
        await server.stop()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (encode(KIND_AUDIO, b"\x00" * 320)[:100], "truncated"),  # a length past the data
        (encode(KIND_AUDIO, b"\x00" * 320)[:2], "truncated"),  # cut inside the header
        (b"", "closed"),
        (encode(KIND_ERROR, b"\x02"), "error 2"),
    ],
)
async def test_a_stream_cut_short_ends_with_its_reason(data, reason):
    server, streams = await started()
    stream_id = uuid.uuid4()
    streams.expected.add(stream_id)
    try:
        await send(server.port, hello(stream_id) + encode(KIND_AUDIO, b"\x07\x00" * 160) + data)
        sink = await wait_for_sink(streams, stream_id)
        await asyncio.wait_for(sink.done.wait(), 5)
        assert sink.reason == reason
        assert bytes(sink.pcm) == b"\x07\x00" * 160
    finally:
        await server.stop()


@pytest.mark.parametrize(
    "data",
    [
        encode(KIND_HANGUP),  # an early hangup: before the UUID
        encode(KIND_AUDIO, b"\x00" * 320),  # audio with no UUID first
        encode(KIND_UUID, b"short"),  # a UUID of the wrong size
        b"\xff",
        b"",
    ],
)
async def test_a_connection_without_a_proper_uuid_opens_no_stream(data):
    server, streams = await started()
    try:
        await send(server.port, data)
        sink = await good_stream(server, streams)  # the next one is served as ever
        assert sink.reason == "hangup"
        assert len(streams.sinks) == 1
    finally:
        await server.stop()


async def test_an_unknown_uuid_is_refused_with_a_hangup():
    server, _ = await started()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(hello(uuid.uuid4()))
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == encode(KIND_HANGUP)
        writer.close()
        assert server.counts.refused == 1
    finally:
        await server.stop()


async def test_a_silent_peer_ends_as_idle_while_another_stream_goes_on():
    server, streams = await started(idle_timeout=0.5)
    silent_id = uuid.uuid4()
    streams.expected.add(silent_id)
    try:
        writer = await send(server.port, hello(silent_id), close=False)
        sink = await good_stream(server, streams, seconds=0.4)
        assert sink.reason == "hangup"
        silent = await wait_for_sink(streams, silent_id)
        await asyncio.wait_for(silent.done.wait(), 5)
        assert silent.reason == "idle" and not silent.pcm
        writer.close()
    finally:
        await server.stop()


async def test_a_connection_that_never_speaks_is_dropped():
    server, streams = await started(first_frame_timeout=0.3)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        assert not streams.sinks and server.counts.bad_streams == 1
    finally:
        await server.stop()


async def test_stopping_ends_every_open_stream():
    server, streams = await started()
    stream_id = uuid.uuid4()
    streams.expected.add(stream_id)
    writer = await send(server.port, hello(stream_id), close=False)
    sink = await wait_for_sink(streams, stream_id)
    await server.stop()
    assert sink.reason == "stopped"
    writer.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(garbage=st.binary(max_size=400), after_uuid=st.booleans())
def test_any_bytes_harm_no_other_stream(garbage, after_uuid):
    async def scenario() -> None:
        server, streams = await started(first_frame_timeout=0.3, idle_timeout=0.3)
        bad_id = uuid.uuid4()
        streams.expected.add(bad_id)
        try:
            await send(server.port, (hello(bad_id) if after_uuid else b"") + garbage)
            sink = await good_stream(server, streams)
            assert sink.reason == "hangup" and len(sink.pcm) == 10 * 320
        finally:
            await server.stop()

    asyncio.run(scenario())
