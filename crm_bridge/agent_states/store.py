"""The agent-state tables: state history, the admin's pause reasons, per-queue settings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_bridge.agent_states.domain import AFTER_CALL_REASON, AgentStatus
from crm_bridge.db.models import AgentStateChange, PauseReason, QueueSetting

MAX_REASON_LENGTH = 32


class StoreInputError(ValueError):
    """Bad input for a field; ``errors`` maps the field to its message."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(errors.values()))
        self.errors = errors


def record_change(session: Session, agent: str, status: AgentStatus, at: datetime) -> None:
    session.add(
        AgentStateChange(
            agent=agent,
            state=str(status.state),
            reason=status.reason,
            queues=list(status.queues),
            at=at,
        )
    )


def last_changes(session: Session) -> dict[str, AgentStateChange]:
    """Each agent's latest change (when their current state began, across restarts)."""
    rows = session.scalars(select(AgentStateChange).order_by(AgentStateChange.id)).all()
    return {row.agent: row for row in rows}


def history(session: Session, agent: str, limit: int = 20) -> list[AgentStateChange]:
    query = (
        select(AgentStateChange)
        .where(AgentStateChange.agent == agent)
        .order_by(AgentStateChange.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))


def active_reasons(session: Session) -> list[str]:
    query = select(PauseReason.label).where(PauseReason.active).order_by(PauseReason.id)
    return list(session.scalars(query))


def all_reasons(session: Session) -> list[PauseReason]:
    return list(session.scalars(select(PauseReason).order_by(PauseReason.id)))


def add_reason(session: Session, label: str) -> PauseReason:
    """A new pause reason, or a hidden one of the same name shown again; a shown one is refused
    (the admin would otherwise see nothing happen)."""
    label = label.strip()
    if not label or len(label) > MAX_REASON_LENGTH:
        raise StoreInputError({"label": "请填写 1–32 个字 / Give 1 to 32 characters"})
    if label == AFTER_CALL_REASON:
        raise StoreInputError({"label": "此名称保留给话后处理 / Reserved for after-call work"})
    row = session.scalar(select(PauseReason).where(PauseReason.label == label))
    if row is not None and row.active:
        raise StoreInputError({"label": "已有此原因 / This reason is already in the list"})
    if row is None:
        row = PauseReason(label=label, active=True)
        session.add(row)
    row.active = True
    session.flush()
    return row


def set_reason_active(session: Session, reason_id: int, active: bool) -> PauseReason | None:
    row = session.get(PauseReason, reason_id)
    if row is not None:
        row.active = active
    return row


@dataclass(frozen=True)
class QueueRules:
    after_call_seconds: int = 0
    """0: no after-call work in this queue (the default, until a supervisor sets it)."""
    penalty: int = 0
    service_level_seconds: int = 20
    waiting_alert: int = 3
    longest_wait_alert_seconds: int = 60
    survey: bool = False
    """The satisfaction survey after the agent is done (``crm_bridge/survey/``)."""


SURVEY_FIELD = "survey"
"""A checkbox: ``on`` when ticked, absent when not (an HTML form sends nothing for it)."""
SURVEY_ERROR = "请勾选或不勾选 / Tick it or leave it clear"

FIELD_LIMITS = {
    "after_call_seconds": (0, 3600),
    "penalty": (0, 100),
    "service_level_seconds": (1, 3600),
    "waiting_alert": (1, 1000),
    "longest_wait_alert_seconds": (1, 86400),
}


def queue_rules(session: Session) -> dict[str, QueueRules]:
    return {
        row.queue: QueueRules(
            **{name: getattr(row, name) for name in FIELD_LIMITS}, survey=row.survey
        )
        for row in session.scalars(select(QueueSetting))
    }


def save_queue_rules(session: Session, queue: str, form: dict[str, str]) -> QueueRules:
    """Store a queue's settings from form text; every field checked before anything is."""
    values: dict[str, int] = {}
    errors: dict[str, str] = {}
    for name, (low, high) in FIELD_LIMITS.items():
        text = form.get(name, "").strip()
        if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
            errors[name] = f"请填写 {low}–{high} 的整数 / A whole number from {low} to {high}"
        else:
            values[name] = int(text)
    survey = form.get(SURVEY_FIELD, "")
    if survey not in ("", "on"):
        errors[SURVEY_FIELD] = SURVEY_ERROR
    if errors:
        raise StoreInputError(errors)
    row = session.get(QueueSetting, queue) or QueueSetting(queue=queue)
    for name, value in values.items():
        setattr(row, name, value)
    row.survey = survey == "on"
    session.add(row)
    return QueueRules(**values, survey=row.survey)
