"""Agent states on the PBX kit's real Asterisk, with real calls.

The kit's ``support`` queue has its two phones as static members (queues.conf), so agents wang
(1001) and li (1002) start logged in; zhao (extension 1003, no phone) logs in and out with
QueueAdd/QueueRemove. A pause made from another AMI client (the kit's ``bridge`` account) shows
on the agent page and the wallboard; a paused agent is not rung; after-call work pauses the agent
who answered until Ready.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from realpbx_site import WAIT, ZHANG_SAN_RAW, kit_site, logged_call
from test_pops import CHEAP_ARGON2, CSRF_RE, PASSWORD, hashed

from crm_bridge.accounts import users
from crm_bridge.db.models import AgentStateChange, User

pytestmark = pytest.mark.realpbx

WANG = "Local/1001@agents/n"


@pytest.fixture
async def site(pbx_kit, pbx_commands, tmp_path, monkeypatch):
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    async with kit_site(tmp_path, pbx_kit) as running:
        with running.sessions().begin() as session:
            session.add(User(username="zhao", password_hash=hashed(PASSWORD), role="agent",
                             extensions=["1003"]))  # fmt: skip
        states = running.app.state.runtime.agent_states
        await until(lambda: len(states.link.board.of_interface(WANG)) == 1)
        yield running


async def until(predicate, timeout: float = WAIT) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def csrf(client) -> str:
    return CSRF_RE.search((await client.get("/agent/states")).text).group(1)


async def state_of(client) -> dict:
    return (await client.get("/agent/states/now")).json()


async def eventually_state(client, state: str) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while (now := await state_of(client))["state"] != state:
        assert loop.time() < deadline, f"state {now} never became {state}"
        await asyncio.sleep(0.1)
    return now


async def eventually_queue(client, predicate, queue: str = "support") -> dict:
    """The wallboard's row of ``queue`` once ``predicate`` holds for it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while True:
        board = (await client.get("/wallboard/now")).json()
        row = next(q for q in board["queues"] if q["queue"] == queue)
        if predicate(row):
            return row
        assert loop.time() < deadline, f"wallboard row {row}"
        await asyncio.sleep(0.1)


async def test_a_pause_made_by_another_ami_client_shows(site, kit_bridge):
    async with site.signed_in("wang") as wang, site.signed_in("lin") as lin:
        assert (await state_of(wang))["state"] == "ready"
        response = await kit_bridge.send_action(
            "QueuePause", {"Interface": WANG, "Paused": "true", "Reason": "会议"}
        )
        assert response["Response"] == "Success"
        now = await eventually_state(wang, "paused")
        assert now["reason"] == "会议" and now["queues"] == ["support"]
        page = (await wang.get("/agent/states")).text
        assert ">暂停（会议）<" in page  # the zh-CN page: the label's Chinese alone
        board = (await lin.get("/wallboard/now")).json()
        agent = next(a for a in board["agents"] if a["agent"] == "1001")
        assert agent["state"] == "paused" and agent["reason"] == "会议"
        support = next(q for q in board["queues"] if q["queue"] == "support")
        assert support["paused"] == 1 and support["logged_in"] == 2
        token = await csrf(wang)
        assert (
            await wang.post("/agent/states/ready", data={"csrf_token": token})
        ).status_code == 303
        await eventually_state(wang, "ready")
    with site.sessions()() as session:
        states = [r.state for r in session.query(AgentStateChange).filter_by(agent="1001")]
    assert states[-2:] == ["paused", "ready"]


async def test_a_paused_agent_is_not_rung(site, pbx_commands):
    async with site.signed_in("wang") as wang:
        token = await csrf(wang)
        form = {"csrf_token": token, "reason": "用餐"}
        assert (await wang.post("/agent/states/pause", data=form)).status_code == 303
        await eventually_state(wang, "paused")
        pbx_commands("call-in", "--from", ZHANG_SAN_RAW, "--hold", "4", "--wait", timeout=90)
        call = await logged_call(site.origin, caller="+86" + ZHANG_SAN_RAW)
        assert call["disposition"] == "answered" and call["agent"] == "1002"
        token = await csrf(wang)
        await wang.post("/agent/states/ready", data={"csrf_token": token})
        await eventually_state(wang, "ready")


async def test_after_call_work_pauses_the_agent_until_ready(site, pbx_commands):
    async with site.signed_in("lin") as lin, site.signed_in("wang") as wang, \
            site.signed_in("li") as li:  # fmt: skip
        token = CSRF_RE.search((await lin.get("/supervisor/queues")).text).group(1)
        form = {"csrf_token": token, "after_call_seconds": "120", "penalty": "0",
                "service_level_seconds": "20", "waiting_alert": "3",
                "longest_wait_alert_seconds": "60"}  # fmt: skip
        assert (await lin.post("/supervisor/queues/support", data=form)).status_code == 303
        pbx_commands("call-in", "--from", ZHANG_SAN_RAW, "--hold", "4", "--wait", timeout=90)
        call = await logged_call(site.origin, caller="+86" + ZHANG_SAN_RAW)
        agent = wang if call["agent"] == "1001" else li
        now = await eventually_state(agent, "after_call_work")
        assert now["reason"] == "话后处理"
        support = await eventually_queue(lin, lambda q: q["answered"] == 1)
        assert support["after_call_work"] == 1 and support["abandoned"] == 0
        assert support["service_level_today"] == 1.0
        token = await csrf(agent)
        await agent.post("/agent/states/ready", data={"csrf_token": token})
        await eventually_state(agent, "ready")
    with site.sessions()() as session:
        ext = call["agent"]
        states = [r.state for r in session.query(AgentStateChange).filter_by(agent=ext)]
    assert "on_call" in states and states[-2:] == ["after_call_work", "ready"]


async def test_login_logout_and_clear_errors(site, pbx_commands):
    states = site.app.state.runtime.agent_states
    async with site.signed_in("zhao") as zhao:
        token = await csrf(zhao)
        refused = await zhao.post("/agent/states/pause", data={"csrf_token": token,
                                                                "reason": "小休"})  # fmt: skip
        assert refused.status_code == 400 and "请先登录队列" in refused.text
        refused = await zhao.post("/agent/states/login", data={"csrf_token": token,
                                                                "queues": "sales"})  # fmt: skip
        assert refused.status_code == 400 and "没有这个队列" in refused.text
        assert re.search(r'value="sales"', refused.text) is None  # not a queue: not offered
        assert (await state_of(zhao))["state"] == "logged_out"
        assert states.link.board.of_interface("Local/1003@agents/n") == []
        login = await zhao.post("/agent/states/login", data={"csrf_token": token,
                                                              "queues": "support"})  # fmt: skip
        assert login.status_code == 303
        await until(lambda: len(states.link.board.of_interface("Local/1003@agents/n")) == 1)
        member = states.link.board.of_interface("Local/1003@agents/n")[0]
        assert member.dynamic and member.state_interface == "PJSIP/1003"
        assert (await state_of(zhao))["queues"] == ["support"]
        logout = await zhao.post("/agent/states/logout", data={"csrf_token": token,
                                                                "queues": "support"})  # fmt: skip
        assert logout.status_code == 303
        await eventually_state(zhao, "logged_out")
