"""The routing tables: the admin's rules and account managers, and the facts about a caller
that the rules read, looked up by the calling number in the archive."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from crm_bridge.customers.card_queries import customers_query, holders_query
from crm_bridge.customers.numbers import PhoneKind, normalize_phone
from crm_bridge.db.models import AccountManager, Customer, RoutingSettings, RoutingTier, User
from crm_bridge.routing.domain import MAX_PRIORITY, RING_SECONDS, CallerFacts, RoutingRules

SETTINGS_ID = 1
LOW_RING, HIGH_RING = RING_SECONDS
BAD_PRIORITY = (
    f"优先级须为 1 到 {MAX_PRIORITY} 的整数 / Priority must be a whole number from 1 to "
    f"{MAX_PRIORITY}"
)
BAD_AMOUNT = "金额须为不小于 0 的数字 / The amount must be a number of 0 or more"
BAD_RING = (
    f"振铃时间须为 {LOW_RING} 到 {HIGH_RING} 秒 / Ring time must be {LOW_RING} to {HIGH_RING} "
    "seconds"
)
NO_TIER = "没有这个会员等级的客户 / No customer holds this VIP level"
TIER_TAKEN = "这个等级已有规则 / This level already has a rule"
NO_QUEUE = "没有这个队列 / No such queue"
NO_CARD = "没有这个会员卡号 / No customer has this card no."
NO_AGENT = "没有坐席使用这个分机 / No agent has this extension"
QUEUE_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
"""What the dialplan keeps of a queue name (FILTER(0-9A-Za-z_)): a dash would be dropped."""
EXTENSION = re.compile(r"^[0-9]{2,16}$")


class RoutingInputError(ValueError):
    """Bad input for a field; ``errors`` maps the field to its message. Nothing was saved."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(errors.values()))
        self.errors = errors


# -- the rules


def load_rules(session: Session) -> RoutingRules:
    row = session.get(RoutingSettings, SETTINGS_ID)
    tiers = {t.tier: t.priority for t in session.scalars(select(RoutingTier))}
    if row is None:
        return RoutingRules(tiers=tiers)
    return RoutingRules(tiers, row.high_value_cents, row.high_value_priority,
                        row.manager_ring_seconds, row.complaint_queue)  # fmt: skip


def tiers(session: Session) -> list[RoutingTier]:
    return list(session.scalars(select(RoutingTier).order_by(RoutingTier.priority.desc())))


def known_tiers(session: Session) -> list[str]:
    """The VIP levels customers of the archive hold."""
    query = select(Customer.vip_level).where(Customer.vip_level.is_not(None)).distinct()
    return sorted(level for level in session.scalars(query) if level)


