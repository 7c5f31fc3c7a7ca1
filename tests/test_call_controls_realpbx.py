"""Call controls on the PBX kit's real Asterisk, with real calls.

A customer calls in and agent wang answers on 1001 (li's 1002 is paused in the support queue,
so the call goes to 1001). wang holds, resumes, transfers and hangs up from the agent page's
routes; what Asterisk does is read with the kit's ``core show channels concise`` (context,
application, bridge of each channel) and the kit's own AMI events. Another agent is refused,
a bad target changes nothing, and every control is in the audit log. A call wang places from
the dial pad is held, resumed and hung up the same way; a do-not-call number rings nothing.
"""

from __future__ import annotations

import pytest
from realpbx_site import ZHANG_SAN_RAW, frame_of_state, kit_site
from test_pops import CHEAP_ARGON2, CSRF_RE
from test_supervise_realpbx import channel_of, channels, off_loop, until

from crm_bridge.accounts import users
from crm_bridge.call_controls.domain import (
    NO_SUCH_CALL,
    NOT_A_QUEUE,
    NOT_AN_AGENT,
    ON_DO_NOT_CALL,
)
from crm_bridge.db.models import AuditEntry, DoNotCall

pytestmark = pytest.mark.realpbx

LI = "Local/1002@agents/n"
DNC_NUMBER = "13900000006"


@pytest.fixture
async def site(pbx_kit, pbx_commands, tmp_path, monkeypatch, kit_bridge):
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    async with kit_site(tmp_path, pbx_kit) as running:
        with running.sessions().begin() as session:
            session.add(DoNotCall(number_e164="+86" + DNC_NUMBER, note="asked", added_by="lin"))
        paused = await kit_bridge.send_action(
            "QueuePause", {"Interface": LI, "Queue": "support", "Paused": "true"}
        )
        assert paused["Response"] == "Success"  # support rings 1001 only; senior still has 1002
        try:
            yield running
        finally:
            await kit_bridge.send_action("QueuePause", {"Interface": LI, "Paused": "false"})
            await off_loop("rx", "pbx", "channel request hangup all")


def row_of(rows: list[list[str]], name: str) -> list[str] | None:
    """The concise row of the channel named ``name`` (``*`` stands for any text; a name
    without one is a prefix): channel, context, exten, priority, state, application, data,
    caller id, ..., bridge id (index 12)."""
    start, _, end = name.partition("*")
    return next((row for row in rows if row[0].startswith(start) and row[0].endswith(end)
                 and len(row[0]) >= len(start) + len(end)), None)  # fmt: skip


async def bridged_together(*prefixes: str) -> bool:
    rows = await channels()
    found = [row_of(rows, prefix) for prefix in prefixes]
    return all(found) and len({row[12] for row in found}) == 1 and found[0][12] != ""


async def answered_by_1001(site) -> str:
    """Place a customer's call, answered on 1001; its Linkedid once the tracker has it."""
    await off_loop("agent", "1001", "--behaviour", "answer", "--ring", "1", "--talk", "120")
    await off_loop("agent", "1002", "--behaviour", "answer", "--ring", "1", "--talk", "120")
    await off_loop("call-in", "--from", ZHANG_SAN_RAW, "--hold", "120")
    tracker = site.app.state.runtime.bridge.links[0].tracker
    found: list[str] = []

    def answered() -> bool:
        found[:] = [c.linkedid for c in tracker.active_calls()
                    if c.agent == "1001" and c.answered_at is not None]  # fmt: skip
        return bool(found)

    await until(answered, "the call answered by 1001")
    await until(lambda: bridged_together("PJSIP/carrier-", "Local/1001@agents-*;1"), "talking")
    return found[0]


async def control(client, linkedid: str, name: str, **target: str):
    token = CSRF_RE.search((await client.get("/agent")).text).group(1)
    return await client.post(f"/me/calls/{linkedid}/control", json={"control": name, **target},
                             headers={"X-CSRF-Token": token})  # fmt: skip


def audit_actions(site) -> list[tuple[str, str, str]]:
    with site.sessions()() as session:
        entries = session.query(AuditEntry).filter(AuditEntry.action.like("call_%"))
        return [(e.username, e.action, e.subject_id) for e in entries.order_by(AuditEntry.id)]


