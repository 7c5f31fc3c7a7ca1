"""The call controls' AMI actions as bytes (through the one sanitiser) and the rules of which
control and which transfer target are allowed."""

from __future__ import annotations

import pytest

from crm_bridge.call_controls.domain import (
    NOT_A_QUEUE,
    NOT_AN_AGENT,
    OWN_EXTENSION,
    UNKNOWN_CONTROL,
    ControlRefused,
    agent_target,
    check_control,
    not_now,
    queue_target,
)
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
