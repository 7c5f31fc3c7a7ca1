"""The satisfaction survey without Asterisk: the score taken from the customer's own channel
only (a real recorded call with the dialplan's VarSet added), the dialplan's answer from the
app's FastAGI server over a real socket, the prompts page (uploads converted, bad files
refused with nothing changed, back to the default, roles, CSRF, audit) and the queue
setting's checks, on SQLite."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np
import pytest
import soundfile
from sqlalchemy import select
from test_fastagi import ENVIRONMENT, exchange
from test_pops import CHEAP_ARGON2, CSRF_RE, PASSWORD, Site, hashed
from test_routing import routing_site

from crm_bridge.accounts import users
from crm_bridge.agent_states import store as queue_store
from crm_bridge.db.models import AuditEntry, QueueSetting, SurveyPrompt, User
from crm_bridge.survey import prompts
from crm_bridge.survey.domain import PROMPT_KINDS, answer
from telephony.call_events import CallEnded
from telephony.call_tracker import CallTracker
from telephony.trace_files import RECORDED_TRACES, load_trace

TRACE = RECORDED_TRACES / "sip" / "a_inbound_answered_1001.ami"
SUPERVISOR = "chen"


# ------------------------------------------------------------------ the score on the call


def scored_trace(*scores: tuple[str, str]) -> list[dict]:
    """The recorded inbound call answered by 1001, with the VarSets ``(channel, value)`` of
    ``CC_SURVEY_SCORE`` added before its first hang-up; ``channel`` is ``customer`` or
    ``agent``."""
    events = [dict(e) for e in load_trace(TRACE).events]
    first = next(e for e in events if e.get("Event") == "Newchannel")
    agent = next(e for e in events if e.get("Event") == "Newchannel"
                 and e.get("Channel", "").startswith("PJSIP/1001"))  # fmt: skip
    uniqueids = {"customer": first["Uniqueid"], "agent": agent["Uniqueid"]}
    at = next(i for i, e in enumerate(events) if e.get("Event") == "Hangup")
    added = [{"Event": "VarSet", "Uniqueid": uniqueids[who], "Linkedid": first["Linkedid"],
              "Variable": "CC_SURVEY_SCORE", "Value": value} for who, value in scores]  # fmt: skip
    return events[:at] + added + events[at:]


def ended(events: list[dict]):
    calls = [e.call for e in CallTracker(server="pbx1").feed_all(events)
             if isinstance(e, CallEnded)]  # fmt: skip
    assert len(calls) == 1
    return calls[0]


def test_the_customer_channel_scores_the_call():
    assert ended(scored_trace(("customer", "4"))).survey_score == 4
    assert ended(scored_trace()).survey_score is None


@pytest.mark.parametrize("value", ["0", "6", "9", "44", "*", "four", " 4"])
def test_a_score_out_of_range_is_ignored_and_the_call_is_logged_as_ever(value):
    call = ended(scored_trace(("customer", value)))
    plain = ended(scored_trace())
    assert call.survey_score is None
    assert (call.agent, call.disposition, call.talk_seconds) == (
        plain.agent, plain.disposition, plain.talk_seconds)


def test_only_the_customer_channel_can_score():
    assert ended(scored_trace(("agent", "5"))).survey_score is None
    assert ended(scored_trace(("customer", "2"), ("agent", "5"))).survey_score == 2


def test_the_talk_ends_where_the_survey_begins_on_the_customer_channel():
    events = scored_trace()
    plain = ended(events)
    hangup = next(i for i, e in enumerate(events) if e.get("Event") == "Hangup")
    at = float(events[hangup]["Timestamp"])
    for who, kept in (("customer", True), ("agent", False)):
        begun = scored_trace()
        begun[hangup:hangup] = [{"Event": "VarSet", "Uniqueid": channel_of(begun, who),
                                 "Variable": "CC_SURVEY", "Value": "on",
                                 "Timestamp": f"{at - 2.5:.6f}"}]  # fmt: skip
        call = ended(begun)
        assert call.ended_at == plain.ended_at
        expected = plain.talk_seconds - 2.5 if kept else plain.talk_seconds
        assert call.talk_seconds == pytest.approx(expected, abs=0.01), who


def channel_of(events: list[dict], who: str) -> str:
    prefix = "PJSIP/carrier" if who == "customer" else "PJSIP/1001"
    return next(e["Uniqueid"] for e in events if e.get("Event") == "Newchannel"
                and e.get("Channel", "").startswith(prefix))  # fmt: skip


def test_the_tracker_sieve_keeps_the_score_variable():
    sieve = CallTracker().sieve()
    frame = b"Event: VarSet\r\nUniqueid: 1.1\r\nVariable: CC_SURVEY_SCORE\r\nValue: 4\r\n\r\n"
    other = b"Event: VarSet\r\nUniqueid: 1.1\r\nVariable: SOMETHING_ELSE\r\nValue: 4\r\n\r\n"
    assert sieve.keeps(frame) and not sieve.keeps(other)


# ------------------------------------------------------------- the dialplan's answer


def test_the_answer_names_each_prompt_under_the_greetings_sound_folder():
    files = {"ask": "survey-default-ask.wav", "invalid": "0" * 32 + ".wav",
             "thanks": "survey-default-thanks.wav"}  # fmt: skip
    assert answer(False, files) == "off"
    assert answer(True, files) == (
        "on|callbridge/greetings/survey-default-ask|callbridge/greetings/" + "0" * 32
        + "|callbridge/greetings/survey-default-thanks"
    )


@asynccontextmanager
async def survey_site(tmp_path) -> AsyncIterator[Site]:
    """The seeded app with a supervisor (chen), on a simulator, its FastAGI server on a free
    port."""
    async with routing_site(tmp_path) as running:
        with running.sessions().begin() as session:
            session.add(User(username=SUPERVISOR, password_hash=hashed(PASSWORD),
                             role="supervisor", extensions=[]))  # fmt: skip
        yield running


@pytest.fixture
async def site(tmp_path, monkeypatch):
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    async with survey_site(tmp_path) as running:
        yield running


async def ask(site: Site, queue: str) -> list[str]:
    """What the app's FastAGI server answers the dialplan's survey question for ``queue``."""
    environment = (ENVIRONMENT.replace("agi_network_script: route", "agi_network_script: survey")
                   .replace("agi_arg_1: 13800138000", f"agi_arg_1: {queue}"))  # fmt: skip
    return await exchange(site.app.state.runtime.routing.server.port, environment)


async def test_the_fastagi_server_answers_per_queue(site):
    assert await ask(site, "support") == ['SET VARIABLE CC_SURVEY_ANSWER "off"\n']
    with site.sessions().begin() as session:
        session.add(QueueSetting(queue="support", survey=True))
    heard = await ask(site, "support")
    assert heard == ['SET VARIABLE CC_SURVEY_ANSWER "on|callbridge/greetings/survey-default-ask'
                     '|callbridge/greetings/survey-default-invalid'
                     '|callbridge/greetings/survey-default-thanks"\n']  # fmt: skip
    assert await ask(site, "senior") == ['SET VARIABLE CC_SURVEY_ANSWER "off"\n']


def test_the_default_prompts_are_installed_as_asterisk_plays_them(site):
    folder = site.settings.greetings_dir
    for kind in PROMPT_KINDS:
        info = soundfile.info(str(folder / prompts.default_name(kind)))
        assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "PCM_16")
        assert info.duration > 1.0


# ------------------------------------------------------------------- the prompts page


def wav(rate: int = 16000, channels: int = 2, seconds: float = 1.0) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    out = io.BytesIO()
    soundfile.write(out, np.stack([tone] * channels, axis=1), rate, format="WAV")
    return out.getvalue()


def state(site: Site) -> tuple:
    with site.sessions()() as session:
        rows = [(p.kind, p.file_name) for p in session.scalars(select(SurveyPrompt))]
        actions = list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
    return rows, sorted(p.name for p in site.settings.greetings_dir.iterdir()), actions


async def upload(client, kind: str, data: bytes, token: str, name: str = "prompt.wav"):
    return await client.post(f"/supervisor/survey/prompts/{kind}",
                             data={"csrf_token": token},
                             files={"prompt": (name, data, "audio/wav")})  # fmt: skip


async def test_an_upload_replaces_a_prompt_and_goes_back_to_the_default(site):
    folder = site.settings.greetings_dir
    async with site.signed_in(SUPERVISOR) as client:
        page = await client.get("/supervisor/survey")
        assert page.status_code == 200 and "默认" in page.text and "Default" in page.text
        token = CSRF_RE.search(page.text).group(1)
        assert (await upload(client, "ask", wav(), token)).status_code == 303
        with site.sessions()() as session:
            row = session.get(SurveyPrompt, "ask")
            first = row.file_name
        info = soundfile.info(str(folder / first))
        assert (info.samplerate, info.channels) == (8000, 1) and row.seconds == pytest.approx(1.0)
        assert (await upload(client, "ask", wav(8000, 1, 2.0), token)).status_code == 303
        with site.sessions()() as session:
            second = session.get(SurveyPrompt, "ask").file_name
        assert second != first and not (folder / first).exists()  # the replaced file is gone
        heard = await ask_on(site)
        assert f"callbridge/greetings/{second.removesuffix('.wav')}|" in heard
        shown = (await client.get("/supervisor/survey")).text
        assert "已上传" in shown and "2.0" in shown
        response = await client.post("/supervisor/survey/prompts/ask/default",
                                     data={"csrf_token": token})  # fmt: skip
        assert response.status_code == 303
    rows, files, actions = state(site)
    assert rows == [] and second not in files and prompts.default_name("ask") in files
    assert actions == ["survey_prompt", "survey_prompt", "survey_prompt_default"]


async def ask_on(site: Site) -> str:
    with site.sessions().begin() as session:
        session.merge(QueueSetting(queue="support", survey=True))
    return "".join(await ask(site, "support"))


@pytest.mark.parametrize(
    ("data", "said"),
    [(b"not audio at all", "无法识别的录音文件"), (wav(seconds=0.0), "没有声音"),
     (b"", "请选择录音文件")],  # fmt: skip
)
async def test_a_bad_upload_is_refused_beside_its_field_and_nothing_changes(site, data, said):
    before = state(site)
    async with site.signed_in(SUPERVISOR) as client:
        token = CSRF_RE.search((await client.get("/supervisor/survey")).text).group(1)
        response = await upload(client, "invalid", data, token, name="x.wav" if data else "")
    assert response.status_code == 400
    error = response.text.split('id="error-invalid"', 1)[1].split("</span>", 1)[0]
    assert said in error and " / " not in error  # the page's zh-CN alone, beside the field
    assert 'id="error-ask"' not in response.text
    assert state(site) == before


async def test_the_prompts_are_the_supervisors_and_need_csrf(site):
    async with site.signed_in("wang") as agent:
        assert (await agent.get("/supervisor/survey")).status_code == 403
    async with site.signed_in(SUPERVISOR) as client:
        token = CSRF_RE.search((await client.get("/supervisor/survey")).text).group(1)
        assert (await upload(client, "ask", wav(), "forged")).status_code == 403
        assert (await upload(client, "hello", wav(), token)).status_code == 404
    assert state(site)[0] == []


# ------------------------------------------------------------------ the queue setting


QUEUE_FORM = {"after_call_seconds": "0", "penalty": "0", "service_level_seconds": "20",
              "waiting_alert": "3", "longest_wait_alert_seconds": "60"}  # fmt: skip


def test_the_survey_is_on_or_off_per_queue_and_anything_else_is_refused(sqlite_sessions):
    with sqlite_sessions.begin() as session:
        on = queue_store.save_queue_rules(session, "support", QUEUE_FORM | {"survey": "on"})
        assert on.survey
        queue_store.save_queue_rules(session, "senior", QUEUE_FORM)
    with sqlite_sessions() as session:
        rules = queue_store.queue_rules(session)
        assert rules["support"].survey and not rules["senior"].survey
        assert prompts.queue_has_survey(session, "support")
        assert not prompts.queue_has_survey(session, "senior")
        assert not prompts.queue_has_survey(session, "")
    with pytest.raises(queue_store.StoreInputError) as refused, sqlite_sessions.begin() as session:
        queue_store.save_queue_rules(session, "support", QUEUE_FORM | {"survey": "yes",
                                                                       "penalty": "7"})
    assert refused.value.errors == {"survey": queue_store.SURVEY_ERROR}
    with sqlite_sessions() as session:
        row = session.get(QueueSetting, "support")
        assert row.survey and row.penalty == 0  # nothing changed
