"""Screen pops over the whole spine, on real sockets: AMI simulator -> bridge -> PopHub ->
uvicorn -> the ``websockets`` client, signed in through the real sign-in form.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
import uvicorn
from argon2 import PasswordHasher
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from crm_bridge.accounts import users
from crm_bridge.accounts.auth import ABSOLUTE_LIFETIME_SECONDS, SESSION_COOKIE, SessionCodec
from crm_bridge.app import create_app
from crm_bridge.db.engine import make_engine, make_session_factory
from crm_bridge.db.migrate import upgrade
from crm_bridge.db.models import Call, Campaign, Customer, CustomerPhone, DialAttempt, User
from crm_bridge.pops import page as web_agent
from crm_bridge.pops.hub import agent_key
from crm_bridge.pops.lookups import database_campaign_lookup
from crm_bridge.settings import Settings
from telephony.simulator import AGENT_FIRST_TRACE, AmiSimulator
from telephony.trace_files import RECORDED_TRACES, load_trace

AMI_SECRET = "s3cret-for-tests"
PASSWORD = "agent-password-1"
ACCOUNTS = {
    "wang": ("agent", ["1001"]),
    "li": ("agent", ["PJSIP/1002"]),
    "lin": ("supervisor", []),
    "zhou": ("scheduler", []),
}
ZHANG_SAN = "+8613800138000"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
FRAME_WAIT = 10.0
"""How long a frame that must come may take before the test fails (not a speed check)."""

CHEAP_ARGON2 = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@cache
def hashed(password: str) -> str:
    return CHEAP_ARGON2.hash(password)


def trace(name: str):
    return load_trace(RECORDED_TRACES / "sip" / f"{name}.ami")


def seed(database_url: str) -> None:
    """The users of ``ACCOUNTS`` and one customer, 张三, on ``ZHANG_SAN``."""
    upgrade(database_url)
    engine = make_engine(database_url)
    with make_session_factory(engine).begin() as session:
        for name, (role, extensions) in ACCOUNTS.items():
            session.add(
                User(
                    username=name,
                    password_hash=hashed(PASSWORD),
                    role=role,
                    extensions=extensions,
                )
            )
        session.add(
            Customer(
                card_no="C0001",
                name="张三",
                gender="M",
                vip_level="金卡",
                phones=[CustomerPhone(number_e164=ZHANG_SAN, kind="mobile")],
            )
        )
    engine.dispose()


@asynccontextmanager
async def served(app, port: int = 0) -> AsyncIterator[str]:
    """``app`` served by uvicorn (lifespan included) on 127.0.0.1:``port`` (0: any free one);
    yields ``host:port``."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    try:
        yield f"{host}:{port}"
    finally:
        server.should_exit = True
        await task


async def wait_for(predicate, timeout: float = FRAME_WAIT) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.05)


@dataclass
class Site:
    """The running app on a real socket, fed by a running AMI simulator."""

    simulator: AmiSimulator
    app: object
    address: str
    settings: Settings

    @property
    def origin(self) -> str:
        return f"http://{self.address}"

    @asynccontextmanager
    async def signed_in(self, username: str) -> AsyncIterator[httpx.AsyncClient]:
        """An HTTP client on the real socket, signed in through the sign-in form."""
        async with httpx.AsyncClient(base_url=self.origin) as client:
            page = await client.get("/login")
            token = CSRF_RE.search(page.text).group(1)
            form = {"username": username, "password": PASSWORD, "csrf_token": token, "next": ""}
            assert (await client.post("/login", data=form)).status_code == 303
            yield client

    async def cookie(self, username: str) -> str:
        async with self.signed_in(username) as client:
            return f"{SESSION_COOKIE}={client.cookies[SESSION_COOKIE]}"

    @asynccontextmanager
    async def pops(self, username: str) -> AsyncIterator[ClientConnection]:
        """The pop socket of ``username``, its hello frame already read and checked."""
        headers = {"Cookie": await self.cookie(username)}
        url = f"ws://{self.address}/ws/pops"
        async with connect(url, additional_headers=headers, origin=self.origin) as ws:
            hello = await next_frame(ws)
            assert hello["type"] == "hello" and hello["user"] == username
            yield ws

    def sessions(self):
        return self.app.state.runtime.sessions

    async def play(self, name: str) -> None:
        await self.simulator.play(trace(name), speed=0, renumber=True)


