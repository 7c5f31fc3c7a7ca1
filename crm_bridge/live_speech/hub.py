"""Who hears the live speech: every supervisor page, and the agent of the call on their own
pop page (the agent's WebSocket of :mod:`crm_bridge.pops.hub`; an agent never gets another
agent's call)."""

from __future__ import annotations

import time
from typing import Any

from crm_bridge.pops.hub import PopConnection, PopHub, agents_of

Frame = dict[str, Any]


class LiveSpeechHub:
    def __init__(self, pops: PopHub | None) -> None:
        self._pops = pops
        self._supervisors: set[PopConnection] = set()

    def connect_supervisor(self, username: str) -> PopConnection:
        connection = PopConnection(username, (), agents_of(()))
        self._supervisors.add(connection)
        return connection

    def disconnect(self, connection: PopConnection) -> None:
        self._supervisors.discard(connection)

    @property
    def supervisors(self) -> int:
        return len(self._supervisors)

    def publish(self, frame: Frame, agent: str | None, *, to_agent: bool = True) -> None:
        """To every supervisor page and, with ``to_agent``, the call's agent's pages."""
        frame = {**frame, "sent_at": time.time()}
        for connection in list(self._supervisors):
            connection.push(frame)
        if to_agent and agent is not None and self._pops is not None:
            self._pops.push_to_agent(agent, frame)
