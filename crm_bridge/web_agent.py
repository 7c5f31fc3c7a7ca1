"""The agent's page: screen pops over a WebSocket, and the new-customer form.

Routes (a browser page and its socket, left out of the OpenAPI document):

- ``GET /agent``: the page (agents; supervisors and admins may open it too).
- ``WS /ws/pops``: the pop frames of :class:`~crm_bridge.pops.PopHub`; the first frame is
  ``hello`` (who, which extensions, the AMI state), then ``pop`` / ``update`` / ``bridge``
  frames, and a ``ping`` whenever nothing else was sent for a while, so that the page can tell
  a quiet line from a dead one.
- ``POST /agent/customers``: a caller not in the archive becomes a customer (CSRF token in the
  ``X-CSRF-Token`` header or the form); answers with the new card.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request, WebSocket, status
from fastapi.responses import JSONResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import select
from starlette.websockets import WebSocketDisconnect

from crm_bridge import auth
from crm_bridge.auth import SignedInUser
from crm_bridge.customer_card import build_cards
from crm_bridge.db.models import GENDERS, Customer, CustomerPhone
from crm_bridge.phones import PhoneKind, normalize_phone
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
UNPROCESSABLE = 422
CARD_NO_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")

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

    @router.post("/agent/customers")
    def new_customer(
        request: Request,
        user: PageUser,
        phone: Annotated[str, Form(max_length=64)],
        name: Annotated[str, Form(max_length=256)] = "",
        gender: Annotated[str, Form(max_length=8)] = "",
        card_no: Annotated[str, Form(max_length=256)] = "",
    ) -> JSONResponse:
        runtime = request.app.state.runtime
        settings = runtime.settings
        number = normalize_phone(phone, settings.number_region, settings.outside_line_prefix)
        errors = _customer_problems(name, gender, card_no, number.kind)
        with runtime.sessions.begin() as session:
            if "card_no" not in errors and session.scalar(
                select(Customer.id).where(Customer.card_no == card_no.strip())
            ):
                errors["card_no"] = "会员卡号已存在 / Card number already taken"
            if errors:
                raise HTTPException(UNPROCESSABLE, detail=errors)
            customer = Customer(
                card_no=card_no.strip(),
                name=name.strip(),
                gender=gender or None,
                phones=[CustomerPhone(number_e164=number.e164, kind="mobile")],
            )
            session.add(customer)
            session.flush()
            zone = settings.zone
            today = datetime.now(zone).date()
            (card,) = build_cards(session, [customer.id], today=today, zone=zone)
        return JSONResponse(card.model_dump(mode="json"), status.HTTP_201_CREATED)

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
        try:
            frame: dict[str, Any] = await asyncio.wait_for(connection.outbox.get(), PING_SECONDS)
        except TimeoutError:
            frame = {"type": "ping"}
        await websocket.send_json(frame)
    await websocket.close(code=status.WS_1013_TRY_AGAIN_LATER, reason="too slow")


async def _read_until_closed(websocket: WebSocket) -> None:
    """The page sends nothing that matters; reading notices that it left."""
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass


def _customer_problems(name: str, gender: str, card_no: str, kind: PhoneKind) -> dict[str, str]:
    errors = {}
    if not name.strip() or len(name.strip()) > 64:
        errors["name"] = "请填写姓名（最多 64 字）/ Enter a name (at most 64 characters)"
    if gender and gender not in GENDERS:
        errors["gender"] = "性别无效 / Unknown gender"
    if not CARD_NO_PATTERN.fullmatch(card_no.strip()):
        errors["card_no"] = (
            "会员卡号须为 1-32 位字母、数字、- 或 _ / Card number: 1-32 letters, digits, - or _"
        )
    if kind is not PhoneKind.E164:
        errors["phone"] = "不是有效的电话号码 / Not a valid phone number"
    return errors
