"""What an agent does on a call: confirm the customer, add a new caller, wrap up, take a
complaint, and call a customer back with one click.

The functions taking a ``session`` write inside the caller's transaction (flushed, never
committed) and check everything before the first write, so a refused request leaves nothing
behind; bad input raises :class:`~crm_bridge.accounts.users.UserInputError` with a zh-CN + English
message per field.

The agent's work on a call is kept in ``call_notes`` by Linkedid because the ``calls`` row is
written only when the call ends: the call log (``crm_bridge/calls/call_log.py``) prefers the
customer the agent confirmed there over the number lookup and gives complaints taken during the
call their ``call_id``, and when the agent links a customer after the call was logged,
:func:`link_customer` updates ``calls`` as well.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import phonenumbers
from sqlalchemy import or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crm_bridge.accounts.users import UserInputError
from crm_bridge.customers.numbers import mask_phone, normalize_phone
from crm_bridge.db.models import (
    GENDERS,
    MAX_NOTE_CHARS,
    WRAPUP_CODES,
    Call,
    CallNote,
    Complaint,
    Customer,
    CustomerPhone,
)
from crm_bridge.settings import Settings
from telephony.ami_connection import AmiNotConnected
from telephony.call_events import CallRecord
from telephony.call_tracker import agent_from_interface
from telephony.dialer import OriginateRefused as OriginateRefused  # raised by click-to-call
from telephony.dialer import OriginateRequest, send_originate

if TYPE_CHECKING:  # the bridge imports the call log, which imports this module
    from crm_bridge.calls.bridge import BridgeService

log = logging.getLogger(__name__)

WRAPUP_LABELS = {
    "inquiry": "咨询",
    "order": "下单",
    "after_sales": "售后",
    "complaint": "投诉",
    "appointment": "预约",
    "return_visit": "回访",
    "other": "其他",
}
"""The zh-CN label of each wrap-up code (the codes are ``models.WRAPUP_CODES``)."""
MAX_COMPLAINT_CHARS = 2000
MAX_NAME_CHARS = 64
MAX_CARD_NO_CHARS = 32
GENERATED_CARD_PREFIX = "CB"
"""Card numbers made for a new caller: ``CB`` + the UTC date + 6 random hex digits."""
DEFAULT_OUTSIDE_LINE_PREFIX = "9"
"""The outside-line prefix of the ``internal`` context in dialplans/extensions_callbridge.conf
(``_9XX.`` dials ``${EXTEN:1}@carrier``); ``settings.outside_line_prefix`` overrides it."""
ORIGINATE_TIMEOUT_MS = 30_000
"""How long the agent's own phone rings before a click-to-call gives up."""
CLICK_TO_CALL_NAME = "Click-to-call"

NO_SUCH_CUSTOMER = "客户不存在 / No such customer"


# ------------------------------------------------------------------------------- who may act


def agent_keys(extensions: Iterable[str]) -> frozenset[str]:
    """The agent names the tracker uses for these extensions: ``PJSIP/1001`` -> ``1001``."""
    return frozenset(agent_from_interface(extension) for extension in extensions)


def agent_may_act(
    session: Session,
    linkedid: str,
    extensions: Iterable[str],
    rang: Callable[[str], set[str]] | None,
) -> bool:
    """True when the call rang one of ``extensions``.

    Either the logged call was answered by (or transferred to) one of them, or ``rang``, which
    knows the calls in progress, says it rang one of them. Anything else (another agent's call,
    a Linkedid that never existed) is False, which the web layer answers with 404.
    """
    mine = agent_keys(extensions)
    if not mine:
        return False
    if rang is not None and rang(linkedid) & mine:
        return True
    logged = select(Call.id).where(
        Call.linkedid == linkedid, or_(Call.agent.in_(mine), Call.transferred_to.in_(mine))
    )
    return session.scalar(logged) is not None


def agents_of_calls_in_progress(bridge: BridgeService) -> dict[str, set[str]]:
    """For each call in progress on any server, by Linkedid: the agents it rang and the agent
    who placed it (a click-to-call rings the agent first); ``rang`` of :func:`agent_may_act`
    is ``.get`` on this.

    Reads the trackers, so call it on the event loop, which is where they change.
    """
    return {
        call.linkedid: _agents_of(call)
        for link in bridge.links
        for call in link.tracker.active_calls()
    }


def calls_in_progress_when_known(bridge: BridgeService) -> dict[str, set[str]] | None:
    """:func:`agents_of_calls_in_progress`, or None while the bridge is not in step with every
    server (a call in progress then looks like one that never happened)."""
    return agents_of_calls_in_progress(bridge) if bridge.in_step else None


def _agents_of(call: CallRecord) -> set[str]:
    return {*call.agents_rung, *([call.agent] if call.agent else [])}


