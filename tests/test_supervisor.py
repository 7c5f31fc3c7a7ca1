"""The supervisors' pages over real HTTP (uvicorn, signed in through the sign-in form): the
calls list and its filters, one call, the recording with HTTP Range, complaints, settings."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from test_pops import CHEAP_ARGON2, ZHANG_SAN, Site, running_site

from crm_bridge.accounts import users
from crm_bridge.db.models import (
    AuditEntry,
    Call,
    CallNote,
    Campaign,
    CampaignTarget,
    Complaint,
    Customer,
    Recording,
    VisitRecord,
)
from crm_bridge.speech.jobs import claim_job, finish_job, queue_job
from crm_bridge.supervision import complaints, flags
from transcription.transcript import Segment, Transcript, Word

TRACE_WAV = Path(__file__).resolve().parents[1] / "telephony/traces/recordings"
WAV = "sip_a_inbound_answered_1001.wav"
T0 = datetime(2026, 3, 1, 15, 30, tzinfo=UTC)
"""23:30 on 1 March in Shanghai: the call belongs to 1 March in the center's calendar."""


def a_call(n: int, **values) -> Call:
    fields = {
        "linkedid": f"test-{n}",
        "server": "pbx1",
        "direction": "inbound",
        "caller": f"+86138001380{n:02d}",
        "callee": "+864008001234",
        "queue": "support",
        "agent": "1001",
        "disposition": "answered",
        "offered_at": T0 - timedelta(hours=n),
        "wait_seconds": 5.0,
        "talk_seconds": 60.0,
    } | values
    return Call(**fields)


@pytest.fixture
async def site(tmp_path, monkeypatch) -> AsyncIterator[Site]:
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    async with running_site(tmp_path) as running:
        yield running


def add_calls(site: Site, *calls: Call) -> list[int]:
    with site.sessions().begin() as session:
        session.add_all(calls)
        session.flush()
        return [call.id for call in calls]


def shown_text(html: str) -> str:
    """A page's text without its tags: a count reads "共 100 通" however its words are marked."""
    return re.sub(r"<[^>]+>", "", html)


def listed_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'data-call-id="(\d+)"', html)]


async def test_the_calls_page_filters_every_way(site):
    with site.sessions().begin() as session:
        zhang = session.scalars(select(Customer).where(Customer.card_no == "C0001")).one()
        zhang_id = zhang.id
    ids = add_calls(
        site,
        a_call(0, caller=ZHANG_SAN, customer_id=zhang_id),
        a_call(1, agent="1002", queue="sales"),
        a_call(2, direction="outbound", caller="1001", callee="+8613900139000",
               disposition="no_answer", agent=None),
        a_call(30, disposition="abandoned", agent=None),
    )  # fmt: skip
    latest, by_1002, outbound, abandoned = ids
    async with site.signed_in("lin") as lin:

        async def listed(**params) -> list[int]:
            response = await lin.get("/supervisor/calls", params=params)
            assert response.status_code == 200, response.text
            return listed_ids(response.text)

        assert await listed() == ids
        assert await listed(number="138 0013 8000") == [latest]
        assert await listed(number="0086-139-0013-9000") == [outbound]
        assert await listed(customer="张三") == [latest]
        assert await listed(customer="C0001") == [latest]
        assert await listed(customer="nobody") == []
        assert await listed(agent="1002") == [by_1002]
        assert await listed(queue="sales") == [by_1002]
        assert await listed(direction="outbound") == [outbound]
        assert await listed(disposition="abandoned") == [abandoned]
        # 23:30, 22:30, 21:30 on 1 March in Shanghai; the fourth call is 30 hours earlier
        assert await listed(since="2026-03-01", until="2026-03-01") == [latest, by_1002, outbound]
        assert await listed(since="2026-02-28", until="2026-02-28") == [abandoned]
        assert await listed(since="2026-03-02") == []
        bad = await lin.get("/supervisor/calls", params={"since": "1 March"})
        assert bad.status_code == 422


