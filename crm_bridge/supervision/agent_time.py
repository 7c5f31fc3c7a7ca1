"""Where agents' time went, from the state history (``agent_state_changes``): logged-in time,
pause time by reason, after-call work and occupancy, per agent, per day and per queue.

A state lasts from its change to the agent's next one (or to the end of the period, or now);
each span is clipped to the period and cut at the center's midnights. The state an agent was in
when the period began is their last change before it, looked for up to :data:`LOOKBACK` back.
Occupancy is the share of the logged-in time not paused that went to calls and after-call
work: (on call + after-call work) / (on call + after-call work + ready).
A span is counted for each queue the agent was logged into then; after-call work is a pause in
one queue, so per queue it is split evenly between the agent's queues of that moment.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_bridge.db.models import AgentStateChange
from crm_bridge.supervision.kpis import Dimension, Period

LOOKBACK = timedelta(days=7)


@dataclass
class AgentTime:
    key: str
    logged_in: float = 0.0
    ready: float = 0.0
    on_call: float = 0.0
    after_call_work: float = 0.0
    paused_by_reason: dict[str, float] = field(default_factory=dict)

    @property
    def paused(self) -> float:
        return sum(self.paused_by_reason.values())

    @property
    def occupancy(self) -> float | None:
        busy = self.on_call + self.after_call_work
        return busy / (busy + self.ready) if busy + self.ready else None


def _spans(session: Session, period: Period, now: datetime):
    """(agent, change, start, end) of every state span that overlaps the period."""
    query = (
        select(AgentStateChange)
        .where(AgentStateChange.at >= period.since - LOOKBACK, AgentStateChange.at < period.until)
        .order_by(AgentStateChange.agent, AgentStateChange.at, AgentStateChange.id)
    )
    by_agent: dict[str, list[AgentStateChange]] = defaultdict(list)
    for row in session.scalars(query):
        by_agent[row.agent].append(row)
    last_end = min(period.until, now)
    for agent, rows in by_agent.items():
        for index, row in enumerate(rows):
            end = rows[index + 1].at if index + 1 < len(rows) else last_end
            start, end = max(row.at, period.since), min(end, last_end)
            if end > start:
                yield agent, row, start, end


def _cut_at_midnights(start: datetime, end: datetime, period: Period):
    """(local day, start, end) pieces of a span."""
    while start < end:
        local = start.astimezone(period.zone)
        midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        piece_end = min(end, midnight.astimezone(UTC))
        yield local.date().isoformat(), start, piece_end
        start = piece_end


def agent_time(session: Session, dimension: Dimension, period: Period,
               now: datetime | None = None) -> list[AgentTime]:  # fmt: skip
    now = now or datetime.now(UTC)
    rows: dict[str, AgentTime] = {}
    for agent, change, start, end in _spans(session, period, now):
        for day, piece_start, piece_end in _cut_at_midnights(start, end, period):
            seconds = (piece_end - piece_start).total_seconds()
            if dimension == "queue":
                keys = list(change.queues) or []
                share = seconds / len(keys) if keys else 0.0
                weights = [(key, seconds, share) for key in keys]
            else:
                key = agent if dimension == "agent" else day
                weights = [(key, seconds, seconds)]
            for key, whole, split in weights:
                _add(rows.setdefault(key, AgentTime(key)), change, whole, split)
    return [rows[key] for key in sorted(rows)]


def _add(row: AgentTime, change: AgentStateChange, seconds: float, acw_seconds: float) -> None:
    if change.state == "logged_out":
        return
    row.logged_in += seconds
    if change.state == "ready":
        row.ready += seconds
    elif change.state == "on_call":
        row.on_call += seconds
    elif change.state == "after_call_work":
        row.after_call_work += acw_seconds
    elif change.state == "paused":
        reason = change.reason or "—"
        row.paused_by_reason[reason] = row.paused_by_reason.get(reason, 0.0) + seconds


AGENT_TIME_COLUMNS = (
    "登录时长(秒) Logged in (s)",
    "就绪(秒) Ready (s)",
    "通话(秒) On call (s)",
    "话后处理(秒) After-call work (s)",
    "暂停(秒) Paused (s)",
    "暂停原因 Pause by reason (s)",
    "占用率 Occupancy",
)


def agent_time_table(key_header: str, rows: list[AgentTime]) -> tuple[list[str], list[list]]:
    cells = [
        [row.key, round(row.logged_in), round(row.ready), round(row.on_call),
         round(row.after_call_work), round(row.paused),
         "; ".join(f"{reason} {round(s)}" for reason, s in sorted(row.paused_by_reason.items())),
         None if row.occupancy is None else round(row.occupancy, 4)]
        for row in rows
    ]  # fmt: skip
    return [key_header, *AGENT_TIME_COLUMNS], cells
