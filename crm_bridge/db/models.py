"""The customer archive and the call log, as SQLAlchemy 2 typed models.

Every time is stored in UTC in a timezone-aware column (:class:`UtcDateTime` refuses naive
datetimes and hands back aware ones, also on SQLite); money is ``Numeric(12, 2)``; phone
numbers are E.164 strings. The schema itself is created by the Alembic migrations in
``crm_bridge/migrations``, which a test keeps in step with these models.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    column,
    extract,
    false,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from telephony.call_events import Direction, Disposition, EndReason

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

GENDERS = ("M", "F")
PHONE_KINDS = ("mobile", "home", "work", "other")
VISIT_CHANNELS = ("phone", "in_person", "wechat", "sms", "email", "other")
COMPLAINT_STATUSES = ("open", "in_progress", "resolved", "closed")
COMPLAINT_CATEGORIES = ("product", "service", "delivery", "price", "other")
"""产品质量, 服务态度, 物流配送, 价格, 其他 (labels in ``crm_bridge.supervision.complaints``)."""
COMPLAINT_SEVERITIES = ("normal", "serious", "urgent")
"""一般, 严重, 紧急."""
RECORDING_STATUSES = ("ok", "missing", "empty", "unreadable")
ROLES = ("agent", "supervisor", "scheduler", "admin")
LANGUAGES = ("zh-CN", "en")
"""The languages a user may choose for the pages (``crm_bridge/web/language.py``)."""
WRAPUP_CODES = (
    "inquiry",
    "order",
    "after_sales",
    "complaint",
    "appointment",
    "return_visit",
    "other",
)
"""Wrap-up codes: 咨询, 下单, 售后, 投诉, 预约, 回访, 其他."""
MAX_NOTE_CHARS = 2000


def utcnow() -> datetime:
    return datetime.now(UTC)


def _one_of(column: str, values: tuple[str, ...] | type[Any]) -> str:
    """SQL for ``column IN (...)``; NULL passes, as CHECK constraints let it."""
    listed = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({listed})"


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp stored in UTC.

    Naive datetimes are refused on the way in (their zone is a guess); values come back aware
    in UTC on every database, including SQLite, which keeps no zone.
    """

    impl = DateTime
    cache_ok = True

    def __init__(self) -> None:
        super().__init__(timezone=True)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime: pass a timezone-aware datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


JsonList = JSON().with_variant(JSONB(), "postgresql")
"""A JSON list; JSONB on PostgreSQL so it can be indexed and queried."""


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


BIRTH_MONTH_DAY = (extract("month", column("birthday")), extract("day", column("birthday")))
"""The solar birthday's month and day, indexed: the birthday rule asks for them, and a query
matches an expression index only when it spells them the same way."""

TAGGED = {
    "sqlite_where": text("tags != '[]'"),
    "postgresql_where": text("tags <> '[]'::jsonb"),
}
"""The customers with a tag: a partial index of them serves the important-customers rule."""


