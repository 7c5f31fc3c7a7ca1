"""What an agent does on a call besides its notes: add a new caller to the archive and take a
complaint. (The call's notes and confirmed customer are :mod:`crm_bridge.calls.notes`,
click-to-call is :mod:`crm_bridge.calls.dialing`, who may act on a call is
:mod:`crm_bridge.calls.in_progress`.)

The functions write inside the caller's transaction (flushed, never committed) and check
everything before the first write, so a refused request leaves nothing behind; bad input
raises :class:`~crm_bridge.accounts.users.UserInputError` with a zh-CN + English message per
field. A complaint taken during a call gets its ``call_id`` when the call is logged.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime

import phonenumbers
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crm_bridge.accounts.users import UserInputError
from crm_bridge.calls.notes import NO_SUCH_CUSTOMER, link_customer
from crm_bridge.customers.numbers import mask_phone, normalize_phone
from crm_bridge.db.models import (
    GENDERS,
    Call,
    Complaint,
    Customer,
    CustomerPhone,
)

log = logging.getLogger(__name__)

MAX_COMPLAINT_CHARS = 2000
CATEGORY_LABELS = {
    "product": "产品质量 Product quality",
    "service": "服务态度 Service attitude",
    "delivery": "物流配送 Delivery",
    "price": "价格 Price",
    "other": "其他 Other",
}
"""A complaint's category: a fixed list (the database checks it), so that the complaints of
every month and every center are counted and filtered the same way."""
SEVERITY_LABELS = {"normal": "一般 Normal", "serious": "严重 Serious", "urgent": "紧急 Urgent"}
MAX_NAME_CHARS = 64
MAX_CARD_NO_CHARS = 32
GENERATED_CARD_PREFIX = "CB"
"""Card numbers made for a new caller: ``CB`` + the UTC date + 6 random hex digits."""


# ------------------------------------------------------------------------------- customer


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


# ------------------------------------------------------------------------------- complaints


def open_complaint(
    session: Session,
    customer_id: int,
    content: str,
    agent: str,
    linkedid: str | None = None,
    *,
    category: str | None = None,
    severity: str = "normal",
) -> int:
    """Take a complaint (status open, no handler yet); return its id.

    Taken on a call, it keeps the Linkedid and gets its ``call_id`` when the call is logged
    (at once when it already is). ``category`` None: not given (an API client of before
    categories); the agent's form always sends one, and a blank one is refused.
    """
    text = (content or "").strip()
    errors: dict[str, str] = {}
    if session.get(Customer, customer_id) is None:
        errors["customer_id"] = NO_SUCH_CUSTOMER
    if category is not None and category not in CATEGORY_LABELS:
        errors["category"] = (
            "请选择投诉类别 / Choose a category" if not category.strip()
            else "未知的投诉类别 / Unknown category"
        )  # fmt: skip
    if severity not in SEVERITY_LABELS:
        errors["severity"] = "请选择严重程度：一般、严重或紧急 / Choose a severity"
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
        category=category,
        severity=severity,
        status="open",
        handler=None,
        linkedid=linkedid,
        call_id=call_id,
    )
    session.add(complaint)
    session.flush()
    log.info("agent %s opened complaint %d (%s, %s) for customer %d",
             agent, complaint.id, category, severity, customer_id)  # fmt: skip
    return complaint.id
