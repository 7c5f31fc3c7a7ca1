"""Search by the words said, on SQLite (FTS5 trigram) and PostgreSQL (pg_trgm), in Chinese."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta

import pytest
from speech_fixtures import ASR_SAMPLES, dither_free_model
from sqlalchemy import delete, select, text, update

from crm_bridge.calls.recordings import RecordingsRoot, link_recording
from crm_bridge.db.models import Call, Recording, TranscriptSegment
from crm_bridge.speech.jobs import Worker
from crm_bridge.speech.transcripts import SegmentHit, search_segments, segments_of_call
from transcription.engine import Transcriber

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
CALLS = {  # linkedid: (offered minutes after T0, [(speaker, start, end, text), ...])
    "older": (
        0,
        [
            ("customer", 1.0, 3.5, "你好，我上周买的冰箱发票开错了"),
            ("agent", 4.0, 6.0, "好的，请告诉我您的订单号"),
            ("customer", 6.5, 9.0, "订单号是 VIP 2024 一百号，我想退货"),
        ],
    ),
    "newer": (
        30,
        [
            ("agent", 0.5, 2.0, "您好，这里是客服中心，生日快乐"),
            ("customer", 2.5, 5.0, "谢谢，顺便问一下发票开错了怎么办"),
            ("customer", 5.5, 7.0, "折扣是 50% 还是 5_0？"),
        ],
    ),
}


def add_calls(sessions) -> dict[str, int]:
    ids = {}
    with sessions.begin() as session:
        for linkedid, (minutes, said) in CALLS.items():
            call = Call(linkedid=linkedid, server="pbx", offered_at=T0 + timedelta(minutes=minutes))
            call.recordings = [Recording(path=f"{linkedid}.wav", status="ok")]
            session.add(call)
            session.flush()
            session.add_all(
                TranscriptSegment(
                    recording_id=call.recordings[0].id,
                    call_id=call.id,
                    speaker=speaker,
                    start_seconds=start,
                    end_seconds=end,
                    text=words,
                    words=[],
                )
                for speaker, start, end, words in said
            )
            ids[linkedid] = call.id
    return ids


def found(sessions, words: str, **page) -> list[tuple[int, float]]:
    with sessions() as session:
        return [(hit.call_id, hit.start_seconds) for hit in search_segments(session, words, **page)]


@pytest.fixture
def calls(db_sessions) -> dict[str, int]:
    return add_calls(db_sessions)


def test_chinese_words_are_found_inside_unspaced_text(db_sessions, calls):
    older, newer = calls["older"], calls["newer"]
    assert found(db_sessions, "发票开错") == [(newer, 2.5), (older, 1.0)]  # newest call first
    assert found(db_sessions, "订单号") == [(older, 4.0), (older, 6.5)]
    assert found(db_sessions, "生日快乐") == [(newer, 0.5)]
    assert found(db_sessions, "发票开对") == []


def test_one_and_two_character_words_are_found_too(db_sessions, calls):
    assert found(db_sessions, "退货") == [(calls["older"], 6.5)]
    assert found(db_sessions, "冰") == [(calls["older"], 1.0)]


def test_every_term_must_be_said_in_the_segment(db_sessions, calls):
    older = calls["older"]
    assert found(db_sessions, "订单号 退货") == [(older, 6.5)]
    assert found(db_sessions, "发票 冰箱") == [(older, 1.0)]
    assert found(db_sessions, "发票 生日快乐") == []


def test_latin_letters_match_in_any_case(db_sessions, calls):
    assert found(db_sessions, "vip") == found(db_sessions, "VIP") == [(calls["older"], 6.5)]
    assert found(db_sessions, "vip 2024") == [(calls["older"], 6.5)]


def test_query_syntax_and_wildcards_are_plain_characters(db_sessions, calls):
    newer = calls["newer"]
    assert found(db_sessions, "50%") == [(newer, 5.5)]
    assert found(db_sessions, "5_0") == [(newer, 5.5)]
    assert found(db_sessions, "%") == [(newer, 5.5)]
    assert found(db_sessions, "_") == [(newer, 5.5)]
    for query in ('"', '发票" OR "生日', "发票 NEAR(退货)", "订单*", "*", "text:发票", "^发票"):
        found(db_sessions, query)  # no syntax error reaches the caller
    assert found(db_sessions, '发票" OR "生日') == []
    assert found(db_sessions, "") == found(db_sessions, "   ") == []


def test_hits_say_where_in_which_call_and_page(db_sessions, calls):
    with db_sessions() as session:
        (hit,) = search_segments(session, "订单号是")
        recording_id = session.scalars(
            select(Recording.id).where(Recording.call_id == calls["older"])
        ).one()
    assert hit == SegmentHit(
        call_id=calls["older"],
        recording_id=recording_id,
        segment_id=hit.segment_id,
        speaker="customer",
        start_seconds=6.5,
        text="订单号是 VIP 2024 一百号，我想退货",
        end_seconds=9.0,
    )
    everything = found(db_sessions, "，")
    assert len(everything) == 5
    assert found(db_sessions, "，", limit=2) == everything[:2]
    assert found(db_sessions, "，", limit=2, offset=2) == everything[2:4]


def test_the_index_follows_updates_and_deletes(db_sessions, calls):
    with db_sessions.begin() as session:
        session.execute(
            update(TranscriptSegment)
            .where(TranscriptSegment.text.contains("生日快乐"))
            .values(text="您好，这里是客服中心，节日快乐")
        )
        session.execute(
            delete(TranscriptSegment).where(TranscriptSegment.call_id == calls["older"])
        )
    assert found(db_sessions, "生日快乐") == []
    assert found(db_sessions, "节日快乐") == [(calls["newer"], 0.5)]
    assert found(db_sessions, "订单号") == []
    assert found(db_sessions, "发票开错") == [(calls["newer"], 2.5)]
    with db_sessions.begin() as session:
        if session.get_bind().dialect.name == "sqlite":  # FTS5 checks its index against the table
            session.execute(
                text("INSERT INTO transcript_fts(transcript_fts) VALUES ('integrity-check')")
            )


def test_searches_use_the_trigram_index(db_sessions, calls):
    with db_sessions() as session:
        if session.get_bind().dialect.name == "sqlite":
            query = text(
                "EXPLAIN QUERY PLAN SELECT rowid FROM transcript_fts WHERE transcript_fts MATCH :m"
            )
            plan = " ".join(str(row) for row in session.execute(query, {"m": '"发票开错"'}))
            assert "VIRTUAL TABLE INDEX" in plan
        else:
            session.execute(text("SET LOCAL enable_seqscan = off"))
            query = text("EXPLAIN SELECT id FROM transcript_segments WHERE text ILIKE :p")
            plan = " ".join(row[0] for row in session.execute(query, {"p": "%发票开错%"}))
            assert "ix_transcript_segments_text_trgm" in plan


def test_a_call_s_segments_come_in_time_order(db_sessions, calls):
    with db_sessions() as session:
        segments = segments_of_call(session, calls["newer"])
        assert segments_of_call(session, 999_999) == []
    assert [(s.speaker, s.start_seconds) for s in segments] == [
        ("agent", 0.5),
        ("customer", 2.5),
        ("customer", 5.5),
    ]


def test_words_recognised_by_the_engine_are_found_at_their_time(
    sqlite_sessions, tmp_path, tmp_path_factory
):
    """A real transcript (Korean model): the longest word it heard is found, and the hit
    gives that segment's time in the call."""
    transcriber = Transcriber(dither_free_model(tmp_path_factory.getbasetemp()), language="ko")
    root = RecordingsRoot(tmp_path)
    shutil.copy(ASR_SAMPLES / "ko" / "zeroth_0022.8k.wav", tmp_path / "call.wav")
    with sqlite_sessions.begin() as session:
        call = Call(linkedid="ko", server="pbx", offered_at=T0)
        session.add(call)
        session.flush()
        link_recording(session, call.id, "call.wav", root)
    assert Worker(sqlite_sessions, root, transcriber.transcribe).run(once=True) == 1
    with sqlite_sessions() as session:
        (segment, *_) = segments_of_call(session, call.id)
        longest = max((word["text"] for word in segment.words), key=len)
        hits = search_segments(session, longest)
    assert longest in segment.text
    assert (hits[0].call_id, hits[0].segment_id) == (call.id, segment.id)
    assert hits[0].start_seconds == segment.start_seconds