@pytest.fixture
async def site(tmp_path, monkeypatch) -> AsyncIterator[Site]:
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    async with running_site(tmp_path) as running:
        yield running


@asynccontextmanager
async def running_site(tmp_path: Path) -> AsyncIterator[Site]:
    """The seeded app under uvicorn, connected to a simulator (sign-ins need cheap argon2)."""
    async with AmiSimulator(username="bridge", secret=AMI_SECRET) as simulator:
        settings = site_settings(tmp_path, simulator.port)
        seed(settings.database_url)
        app = create_app(settings)
        async with served(app) as address:
            bridge = app.state.runtime.bridge
            assert await bridge.wait_connected(timeout=FRAME_WAIT)
            yield Site(simulator, app, address, settings)


def site_settings(data_dir: Path, ami_port: int) -> Settings:
    return Settings(
        data_dir=data_dir,
        ami_host="127.0.0.1",
        ami_port=ami_port,
        ami_username="bridge",
        ami_secret=AMI_SECRET,
        api_token="test-token-0123456789",
        secret_key="a-test-secret-key-of-some-length",
    )


async def next_frame(ws: ClientConnection, skip=("ping", "bridge")) -> dict:
    """The next frame that is not a keep-alive ping or (unless asked for) an AMI state."""
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), FRAME_WAIT))
        if frame["type"] not in skip:
            return frame


async def call_frames(ws: ClientConnection, until_state: str = "ended") -> list[dict]:
    """The frames of the next call on ``ws``, from its pop up to ``until_state``."""
    frames = [await next_frame(ws)]
    assert frames[0]["type"] == "pop", frames[0]
    while frames[-1]["state"] != until_state:
        frame = await next_frame(ws)
        assert frame["linkedid"] == frames[0]["linkedid"], frame
        frames.append(frame)
    return frames


async def pops_of_calls(ws: ClientConnection, count: int) -> list[dict]:
    """The pop frames of the next ``count`` calls on ``ws``, read until all of them ended."""
    pops: list[dict] = []
    ended = 0
    while ended < count:
        frame = await next_frame(ws)
        pops += [frame] if frame["type"] == "pop" else []
        ended += frame["state"] == "ended"
    return pops


# ------------------------------------------------------------------------------- tests


async def test_the_rung_agent_gets_the_card_and_the_call_as_it_goes(site):
    async with site.pops("wang") as wang, site.pops("li") as li:
        await site.play("a_inbound_answered_1001")
        pop, answered, ended = await call_frames(wang)
        assert pop["state"] == "ringing"
        assert pop["call"] == {
            "caller": ZHANG_SAN,
            "caller_name": "张三",
            "callee": "+864008001234",
            "direction": "inbound",
            "queue": "support",
            "route": None,  # a recorded call from before routing: no decision
        }
        assert pop["lookup"]["kind"] == "known" and pop["campaign"] is None
        (card,) = pop["lookup"]["cards"]
        assert (card["name"], card["card_no"], card["vip_level"]) == ("张三", "C0001", "金卡")
        assert answered == answered | {"state": "answered", "by_agent": "1001", "mine": True}
        assert ended["state"] == "ended" and ended["disposition"] == "answered"
        assert all(isinstance(f["sent_at"], float) for f in (pop, answered, ended))
        # ami_rx is on this process's monotonic clock (not the wall clock of sent_at)
        now = time.monotonic()
        assert all(now - FRAME_WAIT < f["ami_rx"] <= now for f in (pop, answered, ended))

        # 1002 was not rung by call a: its first frame is the pop of call c, where it is
        # rung second, after 1001 missed it.
        await site.play("c_inbound_1001_noanswer_1002_answers")
        li_frames = await call_frames(li)
        assert li_frames[0]["linkedid"] != pop["linkedid"]
        assert [(f["state"], f["mine"]) for f in li_frames] == [
            ("ringing", False),
            ("answered", True),
            ("ended", True),
        ]
        wang_frames = await call_frames(wang)
        assert wang_frames[0]["linkedid"] == li_frames[0]["linkedid"]
        assert [f["state"] for f in wang_frames] == ["ringing", "missed", "answered", "ended"]
        assert wang_frames[2]["by_agent"] == "1002" and wang_frames[2]["mine"] is False