class Customer(Base):
    """A customer of the center. ``card_no`` is the business key imports upsert by.

    ``birthday`` is a solar date. A customer who keeps a lunar birthday has
    ``lunar_birthday`` set and the lunar month and day in ``lunar_birth_month`` /
    ``lunar_birth_day`` (a lunar date has no fixed solar counterpart from year to year).
    """

    __tablename__ = "customers"
    __table_args__ = (
        CheckConstraint(_one_of("gender", GENDERS), name="gender"),
        CheckConstraint(
            "lunar_birth_month IS NULL OR lunar_birth_month BETWEEN 1 AND 12",
            name="lunar_birth_month",
        ),
        CheckConstraint(
            "lunar_birth_day IS NULL OR lunar_birth_day BETWEEN 1 AND 30", name="lunar_birth_day"
        ),
        CheckConstraint(
            "NOT lunar_birthday OR (lunar_birth_month IS NOT NULL AND lunar_birth_day IS NOT NULL)",
            name="lunar_birthday_complete",
        ),
        Index(None, "lunar_birth_month", "lunar_birth_day"),
        Index("ix_customers_birth_month_day", *BIRTH_MONTH_DAY),
        Index("ix_customers_tagged", "tags", **TAGGED),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    card_no: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    gender: Mapped[str | None] = mapped_column(String(1))
    birthday: Mapped[date | None] = mapped_column(Date, index=True)
    """Indexed: the selection of a marketing campaign finds the minors by it."""
    lunar_birthday: Mapped[bool] = mapped_column(Boolean, default=False)
    lunar_birth_month: Mapped[int | None] = mapped_column(SmallInteger)
    lunar_birth_day: Mapped[int | None] = mapped_column(SmallInteger)
    employer: Mapped[str | None] = mapped_column(String(128))
    department: Mapped[str | None] = mapped_column(String(64))
    vip_level: Mapped[str | None] = mapped_column(String(16))
    tags: Mapped[list[str]] = mapped_column(JsonList, default=list)
    consent_to_calls: Mapped[bool] = mapped_column(Boolean, default=True)
    timezone: Mapped[str | None] = mapped_column(String(64))
    """The customer's own zone for calling hours; None means the center's."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)

    phones: Mapped[list[CustomerPhone]] = relationship(
        back_populates="customer",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="CustomerPhone.id",
    )
    purchases: Mapped[list[Purchase]] = relationship(
        back_populates="customer", cascade="all, delete-orphan", passive_deletes=True
    )
    visits: Mapped[list[VisitRecord]] = relationship(
        back_populates="customer", cascade="all, delete-orphan", passive_deletes=True
    )
    complaints: Mapped[list[Complaint]] = relationship(
        back_populates="customer", cascade="all, delete-orphan", passive_deletes=True
    )


class CustomerPhone(Base):
    """One number of a customer. A family phone may belong to several customers."""

    __tablename__ = "customer_phones"
    __table_args__ = (
        UniqueConstraint("customer_id", "number_e164"),
        CheckConstraint(_one_of("kind", PHONE_KINDS), name="kind"),
        Index(None, "number_e164", "customer_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    number_e164: Mapped[str] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(8), default="mobile")

    customer: Mapped[Customer] = relationship(back_populates="phones")


class Purchase(Base):
    __tablename__ = "purchases"
    __table_args__ = (
        Index(None, "customer_id", "purchased_on"),
        Index(None, "department", "purchased_on"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    purchased_on: Mapped[date] = mapped_column(Date)
    department: Mapped[str | None] = mapped_column(String(64))
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    items: Mapped[str | None] = mapped_column(Text)

    customer: Mapped[Customer] = relationship(back_populates="purchases")


class DepartmentSpend(Base):
    """What a customer spent in one department over one half month, kept by the database.

    Triggers on ``purchases`` (migration ``0008_campaign_select_precompute``) keep it in step
    with every purchase written, changed or deleted; nothing else writes it. ``half_month`` is
    the half month's first day (the 1st or the 16th), ``cents`` the exact sum of the amounts.
    """

    __tablename__ = "department_spend"
    __table_args__ = (Index(None, "half_month", "department", "cents"),)

    half_month: Mapped[date] = mapped_column(Date, primary_key=True)
    department: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    cents: Mapped[int] = mapped_column(BigInteger)
    purchases: Mapped[int] = mapped_column(Integer)


class Call(Base):
    """One call (every leg sharing one Asterisk Linkedid); logged once, keyed by ``linkedid``."""

    __tablename__ = "calls"
    __table_args__ = (
        CheckConstraint(_one_of("direction", Direction), name="direction"),
        CheckConstraint(_one_of("disposition", Disposition), name="disposition"),
        CheckConstraint(_one_of("end_reason", EndReason), name="end_reason"),
        CheckConstraint("survey_score BETWEEN 1 AND 5", name="survey_score"),
        Index(None, "customer_id", "offered_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    linkedid: Mapped[str] = mapped_column(String(64), unique=True)
    server: Mapped[str] = mapped_column(String(64))
    """The name of the AMI server the call was seen on."""
    direction: Mapped[str | None] = mapped_column(String(8))
    caller: Mapped[str | None] = mapped_column(String(64), index=True)
    caller_name: Mapped[str | None] = mapped_column(String(128))
    callee: Mapped[str | None] = mapped_column(String(64))
    queue: Mapped[str | None] = mapped_column(String(64))
    agent: Mapped[str | None] = mapped_column(String(64), index=True)
    agent_interface: Mapped[str | None] = mapped_column(String(128))
    agents_rung: Mapped[list[str]] = mapped_column(
        JsonList, default=list, server_default=text("'[]'")
    )
    """The agents the call rang, in order (whether or not they answered): an agent's missed
    calls are those that rang them and were not answered by them."""
    disposition: Mapped[str | None] = mapped_column(String(16), index=True)
    hangup_cause: Mapped[int | None] = mapped_column(Integer)
    hangup_cause_text: Mapped[str | None] = mapped_column(String(64))
    offered_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), index=True)
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), index=True)
    wait_seconds: Mapped[float | None] = mapped_column(Float)
    talk_seconds: Mapped[float | None] = mapped_column(Float)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    campaign: Mapped[str | None] = mapped_column(String(64))
    originate_action_id: Mapped[str | None] = mapped_column(String(64))
    transferred_to: Mapped[str | None] = mapped_column(String(64))
    end_reason: Mapped[str | None] = mapped_column(String(32))
    survey_score: Mapped[int | None] = mapped_column(Integer)
    """The satisfaction survey's score, 1-5, pressed on the customer's own channel
    (``crm_bridge/survey/``); None: no survey, or no key pressed."""
    reconciled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """Logged from Asterisk's own records (``crm_bridge/calls/cdr_reconcile.py``): the call ended
    while callbridge was not watching."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)

    customer: Mapped[Customer | None] = relationship()
    recordings: Mapped[list[Recording]] = relationship(
        back_populates="call", cascade="all, delete-orphan", passive_deletes=True
    )


class VisitRecord(Base):
    """A return visit (回访) or any contact with its opinions and suggestions."""

    __tablename__ = "visit_records"
    __table_args__ = (Index(None, "customer_id", "visited_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    visited_at: Mapped[datetime] = mapped_column(UtcDateTime())
    place: Mapped[str | None] = mapped_column(String(128))
    channel: Mapped[str] = mapped_column(String(16), default="phone")
    """One of VISIT_CHANNELS; not constrained in the schema so a center can add its own."""
    opinions: Mapped[str | None] = mapped_column(Text)
    suggestions: Mapped[str | None] = mapped_column(Text)
    visited_by: Mapped[str | None] = mapped_column(String(64))
    call_id: Mapped[int | None] = mapped_column(
        ForeignKey("calls.id", ondelete="SET NULL"), index=True
    )

    customer: Mapped[Customer] = relationship(back_populates="visits")
    call: Mapped[Call | None] = relationship()


class Complaint(Base):
    __tablename__ = "complaints"
    __table_args__ = (
        CheckConstraint(_one_of("status", COMPLAINT_STATUSES), name="status"),
        CheckConstraint(_one_of("category", COMPLAINT_CATEGORIES), name="category"),
        CheckConstraint(_one_of("severity", COMPLAINT_SEVERITIES), name="severity"),
        Index(None, "customer_id", "received_at"),
        Index(None, "status", "received_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())
    content: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="open")
    category: Mapped[str | None] = mapped_column(String(16))
    """None for a complaint taken before categories (or through the API without one)."""
    severity: Mapped[str] = mapped_column(String(16), default="normal", server_default="normal")
    handler: Mapped[str | None] = mapped_column(String(64))
    """The user name of the user it is assigned to (picked from the active users)."""
    assigned_by: Mapped[str | None] = mapped_column(String(64))
    assigned_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    resolution: Mapped[str | None] = mapped_column(Text)
    escalated_to: Mapped[str | None] = mapped_column(String(64))
    """The user name of the user it was last escalated to."""
    escalated_by: Mapped[str | None] = mapped_column(String(64))
    escalated_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    call_id: Mapped[int | None] = mapped_column(
        ForeignKey("calls.id", ondelete="SET NULL"), index=True
    )
    linkedid: Mapped[str | None] = mapped_column(String(64), index=True)
    """The call it was taken on; ``call_id`` follows once that call is logged (when it ends)."""

    customer: Mapped[Customer] = relationship(back_populates="complaints")
    call: Mapped[Call | None] = relationship()


class CallNote(Base):
    """What the agent records on a call while it rings or talks: the customer they confirmed
    (chosen among a family phone's customers, or created for an unknown caller), the wrap-up
    code and a note.

    Keyed by ``linkedid`` and not a foreign key to ``calls``: the call row is written only
    when the call ends. The call log takes ``customer_id`` from here over the number lookup.
    """

    __tablename__ = "call_notes"
    __table_args__ = (
        CheckConstraint(_one_of("wrapup_code", WRAPUP_CODES), name="wrapup_code"),
        CheckConstraint(f"note IS NULL OR length(note) <= {MAX_NOTE_CHARS}", name="note_length"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    linkedid: Mapped[str] = mapped_column(String(64), unique=True)
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), index=True
    )
    wrapup_code: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)
    agent_username: Mapped[str] = mapped_column(String(64))
    """Who saved last."""
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)


class Recording(Base):
    """A recording file of a call, by its path relative to the recordings root.

    A call usually has one; a transfer can add another, so the key is (call, path).
    ``status`` is None until the file has been checked after the call.
    """

    __tablename__ = "recordings"
    __table_args__ = (
        UniqueConstraint("call_id", "path"),
        CheckConstraint(_one_of("status", RECORDING_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(String(512))
    status: Mapped[str | None] = mapped_column(String(10))
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    agent_path: Mapped[str | None] = mapped_column(String(512))
    """The agent's side alone (``<uniqueid>-out.wav``), relative to the root, when it exists."""
    customer_path: Mapped[str | None] = mapped_column(String(512))
    """The customer's side alone (``<uniqueid>-in.wav``), relative to the root, when it exists."""

    call: Mapped[Call] = relationship(back_populates="recordings")


class User(Base):
    """A person who signs in. ``extensions`` are the phones whose calls are theirs."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(_one_of("role", ROLES), name="role"),
        CheckConstraint(_one_of("language", LANGUAGES), name="language"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    extensions: Mapped[list[str]] = mapped_column(JsonList, default=list)
    supervised_queues: Mapped[list[str]] = mapped_column(
        JsonList, default=list, server_default=text("'[]'")
    )
    """The queues whose calls a supervisor may listen to, whisper into or barge into
    (``crm_bridge.supervise``); set by an admin on the users page."""
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    session_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Every session cookie carries the generation it was issued under and must match it;
    adding one ends every session of the user (``crm_bridge.accounts.users.end_sessions``)."""
    display_name: Mapped[str | None] = mapped_column(String(64))
    """The name the pages show for the user (an agent's name beside their extension); set by
    an admin. None: the user name."""
    language: Mapped[str | None] = mapped_column(String(8))
    """The language the user chose for the pages; None: the browser's."""


class CallbackClaim(Base):
    """A missed or abandoned inbound call that an agent took to call back (``/me/callbacks``).

    One row per call, so of two agents taking the same call at once one insert wins and the
    other reads who has it. ``called_back_at`` is set when the taker places the call back.
    """

    __tablename__ = "callback_claims"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), unique=True)
    taken_by: Mapped[str] = mapped_column(String(64))
    taken_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    called_back_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


def find_customers_by_phone(session: Session, e164: str) -> list[Customer]:
    """Every customer with this E.164 number, oldest first (a family phone gives several)."""
    statement = (
        select(Customer)
        .join(CustomerPhone, CustomerPhone.customer_id == Customer.id)
        .where(CustomerPhone.number_e164 == e164)
        .order_by(Customer.id)
        .distinct()
    )
    return list(session.scalars(statement))


# ------------------------------------------------------------------------------- supervision


COMPLAINT_ACTIONS = ("assign", "escalate", "resolve")
JsonObject = JSON().with_variant(JSONB(), "postgresql")


class AuditEntry(Base):
    """One playback, download, export or other access to personal data (append-only: the
    database refuses UPDATE and DELETE on this table with a trigger)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index(None, "at"),
        Index(None, "username", "at"),
        Index(None, "action", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    username: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(32))
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str | None] = mapped_column(String(64))
    client: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any] | None] = mapped_column(JsonObject)


class ComplaintEvent(Base):
    """The history of a complaint: who assigned, escalated or resolved it, and when."""

    __tablename__ = "complaint_events"
    __table_args__ = (
        CheckConstraint(_one_of("action", COMPLAINT_ACTIONS), name="action"),
        Index(None, "complaint_id", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    complaint_id: Mapped[int] = mapped_column(ForeignKey("complaints.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    target: Mapped[str | None] = mapped_column(String(64))
    """Who it was assigned or escalated to."""
    comment: Mapped[str | None] = mapped_column(Text)
    follow_up_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    """On a resolve: when the customer is to be called back."""


class QualityReview(Base):
    """A supervisor's quality-review scorecard (质检评分表) of one call: one per call and
    reviewer, edited only by that reviewer (``crm_bridge/quality/scorecard.py``)."""

    __tablename__ = "quality_reviews"
    __table_args__ = (
        UniqueConstraint("call_id", "reviewer"),
        CheckConstraint("total >= 0", name="total"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    reviewer: Mapped[str] = mapped_column(String(64), index=True)
    scores: Mapped[dict[str, int]] = mapped_column(JsonObject)
    """Criterion key to its score, every criterion of the scorecard."""
    total: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)


class SupervisionSetting(Base):
    """A setting supervisors and admins change at run time (service-level threshold, FCR
    window, retention days), one JSON value per key."""

    __tablename__ = "supervision_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_by: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)


class RecordingDeletion(Base):
    """A recording whose file the retention job deleted: the call keeps that it existed."""

    __tablename__ = "recording_deletions"

    recording_id: Mapped[int] = mapped_column(
        ForeignKey("recordings.id", ondelete="CASCADE"), primary_key=True
    )
    deleted_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    reason: Mapped[str] = mapped_column(String(32))


class WatchWord(Base):
    """A word the supervisors watch for in transcripts (投诉, 退款, 律师, 12315 …)."""

    __tablename__ = "watch_words"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    word: Mapped[str] = mapped_column(String(32), unique=True)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class CallFlag(Base):
    """A watch word said in a call, at a moment (the start of the transcript segment)."""

    __tablename__ = "call_flags"
    __table_args__ = (
        UniqueConstraint("segment_id", "word"),
        Index(None, "call_id", "at_seconds"),
        Index(None, "flagged_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    segment_id: Mapped[int] = mapped_column(
        ForeignKey("transcript_segments.id", ondelete="CASCADE")
    )
    word: Mapped[str] = mapped_column(String(32))
    at_seconds: Mapped[float] = mapped_column(Float)
    flagged_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


# Indexes of the supervisors' calls page: a number is matched as caller or callee, and a
# queue, an agent, an outcome or a direction is listed newest first without a sort.
Index(None, Call.callee)
Index(None, Call.queue, Call.offered_at)
Index(None, Call.agent, Call.offered_at)
Index(None, Call.disposition, Call.offered_at)
Index(None, Call.direction, Call.offered_at)
Index(None, Customer.name)


# --- outbound campaigns (crm_bridge/campaigns/rules.py, crm_bridge/campaigns/store/) ---------

CAMPAIGN_KINDS = ("return_visit", "birthday", "festival", "complaint_followup", "promotion")
CAMPAIGN_MODES = ("message", "agent", "preview")
CAMPAIGN_STATUSES = ("draft", "running", "paused", "stopped", "done")
TARGET_STATES = ("pending", "dialing", "done", "failed", "skipped")
DIAL_OUTCOMES = (
    "answered", "busy", "no_answer", "congestion", "failed", "machine", "lost", "unknown"
)  # fmt: skip
OPT_OUT_SOURCES = ("admin", "call")


class Campaign(Base):
    """An outbound campaign: who (``rules``), when (``policy``), how (``mode``, greeting)."""

    __tablename__ = "campaigns"
    __table_args__ = (
        CheckConstraint(_one_of("kind", CAMPAIGN_KINDS), name="kind"),
        CheckConstraint(_one_of("mode", CAMPAIGN_MODES), name="mode"),
        CheckConstraint(_one_of("status", CAMPAIGN_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(24))
    mode: Mapped[str] = mapped_column(String(16))
    rules: Mapped[list[dict[str, Any]]] = mapped_column(JsonList, default=list)
    policy: Mapped[dict[str, Any]] = mapped_column(JsonList, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="draft", index=True)
    greeting_file: Mapped[str | None] = mapped_column(String(128))
    """A generated file name inside ``<data_dir>/greetings``."""
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class CampaignTarget(Base):
    """One customer of a campaign, with where the campaign stands with them."""

    __tablename__ = "campaign_targets"
    __table_args__ = (
        UniqueConstraint("campaign_id", "customer_id"),
        CheckConstraint(_one_of("state", TARGET_STATES), name="state"),
        CheckConstraint(_one_of("last_outcome", DIAL_OUTCOMES), name="last_outcome"),
        Index(None, "campaign_id", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_outcome: Mapped[str | None] = mapped_column(String(16))
    skip_reason: Mapped[str | None] = mapped_column(String(32))
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)


class DialAttempt(Base):
    """One Originate. Inserted and committed before the Originate is sent: the unique key
    (campaign, customer, attempt no.) is what keeps two ticks or a restart from dialling twice."""

    __tablename__ = "dial_attempts"
    __table_args__ = (
        UniqueConstraint("campaign_id", "customer_id", "attempt_no"),
        CheckConstraint(_one_of("outcome", DIAL_OUTCOMES), name="outcome"),
        Index(None, "campaign_id", "outcome"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    attempt_no: Mapped[int] = mapped_column(Integer)
    number_e164: Mapped[str] = mapped_column(String(20))
    action_id: Mapped[str] = mapped_column(String(64), unique=True)
    channel_id: Mapped[str] = mapped_column(String(64), unique=True)
    """The ChannelId given to the Originate: the Uniqueid and Linkedid of the call."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    outcome: Mapped[str | None] = mapped_column(String(16))
    reason_code: Mapped[str | None] = mapped_column(String(8))
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    placed_by: Mapped[str | None] = mapped_column(String(64), index=True)
    """The agent who placed a preview call (None: the runner dialled it)."""


class CampaignDayClaim(Base):
    """At most one campaign calls a customer on a day (the customer's local day)."""

    __tablename__ = "campaign_day_claims"
    __table_args__ = (UniqueConstraint("customer_id", "local_day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    local_day: Mapped[date] = mapped_column(Date)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), index=True
    )
    claimed_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class DoNotCall(Base):
    """A number no campaign may call (E.164), kept by the admin."""

    __tablename__ = "do_not_call"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number_e164: Mapped[str] = mapped_column(String(20), unique=True)
    note: Mapped[str | None] = mapped_column(String(256))
    added_by: Mapped[str | None] = mapped_column(String(64))
    added_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class CustomerOptOut(Base):
    """A customer who asked not to be called by campaigns (told the admin, or said so on a call)."""

    __tablename__ = "customer_opt_outs"
    __table_args__ = (CheckConstraint(_one_of("source", OPT_OUT_SOURCES), name="source"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), unique=True
    )
    source: Mapped[str] = mapped_column(String(8), default="admin")
    note: Mapped[str | None] = mapped_column(String(256))
    recorded_by: Mapped[str | None] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class GuardianConsent(Base):
    """A guardian's consent to marketing calls for a customer under 18 or tagged as a child
    (:mod:`crm_bridge.campaigns.audience`), recorded by an admin."""

    __tablename__ = "guardian_consents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), unique=True
    )
    guardian: Mapped[str] = mapped_column(String(64))
    """Who gave it (the guardian's name as told)."""
    note: Mapped[str | None] = mapped_column(String(256))
    recorded_by: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


# --- recordings' transcription (crm_bridge/speech/jobs.py, crm_bridge/speech/transcripts.py) --

JOB_STATUSES = ("queued", "running", "done", "failed")
SPEAKERS = ("agent", "customer", "mixed")
SEARCH_INDEX_TABLES = frozenset(
    {
        "transcript_fts",
        "transcript_fts_config",
        "transcript_fts_data",
        "transcript_fts_docsize",
        "transcript_fts_idx",
    }
)
"""SQLite's FTS5 table over ``transcript_segments.text`` and the shadow tables FTS5 keeps."""
SEARCH_INDEXES = frozenset({"ix_transcript_segments_text_trgm"})
"""PostgreSQL's pg_trgm GIN index over ``transcript_segments.text``."""


def in_model_schema(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic ``include_name`` hook: False for the full-text search structures.

    Migration 0003 builds them per backend with raw SQL (an FTS5 virtual table and its
    triggers on SQLite, a trigram GIN index on PostgreSQL); no model can declare them, so
    autogenerate and the model/schema comparison leave them out by name.
    """
    if type_ == "table":
        return name not in SEARCH_INDEX_TABLES
    if type_ == "index":
        return name not in SEARCH_INDEXES
    return True


class TranscriptionJob(Base):
    """One recording to transcribe; a worker holds it under a lease while it works.

    ``attempts`` counts claims (a worker killed mid-job used one up too); a job that is due is
    ``queued`` with ``not_before`` passed, or ``running`` with its lease expired.
    """

    __tablename__ = "transcription_jobs"
    __table_args__ = (
        CheckConstraint(_one_of("status", JOB_STATUSES), name="status"),
        Index(None, "status", "not_before"),
        Index(None, "status", "lease_expires_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recording_id: Mapped[int] = mapped_column(
        ForeignKey("recordings.id", ondelete="CASCADE"), unique=True
    )
    status: Mapped[str] = mapped_column(String(8), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    worker: Mapped[str | None] = mapped_column(String(128))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    recording: Mapped[Recording] = relationship()


class TranscriptSegment(Base):
    """One stretch of speech of one side of a recording; ``words`` is a JSON list of
    ``{"text", "start", "end", "confidence"}``. ``call_id`` is repeated from the recording so
    a search hit names its call without a join."""

    __tablename__ = "transcript_segments"
    __table_args__ = (
        CheckConstraint(_one_of("speaker", SPEAKERS), name="speaker"),
        Index(None, "recording_id", "start_seconds"),
        Index(None, "call_id", "start_seconds"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id", ondelete="CASCADE"))
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    speaker: Mapped[str] = mapped_column(String(8))
    start_seconds: Mapped[float] = mapped_column(Float)
    end_seconds: Mapped[float] = mapped_column(Float)
    text: Mapped[str] = mapped_column(Text)
    words: Mapped[list[dict[str, Any]]] = mapped_column(JsonList, default=list)


# --- live speech (crm_bridge/live_speech/) ---------------------------------------------------


class LiveSpeechAlert(Base):
    """A watch word heard live, kept with its call (by Linkedid: the call's row is written
    when the call ends) at the moment it was said."""

    __tablename__ = "live_speech_alerts"
    __table_args__ = (Index(None, "linkedid", "said_at"), Index(None, "said_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    server: Mapped[str] = mapped_column(String(64))
    linkedid: Mapped[str] = mapped_column(String(64))
    side: Mapped[str] = mapped_column(String(16))
    agent: Mapped[str | None] = mapped_column(String(64))
    word: Mapped[str] = mapped_column(String(32))
    said_at: Mapped[datetime] = mapped_column(UtcDateTime())
    """UTC wall time of the word's start."""
    call_second: Mapped[float] = mapped_column(Float)
    """Seconds from the call's answer to the word's start."""
    text: Mapped[str] = mapped_column(Text)
    """The utterance it was said in."""
    alerted_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


# --- agent states (crm_bridge/agent_states/) -------------------------------------------------


class AgentStateChange(Base):
    """One change of an agent's state (state history): the state entered, at ``at``. The time
    in a state runs until the agent's next change; KPIs add these spans up."""

    __tablename__ = "agent_state_changes"
    __table_args__ = (Index(None, "agent", "at"), Index(None, "at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent: Mapped[str] = mapped_column(String(64))
    """The agent's extension (``1001``), as in ``calls.agent``."""
    state: Mapped[str] = mapped_column(String(16))
    """logged_out, ready, on_call, after_call_work or paused."""
    reason: Mapped[str] = mapped_column(String(64), default="")
    queues: Mapped[list[str]] = mapped_column(JsonList, default=list)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class PauseReason(Base):
    """A reason an agent may pause for, kept by the admin (小休, 用餐, 培训, 会议 …)."""

    __tablename__ = "pause_reasons"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(String(32), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class QueueSetting(Base):
    """Per queue: the after-call work time, the penalty agents log in with, the service
    level's target (answered within so many seconds) and the wallboard's thresholds."""

    __tablename__ = "queue_settings"

    queue: Mapped[str] = mapped_column(String(64), primary_key=True)
    after_call_seconds: Mapped[int] = mapped_column(Integer, default=0)
    penalty: Mapped[int] = mapped_column(Integer, default=0)
    service_level_seconds: Mapped[int] = mapped_column(Integer, default=20)
    waiting_alert: Mapped[int] = mapped_column(Integer, default=3)
    """Calls waiting at or above which the wallboard colours the queue."""
    longest_wait_alert_seconds: Mapped[int] = mapped_column(Integer, default=60)
    survey: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """Whether the queue's customers hear the satisfaction survey once the agent is done."""


class RoutingSettings(Base):
    """The admin's routing rules (``crm_bridge/routing/``), one row (id 1): the queue priority
    of high-value customers, how long an account manager rings first, and the queue of the
    customers with an open complaint."""

    __tablename__ = "routing_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    high_value_cents: Mapped[int | None] = mapped_column(BigInteger)
    """Spend over the last 12 months from which a customer is high-value; None: no such rule."""
    high_value_priority: Mapped[int] = mapped_column(Integer, default=5)
    manager_ring_seconds: Mapped[int] = mapped_column(Integer, default=15)
    complaint_queue: Mapped[str | None] = mapped_column(String(64))
    """Where a customer with an open complaint goes (the senior agents); None: the usual queue."""


class RoutingTier(Base):
    """A VIP level (``customers.vip_level``) and the queue priority (``QUEUE_PRIO``) it gets."""

    __tablename__ = "routing_tiers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tier: Mapped[str] = mapped_column(String(16), unique=True)
    priority: Mapped[int] = mapped_column(Integer)


class AccountManager(Base):
    """The agent (extension) a customer's calls ring first, while that agent is ready."""

    __tablename__ = "account_managers"

    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    extension: Mapped[str] = mapped_column(String(16))


class SurveyPrompt(Base):
    """An uploaded prompt of the satisfaction survey (``crm_bridge/survey/``), one per kind
    (ask, invalid, thanks), stored in the greetings folder under a generated name; a kind with
    no row plays the default prompt."""

    __tablename__ = "survey_prompts"
    __table_args__ = (CheckConstraint("kind IN ('ask', 'invalid', 'thanks')", name="kind"),)

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    file_name: Mapped[str] = mapped_column(String(64))
    seconds: Mapped[float] = mapped_column(Float)
    uploaded_by: Mapped[str | None] = mapped_column(String(64))
    uploaded_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
