"""Outbound calls: the one Originate path, and a dialer that paces campaign calls.

:func:`send_originate` is how every call is placed (click-to-call and campaigns alike): an
``Originate`` with ``Async: true``, the caller's ``ActionID`` and ``ChannelId`` (which becomes
the call's Uniqueid and Linkedid, so the call log can be joined back to the request), and
the variables as ``Variable`` headers. Every value goes through
:func:`~telephony.ami_codec.encode_action` in the connection: a value Asterisk could misread
raises :class:`~telephony.ami_codec.UnsafeAmiValue` and nothing is sent.

:class:`Dialer` places campaign calls on its own AMI session (events ``call`` only) under a
concurrency cap (calls placed and not yet hung up) and a pace (Originates per second), and
maps what Asterisk answers to an outcome:

* ``OriginateResponse`` ``Reason``: 4 answered, 5 busy, 3 no answer, 8 congestion, 0/1 failed.
* On a SIP trunk busy and congestion both come back as Reason 0 (see the traces e1 and e3), so a
  failed originate is refined by the ``DialEnd`` ``DialStatus`` of its channel (BUSY,
  CONGESTION, NOANSWER) or the channel's hangup ``Cause`` (17 busy, 34/38/42 congestion, 18/19
  no answer), whichever arrives within :data:`REFINE_WAIT` seconds of the response.

A call that plays a greeting (``plays_greeting``) is not answered until the greeting played:
the dialplan sends ``UserEvent: CallbridgeGreeting`` with ``PLAYBACKSTATUS`` after its
``Playback`` (``dialplans/extensions_callbridge.conf``), and a ``FAILED`` there (the file
missing, or in a format Asterisk refuses) makes the outcome ``failed`` with the reason
:data:`GREETING_NOT_PLAYED`. A customer who hangs up during the greeting has answered.

Before the greeting the dialplan runs answering-machine detection (``AMD()``) and reports its
``AMDSTATUS`` at once in ``UserEvent: CallbridgeAmd``. A ``MACHINE`` makes the outcome
``machine``: with the reason :data:`MESSAGE_LEFT` when the greeting then played after the
machine's beep (the campaign said to leave it), without one when the dialplan hung up (the
campaign said so, or the machine hung up first). ``HUMAN`` and ``NOTSURE`` are people.

No database here: the caller records the attempt before :meth:`Dialer.dial` and the outcome
after it. An Originate is never resent: a lost connection fails the dial with
:class:`~telephony.ami_connection.AmiActionLost` or an ``unknown`` outcome.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from telephony.ami_codec import EventSieve
from telephony.ami_connection import AmiConfig, AmiConnection, AmiEvent, AmiState

log = logging.getLogger(__name__)

Outcome = Literal[
    "answered", "busy", "no_answer", "congestion", "failed", "machine", "unknown"
]  # fmt: skip
REASON_OUTCOME: dict[str, Outcome] = {
    "4": "answered",
    "5": "busy",
    "3": "no_answer",
    "8": "congestion",
    "0": "failed",
    "1": "failed",
}
DIAL_STATUS_OUTCOME: dict[str, Outcome] = {
    "BUSY": "busy",
    "CONGESTION": "congestion",
    "NOANSWER": "no_answer",
    "CHANUNAVAIL": "failed",
}
CAUSE_OUTCOME: dict[str, Outcome] = {
    "17": "busy",
    "34": "congestion",
    "38": "congestion",
    "42": "congestion",
    "18": "no_answer",
    "19": "no_answer",
}
GREETING_EVENT = "CallbridgeGreeting"
"""The ``UserEvent`` the dialplan sends after a campaign greeting, with ``Status``."""
GREETING_NOT_PLAYED = "greeting"
"""The reason of a call answered whose greeting Asterisk could not play."""
AMD_EVENT = "CallbridgeAmd"
"""The ``UserEvent`` the dialplan sends after ``AMD()``, with ``Status`` (its ``AMDSTATUS``)."""
MACHINE = "MACHINE"
MESSAGE_LEFT = "message"
"""The reason of a ``machine`` outcome whose greeting played after the machine's beep."""
REFINE_WAIT = 1.0
"""How long a failed originate waits for the DialEnd or hangup cause that names its outcome."""
RESPONSE_MARGIN = 15.0
"""Seconds beyond the ring timeout to wait for the OriginateResponse before ``unknown``."""
GREETING_WAIT = 600.0
"""Seconds more a greeting call may take after it is answered before its report is given up."""
MAX_CALL_SECONDS = 3600.0
"""A call whose hangup is never seen frees its slot after this long."""


class OriginateRefused(Exception):
    """Asterisk answered the Originate with an error (its message, which holds no number)."""


class DialWithdrawn(Exception):
    """The caller's last check before sending said no (a campaign paused meanwhile): nothing
    was sent."""


