"""Listen, whisper, barge on the PBX kit's real Asterisk, with real calls.

A customer calls in and agent wang answers on 1001 (li's 1002 is paused in the queue, so the
call goes to 1001); supervisor chen's own phone is 1002. What Asterisk runs is read with the
kit's ``core show channels concise``: a ChanSpy on 1001's channel from chen's phone, in the
dialplan context ``callbridge-supervise``, with the options of the mode, gone when the call
ends. Refusals (an agent, a supervisor of another queue, a second listen, a bad mode) place
nothing; every use is in the audit log; a supervisor listening in is no call in the call log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from pbx_kit import pbx
from realpbx_site import WAIT, ZHANG_SAN_RAW, api, kit_site
from test_pops import CHEAP_ARGON2, CSRF_RE, PASSWORD, hashed

from crm_bridge.accounts import users
from crm_bridge.db.models import AuditEntry, User
from crm_bridge.supervise.domain import NO_EXTENSION, not_your_queue

pytestmark = pytest.mark.realpbx

LI = "Local/1002@agents/n"
SUPERVISORS = {
    "chen": (["1002"], ["support"]),
    "he": (["1003"], ["support"]),
    "gao": (["1003"], ["sales"]),
    "ma": ([], ["support"]),
}
"""Supervisors: extensions, supervised queues. chen's phone is the kit's 1002."""
OPTIONS = {"listen": "qES", "whisper": "qwES", "barge": "qBES"}


async def off_loop(*args: str) -> str:
    """A kit command, off the event loop (the app under test runs on it)."""
    return await asyncio.get_running_loop().run_in_executor(None, lambda: pbx(*args))


async def channels() -> list[list[str]]:
    """``core show channels concise``: channel, context, exten, priority, state, application,
    data, ... per channel."""
    out = await off_loop("rx", "pbx", "core show channels concise")
    return [line.split("!") for line in out.splitlines() if line.count("!") >= 6]


async def until(predicate: Callable[[], object], what: str, wait: float = WAIT) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while not await _holds(predicate):
        assert loop.time() < deadline, f"never: {what}"
        await asyncio.sleep(0.2)


async def _holds(predicate: Callable[[], object]) -> bool:
    result = predicate()
    return bool(await result) if asyncio.iscoroutine(result) else bool(result)


async def spies() -> list[list[str]]:
    return [row for row in await channels() if row[5] == "ChanSpy"]


async def channel_of(prefix: str) -> str:
    found: list[str] = []

    async def there() -> bool:
        found[:] = [row[0] for row in await channels() if row[0].startswith(prefix)]
        return bool(found)

    await until(there, f"a channel {prefix}")
    return found[0]


@pytest.fixture
async def site(pbx_kit, pbx_commands, tmp_path, monkeypatch, kit_bridge):
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    async with kit_site(tmp_path, pbx_kit) as running:
        with running.sessions().begin() as session:
            for name, (extensions, queues) in SUPERVISORS.items():
                session.add(User(username=name, password_hash=hashed(PASSWORD),
                                 role="supervisor", extensions=extensions,
                                 supervised_queues=queues))  # fmt: skip
        paused = await kit_bridge.send_action("QueuePause", {"Interface": LI, "Paused": "true"})
        assert paused["Response"] == "Success"  # the queue rings 1001 only
        try:
            yield running
        finally:
            await kit_bridge.send_action("QueuePause", {"Interface": LI, "Paused": "false"})
            await off_loop("rx", "pbx", "channel request hangup all")


async def answered_by_1001(site, client) -> dict:
    """Place a customer's call, answered by wang on 1001; the wallboard's row of 1001 once it
    shows the call (its Linkedid and queue)."""
    await off_loop("agent", "1001", "--behaviour", "answer", "--ring", "1", "--talk", "120")
    await off_loop("call-in", "--from", ZHANG_SAN_RAW, "--hold", "120")
    row: dict = {}

    async def on_call() -> bool:
        board = (await client.get("/wallboard/now")).json()
        row.update(next((a for a in board["agents"] if a["agent"] == "1001"), {}))
        return bool(row.get("linkedid"))

    await until(on_call, "1001 on the call on the wallboard")
    assert row["call_queue"] == "support"
    return row


async def csrf_of(client) -> str:
    return CSRF_RE.search((await client.get("/supervisor/supervise")).text).group(1)


async def supervise(client, linkedid: str, mode: str):
    token = await csrf_of(client)
    return await client.post(f"/supervisor/supervise/{linkedid}", json={"mode": mode},
                             headers={"X-CSRF-Token": token})  # fmt: skip


async def hang_up_the_customer(kit_bridge) -> None:
    carrier = await channel_of("PJSIP/carrier-")
    response = await kit_bridge.send_action("Hangup", {"Channel": carrier})
    assert response["Response"] == "Success"


def audit_entries(site, *actions: str) -> list[AuditEntry]:
    with site.sessions()() as session:
        query = session.query(AuditEntry).filter(AuditEntry.action.in_(actions))
        return list(query.order_by(AuditEntry.id))


async def test_listen_to_a_real_call_until_it_ends(site, kit_bridge):
    service = site.app.state.runtime.supervise
    async with site.signed_in("chen") as chen, site.signed_in("wang") as wang, \
            site.signed_in("gao") as gao, site.signed_in("he") as he:  # fmt: skip
        await off_loop("agent", "1002", "--behaviour", "answer", "--ring", "1", "--talk", "120")
        call = await answered_by_1001(site, chen)
        linkedid = call["linkedid"]
        agent_channel = await channel_of("PJSIP/1001-")

        token = CSRF_RE.search((await wang.get("/agent")).text).group(1)
        refused = await wang.post(f"/supervisor/supervise/{linkedid}", json={"mode": "listen"},
                                  headers={"X-CSRF-Token": token})  # fmt: skip
        assert refused.status_code == 403
        refused = await supervise(gao, linkedid, "listen")
        assert refused.status_code == 403
        assert refused.json()["detail"] == not_your_queue("support")
        refused = await supervise(chen, linkedid, "eavesdrop")
        assert refused.status_code == 400 and "listen、whisper 或 barge" in refused.json()["detail"]
        assert (await supervise(chen, "no-such-call", "listen")).status_code == 404
        assert await spies() == [] and service.sessions == {}

        placed = await supervise(chen, linkedid, "listen")
        assert placed.status_code == 202, placed.text
        assert "正在呼叫您的分机 1002" in placed.json()["message"]
        await until(spies, "a ChanSpy")
        ((spy, context, exten, _prio, _state, app, data, *_),) = await spies()
        assert spy.startswith("PJSIP/1002-") and (context, exten) == ("callbridge-supervise",
                                                                      "listen")  # fmt: skip
        assert (app, data) == ("ChanSpy", f"{agent_channel},qES")
        await until(lambda: [s.state for s in service.sessions.values()] == ["on"], "picked up")

        for second in (he, chen):
            again = await supervise(second, linkedid, "listen")
            assert again.status_code == 409
            assert again.json()["detail"] == (
                "这通电话已有主管 chen 在监听 / This call is already listened to (chen, listen)"
            )
        assert len(await spies()) == 1 and len(service.sessions) == 1
        page = (await chen.get("/supervisor/supervise")).text
        assert "监听 Listen · chen" in page

        await hang_up_the_customer(kit_bridge)
        await until(lambda: service.sessions == {}, "the listen ended with the call")
        await until(lambda: _no_spies(), "ChanSpy gone")

    (entry,) = audit_entries(site, "listen", "whisper", "barge", "supervise_failed")
    assert (entry.username, entry.role, entry.action) == ("chen", "supervisor", "listen")
    assert (entry.subject_type, entry.subject_id) == ("call", linkedid)
    assert entry.details["queue"] == "support" and entry.details["agent"] == "1001"
    assert entry.details["extension"] == "1002" and entry.client == "127.0.0.1"
    async with api(site) as client:
        await until(lambda: _calls_logged(client, 1), "the call logged")
        (logged,) = (await client.get("/api/calls")).json()["calls"]
    assert logged["linkedid"] == linkedid and logged["agent"] == "1001"
    cdrs = [e for e in kit_bridge.heard if e.get("Event") == "Cdr"]
    assert any(e.get("LinkedID") == linkedid for e in cdrs)
    assert [e for e in cdrs if e.get("LinkedID", "").startswith("cbsup-")] == []  # no CDR


async def _no_spies() -> bool:
    return await spies() == []


async def _calls_logged(client, count: int) -> bool:
    return len((await client.get("/api/calls")).json()["calls"]) == count


async def test_whisper_then_barge_each_with_its_options(site, kit_bridge):
    """The supervisor hangs up a whisper (the kit's phone hangs up after it spoke), which frees
    the call for a barge on the same call; the barge ends with the call."""
    service = site.app.state.runtime.supervise
    async with site.signed_in("chen") as chen:
        await off_loop("agent", "1002", "--behaviour", "answer", "--ring", "1", "--talk", "4")
        call = await answered_by_1001(site, chen)
        agent_channel = await channel_of("PJSIP/1001-")
        for mode in ("whisper", "barge"):
            placed = await supervise(chen, call["linkedid"], mode)
            assert placed.status_code == 202, placed.text
            await until(spies, f"a ChanSpy to {mode}")
            ((_spy, context, exten, _p, _s, app, data, *_),) = await spies()
            assert (context, exten, app) == ("callbridge-supervise", mode, "ChanSpy")
            assert data == f"{agent_channel},{OPTIONS[mode]}"
            if mode == "whisper":
                await until(lambda: service.sessions == {}, "the supervisor hung up")
                await until(_no_spies, "the whisper's ChanSpy gone")
                assert await channel_of("PJSIP/1001-") == agent_channel  # the call goes on
        await hang_up_the_customer(kit_bridge)
        await until(lambda: service.sessions == {}, "the barge ended with the call")
        await until(_no_spies, "ChanSpy gone")
    entries = audit_entries(site, "listen", "whisper", "barge", "supervise_failed")
    assert [(e.action, e.subject_id) for e in entries] == [
        ("whisper", call["linkedid"]),
        ("barge", call["linkedid"]),
    ]


async def test_a_phone_that_cannot_be_rung_frees_the_call(site):
    """he's extension 1003 is no phone of the kit: the ring fails, the call is free again; a
    supervisor without an extension is refused before anything is sent."""
    service = site.app.state.runtime.supervise
    async with site.signed_in("he") as he, site.signed_in("ma") as ma:
        call = await answered_by_1001(site, he)
        no_phone = await supervise(ma, call["linkedid"], "listen")
        assert no_phone.status_code == 400
        assert no_phone.json()["detail"] == NO_EXTENSION
        placed = await supervise(he, call["linkedid"], "listen")
        assert placed.status_code == 202  # queued (Async); its OriginateResponse fails it
        await until(lambda: service.sessions == {}, "the failed ring ends the session")
        assert await spies() == []
        again = await supervise(he, call["linkedid"], "barge")  # the call is free again
        assert again.status_code == 202
        await until(lambda: service.sessions == {}, "the second failed ring ends too")
    entries = audit_entries(site, "listen", "barge", "supervise_failed")
    assert [(e.username, e.action) for e in entries] == [("he", "listen"), ("he", "barge")]
