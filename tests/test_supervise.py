"""Listen, whisper, barge without a PBX: who may supervise which call (the decision as a table),
the supervised queues an admin may set, the dialplan context the bridge rings into, and the
Originate and the session's life against the AMI simulator over a real socket (a recorded call
answered by 1001).

The real calls are in tests/test_supervise_realpbx.py and tests/test_supervise_browser.py.
"""

from __future__ import annotations

import asyncio

import pytest
from test_dialplans import DIALPLAN_FILE, DIALPLANS, apps, read_conf, read_dialplan, split_args
from test_pops import CSRF_RE, PASSWORD, hashed, site, trace  # noqa: F401  (site: the app fixture)

from crm_bridge.accounts.users import UserInputError, parse_queues
from crm_bridge.db.models import AuditEntry, Call, User
from crm_bridge.supervise.domain import (
    AGENT_CHANNEL_UNKNOWN,
    MODES,
    NO_EXTENSION,
    NO_QUEUE,
    NO_SUCH_CALL,
    NOT_A_SUPERVISOR,
    NOT_ANSWERED,
    OWN_CALL,
    UNKNOWN_MODE,
    Busy,
    SupervisionRefused,
    Supervisor,
    Target,
    already_listened,
    decide,
    not_your_queue,
    phone_busy,
)
from crm_bridge.supervise.service import CONTEXT, is_supervise_event
from telephony.call_events import CallRecord
from telephony.simulator.server import always_answered

CHEN = Supervisor("chen", "supervisor", ("1002",), ("support",))
AGENT_CHANNEL = "PJSIP/1001-0000000a"


def call(**changes) -> CallRecord:
    values = {"linkedid": "1700000000.1", "server": "default", "queue": "support",
              "agent": "1001", "answered_at": 1700000003.0} | changes  # fmt: skip
    return CallRecord(**values)


def busy(linkedid: str = "1700000000.1", extension: str = "1003") -> Busy:
    return Busy(linkedid, "he", extension, "listen")


REFUSALS = [
    # (who, mode, call, agent's channel, sessions going on) -> (status, message)
    (Supervisor("wang", "agent", ("1001",), ("support",)), "listen", call(), AGENT_CHANNEL, [],
     403, NOT_A_SUPERVISOR),
    (Supervisor("boss", "admin", ("1003",), ("support",)), "listen", call(), AGENT_CHANNEL, [],
     403, NOT_A_SUPERVISOR),
    (CHEN, "eavesdrop", call(), AGENT_CHANNEL, [], 400, UNKNOWN_MODE),
    (CHEN, "", call(), AGENT_CHANNEL, [], 400, UNKNOWN_MODE),
    (Supervisor("ma", "supervisor", (), ("support",)), "listen", call(), AGENT_CHANNEL, [],
     400, NO_EXTENSION),
    (CHEN, "listen", None, None, [], 404, NO_SUCH_CALL),
    (CHEN, "listen", call(queue=None), AGENT_CHANNEL, [], 403, NO_QUEUE),
    (CHEN, "whisper", call(queue="sales"), AGENT_CHANNEL, [], 403, not_your_queue("sales")),
    (Supervisor("gao", "supervisor", ("1003",), ("sales",)), "barge", call(), AGENT_CHANNEL, [],
     403, not_your_queue("support")),
    (CHEN, "listen", call(answered_at=None, agent=None), None, [], 409, NOT_ANSWERED),
    (CHEN, "listen", call(agent="1002"), AGENT_CHANNEL, [], 409, OWN_CALL),
    (Supervisor("x", "supervisor", ("PJSIP/1001",), ("support",)), "listen", call(),
     AGENT_CHANNEL, [], 409, OWN_CALL),
    (CHEN, "listen", call(), None, [], 409, AGENT_CHANNEL_UNKNOWN),
    (CHEN, "listen", call(), AGENT_CHANNEL, [busy()], 409, already_listened("he", "listen")),
    (CHEN, "barge", call(), AGENT_CHANNEL, [busy("1700000099.7", "1002")], 409,
     phone_busy("1700000099.7")),
]  # fmt: skip


