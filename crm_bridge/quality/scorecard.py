"""The quality-review scorecard (质检评分表) of a call: one per call and reviewer.

The scorecard is fixed, not kept by an admin: five criteria whose maximum scores add up to
100, so every review's total reads the same way and the per-agent average on the KPIs page
compares agents and months on one scale. (A form an admin could change would need a version
on each review, and averages across versions would mean nothing.)

A reviewer saves the scorecard again to change it; another supervisor's review of the same
call is theirs, shown beside, never changed. The functions write inside the caller's
transaction and raise :class:`~crm_bridge.accounts.users.UserInputError` (zh-CN + English per
field) before any write.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm_bridge.accounts.users import UserInputError
from crm_bridge.db.models import Call, QualityReview


@dataclass(frozen=True)
class Criterion:
    key: str
    label: str
    """zh-CN, then English."""
    max_score: int


CRITERIA = (
    Criterion("greeting", "开场问候 Greeting", 10),
    Criterion("accuracy", "业务准确 Accuracy", 30),
    Criterion("attitude", "服务态度 Attitude", 20),
    Criterion("resolution", "问题解决 Resolution", 30),
    Criterion("closing", "结束语 Closing", 10),
)
MAX_TOTAL = sum(c.max_score for c in CRITERIA)
MAX_COMMENT = 2000
NO_CALL = "没有该通话 / No such call"


def _score(criterion: Criterion, typed: str) -> int:
    text = (typed or "").strip()
    if not (text.isascii() and text.isdigit()) or int(text) > criterion.max_score:
        raise UserInputError({
            criterion.key: f"请填 0 到 {criterion.max_score} 的整数 / "
                           f"A whole number from 0 to {criterion.max_score}",
        })  # fmt: skip
    return int(text)


def parse_scores(typed: Mapping[str, str]) -> dict[str, int]:
    """The score of every criterion from the form; every bad field is named at once."""
    scores: dict[str, int] = {}
    errors: dict[str, str] = {}
    for criterion in CRITERIA:
        try:
            scores[criterion.key] = _score(criterion, typed.get(criterion.key, ""))
        except UserInputError as exc:
            errors |= exc.errors
    if errors:
        raise UserInputError(errors)
    return scores


def save_review(
    session: Session,
    call_id: int,
    *,
    reviewer: str,
    typed: Mapping[str, str],
    comment: str | None,
    now: datetime | None = None,
) -> QualityReview:
    """Create or change ``reviewer``'s scorecard of the call."""
    if session.get(Call, call_id) is None:
        raise UserInputError({"call": NO_CALL})
    scores = parse_scores(typed)
    text = (comment or "").strip()
    if len(text) > MAX_COMMENT:
        message = f"最多 {MAX_COMMENT} 字 / At most {MAX_COMMENT} characters"
        raise UserInputError({"comment": message})
    now = now or datetime.now(UTC)
    review = review_by(session, call_id, reviewer)
    if review is None:
        review = QualityReview(call_id=call_id, reviewer=reviewer, created_at=now)
        session.add(review)
    review.scores, review.total, review.comment = scores, sum(scores.values()), text or None
    review.updated_at = now
    session.flush()
    return review


def review_by(session: Session, call_id: int, reviewer: str) -> QualityReview | None:
    statement = select(QualityReview).where(
        QualityReview.call_id == call_id, QualityReview.reviewer == reviewer
    )
    return session.scalar(statement)


def reviews_of_call(session: Session, call_id: int) -> list[QualityReview]:
    statement = (
        select(QualityReview)
        .where(QualityReview.call_id == call_id)
        .order_by(QualityReview.created_at, QualityReview.id)
    )
    return list(session.scalars(statement))


@dataclass(frozen=True)
class AgentScores:
    agent: str
    reviews: int
    average: float
    """The mean total, out of :data:`MAX_TOTAL`."""


NO_AGENT = "—"


def scores_by_agent(session: Session, since: datetime, until: datetime) -> list[AgentScores]:
    """Per agent of the calls offered in [since, until): the reviews and their mean total."""
    agent = func.coalesce(Call.agent, NO_AGENT).label("agent")
    statement = (
        select(agent, func.count(QualityReview.id), func.avg(QualityReview.total))
        .join(Call, Call.id == QualityReview.call_id)
        .where(Call.offered_at >= since, Call.offered_at < until)
        .group_by(agent)
        .order_by(agent)
    )
    return [
        AgentScores(str(row[0]), int(row[1]), float(row[2])) for row in session.execute(statement)
    ]
