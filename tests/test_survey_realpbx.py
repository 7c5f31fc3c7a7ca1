"""The satisfaction survey on the PBX kit's real Asterisk, with real calls.

A customer (张三, 13800138000) calls the center's DID; an agent phone answers and hangs up;
the customer's own channel, back in ``from-customers`` (``Queue()`` option ``c``), asks the
app's FastAGI server whether ``support`` surveys and plays the default Mandarin question; the
customer presses keys on the carrier's side (AMI ``PlayDTMF`` on the kit's sim, the customer's
phone). A key out of range (9) plays the "wrong key" prompt and scores nothing; 4 is kept on
the call. An agent who transfers the customer to ``*8`` (the move a SIP REFER makes, done with
AMI ``Redirect`` of the agent's side) gets the survey played to the customer too. A queue
with the survey off, and an agent's own channel asking for it, score nothing.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from realpbx_site import WAIT, ZHANG_SAN, ZHANG_SAN_RAW, api, kit_site, logged_call
from test_pops import CHEAP_ARGON2

from crm_bridge.accounts import users
from crm_bridge.db.models import QueueSetting
from crm_bridge.survey.prompts import default_name
from telephony.ami_connection import AmiConfig, AmiConnection

pytestmark = pytest.mark.realpbx


async def until(predicate, timeout: float = WAIT, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, f"{what} not reached"
        await asyncio.sleep(0.05)


async def kit(pbx_commands, *args: str) -> str:
    """A kit command on a thread: the app's FastAGI server shares this test's event loop."""
    return await asyncio.to_thread(pbx_commands, *args, timeout=90)


async def ami(pbx_kit, name: str, port_step: int, user: str, secret: str) -> AmiConnection:
    config = AmiConfig(name=name, host=pbx_kit["ami"]["host"],
                       port=pbx_kit["ami"]["port"] + port_step, username=user,
                       secret=secret)  # fmt: skip
    heard: list[dict] = []
    connection = AmiConnection(config, on_event=lambda event: heard.append(dict(event)))
    await connection.start()
    await until(lambda: str(connection.state) == "connected", what=f"{name} AMI")
    connection.heard = heard  # type: ignore[attr-defined]
    return connection


@pytest.fixture
async def carrier(pbx_kit):
    """The kit's carrier (the sim, AMI port + 1): it holds the customer's phone."""
    connection = await ami(pbx_kit, "kit-sim", 1, "sim", "sim-secret")
    yield connection
    await connection.stop()


@pytest.fixture
async def site(pbx_kit, pbx_commands, tmp_path, monkeypatch):
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    (tmp_path / "greetings").symlink_to(pbx_kit["greetings"], target_is_directory=True)
    async with kit_site(tmp_path, pbx_kit) as running:
        port = running.app.state.runtime.routing.server.port
        pbx_commands("rx", "pbx", f"dialplan set global CC_ROUTE_AGI 127.0.0.1:{port}")
        yield running


def survey_on(site, queue: str = "support", on: bool = True) -> None:
    with site.sessions().begin() as session:
        row = session.get(QueueSetting, queue) or QueueSetting(queue=queue)
        row.survey = on
        session.add(row)


def customer_uniqueid(heard: list[dict]) -> str:
    ids = [e["Uniqueid"] for e in heard
           if e.get("Event") == "Newchannel" and e.get("CallerIDNum") == ZHANG_SAN_RAW
           and e.get("Context") == "from-customers"]  # fmt: skip
    assert ids, "no inbound channel"
    return ids[-1]


def ran(heard: list[dict], uniqueid: str, application: str, data: str = "") -> int:
    """How often the channel ran ``application`` with ``data`` in its arguments."""
    return sum(1 for e in heard
               if e.get("Event") == "Newexten" and e.get("Uniqueid") == uniqueid
               and e.get("Application") == application
               and data in e.get("AppData", ""))  # fmt: skip


async def press(carrier: AmiConnection, channel_id: str, digit: str) -> None:
    """The customer presses ``digit`` on their phone (RFC 2833 from the carrier)."""
    response = await carrier.send_action(
        "PlayDTMF", [("Channel", channel_id), ("Digit", digit), ("Duration", "250")]
    )
    assert response.success, dict(response)


THANKS = "callbridge/greetings/" + default_name("thanks").removesuffix(".wav")


def ask_prompt() -> str:
    return "callbridge/greetings/" + default_name("ask").removesuffix(".wav")


async def call_in(pbx_commands, kit_bridge, channel_id: str) -> str:
    await kit(pbx_commands, "call-in", "--from", ZHANG_SAN_RAW, "--hold", "90",
              "--channel-id", channel_id)  # fmt: skip
    heard = kit_bridge.heard
    await until(lambda: any(e.get("Event") == "Newchannel" and e.get("CallerIDNum") == ZHANG_SAN_RAW
                            and e.get("Context") == "from-customers" for e in heard),
                what="the inbound call")  # fmt: skip
    return customer_uniqueid(heard)


async def test_customer_scores_4_after_the_agent_hangs_up(site, pbx_commands, kit_bridge,
                                                          carrier):  # fmt: skip
    survey_on(site)
    for agent in ("1001", "1002"):
        await kit(pbx_commands, "agent", agent, "--talk", "2")
    uniqueid = await call_in(pbx_commands, kit_bridge, "survey-cust-1")
    heard = kit_bridge.heard
    # The agent hung up; the customer's own channel reads a key after the default question.
    await until(lambda: ran(heard, uniqueid, "Read", ask_prompt()) == 1, timeout=60,
                what="the survey question")  # fmt: skip
    assert ran(heard, uniqueid, "AGI") == 0  # the ask runs on a Local channel of its own
    await press(carrier, "survey-cust-1", "9")
    await until(lambda: ran(heard, uniqueid, "Playback", "survey-default-invalid") == 1,
                what="the wrong-key prompt")  # fmt: skip
    assert not [e for e in heard if e.get("Variable") == "CC_SURVEY_SCORE"]
    await until(lambda: ran(heard, uniqueid, "Read", ask_prompt()) == 2, what="asked again")
    await press(carrier, "survey-cust-1", "4")
    await until(lambda: ran(heard, uniqueid, "ExecIf", "Playback(" + THANKS) == 1,
                what="the thanks")  # fmt: skip

    call = await logged_call(site.origin, number=ZHANG_SAN)
    assert call["survey_score"] == 4
    assert call["agent"] in ("1001", "1002") and call["disposition"] == "answered"
    # The talk ended where the survey began (the agent talks about 6 s), not with the call.
    whole = (datetime.fromisoformat(call["ended_at"])
             - datetime.fromisoformat(call["answered_at"])).total_seconds()  # fmt: skip
    assert call["talk_seconds"] < 12 < whole
    scored = [e for e in heard if e.get("Variable") == "CC_SURVEY_SCORE"]
    assert [(e["Uniqueid"], e["Value"]) for e in scored] == [(uniqueid, "4")]

    async with site.signed_in("lin") as browser:
        page = (await browser.get(f"/supervisor/calls/{call['id']}")).text
    assert '<strong>4</strong> / 5' in page and "满意" in page and "Satisfied" not in page


async def test_agent_transfers_the_customer_to_the_survey(site, pbx_commands, kit_bridge,
                                                          carrier):  # fmt: skip
    survey_on(site)
    for agent in ("1001", "1002"):
        await kit(pbx_commands, "agent", agent, "--talk", "30")
    uniqueid = await call_in(pbx_commands, kit_bridge, "survey-cust-2")
    heard = kit_bridge.heard
    await until(lambda: any(e.get("Event") == "AgentConnect" and e.get("Uniqueid") == uniqueid
                            for e in heard), what="the agent answering")  # fmt: skip
    connect = next(e for e in heard if e.get("Event") == "AgentConnect"
                   and e.get("Uniqueid") == uniqueid)  # fmt: skip
    # The agent's side of the queue's Local pair: what a blind transfer from the phone moves.
    agent_side = connect["DestChannel"].removesuffix(";1") + ";2"
    response = await kit_bridge.send_action("Redirect", [("Channel", agent_side),
                                            ("Context", "internal"), ("Exten", "*8"),
                                            ("Priority", "1")])  # fmt: skip
    assert response.success, dict(response)
    await until(lambda: ran(heard, uniqueid, "Read", ask_prompt()) == 1, what="the survey")
    await press(carrier, "survey-cust-2", "5")
    call = await logged_call(site.origin, number=ZHANG_SAN)
    assert call["survey_score"] == 5
    # The agent's side ran *8 and was hung up there: it never ran the survey itself.
    asked = {e["Uniqueid"] for e in heard if e.get("Event") == "Newexten"
             and e.get("Context") == "internal" and e.get("Extension") == "*8"}  # fmt: skip
    assert asked and uniqueid not in asked
    surveyed = {e["Uniqueid"] for e in heard if e.get("Event") == "Newexten"
                and e.get("Context") == "callbridge-survey"}  # fmt: skip
    assert surveyed == {uniqueid}


async def test_no_survey_where_the_queue_has_it_off(site, pbx_commands, kit_bridge):
    survey_on(site, on=False)
    for agent in ("1001", "1002"):
        await kit(pbx_commands, "agent", agent, "--talk", "2")
    uniqueid = await call_in(pbx_commands, kit_bridge, "survey-cust-3")
    call = await logged_call(site.origin, number=ZHANG_SAN)
    assert call["survey_score"] is None and call["disposition"] == "answered"
    heard = kit_bridge.heard
    assert ran(heard, uniqueid, "Read") == 0
    async with api(site) as client:
        assert (await client.get(f"/api/calls/{call['id']}")).json()["survey_score"] is None
