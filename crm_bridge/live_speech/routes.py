"""Live speech in the browser: the supervisors' WebSocket and live-call page, and the API
that says, call by call, whether a live transcript is being made (``post_call_only`` when
the live streams were all taken). Agents get their own call's transcript on the pop socket
(``crm_bridge/live_speech/hub.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, WebSocket, status
from fastapi.responses import Response
from sqlalchemy import select

from crm_bridge.accounts import auth
from crm_bridge.calls.in_progress import LiveCalls
from crm_bridge.db.models import LiveSpeechAlert
from crm_bridge.live_speech.service import LiveSpeech
from crm_bridge.runtime import runtime_of
from crm_bridge.supervision.page_kit import (
    NAV,
    SUPERVISOR_PAGE_HEADERS,
    SUPERVISOR_ROLES,
    Supervisor,
)
from crm_bridge.web.pages import ROLE_LABELS, page_templates
from crm_bridge.web.socket_feed import feed_until_closed
from telephony.call_events import CallRecord

OWN_TEMPLATES = Path(__file__).resolve().parent / "templates"
MAX_LINKEDID = 64


def _live(request: Request | WebSocket) -> LiveSpeech | None:
    return getattr(runtime_of(request), "live_speech", None)


templates = page_templates(OWN_TEMPLATES)
router = APIRouter()

api = {"tags": ["live speech"], "dependencies": [Depends(auth.api_access)]}


@router.get("/api/live-speech/calls", **api)
def live_calls(request: Request) -> dict[str, Any]:
    """Calls answered now: ``live_transcript`` is ``streaming`` or ``post_call_only``."""
    live = _live(request)
    if live is None:
        return {"enabled": False, "max_streams": 0, "streams_active": 0, "calls": []}
    return {"enabled": True, "max_streams": live.config.max_streams,
            "streams_active": live.streams_active, "calls": live.live_calls()}  # fmt: skip


@router.get("/api/live-speech/alerts", **api)
def stored_alerts(request: Request, linkedid: str) -> list[dict[str, Any]]:
    """The watch words a call said, stored as they were heard, in the order said."""
    if len(linkedid) > MAX_LINKEDID:
        raise HTTPException(status.HTTP_404_NOT_FOUND)
    with runtime_of(request).sessions() as session:
        query = select(LiveSpeechAlert).where(LiveSpeechAlert.linkedid == linkedid)
        rows = session.scalars(query.order_by(LiveSpeechAlert.said_at))
        return [{"word": r.word, "side": r.side, "agent": r.agent, "text": r.text,
                 "said_at": r.said_at.isoformat(), "call_second": r.call_second}
                for r in rows]  # fmt: skip


@router.get("/supervisor/live/{linkedid}", include_in_schema=False)
def live_call_page(request: Request, user: Supervisor, linkedid: str,
                   in_progress: LiveCalls) -> Response:  # fmt: skip
    live = _live(request)
    call = live.call(linkedid) if live is not None and len(linkedid) <= MAX_LINKEDID else None
    going_on = in_progress.get(linkedid)
    context = {"user": user, "csrf_token": user.csrf_token, "role_labels": ROLE_LABELS,
               "nav": NAV, "here": request.url.path, "linkedid": linkedid,
               "call": call.summary() if call else None,
               "transcript": call.transcript if call else [],
               "alerts": call.alerts if call else [],
               "going_on": going_on is not None,
               "supervisable": supervisable(user, going_on)}  # fmt: skip
    return templates.TemplateResponse(
        request, "live_call.html", context, headers=SUPERVISOR_PAGE_HEADERS
    )


def supervisable(user: auth.SignedInUser, call: CallRecord | None) -> bool:
    """Whether the page offers listen, whisper and barge (``crm_bridge.supervise`` decides
    again when one is pressed): a supervisor of the call's queue, the call answered."""
    return (user.role == "supervisor" and call is not None and call.answered_at is not None
            and call.queue in user.supervised_queues)  # fmt: skip


@router.websocket("/ws/live-speech")
async def live_socket(websocket: WebSocket) -> None:
    user = await auth.user_from_websocket(websocket, *SUPERVISOR_ROLES)
    live = _live(websocket)
    await websocket.accept()
    if live is None:
        await websocket.send_json({"type": "hello", "enabled": False, "calls": []})
        await websocket.close()
        return
    connection = live.hub.connect_supervisor(user.username)
    try:
        await websocket.send_json({"type": "hello", "enabled": True,
                                   "calls": live.live_calls()})  # fmt: skip
        await feed_until_closed(websocket, connection.outbox, lambda: connection.dropped)
    finally:
        live.hub.disconnect(connection)
