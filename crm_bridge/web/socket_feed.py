"""A browser's WebSocket fed from a queue of frames: the agent page's pops, the wallboard and
the supervisors' live speech all send this way.

The server only sends; it reads the socket just to notice that the page left. A quiet feed
sends a ping every ``PING_SECONDS`` so that proxies keep the connection open and the page can
tell a silent bridge from a dead one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect, status

PING_SECONDS = 20.0
PING = {"type": "ping"}

Frames = asyncio.Queue[dict[str, Any]]


def never_dropped() -> bool:
    return False


async def next_frame(outbox: Frames) -> dict[str, Any]:
    """The next frame, or a ping after ``PING_SECONDS`` of silence.

    ``asyncio.timeout`` rather than ``wait_for``: the latter runs the wait as a task of its
    own, which costs extra turns of the event loop per frame, and during a burst of calls (when
    a turn holds a whole read of AMI events) that delays every frame of the burst.
    """
    try:
        async with asyncio.timeout(PING_SECONDS):
            return await outbox.get()
    except TimeoutError:
        return PING


async def send_frames(
    websocket: WebSocket, outbox: Frames, dropped: Callable[[], bool] = never_dropped
) -> None:
    """Send the frames as they are queued until the feed drops this page for being too slow,
    then close the socket saying so (the page reconnects and starts afresh)."""
    while not dropped():
        await websocket.send_json(await next_frame(outbox))
    await websocket.close(code=status.WS_1013_TRY_AGAIN_LATER, reason="too slow")


async def read_until_closed(websocket: WebSocket) -> None:
    """The page sends nothing that matters; reading notices that it left."""
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass


async def until_first_ends(*jobs: Coroutine[Any, Any, None]) -> list[asyncio.Task[None]]:
    """Run the jobs side by side until one of them ends, then cancel the others. Returns the
    tasks in the order given, so the caller can tell which one ended."""
    tasks = [asyncio.create_task(job) for job in jobs]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await task
    return tasks


async def feed_until_closed(
    websocket: WebSocket, outbox: Frames, dropped: Callable[[], bool] = never_dropped
) -> None:
    """Send the queued frames until the page leaves or is dropped."""
    await until_first_ends(send_frames(websocket, outbox, dropped), read_until_closed(websocket))
