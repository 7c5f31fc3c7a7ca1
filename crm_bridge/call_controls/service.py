"""The call controls going on: each call's channels and state, and the AMI actions sent.

Which channels: the call's customer and agent channels from a
:class:`~crm_bridge.live_speech.channels.ChannelIndex` fed by the bridge's AMI events (the
same index listen-in uses), for an answered call of the tracker's in which one of the user's
extensions has its phone's channel up: that agent is on the call. When a
control starts, its channels are kept with the call's state, because a transfer in progress
makes the tracker see the target as the call's agent. A state ends when the customer's or the
agent's channel hangs up, or a resync no longer finds it.

Only the main server's calls are controlled: the phones are on it (as for click-to-call).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from crm_bridge.call_controls.domain import (
    CHANNELS_UNKNOWN,
    CONTROL_UNDER_WAY,
    NEXT_STATE,
    NO_SUCH_CALL,
    NO_TARGET_LEG,
    ControlRefused,
    Target,
    check_control,
)
from crm_bridge.calls.bridge import BridgeService
from crm_bridge.live_speech.channels import CHANNEL_NAME, ChannelIndex
from telephony import call_controls as actions
from telephony.ami_connection import AmiNotConnected
from telephony.call_tracker import agent_from_interface

log = logging.getLogger(__name__)


@dataclass
class ControlledCall:
    """A call one agent holds or transfers now."""

    linkedid: str
    username: str
    agent: str
    customer_channel: str
    agent_channel: str
    state: str
    target: Target | None = None


@dataclass(frozen=True)
class Plan:
    """A control decided: the call, the action to send, and the state it leaves the call in."""

    call: ControlledCall
    control: str
    action: actions.ControlAction
    next_state: str


class CallControls:
    """Create on the event loop before the bridge starts (it hears the first resync)."""

    def __init__(self, bridge: BridgeService, agent_contexts: Iterable[str]) -> None:
        self._bridge = bridge
        self._server = bridge.links[0].config.name
        self._index = ChannelIndex(agent_contexts)
        self.calls: dict[str, ControlledCall] = {}
        self._pending: set[str] = set()
        """Calls with a control planned and not yet answered by Asterisk: one at a time."""
        bridge.listen_to_channels(self, lambda event: False)

    # ------------------------------------------------------------ what Asterisk says

    def on_ami_event(self, server: str, event: dict[str, str]) -> None:
        if server != self._server:
            return
        self._index.feed(event)
        if event.get("Event") == "Hangup":
            gone = event.get("Channel", "")
            for call in [c for c in self.calls.values()
                         if gone in (c.customer_channel, c.agent_channel)]:  # fmt: skip
                self._forget(call, "hangup")

    def on_resync(self, server: str, channels: list[dict[str, str]]) -> None:
        if server != self._server:
            return
        self._index.replace(channels)
        for call in list(self.calls.values()):
            if not (self._index.alive(call.customer_channel)
                    and self._index.alive(call.agent_channel)):  # fmt: skip
                self._forget(call, "resync")

    def _forget(self, call: ControlledCall, why: str) -> None:
        self.calls.pop(call.linkedid, None)
        log.info("controls of call %s by %s ended (%s)", call.linkedid, call.username, why)

    # ------------------------------------------------------------ what agents ask

    def state_of(self, username: str, extensions: Iterable[str], linkedid: str
                 ) -> ControlledCall:  # fmt: skip
        """The user's own call as controlled now (raises ``ControlRefused`` 404 for any
        other)."""
        return self._own_call(username, extensions, linkedid)

    def plan(self, username: str, extensions: Iterable[str], linkedid: str, control: str,
             target: Target | None = None) -> Plan:  # fmt: skip
        """Decide a control of the user's own call (raises
        :class:`~crm_bridge.call_controls.domain.ControlRefused`) and hold the call for it
        until :meth:`send` or :meth:`release` (no await in between: two requests cannot both
        pass); nothing is sent yet."""
        call = self._own_call(username, extensions, linkedid)
        if linkedid in self._pending:
            raise ControlRefused(409, CONTROL_UNDER_WAY)
        check_control(control, call.state)
        customer, agent = call.customer_channel, call.agent_channel
        if control == "hangup":
            action = actions.hang_up(agent)
        elif control == "hold":
            action = actions.hold(customer, agent)
        elif control in ("resume", "cancel"):
            action = actions.resume(customer, agent)
        elif control == "transfer" and target is not None:
            action = actions.blind_transfer(customer, agent, target.exten)
        elif control == "consult" and target is not None:
            action = actions.consult(customer, agent, target.exten)
        elif control == "complete":
            action = actions.complete_transfer(customer, self._target_leg(call))
        else:
            raise ValueError(f"{control} needs a target")
        self._pending.add(linkedid)
        return Plan(call, control, action, NEXT_STATE[control])

    def release(self, plan: Plan) -> None:
        """A planned control that is not sent."""
        self._pending.discard(plan.call.linkedid)

    async def send(self, plan: Plan, target: Target | None = None) -> str:
        """Send the planned action; on success the call takes its next state, which is
        returned. Raises what :func:`~telephony.call_controls.send_control` raises."""
        link = self._bridge.links[0]
        try:
            if link.connection is None:
                raise AmiNotConnected(f"AMI {link.config.name} is not connected")
            await actions.send_control(link.connection, plan.action, f"ctl-{uuid.uuid4()}")
        finally:
            self.release(plan)
        call = plan.call
        if plan.next_state in ("talking", "ended", "transferred"):
            self.calls.pop(call.linkedid, None)
        else:
            call.state = plan.next_state
            call.target = target if plan.control == "consult" else call.target
            self.calls[call.linkedid] = call
        log.info("%s of call %s by %s (agent %s)", plan.control, call.linkedid, call.username,
                 call.agent)  # fmt: skip
        return plan.next_state

    def _own_call(self, username: str, extensions: Iterable[str], linkedid: str
                  ) -> ControlledCall:  # fmt: skip
        held = self.calls.get(linkedid)
        if held is not None:
            if held.username != username:
                raise ControlRefused(404, NO_SUCH_CALL)
            return held
        mine = sorted({agent_from_interface(extension) for extension in extensions})
        record = next((c for c in self._bridge.links[0].tracker.active_calls()
                       if c.linkedid == linkedid), None)  # fmt: skip
        if record is None or record.answered_at is None:
            raise ControlRefused(404, NO_SUCH_CALL)
        # The agent on the call is the one whose phone is in it now: after a transfer that is
        # the target's, whom the tracker may still not name as the call's agent.
        found = [(agent, self._index.sides(linkedid, agent)) for agent in mine]
        agent, sides = next(((a, s) for a, s in found if s.agent), (None, None))
        if agent is None or sides is None or sides.agent is None:
            raise ControlRefused(404, NO_SUCH_CALL)
        if not (sides.customer and CHANNEL_NAME.match(sides.customer)
                and CHANNEL_NAME.match(sides.agent)):  # fmt: skip
            raise ControlRefused(409, CHANNELS_UNKNOWN)
        return ControlledCall(linkedid, username, agent, sides.customer, sides.agent,
                              "talking")  # fmt: skip

    def _target_leg(self, call: ControlledCall) -> str:
        """The channel that answered the agent's consultation: the newest leg of the call
        that is neither the customer's nor the agent's."""
        others = [name for name in self._index.legs(call.linkedid)
                  if name not in (call.customer_channel, call.agent_channel)]  # fmt: skip
        if not others:
            raise ControlRefused(409, NO_TARGET_LEG)
        return others[-1]
