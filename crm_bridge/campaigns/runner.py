"""The campaign scheduler loop: every tick it looks at the running campaigns in the database
and dials the targets that may be dialled now.

State lives in the database only (see :mod:`crm_bridge.campaigns.store`), so a runner can be
stopped at any moment and another started on the same database:

- each target is checked again at the moment of dialling (:func:`claim_attempt` re-runs the
  dial decision) and its attempt is committed under its unique key before the Originate;
- just before sending (after the dialer's pace), the campaign must still be running, else the
  attempt is withdrawn: a pause or stop takes effect within a tick (:data:`TICK_SECONDS`);
- attempts a previous run left without outcome are settled from the call log, or as ``lost``
  after the grace period (:func:`reconcile_unresolved`); they are never simply dialled again.
  Nothing is settled as lost while the bridge is not in step with Asterisk (just started, or
  reconnecting): a call still in progress would then look like one that never happened, and
  its customer would be dialled again while still on the line.

Message campaigns play the scheduler's greeting (answered only once the dialplan reports it
played: :mod:`telephony.dialer`) to a person, and to an answering machine after its beep or
not at all, as ``CC_ON_MACHINE`` says (the campaign's ``on_machine``); agent campaigns put
the customer through to the agents' queue (``CC_MODE`` in
``dialplans/extensions_callbridge.conf``); preview
campaigns are dialled by an agent's click (``crm_bridge/campaigns/pages.py``), and the runner
only settles their attempts from the call log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

import phonenumbers
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from crm_bridge.campaigns import store as store
from crm_bridge.campaigns.dial_decision import PolicyIn
from crm_bridge.customers.numbers import mask_phone
from crm_bridge.db.models import Campaign
from crm_bridge.settings import Settings
from telephony.ami_codec import UnsafeAmiValue
from telephony.ami_connection import (
    AmiActionLost,
    AmiActionTimeout,
    AmiConfig,
    AmiNotConnected,
)
from telephony.dialer import Dialer, DialWithdrawn, OriginateRefused, OriginateRequest

log = logging.getLogger(__name__)

TICK_SECONDS = 0.25
FAILURE_REPORT_SECONDS = 60.0
CAMPAIGN_CONTEXT = "outbound-campaign"
TRUNK = "carrier"
CALLER_ID = "4008001234"
"""The center's number the customer sees (the trunk may override it)."""
GREETING_SOUNDS = "callbridge/greetings"
"""Where Asterisk finds the uploaded greetings, relative to its sounds folder (mount or copy
``<data_dir>/greetings`` there)."""
DIALLED_MODES = ("message", "agent")


def dial_string(e164: str, region: str) -> str:
    """The number as the trunk dials it: national form at home (``13900000001``,
    ``01012345678``), ``00`` + country code abroad."""
    number = phonenumbers.parse(e164)
    if phonenumbers.region_code_for_number(number) == region:
        national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
        return "".join(ch for ch in national if ch.isdigit())
    return "00" + e164.removeprefix("+")


def campaign_request(
    campaign: Campaign, ticket: store.Ticket, region: str, ring_seconds: float = 30.0
) -> OriginateRequest:
    variables = {
        "CAMPAIGN": str(campaign.id),
        "CUSTOMER_ID": str(ticket.customer_id),
        "CC_MODE": campaign.mode,
    }
    if campaign.greeting_file:
        stem = campaign.greeting_file.rsplit(".", 1)[0]
        variables["CC_GREETING"] = f"{GREETING_SOUNDS}/{stem}"
    if campaign.mode == "message":
        variables["CC_ON_MACHINE"] = PolicyIn.model_validate(campaign.policy or {}).on_machine
    return OriginateRequest(
        channel=f"PJSIP/{dial_string(ticket.number_e164, region)}@{TRUNK}",
        context=CAMPAIGN_CONTEXT,
        exten="birthday" if campaign.kind == "birthday" else "return-visit",
        channel_id=ticket.channel_id,
        action_id=ticket.action_id,
        caller_id=CALLER_ID,
        timeout_ms=round(ring_seconds * 1000),
        variables=variables,
        plays_greeting=campaign.mode == "message",
    )


