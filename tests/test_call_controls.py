"""The call controls' AMI actions as bytes (through the one sanitiser) and the rules of which
control and which transfer target are allowed."""

from __future__ import annotations

import pytest
from test_pops import CHEAP_ARGON2, CSRF_RE, first_events_through, running_site, wait_for

from crm_bridge.accounts import users
from crm_bridge.call_controls.domain import (
    NO_SUCH_CALL,
    NOT_A_NUMBER,
    NOT_A_QUEUE,
    NOT_AN_AGENT,
    ON_DO_NOT_CALL,
    OWN_EXTENSION,
    UNKNOWN_CONTROL,
    UNKNOWN_KIND,
    ControlRefused,
    agent_target,
    check_control,
    not_now,
    queue_target,
)
from crm_bridge.db.models import AuditEntry, DoNotCall
from telephony import call_controls as actions
from telephony.ami_codec import UnsafeAmiValue, encode_action

CUSTOMER = "PJSIP/carrier-00000003"
AGENT = "PJSIP/1001-00000004"


def wire(control: actions.ControlAction) -> str:
    return encode_action(control.action, list(control.headers)).decode()


def test_hang_up_names_the_agents_own_channel_only():
    assert wire(actions.hang_up(AGENT)) == f"Action: Hangup\r\nChannel: {AGENT}\r\n\r\n"


def test_hold_is_one_redirect_of_both_channels_to_the_hold_context():
    assert wire(actions.hold(CUSTOMER, AGENT)) == (
        "Action: Redirect\r\n"
        f"Channel: {CUSTOMER}\r\nContext: callbridge-hold\r\nExten: customer\r\nPriority: 1\r\n"
        f"ExtraChannel: {AGENT}\r\nExtraContext: callbridge-hold\r\nExtraExten: agent\r\n"
        "ExtraPriority: 1\r\n\r\n"
    )


def test_resume_and_cancel_bridge_the_agent_and_the_customer_again():
    assert wire(actions.resume(CUSTOMER, AGENT)) == (
        f"Action: Bridge\r\nChannel1: {AGENT}\r\nChannel2: {CUSTOMER}\r\nTone: no\r\n\r\n"
    )


def test_a_blind_transfer_sends_the_customer_to_the_target_and_hangs_the_agent_up():
    text = wire(actions.blind_transfer(CUSTOMER, AGENT, "queue-senior"))
    assert text.startswith("Action: Redirect\r\n")
    assert f"Channel: {CUSTOMER}\r\nContext: callbridge-transfer\r\nExten: queue-senior\r\n" in text
    assert f"ExtraChannel: {AGENT}\r\nExtraContext: callbridge-transfer\r\n" in text
    assert "ExtraExten: hangup\r\n" in text


def test_an_attended_transfer_holds_the_customer_while_the_agent_dials_then_bridges():
    text = wire(actions.consult(CUSTOMER, AGENT, "913900000001"))
    assert f"Channel: {CUSTOMER}\r\nContext: callbridge-hold\r\nExten: customer\r\n" in text
    assert f"ExtraChannel: {AGENT}\r\nExtraContext: callbridge-transfer\r\n" in text
    assert "ExtraExten: 913900000001\r\n" in text
    done = wire(actions.complete_transfer(CUSTOMER, "PJSIP/1002-00000009"))
    assert done == (f"Action: Bridge\r\nChannel1: {CUSTOMER}\r\n"
                    "Channel2: PJSIP/1002-00000009\r\nTone: no\r\n\r\n")  # fmt: skip


@pytest.mark.parametrize("bad", [
    "PJSIP/1001-1\r\nAction: Originate", "PJSIP/1001\n", "PJSIP/1001\x00", "x" * 1100,
])  # fmt: skip
def test_a_value_asterisk_could_misread_is_refused_before_anything_is_sent(bad):
    for control in (actions.hang_up(bad), actions.hold(CUSTOMER, bad),
                    actions.blind_transfer(CUSTOMER, AGENT, bad)):  # fmt: skip
        with pytest.raises(UnsafeAmiValue):
            wire(control)


def test_each_control_only_in_its_states():
    check_control("hold", "talking")
    check_control("transfer", "held")
    check_control("complete", "consulting")
    with pytest.raises(ControlRefused) as refused:
        check_control("resume", "talking")
    assert refused.value.status == 409
    assert refused.value.message == not_now("resume", "talking")
    assert refused.value.message == "当前通话中，不能恢复 / Cannot resume now: talking"
    with pytest.raises(ControlRefused) as refused:
        check_control("explode", "talking")
    assert (refused.value.status, refused.value.message) == (400, UNKNOWN_CONTROL)


