"""Demo mode: no Asterisk at hand, so the bridge is fed by the AMI simulator.

The simulator listens on loopback and replays the real recorded calls in a loop (renumbered so
every round makes new calls), over a real TCP socket, through the same AMI connection, tracker
and call log as production. The archive is seeded with generated customers that include the
callers of the recordings. Every recorded inbound call is 张三's, so some replays give the call
another caller (:data:`DEMO_ROUND`): a new user sees a known caller, an unknown one (the form
that adds a customer), a family phone shared by two customers (the chooser), a withheld number,
an abandoned call, the outbound results, and the watch word said on a call. The agent's preview
dials from ``/me/campaigns`` ring their phone first, as on a real PBX (the simulator plays the
kit's recorded click-to-call for them), and the customer's answer pops the return-visit form.

Each call's recording is written where the call reports it before the call is replayed
(:mod:`crm_bridge.demo.recordings`); with ``CALLBRIDGE_VOSK_MODEL`` set, the real speech
worker transcribes them (:mod:`crm_bridge.demo.transcribing`).

So that a new user can sign in at once, :func:`ensure_demo_users` gives the demo one user of each
role (the agent holds the extensions the recorded calls ring) and one password made at random
for this run, which ``callbridge demo`` prints once. ``callbridge serve`` never does this.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

from crm_bridge.accounts.users import create_user, find_user, set_password
from crm_bridge.calls.recordings import RecordingsRoot
from crm_bridge.db.engine import make_engine, make_session_factory
from crm_bridge.db.migrate import upgrade
from crm_bridge.demo.recordings import (
    OUTBOUND_STAND_IN,
    spoken_sentence,
    trace_audio,
    write_recordings,
)
from crm_bridge.demo.seed import seed_demo, seed_demo_work
from crm_bridge.settings import Settings
from telephony.ami_connection import AmiConfig
from telephony.simulator import AGENT_FIRST_TRACE, AmiSimulator, with_caller
from telephony.trace_files import RECORDED_TRACES, Trace, load_trace, without_session_events

if TYPE_CHECKING:  # its module loads Vosk, imported only when a model is set
    from crm_bridge.demo.transcribing import DemoTranscription

log = logging.getLogger(__name__)

TRACE_DIR = RECORDED_TRACES / "sip"
UNKNOWN_CALLER = "13912345678"
"""In no customer's card (the seed leaves 139 numbers to the traces, and this is none of them)."""
FAMILY_PHONE = "13700137000"
"""The home phone 李四 and 李小四 share (``crm_bridge/demo/seed.py``)."""
WITHHELD = "anonymous"
NO_NAME = "<unknown>"
"""What Asterisk shows for a caller who sent no name."""


@dataclass(frozen=True)
class DemoCall:
    """One replay of the round: a recorded trace, maybe with another caller."""

    trace: str
    caller: tuple[str, str] | None = None
    """(number, name) the call is given instead of the recorded 张三's."""
    says_watch_word: bool = False
    """Its recording is the real sentence holding the watch word, not the trace's sound."""


DEMO_ROUND = (
    DemoCall("a_inbound_answered_1001", says_watch_word=True),
    DemoCall("d_outbound_return_visit_answered"),
    DemoCall("a_inbound_answered_1001", caller=(UNKNOWN_CALLER, NO_NAME)),
    DemoCall("b_inbound_abandoned"),
    DemoCall("c_inbound_1001_noanswer_1002_answers", caller=(FAMILY_PHONE, NO_NAME)),
    DemoCall("e1_outbound_busy"),
    DemoCall("h1_blind_transfer_1001_to_1002", caller=(WITHHELD, "Anonymous")),
    DemoCall("e2_outbound_noanswer"),
    DemoCall("e3_outbound_congestion"),
    DemoCall("f_inbound_5_concurrent"),
)
PAUSE_BETWEEN_CALLS = 3.0


@dataclass(frozen=True)
class DemoUser:
    username: str
    role: str
    extensions: tuple[str, ...] = ()


