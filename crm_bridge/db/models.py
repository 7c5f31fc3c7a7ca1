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
    select,
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
RECORDING_STATUSES = ("ok", "missing", "empty")
ROLES = ("agent", "supervisor", "scheduler", "admin")
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
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    card_no: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    gender: Mapped[str | None] = mapped_column(String(1))
    birthday: Mapped[date | None] = mapped_column(Date)
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


class Call(Base):
    """One call (every leg sharing one Asterisk Linkedid); logged once, keyed by ``linkedid``."""

    __tablename__ = "calls"
    __table_args__ = (
        CheckConstraint(_one_of("direction", Direction), name="direction"),
        CheckConstraint(_one_of("disposition", Disposition), name="disposition"),
        CheckConstraint(_one_of("end_reason", EndReason), name="end_reason"),
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
        Index(None, "customer_id", "received_at"),
        Index(None, "status", "received_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())
    content: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="open")
    handler: Mapped[str | None] = mapped_column(String(64))
    resolution: Mapped[str | None] = mapped_column(Text)
    escalated_to: Mapped[str | None] = mapped_column(String(64))
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
    status: Mapped[str | None] = mapped_column(String(8))
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)

    call: Mapped[Call] = relationship(back_populates="recordings")


class User(Base):
    """A person who signs in. ``extensions`` are the phones whose calls are theirs."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_one_of("role", ROLES), name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    extensions: Mapped[list[str]] = mapped_column(JsonList, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


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