@pytest.mark.parametrize(("who", "mode", "the_call", "channel", "going_on", "code", "message"),
                         REFUSALS)  # fmt: skip
def test_each_refusal_with_its_status_and_reason(who, mode, the_call, channel, going_on, code,
                                                 message):  # fmt: skip
    with pytest.raises(SupervisionRefused) as refused:
        decide(who, mode, the_call, channel, going_on)
    assert (refused.value.status, refused.value.message) == (code, message)
    assert "/" in message  # zh-CN / English


@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_supervisor_of_the_calls_queue_may_supervise_it(mode):
    other_call = [busy("1700000099.7", "1003")]
    target = decide(CHEN, mode, call(), AGENT_CHANNEL, other_call)
    assert target == Target("1700000000.1", "support", "1001", AGENT_CHANNEL, "1002")


def test_already_listened_names_who_and_how():
    assert already_listened("chen", "barge") == (
        "这通电话已有主管 chen 在强插 / This call is already listened to (chen, barge)"
    )


def test_supervised_queues_from_the_admin_form():
    assert parse_queues("support, vip，support\nsales", None) == ["support", "vip", "sales"]
    assert parse_queues(["support"], {"support", "sales"}) == ["support"]
    assert parse_queues("", {"support"}) == []
    with pytest.raises(UserInputError) as unknown:
        parse_queues("support sales", {"support"})
    refused = "没有这个队列：sales / No such queue: sales"
    assert unknown.value.errors == {"supervised_queues": refused}
    for bad in ("support\r\nAction: Command", "-x", "a" * 65, "队列"):
        with pytest.raises(UserInputError) as not_a_name:
            parse_queues(bad, None)
        assert "supervised_queues" in not_a_name.value.errors


def test_the_supervisors_channels_are_known_by_their_id():
    assert is_supervise_event({"Uniqueid": "cbsup-1", "Linkedid": "cbsup-1"})
    assert is_supervise_event({"Event": "OriginateResponse", "Uniqueid": "cbsup-1"})
    assert not is_supervise_event({"Uniqueid": "1700000000.1", "Linkedid": "1700000000.1"})


def test_the_dialplan_spies_with_the_options_of_each_mode():
    plan = read_dialplan(DIALPLANS / DIALPLAN_FILE)
    spies = {exten: split_args(data) for context, exten, _, data in apps(plan, "ChanSpy")
             if context == CONTEXT}  # fmt: skip
    assert spies == {"listen": ["${CC_SPY_CHANNEL}", "qES"],
                     "whisper": ["${CC_SPY_CHANNEL}", "qwES"],
                     "barge": ["${CC_SPY_CHANNEL}", "qBES"]}  # fmt: skip
    assert set(plan[CONTEXT]) == set(MODES)
    for exten, steps in plan[CONTEXT].items():
        names = [app for app, _ in steps]
        assert names == ["Set", "ExecIf", "ChanSpy", "Hangup"], exten
        assert steps[0][1] == "CDR_PROP(disable)=1"  # a supervisor listening in is no call
        assert steps[1][1] == '$["${CC_SPY_CHANNEL}" = ""]?Hangup()'  # never every channel


def test_only_the_bridges_originate_reaches_the_supervise_context():
    text = (DIALPLANS / DIALPLAN_FILE).read_text(encoding="utf-8")
    uses = [line for line in text.splitlines()
            if CONTEXT in line and not line.lstrip().startswith(";")]  # fmt: skip
    assert uses == [f"[{CONTEXT}]"]  # no include, Goto, Gosub or Dial leads there
    pjsip = read_conf(DIALPLANS / "pjsip.conf")
    assert all(CONTEXT not in value for sec in pjsip for _, value in sec.items)