async def test_a_number_or_name_typed_in_part_finds_its_calls_and_an_empty_list_says_why(site):
    with site.sessions().begin() as session:
        zhang = session.scalars(select(Customer).where(Customer.card_no == "C0001")).one()
        zhang_id = zhang.id
    first, second, outbound = add_calls(
        site,
        a_call(0, caller=ZHANG_SAN, customer_id=zhang_id),  # +8613800138000
        a_call(1, caller="+8613912345678"),
        a_call(2, direction="outbound", caller="1001", callee="+8613900139000", agent=None),
    )  # fmt: skip
    async with site.signed_in("lin") as lin:

        async def listed(**params) -> tuple[list[int], str]:
            response = await lin.get("/supervisor/calls", params=params)
            assert response.status_code == 200, response.text
            return listed_ids(response.text), response.text

        assert (await listed(number="8000"))[0] == [first]  # the last four digits
        assert (await listed(number="139"))[0] == [second, outbound]  # a prefix of both
        assert (await listed(number="5678"))[0] == [second]
        assert (await listed(number="1001"))[0] == [outbound]  # an extension
        assert (await listed(customer="张"))[0] == [first]  # a name begun
        assert (await listed(customer="C000"))[0] == [first]  # a card number begun

        found, page = await listed(since="2026-03-02", until="2026-03-01")
        assert found == [] and "The dates are reversed" in page
        found, page = await listed(number="8-0")
        assert found == [] and "at least 3 digits" in page
        found, page = await listed(agent="9999")
        assert found == [] and "No agent has “9999” in their name" in page
        found, page = await listed(customer="李四五")
        assert found == [] and "No customer" in page
        found, page = await listed(queue="nowhere")
        assert found == [] and 'id="why-none"' not in page  # nothing plainly wrong to say


async def test_pages_follow_each_other_without_gaps_or_repeats(site):
    same_moment = [a_call(n, offered_at=T0) for n in range(30)]
    ids = add_calls(site, *same_moment, *(a_call(n) for n in range(30, 100)))
    seen: list[int] = []
    async with site.signed_in("lin") as lin:
        url = "/supervisor/calls?queue=support"
        while url:
            html = (await lin.get(url)).text
            assert "共 100 通" in shown_text(html)
            seen += listed_ids(html)
            found = re.search(r'id="next-page" href="([^"]+)"', html)
            url = "/supervisor/calls" + found.group(1).replace("&amp;", "&") if found else None
    assert len(seen) == 100 and set(seen) == set(ids)
    assert seen[:30] == sorted(ids[:30], reverse=True)


@pytest.mark.parametrize(
    "path", ["/supervisor/calls", "/supervisor/calls/1", "/supervisor/recordings/1/audio"]
)
async def test_agents_are_refused(site, path):
    async with site.signed_in("wang") as wang:
        assert (await wang.get(path)).status_code == 403


def add_recording(site: Site, relative: str) -> tuple[int, int]:
    (call_id,) = add_calls(site, a_call(0))
    with site.sessions().begin() as session:
        recording = Recording(call_id=call_id, path=relative, status="ok")
        session.add(recording)
        session.flush()
        return call_id, recording.id


def audit_actions(site: Site) -> list[tuple[str, str, str | None]]:
    with site.sessions()() as session:
        rows = session.scalars(select(AuditEntry).order_by(AuditEntry.id))
        return [(r.username, r.action, r.subject_id) for r in rows]


async def test_the_recording_answers_range_requests_and_each_playback_is_audited(site):
    folder = site.settings.recordings_dir
    (folder / "2026").mkdir(parents=True)
    shutil.copy(TRACE_WAV / WAV, folder / "2026" / WAV)
    whole = (TRACE_WAV / WAV).read_bytes()
    _, rid = add_recording(site, f"2026/{WAV}")
    url = f"/supervisor/recordings/{rid}/audio"
    async with site.signed_in("lin") as lin:
        first = await lin.get(url, headers={"Range": "bytes=0-"})
        assert first.status_code == 206
        assert first.content == whole
        assert first.headers["content-range"] == f"bytes 0-{len(whole) - 1}/{len(whole)}"
        seek = await lin.get(url, headers={"Range": "bytes=1000-1999"})
        assert seek.status_code == 206
        assert seek.content == whole[1000:2000]
        assert seek.headers["content-range"] == f"bytes 1000-1999/{len(whole)}"
        beyond = await lin.get(url, headers={"Range": f"bytes={len(whole) + 10}-"})
        assert beyond.status_code == 416
        download = await lin.get(url, params={"download": "1"})
        assert download.status_code == 200 and download.content == whole
        assert download.headers["content-disposition"].startswith("attachment")
    assert audit_actions(site) == [("lin", "play", str(rid)), ("lin", "download", str(rid))]


