"""The agent's notes on a call, kept in ``call_notes`` by Linkedid: the customer confirmed on
it, the wrap-up code and the note. By Linkedid because the ``calls`` row is written only when
the call ends: the call log prefers the customer confirmed here over the number lookup, and
when the agent links a customer after the call was logged, :func:`link_customer` updates
``calls`` as well. The supervisor's pages read the notes with :func:`notes_by_linkedid`.

The functions write inside the caller's transaction (flushed, never committed) and check
everything before the first write; bad input raises
:class:`~crm_bridge.accounts.users.UserInputError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from crm_bridge.accounts.users import UserInputError
from crm_bridge.db.models import MAX_NOTE_CHARS, WRAPUP_CODES, Call, CallNote, Customer

NO_SUCH_CUSTOMER = "客户不存在 / No such customer"


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


def link_customer(session: Session, linkedid: str, customer_id: int, agent: str) -> None:
    """Record that the caller of ``linkedid`` is this customer (the agent confirmed it)."""
    if session.get(Customer, customer_id) is None:
        raise UserInputError({"customer_id": NO_SUCH_CUSTOMER})
    _save_note(session, linkedid, agent, customer_id=customer_id)
    session.execute(update(Call).where(Call.linkedid == linkedid).values(customer_id=customer_id))


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
