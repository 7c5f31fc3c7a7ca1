"""Reading Asterisk's names: the agent or device a channel or queue member stands for, the
number in a dial string, and the caller ids Asterisk leaves unknown."""

from __future__ import annotations

import re

UNKNOWN_IDS = {"", "<unknown>", "<none>", "unknown", "anonymous"}

_CHANNEL_SUFFIX = re.compile(r"-[0-9a-f]+(;[12])?$")


def agent_from_channel(channel: str) -> str:
    """``PJSIP/1001-0000004b`` -> ``1001``; ``SIP/1001`` -> ``1001``."""
    resource = channel.split("/", 1)[-1]
    return _CHANNEL_SUFFIX.sub("", resource).split("@", 1)[0]


def agent_from_interface(interface: str) -> str:
    """A queue member interface to the agent's extension.

    ``Local/1001@agents/n`` -> ``1001``; ``PJSIP/1001`` -> ``1001``.
    """
    resource = interface.split("/", 1)[-1]
    return resource.split("@", 1)[0].split("/", 1)[0]


def number_from_dial_string(dial_string: str) -> str:
    """``13900000001@carrier`` or ``carrier/13900000001`` -> ``13900000001``."""
    return dial_string.split("@", 1)[0].split("/")[-1]


def is_local(channel: str) -> bool:
    return channel.startswith("Local/")


ASK_CHANNEL_MARKS = ("@callbridge-route-ask-", "@callbridge-survey-ask-")
"""In the name of the Local channels the dialplan starts to ask the bridge's FastAGI server
who is calling (``callbridge-route``) and whether to survey (``callbridge-survey``): they are
no calls."""


def is_routing_channel(channel: str) -> bool:
    return channel.startswith("Local/") and any(mark in channel for mark in ASK_CHANNEL_MARKS)


def device_of(channel: str) -> str:
    """``PJSIP/1001-0000004b`` -> ``PJSIP/1001``: the device a channel was placed on."""
    return _CHANNEL_SUFFIX.sub("", channel)


def known(value: str | None) -> str | None:
    """None for an id Asterisk leaves unknown (``<unknown>``, ``anonymous``, empty)."""
    if value is None or value.strip().lower() in UNKNOWN_IDS:
        return None
    return value
