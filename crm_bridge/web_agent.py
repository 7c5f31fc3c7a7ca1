"""The agent's page: the page itself and its socket of screen pops.

Routes (a browser page and its socket, left out of the OpenAPI document):

- ``GET /agent``: the page (agents; supervisors and admins may open it too).
- ``WS /ws/pops``: the pop frames of :class:`~crm_bridge.pops.PopHub`; the first frame is
  ``hello`` (who, which extensions, the AMI state), then ``pop`` / ``update`` / ``bridge``
  frames, and a ``ping`` whenever nothing else was sent for a while, so that the page can tell
  a quiet line from a dead one.

What the agent does on a call (link the caller, add a new customer, wrap up, complain,
click-to-call) goes through the JSON routes of :mod:`crm_bridge.web_agent_api`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, WebSocket, status
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates
from starlette.websockets import WebSocketDisconnect

from crm_bridge import auth
from crm_bridge.auth import SignedInUser
from crm_bridge.pops import PopConnection
from crm_bridge.web_users import PAGE_HEADERS, ROLE_LABELS, TEMPLATES_DIR

PAGE_ROLES = ("agent", "supervisor", "admin")
PING_SECONDS = 20.0
"""A page that hears nothing for three times this long reconnects."""
AGENT_PAGE_HEADERS = PAGE_HEADERS | {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'"
    ),
}

PageUser = Annotated[SignedInUser, Depends(auth.require_role(*PAGE_ROLES))]


def agent_router() -> APIRouter:
    templates = Jinja2Templates(directory=TEMPLATES_DIR)
    router = APIRouter(include_in_schema=False)

    @router.get("/agent")
    def agent_page(request: Request, user: PageUser) -> Response:
        context = {
            "user": user,
            "csrf_token": user.csrf_token,
            "role_labels": ROLE_LABELS,
            "extensions": user.extensions,
        }
        return templates.TemplateResponse(
            request, "agent.html", context, headers=AGENT_PAGE_HEADERS
        )

    @router.websocket("/ws/pops")
    async def pops_socket(websocket: WebSocket) -> None:
        user = await auth.user_from_websocket(websocket, *PAGE_ROLES)
        hub = websocket.app.state.runtime.pops
        await websocket.accept()
        hello = {
            "type": "hello",
            "user": user.username,
            "extensions": list(user.extensions),
            "bridge_state": hub.bridge_state(),
        }
        await websocket.send_json(hello)
        connection = hub.connect(user.username, user.extensions)
        try:
            await _serve(websocket, connection)
        finally:
            hub.disconnect(connection)

    return router


async def _serve(websocket: WebSocket, connection: PopConnection) -> None:
    """Send the page its frames until either side goes away."""
    sender = asyncio.create_task(_send_frames(websocket, connection))
    receiver = asyncio.create_task(_read_until_closed(websocket))
    try:
        await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sender, receiver):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await task


async def _send_frames(websocket: WebSocket, connection: PopConnection) -> None:
    while not connection.dropped:
        await websocket.send_json(await _next_frame(connection))
    await websocket.close(code=status.WS_1013_TRY_AGAIN_LATER, reason="too slow")


async def _next_frame(connection: PopConnection) -> dict[str, Any]:
    """The next frame, or a ping after ``PING_SECONDS`` of silence.

    ``asyncio.timeout`` rather than ``wait_for``: the latter runs the wait as a task of its
    own, which costs extra turns of the event loop per frame, and during a burst of calls (when
    a turn holds a whole read of AMI events) that delays every pop of the burst.
    """
    try:
        async with asyncio.timeout(PING_SECONDS):
            return await connection.outbox.get()
    except TimeoutError:
        return {"type": "ping"}


async def _read_until_closed(websocket: WebSocket) -> None:
    """The page sends nothing that matters; reading notices that it left."""
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass
