"""The composition root: ``create_app(settings)`` builds everything; nothing is built at import.

The lifespan migrates the database, opens the engine, starts the bridge (one AMI connection and
tracker per Asterisk server) and, in the demo, the AMI simulator that feeds it recorded calls.
Tests build their own app with their own settings.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from functools import cached_property
from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, Histogram
from pydantic import BaseModel, BeforeValidator, ConfigDict
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from crm_bridge.accounts.auth import SessionRefreshMiddleware, api_access
from crm_bridge.accounts.routes import users_router
from crm_bridge.accounts.session_revocation import SessionRevocations
from crm_bridge.calls.bridge import BridgeService
from crm_bridge.calls.call_log import CallFilter, CallLog, NumberRules, list_calls
from crm_bridge.calls.cdr_reconcile import CdrReconciler
from crm_bridge.calls.journal import CallJournal
from crm_bridge.calls.recordings import RecordingsRoot
from crm_bridge.campaigns.pages import campaigns_router
from crm_bridge.campaigns.runner import CampaignRunner, start_runner, stop_runner
from crm_bridge.customers.numbers import PhoneKind, normalize_phone
from crm_bridge.db.engine import make_engine, make_session_factory
from crm_bridge.db.migrate import upgrade
from crm_bridge.db.models import Call, find_customers_by_phone
from crm_bridge.demo.feed import DemoFeed
from crm_bridge.live_speech.hub import LiveSpeechHub
from crm_bridge.live_speech.metrics import LiveSpeechCollector
from crm_bridge.live_speech.routes import live_speech_router
from crm_bridge.live_speech.service import LiveSpeech, LiveSpeechConfig
from crm_bridge.metrics import metrics_registry, metrics_router, pop_latency_histogram
from crm_bridge.pops.api import agent_api_router
from crm_bridge.pops.hub import PopHub, database_campaign_lookup, database_lookup
from crm_bridge.pops.page import agent_router
from crm_bridge.pops.work import calls_in_progress_when_known, notes_by_linkedid
from crm_bridge.settings import Settings
from crm_bridge.supervision.audit import audit_router
from crm_bridge.supervision.pages import supervisor_router
from crm_bridge.supervision.periodic import supervision_jobs
from crm_bridge.web.pages import MAX_ROW_ID, STATIC_DIR, RowId
from crm_bridge.web.request_guards import RequestGuardMiddleware
from crm_bridge.web.security_headers import SecurityHeadersMiddleware
from telephony.ami_connection import AmiConfig
from telephony.call_tracker import TrackerPolicy

if TYPE_CHECKING:  # psycopg (the relay's driver) is in the `postgres` extra only
    from crm_bridge.pops.relay import PopRelay

log = logging.getLogger(__name__)



@dataclass
class Runtime:
    """What the lifespan built; handlers reach it through ``request.app.state.runtime``."""

    settings: Settings
    sessions: sessionmaker[Session]
    numbers: NumberRules
    bridge: BridgeService
    pops: PopHub
    demo: DemoFeed | None = None
    campaigns: CampaignRunner | None = None
    pop_relay: PopRelay | None = None
    pop_latency: Histogram = field(default_factory=pop_latency_histogram)
    """Fed by ``pops`` (``on_pop_latency``)."""
    revocations: SessionRevocations = field(default_factory=SessionRevocations)
    """The open pop sockets of each user, closed when their sessions end."""
    live_speech: LiveSpeech | None = None

    @cached_property
    def metrics(self) -> CollectorRegistry:
        """This app's Prometheus metrics, read from the parts above at each scrape."""
        registry = metrics_registry(
            self.bridge, self.pops, self.sessions, self.pop_latency, self.pop_relay
        )
        if self.live_speech is not None:
            registry.register(LiveSpeechCollector(self.live_speech))
        return registry


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


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await _start(settings)
        app.state.runtime = runtime
        periodic = supervision_jobs(runtime.sessions, settings.recordings_dir)
        periodic.start()
        try:
            yield
        finally:
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
        app.include_router(_openapi_router())
    app.include_router(_health_router())
    app.include_router(_api_router())
    app.include_router(users_router())
    app.include_router(agent_api_router())
    app.include_router(agent_router())
    app.include_router(audit_router())
    app.include_router(supervisor_router())
    app.include_router(campaigns_router())
    app.include_router(metrics_router())
    app.include_router(live_speech_router())
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


async def _start(settings: Settings) -> Runtime:
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    numbers = NumberRules(settings.number_region, settings.outside_line_prefix)
    demo = None
    servers = ami_configs(settings)
    if settings.demo:
        demo = DemoFeed(sessions, speed=settings.demo_speed)
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
    await bridge.start()
    if demo is not None:
        await bridge.wait_connected(timeout=10)
        demo.begin_replay()
    campaigns = await start_runner(
        sessions, settings, servers[0], lambda: calls_in_progress_when_known(bridge)
    )
    return Runtime(
        settings,
        sessions,
        numbers,
        bridge,
        pops,
        demo,
        campaigns,
        pop_relay=pop_relay,
        pop_latency=pop_latency,
        live_speech=live_speech,
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


async def _stop(runtime: Runtime) -> None:
    if runtime.demo is not None:
        await runtime.demo.stop_replay()
    if runtime.campaigns is not None:
        await stop_runner(runtime.campaigns)
    if runtime.live_speech is not None:
        await runtime.live_speech.stop()
    await runtime.bridge.stop()
    if runtime.pop_relay is not None:
        await runtime.pop_relay.stop()
    await runtime.pops.stop()
    if runtime.demo is not None:
        await runtime.demo.stop()
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


def _openapi_router() -> APIRouter:
    """``GET /openapi.json`` (with ``api_docs``), for the API token or a supervisor or admin
    session. No Swagger UI or ReDoc page: both load their code from a CDN."""
    router = APIRouter(include_in_schema=False, dependencies=[Depends(api_access)])

    @router.get("/openapi.json")
    def openapi(request: Request) -> dict:
        return request.app.openapi()

    return router


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(runtime_of)]