@dataclass(frozen=True)
class OriginateRequest:
    """One call to place. ``channel`` is what Asterisk dials first (``PJSIP/<number>@carrier``
    for a campaign, the agent's phone for click-to-call); when it answers, the call runs
    ``context``/``exten``/``priority``."""

    channel: str
    context: str
    exten: str
    channel_id: str
    action_id: str
    priority: int = 1
    caller_id: str | None = None
    timeout_ms: int = 30_000
    variables: Mapping[str, str] = field(default_factory=dict)
    plays_greeting: bool = False
    """Answered only once the dialplan reports the greeting played (see the module)."""

    def headers(self) -> list[tuple[str, str]]:
        headers = [
            ("Channel", self.channel),
            ("Context", self.context),
            ("Exten", self.exten),
            ("Priority", str(self.priority)),
            ("Timeout", str(self.timeout_ms)),
            ("Async", "true"),
            ("ChannelId", self.channel_id),
        ]
        if self.caller_id is not None:
            headers.append(("CallerID", self.caller_id))
        headers += [("Variable", f"{name}={value}") for name, value in self.variables.items()]
        return headers


async def send_originate(connection: AmiConnection, request: OriginateRequest) -> None:
    """Send the Originate and wait for Asterisk to queue it (not for the call's outcome).

    Raises ``UnsafeAmiValue`` (nothing sent), ``AmiNotConnected``, ``AmiActionTimeout`` or
    ``AmiActionLost`` (it may have been placed; never resent) and :class:`OriginateRefused`.
    """
    response = await connection.send_action(
        "Originate", request.headers(), action_id=request.action_id
    )
    if str(response.get("Response", "")).lower() != "success":
        raise OriginateRefused(str(response.get("Message", "")))


@dataclass
class _Call:
    request: OriginateRequest
    outcome: asyncio.Future[tuple[Outcome, str | None]]
    slot_released: bool = False
    reason: str | None = None
    dial_status: str | None = None
    cause: str | None = None
    hung_up: bool = False
    awaiting_greeting: bool = False
    greeting_status: str | None = None
    amd_status: str | None = None
    refine: asyncio.TimerHandle | None = None


DIALER_EVENTS = frozenset(
    {"OriginateResponse", "DialEnd", "HangupRequest", "SoftHangupRequest", "Hangup", "UserEvent"}
)
"""The events :meth:`Dialer._on_event` reads; its session drops every other one unparsed (the
``call`` class it subscribes to is most of what a busy Asterisk sends)."""


