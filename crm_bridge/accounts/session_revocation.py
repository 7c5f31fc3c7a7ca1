"""Ending a user's sessions at once, open pop sockets included.

A cookie stops working as soon as the user's ``session_generation`` changes
(``crm_bridge.accounts.auth`` reads the user row on every request). An open WebSocket was let in
before, so it is told: each pop socket watches the :class:`SessionRevocations` of its app for its
user, and the routes that end sessions (sign-out, a new password, deactivation, an admin's "sign
out everywhere") call
:meth:`SessionRevocations.end` after their commit. Sockets held by another instance of the
service notice on their next periodic check of the user row
(``crm_bridge.pops.page.SESSION_CHECK_SECONDS``).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager


class SessionRevocations:
    """Per user, the events of the sockets open in this process; made on the event loop."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._watchers: defaultdict[int, set[asyncio.Event]] = defaultdict(set)

    @contextmanager
    def watch(self, user_id: int) -> Iterator[asyncio.Event]:
        """An event set when the sessions of ``user_id`` end, for as long as the block runs."""
        event = asyncio.Event()
        self._watchers[user_id].add(event)
        try:
            yield event
        finally:
            watchers = self._watchers.get(user_id)
            if watchers is not None:
                watchers.discard(event)
                if not watchers:
                    del self._watchers[user_id]

    def end(self, user_id: int) -> None:
        """Close every socket of ``user_id``; safe from a worker thread (sync handlers)."""
        self._loop.call_soon_threadsafe(self._set, user_id)

    def _set(self, user_id: int) -> None:
        for event in self._watchers.get(user_id, ()):
            event.set()

    def watching(self, user_id: int) -> int:
        """How many sockets of ``user_id`` are open here (for tests and metrics)."""
        return len(self._watchers.get(user_id, ()))
