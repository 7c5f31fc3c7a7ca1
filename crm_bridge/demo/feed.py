"""Demo mode: no Asterisk at hand, so the bridge is fed by the AMI simulator.

The simulator listens on loopback and replays the real recorded calls in a loop (renumbered so
every round makes new calls), over a real TCP socket, through the same AMI connection, tracker
and call log as production. The archive is seeded with generated customers that include the
callers of the recordings, so a new user sees known callers, an unknown caller and a family
phone shared by two customers.

So that a new user can sign in at once, :func:`ensure_demo_users` gives the demo one user of each
role (the agent holds the extensions the recorded calls ring) and one password made at random
for this run, which ``callbridge demo`` prints once. ``callbridge serve`` never does this.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from crm_bridge.accounts.users import create_user, find_user, set_password
from crm_bridge.db.engine import make_engine, make_session_factory
from crm_bridge.db.migrate import upgrade
from crm_bridge.demo.seed import seed_demo
from telephony.ami_connection import AmiConfig
from telephony.simulator import AmiSimulator
from telephony.trace_files import RECORDED_TRACES, load_trace

log = logging.getLogger(__name__)

TRACE_DIR = RECORDED_TRACES / "sip"
DEMO_ROUND = [
    "a_inbound_answered_1001",
    "d_outbound_return_visit_answered",
    "b_inbound_abandoned",
    "e1_outbound_busy",
    "c_inbound_1001_noanswer_1002_answers",
    "e2_outbound_noanswer",
    "h1_blind_transfer_1001_to_1002",
    "e3_outbound_congestion",
    "f_inbound_5_concurrent",
]
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


class DemoFeed:
    """Owns the simulator and the replay loop of the demo."""

    def __init__(self, sessions: sessionmaker[Session], speed: float = 1.0) -> None:
        self._sessions = sessions
        self._speed = speed
        self._secret = secrets.token_urlsafe(16)
        self._simulator = AmiSimulator(
            username="callbridge", secret=self._secret, traces_dir=TRACE_DIR
        )
        self._task: asyncio.Task | None = None
        self.rounds = 0

    async def start(self) -> AmiConfig:
        """Seed the archive, start the simulator; return the AMI settings that reach it."""
        added = await asyncio.to_thread(seed_demo, self._sessions)
        log.info("demo archive ready (%d customers added)", added)
        port = await self._simulator.start()
        return AmiConfig(
            name="demo", host="127.0.0.1", port=port, username="callbridge", secret=self._secret
        )

    def begin_replay(self) -> None:
        self._task = asyncio.create_task(self._replay_forever(), name="demo-replay")

    async def _replay_forever(self) -> None:
        traces = [load_trace(TRACE_DIR / f"{name}.ami") for name in DEMO_ROUND]
        while True:
            for trace in traces:
                await self._simulator.play(trace, speed=self._speed, renumber=True)
                await asyncio.sleep(PAUSE_BETWEEN_CALLS / self._speed)
            self.rounds += 1

    async def stop_replay(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def stop(self) -> None:
        await self._simulator.stop()