async def test_the_hub_lets_go_of_every_call_that_ended(site):
    """Abandoned in the queue, missed, answered, transferred: the lookups started when the
    calls were offered and the cards are all dropped when the calls end."""
    hub = site.app.state.runtime.pops
    async with site.pops("wang") as wang:
        for name in ("b_inbound_abandoned", "c_inbound_1001_noanswer_1002_answers",
                     "h1_blind_transfer_1001_to_1002", "e1_outbound_busy"):  # fmt: skip
            await site.play(name)
        ended: set[str] = set()
        while len(ended) < 2:  # the two calls that rang 1001; their frames may interleave
            frame = await next_frame(wang)
            if frame["type"] == "update" and frame["state"] == "ended":
                ended.add(frame["linkedid"])

        async def let_go() -> bool:
            return hub.calls_held == 0

        await wait_for(let_go)


async def test_a_page_without_extensions_gets_nothing(site):
    async with site.pops("lin") as supervisor, site.pops("wang") as wang:
        await site.play("a_inbound_answered_1001")
        await call_frames(wang)
        await site.play("c_inbound_1001_noanswer_1002_answers")
        await call_frames(wang)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(next_frame(supervisor), 0.5)


async def test_the_socket_refuses_strangers_bad_origins_and_other_roles(site):
    url = f"ws://{site.address}/ws/pops"
    agent = {"Cookie": await site.cookie("wang")}
    refusals = [
        ({}, site.origin),
        (agent, "http://evil.example"),
        (agent, None),
        ({"Cookie": await site.cookie("zhou")}, site.origin),
    ]
    for headers, origin in refusals:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url, additional_headers=headers, origin=origin):
                pass
        assert refused.value.response.status_code == 403, (headers, origin)


async def test_an_unknown_caller_pops_a_new_customer_who_can_then_be_saved(site):
    async with site.pops("wang") as wang:
        await site.play("f_inbound_5_concurrent")
        pops = {p["call"]["caller"]: p for p in await pops_of_calls(wang, 3)}
        assert sorted(pops) == ["+8613800138001", "+8613800138003", "+8613800138005"]
        lookup = pops["+8613800138001"]["lookup"]
        assert lookup == lookup | {"kind": "unknown", "number_e164": "+8613800138001"}
        assert lookup["cards"] == []

    linkedid = pops["+8613800138001"]["linkedid"]
    await site.app.state.runtime.bridge.drain()  # the ended call is in the call log
    async with site.signed_in("wang") as client:
        page = await client.get("/agent", headers={"Accept": "text/html"})
        assert page.status_code == 200 and "来电" in page.text
        token = re.search(r'data-csrf="([^"]+)"', page.text).group(1)
        url = f"/me/calls/{linkedid}/new-customer"
        body = {"phone": "13800138001", "name": "客户一", "gender": "F", "card_no": "N0001"}
        forged = await client.post(url, json=body)
        assert forged.status_code == 403
        saved = await client.post(url, json=body, headers={"X-CSRF-Token": token})
        assert saved.status_code == 200, saved.text
        card = saved.json()["card"]
        assert (card["name"], card["card_no"]) == ("客户一", "N0001")
        again = await client.post(url, json=body, headers={"X-CSRF-Token": token})
        assert again.status_code == 400 and "card_no" in again.json()["detail"]["errors"]
    with site.sessions()() as session:
        call = session.query(Call).filter_by(linkedid=linkedid).one()
        assert call.customer_id == saved.json()["customer_id"]

    async with site.pops("wang") as wang:
        await site.play("f_inbound_5_concurrent")
        pops = {p["call"]["caller"]: p for p in await pops_of_calls(wang, 3)}
        lookup = pops["+8613800138001"]["lookup"]
        assert lookup["kind"] == "known" and lookup["cards"][0]["name"] == "客户一"
        assert pops["+8613800138003"]["lookup"]["kind"] == "unknown"


async def test_a_family_phone_pops_every_customer_on_it(site):
    with site.sessions().begin() as session:
        session.add(
            Customer(
                card_no="C0002",
                name="李梅",
                phones=[CustomerPhone(number_e164=ZHANG_SAN, kind="home")],
            )
        )
    async with site.pops("wang") as wang:
        await site.play("a_inbound_answered_1001")
        lookup = (await call_frames(wang))[0]["lookup"]
        assert lookup["kind"] == "multiple" and lookup["customer_count"] == 2
        assert [c["name"] for c in lookup["cards"]] == ["张三", "李梅"]


