"""An agent's own calls, newest first and paged by key, and their figures of today.

An agent's calls are those they answered or were transferred to (as
:func:`crm_bridge.calls.in_progress.agent_may_act` has it); their missed calls are the inbound
calls of today that rang them (``calls.agents_rung``) and that they did not answer. The state
figures (logged in, ready, paused, after-call work) are the KPI page's
(:func:`crm_bridge.supervision.agent_time.agent_time`) for the agent alone, and the average
handle time is computed as there: talk plus after-call work per answered call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from crm_bridge.calls.search import Cursor, newest_first
from crm_bridge.db.models import Call, Recording
from crm_bridge.supervision.agent_time import AgentTime, agent_time
from crm_bridge.supervision.kpis import Period
from crm_bridge.web.local_days import start_of_day

PAGE_SIZE = 25


@dataclass(frozen=True)
class MyCalls:
    calls: list[Call]
    next_cursor: Cursor | None
    recorded: frozenset[int]
    """The ids of the calls among them with a playable recording."""


@dataclass(frozen=True)
class DayFigures:
    handled: int
    talk_seconds: float
    missed: int
    state: AgentTime

    @property
    def aht_seconds(self) -> float | None:
        if not self.handled:
            return None
        return (self.talk_seconds + self.state.after_call_work) / self.handled


def my_calls(
    session: Session, agents: frozenset[str], *, after: Cursor | None, limit: int = PAGE_SIZE
) -> MyCalls:
    """One page of the calls of ``agents`` (the agent names of one user's extensions)."""
    query = select(Call).where(
        or_(Call.agent.in_(agents), Call.transferred_to.in_(agents)), Call.offered_at.is_not(None)
    )
    rows, cursor = newest_first(session, query, after=after, limit=limit)
    recorded = select(Recording.call_id).where(
        Recording.call_id.in_([row.id for row in rows]), Recording.status == "ok"
    )
    return MyCalls(rows, cursor, frozenset(session.scalars(recorded)))


def today(zone: tzinfo, now: datetime) -> Period:
    """The center's day that holds ``now``."""
    day = now.astimezone(zone).date()
    return Period(start_of_day(day, zone), start_of_day(day + timedelta(days=1), zone), zone)


def day_figures(session: Session, agents: frozenset[str], period: Period,
                now: datetime) -> DayFigures:  # fmt: skip
    """What ``agents`` did in ``period``: calls handled, talk time, missed calls, state time."""
    in_period = and_(Call.offered_at >= period.since, Call.offered_at < period.until)
    handled, talk = session.execute(
        select(func.count(Call.id), func.coalesce(func.sum(Call.talk_seconds), 0.0)).where(
            in_period, Call.agent.in_(agents), Call.disposition == "answered"
        )
    ).one()
    not_theirs = or_(Call.agent.is_(None), Call.agent.not_in(agents))
    rung = session.scalars(
        select(Call.agents_rung).where(in_period, Call.direction == "inbound", not_theirs)
    )
    missed = sum(1 for names in rung if agents.intersection(names or ()))
    state = AgentTime("+".join(sorted(agents)))
    for row in agent_time(session, "agent", period, now):
        if row.key in agents:
            _add_time(state, row)
    return DayFigures(int(handled), float(talk), missed, state)


def _add_time(total: AgentTime, row: AgentTime) -> None:
    total.logged_in += row.logged_in
    total.ready += row.ready
    total.on_call += row.on_call
    total.after_call_work += row.after_call_work
    for reason, seconds in row.paused_by_reason.items():
        total.paused_by_reason[reason] = total.paused_by_reason.get(reason, 0.0) + seconds
