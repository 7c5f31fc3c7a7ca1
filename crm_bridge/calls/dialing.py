"""Placing a call from the center: the agent's phone rings first, then Asterisk dials the
customer from the agent's ``internal`` context. Used by click-to-call (the agent's pop) and by
preview campaigns; the messages an agent sees when it fails are here, once, for both."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

import phonenumbers

from crm_bridge.customers.numbers import mask_phone, normalize_phone
from crm_bridge.settings import Settings
from telephony.ami_connection import AmiNotConnected
from telephony.call_tracker import agent_from_interface
from telephony.dialer import OriginateRefused as OriginateRefused  # raised by click-to-call
from telephony.dialer import OriginateRequest, send_originate

if TYPE_CHECKING:
    from crm_bridge.calls.bridge import BridgeService

log = logging.getLogger(__name__)

NO_EXTENSION = "您的账号没有分机，无法外呼 / Your account has no extension to call from"
AMI_DOWN = "电话系统未连接，请稍后再试 / The phone system is not connected: try again shortly"
AMI_NO_ANSWER = (
    "电话系统未确认外呼，请查看话机后再试 / The phone system did not confirm the call: "
    "check your phone before trying again"
)
ORIGINATE_REFUSED = "电话系统拒绝了外呼 / The phone system refused the call"


DEFAULT_OUTSIDE_LINE_PREFIX = "9"
"""The outside-line prefix of the ``internal`` context in dialplans/extensions_callbridge.conf
(``_9XX.`` dials ``${EXTEN:1}@carrier``); ``settings.outside_line_prefix`` overrides it."""


ORIGINATE_TIMEOUT_MS = 30_000
"""How long the agent's own phone rings before a click-to-call gives up."""


CLICK_TO_CALL_NAME = "Click-to-call"


def interface_of(extension: str) -> str:
    """The channel to ring for a user's extension: ``1001`` -> ``PJSIP/1001``; an interface
    (``PJSIP/1001``, ``Local/1001@from-internal``) is used as it is."""
    return extension if "/" in extension else f"PJSIP/{extension}"


def outside_line_exten(number_e164: str, settings: Settings) -> str:
    """The extension the ``internal`` context dials a public number by: the outside-line
    prefix and the number as dialled from the center's region (national form at home,
    ``00`` + country code abroad), digits only."""
    parsed = phonenumbers.parse(number_e164)
    dialled = phonenumbers.format_out_of_country_calling_number(parsed, settings.number_region)
    prefix = settings.outside_line_prefix or DEFAULT_OUTSIDE_LINE_PREFIX
    return prefix + phonenumbers.normalize_digits_only(dialled)


async def originate_click_to_call(
    bridge: BridgeService, agent_interface: str, number_e164: str, settings: Settings
) -> str:
    """Ring the agent's phone; when they pick up, Asterisk dials the customer from the agent's
    ``internal`` context (recorded there like every outside call). Returns the ChannelId
    given to the agent's channel, by which the call can be followed.

    The number must be E.164. A customer's ``consent_to_calls`` is not checked: it governs
    campaigns, and here an agent decides to call one customer they are serving. The caller ID
    is the agent's own extension, because the dialplan reads ``CALLERID(num)`` as the agent.

    Every value goes through ``encode_action`` (in the connection): a value Asterisk could
    misread raises :class:`~telephony.ami_codec.UnsafeAmiValue` and nothing is sent. Raises
    ``AmiNotConnected`` when the server is not connected and :class:`OriginateRefused` when
    Asterisk refuses. Phones are on the main server (the first one of the settings).
    """
    if not normalize_phone(number_e164).is_e164 or not number_e164.startswith("+"):
        raise ValueError("click-to-call needs an E.164 number")
    link = bridge.links[0]
    channel_id = str(uuid.uuid4())
    agent = agent_from_interface(agent_interface)
    request = OriginateRequest(
        channel=agent_interface,
        context="internal",
        exten=outside_line_exten(number_e164, settings),
        channel_id=channel_id,
        action_id=f"c2c-{channel_id}",
        caller_id=f'"{CLICK_TO_CALL_NAME}" <{agent}>',
        timeout_ms=ORIGINATE_TIMEOUT_MS,
        variables={"CC_CLICK_TO_CALL": "1"},
    )
    if link.connection is None:
        raise AmiNotConnected(f"AMI {link.config.name} is not started")
    await send_originate(link.connection, request)
    log.info("click-to-call by %s to %s: channel %s", agent, mask_phone(number_e164), channel_id)
    return channel_id
