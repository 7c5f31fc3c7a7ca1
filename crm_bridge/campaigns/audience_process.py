"""Campaign audiences selected in a process of their own.

Selecting today's audience over a million customers takes a tenth of a second or more, most of
it Python (SQLAlchemy making rows, the rules' sets). On a thread of the service that work holds
the interpreter lock the event loop needs for every step of a pop, so each pop in the meantime
waits its turn again and again (``bench/pop_latency.py``, pops beside selections). In a process
of its own the selection takes nothing from the service's process. One process, started on the
first selection and kept; the selections run in it one after another. A service that runs in a
daemonic process (which may start none) selects on the calling thread instead.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session, sessionmaker

from crm_bridge.campaigns.audience import Audience, is_marketing, select_campaign_audience
from crm_bridge.campaigns.rules import parse_rules
from crm_bridge.db.engine import make_engine, make_session_factory

_sessions: dict[str, sessionmaker[Session]] = {}
"""The selection process's database, by URL (opened on its first selection)."""


def _select(database_url: str, rules: list[dict[str, Any]], today: date, kind: str, zone: str,
            region: str) -> Audience:  # fmt: skip
    """In the selection process: the audience of a campaign of ``kind`` with ``rules`` today."""
    if database_url not in _sessions:
        _sessions[database_url] = make_session_factory(make_engine(database_url))
    with _sessions[database_url]() as session:
        return select_campaign_audience(
            session, parse_rules(rules), today, ZoneInfo(zone), region, is_marketing(kind)
        )


class AudienceProcess:
    """Selects campaign audiences for the service, in its own process."""

    def __init__(self, database_url: str, zone: ZoneInfo, region: str) -> None:
        self.database_url = database_url
        self.zone = zone
        self.region = region
        self._pool: ProcessPoolExecutor | None = None

    def select(self, rules: list[dict[str, Any]], today: date, kind: str) -> Audience:
        """The audience of a campaign of ``kind`` with ``rules`` on ``today``: blocks the
        calling (worker) thread only."""
        if multiprocessing.current_process().daemon:  # it may start no process: select here
            return _select(self.database_url, rules, today, kind, self.zone.key, self.region)
        if self._pool is None:
            context = multiprocessing.get_context("spawn")  # no copy of the service's threads
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=context)
        job = self._pool.submit(_select, self.database_url, rules, today, kind, self.zone.key,
                                self.region)  # fmt: skip
        return job.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