@pytest.mark.parametrize("relative", ["../outside.wav", "/etc/passwd", "link.wav", "none.wav"])
async def test_a_recording_path_cannot_leave_the_recordings_folder(site, relative):
    folder = site.settings.recordings_dir
    folder.mkdir(parents=True, exist_ok=True)
    outside = folder.parent / "outside.wav"
    shutil.copy(TRACE_WAV / WAV, outside)
    (folder / "link.wav").symlink_to(outside)
    _, rid = add_recording(site, relative)
    async with site.signed_in("lin") as lin:
        assert (await lin.get(f"/supervisor/recordings/{rid}/audio")).status_code == 404
    assert audit_actions(site) == []


async def test_one_call_shows_the_customer_the_wrap_up_the_complaint_and_the_player(site):
    with site.sessions().begin() as session:
        zhang = session.scalars(select(Customer).where(Customer.card_no == "C0001")).one()
        call = a_call(0, caller=ZHANG_SAN, customer_id=zhang.id)
        session.add(call)
        session.flush()
        session.add_all([
            Recording(call_id=call.id, path=WAV, status="ok"),
            CallNote(linkedid=call.linkedid, wrapup_code="complaint", note="遥控器坏了",
                     agent_username="wang"),
            Complaint(customer_id=zhang.id, received_at=T0, content="空调遥控器失灵",
                      linkedid=call.linkedid),
        ])  # fmt: skip
        session.flush()
        call_id = call.id
        recording_id = session.scalar(select(Recording.id).where(Recording.call_id == call_id))
    async with site.signed_in("lin") as lin:
        page = await lin.get(f"/supervisor/calls/{call_id}", params={"t": "12.5"})
        assert page.status_code == 200
        html = page.text
        assert f'src="/supervisor/recordings/{recording_id}/audio"' in html
        assert 'data-start-at="12.5"' in html
        for shown in ("张三", "C0001", "投诉", "遥控器坏了", "空调遥控器失灵", "+8613800138000"):
            assert shown in html, shown
        assert (await lin.get("/supervisor/calls/999999")).status_code == 404
    assert audit_actions(site) == []  # the page itself plays nothing


# ------------------------------------------------------------------------------- complaints


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