async def test_hold_resume_refusals_then_a_blind_transfer_to_1002(site, kit_bridge):
    async with site.signed_in("wang") as wang, site.signed_in("li") as li, \
            site.pops("li") as li_pops:  # fmt: skip
        linkedid = await answered_by_1001(site)
        customer = await channel_of("PJSIP/carrier-")
        agent = await channel_of("PJSIP/1001-")

        refused = await control(li, linkedid, "hold")
        assert (refused.status_code, refused.json()["detail"]) == (404, NO_SUCH_CALL)
        refused = await control(wang, linkedid, "resume")
        assert refused.status_code == 409 and "不能恢复" in refused.json()["detail"]

        held = await control(wang, linkedid, "hold")
        assert held.status_code == 200, held.text
        assert held.json()["state"] == "held" and held.json()["state_label"] == "保持中 On hold"
        rows = await channels()
        assert row_of(rows, customer)[1:3] + row_of(rows, customer)[5:6] == [
            "callbridge-hold", "customer", "MusicOnHold"]  # fmt: skip
        assert row_of(rows, agent)[1:3] == ["callbridge-hold", "agent"]
        shown = (await wang.get(f"/me/calls/{linkedid}/control")).json()
        assert shown == {"state": "held", "state_label": "保持中 On hold", "target": None}
        assert (await li.get(f"/me/calls/{linkedid}/control")).status_code == 404
        assert any(e.get("Event") == "MusicOnHoldStart" and e.get("Channel") == customer
                   for e in kit_bridge.heard)  # fmt: skip

        resumed = await control(wang, linkedid, "resume")
        assert resumed.status_code == 200 and resumed.json()["state"] == "talking"
        await until(lambda: bridged_together(customer, agent), "talking again")

        before = await channels()
        for target, message in [({"target_kind": "agent", "target": "2001"}, NOT_AN_AGENT),
                                ({"target_kind": "queue", "target": "billing"}, NOT_A_QUEUE),
                                ({"target_kind": "number", "target": DNC_NUMBER},
                                 ON_DO_NOT_CALL)]:  # fmt: skip
            bad = await control(wang, linkedid, "transfer", **target)
            assert bad.status_code == 400
            assert bad.json()["detail"] == {"message": message, "errors": {"target": message}}
        after = await channels()
        assert [row[:7] for row in after] == [row[:7] for row in before]  # nothing changed

        moved = await control(wang, linkedid, "transfer", target_kind="agent", target="1002")
        assert moved.status_code == 200 and moved.json()["state"] == "transferred"
        await until(lambda: bridged_together(customer, "PJSIP/1002-"), "the customer with 1002")
        rows = await channels()
        assert row_of(rows, customer)[1:3] + row_of(rows, customer)[5:6] == [
            "callbridge-transfer", "1002", "Dial"]  # fmt: skip
        assert row_of(rows, agent) is None  # wang's phone is off the call
        answered = await frame_of_state(li_pops, "answered")  # her card pops as wang's call...
        while not answered["mine"]:  # ...then is hers once 1002 answers
            answered = await frame_of_state(li_pops, "answered")
        assert answered["linkedid"] == linkedid and answered["by_agent"] == "1002"
        assert (await li.get(f"/me/calls/{linkedid}/control")).json()["state"] == "talking"
        gone = await control(wang, linkedid, "hangup")
        assert gone.status_code == 404  # no longer wang's call

    assert audit_actions(site) == [("wang", action, linkedid) for action in
                                   ("call_hold", "call_resume", "call_transfer")]  # fmt: skip
    await off_loop("rx", "pbx", f"channel request hangup {customer}")


