"""Real calls through the PBX kit's Asterisk, checked as the users see them.

The app (``create_app``) runs under uvicorn, its bridge logged in with the product's own
least-privilege AMI account; the kit's carrier plays the customers and its phones the agents.
Each test reads what an agent's page receives on the pop socket, the call log through the JSON
API, the recordings and transcripts the supervisor gets. Which agent the queue rings first
(``rrmemory``, a 10 s wrap-up) depends on the calls before, so the tests watch who rings
instead of assuming it.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from pathlib import Path

import pytest
from rapidfuzz import fuzz
from realpbx_site import (
    CALLEE,
    WAIT,
    ZHANG_SAN,
    ZHANG_SAN_RAW,
    frame_of_state,
    kit_site,
    logged_call,
)
from speech_fixtures import dither_free_model
from test_pops import CHEAP_ARGON2, PASSWORD, hashed, next_frame

from crm_bridge.accounts import users
from crm_bridge.calls.recordings import RecordingsRoot
from crm_bridge.db.models import Customer, CustomerPhone, Recording, TranscriptSegment, User
from crm_bridge.speech.jobs import RetryPolicy, Worker
from telephony.ami_codec import encode_action
from transcription.engine import Transcriber

pytestmark = pytest.mark.realpbx

CUSTOMER_SAYS, AGENT_SAYS = "lab/zeroth_0004", "lab/zeroth_0022"
"""Real Korean speech (Zeroth-Korean) in the kit's sounds: the customer's and the agent's."""


@pytest.fixture
async def site(pbx_kit, pbx_commands, tmp_path, monkeypatch):
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    async with kit_site(tmp_path, pbx_kit) as running:
        with running.sessions().begin() as session:  # one page for both phones: who rings shows
            session.add(User(username="desk", password_hash=hashed(PASSWORD), role="agent",
                             extensions=["1001", "1002"]))  # fmt: skip
            session.add(Customer(card_no="C0002", name="李四", phones=[
                CustomerPhone(number_e164="+86" + CALLEE, kind="mobile")]))  # fmt: skip
        yield running


def sounds_dir(info) -> Path:
    return Path(info["workdir"]) / "asterisk" / "share" / "sounds" / "en"