class CampaignRunner:
    """The loop; ``start()`` from the app's lifespan, ``stop()`` at shutdown."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        dialer: Dialer,
        *,
        center_timezone: str,
        region: str,
        grace: timedelta = store.UNRESOLVED_GRACE,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        calls_in_progress: Callable[[], Iterable[str] | None] = frozenset,
        ring_seconds: float = 30.0,
    ) -> None:
        self.sessions = sessions
        self.dialer = dialer
        self.center_timezone = center_timezone
        self.region = region
        self.grace = grace
        self.ring_seconds = ring_seconds
        self.clock = clock
        self.calls_in_progress = calls_in_progress
        """The Linkedids of the calls not yet logged (in progress, or ended and waiting for their
        write): their attempts wait; None while they are not known (then no attempt is settled
        as lost)."""
        self._in_flight: set[int] = set()
        self._calls: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="campaign-runner")

    async def stop(self) -> None:
        """Stop looking for targets; calls already placed are left to Asterisk (their
        outcomes reach the call log and are settled by the next run)."""
        tasks = [t for t in (self._task, *self._calls) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None

    async def run(self) -> None:
        """Tick until cancelled. A failing tick (the database away) is logged in full once,
        then once a minute while it keeps failing, not four times a second."""
        failing_since: float | None = None
        last_report = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self.tick()
                if failing_since is not None:
                    log.info("campaign ticks work again")
                    failing_since = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if failing_since is None:
                    failing_since = last_report = loop.time()
                    log.exception("campaign tick failed; retrying every %.2f s", TICK_SECONDS)
                elif loop.time() - last_report >= FAILURE_REPORT_SECONDS:
                    last_report = loop.time()
                    log.error(
                        "campaign ticks failing for %.0f s: %s",
                        last_report - failing_since,
                        type(exc).__name__,
                    )
            await asyncio.sleep(TICK_SECONDS)

    async def tick(self) -> None:
        """Settle what a previous run left, then dial what may be dialled now."""
        if not self.dialer.connected:
            return
        now = self.clock()
        in_progress = self.calls_in_progress()
        if in_progress is not None:
            await asyncio.to_thread(
                store.reconcile_unresolved,
                self.sessions,
                now,
                self.center_timezone,
                set(self._in_flight),
                self.grace,
                frozenset(in_progress),
            )
        for campaign_id in await asyncio.to_thread(self._running_ids):
            room = self.dialer.max_concurrent - len(self._in_flight)
            if room <= 0:
                return
            await self._dial_some(campaign_id, room, now)

    def _running_ids(self) -> list[int]:
        with self.sessions.begin() as session:
            ids = list(
                session.scalars(
                    select(Campaign.id)
                    .where(Campaign.status == "running", Campaign.mode.in_(DIALLED_MODES))
                    .order_by(Campaign.id)
                )
            )
            now = self.clock()
            return [cid for cid in ids if not store.finish_if_done(session, cid, now)]

    async def _dial_some(self, campaign_id: int, room: int, now: datetime) -> None:
        def due() -> list[int]:
            with self.sessions() as session:
                return store.due_target_ids(session, campaign_id, now, room)

        for target_id in await asyncio.to_thread(due):
            if len(self._in_flight) >= self.dialer.max_concurrent:
                return
            ticket = await asyncio.to_thread(
                store.claim_attempt, self.sessions, target_id, now, self.center_timezone
            )
            if ticket is None:
                continue
            self._in_flight.add(ticket.attempt_id)
            task = asyncio.create_task(self._place(ticket))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)

    async def _place(self, ticket: store.Ticket) -> None:
        try:
            campaign = await asyncio.to_thread(self._campaign, ticket.campaign_id)
            request = campaign_request(campaign, ticket, self.region, self.ring_seconds)
            outcome, reason = await self.dialer.dial(
                request, still_wanted=lambda: self._still_running(ticket.campaign_id)
            )
        except DialWithdrawn:
            await asyncio.to_thread(store.withdraw_attempt, self.sessions, ticket.attempt_id)
            self._in_flight.discard(ticket.attempt_id)
            return
        except OriginateRefused as exc:
            log.warning("campaign call %s refused: %s", ticket.action_id, exc)
            outcome, reason = "failed", "refused"
        except UnsafeAmiValue as exc:  # nothing sent: a value Asterisk would misread
            log.warning("campaign call %s not sent: %s", ticket.action_id, exc)
            outcome, reason = "failed", store.UNSAFE_REASON
        except AmiNotConnected:
            outcome, reason = "lost", None  # nothing was sent
        except (AmiActionTimeout, AmiActionLost):
            # it may have been placed: left to the call log and the grace period
            self._in_flight.discard(ticket.attempt_id)
            return
        try:
            await asyncio.to_thread(
                store.record_outcome,
                self.sessions,
                ticket.attempt_id,
                outcome,
                self.clock(),
                self.center_timezone,
                reason,
            )
            log.info("campaign %s called %s: %s", ticket.campaign_id,
                     mask_phone(ticket.number_e164), outcome)  # fmt: skip
        finally:
            self._in_flight.discard(ticket.attempt_id)

    def _campaign(self, campaign_id: int) -> Campaign:
        with self.sessions() as session:
            campaign = session.get(Campaign, campaign_id)
            assert campaign is not None
            return campaign

    async def _still_running(self, campaign_id: int) -> bool:
        def status() -> str | None:
            with self.sessions() as session:
                return session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))

        return await asyncio.to_thread(status) == "running"


async def start_runner(
    sessions: sessionmaker[Session],
    settings: Settings,
    server: AmiConfig,
    calls_in_progress: Callable[[], Iterable[str] | None] = frozenset,
) -> CampaignRunner:
    """The runner of the app: its dialer on its own AMI session to ``server`` (call events,
    system for FullyBooted and Shutdown, and user events for the greeting's report), capped and
    paced by the settings."""
    dialer = Dialer(
        dataclasses.replace(server, events="call,system,user", purpose="dialer"),
        max_concurrent=settings.campaign_max_concurrent,
        calls_per_second=settings.campaign_calls_per_second,
    )
    await dialer.start()
    runner = CampaignRunner(
        sessions,
        dialer,
        center_timezone=settings.timezone,
        region=settings.number_region,
        grace=timedelta(seconds=settings.campaign_unresolved_grace_seconds),
        calls_in_progress=calls_in_progress,
        ring_seconds=settings.campaign_ring_seconds,
    )
    await runner.start()
    return runner


async def stop_runner(runner: CampaignRunner) -> None:
    await runner.stop()
    await runner.dialer.stop()
