"""Routing by customer value at run time: the FastAGI server the dialplan asks before
``Queue()`` (``telephony/fastagi.py``), answered from the archive and the admin's rules.

The request is ``AGI(agi://host:port/route,<caller number>)`` from ``callbridge-route``; the
answer is one variable, ``CC_ROUTE_ANSWER`` (:meth:`~crm_bridge.routing.domain.Decision.answer`).
The rules are read from the database at start and after each admin change, not per call; the
caller's facts are a few indexed reads on the event loop (the pops read the same way, see
``crm_bridge/pops/hub.py``). A request for another script, or one that fails, gets no
variable: the dialplan then goes on to the plain queue, as when the bridge is away. The same
server answers the other scripts it is given (``scripts``: the satisfaction survey's
``survey``, ``crm_bridge/survey/service.py``).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime, tzinfo

from sqlalchemy.orm import Session, sessionmaker

from crm_bridge.customers.numbers import mask_phone
from crm_bridge.routing import store
from crm_bridge.routing.domain import ANSWER_VARIABLE, RoutingRules, decide
from telephony.fastagi import AgiRequest, FastAgiServer, Handler

log = logging.getLogger(__name__)

SCRIPT = "route"
ANSWER_DEADLINE = 0.5
"""Seconds a request may take on our side; the dialplan stops waiting at 0.5 s as well."""
ANSWER_TIMES_KEPT = 10_000


class Routing:
    """The routing rules in force and the FastAGI server that applies them."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        host: str,
        port: int,
        zone: tzinfo,
        region: str,
        outside_line_prefix: str | None,
        agent_ready: Callable[[str], bool],
        scripts: Mapping[str, Handler] | None = None,
    ) -> None:
        """``agent_ready(extension)``: whether that agent is logged in and ready now;
        ``scripts``: the handlers of the other FastAGI scripts this server answers."""
        self.sessions = sessions
        self._scripts = dict(scripts or {})
        self._zone, self._region, self._prefix = zone, region, outside_line_prefix
        self._agent_ready = agent_ready
        self.rules = RoutingRules()
        self.answer_seconds: deque[float] = deque(maxlen=ANSWER_TIMES_KEPT)
        """From each request's accept to its last reply, the latest ones (``bench/``, tests)."""
        self.server = FastAgiServer(self.answer, host, port, deadline=ANSWER_DEADLINE,
                                    on_answer=self.answer_seconds.append)  # fmt: skip

    async def start(self) -> None:
        self.reload_rules()
        with self.sessions() as session:
            store.warm_up(session, datetime.now(self._zone).date())
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()

    def reload_rules(self) -> None:
        with self.sessions() as session:
            self.rules = store.load_rules(session)

    async def answer(self, request: AgiRequest) -> Mapping[str, str]:
        if request.script in self._scripts:
            return await self._scripts[request.script](request)
        if request.script != SCRIPT or not request.arguments:
            log.warning("FastAGI request for an unknown script or without a number")
            return {}
        number = request.arguments[0]
        decision = decide(self._caller_facts(number), self.rules, self._agent_ready)
        log.info("routing %s: %s", mask_phone(number), decision.label or "plain queue")
        return {ANSWER_VARIABLE: decision.answer()}

    def _caller_facts(self, number: str) -> store.CallerFacts:
        with self.sessions() as session:
            return store.caller_facts(session, number, today=datetime.now(self._zone).date(),
                                      region=self._region,
                                      outside_line_prefix=self._prefix)  # fmt: skip
