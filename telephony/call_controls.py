"""Call controls on an answered call: the AMI actions that hang up, hold, resume and transfer.

Only ``Hangup``, ``Redirect`` and ``Bridge`` are used (write class ``call``), because they act
the same whatever legs the call has: a queue call's agent is reached through a Local channel
pair, a click-to-call's is not, and a call held and resumed once is bridged directly. Each
action names the call's two real channels, the customer's and the agent's phone's
(``PJSIP/carrier-…``, ``PJSIP/1001-…``), as the caller found them from Asterisk's own events;
the contexts are ``callbridge-hold`` and ``callbridge-transfer`` of
``dialplans/extensions_callbridge.conf``:

* hang up: ``Hangup`` of the agent's channel (the customer's dialplan then hangs up);
* hold: one ``Redirect`` of the customer to ``callbridge-hold,customer`` (music on hold) and,
  as its ``ExtraChannel``, of the agent to ``callbridge-hold,agent`` (silence);
* resume, and cancelling an attended transfer: ``Bridge`` of the agent and the customer;
* blind transfer: one ``Redirect`` of the customer to ``callbridge-transfer,<target>`` and of
  the agent to ``callbridge-transfer,hangup``;
* attended transfer: one ``Redirect`` of the customer to music on hold and of the agent to
  ``callbridge-transfer,<target>`` (the agent talks to the target), then ``Bridge`` of the
  customer and the target's channel to complete it.

The builders are pure (:class:`ControlAction`); :func:`send_control` sends one through the
connection, where :func:`~telephony.ami_codec.encode_action` refuses any value Asterisk could
misread (:class:`~telephony.ami_codec.UnsafeAmiValue`, nothing sent).
"""

from __future__ import annotations

from dataclasses import dataclass

from telephony.ami_connection import AmiConnection

HOLD_CONTEXT = "callbridge-hold"
TRANSFER_CONTEXT = "callbridge-transfer"
AGENT_DONE_EXTEN = "hangup"
"""Where the agent's channel goes after a blind transfer: it hangs up."""


class ControlFailed(Exception):
    """Asterisk answered the action with an error (its message: a channel name at most)."""


@dataclass(frozen=True)
class ControlAction:
    action: str
    headers: tuple[tuple[str, str], ...]


def _redirect(channel: str, context: str, exten: str,
              extra: str, extra_context: str, extra_exten: str) -> ControlAction:  # fmt: skip
    return ControlAction("Redirect", (
        ("Channel", channel), ("Context", context), ("Exten", exten), ("Priority", "1"),
        ("ExtraChannel", extra), ("ExtraContext", extra_context), ("ExtraExten", extra_exten),
        ("ExtraPriority", "1"),
    ))  # fmt: skip


def _bridge(first: str, second: str) -> ControlAction:
    return ControlAction("Bridge", (("Channel1", first), ("Channel2", second), ("Tone", "no")))


def hang_up(agent: str) -> ControlAction:
    return ControlAction("Hangup", (("Channel", agent),))


def hold(customer: str, agent: str) -> ControlAction:
    return _redirect(customer, HOLD_CONTEXT, "customer", agent, HOLD_CONTEXT, "agent")


def resume(customer: str, agent: str) -> ControlAction:
    """Also what cancels an attended transfer: the agent leaves the target's call."""
    return _bridge(agent, customer)


def blind_transfer(customer: str, agent: str, exten: str) -> ControlAction:
    return _redirect(customer, TRANSFER_CONTEXT, exten, agent, TRANSFER_CONTEXT, AGENT_DONE_EXTEN)


def consult(customer: str, agent: str, exten: str) -> ControlAction:
    """Start an attended transfer: the customer on hold, the agent's channel dials ``exten``."""
    return _redirect(customer, HOLD_CONTEXT, "customer", agent, TRANSFER_CONTEXT, exten)


def complete_transfer(customer: str, target: str) -> ControlAction:
    """The customer joins the target; the agent's channel, left alone, hangs up."""
    return _bridge(customer, target)


async def send_control(connection: AmiConnection, control: ControlAction, action_id: str) -> None:
    """Send one control and wait for Asterisk's answer. Raises ``UnsafeAmiValue`` (nothing
    sent), ``AmiNotConnected``, ``AmiActionTimeout``/``AmiActionLost`` (it may have run; never
    resent) and :class:`ControlFailed`."""
    response = await connection.send_action(
        control.action, list(control.headers), action_id=action_id
    )
    if str(response.get("Response", "")).lower() != "success":
        raise ControlFailed(str(response.get("Message", "")))
