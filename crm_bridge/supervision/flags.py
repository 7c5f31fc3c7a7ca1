"""Watch words and the calls that said them.

Supervisors keep a list of words (投诉, 退款, 律师, 12315 …). A call is flagged with the word
and the moment it was said: the start of that word in the segment's word timings when the
recogniser gave it as one word, else the start of the segment.

Flags are made by a sweep over the transcript segments saved since the last one (the highest
segment id seen is kept in ``supervision_settings``), every minute from the service's
lifespan; a word added to the list is looked for at once in every transcript. The unique key
(segment, word) makes both idempotent, also when two processes sweep at the same time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from crm_bridge.accounts.users import UserInputError
from crm_bridge.db.models import (
    Call,
    CallFlag,
    SupervisionSetting,
    TranscriptSegment,
    WatchWord,
)

MAX_WORD = 32
SWEPT_KEY = "flags_swept_through_segment"
SWEEP_BATCH = 5000


def watch_words(session: Session) -> list[str]:
    return list(session.scalars(select(WatchWord.word).order_by(WatchWord.id)))


def add_watch_word(session: Session, word: str, *, by: str) -> int:
    """Add a word and flag every transcript that already says it; the number of new flags."""
    word = word.strip()
    if not word or len(word) > MAX_WORD or any(ch.isspace() for ch in word):
        message = f"关注词须为 1-{MAX_WORD} 个字符、不含空格 / One word, 1-{MAX_WORD} characters"
        raise UserInputError({"word": message})
    if session.scalar(select(WatchWord.id).where(WatchWord.word == word)) is not None:
        raise UserInputError({"word": "该词已在列表中 / Already watched"})
    session.add(WatchWord(word=word, created_by=by))
    session.flush()
    return flag_segments(session, [word], after_id=0)


def remove_watch_word(session: Session, word: str) -> None:
    """Stop watching ``word``; the calls it flagged keep their flags."""
    session.execute(delete(WatchWord).where(WatchWord.word == word))


def word_moment(segment: TranscriptSegment, word: str) -> float:
    """When ``word`` starts in ``segment``: its own timing when one recognised word holds it."""
    for timed in segment.words or []:
        if isinstance(timed, dict) and word in str(timed.get("text", "")):
            start = timed.get("start")
            if isinstance(start, int | float):
                return float(start)
    return segment.start_seconds


def flag_segments(
    session: Session, words: Iterable[str], *, after_id: int, through_id: int | None = None
) -> int:
    """Flag the segments with ``after_id < id <= through_id`` that say any of ``words``."""
    made = 0
    for word in words:
        query = select(TranscriptSegment).where(
            TranscriptSegment.id > after_id,
            TranscriptSegment.text.icontains(word, autoescape=True),
        )
        if through_id is not None:
            query = query.where(TranscriptSegment.id <= through_id)
        rows = [
            {"call_id": s.call_id, "segment_id": s.id, "word": word,
             "at_seconds": word_moment(s, word)}
            for s in session.scalars(query)
        ]  # fmt: skip
        if rows:
            made += _insert_new(session, rows)
    return made


def _insert_new(session: Session, rows: list[dict[str, Any]]) -> int:
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    now = datetime.now().astimezone()
    statement = (
        insert(CallFlag)
        .values([row | {"flagged_at": now} for row in rows])
        .on_conflict_do_nothing(index_elements=["segment_id", "word"])
    )
    return int(session.execute(statement).rowcount or 0)


def sweep(sessions: sessionmaker[Session]) -> int:
    """Flag the segments saved since the last sweep; the number of new flags."""
    made = 0
    while True:
        with sessions.begin() as session:
            swept = session.get(SupervisionSetting, SWEPT_KEY, with_for_update=True)
            after = int(swept.value) if swept is not None else 0
            batch = (
                select(TranscriptSegment.id)
                .where(TranscriptSegment.id > after)
                .order_by(TranscriptSegment.id)
                .limit(SWEEP_BATCH)
                .subquery()
            )
            newest = session.scalar(select(func.max(batch.c.id)))
            if newest is None or newest <= after:
                return made
            made += flag_segments(session, watch_words(session), after_id=after, through_id=newest)
            if swept is None:
                session.add(SupervisionSetting(key=SWEPT_KEY, value=newest, updated_by="sweep"))
            else:
                swept.value = newest


@dataclass(frozen=True)
class FlagRow:
    flag: CallFlag
    offered_at: datetime | None
    agent: str | None
    caller: str | None
    text: str


def list_flags(session: Session, *, limit: int, offset: int) -> tuple[list[FlagRow], int]:
    """Flags newest first with their call and the sentence said."""
    total = session.scalar(select(func.count(CallFlag.id))) or 0
    rows = session.execute(
        select(CallFlag, Call.offered_at, Call.agent, Call.caller, TranscriptSegment.text)
        .join(Call, Call.id == CallFlag.call_id)
        .join(TranscriptSegment, TranscriptSegment.id == CallFlag.segment_id)
        .order_by(CallFlag.flagged_at.desc(), CallFlag.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [FlagRow(*row) for row in rows], int(total)


def flags_of_call(session: Session, call_id: int) -> list[CallFlag]:
    statement = (
        select(CallFlag).where(CallFlag.call_id == call_id).order_by(CallFlag.at_seconds)
    )
    return list(session.scalars(statement))