async def test_a_complaint_is_assigned_escalated_and_resolved_with_its_history(site):
    with site.sessions().begin() as session:
        zhang = session.scalars(select(Customer).where(Customer.card_no == "C0001")).one()
        complaint = Complaint(customer_id=zhang.id, received_at=T0, content="空调遥控器失灵")
        session.add(complaint)
        session.flush()
        cid = complaint.id
    url = f"/supervisor/complaints/{cid}"
    async with site.signed_in("lin") as lin:
        listed = await lin.get("/supervisor/complaints")
        assert f'data-complaint-id="{cid}"' in listed.text and "张三" in listed.text
        token = csrf_of((await lin.get(url)).text)

        async def act(action: str, **form) -> int:
            response = await lin.post(f"{url}/{action}", data={"csrf_token": token, **form})
            return response.status_code

        assert await act("assign", who="") == 400
        assert await act("assign", who="zhou") == 400  # a scheduler handles no complaint
        assert await act("assign", who="li") == 303
        assert await act("escalate", who="经理 Chen", text="客户要求赔偿") == 400  # no such user
        assert await act("escalate", who="lin", text="客户要求赔偿") == 303
        assert await act("resolve", text="已换新遥控器", follow_up_at="2020-01-01T10:00") == 400
        assert await act("resolve", text="已换新遥控器", follow_up_at="2030-01-02T10:00") == 303
        assert await act("assign", who="li") == 400  # resolved: nothing more to do
        forged = await lin.post(f"{url}/assign", data={"who": "li"})
        assert forged.status_code == 403
        page = (await lin.get(url)).text
        assert "已换新遥控器" in page and "2030-01-02 10:00" in page
        assert f'data-complaint-id="{cid}"' not in (await lin.get("/supervisor/complaints")).text
        resolved = await lin.get("/supervisor/complaints", params={"status": "resolved"})
        assert f'data-complaint-id="{cid}"' in resolved.text
    async with site.signed_in("wang") as wang:
        token = csrf_of((await wang.get("/agent")).text)
        refused = await wang.post(f"{url}/assign", data={"csrf_token": token, "who": "wang"})
        assert refused.status_code == 403
    with site.sessions()() as session:
        complaint = session.get(Complaint, cid)
        assert (complaint.status, complaint.handler, complaint.escalated_to) == (
            "resolved", "li", "lin")  # fmt: skip
        assert complaint.resolved_at is not None
        events = [(e.actor, e.action, e.from_status, e.to_status, e.target, e.follow_up_at)
                  for e in complaints.history(session, cid)]  # fmt: skip
    assert events == [
        ("lin", "assign", "open", "in_progress", "li", None),
        ("lin", "escalate", "in_progress", "in_progress", "lin", None),
        ("lin", "resolve", "in_progress", "resolved", None, datetime(2030, 1, 2, 2, tzinfo=UTC)),
    ]


async def test_visit_opinions_are_listed_newest_first(site):
    with site.sessions().begin() as session:
        zhang = session.scalars(select(Customer).where(Customer.card_no == "C0001")).one()
        session.add_all([
            VisitRecord(customer_id=zhang.id, visited_at=T0, opinions="安装师傅很准时",
                        suggestions="希望周末也能安装"),
            VisitRecord(customer_id=zhang.id, visited_at=T0 - timedelta(days=3)),
        ])  # fmt: skip
    async with site.signed_in("lin") as lin:
        every = (await lin.get("/supervisor/visits")).text
        assert "共 2 条" in shown_text(every) and every.index("安装师傅很准时") > 0
        with_words = (await lin.get("/supervisor/visits", params={"opinions": "true"})).text
        assert "共 1 条" in shown_text(with_words) and "希望周末也能安装" in with_words


# ------------------------------------------------------------------------------- flags, words


def save_transcript(site: Site, recording_id: int, *lines: tuple[str, float, float, str]) -> None:
    """A transcript stored the way the transcription worker stores it (``finish_job``)."""
    segments = tuple(
        Segment(speaker, start, end, text,
                (Word(text[:2], start, start + 0.4, 0.9), Word(text[2:], start + 0.5, end, 0.8)))
        for speaker, start, end, text in lines
    )  # fmt: skip
    with site.sessions().begin() as session:
        queue_job(session, recording_id)
        job = claim_job(session, "test-worker", 60)
        assert finish_job(session, job, "test-worker", Transcript(segments, 30.0, "zh"))


