"""The supervisors' search over the call log: every filter of the calls page, newest first,
paged by key (``offered_at``, ``id``) so that page 500 costs what page 1 does.

The filters the JSON API has are :class:`~crm_bridge.calls.call_log.CallFilter`'s and applied by the
call log's own query builder; this module adds the queue, the customer, flagged calls, a set
of calls (the outcome of a words-said search), and the total, which is counted only up to
:data:`COUNT_CAP` (an exact count of a year of calls costs a full index scan on every page,
and "10,000+" says as much to a person).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session

from crm_bridge.calls.call_log import CallFilter, with_call_filter
from crm_bridge.customers.search import customer_ids
from crm_bridge.db.models import Call, CallFlag, Customer

PAGE_SIZE = 50
COUNT_CAP = 10_000


@dataclass(frozen=True)
class Cursor:
    """Where a page ends: the next page holds the calls strictly older than this one."""

    offered_at: datetime
    call_id: int

    def encode(self) -> str:
        return f"{self.offered_at.isoformat()}_{self.call_id}"

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """ValueError when ``text`` is not a cursor this module made."""
        when, _, call_id = text.rpartition("_")
        offered_at = datetime.fromisoformat(when)
        if offered_at.tzinfo is None:
            raise ValueError("cursor without a zone")
        return cls(offered_at, int(call_id))


@dataclass(frozen=True)
class CallSearch:
    """Every filter of the calls page; empty fields filter nothing."""

    calls: CallFilter = field(default_factory=CallFilter)
    queue: str | None = None
    customer: str | None = None
    """A customer's name or card number: exactly, else the customers whose name or card
    number begins so."""
    number_digits: str | None = None
    """Digits the caller's or callee's number holds (the last four, a prefix): a number typed
    in part. A whole number goes into ``calls.number`` instead, matched exactly."""
    flagged: bool = False
    """Only calls in which a watch word was said."""
    call_ids: frozenset[int] | None = None
    """Only these calls (the outcome of a flag or a words-said search); None: any."""
    agents: frozenset[str] | None = None
    """Only calls taken by these extensions (the agents a name names); None: any."""


@dataclass(frozen=True)
class CallPage:
    calls: list[Call]
    total: int
    total_capped: bool
    next_cursor: Cursor | None


def search_calls(
    session: Session, search: CallSearch, *, after: Cursor | None = None, limit: int = PAGE_SIZE
) -> CallPage:
    """One page of matching calls, newest first, with the (capped) number of matches."""
    query = _searched(session, select(Call), search)
    if query is None:
        return CallPage([], 0, False, None)
    rows, cursor = newest_first(session, query, after=after, limit=limit)
    total, capped = _capped_count(session, search)
    return CallPage(rows, total, capped, cursor)


def newest_first(
    session: Session, query: Select, *, after: Cursor | None, limit: int
) -> tuple[list[Call], Cursor | None]:
    """One page of the calls ``query`` selects, newest first, from past ``after``; the cursor
    of the next page, if there is one (keyset paging on offered_at and id)."""
    if after is not None:
        query = query.where(
            or_(
                Call.offered_at < after.offered_at,
                and_(Call.offered_at == after.offered_at, Call.id < after.call_id),
            )
        )
    ordered = query.order_by(Call.offered_at.desc(), Call.id.desc()).limit(limit + 1)
    rows = list(session.scalars(ordered))
    more, rows = len(rows) > limit, rows[:limit]
    cursor = Cursor(rows[-1].offered_at, rows[-1].id) if more and rows[-1].offered_at else None
    return rows, cursor


def _searched(session: Session, query: Select, search: CallSearch) -> Select | None:
    """``query`` with every filter applied; None when a filter already rules out every call."""
    query = with_call_filter(query, search.calls).where(Call.offered_at.is_not(None))
    if search.queue:
        query = query.where(Call.queue == search.queue)
    if search.number_digits:
        digits = search.number_digits
        query = query.where(or_(Call.caller.contains(digits), Call.callee.contains(digits)))
    if search.customer:
        ids = customer_ids(session, search.customer)
        if not ids:
            return None
        query = query.where(Call.customer_id.in_(ids))
    if search.flagged:
        # driven by the (few) flags, not by walking every call to probe for one
        query = query.where(Call.id.in_(select(CallFlag.call_id)))
    if search.call_ids is not None:
        if not search.call_ids:
            return None
        query = query.where(Call.id.in_(sorted(search.call_ids)))
    if search.agents is not None:
        if not search.agents:
            return None
        query = query.where(Call.agent.in_(sorted(search.agents)))
    return query


def _capped_count(session: Session, search: CallSearch) -> tuple[int, bool]:
    matching = _searched(session, select(Call.id), search)
    if matching is None:
        return 0, False
    counted = session.scalar(
        select(func.count()).select_from(matching.limit(COUNT_CAP + 1).subquery())
    )
    return min(int(counted or 0), COUNT_CAP), int(counted or 0) > COUNT_CAP


def customer_names(session: Session, ids: set[int]) -> dict[int, tuple[str, str]]:
    """(name, card number) of these customers, by id."""
    if not ids:
        return {}
    rows = session.execute(
        select(Customer.id, Customer.name, Customer.card_no).where(Customer.id.in_(ids))
    )
    return {row.id: (row.name, row.card_no) for row in rows}