def utc(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def other(agent: str) -> str:
    return "1002" if agent == "1001" else "1001"


async def kit(pbx, *args: str) -> str:
    return await asyncio.to_thread(pbx, *args)


async def test_an_answered_call_pops_first_then_is_logged_recorded_and_transcribed(
    site, pbx_kit, pbx_commands, tmp_path_factory
):
    for agent in ("1001", "1002"):
        await kit(pbx_commands, "agent", agent, "--ring", "1.5", "--talk", "6",
                  "--play", AGENT_SAYS)  # fmt: skip
    async with site.pops("desk") as desk:
        await kit(pbx_commands, "call-in", "--from", ZHANG_SAN_RAW, "--hold", "13",
                  "--play", CUSTOMER_SAYS, "--speak-at", "3")  # fmt: skip
        pop = await next_frame(desk)
        assert (pop["type"], pop["state"]) == ("pop", "ringing")
        assert pop["call"]["caller"] == ZHANG_SAN and pop["call"]["direction"] == "inbound"
        (card,) = pop["lookup"]["cards"]
        assert card["name"] == "张三"
        answered = await frame_of_state(desk, "answered")
        agent = answered["by_agent"]
        await frame_of_state(desk, "ended")

    call = await logged_call(site.origin, number=ZHANG_SAN)
    assert call["direction"] == "inbound" and call["disposition"] == "answered"
    assert (call["caller"], call["callee"]) == (ZHANG_SAN, "+864008001234")
    assert (call["agent"], call["queue"]) == (agent, "support")
    assert pop["sent_at"] < utc(call["answered_at"])  # the card was up before the pick-up
    assert 1.0 < call["wait_seconds"] < 8 and 6 < call["talk_seconds"] < 15

    with site.sessions()() as session:
        (recording,) = session.query(Recording).filter_by(call_id=call["id"]).all()
        root = site.settings.recordings_dir
        for path in (recording.path, recording.customer_path, recording.agent_path):
            assert path and (root / path).stat().st_size > 8000 * 2 * 5  # 5 s of audio each

    model = dither_free_model(tmp_path_factory.getbasetemp())
    bare = Transcriber(model, language="ko")
    worker = Worker(site.sessions(), RecordingsRoot(site.settings.recordings_dir),
                    bare.transcribe, retry=RetryPolicy(max_attempts=1))  # fmt: skip
    assert await asyncio.to_thread(worker.run, once=True) == 1
    with site.sessions()() as session:
        said = {
            speaker: " ".join(s.text for s in session.query(TranscriptSegment)
                              .filter_by(call_id=call["id"], speaker=speaker)
                              .order_by(TranscriptSegment.start_seconds))
            for speaker in ("customer", "agent")
        }  # fmt: skip
    for speaker, sound in (("customer", CUSTOMER_SAYS), ("agent", AGENT_SAYS)):
        alone = " ".join(s.text for s in bare.transcribe(sounds_dir(pbx_kit) / f"{sound}.wav")
                         .segments)  # fmt: skip
        assert fuzz.ratio(said[speaker], alone) > 70, (speaker, said[speaker], alone)

    async with site.signed_in("lin") as supervisor:
        page = await supervisor.get(f"/supervisor/calls/{call['id']}")
        assert page.status_code == 200
        assert "speaker-customer" in page.text and "speaker-agent" in page.text


async def test_a_caller_who_gives_up_in_the_queue_is_abandoned(site, pbx_commands):
    for agent in ("1001", "1002"):
        await kit(pbx_commands, "agent", agent, "--behaviour", "noanswer")
    async with site.pops("desk") as desk:
        await kit(pbx_commands, "call-in", "--from", ZHANG_SAN_RAW, "--hold", "4")
        pop = await next_frame(desk)
        assert (pop["type"], pop["state"]) == ("pop", "ringing")
        ended = await frame_of_state(desk, "ended")
        assert ended["disposition"] == "abandoned"
    call = await logged_call(site.origin, number=ZHANG_SAN)
    assert (call["disposition"], call["agent"], call["queue"]) == ("abandoned", None, "support")
    assert call["answered_at"] is None and call["talk_seconds"] == 0
    assert 3 < call["wait_seconds"] < 8


async def test_the_first_agent_does_not_answer_and_the_second_does(site, pbx_commands):
    for agent in ("1001", "1002"):
        await kit(pbx_commands, "agent", agent, "--behaviour", "noanswer")
    async with site.pops("wang") as wang, site.pops("li") as li:
        pages = {"1001": wang, "1002": li}
        await kit(pbx_commands, "call-in", "--from", ZHANG_SAN_RAW, "--hold", "25")
        first, pop = await first_pop(pages)
        second = other(first)
        await kit(pbx_commands, "agent", second, "--behaviour", "answer", "--ring", "1",
                  "--talk", "1")  # fmt: skip
        missed = await frame_of_state(pages[first], "missed")
        assert missed["linkedid"] == pop["linkedid"]
        rung = await frame_of_state(pages[second], "ringing")
        answered = await frame_of_state(pages[second], "answered")
        assert rung["linkedid"] == answered["linkedid"] == pop["linkedid"]
        assert (answered["by_agent"], answered["mine"]) == (second, True)
        await frame_of_state(pages[second], "ended")
    call = await logged_call(site.origin, number=ZHANG_SAN)
    assert (call["disposition"], call["agent"]) == ("answered", second)
    assert 15 < call["wait_seconds"] < 22  # the queue's 15 s on the first, then the second


async def first_pop(pages: dict) -> tuple[str, dict]:
    """The agent whose page gets the first pop (the phone the queue rings first), and it."""
    reads = {asyncio.ensure_future(next_frame(ws)): agent for agent, ws in pages.items()}
    done, pending = await asyncio.wait(reads, timeout=WAIT, return_when=asyncio.FIRST_COMPLETED)
    for read in pending:
        read.cancel()
    assert done, "no agent was rung"
    read = done.pop()
    return reads[read], read.result()


async def test_click_to_call_from_the_agent_page_is_an_outbound_call_of_that_agent(
    site, pbx_commands
):
    await kit(pbx_commands, "agent", "1001", "--ring", "1", "--talk", "3")
    with site.sessions()() as session:
        customer_id = session.query(Customer.id).filter_by(card_no="C0002").scalar()
    async with site.signed_in("wang") as wang:
        page = await wang.get("/agent", headers={"Accept": "text/html"})
        token = re.search(r'data-csrf="([^"]+)"', page.text)[1]
        placed = await wang.post("/me/click-to-call", headers={"X-CSRF-Token": token},
                                 json={"customer_id": customer_id, "phone": CALLEE})  # fmt: skip
        assert placed.status_code == 200, placed.text
    call = await logged_call(site.origin, number="+86" + CALLEE)
    assert call["linkedid"] == placed.json()["channel_id"]
    assert call["customer_id"] == customer_id
    assert call["direction"] == "outbound" and call["disposition"] == "answered"
    assert (call["caller"], call["callee"], call["agent"]) == ("1001", "+86" + CALLEE, "1001")
    # the callee rings 2 s after the agent picked up (1 s): the answer is the customer's
    assert 2.5 < call["wait_seconds"] < 8 and 2 < call["talk_seconds"] < 12


async def test_asterisk_refuses_the_products_account_what_it_must_not_do(pbx_kit):
    """Asterisk itself, not the bridge, refuses the least-privilege account: an Originate
    that runs an application reaching the shell (needs ``system``), and a CLI command (needs
    ``command``). ``Redirect`` is allowed since the agents' call controls move channels with it
    (``call``). The dialplan's contexts reachable by Originate are only those the account's
    classes allow."""
    ami = pbx_kit["ami"]
    reader, writer = await asyncio.open_connection(ami["host"], ami["port"])
    try:
        await reader.readline()  # banner

        async def ask(action: str, headers: list[tuple[str, str]]) -> str:
            writer.write(encode_action(action, headers))
            await writer.drain()
            while True:
                frame = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)).decode()
                if frame.startswith("Response:"):
                    return frame

        login = await ask("Login", [("Username", ami["username"]), ("Secret", ami["secret"]),
                                    ("Events", "off")])  # fmt: skip
        assert "Success" in login
        shell = await ask("Originate", [("Channel", "Local/1001@agents"),
                                        ("Application", "System"), ("Data", "true")])  # fmt: skip
        assert "Error" in shell and "Access Forbidden" in shell
        command = await ask("Command", [("Command", "dialplan reload")])
        assert "Error" in command and "Permission denied" in command
    finally:
        writer.close()