async def test_a_call_the_agent_places_pops_the_customer_when_they_answer(site):
    """A click-to-call rings the agent's own phone through the Originate, which no queue or dial
    announces: the card pops on that agent's page when the customer picks up."""
    site.simulator.agent_first_trace = AGENT_FIRST_TRACE  # the kit's recorded click-to-call
    with site.sessions()() as session:
        customer_id = session.query(Customer.id).filter_by(card_no="C0001").scalar()
    async with site.pops("wang") as page, site.signed_in("wang") as wang:
        agent_page = await wang.get("/agent", headers={"Accept": "text/html"})
        token = re.search(r'data-csrf="([^"]+)"', agent_page.text)[1]
        placed = await wang.post("/me/click-to-call", headers={"X-CSRF-Token": token},
                                 json={"customer_id": customer_id, "phone": ZHANG_SAN})  # fmt: skip
        assert placed.status_code == 200, placed.text
        pop, *later = await call_frames(page)
    assert pop["type"] == "pop" and pop["linkedid"] == placed.json()["channel_id"]
    assert pop["call"]["direction"] == "outbound" and pop["call"]["callee"] == ZHANG_SAN
    assert pop["lookup"]["kind"] == "known"
    assert [card["card_no"] for card in pop["lookup"]["cards"]] == ["C0001"]
    assert [(f["state"], f["mine"]) for f in later] == [("answered", True), ("ended", True)]


async def test_a_blind_transfer_reaches_both_agents(site):
    async with site.pops("wang") as wang, site.pops("li") as li:
        await site.play("h1_blind_transfer_1001_to_1002")
        wang_frames = await call_frames(wang)
        assert [f["state"] for f in wang_frames] == ["ringing", "answered", "transferred"] + [
            "answered",
            "ended",
        ]
        assert wang_frames[2]["to"] == "1002"
        assert wang_frames[3] == wang_frames[3] | {"by_agent": "1002", "mine": False}
        li_frames = await call_frames(li)
        assert li_frames[0]["lookup"]["cards"][0]["name"] == "张三"
        assert [(f["state"], f["mine"]) for f in li_frames] == [
            ("ringing", False),
            ("answered", True),
            ("ended", True),
        ]


async def test_pages_hear_when_the_bridge_loses_asterisk(site):
    async with site.pops("wang") as wang:
        await site.simulator.restart(down_seconds=1.5)
        states = [(await next_frame(wang, skip=("ping",)))["state"]]
        while states[-1] != "connected" or "disconnected" not in states:
            frame = await next_frame(wang, skip=("ping",))
            assert frame["type"] == "bridge"
            states.append(frame["state"])
        assert "disconnected" in states


async def test_the_agent_page_needs_a_page_role(site):
    async with site.signed_in("zhou") as client:
        assert (await client.get("/agent")).status_code == 403
    async with httpx.AsyncClient(base_url=site.origin) as anonymous:
        response = await anonymous.get("/agent", headers={"Accept": "text/html"})
        assert response.status_code == 303 and response.headers["location"].startswith("/login")


@pytest.mark.parametrize(
    ("extension", "agent"),
    [("1001", "1001"), ("PJSIP/1001", "1001"), ("Local/1001@agents/n", "1001")],
)
def test_an_extension_or_interface_names_its_agent(extension, agent):
    assert agent_key(extension) == agent


def test_a_campaign_call_is_looked_up_by_its_attempt(db_sessions):
    """The attempt whose ChannelId is the Linkedid names the customer, even on a phone the
    family shares; a Linkedid no attempt has is not a campaign call."""
    family = "+8613900000009"
    with db_sessions.begin() as session:
        for card_no, name in (("F001", "王芳"), ("F002", "王小明")):
            session.add(
                Customer(card_no=card_no, name=name, phones=[CustomerPhone(number_e164=family)])
            )
        session.flush()
        called = session.query(Customer).filter_by(card_no="F002").one()
        campaign = Campaign(name="生日祝福", kind="birthday", mode="agent", status="running")
        session.add(campaign)
        session.flush()
        session.add(
            DialAttempt(
                campaign_id=campaign.id,
                customer_id=called.id,
                attempt_no=1,
                number_e164=family,
                action_id="cmp-1",
                channel_id="1795346759.977",
            )
        )
        called_id, campaign_id = called.id, campaign.id
    lookup = database_campaign_lookup(db_sessions, zone=ZoneInfo("Asia/Shanghai"))
    found = lookup("1795346759.977")
    assert found is not None
    assert (found.campaign.campaign_id, found.campaign.name, found.campaign.kind) == (
        campaign_id,
        "生日祝福",
        "birthday",
    )
    assert found.campaign.customer_id == called_id
    assert found.lookup.kind == "known"
    assert [card.name for card in found.lookup.cards] == ["王小明"]
    assert lookup("1795346759.978") is None


