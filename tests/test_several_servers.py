"""Several Asterisk servers at once, each over its own real socket: one app, one simulator per
server, each replaying recorded traces.

Every server replays the same trace files, as two PBXes of one center carry the same kinds of
calls. Asterisk makes its ids unique across servers only when each one has its own
``systemname`` in ``asterisk.conf`` (ids then read ``pbx2-1795346712.954``); :func:`as_system`
gives a replay those ids. Without it the same Linkedid can come from two servers, and the call
log, keyed by Linkedid, keeps the first (see the README, "Several Asterisk servers").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi import FastAPI

from crm_bridge.app import create_app
from crm_bridge.settings import Settings
from telephony.simulator import AmiSimulator
from telephony.trace_files import ID_VALUE, RECORDED_TRACES, load_trace, renumber

TOKEN = "several-servers-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRETS = {"default": "secret-of-pbx-one", "pbx2": "secret-of-pbx-two", "pbx3": "secret-of-pbx-3"}
SYSTEMNAMES = {"default": "pbx1", "pbx2": "pbx2", "pbx3": "pbx3"}
"""The ``systemname`` each simulated server puts in front of its ids."""
WAIT = 20.0
"""How long a state the test waits for may take before it fails (not a speed check)."""


def trace_events(name: str) -> list[dict[str, str]]:
    return list(load_trace(RECORDED_TRACES / "sip" / f"{name}.ami").call_events)


def as_system(events: Sequence[Mapping[str, str]], systemname: str, offset: int) -> list[dict]:
    """The events as a server with this ``systemname`` sends them: fresh ids (``offset``
    keeps replays on one server apart) with the name in front, timestamps moved to now."""
    fresh = renumber(events, offset, start_at=time.time())
    ids = {
        value
        for event in fresh
        for key, value in event.items()
        if key.lower().endswith(("uniqueid", "linkedid")) and ID_VALUE.match(value)
    }
    return renumber(fresh, 0, fixed_ids={i: f"{systemname}-{i}" for i in ids})


def replay_of(name: str, server: str, offset: int) -> list[dict]:
    """Trace ``name`` as ``server`` sends it (its own systemname, ``offset`` for a fresh
    replay on one server)."""
    return as_system(trace_events(name), SYSTEMNAMES[server], offset)


def linkedid_of(events: Sequence[Mapping[str, str]]) -> str:
    """The Linkedid of a one-call trace."""
    return next(event["Linkedid"] for event in events if "Linkedid" in event)


@dataclass
class Center:
    """The app watching one simulator per server, and an HTTP client on it."""

    app: FastAPI
    client: httpx.AsyncClient
    simulators: dict[str, AmiSimulator]

    async def health(self) -> dict:
        return (await self.client.get("/health")).json()

    async def states(self) -> dict[str, str]:
        return {s["server"]: s["state"] for s in (await self.health())["ami"]}

    async def calls(self) -> list[dict]:
        body = (await self.client.get("/api/calls", params={"limit": 500}, headers=AUTH)).json()
        return body["calls"]

    async def play(self, server: str, events: Sequence[Mapping[str, str]]) -> None:
        await self.simulators[server].play_events(events, speed=0, renumber=False)

    async def play_trace(self, server: str, name: str, offset: int) -> None:
        await self.play(server, replay_of(name, server, offset))


async def until(condition, what: str) -> None:
    """Wait until ``await condition()`` is true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"never reached: {what}")
        await asyncio.sleep(0.05)


@asynccontextmanager
async def center(
    tmp_path: Path, servers: Sequence[str], secrets: Mapping[str, str] = SECRETS
) -> AsyncIterator[Center]:
    """The app with ``servers`` (the first is the main ``ami_*`` one); each simulator accepts
    ``SECRETS[name]`` and the app logs in with ``secrets[name]``."""
    async with AsyncExitStack() as stack:
        simulators = {}
        for name in servers:
            simulator = AmiSimulator(
                username="bridge", secret=SECRETS[name], login_failure_delay=0.1
            )
            simulators[name] = await stack.enter_async_context(simulator)
        main, *others = servers
        settings = Settings(
            data_dir=tmp_path,
            ami_port=simulators[main].port,
            ami_username="bridge",
            ami_secret=secrets[main],
            ami_servers=[
                {
                    "name": name,
                    "host": "127.0.0.1",
                    "port": simulators[name].port,
                    "username": "bridge",
                    "secret": secrets[name],
                }
                for name in others
            ],
            api_token=TOKEN,
            secret_key="a-test-secret-key-of-some-length",
        )
        app = create_app(settings)
        await stack.enter_async_context(app.router.lifespan_context(app))
        transport = httpx.ASGITransport(app=app)
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url="http://test")
        )
        yield Center(app, client, simulators)


