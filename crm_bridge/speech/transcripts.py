"""Reading transcripts: a call's segments in order, and search by the words said.

Chinese is written without spaces, so a word index of the usual kind finds nothing; both
backends index character trigrams instead (migration 0003):

- SQLite: the FTS5 table ``transcript_fts`` (tokenizer ``trigram``) over
  ``transcript_segments.text``, kept in step by triggers; a term is matched as a quoted FTS5
  string, i.e. as a substring, case-insensitively.
- PostgreSQL: ``ILIKE '%term%'``, which the pg_trgm GIN index serves.

A trigram needs three characters: terms of one or two characters (很多中文词只有两个字) are
matched with LIKE on both backends, which reads every segment but stays correct. The query is
split on spaces; a segment must hold every term.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Select, select, text
from sqlalchemy.orm import Session

from crm_bridge.db.models import Call, TranscriptSegment

TRIGRAM = 3
MAX_TERMS = 8


@dataclass(frozen=True)
class SegmentHit:
    """A segment whose text holds the words searched for, and where in which call it is."""

    call_id: int
    recording_id: int
    segment_id: int
    speaker: str
    start_seconds: float
    text: str
    end_seconds: float


def search_terms(words: str) -> list[str]:
    """The distinct terms of a query, in order (at most ``MAX_TERMS``)."""
    return list(dict.fromkeys(words.split()))[:MAX_TERMS]


def _fts5_string(term: str) -> str:
    """A term as one FTS5 string: double quotes doubled, so no query syntax gets through."""
    return '"' + term.replace('"', '""') + '"'


def _matching(session: Session, terms: list[str]) -> Select:
    segments = TranscriptSegment
    query = select(segments)
    on_sqlite = session.get_bind().dialect.name == "sqlite"
    long_terms = [term for term in terms if len(term) >= TRIGRAM]
    if on_sqlite and long_terms:
        match = " AND ".join(_fts5_string(term) for term in long_terms)
        indexed = text("SELECT rowid FROM transcript_fts WHERE transcript_fts MATCH :match")
        query = query.where(segments.id.in_(indexed.bindparams(match=match)))
    for term in terms:
        if on_sqlite and len(term) >= TRIGRAM:
            continue
        query = query.where(segments.text.icontains(term, autoescape=True))
    return query


def search_segments(
    session: Session, words: str, *, limit: int = 50, offset: int = 0
) -> list[SegmentHit]:
    """Segments that contain every term of ``words``, newest call first, then by time in the
    call. An empty query finds nothing."""
    terms = search_terms(words)
    if not terms:
        return []
    segments = TranscriptSegment
    query = (
        _matching(session, terms)
        .join(Call, Call.id == segments.call_id)
        .order_by(
            Call.offered_at.desc().nulls_last(), Call.id.desc(), segments.start_seconds, segments.id
        )
        .limit(limit)
        .offset(offset)
    )
    return [
        SegmentHit(
            call_id=segment.call_id,
            recording_id=segment.recording_id,
            segment_id=segment.id,
            speaker=segment.speaker,
            start_seconds=segment.start_seconds,
            text=segment.text,
            end_seconds=segment.end_seconds,
        )
        for segment in session.scalars(query)
    ]


def segments_of_call(session: Session, call_id: int) -> list[TranscriptSegment]:
    """Every transcript segment of a call, both speakers interleaved in time order."""
    query = (
        select(TranscriptSegment)
        .where(TranscriptSegment.call_id == call_id)
        .order_by(
            TranscriptSegment.recording_id,
            TranscriptSegment.start_seconds,
            TranscriptSegment.id,
        )
    )
    return list(session.scalars(query))
