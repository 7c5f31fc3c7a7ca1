"""Who is on a call: the customer's number and the customers an agent may act for on it.

An agent takes a complaint, records an opt-out or adds a new caller only on a call that rang
them (``crm_bridge.calls.in_progress.agent_may_act``), and only for a customer who is on that call:

- the customer the agent confirmed on the call (``call_notes``), or that the call log linked;
- the customer a campaign dialled on it (its attempt's ChannelId is the call's Linkedid);
- a customer holding the number of the call's other party: the caller of an inbound call, the
  callee of an outbound one (a family phone puts several on the call).

That other party's number comes from the live call (the bridge's trackers) or, once the call
ended, from the call log, where it is stored as E.164.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_bridge.accounts.users import UserInputError
from crm_bridge.calls.call_log import NumberRules
from crm_bridge.db.models import Call, CallNote, CustomerPhone, DialAttempt
from telephony.call_events import CallRecord, Direction

NOT_ON_CALL = "该客户不在这通电话上 / This customer is not on this call"


def party_number(
    session: Session, linkedid: str, live: CallRecord | None, numbers: NumberRules
) -> str | None:
    """The E.164 number of the customer's side of the call, or None (withheld, an extension,
    no such call)."""
    if live is not None:
        raw = live.callee if live.direction is Direction.OUTBOUND else live.caller
        number = numbers.to_e164(raw) if raw else None
    else:
        row = session.execute(
            select(Call.direction, Call.caller, Call.callee).where(Call.linkedid == linkedid)
        ).first()
        outbound = row is not None and row.direction == "outbound"
        number = None if row is None else (row.callee if outbound else row.caller)
    return number if number and number.startswith("+") else None


def customers_on_call(session: Session, linkedid: str, number: str | None) -> set[int]:
    """The ids of the customers on the call (see the module docstring)."""
    linked = [
        select(CallNote.customer_id).where(CallNote.linkedid == linkedid),
        select(Call.customer_id).where(Call.linkedid == linkedid),
        select(DialAttempt.customer_id).where(DialAttempt.channel_id == linkedid),
    ]
    if number is not None:
        linked.append(select(CustomerPhone.customer_id).where(CustomerPhone.number_e164 == number))
    found: set[int] = set()
    for statement in linked:
        found.update(customer for customer in session.scalars(statement) if customer is not None)
    return found


def check_customer_on_call(
    session: Session,
    linkedid: str,
    customer_id: int,
    live: dict[str, CallRecord],
    numbers: NumberRules,
) -> None:
    """Raises :class:`~crm_bridge.accounts.users.UserInputError` unless the customer is on the
    call (the caller has been checked to be the agent's first)."""
    number = party_number(session, linkedid, live.get(linkedid), numbers)
    if customer_id not in customers_on_call(session, linkedid, number):
        raise UserInputError({"customer_id": NOT_ON_CALL})