# ------------------------------------------------------------------------------- health


def _health_router() -> APIRouter:
    router = APIRouter()

    @router.get("/health", summary="Database and AMI state")
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

    return router


# ------------------------------------------------------------------------------- API


def _not_a_number(value: object) -> object:
    """Refuses a number, which pydantic would read as seconds since 1970: the API documents
    ISO 8601 dates and times only."""
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return value
        raise ValueError("expected an ISO 8601 date and time, not a number")
    return value


IsoMoment = Annotated[datetime, BeforeValidator(_not_a_number)]


class CallOut(BaseModel):
    """One call of the call log (the documented, stable shape)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    linkedid: str
    server: str
    direction: Literal["inbound", "outbound"]
    caller: str | None
    caller_name: str | None
    callee: str | None
    queue: str | None
    agent: str | None
    disposition: Literal["answered", "abandoned", "busy", "no_answer", "failed"] | None
    hangup_cause: int | None
    hangup_cause_text: str | None
    offered_at: datetime | None
    answered_at: datetime | None
    ended_at: datetime | None
    wait_seconds: float | None
    talk_seconds: float | None
    customer_id: int | None
    campaign: str | None
    transferred_to: str | None
    end_reason: str | None
    reconciled: bool = False
    """Logged from Asterisk's own records after callbridge was down (not watched live)."""
    wrapup_code: str | None = None
    """The agent's wrap-up code (see ``POST /me/calls/{linkedid}/wrapup``)."""
    note: str | None = None


def _utc(moment: datetime | None, name: str, zone: tzinfo) -> datetime | None:
    """A query's moment in UTC, one without an offset read in the center's zone; 422 for one
    that has no UTC form (past the year 9999 or before the year 1 once converted)."""
    if moment is None:
        return None
    try:
        return (moment if moment.tzinfo else moment.replace(tzinfo=zone)).astimezone(UTC)
    except OverflowError:
        error = {"type": "value_error", "loc": ("query", name), "msg": "Date out of range"}
        raise RequestValidationError([error]) from None


def _calls_out(session: Session, rows: list[Call]) -> list[CallOut]:
    """The calls with the agent's wrap-up code and note, read in one more query."""
    notes = notes_by_linkedid(session, [row.linkedid for row in rows])
    out = []
    for row in rows:
        call = CallOut.model_validate(row)
        if (note := notes.get(row.linkedid)) is not None:
            call.wrapup_code, call.note = note.wrapup_code, note.note
        out.append(call)
    return out


class CallPage(BaseModel):
    total: int
    limit: int
    offset: int
    calls: list[CallOut]


class PhoneOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    number_e164: str
    kind: str


class CustomerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    card_no: str
    name: str
    gender: str | None
    vip_level: str | None
    employer: str | None
    department: str | None
    phones: list[PhoneOut]


class CustomerMatch(BaseModel):
    query: str
    number: str | None
    kind: str
    customers: list[CustomerOut]


def _api_router() -> APIRouter:
    router = APIRouter(prefix="/api", dependencies=[Depends(api_access)])

    @router.get("/calls", summary="The call log, newest first")
    def get_calls(
        runtime: RuntimeDep,
        since: Annotated[
            IsoMoment | None,
            Query(description="offered at or after (ISO 8601; no offset: the center's zone)"),
        ] = None,
        until: Annotated[
            IsoMoment | None,
            Query(description="offered before (ISO 8601; no offset: the center's zone)"),
        ] = None,
        number: Annotated[str | None, Query(description="caller or callee, any form")] = None,
        agent: Annotated[str | None, Query(max_length=64)] = None,
        disposition: Literal["answered", "abandoned", "busy", "no_answer", "failed"] | None = None,
        direction: Literal["inbound", "outbound"] | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_ROW_ID)] = 0,
    ) -> CallPage:
        flt = CallFilter(
            since=_utc(since, "since", runtime.settings.zone),
            until=_utc(until, "until", runtime.settings.zone),
            number=runtime.numbers.to_e164(number) if number else None,
            agent=agent,
            disposition=disposition,
            direction=direction,
        )
        with runtime.sessions() as session:
            rows, total = list_calls(session, flt, limit, offset)
            calls = _calls_out(session, rows)
        return CallPage(total=total, limit=limit, offset=offset, calls=calls)

    @router.get("/calls/{call_id}", summary="One call")
    def get_call(call_id: RowId, runtime: RuntimeDep) -> CallOut:
        with runtime.sessions() as session:
            row = session.get(Call, call_id)
            if row is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such call")
            return _calls_out(session, [row])[0]

    @router.get("/customers", summary="Customers by phone number (any form: +86, 0086, area code)")
    def get_customers(
        runtime: RuntimeDep, phone: Annotated[str, Query(min_length=1, max_length=64)]
    ) -> CustomerMatch:
        number = normalize_phone(phone, runtime.numbers.region, runtime.numbers.outside_line_prefix)
        if number.kind is not PhoneKind.E164:
            return CustomerMatch(query=phone, number=None, kind=str(number.kind), customers=[])
        with runtime.sessions() as session:
            found = find_customers_by_phone(session, number.e164)
            customers = [CustomerOut.model_validate(c) for c in found]
        return CustomerMatch(query=phone, number=number.e164, kind="e164", customers=customers)

    return router
