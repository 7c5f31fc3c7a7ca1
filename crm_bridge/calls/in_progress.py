"""The calls in progress as the trackers know them, and who may act on a call: the agents it
rang. Read on the event loop, where the trackers change; :data:`Rang` and :data:`LiveCalls`
are the route dependencies that copy them there for handlers that run on worker threads."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Path
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from crm_bridge.db.models import Call
from crm_bridge.runtime import RuntimeDep
from telephony.call_events import CallRecord
from telephony.call_tracker import agent_from_interface

if TYPE_CHECKING:
    from crm_bridge.calls.bridge import BridgeService

LINKEDID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
NO_SUCH_CALL = "没有这个通话 / No such call"
LinkedId = Annotated[str, Path(pattern=LINKEDID_PATTERN, description="Asterisk Linkedid")]
"""A path parameter naming a call by its Linkedid."""


def agent_keys(extensions: Iterable[str]) -> frozenset[str]:
    """The agent names the tracker uses for these extensions: ``PJSIP/1001`` -> ``1001``."""
    return frozenset(agent_from_interface(extension) for extension in extensions)


def agent_may_act(
    session: Session,
    linkedid: str,
    extensions: Iterable[str],
    rang: Callable[[str], set[str]] | None,
) -> bool:
    """True when the call rang one of ``extensions``.

    Either the logged call was answered by (or transferred to) one of them, or ``rang``, which
    knows the calls in progress, says it rang one of them. Anything else (another agent's call,
    a Linkedid that never existed) is False, which the web layer answers with 404.
    """
    mine = agent_keys(extensions)
    if not mine:
        return False
    if rang is not None and rang(linkedid) & mine:
        return True
    logged = select(Call.id).where(
        Call.linkedid == linkedid, or_(Call.agent.in_(mine), Call.transferred_to.in_(mine))
    )
    return session.scalar(logged) is not None


def agents_of_calls_in_progress(bridge: BridgeService) -> dict[str, set[str]]:
    """For each call in progress on any server, by Linkedid: the agents it rang and the agent
    who placed it (a click-to-call rings the agent first); ``rang`` of :func:`agent_may_act`
    is ``.get`` on this.

    Reads the trackers, so call it on the event loop, which is where they change.
    """
    return {
        call.linkedid: _agents_of(call)
        for link in bridge.links
        for call in link.tracker.active_calls()
    }


def calls_unlogged_when_known(bridge: BridgeService) -> frozenset[str] | None:
    """The Linkedids of the calls not yet in the call log that will be: those in progress and
    those that ended and wait for their write; None while the bridge is not in step. A campaign
    attempt whose call is among them waits for it rather than being counted lost."""
    if not bridge.in_step:
        return None
    in_progress = (call.linkedid for link in bridge.links for call in link.tracker.active_calls())
    return frozenset(in_progress) | bridge.calls_being_logged


def _agents_of(call: CallRecord) -> set[str]:
    return {*call.agents_rung, *([call.agent] if call.agent else [])}


async def _rung_now(runtime: RuntimeDep) -> dict[str, set[str]]:
    """The agents of each call in progress; async, so it runs on the event loop, where the
    trackers change (the handlers run on worker threads)."""
    return agents_of_calls_in_progress(runtime.bridge)


Rang = Annotated[dict[str, set[str]], Depends(_rung_now)]


async def _live_calls(runtime: RuntimeDep) -> dict[str, CallRecord]:
    """The calls in progress by Linkedid, copied on the event loop (see :func:`_rung_now`)."""
    return {
        call.linkedid: call.snapshot()
        for link in runtime.bridge.links
        for call in link.tracker.active_calls()
    }


LiveCalls = Annotated[dict[str, CallRecord], Depends(_live_calls)]