# ------------------------------------------------------------------------------- customer


def link_customer(session: Session, linkedid: str, customer_id: int, agent: str) -> None:
    """Record that the caller of ``linkedid`` is this customer (the agent confirmed it)."""
    if session.get(Customer, customer_id) is None:
        raise UserInputError({"customer_id": NO_SUCH_CUSTOMER})
    _save_note(session, linkedid, agent, customer_id=customer_id)
    session.execute(update(Call).where(Call.linkedid == linkedid).values(customer_id=customer_id))


def create_customer_for_call(
    session: Session,
    linkedid: str,
    *,
    name: str,
    gender: str | None,
    phone_raw: str,
    card_no: str | None,
    agent: str,
    region: str = "CN",
    outside_prefix: str | None = None,
) -> int:
    """Add an unknown caller to the archive and link them to the call; return the id.

    The phone is normalised like a caller ID and must be a public number; ``card_no`` is
    generated when none is given and must not be in use.
    """
    name = (name or "").strip()
    gender = (gender or "").strip().upper() or None
    card = (card_no or "").strip() or None
    number = normalize_phone(phone_raw, region, outside_prefix)
    e164 = number.e164
    errors: dict[str, str] = {}
    if not name:
        errors["name"] = "请填写姓名 / Name is required"
    elif len(name) > MAX_NAME_CHARS:
        errors["name"] = (
            f"姓名最多 {MAX_NAME_CHARS} 个字 / Name: at most {MAX_NAME_CHARS} characters"
        )
    if gender is not None and gender not in GENDERS:
        errors["gender"] = "性别应为 M（男）或 F（女）/ Gender must be M or F"
    if e164 is None:
        reason = number.reason.value if number.reason else number.kind.value
        errors["phone"] = f"电话号码无效 / Not a usable phone number ({reason})"
    if card is not None and len(card) > MAX_CARD_NO_CHARS:
        errors["card_no"] = (
            f"卡号最多 {MAX_CARD_NO_CHARS} 个字符 / "
            f"Card no.: at most {MAX_CARD_NO_CHARS} characters"
        )
    elif card is not None and _card_taken(session, card):
        errors["card_no"] = "卡号已被使用 / Card number already in use"
    if errors or e164 is None:
        raise UserInputError(errors)
    customer = Customer(
        card_no=card or _new_card_no(session),
        name=name,
        gender=gender,
        phones=[CustomerPhone(number_e164=e164, kind=_phone_kind(e164))],
    )
    session.add(customer)
    try:
        session.flush()
    except IntegrityError:  # the same card no. saved by someone else a moment ago
        raise UserInputError({"card_no": "卡号已被使用 / Card number already in use"}) from None
    link_customer(session, linkedid, customer.id, agent)
    log.info("agent %s added customer %d for %s", agent, customer.id, mask_phone(e164))
    return customer.id


def _card_taken(session: Session, card_no: str) -> bool:
    return session.scalar(select(Customer.id).where(Customer.card_no == card_no)) is not None


def _new_card_no(session: Session) -> str:
    day = datetime.now(UTC).strftime("%Y%m%d")
    while True:
        card_no = f"{GENERATED_CARD_PREFIX}{day}{secrets.token_hex(3).upper()}"
        if not _card_taken(session, card_no):
            return card_no


def _phone_kind(e164: str) -> str:
    number_type = phonenumbers.number_type(phonenumbers.parse(e164))
    return "mobile" if number_type == phonenumbers.PhoneNumberType.MOBILE else "other"


# ------------------------------------------------------------------------------- wrap-up


def save_wrapup(session: Session, linkedid: str, code: str, note: str | None, agent: str) -> None:
    """Set the wrap-up code and note of a call (saving again replaces both)."""
    text = (note or "").strip() or None
    errors: dict[str, str] = {}
    if code not in WRAPUP_CODES:
        listed = ", ".join(f"{c} {WRAPUP_LABELS[c]}" for c in WRAPUP_CODES)
        errors["code"] = f"小结类型无效 / Unknown wrap-up code (one of: {listed})"
    if text is not None and len(text) > MAX_NOTE_CHARS:
        errors["note"] = f"备注最多 {MAX_NOTE_CHARS} 字 / Note: at most {MAX_NOTE_CHARS} characters"
    if errors:
        raise UserInputError(errors)
    _save_note(session, linkedid, agent, wrapup_code=code, note=text)


def _save_note(session: Session, linkedid: str, agent: str, **values: object) -> None:
    """Insert or update the call's note in one statement (two agents saving at once is fine)."""
    values |= {"agent_username": agent, "updated_at": datetime.now(UTC)}
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(CallNote)
        .values(linkedid=linkedid, **values)
        .on_conflict_do_update(index_elements=["linkedid"], set_=values)
    )
    session.execute(statement)