def by_server(calls: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for call in calls:
        grouped.setdefault(call["server"], []).append(call)
    return grouped


async def all_connected(site: Center) -> bool:
    return set((await site.states()).values()) == {"connected"}


# ------------------------------------------------------------------------------- tests


async def test_three_servers_replaying_the_same_traces_log_each_call_once(tmp_path):
    servers = ("default", "pbx2", "pbx3")
    async with center(tmp_path, servers) as site:
        await until(lambda: all_connected(site), "every server connected")
        health = await site.health()
        assert [s["server"] for s in health["ami"]] == list(servers)
        assert health["status"] == "ok"

        await asyncio.gather(
            *(site.play_trace(name, "a_inbound_answered_1001", 1) for name in servers),
            *(site.play_trace(name, "f_inbound_5_concurrent", 2) for name in servers),
        )

        async def all_logged() -> bool:
            return len(await site.calls()) >= 3 * 6

        await until(all_logged, "18 calls logged")
        calls = await site.calls()
        health = await site.health()

    assert len(calls) == len({c["linkedid"] for c in calls}) == 18
    grouped = by_server(calls)
    assert sorted(grouped) == sorted(servers)
    for name, own in grouped.items():
        assert len(own) == 6
        assert all(c["linkedid"].startswith(f"{SYSTEMNAMES[name]}-") for c in own)
        answered_by_1001 = [c for c in own if c["caller"] == "+8613800138000"]
        assert len(answered_by_1001) == 1 and answered_by_1001[0]["agent"] == "1001"
    assert all(s["calls_in_flight"] == 0 for s in health["ami"])


async def test_one_server_going_away_leaves_the_other_flowing(tmp_path):
    async with center(tmp_path, ("default", "pbx2")) as site:
        await until(lambda: all_connected(site), "both servers connected")
        pbx1, pbx2 = site.simulators["default"], site.simulators["pbx2"]
        held = replay_of("a_inbound_answered_1001", "pbx2", 1)
        half = len(held) // 2
        await site.play("pbx2", held[:half])

        async def pbx2_holds_a_call() -> bool:
            return (await site.health())["ami"][1]["calls_in_flight"] == 1

        await until(pbx2_holds_a_call, "pbx2's call in flight")

        await pbx2.stop()  # the server is gone: sockets reset, connections refused

        async def only_pbx2_down() -> bool:
            states = await site.states()
            return states["default"] == "connected" and states["pbx2"] != "connected"

        await until(only_pbx2_down, "pbx2 down, default connected")
        assert (await site.health())["status"] == "degraded"
        await site.play_trace("default", "a_inbound_answered_1001", 1)
        await site.play_trace("default", "b_inbound_abandoned", 2)

        async def pbx1_logged() -> bool:
            return len(by_server(await site.calls()).get("default", [])) == 2

        await until(pbx1_logged, "default's two calls logged while pbx2 is down")
        assert not pbx2.listening

        await pbx2.start()  # back on the same port, its channels still up
        await until(lambda: all_connected(site), "pbx2 connected again")
        await site.play("pbx2", held[half:])

        # now the default server restarts (channels gone) in the middle of a call, while
        # pbx2 carries on
        cut = replay_of("c_inbound_1001_noanswer_1002_answers", "default", 3)
        await site.play("default", cut[: len(cut) // 2])

        async def pbx1_holds_a_call() -> bool:
            return (await site.health())["ami"][0]["calls_in_flight"] == 1

        await until(pbx1_holds_a_call, "default's call in flight")
        restart = asyncio.create_task(pbx1.restart(down_seconds=0.5))
        await site.play_trace("pbx2", "e1_outbound_busy", 2)
        await restart

        async def everything_logged() -> bool:
            return len(await site.calls()) == 5

        await until(everything_logged, "five calls logged")
        await until(lambda: all_connected(site), "both servers connected at the end")
        grouped = by_server(await site.calls())

    default = {c["linkedid"]: c for c in grouped["default"]}
    pbx2_calls = {c["linkedid"]: c for c in grouped["pbx2"]}
    assert len(default) == 3 and len(pbx2_calls) == 2
    assert all(linkedid.startswith("pbx1-") for linkedid in default)
    assert all(linkedid.startswith("pbx2-") for linkedid in pbx2_calls)
    # the call pbx2 held while it was away resumed and ended normally after the reconnect
    resumed = pbx2_calls[linkedid_of(held)]
    assert resumed["disposition"] == "answered"
    assert resumed["end_reason"] != "lost_while_disconnected"
    assert {c["disposition"] for c in pbx2_calls.values()} == {"answered", "busy"}
    # the call the restart cut is closed as cut by it, on its own server only
    assert default[linkedid_of(cut)]["end_reason"] == "pbx_restart"
    assert [c for c in pbx2_calls.values() if c["end_reason"] == "pbx_restart"] == []


async def test_a_wrong_secret_fails_that_server_only(tmp_path):
    secrets = {**SECRETS, "pbx2": "not-the-secret-of-pbx-two"}
    async with center(tmp_path, ("default", "pbx2"), secrets) as site:

        async def pbx2_refused() -> bool:
            states = await site.states()
            return states == {"default": "connected", "pbx2": "auth_failed"}

        await until(pbx2_refused, "default connected, pbx2 auth_failed")
        await site.play_trace("default", "a_inbound_answered_1001", 1)

        async def logged() -> bool:
            return len(await site.calls()) == 1

        await until(logged, "default's call logged")
        health = await site.client.get("/health")
        (call,) = await site.calls()
        pbx2 = site.simulators["pbx2"]

    assert call["server"] == "default" and call["agent"] == "1001"
    assert health.json()["status"] == "degraded"
    assert pbx2.logins == 0
    assert SECRETS["pbx2"] not in health.text and secrets["pbx2"] not in health.text
