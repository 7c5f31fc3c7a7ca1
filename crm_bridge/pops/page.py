"""The agent's page: the page itself and its socket of screen pops.

Routes (a browser page and its socket, left out of the OpenAPI document):

- ``GET /agent``: the page (agents; supervisors and admins may open it too).
- ``WS /ws/pops``: the pop frames of :class:`~crm_bridge.pops.hub.PopHub`; the first frame is
  ``hello`` (who, which extensions, the AMI state, and ``live``: the calls of theirs still
  going, so that a page back from a reconnect closes the cards of calls that ended while it
  was away), then ``pop`` / ``update`` / ``bridge`` frames, and a ``ping`` whenever nothing
  else was sent for a while, so that the page can tell a quiet line from a dead one.

  The socket lives no longer than the session it was opened with: it is closed with code
  :data:`SESSION_ENDED` at once when the user's sessions are ended on this instance (sign-out
  in any tab, a new password, deactivation, "sign out everywhere":
  :mod:`crm_bridge.accounts.session_revocation`), when the session expires, or when the user row no
  longer gives it this page (checked every :data:`SESSION_CHECK_SECONDS`, which also catches
  an end of sessions on another instance, a lost role or other extensions). The page then
  asks whether its cookie (maybe refreshed since) still signs it in, and reconnects or goes
  to the sign-in page.

What the agent does on a call (link the caller, add a new customer, wrap up, complain,
click-to-call) goes through the JSON routes of :mod:`crm_bridge.pops.api`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect

from crm_bridge.accounts import auth
from crm_bridge.accounts.auth import SessionData, SignedInUser
from crm_bridge.pops.hub import PopConnection
from crm_bridge.runtime import RuntimeDep
from crm_bridge.web.pages import PAGE_HEADERS, ROLE_LABELS, page_templates
from crm_bridge.web.socket_feed import read_until_closed, send_frames, until_first_ends

PAGE_ROLES = auth.AGENT_DESK_ROLES
"""A page that hears nothing for three times this long reconnects."""
SESSION_CHECK_SECONDS = 60.0
"""How often an open socket checks that its user may still have it."""
SESSION_ENDED = 4401
"""The close code of a socket whose session ended (the page checks it and signs in again)."""
AGENT_PAGE_HEADERS = PAGE_HEADERS | {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'"
    ),
}

PageUser = auth.AgentUser


templates = page_templates()
router = APIRouter(include_in_schema=False)


@router.get("/agent")
def agent_page(request: Request, runtime: RuntimeDep, user: PageUser) -> Response:
    context = {
        "user": user,
        "csrf_token": user.csrf_token,
        "role_labels": ROLE_LABELS,
        "extensions": user.extensions,
        "timezone": runtime.settings.timezone,
        "transfer_queues": runtime.settings.transfer_queues,
    }
    return templates.TemplateResponse(request, "agent.html", context, headers=AGENT_PAGE_HEADERS)


@router.websocket("/ws/pops")
async def pops_socket(websocket: WebSocket) -> None:
    user = await auth.user_from_websocket(websocket, *PAGE_ROLES)
    session = auth.read_session(websocket)
    assert session is not None  # user_from_websocket refused the socket otherwise
    runtime = websocket.app.state.runtime
    hub = runtime.pops
    await websocket.accept()
    connection = hub.connect(user.username, user.extensions)
    try:
        hello = {
            "type": "hello",
            "user": user.username,
            "extensions": list(user.extensions),
            "bridge_state": hub.bridge_state(),
            "live": sorted(connection.linkedids),
        }
        await websocket.send_json(hello)
        with runtime.revocations.watch(user.id) as ended:
            ends = _session_ends(websocket, session, user, ended)
            await _serve(websocket, connection, ends)
    finally:
        hub.disconnect(connection)


async def _serve(
    websocket: WebSocket, connection: PopConnection, session_ends: Coroutine[Any, Any, None]
) -> None:
    """Send the page its frames until either side goes away or the session ends."""
    *_, watcher = await until_first_ends(
        send_frames(websocket, connection.outbox, lambda: connection.dropped),
        read_until_closed(websocket),
        session_ends,
    )
    if not watcher.cancelled() and watcher.exception() is None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await websocket.close(code=SESSION_ENDED, reason="session ended")


async def _session_ends(
    websocket: WebSocket, session: SessionData, user: SignedInUser, ended: asyncio.Event
) -> None:
    """Return once the user's sessions were ended (``ended``), or the socket's session has
    expired or no longer gives this user this page with these extensions."""
    codec = auth.codec_for(websocket)
    while True:
        wait = max(0.0, min(codec.seconds_left(session), SESSION_CHECK_SECONDS))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await ended.wait()
        if ended.is_set() or codec.seconds_left(session) <= 0:
            return
        now = await run_in_threadpool(auth.load_user, websocket, session)
        if now is None or now.role not in PAGE_ROLES or now.extensions != user.extensions:
            return
