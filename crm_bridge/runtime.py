"""The services the lifespan built (:class:`Runtime`), and :data:`RuntimeDep`, the dependency by
which routes receive them. Routes depend on this module, never on ``crm_bridge.app``: the
composition root builds the runtime and includes the routers, the routers only use it.

The service types are imported for annotations only: this module imports no feature package
when it runs, so every package may depend on it without a cycle."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Histogram
    from sqlalchemy.orm import Session, sessionmaker

    from crm_bridge.accounts.auth import SignInLimiter
    from crm_bridge.accounts.session_revocation import SessionRevocations
    from crm_bridge.agent_states.service import AgentStates
    from crm_bridge.call_controls.service import CallControls
    from crm_bridge.calls.bridge import BridgeService
    from crm_bridge.calls.call_log import NumberRules
    from crm_bridge.campaigns.audience_process import AudienceProcess
    from crm_bridge.campaigns.runner import CampaignRunner
    from crm_bridge.demo.feed import DemoFeed
    from crm_bridge.live_speech.service import LiveSpeech
    from crm_bridge.pops.hub import PopHub
    from crm_bridge.pops.relay import PopRelay
    from crm_bridge.routing.service import Routing
    from crm_bridge.settings import Settings
    from crm_bridge.supervise.service import Supervision
    from crm_bridge.wallboard.board import Wallboard


@dataclass
class Runtime:
    """What the lifespan built; handlers receive it through :data:`RuntimeDep`."""

    settings: Settings
    sessions: sessionmaker[Session]
    numbers: NumberRules
    bridge: BridgeService
    pops: PopHub
    pop_latency: Histogram
    """Fed by ``pops`` (``on_pop_latency``)."""
    revocations: SessionRevocations
    """The open pop sockets of each user, closed when their sessions end."""
    sign_in_limiter: SignInLimiter
    """Sign-in attempts per user name, per client address and in total."""
    metrics: CollectorRegistry
    """This app's Prometheus metrics, read from the parts above at each scrape."""
    audience: AudienceProcess
    """Selects campaign audiences in a process of its own."""
    demo: DemoFeed | None = None
    campaigns: CampaignRunner | None = None
    pop_relay: PopRelay | None = None
    live_speech: LiveSpeech | None = None
    agent_states: AgentStates | None = None
    """Queue members and agents' states; None when ``settings.agent_states`` is off."""
    wallboard: Wallboard | None = None
    supervise: Supervision | None = None
    """Listen, whisper, barge: the sessions going on."""
    call_controls: CallControls | None = None
    """Hold, transfer and hang up from the agent's card: the calls held or transferred now."""
    routing: Routing | None = None
    """The FastAGI server and rules of routing by customer value; None when off, in the demo,
    or when its port was taken."""


def runtime_of(request: Request) -> Runtime:
    """The runtime of the app serving ``request`` (a WebSocket is a request here too)."""
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(runtime_of)]
