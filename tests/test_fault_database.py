"""The database goes away for a few seconds while calls end: none is lost, none written twice.

PostgreSQL is reached through a TCP relay on loopback that the test can cut: while it is cut,
every open connection is reset and new ones are refused, as when the database server restarts
or the network between the two drops. Calls keep arriving from the AMI simulator meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from crm_bridge.calls.bridge import BridgeService
from crm_bridge.calls.call_log import CallLog, NumberRules
from crm_bridge.db.engine import make_engine, make_session_factory
from crm_bridge.db.migrate import upgrade
from crm_bridge.db.models import Call
from telephony.ami_connection import AmiConfig
from telephony.call_tracker import TrackerPolicy
from telephony.simulator import AmiSimulator
from telephony.trace_files import RECORDED_TRACES, load_trace

pytestmark = pytest.mark.postgres

SECRET = "fault-test-secret"


class CuttableRelay:
    """A TCP relay to ``target`` that can be cut (connections reset, new ones refused)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0
        self.up = True

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        self.up = False
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.up = True

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers |= {writer, up_writer}
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()


async def _play(simulator: AmiSimulator, names: list[str]) -> None:
    for name in names:
        await simulator.play(load_trace(RECORDED_TRACES / "sip" / f"{name}.ami"), speed=20)


async def test_calls_that_end_while_the_database_is_away_are_written_once_it_is_back(
    pg_url, caplog
):
    upgrade(pg_url)
    target = make_url(pg_url)
    relay = CuttableRelay(target.host or "127.0.0.1", target.port or 5432)
    await relay.start()
    relayed_url = target.set(host="127.0.0.1", port=relay.port).render_as_string(
        hide_password=False
    )
    engine = make_engine(relayed_url)
    sessions = make_session_factory(engine)
    before = ["a_inbound_answered_1001", "e1_outbound_busy"]
    during = ["b_inbound_abandoned", "f_inbound_5_concurrent", "e2_outbound_noanswer"]
    after = ["d_outbound_return_visit_answered"]
    try:
        async with AmiSimulator(username="bridge", secret=SECRET) as simulator:
            config = AmiConfig(
                name="pbx", host="127.0.0.1", port=simulator.port, username="bridge", secret=SECRET
            )
            bridge = BridgeService([config], CallLog(sessions, NumberRules("CN")), TrackerPolicy())
            await bridge.start()
            assert await bridge.wait_connected(timeout=10)
            await _play(simulator, before)
            await bridge.drain()

            relay.cut()
            await _play(simulator, during)  # 7 calls end with no database to write them to
            await asyncio.sleep(3)
            relay.restore()
            await _play(simulator, after)
            await asyncio.wait_for(bridge.drain(), timeout=60)
            await bridge.stop()
    finally:
        await relay.stop()
        engine.dispose()

    direct = make_engine(pg_url)
    try:
        with make_session_factory(direct)() as session:
            total = session.scalar(select(func.count()).select_from(Call))
            distinct = session.scalar(select(func.count(func.distinct(Call.linkedid))))
            abandoned = session.scalar(
                select(func.count()).select_from(Call).where(Call.disposition == "abandoned")
            )
    finally:
        direct.dispose()
    assert "database unavailable" in caplog.text  # the outage was felt, and ridden out
    assert total == distinct == 2 + 7 + 1
    assert abandoned >= 1
