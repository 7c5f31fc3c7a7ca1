"""The survey's answer to the dialplan, over the FastAGI server of routing
(``AGI(agi://host:port/survey,<queue>)`` from ``callbridge-survey-ask``): whether the queue has
the survey on, and the prompts to play. Read from the database at each request (one row per
queue and the three prompt rows), so a change on the pages applies to the next call."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from sqlalchemy.orm import Session, sessionmaker

from crm_bridge.survey import prompts
from crm_bridge.survey.domain import ANSWER_VARIABLE, answer
from telephony.fastagi import AgiRequest

log = logging.getLogger(__name__)


class SurveyAnswers:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    async def answer(self, request: AgiRequest) -> Mapping[str, str]:
        queue = request.arguments[0] if request.arguments else ""
        with self.sessions() as session:
            on = prompts.queue_has_survey(session, queue)
            files = prompts.files(session) if on else {}
        log.info("survey for queue %r: %s", queue, "on" if on else "off")
        return {ANSWER_VARIABLE: answer(on, files)}