async def test_watch_words_flag_calls_at_the_moment_and_the_words_said_find_them(site):
    _, rid = add_recording(site, WAV)
    call_id = site.sessions()().get(Recording, rid).call_id
    (quiet_call,) = add_calls(site, a_call(5))
    save_transcript(
        site,
        rid,
        ("agent", 0.4, 2.0, "您好请讲"),
        ("customer", 2.5, 5.0, "我要投诉你们"),
        ("customer", 6.0, 9.0, "不退款就找律师"),
    )
    assert flags.sweep(site.sessions()) == 3  # 投诉, 退款, 律师 (12315 is not said)
    assert flags.sweep(site.sessions()) == 0
    with site.sessions()() as session:
        found = [(f.word, f.at_seconds) for f in flags.flags_of_call(session, call_id)]
    # the moment is the word's own start when a recognised word holds it
    assert found == [("投诉", 3.0), ("退款", 6.0), ("律师", 6.5)]
    async with site.signed_in("lin") as lin:
        flagged = await lin.get("/supervisor/calls", params={"flagged": "true"})
        assert listed_ids(flagged.text) == [call_id]
        assert quiet_call in listed_ids((await lin.get("/supervisor/calls")).text)
        said = await lin.get("/supervisor/calls", params={"words": "退款"})
        assert listed_ids(said.text) == [call_id]
        assert f"/supervisor/calls/{call_id}?t=6.00&amp;q=%E9%80%80%E6%AC%BE" in said.text
        assert listed_ids((await lin.get("/supervisor/calls", params={"words": "发票"})).text) == []
        page = (await lin.get("/supervisor/flags")).text
        assert "不退款就找律师" in page and "共 3 处" in shown_text(page)
        call_page = (await lin.get(f"/supervisor/calls/{call_id}", params={"q": "退款"})).text
        assert call_page.count('<li data-start="') == 3
        assert 'class="hit"' in call_page
        assert '<span class="speaker-customer">客户</span>' in call_page  # the zh-CN page's half

        token = csrf_of((await lin.get("/supervisor/settings")).text)
        form = {"csrf_token": token, "word": "您好"}
        assert (await lin.post("/supervisor/watch-words", data=form)).status_code == 303
        assert (await lin.post("/supervisor/watch-words", data=form)).status_code == 400
    with site.sessions()() as session:
        words = [f.word for f in flags.flags_of_call(session, call_id)]
    assert words == ["您好", "投诉", "退款", "律师"]  # a new word looks at every transcript


async def test_resolving_hands_the_follow_up_to_a_complaint_follow_up_campaign(site):
    with site.sessions().begin() as session:
        zhang = session.scalars(select(Customer).where(Customer.card_no == "C0001")).one()
        complaint = Complaint(customer_id=zhang.id, received_at=T0, content="退款太慢")
        # paused: the service's campaign runner would finish a running one that has no targets
        followup = Campaign(name="投诉回访 11月", kind="complaint_followup", mode="agent",
                            rules=[], policy={}, status="paused")  # fmt: skip
        birthday = Campaign(name="生日祝福", kind="birthday", mode="message",
                            rules=[], policy={}, status="running")  # fmt: skip
        session.add_all([complaint, followup, birthday])
        session.flush()
        cid, followup_id, birthday_id, zhang_id = complaint.id, followup.id, birthday.id, zhang.id
    url = f"/supervisor/complaints/{cid}"
    async with site.signed_in("lin") as lin:
        page = (await lin.get(url)).text
        assert "投诉回访 11月" in page and "生日祝福" not in page
        form = {"csrf_token": csrf_of(page), "text": "已退款", "follow_up_at": "2030-03-01T09:30"}
        wrong = await lin.post(f"{url}/resolve", data=form | {"campaign": str(birthday_id)})
        assert wrong.status_code == 400
        done = await lin.post(f"{url}/resolve", data=form | {"campaign": str(followup_id)})
        assert done.status_code == 303
    with site.sessions()() as session:
        (target,) = session.scalars(select(CampaignTarget)).all()
        assert (target.campaign_id, target.customer_id, target.state) == (
            followup_id, zhang_id, "pending")  # fmt: skip
        assert target.next_attempt_at == datetime(2030, 3, 1, 1, 30, tzinfo=UTC)
        (event,) = complaints.history(session, cid)
        assert event.target == "投诉回访 11月"


async def test_the_calls_page_names_direction_and_outcome_in_the_page_language(site):
    (call_id,) = add_calls(site, a_call(0, disposition="abandoned", agent=None))
    async with site.signed_in("lin") as lin:
        english, chinese = ("Abandoned", "Inbound"), ("放弃", "呼入")
        for language, shown, not_shown in ("en-US", english, chinese), ("zh-CN", chinese, english):
            lin.headers["Accept-Language"] = language
            for path in ("/supervisor/calls", f"/supervisor/calls/{call_id}"):
                row = (await lin.get(path)).text
                if path == "/supervisor/calls":
                    row = row.split(f'data-call-id="{call_id}"', 1)[1].split("</tr>", 1)[0]
                for word in shown:
                    assert f">{word}<" in row, (language, path, word)
                for word in not_shown:
                    assert f">{word}<" not in row and f"{word} " not in row, (language, word)
