"""Settings supervisors and admins change while the service runs, kept in the database
(``supervision_settings``) so every web process and the retention job see the same values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from crm_bridge.accounts.users import UserInputError
from crm_bridge.db.models import SupervisionSetting


@dataclass(frozen=True)
class Spec:
    default: Any
    low: int
    high: int
    label: str
    """``"中文 / English"``, shown in the page's language."""
    nullable: bool = False
    """None is allowed (for retention: keep for ever)."""


SPECS = {
    "service_level_seconds": Spec(20, 1, 600, "服务水平阈值（秒） / Service-level threshold (s)"),
    "fcr_window_hours": Spec(72, 1, 24 * 30, "首次解决窗口（小时） / FCR window (hours)"),
    "recording_retention_days": Spec(
        None, 1, 3650, "录音保留天数（空=永久） / Keep recordings (days, blank: for ever)", True
    ),
    "transcript_retention_days": Spec(
        None, 1, 3650, "转写保留天数（空=永久） / Keep transcripts (days, blank: for ever)", True
    ),
}


def get_setting(session: Session, key: str) -> Any:
    row = session.get(SupervisionSetting, key)
    return SPECS[key].default if row is None else row.value


def all_settings(session: Session) -> dict[str, Any]:
    return {key: get_setting(session, key) for key in SPECS}


def parse_setting(key: str, text: str) -> int | None:
    """A form value for ``key``; UserInputError when out of range."""
    spec = SPECS[key]
    text = text.strip()
    if not text and spec.nullable:
        return None
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not spec.low <= value <= spec.high:
        message = f"须为 {spec.low}-{spec.high} 的整数 / A whole number, {spec.low} to {spec.high}"
        raise UserInputError({key: message})
    return value


def set_setting(session: Session, key: str, value: Any, *, by: str) -> None:
    if key not in SPECS:
        raise KeyError(key)
    row = session.get(SupervisionSetting, key)
    if row is None:
        session.add(SupervisionSetting(key=key, value=value, updated_by=by))
    else:
        row.value, row.updated_by = value, by
    session.flush()
