"""telephony/queue_members.py: app_queue's events and QueueStatus answer as plain states."""

from __future__ import annotations

import asyncio
from pathlib import Path

from telephony.ami_connection import AmiConfig
from telephony.queue_members import QueueBoard, QueueMembersLink, member_state, waiting_caller
from telephony.simulator import AmiSimulator

TRACES = Path(__file__).resolve().parent.parent / "telephony" / "traces"

# As Asterisk 22 sends them (fields trimmed to what is read)
MEMBER = {"Event": "QueueMemberStatus", "Queue": "support", "MemberName": "Agent 1001",
          "Interface": "Local/1001@agents/n", "StateInterface": "PJSIP/1001",
          "Membership": "static", "Penalty": "0", "InCall": "0", "Status": "1",
          "Paused": "0", "PausedReason": ""}  # fmt: skip
STATUS_MEMBER = {"Event": "QueueMember", "Queue": "support", "Name": "Agent 1002",
                 "Location": "Local/1002@agents/n", "StateInterface": "PJSIP/1002",
                 "Membership": "dynamic", "Penalty": "3", "InCall": "0", "Status": "1",
                 "Paused": "1", "PausedReason": "用餐", "ActionID": "x"}  # fmt: skip


def test_a_member_event_and_a_queue_status_member_read_the_same_way():
    one, two = member_state(MEMBER), member_state(STATUS_MEMBER)
    assert (one.queue, one.interface, one.name, one.dynamic) == (
        "support", "Local/1001@agents/n", "Agent 1001", False)  # fmt: skip
    assert not one.paused and not one.busy and not one.unavailable
    assert (two.interface, two.penalty, two.paused, two.reason, two.dynamic) == (
        "Local/1002@agents/n", 3, True, "用餐", True)  # fmt: skip


def test_busy_and_unavailable_follow_the_device_state():
    assert member_state(MEMBER | {"Status": "2"}).busy  # in use
    assert member_state(MEMBER | {"Status": "6"}).busy  # ringing
    assert member_state(MEMBER | {"InCall": "1"}).busy
    assert member_state(MEMBER | {"Status": "5"}).unavailable
    assert member_state({"Event": "QueueMemberStatus", "Queue": "support"}) is None


def test_the_board_is_rebuilt_from_queue_status_then_follows_the_events():
    board = QueueBoard()
    board.replace(
        [{"Event": "QueueParams", "Queue": "support"}, {"Event": "QueueParams", "Queue": "vip"},
         STATUS_MEMBER,
         {"Event": "QueueEntry", "Queue": "support", "Uniqueid": "u1", "Wait": "12",
          "CallerIDNum": "13800138000"}],
        now=1000.0,
    )  # fmt: skip
    assert board.queues == {"support", "vip"}
    assert board.waiting["u1"].since == 988.0
    assert board.apply(MEMBER, 1001.0)  # added to what QueueStatus listed
    assert not board.apply(MEMBER, 1002.0)  # the same again: no change
    assert board.apply(MEMBER | {"Event": "QueueMemberPause", "Paused": "1",
                                 "PausedReason": "会议"}, 1003.0)  # fmt: skip
    paused = board.of_interface("Local/1001@agents/n")
    assert [m.reason for m in paused] == ["会议"]
    assert board.apply({"Event": "QueueCallerLeave", "Queue": "support", "Uniqueid": "u1"}, 1)
    assert board.waiting == {}
    assert board.apply(MEMBER | {"Event": "QueueMemberRemoved"}, 1004.0)
    assert board.of_interface("Local/1001@agents/n") == []
    assert not board.apply({"Event": "QueueMemberRemoved", "Queue": "support",
                            "Interface": "Local/9@agents/n"}, 1005.0)  # fmt: skip


def test_a_caller_who_joins_waits_from_now():
    caller = waiting_caller({"Event": "QueueCallerJoin", "Queue": "support",
                             "Uniqueid": "u2", "CallerIDNum": "1380"}, 50.0)  # fmt: skip
    assert (caller.queue, caller.since, caller.caller_number) == ("support", 50.0, "1380")
    assert waiting_caller({"Event": "QueueCallerJoin", "Queue": "support"}, 1) is None


async def test_the_queue_members_session_asks_asterisk_for_queue_events_only():
    """The session logs in for app_queue's class (and ``system``), so Asterisk sends it none of
    a call's channel events; the member and call-done events still come (the simulator
    filters by each event's ``Privilege`` as Asterisk does)."""
    heard: list[str] = []
    async with AmiSimulator(username="bridge", secret="s", originate_speed=0) as simulator:
        config = AmiConfig(host="127.0.0.1", port=simulator.port, username="bridge", secret="s",
                           backoff_initial=0.02, backoff_max=0.2)  # fmt: skip
        link = QueueMembersLink(config, lambda event: heard.append(event and event["Event"]))
        await link.start()
        try:
            async with asyncio.timeout(5):
                while not link.connected:
                    await asyncio.sleep(0.01)
                await simulator.play(TRACES / "local" / "a_inbound_answered_1001.ami", speed=0)
                while "AgentComplete" not in heard:
                    await asyncio.sleep(0.01)
        finally:
            await link.stop()
    login = next(action for action in simulator.actions if action["Action"].lower() == "login")
    assert login["Events"] == "agent,system"
    assert "QueueMemberStatus" in heard
