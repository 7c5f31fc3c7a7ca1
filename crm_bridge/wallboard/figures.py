"""The wallboard's day figures, read from the call log with the KPI page's own query, so the
two agree: answered and abandoned today, and the service level today and over the last 30
minutes, each queue against its own target."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_bridge.agent_states.store import QueueRules, queue_rules
from crm_bridge.db.models import Customer, CustomerPhone
from crm_bridge.supervision.kpis import KpiRow, Period, inbound_kpis

RECENT = timedelta(minutes=30)


@dataclass(frozen=True)
class QueueDay:
    answered: int = 0
    abandoned: int = 0
    service_level_today: float | None = None
    service_level_recent: float | None = None


def _by_own_target(session: Session, period: Period, target_of: dict[str, int]
                   ) -> dict[str, KpiRow]:  # fmt: skip
    """Each queue's KPI row, counted against that queue's own service-level target."""
    default = QueueRules().service_level_seconds
    rows: dict[str, KpiRow] = {}
    for seconds in {default, *target_of.values()}:
        for row in inbound_kpis(session, "queue", period, threshold_seconds=seconds):
            if target_of.get(row.key, default) == seconds:
                rows[row.key] = row
    return rows


def day_figures(session: Session, zone: tzinfo, now: datetime) -> dict[str, QueueDay]:
    """Per queue (by name) the figures of the local day of ``now`` (aware, UTC)."""
    midnight = now.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    target_of = {q: rule.service_level_seconds for q, rule in queue_rules(session).items()}
    today = _by_own_target(session, Period(midnight, now, zone), target_of)
    recent = _by_own_target(session, Period(max(midnight, now - RECENT), now, zone), target_of)
    return {
        queue: QueueDay(
            row.answered,
            row.abandoned,
            row.service_level,
            recent[queue].service_level if queue in recent else None,
        )
        for queue, row in today.items()
    }


def customer_name(session: Session, number_e164: str) -> str | None:
    """The archive's name for a caller's number (the first customer holding it)."""
    query = (
        select(Customer.name)
        .join(CustomerPhone, CustomerPhone.customer_id == Customer.id)
        .where(CustomerPhone.number_e164 == number_e164)
        .order_by(Customer.id)
        .limit(1)
    )
    return session.scalar(query)