def notes_by_linkedid(session: Session, linkedids: Sequence[str]) -> dict[str, CallNote]:
    """The notes of these calls, by Linkedid (calls without one are left out)."""
    if not linkedids:
        return {}
    rows = session.scalars(select(CallNote).where(CallNote.linkedid.in_(set(linkedids))))
    return {row.linkedid: row for row in rows}


# ------------------------------------------------------------------------------- complaints


def open_complaint(
    session: Session, customer_id: int, content: str, agent: str, linkedid: str | None = None
) -> int:
    """Take a complaint (status open, no handler yet); return its id.

    Taken on a call, it keeps the Linkedid and gets its ``call_id`` when the call is logged
    (at once when it already is).
    """
    text = (content or "").strip()
    errors: dict[str, str] = {}
    if session.get(Customer, customer_id) is None:
        errors["customer_id"] = NO_SUCH_CUSTOMER
    if not text:
        errors["content"] = "请填写投诉内容 / The complaint is empty"
    elif len(text) > MAX_COMPLAINT_CHARS:
        errors["content"] = (
            f"投诉内容最多 {MAX_COMPLAINT_CHARS} 字 / "
            f"Complaint: at most {MAX_COMPLAINT_CHARS} characters"
        )
    if errors:
        raise UserInputError(errors)
    call_id = None
    if linkedid is not None:
        call_id = session.scalar(select(Call.id).where(Call.linkedid == linkedid))
    complaint = Complaint(
        customer_id=customer_id,
        received_at=datetime.now(UTC),
        content=text,
        status="open",
        handler=None,
        linkedid=linkedid,
        call_id=call_id,
    )
    session.add(complaint)
    session.flush()
    log.info("agent %s opened complaint %d for customer %d", agent, complaint.id, customer_id)
    return complaint.id


# ------------------------------------------------------------------------------- call log


# ------------------------------------------------------------------------------- click-to-call


def interface_of(extension: str) -> str:
    """The channel to ring for a user's extension: ``1001`` -> ``PJSIP/1001``; an interface
    (``PJSIP/1001``, ``Local/1001@from-internal``) is used as it is."""
    return extension if "/" in extension else f"PJSIP/{extension}"


def outside_line_exten(number_e164: str, settings: Settings) -> str:
    """The extension the ``internal`` context dials a public number by: the outside-line
    prefix and the number as dialled from the center's region (national form at home,
    ``00`` + country code abroad), digits only."""
    parsed = phonenumbers.parse(number_e164)
    dialled = phonenumbers.format_out_of_country_calling_number(parsed, settings.number_region)
    prefix = settings.outside_line_prefix or DEFAULT_OUTSIDE_LINE_PREFIX
    return prefix + phonenumbers.normalize_digits_only(dialled)


async def originate_click_to_call(
    bridge: BridgeService, agent_interface: str, number_e164: str, settings: Settings
) -> str:
    """Ring the agent's phone; when they pick up, Asterisk dials the customer from the agent's
    ``internal`` context (recorded there like every outside call). Returns the ChannelId
    given to the agent's channel, by which the call can be followed.

    The number must be E.164. A customer's ``consent_to_calls`` is not checked: it governs
    campaigns, and here an agent decides to call one customer they are serving. The caller ID
    is the agent's own extension, because the dialplan reads ``CALLERID(num)`` as the agent.

    Every value goes through ``encode_action`` (in the connection): a value Asterisk could
    misread raises :class:`~telephony.ami_codec.UnsafeAmiValue` and nothing is sent. Raises
    ``AmiNotConnected`` when the server is not connected and :class:`OriginateRefused` when
    Asterisk refuses. Phones are on the main server (the first one of the settings).
    """
    if not normalize_phone(number_e164).is_e164 or not number_e164.startswith("+"):
        raise ValueError("click-to-call needs an E.164 number")
    link = bridge.links[0]
    channel_id = str(uuid.uuid4())
    agent = agent_from_interface(agent_interface)
    request = OriginateRequest(
        channel=agent_interface,
        context="internal",
        exten=outside_line_exten(number_e164, settings),
        channel_id=channel_id,
        action_id=f"c2c-{channel_id}",
        caller_id=f'"{CLICK_TO_CALL_NAME}" <{agent}>',
        timeout_ms=ORIGINATE_TIMEOUT_MS,
        variables={"CC_CLICK_TO_CALL": "1"},
    )
    if link.connection is None:
        raise AmiNotConnected(f"AMI {link.config.name} is not started")
    await send_originate(link.connection, request)
    log.info("click-to-call by %s to %s: channel %s", agent, mask_phone(number_e164), channel_id)
    return channel_id
