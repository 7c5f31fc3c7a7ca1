"""The supervisor's work on the database (SQLite, and PostgreSQL where one runs): complaints
assigned and escalated to users picked from the list, a complaint's category and severity, and
the quality-review scorecards with their figures per agent. Every refusal names its field in
zh-CN and English and changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from crm_bridge.accounts.users import UserInputError
from crm_bridge.db.models import (
    Call,
    Complaint,
    ComplaintEvent,
    Customer,
    QualityReview,
    User,
)
from crm_bridge.pops.work import CATEGORY_LABELS, SEVERITY_LABELS, open_complaint
from crm_bridge.quality import scorecard
from crm_bridge.supervision import complaints, kpis

T0 = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
USERS = {
    "wang": ("agent", True),
    "lin": ("supervisor", True),
    "root": ("admin", True),
    "zhou": ("scheduler", True),
    "old": ("agent", False),
}
FULL_MARKS = {c.key: str(c.max_score) for c in scorecard.CRITERIA}


@pytest.fixture
def seeded(db_sessions):
    with db_sessions.begin() as session:
        for name, (role, active) in USERS.items():
            session.add(User(username=name, password_hash="-", role=role, active=active))
        customer = Customer(card_no="C0001", name="张三")
        session.add(customer)
        session.flush()
        complaint = Complaint(customer_id=customer.id, received_at=T0, content="空调遥控器失灵")
        session.add(complaint)
        session.flush()
        return db_sessions, customer.id, complaint.id


def refused(sessions, step) -> dict[str, str]:
    with pytest.raises(UserInputError) as caught, sessions.begin() as session:
        step(session)
    return caught.value.errors


def complaint_state(sessions, complaint_id: int) -> tuple:
    with sessions() as session:
        c = session.get(Complaint, complaint_id)
        events = session.scalar(select(func.count(ComplaintEvent.id))) or 0
        return c.status, c.handler, c.assigned_by, c.escalated_to, c.escalated_by, events


def test_the_lists_hold_active_users_of_the_roles_that_take_complaints(seeded):
    sessions, _, _ = seeded
    with sessions() as session:
        assert [u.username for u in complaints.assignees(session)] == ["lin", "wang"]
        assert [u.username for u in complaints.escalation_users(session)] == ["lin", "root"]


def test_assign_and_escalate_keep_who_and_when_and_refuse_anyone_not_on_the_list(seeded):
    sessions, _, cid = seeded
    untouched = complaint_state(sessions, cid)
    for who, why in (("", "Pick a user"), ("nobody", "active agent or supervisor"),
                     ("zhou", "active agent or supervisor"), ("old", "active agent")):  # fmt: skip
        errors = refused(
            sessions, lambda s, w=who: complaints.assign(s, cid, actor="lin", handler=w)
        )
        assert list(errors) == ["handler"] and why in errors["handler"]
        assert "只能分派" in errors["handler"] or "请从列表" in errors["handler"]
    errors = refused(sessions, lambda s: complaints.escalate(s, cid, actor="lin", to="wang"))
    assert list(errors) == ["escalated_to"] and "supervisor or admin" in errors["escalated_to"]
    assert complaint_state(sessions, cid) == untouched

    with sessions.begin() as session:
        complaints.assign(session, cid, actor="lin", handler="wang", now=T0)
        complaints.escalate(session, cid, actor="lin", to="root", comment="要求赔偿",
                            now=T0 + timedelta(minutes=5))  # fmt: skip
    with sessions() as session:
        c = session.get(Complaint, cid)
        assert (c.status, c.handler, c.assigned_by, c.assigned_at) == (
            "in_progress", "wang", "lin", T0)  # fmt: skip
        assert (c.escalated_to, c.escalated_by, c.escalated_at) == (
            "root", "lin", T0 + timedelta(minutes=5))  # fmt: skip
        assert [(e.action, e.actor, e.target, e.at, e.comment)
                for e in complaints.history(session, cid)] == [
            ("assign", "lin", "wang", T0, None),
            ("escalate", "lin", "root", T0 + timedelta(minutes=5), "要求赔偿"),
        ]  # fmt: skip


def test_a_resolved_complaint_is_not_escalated_or_assigned_again(seeded):
    sessions, _, cid = seeded
    with sessions.begin() as session:
        complaints.resolve(session, cid, actor="lin", resolution="已换新遥控器")
    resolved = complaint_state(sessions, cid)
    errors = refused(sessions, lambda s: complaints.escalate(s, cid, actor="lin", to="root"))
    assert errors == {"escalated_to": "投诉已解决或已关闭，不能再处理 / The complaint is "
                                      "resolved or closed"}  # fmt: skip
    errors = refused(sessions, lambda s: complaints.assign(s, cid, actor="lin", handler="wang"))
    assert list(errors) == ["handler"]
    assert complaint_state(sessions, cid) == resolved


def test_a_complaint_is_taken_with_its_category_and_severity(seeded):
    sessions, customer_id, _ = seeded
    for category, severity, field in (("", "normal", "category"), ("food", "normal", "category"),
                                      ("price", "critical", "severity")):  # fmt: skip
        errors = refused(sessions, lambda s, c=category, v=severity: open_complaint(
            s, customer_id, "太贵了", "wang", category=c, severity=v))  # fmt: skip
        assert list(errors) == [field] and " / " in errors[field]
    with sessions() as session:
        assert session.scalar(select(func.count(Complaint.id))) == 1  # the seeded one only
    with sessions.begin() as session:
        new_id = open_complaint(session, customer_id, "送货晚了三天", "wang",
                                category="delivery", severity="urgent")  # fmt: skip
    with sessions() as session:
        taken = session.get(Complaint, new_id)
        assert (taken.category, taken.severity, taken.status) == ("delivery", "urgent", "open")
        old = session.scalar(select(Complaint).where(Complaint.id != new_id))
        assert (old.category, old.severity) == (None, "normal")  # taken before categories


def test_the_list_is_filtered_by_category_and_severity(seeded):
    sessions, customer_id, seeded_id = seeded
    with sessions.begin() as session:
        taken = {
            (c, v): open_complaint(session, customer_id, f"{c} {v}", "wang", category=c,
                                   severity=v)
            for c in ("product", "price") for v in ("normal", "urgent")
        }  # fmt: skip

    def listed(**kinds) -> list[int]:
        with sessions() as session:
            rows, total = complaints.list_complaints(
                session, complaints.OPEN_STATUSES, limit=50, offset=0, **kinds
            )
        assert total == len(rows)
        return [row.complaint.id for row in rows]

    assert sorted(listed()) == sorted([seeded_id, *taken.values()])
    assert sorted(listed(category="price")) == sorted(
        [taken["price", "normal"], taken["price", "urgent"]]
    )
    assert listed(category="product", severity="urgent") == [taken["product", "urgent"]]
    assert listed(category="delivery") == []
    assert set(CATEGORY_LABELS) == {"product", "service", "delivery", "price", "other"}
    assert [label.split()[0] for label in SEVERITY_LABELS.values()] == ["一般", "严重", "紧急"]


# ------------------------------------------------------------------------------- scorecards


def test_the_fixed_scorecard_adds_up_to_one_hundred():
    assert [c.label.split()[0] for c in scorecard.CRITERIA] == [
        "开场问候", "业务准确", "服务态度", "问题解决", "结束语"]  # fmt: skip
    assert scorecard.MAX_TOTAL == 100


def add_call(sessions, n: int, agent: str | None, offered_at: datetime) -> int:
    with sessions.begin() as session:
        call = Call(linkedid=f"q-{n}", server="pbx1", direction="inbound", agent=agent,
                    disposition="answered", offered_at=offered_at)  # fmt: skip
        session.add(call)
        session.flush()
        return call.id


def test_a_bad_score_names_every_field_and_saves_nothing(seeded):
    sessions, _, _ = seeded
    call_id = add_call(sessions, 1, "1001", T0)
    typed = FULL_MARKS | {"greeting": "11", "accuracy": "-1", "attitude": "很好", "closing": ""}
    errors = refused(sessions, lambda s: scorecard.save_review(
        s, call_id, reviewer="lin", typed=typed, comment="x"))  # fmt: skip
    assert set(errors) == {"greeting", "accuracy", "attitude", "closing"}
    assert errors["greeting"] == "请填 0 到 10 的整数 / A whole number from 0 to 10"
    assert errors["accuracy"] == "请填 0 到 30 的整数 / A whole number from 0 to 30"
    errors = refused(sessions, lambda s: scorecard.save_review(
        s, call_id, reviewer="lin", typed=FULL_MARKS, comment="长" * 2001))  # fmt: skip
    assert list(errors) == ["comment"]
    errors = refused(sessions, lambda s: scorecard.save_review(
        s, call_id + 99, reviewer="lin", typed=FULL_MARKS, comment=None))  # fmt: skip
    assert list(errors) == ["call"]
    with sessions() as session:
        assert session.scalar(select(func.count(QualityReview.id))) == 0


def test_each_reviewer_has_one_scorecard_per_call_and_changes_only_their_own(seeded):
    sessions, _, _ = seeded
    call_id = add_call(sessions, 1, "1001", T0)
    typed = {"greeting": "8", "accuracy": "25", "attitude": "18", "resolution": "20",
             "closing": "9"}  # fmt: skip
    with sessions.begin() as session:
        first = scorecard.save_review(session, call_id, reviewer="lin", typed=typed,
                                      comment=" 开场略快 ", now=T0)  # fmt: skip
        assert first.total == 80
        scorecard.save_review(session, call_id, reviewer="root", typed=FULL_MARKS, comment="")
    later = T0 + timedelta(hours=1)
    with sessions.begin() as session:
        changed = scorecard.save_review(session, call_id, reviewer="lin",
                                        typed=typed | {"resolution": "30"}, comment="已解决",
                                        now=later)  # fmt: skip
        assert changed.id == first.id
    with sessions() as session:
        reviews = {r.reviewer: r for r in scorecard.reviews_of_call(session, call_id)}
    assert set(reviews) == {"lin", "root"}
    lin = reviews["lin"]
    assert (lin.total, lin.comment, lin.created_at, lin.updated_at) == (90, "已解决", T0, later)
    assert lin.scores == {"greeting": 8, "accuracy": 25, "attitude": 18, "resolution": 30,
                          "closing": 9}  # fmt: skip
    assert (reviews["root"].total, reviews["root"].comment) == (100, None)


def test_the_kpis_show_reviews_and_the_mean_score_per_agent_of_the_period(seeded):
    sessions, _, _ = seeded
    in_period = [add_call(sessions, 1, "1001", T0), add_call(sessions, 2, "1001", T0),
                 add_call(sessions, 3, "1002", T0), add_call(sessions, 4, None, T0)]  # fmt: skip
    before = add_call(sessions, 5, "1002", T0 - timedelta(days=10))
    totals = {"greeting": "10", "accuracy": "30", "attitude": "20", "resolution": "30"}
    with sessions.begin() as session:
        for call_id, closing in zip([*in_period, before], ["0", "5", "10", "7", "1"], strict=True):
            scorecard.save_review(session, call_id, reviewer="lin",
                                  typed=totals | {"closing": closing}, comment=None)  # fmt: skip
        scorecard.save_review(session, in_period[0], reviewer="root", typed=FULL_MARKS,
                              comment=None)  # fmt: skip
    with sessions() as session:
        rows = scorecard.scores_by_agent(session, T0 - timedelta(days=1), T0 + timedelta(days=1))
    assert [(r.agent, r.reviews, round(r.average, 2)) for r in rows] == [
        ("1001", 3, round((90 + 95 + 100) / 3, 2)),
        ("1002", 1, 100.0),
        ("—", 1, 97.0),
    ]
    headers, cells = kpis.quality_table(rows)
    assert headers == ["坐席 Agent", "质检次数 Reviews", "平均得分 Average score (/100)"]
    assert cells[0] == ["1001", 3, 95.0]