# ------------------------------------------------------------------------------- reconnects


def first_events_through(name: str, event: str) -> tuple[list[dict], list[dict]]:
    """The call events of trace ``name`` up to and including its first ``event``, and the
    rest."""
    events = trace(name).call_events
    cut = next(i for i, e in enumerate(events) if e["Event"] == event) + 1
    return events[:cut], events[cut:]


async def test_hello_lists_the_calls_still_going_so_a_page_back_closes_the_others(site):
    ringing, rest = first_events_through("a_inbound_answered_1001", "AgentCalled")
    await site.simulator.play_events(ringing, speed=0, renumber=False)
    async with site.pops("wang") as wang:
        pop = await next_frame(wang)
        assert pop["type"] == "pop" and pop["state"] == "ringing"
    live = await hello_of(site, "wang")
    assert live == [pop["linkedid"]]

    await site.simulator.play_events(rest, speed=0, renumber=False)  # while no page is open
    hub = site.app.state.runtime.pops

    async def let_go() -> bool:
        return hub.calls_held == 0

    await wait_for(let_go)
    assert await hello_of(site, "wang") == []


async def hello_of(site: Site, username: str) -> list[str]:
    """The ``live`` list of a new socket's hello for ``username``."""
    headers = {"Cookie": await site.cookie(username)}
    async with connect(f"ws://{site.address}/ws/pops", additional_headers=headers,
                       origin=site.origin) as ws:  # fmt: skip
        hello = await next_frame(ws)
    assert hello["type"] == "hello"
    return hello["live"]


# ------------------------------------------------------------------------------- sessions


async def closed_with(ws: ClientConnection) -> int:
    """The close code the server ends ``ws`` with (frames before it are skipped)."""
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), FRAME_WAIT)
    assert ws.close_code is not None
    return ws.close_code


@pytest.mark.parametrize(
    "change",
    [
        {"active": False},
        {"password_hash": hashed("a-new-password-2")},
        {"role": "scheduler"},
        {"extensions": ["1001", "1003"]},
    ],
    ids=["deactivated", "new-password", "other-role", "other-extensions"],
)
async def test_the_socket_closes_when_its_user_may_no_longer_have_it(site, monkeypatch, change):
    monkeypatch.setattr(web_agent, "SESSION_CHECK_SECONDS", 0.2)
    async with site.pops("wang") as wang:
        with site.sessions().begin() as session:
            user = session.query(User).filter_by(username="wang").one()
            for column, value in change.items():
                setattr(user, column, value)
        assert await closed_with(wang) == web_agent.SESSION_ENDED


async def test_the_socket_closes_when_its_session_expires(site):
    """A session signed in almost ``ABSOLUTE_LIFETIME_SECONDS`` ago: the socket opens, and
    is closed when the lifetime is over."""
    with site.sessions()() as session:
        user = session.query(User).filter_by(username="wang").one()
        codec = SessionCodec(site.settings.secret_key.get_secret_value())
        signed_in_at = int(time.time() - ABSOLUTE_LIFETIME_SECONDS + 2.5)
        cookie = codec.encode(replace(codec.signed_in(user), iat=signed_in_at))
    headers = {"Cookie": f"{SESSION_COOKIE}={cookie}"}
    async with connect(f"ws://{site.address}/ws/pops", additional_headers=headers,
                       origin=site.origin) as ws:  # fmt: skip
        assert (await next_frame(ws))["type"] == "hello"
        assert await closed_with(ws) == web_agent.SESSION_ENDED


async def test_a_socket_whose_session_is_valid_stays_open(site, monkeypatch):
    monkeypatch.setattr(web_agent, "SESSION_CHECK_SECONDS", 0.2)
    async with site.pops("wang") as wang:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(next_frame(wang), 1.0)
        await site.play("a_inbound_answered_1001")
        assert [f["state"] for f in await call_frames(wang)] == ["ringing", "answered", "ended"]