def _priority(text: str, errors: dict[str, str], name: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_PRIORITY:
        errors[name] = BAD_PRIORITY
    return value


def add_tier(session: Session, tier: str, priority: str) -> RoutingTier:
    errors: dict[str, str] = {}
    tier = tier.strip()
    if tier not in known_tiers(session):
        errors["tier"] = NO_TIER
    elif session.scalar(select(RoutingTier).where(RoutingTier.tier == tier)) is not None:
        errors["tier"] = TIER_TAKEN
    value = _priority(priority, errors, "priority")
    if errors:
        raise RoutingInputError(errors)
    row = RoutingTier(tier=tier, priority=value)
    session.add(row)
    session.flush()
    return row


def remove_tier(session: Session, tier_id: int) -> RoutingTier | None:
    row = session.get(RoutingTier, tier_id)
    if row is not None:
        session.delete(row)
    return row


@dataclass(frozen=True)
class SettingsForm:
    high_value_yuan: str = ""
    high_value_priority: str = "5"
    manager_ring_seconds: str = "15"
    complaint_queue: str = ""


def settings_form(session: Session) -> SettingsForm:
    row = session.get(RoutingSettings, SETTINGS_ID)
    if row is None:
        return SettingsForm()
    yuan = "" if row.high_value_cents is None else f"{Decimal(row.high_value_cents) / 100:.2f}"
    return SettingsForm(yuan, str(row.high_value_priority), str(row.manager_ring_seconds),
                        row.complaint_queue or "")  # fmt: skip


def save_settings(session: Session, form: SettingsForm, queues: list[str] | None) -> None:
    """``queues``: the queues Asterisk has (None when unknown: any well-formed name)."""
    errors: dict[str, str] = {}
    cents = _cents(form.high_value_yuan, errors)
    priority = _priority(form.high_value_priority, errors, "high_value_priority")
    ring = _ring_seconds(form.manager_ring_seconds, errors)
    queue = form.complaint_queue.strip() or None
    if queue is not None and not _known_queue(queue, queues):
        errors["complaint_queue"] = NO_QUEUE
    if errors:
        raise RoutingInputError(errors)
    row = session.get(RoutingSettings, SETTINGS_ID) or RoutingSettings(id=SETTINGS_ID)
    row.high_value_cents, row.high_value_priority = cents, priority
    row.manager_ring_seconds, row.complaint_queue = ring, queue
    session.add(row)


def _known_queue(queue: str, queues: list[str] | None) -> bool:
    return bool(QUEUE_NAME.match(queue)) and (queues is None or queue in queues)


def _cents(text: str, errors: dict[str, str]) -> int | None:
    if not text.strip():
        return None
    try:
        yuan = Decimal(text.strip())
    except InvalidOperation:
        yuan = Decimal(-1)
    if not yuan.is_finite() or yuan < 0 or yuan > 10**9:
        errors["high_value_yuan"] = BAD_AMOUNT
        return None
    return int(yuan * 100)


def _ring_seconds(text: str, errors: dict[str, str]) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        value = 0
    if not LOW_RING <= value <= HIGH_RING:
        errors["manager_ring_seconds"] = BAD_RING
    return value


# -- account managers


@dataclass(frozen=True)
class ManagerLine:
    customer_id: int
    card_no: str
    name: str
    extension: str


def managers(session: Session) -> list[ManagerLine]:
    columns = (AccountManager.customer_id, Customer.card_no, Customer.name,
               AccountManager.extension)  # fmt: skip
    query = (
        select(*columns)
        .join(Customer, Customer.id == AccountManager.customer_id)
        .order_by(Customer.card_no)
    )
    return [ManagerLine(*row) for row in session.execute(query)]


def agent_extensions(session: Session) -> set[str]:
    """The extensions of the active agents (``PJSIP/1002`` counts as ``1002``)."""
    query = select(User.extensions).where(User.active, User.role == "agent")
    return {ext.rsplit("/", 1)[-1] for exts in session.scalars(query) for ext in exts}


def set_manager(session: Session, card_no: str, extension: str) -> Customer:
    errors: dict[str, str] = {}
    customer = session.scalar(select(Customer).where(Customer.card_no == card_no.strip()))
    if customer is None:
        errors["card_no"] = NO_CARD
    extension = extension.strip()
    if not EXTENSION.match(extension) or extension not in agent_extensions(session):
        errors["extension"] = NO_AGENT
    if errors or customer is None:
        raise RoutingInputError(errors)
    row = session.get(AccountManager, customer.id) or AccountManager(customer_id=customer.id)
    row.extension = extension
    session.add(row)
    return customer


def remove_manager(session: Session, customer_id: int) -> bool:
    query = delete(AccountManager).where(AccountManager.customer_id == customer_id)
    result = session.execute(query)
    return bool(result.rowcount)  # type: ignore[attr-defined]


# -- the caller


def caller_facts(
    session: Session, raw_number: str, *, today: date, region: str, outside_line_prefix: str | None
) -> CallerFacts | None:
    """The one customer holding the number, or None (unknown, withheld, a family phone)."""
    number = normalize_phone(raw_number, region, outside_line_prefix)
    if number.kind is not PhoneKind.E164 or not number.e164:
        return None
    holders = session.connection().execute(holders_query(), {"numbers": [number.e164]}).all()
    if len(holders) != 1:
        return None
    customer_id = holders[0].customer_id
    params = {"ids": [customer_id], "today": today, "year_ago": _year_before(today)}
    row = session.connection().execute(customers_query(), params).one_or_none()
    if row is None:
        return None
    return CallerFacts(
        customer_id=customer_id,
        vip_level=row.vip_level,
        spend_12_months=Decimal(row.spend_last_12_months or 0),
        open_complaints=row.open_complaint_count,
        account_manager=session.scalar(
            select(AccountManager.extension).where(AccountManager.customer_id == customer_id)
        ),
    )


def warm_up(session: Session, today: date) -> None:
    """Run the caller-facts queries once for nobody, so that they are compiled at start and not
    during the first call's 0.5 s (``dialplans/extensions_callbridge.conf``,
    ``[callbridge-route]``)."""
    connection = session.connection()
    connection.execute(holders_query(), {"numbers": ["+0"]}).all()
    params = {"ids": [-1], "today": today, "year_ago": _year_before(today)}
    connection.execute(customers_query(), params).all()
    session.scalar(select(AccountManager.extension).where(AccountManager.customer_id == -1))


def _year_before(day: date) -> date:
    """The same day a year earlier (28 February for a 29th)."""
    try:
        return day.replace(year=day.year - 1)
    except ValueError:
        return day.replace(year=day.year - 1, day=28)