def test_transfer_targets_are_a_known_queue_or_another_agents_extension():
    assert queue_target("senior", ["support", "senior"]).exten == "queue-senior"
    assert agent_target("1002", ["1001"]).exten == "1002"
    for call, message in [
        (lambda: queue_target("billing", ["support"]), NOT_A_QUEUE),
        (lambda: queue_target("support,x", ["support"]), NOT_A_QUEUE),
        (lambda: agent_target("2001", ["1001"]), NOT_AN_AGENT),
        (lambda: agent_target("1002@internal", ["1001"]), NOT_AN_AGENT),
        (lambda: agent_target("1001", ["1001"]), OWN_EXTENSION),
    ]:
        with pytest.raises(ControlRefused) as refused:
            call()
        assert (refused.value.status, refused.value.field, refused.value.message) == (
            400, "target", message)  # fmt: skip


# --------------------------------------------------------------------------- the routes


@pytest.fixture
async def site(tmp_path, monkeypatch):
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    async with running_site(tmp_path) as running:
        with running.sessions().begin() as session:
            session.add(DoNotCall(number_e164="+8613900000006", note="asked", added_by="lin"))
        yield running


async def post(client, url: str, body: dict, csrf: bool = True):
    token = CSRF_RE.search((await client.get("/agent")).text)
    headers = {"X-CSRF-Token": token.group(1)} if csrf and token else {}
    return await client.post(url, json=body, headers=headers)


def audit_of(site) -> list[tuple[str, str, str]]:
    with site.sessions()() as session:
        rows = session.query(AuditEntry).order_by(AuditEntry.id)
        return [(e.action, e.subject_type, e.subject_id) for e in rows]


async def test_the_dial_pad_refuses_a_bad_or_do_not_call_number_and_dials_a_good_one(site):
    async with site.signed_in("wang") as wang, site.signed_in("zhou") as zhou:
        for number, message in (("13900000006", ON_DO_NOT_CALL), ("139-DIAL", NOT_A_NUMBER),
                                ("+86 139 0000 0006", ON_DO_NOT_CALL)):  # fmt: skip
            refused = await post(wang, "/me/dial", {"number": number})
            assert refused.status_code == 400
            assert refused.json()["detail"] == {"message": message, "errors": {"number": message}}
        assert audit_of(site) == []  # nothing sent, nothing audited
        assert (await post(zhou, "/me/dial", {"number": "13900000001"})).status_code == 403
        assert (await post(wang, "/me/dial", {"number": "13900000001"}, csrf=False)
                ).status_code == 403  # fmt: skip

        placed = await post(wang, "/me/dial", {"number": "139 0000 0001"})
        assert placed.status_code == 200, placed.text
        assert "139****0001" in placed.json()["message"]
    ((action, subject_type, subject_id),) = audit_of(site)
    assert (action, subject_type) == ("dial", "number")
    assert "13900000001" not in subject_id  # masked


async def test_only_the_agent_on_an_answered_call_may_control_it(site):
    answered, rest = first_events_through("a_inbound_answered_1001", "AgentConnect")
    await site.simulator.play_events(answered, speed=0, renumber=False)
    tracker = site.app.state.runtime.bridge.links[0].tracker

    async def live() -> bool:
        return any(c.answered_at is not None for c in tracker.active_calls())

    await wait_for(live)
    (call,) = tracker.active_calls()
    url = f"/me/calls/{call.linkedid}/control"
    async with site.signed_in("wang") as wang, site.signed_in("li") as li:
        shown = (await wang.get(url)).json()
        assert shown == {"state": "talking", "state_label": "通话中 Talking", "target": None}
        assert (await li.get(url)).status_code == 404
        refused = await post(li, url, {"control": "hold"})
        assert (refused.status_code, refused.json()["detail"]) == (404, NO_SUCH_CALL)
        bad = await post(wang, url, {"control": "transfer", "target_kind": "queue",
                                     "target": "support\r\nAction: Originate"})  # fmt: skip
        assert bad.status_code == 400 and bad.json()["detail"]["errors"] == {"target": NOT_A_QUEUE}
        bad = await post(wang, url, {"control": "consult", "target_kind": "number",
                                     "target": "13900000006"})  # fmt: skip
        assert bad.json()["detail"]["errors"] == {"target": ON_DO_NOT_CALL}
        bad = await post(wang, url, {"control": "transfer", "target_kind": "fax", "target": "1"})
        assert bad.json()["detail"]["errors"] == {"target_kind": UNKNOWN_KIND}
        wrong = await post(wang, url, {"control": "complete"})
        assert wrong.status_code == 409
        assert (await post(wang, url, {"control": "hold"}, csrf=False)).status_code == 403
    assert audit_of(site) == []  # every refusal before anything was sent
    await site.simulator.play_events(rest, speed=0, renumber=False)
