"""The wallboard pages.

- ``GET /supervisor/wallboard``: for supervisors, in the supervisor pages' frame, with links to
  the queue settings and the big screen.
- ``GET /wallboard/screen``: the same board alone, large, without navigation or controls (for a
  wall screen signed in as a supervisor).
- ``GET /wallboard/now``: the board as JSON; ``WS /ws/wallboard``: the board again after every
  change (each frame the whole board: ``now``, ``connected``, ``queues``, ``agents``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request, WebSocket, status
from fastapi.responses import Response

from crm_bridge.accounts import auth
from crm_bridge.agent_states.domain import STATE_LABELS
from crm_bridge.runtime import runtime_of
from crm_bridge.supervision.page_kit import (
    NAV,
    SUPERVISOR_PAGE_HEADERS,
    SUPERVISOR_ROLES,
    Supervisor,
)
from crm_bridge.wallboard.board import Wallboard
from crm_bridge.web.language import label_half, language_of
from crm_bridge.web.pages import ROLE_LABELS, page_templates
from crm_bridge.web.socket_feed import feed_until_closed

router = APIRouter(include_in_schema=False)
templates = page_templates(Path(__file__).resolve().parent / "templates")
NOT_RUNNING = "墙板未启用 / The wallboard is not running"


def _board(request: Request) -> Wallboard:
    board = runtime_of(request).wallboard
    if board is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=NOT_RUNNING)
    return board


def page(request: Request, user: auth.SignedInUser, name: str) -> Response:
    language = language_of(request, user)
    state_labels = {str(state): label_half(text, language) for state, text in STATE_LABELS.items()}
    context = {"user": user, "csrf_token": user.csrf_token, "role_labels": ROLE_LABELS,
               "nav": NAV, "here": request.url.path, "state_labels": state_labels}  # fmt: skip
    return templates.TemplateResponse(request, name, context, headers=SUPERVISOR_PAGE_HEADERS)


@router.get("/supervisor/wallboard")
def wallboard_page(request: Request, user: Supervisor) -> Response:
    _board(request)
    return page(request, user, "wallboard.html")


@router.get("/wallboard/screen")
def wallboard_screen(request: Request, user: Supervisor) -> Response:
    _board(request)
    return page(request, user, "wallboard_screen.html")


@router.get("/wallboard/now")
async def wallboard_now(request: Request, user: Supervisor) -> dict[str, Any]:
    return await _board(request).current()


@router.websocket("/ws/wallboard")
async def wallboard_socket(websocket: WebSocket) -> None:
    await auth.user_from_websocket(websocket, *SUPERVISOR_ROLES)
    board = runtime_of(websocket).wallboard
    await websocket.accept()
    if board is None:
        await websocket.close(code=status.WS_1013_TRY_AGAIN_LATER, reason="not running")
        return
    screen = board.open_screen()
    try:
        await feed_until_closed(websocket, screen)
    finally:
        board.close_screen(screen)
