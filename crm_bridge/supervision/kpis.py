"""The numbers a call center is run by, computed by the database from the call log.

Inbound service, per day (the center's calendar), per agent or per queue:

- offered: inbound calls; answered; abandoned (the caller hung up waiting);
- answer rate: answered / offered;
- ASA (average speed of answer): mean wait of the answered calls, in seconds;
- AHT (average handle time): talk + hold + after-call work per answered call, in seconds: the
  mean talk time (answer to hang-up, or to the start of the satisfaction survey; time on hold
  is in it) plus the after-call work of the
  state history (:mod:`crm_bridge.supervision.agent_time`) over the answered calls;
- service level: calls answered within the threshold / offered (threshold set by the
  supervisor, ``service_level_seconds``, default 20 s);
- first-contact resolution: of the answered calls from a real number, the share with no other
  inbound call from that number within the window after it (``fcr_window_hours``, default 72);
- CSAT (customer satisfaction): of the calls the customer scored in the satisfaction survey
  (``calls.survey_score``, 1-5, ``crm_bridge/survey/``), how many, their mean score, and the
  share satisfied (4 or 5).

Outbound campaign results come from the same log (``calls.campaign``): attempts and outcomes.
Quality reviews per agent (:mod:`crm_bridge.quality.scorecard`): the scorecards of the calls
offered in the period, and their mean total.

Days: on PostgreSQL the day is taken in the center's zone exactly (``AT TIME ZONE``); SQLite
has no zone database, so there the zone's UTC offset at the start of the period is used, which
is exact for zones without daylight saving time such as Asia/Shanghai.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Literal

from sqlalchemy import ColumnElement, and_, case, exists, func, literal, select
from sqlalchemy.orm import Session, aliased

from crm_bridge.db.models import Call
from crm_bridge.quality.scorecard import MAX_TOTAL, AgentScores

Dimension = Literal["day", "agent", "queue"]
DIMENSIONS: tuple[Dimension, ...] = ("day", "agent", "queue")
NONE_KEY = "—"
SATISFIED_SCORE = 4
"""A survey score from which the customer counts as satisfied (of 1-5)."""


@dataclass(frozen=True)
class KpiRow:
    key: str
    offered: int
    answered: int
    abandoned: int
    answered_in_threshold: int
    asa_seconds: float | None
    aht_seconds: float | None
    fcr_base: int
    fcr_resolved: int
    surveyed: int = 0
    satisfied: int = 0
    """Scored 4 or 5."""
    mean_score: float | None = None

    @property
    def csat(self) -> float | None:
        return self.satisfied / self.surveyed if self.surveyed else None

    @property
    def answer_rate(self) -> float | None:
        return self.answered / self.offered if self.offered else None

    @property
    def abandon_rate(self) -> float | None:
        return self.abandoned / self.offered if self.offered else None

    @property
    def service_level(self) -> float | None:
        return self.answered_in_threshold / self.offered if self.offered else None

    @property
    def fcr_rate(self) -> float | None:
        return self.fcr_resolved / self.fcr_base if self.fcr_base else None


@dataclass(frozen=True)
class CampaignRow:
    campaign: str
    attempts: int
    answered: int
    busy: int
    no_answer: int
    failed: int
    talk_seconds: float

    @property
    def answer_rate(self) -> float | None:
        return self.answered / self.attempts if self.attempts else None


@dataclass(frozen=True)
class Period:
    since: datetime
    until: datetime
    zone: tzinfo


def _plus_hours(session: Session, moment: ColumnElement, hours: int) -> ColumnElement:
    if session.get_bind().dialect.name == "postgresql":
        return moment + func.make_interval(0, 0, 0, 0, hours)
    return func.strftime("%Y-%m-%d %H:%M:%f", moment, f"+{hours} hours")


def _day(session: Session, period: Period) -> ColumnElement:
    if session.get_bind().dialect.name == "postgresql":
        zone_name = getattr(period.zone, "key", None) or str(period.zone)
        return func.to_char(func.timezone(zone_name, Call.offered_at), "YYYY-MM-DD")
    offset = period.zone.utcoffset(period.since.replace(tzinfo=None)) or timedelta(0)
    return func.date(Call.offered_at, f"{int(offset.total_seconds())} seconds")


def _key(session: Session, dimension: Dimension, period: Period) -> ColumnElement:
    if dimension == "day":
        return _day(session, period)
    column = Call.agent if dimension == "agent" else Call.queue
    return func.coalesce(column, literal(NONE_KEY))


def inbound_kpis(
    session: Session,
    dimension: Dimension,
    period: Period,
    *,
    threshold_seconds: int = 20,
    fcr_window_hours: int = 72,
    after_call: Mapping[str, float] | None = None,
) -> list[KpiRow]:
    """One row per day, agent or queue of the inbound calls offered in ``period``;
    ``after_call``: seconds of after-call work by the same key, added into AHT."""
    answered = Call.disposition == "answered"
    later = aliased(Call)
    repeated = exists().where(
        later.caller == Call.caller,
        later.direction == "inbound",
        later.id != Call.id,
        later.offered_at >= Call.offered_at,
        later.offered_at <= _plus_hours(session, Call.offered_at, fcr_window_hours),
    )
    fcr_base = and_(answered, Call.caller.like("+%"))
    key = _key(session, dimension, period).label("key")

    def count_if(condition: ColumnElement) -> ColumnElement:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    statement = (
        select(
            key,
            func.count(Call.id),
            count_if(answered),
            count_if(Call.disposition == "abandoned"),
            count_if(and_(answered, Call.wait_seconds <= threshold_seconds)),
            func.avg(case((answered, Call.wait_seconds))),
            func.avg(case((answered, Call.talk_seconds))),
            count_if(fcr_base),
            count_if(and_(fcr_base, ~repeated)),
            func.count(Call.survey_score),
            count_if(Call.survey_score >= SATISFIED_SCORE),
            func.avg(Call.survey_score),
        )
        .where(
            Call.direction == "inbound",
            Call.offered_at >= period.since,
            Call.offered_at < period.until,
        )
        .group_by(key)
        .order_by(key)
    )
    return [
        KpiRow(
            key=str(row[0]),
            offered=int(row[1]),
            answered=int(row[2]),
            abandoned=int(row[3]),
            answered_in_threshold=int(row[4]),
            asa_seconds=None if row[5] is None else float(row[5]),
            aht_seconds=_handle_time(row[6], (after_call or {}).get(str(row[0]), 0.0), row[2]),
            fcr_base=int(row[7]),
            fcr_resolved=int(row[8]),
            surveyed=int(row[9]),
            satisfied=int(row[10]),
            mean_score=None if row[11] is None else float(row[11]),
        )
        for row in session.execute(statement)
    ]


def campaign_results(session: Session, period: Period) -> list[CampaignRow]:
    """Outbound calls of each campaign placed in ``period``, by outcome."""

    def count_of(disposition: str) -> ColumnElement:
        return func.coalesce(func.sum(case((Call.disposition == disposition, 1), else_=0)), 0)

    statement = (
        select(
            Call.campaign,
            func.count(Call.id),
            count_of("answered"),
            count_of("busy"),
            count_of("no_answer"),
            count_of("failed"),
            func.coalesce(func.sum(Call.talk_seconds), 0.0),
        )
        .where(
            Call.direction == "outbound",
            Call.campaign.is_not(None),
            Call.offered_at >= period.since,
            Call.offered_at < period.until,
        )
        .group_by(Call.campaign)
        .order_by(Call.campaign)
    )
    return [
        CampaignRow(str(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]), float(r[6]))
        for r in session.execute(statement)
    ]


INBOUND_HEADERS = {
    "day": "日期 Day",
    "agent": "坐席 Agent",
    "queue": "队列 Queue",
}
INBOUND_COLUMNS = (
    "呼入 Offered",
    "接通 Answered",
    "放弃 Abandoned",
    "接通率 Answer rate",
    "平均应答速度 ASA (s)",
    "平均处理时长 AHT (s)",
    "服务水平 Service level",
    "首次解决率 FCR",
    "评价数 Surveyed",
    "平均评分 Mean score",
    "满意度 CSAT",
)
CAMPAIGN_COLUMNS = (
    "活动 Campaign",
    "外呼 Attempts",
    "接通 Answered",
    "忙 Busy",
    "未接 No answer",
    "失败 Failed",
    "接通率 Answer rate",
    "通话总时长 Talk (s)",
)
Cell = str | int | float | None


def _handle_time(mean_talk: float | None, after_call: float, answered: int) -> float | None:
    if mean_talk is None:
        return None
    return float(mean_talk) + (after_call / answered if answered else 0.0)


def _ratio(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def inbound_table(dimension: Dimension, rows: list[KpiRow]) -> tuple[list[str], list[list[Cell]]]:
    """Headers and cells of a KPI table as shown and exported (rates as fractions)."""
    headers = [INBOUND_HEADERS[dimension], *INBOUND_COLUMNS]
    cells: list[list[Cell]] = [
        [
            row.key,
            row.offered,
            row.answered,
            row.abandoned,
            _ratio(row.answer_rate),
            _seconds(row.asa_seconds),
            _seconds(row.aht_seconds),
            _ratio(row.service_level),
            _ratio(row.fcr_rate),
            row.surveyed,
            None if row.mean_score is None else round(row.mean_score, 2),
            _ratio(row.csat),
        ]
        for row in rows
    ]
    return headers, cells


def campaign_table(rows: list[CampaignRow]) -> tuple[list[str], list[list[Cell]]]:
    cells: list[list[Cell]] = [
        [r.campaign, r.attempts, r.answered, r.busy, r.no_answer, r.failed,
         _ratio(r.answer_rate), _seconds(r.talk_seconds)]
        for r in rows
    ]  # fmt: skip
    return list(CAMPAIGN_COLUMNS), cells


QUALITY_COLUMNS = (
    "坐席 Agent",
    "质检次数 Reviews",
    f"平均得分 Average score (/{MAX_TOTAL})",
)


def quality_table(rows: list[AgentScores]) -> tuple[list[str], list[list[Cell]]]:
    cells: list[list[Cell]] = [[r.agent, r.reviews, round(r.average, 1)] for r in rows]
    return list(QUALITY_COLUMNS), cells