async def test_attended_transfer_cancelled_then_completed_to_a_queue_then_hung_up(site):
    async with site.signed_in("wang") as wang, site.signed_in("li") as li:
        linkedid = await answered_by_1001(site)
        customer = await channel_of("PJSIP/carrier-")
        agent = await channel_of("PJSIP/1001-")

        asked = await control(wang, linkedid, "consult", target_kind="agent", target="1002")
        assert asked.status_code == 200 and asked.json()["state"] == "consulting"
        assert asked.json()["state_label"] == "转接中 Transferring"
        shown = (await wang.get(f"/me/calls/{linkedid}/control")).json()
        assert (shown["state"], shown["target"]) == ("consulting", "坐席 1002 / agent 1002")
        await until(lambda: bridged_together(agent, "PJSIP/1002-"), "wang talks to 1002")
        rows = await channels()
        assert row_of(rows, customer)[5] == "MusicOnHold"  # the customer waits with music
        cancelled = await control(wang, linkedid, "cancel")
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "talking"
        await until(lambda: bridged_together(customer, agent), "back with the customer")
        await until(lambda: _gone("PJSIP/1002-"), "1002's consultation leg hung up")

        asked = await control(wang, linkedid, "consult", target_kind="queue", target="senior")
        assert asked.status_code == 200, asked.text
        await until(lambda: bridged_together(agent, "Local/1002@agents-*;1"), "senior's 1002")
        done = await control(wang, linkedid, "complete")
        assert done.status_code == 200 and done.json()["state"] == "transferred"
        await until(lambda: bridged_together(customer, "PJSIP/1002-"), "customer with 1002")
        await until(lambda: _gone(agent), "wang's phone off the call")

        refused = await control(wang, linkedid, "hangup")
        assert refused.status_code == 404  # wang is off the call; li, on it, may hang up
        hung = await control(li, linkedid, "hangup")
        assert hung.status_code == 200 and hung.json()["state"] == "ended"
        await until(lambda: _gone(customer), "the call ended")

    assert audit_actions(site) == [
        ("wang", "call_consult", linkedid), ("wang", "call_cancel", linkedid),
        ("wang", "call_consult", linkedid), ("wang", "call_complete", linkedid),
        ("li", "call_hangup", linkedid),
    ]  # fmt: skip


async def _gone(prefix: str) -> bool:
    return row_of(await channels(), prefix) is None


async def test_a_number_from_the_dial_pad_held_resumed_and_hung_up(site):
    """The dial pad rings wang's 1001 (the kit's phone answers), then the kit's callee; the
    call it places is controlled like a queue call. A do-not-call number rings nothing."""
    await off_loop("agent", "1001", "--behaviour", "answer", "--ring", "1", "--talk", "120")
    async with site.signed_in("wang") as wang:
        token = CSRF_RE.search((await wang.get("/agent")).text).group(1)
        refused = await wang.post("/me/dial", json={"number": DNC_NUMBER},
                                  headers={"X-CSRF-Token": token})  # fmt: skip
        assert refused.status_code == 400
        assert await channels() == []  # nothing rang
        placed = await wang.post("/me/dial", json={"number": "139 0000 0001"},
                                 headers={"X-CSRF-Token": token})  # fmt: skip
        assert placed.status_code == 200, placed.text
        linkedid = placed.json()["channel_id"]
        tracker = site.app.state.runtime.bridge.links[0].tracker
        await until(
            lambda: any(c.linkedid == linkedid and c.answered_at for c in tracker.active_calls()),
            "the callee answered",
        )
        await until(lambda: bridged_together("PJSIP/1001-", "PJSIP/carrier-"), "talking")
        agent, customer = await channel_of("PJSIP/1001-"), await channel_of("PJSIP/carrier-")

        held = await control(wang, linkedid, "hold")
        assert held.status_code == 200, held.text
        rows = await channels()
        assert row_of(rows, customer)[1:3] + row_of(rows, customer)[5:6] == [
            "callbridge-hold", "customer", "MusicOnHold"]  # fmt: skip
        assert row_of(rows, agent)[1:3] == ["callbridge-hold", "agent"]
        assert (await control(wang, linkedid, "resume")).status_code == 200
        await until(lambda: bridged_together(agent, customer), "talking again")
        hung = await control(wang, linkedid, "hangup")
        assert hung.status_code == 200 and hung.json()["state"] == "ended"
        await until(lambda: _gone(customer), "the call ended")
        await until(lambda: _gone(agent), "wang's phone hung up")
    with site.sessions()() as session:
        dialled = session.query(AuditEntry).filter_by(action="dial").one()
    assert dialled.username == "wang" and "13900000001" not in dialled.subject_id
    controls = ("call_hold", "call_resume", "call_hangup")
    assert audit_actions(site) == [("wang", action, linkedid) for action in controls]
