"""The composition root: ``create_app(settings)`` builds everything; nothing is built at import.

The lifespan migrates the database, opens the engine, starts the bridge (one AMI connection and
tracker per Asterisk server) and, in the demo, the AMI simulator that feeds it recorded calls.
Tests build their own app with their own settings.

Once started, everything the process holds lives as long as the service, and the lifespan
moves it out of the cyclic garbage collector's reach (``gc.freeze``) until the stop: a full
collection walked those some 200,000 objects for 100 ms of CPU or more, on the event loop, and
the pops of that moment waited behind it (``bench/pop_latency.py``). For as long, a thread
holding the GIL gives it up after :data:`GIL_SWITCH_SECONDS` instead of Python's 5 ms when the
event loop asks for it: the call-log writer and the other worker threads run their queries in
the same process, and a pop that arrived meanwhile waited up to 5 ms per turn behind each.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from crm_bridge import metrics
from crm_bridge.accounts import audit
from crm_bridge.accounts import routes as accounts_routes
from crm_bridge.accounts.auth import (
    SessionRefreshMiddleware,
    SignInLimiter,
    api_access,
    signed_in_user,
)
from crm_bridge.accounts.session_revocation import SessionRevocations
from crm_bridge.agent_day import routes as agent_day_routes
from crm_bridge.agent_states import routes as agent_states_routes
from crm_bridge.agent_states.domain import AgentState
from crm_bridge.agent_states.service import AgentStates
from crm_bridge.call_controls import routes as call_controls_routes
from crm_bridge.call_controls.service import CallControls
from crm_bridge.calls import api as calls_api
from crm_bridge.calls.bridge import BridgeService
from crm_bridge.calls.call_log import CallLog, NumberRules
from crm_bridge.calls.cdr_reconcile import CdrReconciler
from crm_bridge.calls.in_progress import calls_unlogged_when_known
from crm_bridge.calls.journal import CallJournal
from crm_bridge.calls.recordings import RecordingsRoot
from crm_bridge.campaigns import agent as campaigns_agent
from crm_bridge.campaigns import do_not_call as campaigns_do_not_call
from crm_bridge.campaigns import pages as campaigns_pages
from crm_bridge.campaigns.audience_process import AudienceProcess
from crm_bridge.campaigns.runner import start_runner, stop_runner
from crm_bridge.db.engine import make_engine, make_session_factory
from crm_bridge.db.migrate import upgrade
from crm_bridge.demo.feed import DemoFeed
from crm_bridge.live_speech import routes as live_speech_routes
from crm_bridge.live_speech.hub import LiveSpeechHub
from crm_bridge.live_speech.metrics import LiveSpeechCollector
from crm_bridge.live_speech.service import LiveSpeech, LiveSpeechConfig
from crm_bridge.metrics import metrics_registry, pop_latency_histogram
from crm_bridge.pops import api as pops_api
from crm_bridge.pops import page as pops_page
from crm_bridge.pops.hub import PopHub
from crm_bridge.pops.lookups import database_campaign_lookup, database_lookup
from crm_bridge.routing import routes as routing_routes
from crm_bridge.routing.service import Routing
from crm_bridge.runtime import Runtime, RuntimeDep
from crm_bridge.settings import Settings
from crm_bridge.supervise import routes as supervise_routes
from crm_bridge.supervise.service import Supervision
from crm_bridge.supervision import call_pages as supervision_call_pages
from crm_bridge.supervision import pages as supervision_pages
from crm_bridge.supervision.periodic import supervision_jobs
from crm_bridge.survey import prompts as survey_prompts
from crm_bridge.survey import routes as survey_routes
from crm_bridge.survey.domain import SCRIPT as SURVEY_SCRIPT
from crm_bridge.survey.service import SurveyAnswers
from crm_bridge.wallboard import routes as wallboard_routes
from crm_bridge.wallboard.board import Wallboard
from crm_bridge.web.error_pages import install_error_pages
from crm_bridge.web.pages import STATIC_DIR, icon_router
from crm_bridge.web.request_guards import RequestGuardMiddleware
from crm_bridge.web.security_headers import SecurityHeadersMiddleware
from telephony.ami_connection import AmiConfig
from telephony.call_tracker import TrackerPolicy

if TYPE_CHECKING:  # psycopg (the relay's driver) is in the `postgres` extra only
    from crm_bridge.pops.relay import PopRelay

log = logging.getLogger(__name__)


def ami_configs(settings: Settings) -> list[AmiConfig]:
    """Every Asterisk server the settings name: the main ``ami_*`` one, then ``ami_servers``."""
    configs = [
        AmiConfig(
            name="default",
            host=settings.ami_host,
            port=settings.ami_port,
            username=settings.ami_username,
            secret=settings.ami_secret.get_secret_value(),
            use_tls=settings.ami_tls,
        )
    ]
    configs += [
        AmiConfig(
            name=server.name,
            host=server.host,
            port=server.port,
            username=server.username,
            secret=server.secret.get_secret_value(),
            use_tls=server.tls,
        )
        for server in settings.ami_servers
    ]
    return configs


# ``GET /openapi.json`` (with ``api_docs``), for the API token or a supervisor or admin session.
# No Swagger UI or ReDoc page: both load their code from a CDN.
openapi_router = APIRouter(include_in_schema=False, dependencies=[Depends(api_access)])


@openapi_router.get("/openapi.json")
def openapi(request: Request) -> dict:
    return request.app.openapi()


health_router = APIRouter()


@health_router.get("/health", summary="Database and AMI state")
def health(runtime: RuntimeDep) -> dict:
    try:
        with runtime.sessions() as session:
            session.execute(text("SELECT 1"))
        database = "ok"
    except Exception as exc:  # reported, not raised: health must answer
        database = f"error: {type(exc).__name__}"
    servers = runtime.bridge.status()
    healthy = database == "ok" and all(s["state"] == "connected" for s in servers)
    return {
        "status": "ok" if healthy else "degraded",
        "database": database,
        "ami": servers,
        "demo": runtime.settings.demo,
    }


ROUTES = (
    health_router,
    icon_router,
    calls_api.router,
    accounts_routes.router,
    pops_api.router,
    pops_page.router,
    audit.router,
    supervision_call_pages.router,
    supervision_pages.router,
    campaigns_pages.router,
    campaigns_do_not_call.router,
    campaigns_agent.router,
    metrics.router,
    live_speech_routes.router,
    agent_states_routes.router,
    wallboard_routes.router,
    supervise_routes.router,
    call_controls_routes.router,
    routing_routes.router,
    agent_day_routes.router,
    survey_routes.router,
)
"""Every feature's router, in the order the app includes them."""