class Dialer:
    """Places Originates under ``max_concurrent`` and ``calls_per_second``; see the module."""

    def __init__(self, config: AmiConfig, max_concurrent: int, calls_per_second: float) -> None:
        if max_concurrent < 1 or calls_per_second <= 0:
            raise ValueError("max_concurrent >= 1 and calls_per_second > 0")
        self.max_concurrent = max_concurrent
        self.interval = 1.0 / calls_per_second
        self.connection = AmiConnection(
            config, on_event=self._on_event, sieve=EventSieve(DIALER_EVENTS)
        )
        self.sent_at: list[float] = []
        """``time.monotonic()`` of every Originate sent (the benchmark reads the pace here)."""
        self._slots = asyncio.Semaphore(max_concurrent)
        self._pace = asyncio.Lock()
        self._next_send = 0.0
        self._by_action: dict[str, _Call] = {}
        self._by_channel: dict[str, _Call] = {}

    async def start(self) -> None:
        await self.connection.start()

    async def stop(self) -> None:
        await self.connection.stop()
        for call in list(self._by_channel.values()):
            self._settle(call, "unknown")
            self._release(call)

    @property
    def connected(self) -> bool:
        return self.connection.state is AmiState.CONNECTED

    @property
    def in_progress(self) -> int:
        """Calls placed and not yet hung up (what the concurrency cap counts)."""
        return sum(1 for call in self._by_channel.values() if not call.slot_released)

    async def wait_connected(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.connected:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def dial(
        self,
        request: OriginateRequest,
        still_wanted: Callable[[], Awaitable[bool]] | None = None,
    ) -> tuple[Outcome, str | None]:
        """Place one call, once: wait for a free slot and the pace, ask ``still_wanted`` (a
        False raises :class:`DialWithdrawn`, nothing sent), send, and return the outcome and
        the originate Reason when Asterisk reports it. The slot stays taken until the call
        hangs up. Raises what :func:`send_originate` raises (the slot is freed)."""
        await self._slots.acquire()
        call = _Call(request, asyncio.get_running_loop().create_future())
        try:
            await self._wait_for_pace()
            if still_wanted is not None and not await still_wanted():
                raise DialWithdrawn(request.action_id)
            self._by_action[request.action_id] = call
            self._by_channel[request.channel_id] = call
            self.sent_at.append(time.monotonic())
            await send_originate(self.connection, request)
        except BaseException:
            self._release(call)
            raise
        asyncio.get_running_loop().call_later(MAX_CALL_SECONDS, self._release, call)
        wait = request.timeout_ms / 1000 + RESPONSE_MARGIN
        wait += GREETING_WAIT if request.plays_greeting else 0
        try:
            return await asyncio.wait_for(asyncio.shield(call.outcome), wait)
        except TimeoutError:
            log.warning("no OriginateResponse for %s within %.0f s", request.action_id, wait)
            self._settle(call, "unknown")
            self._release(call)
            return "unknown", None

    async def _wait_for_pace(self) -> None:
        async with self._pace:
            now = time.monotonic()
            at = max(now, self._next_send)  # on a fixed grid while busy: no drift from sleeps
            self._next_send = at + self.interval
            if at > now:
                await asyncio.sleep(at - now)

    # -- events

    def _on_event(self, event: AmiEvent) -> None:
        name = event.get("Event")
        if name == "OriginateResponse":
            call = self._by_action.get(event.get("ActionID", ""))
            if call is not None:
                self._on_response(call, event)
        elif name == "DialEnd":
            call = self._by_channel.get(event.get("DestUniqueid", ""))
            if call is not None:
                call.dial_status = str(event.get("DialStatus", "")).upper() or call.dial_status
                self._refined(call)
        elif name in ("HangupRequest", "SoftHangupRequest", "Hangup"):
            call = self._by_channel.get(event.get("Uniqueid", ""))
            if call is not None:
                call.cause = str(event.get("Cause", "")) or call.cause
                if name == "Hangup":
                    call.hung_up = True
                    if call.awaiting_greeting:
                        self._settle_greeting(call)
                    self._refined(call)
                    if call.outcome.done():
                        self._release(call)
        elif name == "UserEvent":
            self._on_user_event(event)

    def _on_user_event(self, event: AmiEvent) -> None:
        """The dialplan's reports on a message call: AMD's verdict, then the greeting's."""
        call = self._by_channel.get(event.get("Uniqueid", ""))
        if call is None:
            return
        status = str(event.get("Status", "")).upper()
        if event.get("UserEvent") == AMD_EVENT:
            call.amd_status = status
        elif event.get("UserEvent") == GREETING_EVENT:
            call.greeting_status = status
            if call.awaiting_greeting:
                self._settle_greeting(call)

    def _on_response(self, call: _Call, event: AmiEvent) -> None:
        call.reason = str(event.get("Reason", ""))
        outcome = REASON_OUTCOME.get(call.reason, "failed")
        if outcome == "answered" and call.request.plays_greeting:
            if call.greeting_status is None and not call.hung_up:
                call.awaiting_greeting = True  # settled by the greeting's report or the hangup
            else:
                self._settle_greeting(call)
            return
        if outcome != "failed":
            self._settle(call, outcome)
            return
        if not self._refined(call):
            loop = asyncio.get_running_loop()
            call.refine = loop.call_later(REFINE_WAIT, self._settle, call, "failed")

    def _settle_greeting(self, call: _Call) -> None:
        """An answered greeting call: answered (``machine`` when AMD said so), unless the
        dialplan said the greeting did not play (a hangup before any report is a customer who
        hung up during it, or a machine the dialplan hung up on)."""
        if call.greeting_status not in (None, "SUCCESS"):
            call.reason = GREETING_NOT_PLAYED
            self._settle(call, "failed")
        elif call.amd_status == MACHINE:
            if call.greeting_status == "SUCCESS":
                call.reason = MESSAGE_LEFT
            self._settle(call, "machine")
        else:
            self._settle(call, "answered")

    def _refined(self, call: _Call) -> bool:
        """Settle a failed originate from its DialStatus or cause, once both are known."""
        if call.reason is None or REASON_OUTCOME.get(call.reason, "failed") != "failed":
            return False
        outcome = DIAL_STATUS_OUTCOME.get(call.dial_status or "") or CAUSE_OUTCOME.get(
            call.cause or ""
        )
        if outcome is None:
            return False
        self._settle(call, outcome)
        return True

    def _settle(self, call: _Call, outcome: Outcome) -> None:
        """Report the outcome (once). A call that was not answered has no talk left to wait
        for, so its slot is freed now; an answered one (a machine too) frees it when it hangs
        up."""
        if call.refine is not None:
            call.refine.cancel()
        call.awaiting_greeting = False
        if not call.outcome.done():
            call.outcome.set_result((outcome, call.reason))
        self._by_action.pop(call.request.action_id, None)
        if outcome not in ("answered", "machine") or call.hung_up:
            self._release(call)

    def _release(self, call: _Call) -> None:
        if call.slot_released:
            return
        call.slot_released = True
        self._by_channel.pop(call.request.channel_id, None)
        self._by_action.pop(call.request.action_id, None)
        self._slots.release()
