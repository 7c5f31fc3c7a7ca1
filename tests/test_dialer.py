"""The dialer against the AMI simulator over a real socket: outcomes from the recorded traces
(answered, busy, no answer, congestion), the concurrency cap, the pace, the encoder."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable, Mapping

import pytest

from telephony.ami_codec import UnsafeAmiValue
from telephony.ami_connection import AmiConfig
from telephony.dialer import (
    AMD_EVENT,
    GREETING_EVENT,
    GREETING_NOT_PLAYED,
    MESSAGE_LEFT,
    Dialer,
    OriginateRequest,
)
from telephony.simulator import AmiSimulator

SECRET = "dialer-test-secret"
OUTCOME_OF_NUMBER = {
    "13900000001": "answered",
    "13900000002": "busy",
    "13900000003": "no_answer",
    "13900000004": "congestion",
}


def outcome_by_number(headers: Mapping[str, str]) -> str | None:
    number = headers.get("Channel", "").removeprefix("PJSIP/").split("@")[0]
    return OUTCOME_OF_NUMBER.get(number, "answered")


def request(number: str, **variables: str) -> OriginateRequest:
    channel_id = str(uuid.uuid4())
    return OriginateRequest(
        channel=f"PJSIP/{number}@carrier",
        context="outbound-campaign",
        exten="return-visit",
        channel_id=channel_id,
        action_id=f"test-{channel_id}",
        caller_id="4008001234",
        variables={"CAMPAIGN": "7", "CUSTOMER_ID": "42", "CC_MODE": "message", **variables},
    )


async def until(predicate: Callable[[], bool], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


@pytest.fixture
async def sim() -> AsyncIterator[AmiSimulator]:
    async with AmiSimulator(
        secret=SECRET, originate_outcome=outcome_by_number, originate_speed=50
    ) as simulator:
        yield simulator


async def started(
    sim: AmiSimulator, max_concurrent: int = 5, cps: float = 50.0, events: str = "call"
) -> Dialer:
    config = AmiConfig(
        host="127.0.0.1", port=sim.port, username="bridge", secret=SECRET, events=events
    )
    dialer = Dialer(config, max_concurrent=max_concurrent, calls_per_second=cps)
    await dialer.start()
    assert await dialer.wait_connected(5)
    return dialer


@pytest.mark.parametrize(
    ("number", "outcome", "reason"),
    [
        ("13900000001", "answered", "4"),
        ("13900000002", "busy", "0"),  # Reason 0 on a SIP trunk; DialEnd BUSY / cause 17 say busy
        ("13900000003", "no_answer", "3"),
        ("13900000004", "congestion", "0"),
    ],
)
async def test_each_recorded_outcome_is_mapped(sim, number, outcome, reason):
    dialer = await started(sim)
    try:
        assert await dialer.dial(request(number)) == (outcome, reason)
        await until(lambda: dialer.in_progress == 0, timeout=10)
    finally:
        await dialer.stop()
    (sent,) = sim.actions_named("Originate")
    assert sent["Async"] == "true"
    assert sent["Channel"] == f"PJSIP/{number}@carrier"
    assert sent["ActionID"].startswith("test-")
    assert sent["ChannelId"] in sent["ActionID"]


async def test_variables_go_through_the_encoder(sim):
    dialer = await started(sim)
    try:
        with pytest.raises(UnsafeAmiValue):
            await dialer.dial(request("13900000001", CC_GREETING="evil,Exten=9"))
        with pytest.raises(UnsafeAmiValue):
            await dialer.dial(request("13900000001", CC_GREETING="a\r\nAction: Logoff"))
        assert sim.actions_named("Originate") == []
        assert dialer.in_progress == 0
        assert await dialer.dial(request("13900000001", CC_GREETING="greetings/abc")) == (
            "answered",
            "4",
        )
    finally:
        await dialer.stop()
    raw = b"".join(sim.received_raw)
    assert b"Variable: CC_GREETING=greetings/abc\r\n" in raw
    assert b"Variable: CAMPAIGN=7\r\n" in raw


async def test_the_concurrency_cap_holds_calls_until_hangup(sim):
    dialer = await started(sim, max_concurrent=2)
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, dialer.in_progress)
            await asyncio.sleep(0.001)

    watcher = asyncio.create_task(watch())
    try:
        results = await asyncio.gather(*(dialer.dial(request("13900000001")) for _ in range(6)))
        await until(lambda: dialer.in_progress == 0, timeout=20)
    finally:
        watcher.cancel()
        await dialer.stop()
    assert [r[0] for r in results] == ["answered"] * 6
    assert peak == 2
    assert len(sim.actions_named("Originate")) == 6


async def test_the_pace_spaces_the_originates(sim):
    dialer = await started(sim, max_concurrent=50, cps=20)
    try:
        await asyncio.gather(*(dialer.dial(request("13900000003")) for _ in range(5)))
    finally:
        await dialer.stop()
    sent = dialer.sent_at
    assert len(sent) == 5
    # never ahead of the grid of the set pace: the k-th Originate k/20 s after the first
    assert all(sent[k] - sent[0] >= k * 0.05 - 0.005 for k in range(5))


async def test_a_refused_originate_frees_its_slot(sim):
    dialer = await started(sim, max_concurrent=1)
    try:
        refused = OriginateRequest(
            channel="", context="x", exten="s", channel_id="c1", action_id="a1"
        )
        with pytest.raises(Exception, match="Channel not specified"):
            await dialer.dial(refused)
        assert dialer.in_progress == 0
        assert (await dialer.dial(request("13900000002")))[0] == "busy"
    finally:
        await dialer.stop()


@pytest.mark.parametrize(
    ("report", "expected"),
    [("SUCCESS", ("answered", "4")), ("FAILED", ("failed", GREETING_NOT_PLAYED)), (None, None)],
    ids=["played", "not-played", "hung-up-during-it"],
)
async def test_a_greeting_call_is_answered_only_once_its_greeting_played(sim, report, expected):
    """The dialplan's CallbridgeGreeting report (dialplans/extensions_callbridge.conf) settles
    a message call; without one, the hangup does (the customer hung up during the greeting)."""
    sim.originate_speed = 2  # answered after 1 s, hung up after 4.7 s
    dialer = await started(sim, events="call,user")
    greeting_call = dataclasses.replace(request("13900000001"), plays_greeting=True)
    try:
        dialing = asyncio.create_task(dialer.dial(greeting_call))
        await sim.wait_for_action("Originate")
        await asyncio.sleep(1.5)  # the OriginateResponse (answered) is in
        assert not dialing.done()
        if report is not None:
            await sim.play_events([{
                "Event": "UserEvent", "Privilege": "user,all", "UserEvent": GREETING_EVENT,
                "Channel": "PJSIP/carrier-00000001", "Uniqueid": greeting_call.channel_id,
                "Linkedid": greeting_call.channel_id, "Status": report,
            }], renumber=False)  # fmt: skip
            assert await asyncio.wait_for(dialing, 2) == expected
        else:
            assert await asyncio.wait_for(dialing, 10) == ("answered", "4")
    finally:
        await dialer.stop()


@pytest.mark.parametrize(
    ("amd", "greeting", "expected"),
    [
        ("MACHINE", None, ("machine", "4")),
        ("MACHINE", "SUCCESS", ("machine", MESSAGE_LEFT)),
        ("MACHINE", "FAILED", ("failed", GREETING_NOT_PLAYED)),
        ("HUMAN", "SUCCESS", ("answered", "4")),
        ("NOTSURE", "SUCCESS", ("answered", "4")),
    ],
    ids=["machine-hung-up-on", "message-left", "message-not-played", "person", "not-sure"],
)
async def test_answering_machine_detection_decides_a_message_call(sim, amd, greeting, expected):
    """The dialplan's CallbridgeAmd report comes first; a machine is ``machine`` whether the
    greeting then played after its beep (a message left) or the dialplan hung up on it."""
    sim.originate_speed = 2  # answered after 1 s, hung up after 4.7 s
    dialer = await started(sim, events="call,user")
    call = dataclasses.replace(request("13900000001"), plays_greeting=True)

    def user_event(name: str, status: str) -> dict[str, str]:
        return {
            "Event": "UserEvent", "Privilege": "user,all", "UserEvent": name,
            "Channel": "PJSIP/carrier-00000001", "Uniqueid": call.channel_id,
            "Linkedid": call.channel_id, "Status": status,
        }  # fmt: skip

    try:
        dialing = asyncio.create_task(dialer.dial(call))
        await sim.wait_for_action("Originate")
        await asyncio.sleep(1.5)  # answered
        await sim.play_events([user_event(AMD_EVENT, amd)], renumber=False)
        await asyncio.sleep(0.2)
        assert not dialing.done()  # AMD's verdict alone settles nothing: the hangup or greeting
        if greeting is not None:
            await sim.play_events([user_event(GREETING_EVENT, greeting)], renumber=False)
        assert await asyncio.wait_for(dialing, 10) == expected
    finally:
        await dialer.stop()