GIL_SWITCH_SECONDS = 0.0005
"""How long a thread may keep the GIL once another wants it, while the service runs."""


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await _start(settings)
        app.state.runtime = runtime
        periodic = supervision_jobs(runtime.sessions, settings.recordings_dir)
        periodic.start()
        gc.freeze()
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(GIL_SWITCH_SECONDS)
        try:
            yield
        finally:
            sys.setswitchinterval(switch_interval)
            gc.unfreeze()
            await periodic.stop()
            await _stop(runtime)

    app = FastAPI(
        title="callbridge",
        summary="Asterisk PBX ↔ customer archive: call log and customer lookup API",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.add_middleware(SessionRefreshMiddleware)
    app.add_middleware(RequestGuardMiddleware)
    app.add_middleware(SecurityHeadersMiddleware, hsts_always=settings.secure_cookies)
    if settings.api_docs:
        app.include_router(openapi_router)
    for routes in ROUTES:
        app.include_router(routes)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    install_error_pages(app, user_of=signed_in_user)
    return app


async def _start(settings: Settings) -> Runtime:
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    numbers = NumberRules(settings.number_region, settings.outside_line_prefix)
    demo = None
    servers = ami_configs(settings)
    if settings.demo:
        demo = DemoFeed(sessions, settings)
        servers = [await demo.start()]
    policy = TrackerPolicy(
        inbound_contexts=frozenset(settings.inbound_contexts),
        agent_contexts=frozenset(settings.agent_contexts),
    )
    recordings = RecordingsRoot(settings.recordings_dir, settings.pbx_recordings_dir)
    call_log = CallLog(sessions, numbers, recordings)
    reconcilers = {}
    if settings.pbx_cdr_file is not None and not settings.demo:
        reconcilers[servers[0].name] = CdrReconciler(
            settings.pbx_cdr_file,
            servers[0].name,
            sessions,
            call_log,
            agent_contexts=settings.agent_contexts,
            lookback_seconds=settings.pbx_cdr_lookback_hours * 3600,
        )
    journal = CallJournal.load(settings.journal_dir)
    bridge = BridgeService(servers, call_log, policy, journal, reconcilers)
    lookup = database_lookup(
        sessions,
        zone=settings.zone,
        region=settings.number_region,
        outside_line_prefix=settings.outside_line_prefix,
    )
    pop_latency = pop_latency_histogram()
    pops = PopHub(
        lookup,
        bridge.status,
        received_at=lambda: bridge.event_rx,
        campaign_lookup=database_campaign_lookup(sessions, zone=settings.zone),
        on_pop_latency=pop_latency.observe,
        to_e164=numbers.to_e164,
    )
    pop_relay = _start_pop_relay(settings, bridge, pops)  # first: relayed before any lookup
    bridge.subscribe(pops.on_event)
    await pops.start()
    live_speech = await start_live_speech(settings, bridge, pops, sessions)
    supervise = Supervision(bridge, settings.agent_contexts)  # before start: the first resync
    call_controls = CallControls(bridge, settings.agent_contexts)
    await bridge.start()
    if demo is not None:
        await bridge.wait_connected(timeout=10)
        demo.begin_replay()
    campaigns = await start_runner(
        sessions, settings, servers[0], lambda: calls_unlogged_when_known(bridge)
    )
    agent_states, wallboard = await start_agent_states(
        settings, servers[0], sessions, bridge, numbers
    )
    routing = await start_routing(settings, sessions, agent_states)
    registry = metrics_registry(bridge, pops, sessions, pop_latency, pop_relay)
    if live_speech is not None:
        registry.register(LiveSpeechCollector(live_speech))
    return Runtime(
        settings,
        sessions,
        numbers,
        bridge,
        pops,
        pop_latency,
        SessionRevocations(),
        SignInLimiter(),
        registry,
        AudienceProcess(settings.database_url, settings.zone, settings.number_region),
        demo,
        campaigns,
        pop_relay=pop_relay,
        live_speech=live_speech,
        agent_states=agent_states,
        wallboard=wallboard,
        supervise=supervise,
        call_controls=call_controls,
        routing=routing,
    )


def _start_pop_relay(settings: Settings, bridge: BridgeService, pops: PopHub) -> PopRelay | None:
    """The relay between instances when the settings turn it on; its module (and psycopg, of
    the ``postgres`` extra) is imported only then, so the bare install runs the demo."""
    if not settings.pop_relay_enabled:
        return None
    from crm_bridge.pops.relay import start_pop_relay

    return start_pop_relay(settings, bridge, pops)


async def start_live_speech(
    settings: Settings, bridge: BridgeService, pops: PopHub, sessions: sessionmaker[Session]
) -> LiveSpeech | None:
    """Live transcription, when it is on: before the bridge starts, so that it hears the
    first resync and listens again to the calls already talking."""
    if not settings.live_speech or settings.vosk_model is None:
        return None
    config = LiveSpeechConfig(
        model_dir=settings.vosk_model,
        language=settings.live_speech_language,
        host=settings.live_speech_host,
        port=settings.live_speech_port,
        max_streams=settings.live_speech_max_streams,
        workers=settings.live_speech_workers,
    )
    live = LiveSpeech(config, bridge, LiveSpeechHub(pops), sessions,
                      agent_contexts=frozenset(settings.agent_contexts))  # fmt: skip
    await live.start()
    return live


async def start_agent_states(
    settings: Settings,
    server: AmiConfig,
    sessions: sessionmaker[Session],
    bridge: BridgeService,
    numbers: NumberRules,
) -> tuple[AgentStates | None, Wallboard | None]:
    """Agent states and the wallboard on the main server, unless off (and in the demo)."""
    if not settings.agent_states or settings.demo:
        return None, None
    states = AgentStates(
        server, sessions, settings.queue_member_interface, settings.queue_state_interface
    )
    wallboard = Wallboard(states, sessions, settings.zone, bridge.drain, numbers.to_e164)
    bridge.subscribe(wallboard.on_call_event)
    await states.start()
    await wallboard.start()
    return states, wallboard


async def start_routing(
    settings: Settings, sessions: sessionmaker[Session], agent_states: AgentStates | None
) -> Routing | None:
    """The FastAGI server of routing by customer value and of the satisfaction survey, unless
    off (and in the demo). A port already taken is logged and leaves routing off rather than
    the service down: the dialplan goes on to the plain queue without it, as when the bridge is
    away, and no customer is surveyed."""
    if not settings.routing or settings.demo:
        return None
    await asyncio.to_thread(survey_prompts.install_defaults, settings.greetings_dir)

    def agent_ready(extension: str) -> bool:
        """Logged in and ready; without agent states nobody is known to be."""
        return agent_states is not None and (
            agent_states.of(extension).status.state is AgentState.READY
        )

    routing = Routing(sessions, host=settings.routing_host, port=settings.routing_port,
                      zone=settings.zone, region=settings.number_region,
                      outside_line_prefix=settings.outside_line_prefix,
                      agent_ready=agent_ready,
                      scripts={SURVEY_SCRIPT: SurveyAnswers(sessions).answer})  # fmt: skip
    try:
        await routing.start()
    except OSError as exc:
        log.error("routing is off: FastAGI cannot listen on %s:%s (%s)",
                  settings.routing_host, settings.routing_port, exc.strerror)  # fmt: skip
        return None
    return routing


async def _stop(runtime: Runtime) -> None:
    if runtime.routing is not None:
        await runtime.routing.stop()
    if runtime.demo is not None:
        await runtime.demo.stop_replay()
    if runtime.campaigns is not None:
        await stop_runner(runtime.campaigns)
    if runtime.live_speech is not None:
        await runtime.live_speech.stop()
    if runtime.wallboard is not None:
        await runtime.wallboard.stop()
    if runtime.agent_states is not None:
        await runtime.agent_states.stop()
    await runtime.bridge.stop()
    if runtime.pop_relay is not None:
        await runtime.pop_relay.stop()
    await runtime.pops.stop()
    if runtime.demo is not None:
        await runtime.demo.stop()
    runtime.audience.close()
    runtime.sessions.kw["bind"].dispose()


def server_options(settings: Settings) -> dict[str, object]:
    """uvicorn's options that follow from the settings: forwarded headers are believed only
    from the proxies ``forwarded_allow_ips`` names (uvicorn alone would believe 127.0.0.1)."""
    proxies = settings.forwarded_allow_ips
    return {
        "log_config": None,
        "proxy_headers": bool(proxies),
        "forwarded_allow_ips": ",".join(proxies) if proxies else "",
    }