DEMO_USERS = (
    DemoUser("agent", "agent", ("1001", "1002")),
    DemoUser("supervisor", "supervisor"),
    DemoUser("scheduler", "scheduler"),
    DemoUser("admin", "admin"),
)
"""The demo's users; the agent answers on the extensions the calls of ``DEMO_ROUND`` ring."""


def new_demo_password() -> str:
    return secrets.token_urlsafe(12)


def ensure_demo_users(database_url: str, password: str) -> tuple[DemoUser, ...]:
    """Create the demo users that are missing and give every one of them ``password`` (a user
    left from an earlier demo run gets this run's password, so the printed one always works)."""
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine).begin() as session:
            for demo_user in DEMO_USERS:
                user = find_user(session, demo_user.username)
                if user is None:
                    create_user(
                        session, demo_user.username, password, demo_user.role, demo_user.extensions
                    )
                else:
                    set_password(session, user, password)
    finally:
        engine.dispose()
    return DEMO_USERS


def round_events(call: DemoCall, trace: Trace) -> list[dict[str, str]]:
    """The call events of one replay of the round, before renumbering."""
    events = without_session_events(trace.events)
    return with_caller(events, *call.caller) if call.caller else events


class DemoFeed:
    """Owns the simulator, the replay loop and the speech worker of the demo."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings
        self._speed = settings.demo_speed
        self._secret = secrets.token_urlsafe(16)
        self._recordings = RecordingsRoot(settings.recordings_dir, settings.pbx_recordings_dir)
        self._simulator = AmiSimulator(
            username="callbridge",
            secret=self._secret,
            traces_dir=TRACE_DIR,
            agent_first_trace=AGENT_FIRST_TRACE,
            on_originate=self._record_dialled_call,
        )
        self._task: asyncio.Task | None = None
        self._transcription: DemoTranscription | None = None
        self.rounds = 0

    async def start(self) -> AmiConfig:
        """Seed the archive, start the simulator; return the AMI settings that reach it."""
        added = await asyncio.to_thread(seed_demo, self._sessions)
        log.info("demo archive ready (%d customers added)", added)
        settings = self._settings
        await asyncio.to_thread(seed_demo_work, self._sessions, settings.zone,
                                settings.number_region, settings.demo_language)  # fmt: skip
        port = await self._simulator.start()
        return AmiConfig(
            name="demo", host="127.0.0.1", port=port, username="callbridge", secret=self._secret
        )

    def begin_replay(self) -> None:
        self._start_transcription()
        self._task = asyncio.create_task(self._replay_forever(), name="demo-replay")

    def _start_transcription(self) -> None:
        model = self._settings.vosk_model
        if model is None:
            log.info("demo: no speech model (CALLBRIDGE_VOSK_MODEL), recordings not transcribed")
            return
        from crm_bridge.demo.transcribing import DemoTranscription  # loads Vosk: only then

        self._transcription = DemoTranscription(
            self._sessions, self._recordings, model, self._settings.demo_language
        )
        self._transcription.start()

    def _audio(self, call: DemoCall) -> Path:
        if call.says_watch_word:
            return spoken_sentence(self._settings.demo_language)
        return trace_audio(call.trace)

    async def _replay_forever(self) -> None:
        traces = {call.trace: load_trace(TRACE_DIR / f"{call.trace}.ami") for call in DEMO_ROUND}
        while True:
            for call in DEMO_ROUND:
                events = self._simulator.renumbered(round_events(call, traces[call.trace]))
                await asyncio.to_thread(
                    write_recordings, self._recordings, events, self._audio(call)
                )
                await self._simulator.play_events(events, speed=self._speed, renumber=False)
                await asyncio.sleep(PAUSE_BETWEEN_CALLS / self._speed)
            self.rounds += 1

    def _record_dialled_call(self, events: list[dict[str, str]]) -> None:
        """A call the demo's users placed (a preview dial, a click-to-call) records too."""
        write_recordings(self._recordings, events, OUTBOUND_STAND_IN)

    async def stop_replay(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._transcription is not None:
            await asyncio.to_thread(self._transcription.stop)

    async def stop(self) -> None:
        await self._simulator.stop()
