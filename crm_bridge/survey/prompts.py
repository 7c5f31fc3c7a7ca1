"""The survey's prompts: the defaults shipped with the product, and the uploads that replace
them (table ``survey_prompts``), all kept as files in the greetings folder Asterisk plays.

The defaults (``crm_bridge/survey/sounds/``, Mandarin, 8 kHz mono 16-bit WAV, their words in
:data:`~crm_bridge.survey.domain.DEFAULT_WORDS`) are copied into the greetings folder at
start-up, so a new installation's survey speaks at once. An upload is converted like a
campaign greeting (:mod:`crm_bridge.campaigns.greetings`) and stored under a generated name;
the file it replaces is removed once the new one is in the database.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_bridge.campaigns import greetings
from crm_bridge.db.models import QueueSetting, SurveyPrompt
from crm_bridge.survey.domain import PROMPT_KINDS

DEFAULTS = Path(__file__).resolve().parent / "sounds"


def default_name(kind: str) -> str:
    return f"survey-default-{kind}.wav"


def install_defaults(folder: Path) -> None:
    """Put the default prompts into the greetings folder, unless already there unchanged."""
    folder.mkdir(parents=True, exist_ok=True)
    for kind in PROMPT_KINDS:
        source, target = DEFAULTS / default_name(kind), folder / default_name(kind)
        if not target.is_file() or target.read_bytes() != source.read_bytes():
            shutil.copyfile(source, target)


def uploads(session: Session) -> dict[str, SurveyPrompt]:
    """The uploaded prompts by kind (a kind missing here plays its default)."""
    return {row.kind: row for row in session.scalars(select(SurveyPrompt))}


def files(session: Session) -> dict[str, str]:
    """The file in the greetings folder each prompt kind plays now."""
    uploaded = uploads(session)
    return {
        kind: uploaded[kind].file_name if kind in uploaded else default_name(kind)
        for kind in PROMPT_KINDS
    }


def queue_has_survey(session: Session, queue: str) -> bool:
    row = session.get(QueueSetting, queue) if queue else None
    return bool(row is not None and row.survey)


def save_upload(session: Session, kind: str, name: str, seconds: float, user: str) -> str | None:
    """Make the stored greeting ``name`` the prompt of ``kind``; the file it replaces (None:
    the default), for :func:`remove_replaced` once committed."""
    row = session.get(SurveyPrompt, kind)
    replaced = row.file_name if row is not None else None
    if row is None:
        row = SurveyPrompt(kind=kind)
        session.add(row)
    row.file_name, row.seconds, row.uploaded_by = name, seconds, user
    return replaced


def back_to_default(session: Session, kind: str) -> str | None:
    """Drop the upload of ``kind``; the file it played (None: it was the default already)."""
    row = session.get(SurveyPrompt, kind)
    if row is None:
        return None
    session.delete(row)
    return row.file_name


def remove_replaced(folder: Path, name: str | None) -> None:
    """Remove an upload no longer played; only a name :func:`greetings.store` made is ever
    removed, and only inside ``folder``."""
    kept = greetings.already_stored(folder, name)
    if kept is not None:
        (folder / kept).unlink(missing_ok=True)
