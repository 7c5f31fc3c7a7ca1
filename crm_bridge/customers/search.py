"""Finding customers in the archive by what a person types: a name, a card number or a phone
number (any form), as the supervisors' call search and the agents' customer search take it."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from crm_bridge.customers.numbers import normalize_phone
from crm_bridge.db.models import Customer, CustomerPhone

CUSTOMERS_MATCHED = 50
"""A search that matches more customers than this is cut to the first ones."""


def customer_ids(session: Session, text: str) -> list[int]:
    """Customers whose card number or name is ``text`` (a name can be shared); when none is,
    those whose name or card number begins with it (张 finds 张三 and 张丽)."""
    text = text.strip()
    for matches in (
        or_(Customer.card_no == text, Customer.name == text),
        or_(Customer.name.startswith(text, autoescape=True),
            Customer.card_no.startswith(text, autoescape=True)),
    ):  # fmt: skip
        ids = list(session.scalars(
            select(Customer.id).where(matches).order_by(Customer.id).limit(CUSTOMERS_MATCHED)
        ))  # fmt: skip
        if ids:
            return ids
    return []


def find_customers(
    session: Session, text: str, *, region: str, outside_line_prefix: str | None
) -> list[Customer]:
    """The customers ``text`` names: those holding it as a phone number (``138 0013 8000``,
    ``+86…``, normalised and matched exactly), then those of :func:`customer_ids`; oldest
    first within each, at most :data:`CUSTOMERS_MATCHED`."""
    text = text.strip()
    if not text:
        return []
    ids: list[int] = []
    e164 = normalize_phone(text, region, outside_line_prefix).e164
    if e164 is not None:
        holders = select(CustomerPhone.customer_id).where(CustomerPhone.number_e164 == e164)
        ids.extend(session.scalars(holders.order_by(CustomerPhone.customer_id)))
    ids.extend(i for i in customer_ids(session, text) if i not in ids)
    ids = ids[:CUSTOMERS_MATCHED]
    found = {c.id: c for c in session.scalars(select(Customer).where(Customer.id.in_(ids)))}
    return [found[i] for i in ids if i in found]
