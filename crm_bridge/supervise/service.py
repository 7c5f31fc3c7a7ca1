"""Listen, whisper, barge: a supervisor's own phone rung into ChanSpy on an agent's call.

How (``dialplans/extensions_callbridge.conf``, context ``callbridge-supervise``): one AMI
``Originate`` of the supervisor's phone (``PJSIP/<extension>``) into that context, ``Exten``
``listen``, ``whisper`` or ``barge``, with the variable ``CC_SPY_CHANNEL`` = the answering
agent's channel. When the supervisor picks up, the dialplan runs ChanSpy with the options of
that extension (``qES``, ``qwES``, ``qBES``), so it ends with the call. The bridge names the
mode, never the options. Every value goes through the AMI layer's sanitiser; the agent's
channel comes from Asterisk's own events and must look like a channel name
(:data:`~crm_bridge.live_speech.channels.CHANNEL_NAME`), the extension passed the user rules.

The sessions going on are kept here, on the event loop, one per call and one per supervisor's
phone: a session is reserved before its Originate is sent (so two requests cannot both pass),
and ends when its channel hangs up (the supervisor hung up, or ChanSpy ended with the call),
when its Originate fails, or when a resync no longer finds its channel. Its channels (ChannelId
``cbsup-…``) are hidden from the call trackers: a supervisor listening in is no call.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from crm_bridge.calls.bridge import BridgeService
from crm_bridge.calls.dialing import interface_of
from crm_bridge.live_speech.channels import CHANNEL_NAME, ChannelIndex
from crm_bridge.supervise.domain import (
    MODES,
    Busy,
    Supervisor,
    Target,
    decide,
)
from telephony.ami_connection import AmiNotConnected
from telephony.call_events import CallRecord
from telephony.dialer import OriginateRequest, send_originate

log = logging.getLogger(__name__)

SUPERVISE_ID_PREFIX = "cbsup-"
"""The ChannelId (Uniqueid, hence Linkedid) of every supervisor's phone the bridge rings."""
CONTEXT = "callbridge-supervise"
RING_MS = 30_000
"""How long the supervisor's phone rings before the Originate gives up."""
CALLER_NAMES = {"listen": "Listen", "whisper": "Whisper", "barge": "Barge"}
"""What the supervisor's phone shows, with the agent's extension (ASCII: any phone shows it)."""


def is_supervise_event(event: Mapping[str, str]) -> bool:
    """An event (or snapshot) of a supervisor's phone the bridge rang to listen in."""
    return event.get("Uniqueid", "").startswith(SUPERVISE_ID_PREFIX) or event.get(
        "Linkedid", ""
    ).startswith(SUPERVISE_ID_PREFIX)


@dataclass
class SupervisionSession:
    channel_id: str
    mode: str
    username: str
    target: Target
    started_at: float
    state: str = "ringing"
    """``ringing`` (the supervisor's phone), then ``on`` once it is picked up."""

    def busy(self) -> Busy:
        return Busy(self.target.linkedid, self.username, self.target.extension, self.mode)

    def summary(self) -> dict[str, Any]:
        return {"id": self.channel_id, "mode": self.mode, "mode_label": MODES[self.mode],
                "supervisor": self.username, "extension": self.target.extension,
                "linkedid": self.target.linkedid, "queue": self.target.queue,
                "agent": self.target.agent, "state": self.state,
                "started_at": self.started_at}  # fmt: skip


class Supervision:
    """Create on the event loop before the bridge starts (it hears the first resync)."""

    def __init__(self, bridge: BridgeService, agent_contexts: Iterable[str]) -> None:
        self._bridge = bridge
        self._server = bridge.links[0].config.name
        """Calls are placed through the main server only, so only its calls are listened to."""
        self._index = ChannelIndex(agent_contexts)
        self.sessions: dict[str, SupervisionSession] = {}
        bridge.listen_to_channels(self, is_supervise_event)

    # ------------------------------------------------------------ what Asterisk says

    def on_ami_event(self, server: str, event: dict[str, str]) -> None:
        if server != self._server:
            return
        self._index.feed(event)
        # A failed OriginateResponse may name no channel; its ActionID is the session's id too.
        session = self.sessions.get(event.get("Uniqueid", "")) or self.sessions.get(
            event.get("ActionID", "")
        )
        if session is None:
            return
        kind = event.get("Event")
        if kind == "Hangup" or (kind == "OriginateResponse" and event.get("Response") != "Success"):
            self._end(session, kind)
        elif kind == "Newstate" and event.get("ChannelState") == "6":
            session.state = "on"

    def on_resync(self, server: str, channels: list[dict[str, str]]) -> None:
        if server != self._server:
            return
        self._index.replace(channels)
        alive = {channel.get("Uniqueid", "") for channel in channels}
        for session in [s for s in self.sessions.values() if s.channel_id not in alive]:
            self._end(session, "resync")

    def _end(self, session: SupervisionSession, why: str | None) -> None:
        self.sessions.pop(session.channel_id, None)
        log.info("%s of call %s by %s ended (%s)", session.mode, session.target.linkedid,
                 session.username, why)  # fmt: skip

    # ------------------------------------------------------------ what supervisors ask

    def calls(self) -> list[CallRecord]:
        """The calls of the main server in progress (copies), for the supervisors' page."""
        return [call.snapshot() for call in self._bridge.links[0].tracker.active_calls()]

    def reserve(self, supervisor: Supervisor, mode: str, linkedid: str) -> SupervisionSession:
        """Decide and, when allowed, hold the call and the supervisor's phone for this session
        (no await between the two: two requests cannot both pass). Raises
        :class:`~crm_bridge.supervise.domain.SupervisionRefused`."""
        call = next((c for c in self._bridge.links[0].tracker.active_calls()
                     if c.linkedid == linkedid), None)  # fmt: skip
        channel = self._index.sides(linkedid, call.agent).agent if call and call.agent else None
        if channel is not None and not CHANNEL_NAME.match(channel):
            channel = None
        busy = [s.busy() for s in self.sessions.values()]
        target = decide(supervisor, mode, call, channel, busy)
        session = SupervisionSession(f"{SUPERVISE_ID_PREFIX}{uuid.uuid4()}", mode,
                                     supervisor.username, target, time.time())  # fmt: skip
        self.sessions[session.channel_id] = session
        return session

    def release(self, session: SupervisionSession) -> None:
        """A reserved session whose Originate was not placed."""
        self._end(session, "not placed")

    async def ring(self, session: SupervisionSession) -> None:
        """Ring the supervisor's phone into ChanSpy. Raises what
        :func:`~telephony.dialer.send_originate` raises (nothing is resent)."""
        link = self._bridge.links[0]
        if link.connection is None:
            raise AmiNotConnected(f"AMI {link.config.name} is not connected")
        target = session.target
        request = OriginateRequest(
            channel=interface_of(target.extension),
            context=CONTEXT,
            exten=session.mode,
            channel_id=session.channel_id,
            action_id=session.channel_id,
            caller_id=f'"{CALLER_NAMES[session.mode]} {target.agent}" <{target.agent}>',
            timeout_ms=RING_MS,
            variables={"CC_SPY_CHANNEL": target.channel},
        )
        await send_originate(link.connection, request)
        log.info("%s of call %s (agent %s) by %s: ringing %s", session.mode, target.linkedid,
                 target.agent, session.username, target.extension)  # fmt: skip

