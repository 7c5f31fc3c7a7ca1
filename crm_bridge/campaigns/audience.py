"""A campaign's audience on a day: whom its rules pick, and who of them is left out before any
dial decision, and why.

- **Minors and marketing**: a marketing campaign (:data:`MARKETING_KINDS`: birthday greetings,
  festival greetings, promotions) leaves out customers under 18 (by their solar date of birth)
  and customers tagged as children (:data:`CHILD_TAGS`), unless a guardian's consent is
  recorded for them. Service calls (a return visit, a complaint follow-up) reach them as
  before. The minors are found in SQL: a range on the indexed date of birth and the partial
  index of tagged customers, never an age worked out per row.
- **Unmatched entries**: the pasted numbers and card nos. of an uploaded list that match no
  customer, each with why.

:func:`select_campaign_audience` is the one selection: the campaign's start builds its targets
from it and the draft's preview shows it (both through the selection process,
:mod:`crm_bridge.campaigns.audience_process`), so they always agree.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from zoneinfo import ZoneInfo

from sqlalchemy import and_, exists, func, literal_column, or_, select, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from crm_bridge.campaigns.rules import Rule, UploadedListRule, rule_query, uploaded_entries
from crm_bridge.customers.birthdays import born_by_for_age
from crm_bridge.db.models import Customer, CustomerPhone, GuardianConsent

MARKETING_KINDS = frozenset({"birthday", "festival", "promotion"})
"""Campaign kinds that sell or greet: minors are left out of them without a guardian's consent.
The others (``return_visit``, ``complaint_followup``) serve a purchase or a complaint."""
ADULT_AGE = 18
CHILD_TAGS = ("child", "children", "minor", "儿童", "未成年")
"""Tags that mark a customer as a child whatever their recorded date of birth."""
MINOR = "minor"
"""The reason a minor is left out (a key of the preview's reason labels)."""
UNMATCHED_LABELS = {
    "unknown_number": "没有客户使用此号码 / No customer has this number",
    "unknown_card": "不是有效号码，也没有此卡号的客户 / Not a valid number, and no customer "
    "has this card no.",
}
_IN_CHUNK = 500


@dataclass(frozen=True)
class Unmatched:
    """A pasted entry that matches no customer: as typed, and why (:data:`UNMATCHED_LABELS`)."""

    entry: str
    reason: str

    @property
    def label(self) -> str:
        return UNMATCHED_LABELS[self.reason]


@dataclass(frozen=True)
class Audience:
    """Whom the rules pick, less those left out before any dial decision."""

    ids: list[int]
    """The targets, sorted."""
    left_out: dict[int, str] = field(default_factory=dict)
    """Picked, but left out: customer id -> reason (:data:`MINOR`)."""
    unmatched: list[Unmatched] = field(default_factory=list)


def is_marketing(kind: str) -> bool:
    return kind in MARKETING_KINDS


def select_campaign_audience(
    session: Session,
    rules: Sequence[Rule],
    today: date,
    zone: ZoneInfo,
    region: str,
    marketing: bool,
) -> Audience:
    """The campaign's audience on ``today`` (the center's date)."""
    picked: set[int] = set()
    minors: set[int] = set()
    unmatched: list[Unmatched] = []
    for rule in rules:
        query = rule_query(session, rule, today, zone, region)
        picked.update(session.scalars(query))
        if marketing:
            minors.update(session.scalars(_minors_among(session, query, today)))
        if isinstance(rule, UploadedListRule):
            unmatched.extend(unmatched_entries(session, rule, region))
    return Audience(
        ids=sorted(picked - minors),
        left_out=dict.fromkeys(sorted(minors & picked), MINOR),
        unmatched=unmatched,
    )


def _minors_among(session: Session, picked, today: date):
    """The customers of ``picked`` (a query of ids) under 18 on ``today`` or tagged as children,
    without a guardian's consent."""
    young = Customer.birthday > born_by_for_age(ADULT_AGE, today)
    consented = exists().where(GuardianConsent.customer_id == Customer.id)
    return select(Customer.id).where(
        Customer.id.in_(picked),
        or_(young, _tagged_child(session)),
        ~consented,
    )


def _tagged_child(session: Session):
    # Written as the important-customers rule writes it, for the same partial index.
    tagged = Customer.tags != literal_column("'[]'")
    if session.get_bind().dialect.name == "postgresql":
        tags = type_coerce(Customer.tags, JSONB)
        return and_(tagged, or_(*(tags.contains([tag]) for tag in CHILD_TAGS)))
    each = func.json_each(Customer.tags).table_valued("value")
    child = select(literal_column("1")).select_from(each).where(each.c.value.in_(CHILD_TAGS))
    return and_(tagged, exists(child))


def unmatched_entries(session: Session, rule: UploadedListRule, region: str) -> list[Unmatched]:
    """The entries of the list that match no customer, in the order pasted, each once."""
    entries = uploaded_entries(rule, region)
    numbers = {e164 for _, e164 in entries if e164}
    cards = {text for text, e164 in entries if not e164}
    known_numbers: set[str] = set()
    known_cards: set[str] = set()
    for chunk in _chunks(sorted(numbers)):
        known_numbers.update(
            session.scalars(
                select(CustomerPhone.number_e164).where(CustomerPhone.number_e164.in_(chunk))
            )
        )
    for chunk in _chunks(sorted(cards)):
        known_cards.update(
            session.scalars(select(Customer.card_no).where(Customer.card_no.in_(chunk)))
        )
    out: list[Unmatched] = []
    seen: set[str] = set()
    for text, e164 in entries:
        if text in seen:
            continue
        seen.add(text)
        if e164 is not None and e164 not in known_numbers:
            out.append(Unmatched(text, "unknown_number"))
        elif e164 is None and text not in known_cards:
            out.append(Unmatched(text, "unknown_card"))
    return out


def _chunks(values: list[str]) -> Iterator[list[str]]:
    for at in range(0, len(values), _IN_CHUNK):
        yield values[at : at + _IN_CHUNK]
