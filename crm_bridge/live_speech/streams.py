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
    _queue: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    connected: asyncio.Event = field(default_factory=asyncio.Event)

    def expect_connection(self) -> None:
        self.connected.clear()
        self._queue = asyncio.Queue()
        self.end_reason = None

    # StreamSink, called by the AudioSocket server
    def opened(self) -> LiveStream:
        self.connections += 1
        self.connected_at = time.time()
        self.connected.set()
        return self

    def audio(self, pcm: bytes) -> None:
        self.seconds_heard += len(pcm) / 16000
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
            if batch:
                on_results(self, await loop.run_in_executor(pool, recognizer.accept, batch))
        on_results(self, await loop.run_in_executor(pool, recognizer.finish))

    async def _next_batch(self) -> tuple[bytes, bool]:
        parts: list[bytes] = []
        size = 0
        chunk = await self._queue.get()
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