# --------------------------------------------------------------------------- on the simulator


async def until(predicate, what: str, wait: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while not predicate():
        assert loop.time() < deadline, f"never: {what}"
        await asyncio.sleep(0.02)


async def answered_by_1001(running) -> str:
    """The recorded call of 1001, played up to the agent's answer: it goes on."""
    events = trace("a_inbound_answered_1001").events
    upto = next(i for i, event in enumerate(events) if event.get("Event") == "AgentConnect")
    await running.simulator.play_events(events[: upto + 1], speed=0, renumber=True)
    tracker = running.app.state.runtime.bridge.links[0].tracker
    await until(lambda: any(c.answered_at for c in tracker.active_calls()), "answered")
    (call,) = tracker.active_calls()
    assert (call.queue, call.agent) == ("support", "1001")
    return call.linkedid


async def supervise(client, linkedid: str, mode: str):
    token = CSRF_RE.search((await client.get("/supervisor/supervise")).text).group(1)
    return await client.post(f"/supervisor/supervise/{linkedid}", json={"mode": mode},
                             headers={"X-CSRF-Token": token})  # fmt: skip


async def test_one_listener_per_call_until_its_channel_hangs_up(site):  # noqa: F811
    with site.sessions().begin() as session:
        for name, extension in (("chen", "1002"), ("he", "PJSIP/1003")):
            session.add(User(username=name, password_hash=hashed(PASSWORD), role="supervisor",
                             extensions=[extension], supervised_queues=["support"]))  # fmt: skip
    service = site.app.state.runtime.supervise
    site.simulator.originate_outcome = lambda _headers: None  # queued; nothing happens yet
    linkedid = await answered_by_1001(site)
    async with site.signed_in("chen") as chen, site.signed_in("he") as he:
        placed = await supervise(chen, linkedid, "listen")
        assert placed.status_code == 202, placed.text
        (originate,) = site.simulator.actions_named("Originate")
        channel_id = placed.json()["session"]["id"]
        assert channel_id.startswith("cbsup-") and originate["ChannelId"] == channel_id
        assert (originate["Channel"], originate["Context"], originate["Exten"]) == (
            "PJSIP/1002", CONTEXT, "listen")
        assert originate["CallerID"] == '"Listen 1001" <1001>'
        assert originate["Variable"].startswith("CC_SPY_CHANNEL=PJSIP/1001-")

        again = await supervise(he, linkedid, "whisper")
        assert (again.status_code, again.json()["detail"]) == (
            409, already_listened("chen", "listen"))
        assert len(site.simulator.actions_named("Originate")) == 1  # nothing sent

        hangup = {"Event": "Hangup", "Channel": "PJSIP/1002-000000ff", "Uniqueid": channel_id,
                  "Linkedid": channel_id, "Cause": "16"}  # fmt: skip
        await site.simulator.play_events([hangup], speed=0, renumber=False)
        await until(lambda: service.sessions == {}, "the session ended with its channel")

        site.simulator.originate_outcome, site.simulator.originate_speed = always_answered, 0
        placed = await supervise(he, linkedid, "barge")
        assert placed.status_code == 202, placed.text
        assert site.simulator.actions_named("Originate")[-1]["Channel"] == "PJSIP/1003"
        await until(lambda: service.sessions == {}, "the replayed ring ended the session")

    tracker = site.app.state.runtime.bridge.links[0].tracker
    assert [c.linkedid for c in tracker.active_calls()] == [linkedid]  # the call goes on
    with site.sessions()() as session:
        entries = session.query(AuditEntry).order_by(AuditEntry.id).all()
        assert [(e.username, e.action, e.subject_id) for e in entries] == [
            ("chen", "listen", linkedid), ("he", "barge", linkedid)]
        assert session.query(Call).count() == 0  # a supervisor listening in is no call
