"""One side of a call being listened to: its audio queue and its recogniser loop.

A :class:`LiveStream` is the AudioSocket sink of its current connection (audio goes into a
queue on the event loop) and the recognition loop that takes the audio off that queue in
batches and decodes each on the worker threads. Each connection gets a fresh recogniser,
so word times count from that connection's first sample; :attr:`LiveStream.connected_at`
is when it began (UTC epoch seconds).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

from transcription.streaming import LiveResult, StreamingRecognizer

MIN_BATCH_BYTES = 3200
"""Audio handed to Vosk at a time at least (0.1 s at 8 kHz): Asterisk sends 20 ms frames, and
a decode call per frame spends more on the call than on the audio."""
MAX_BATCH_BYTES = 32000
"""At most 1 s at a time, so a stream that fell behind catches up without one huge decode."""
BATCH_WAIT = 0.1
"""How long the loop waits for the rest of a small batch before decoding what it has."""
GAP_SECONDS = 1.0
"""A stream that sent nothing this long has the gap filled with silence (:meth:`LiveStream._gap`);
long enough that jitter in the frames' delivery never puts silence inside a word."""
BYTES_PER_SECOND = 16000


@dataclass(eq=False)
class LiveStream:
    linkedid: str
    side: str
    channel: str
    connections: int = 0
    """AudioSocket connections this side had (more than one: the stream was cut and resumed)."""
    connected_at: float | None = None
    end_reason: str | None = None
    seconds_heard: float = 0.0
    _bytes_fed: int = 0
    _queue: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    connected: asyncio.Event = field(default_factory=asyncio.Event)

    def expect_connection(self) -> None:
        self.connected.clear()
        self._queue = asyncio.Queue()
        self.end_reason = None
        self._bytes_fed = 0

    # StreamSink, called by the AudioSocket server
    def opened(self) -> LiveStream:
        self.connections += 1
        self.connected_at = time.time()
        self.connected.set()
        return self

    def audio(self, pcm: bytes) -> None:
        self.seconds_heard += len(pcm) / BYTES_PER_SECOND
        self._queue.put_nowait(pcm)

    def ended(self, reason: str) -> None:
        self.end_reason = reason
        self._queue.put_nowait(None)

    async def recognize(
        self,
        make_recognizer: Callable[[], StreamingRecognizer],
        pool: Executor,
        on_results: Callable[[LiveStream, list[LiveResult]], None],
    ) -> None:
        """Decode this connection's audio as it arrives until it ends, then the rest."""
        loop = asyncio.get_running_loop()
        recognizer = await loop.run_in_executor(pool, make_recognizer)
        ended = False
        while not ended:
            batch, ended = await self._next_batch()
            self._bytes_fed += len(batch)
            if batch:
                on_results(self, await loop.run_in_executor(pool, recognizer.accept, batch))
        on_results(self, await loop.run_in_executor(pool, recognizer.finish))

    def _gap(self) -> bytes:
        """Silence for the time the stream sent nothing. Asterisk sends no frames while the
        spied party's line is quiet (no RTP, as when a channel merely waits), so without this
        the recogniser would never hear the pause that closes an utterance (the final would
        wait for the hang-up) and word times would fall behind the call's clock."""
        assert self.connected_at is not None
        due = int((time.time() - self.connected_at) * BYTES_PER_SECOND) - self._bytes_fed
        return bytes(min(max(due, 0), int(GAP_SECONDS * BYTES_PER_SECOND)) & ~1)

    async def _next_batch(self) -> tuple[bytes, bool]:
        parts: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(GAP_SECONDS):
                chunk = await self._queue.get()
        except TimeoutError:
            return self._gap(), False
        while chunk is not None:
            parts.append(chunk)
            size += len(chunk)
            if size >= MAX_BATCH_BYTES:
                break
            if self._queue.empty():
                if size >= MIN_BATCH_BYTES:
                    break
                try:
                    async with asyncio.timeout(BATCH_WAIT):
                        chunk = await self._queue.get()
                except TimeoutError:
                    break
                continue
            chunk = self._queue.get_nowait()
        return b"".join(parts), chunk is None
