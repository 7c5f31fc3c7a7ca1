"""Campaign greetings: every upload becomes the 8 kHz mono 16-bit WAV Asterisk plays, its
length is shown, an undecodable file is refused keeping the rest of the form, and a message
campaign cannot start without one. (A converted 16 kHz stereo upload playing on the real
Asterisk is in ``tests/test_campaigns_realpbx.py``.)"""

from __future__ import annotations

import html
import io
import re

import numpy as np
import pytest
import soundfile
from sqlalchemy import select
from test_pops import CHEAP_ARGON2, running_site

from crm_bridge.accounts import users
from crm_bridge.campaigns import greetings as greetings
from crm_bridge.campaigns import store as store
from crm_bridge.db.models import Campaign
from crm_bridge.web.language import ZH, one_language

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def tone(seconds: float, rate: int, channels: int, subtype: str, fmt: str = "WAV") -> bytes:
    """A 440 Hz tone (left) and 660 Hz (right, if any) as an audio file's bytes."""
    t = np.arange(int(seconds * rate)) / rate
    sides = [0.5 * np.sin(2 * np.pi * f * t) for f in (440, 660)[:channels]]
    out = io.BytesIO()
    soundfile.write(out, np.stack(sides, axis=1), rate, subtype=subtype, format=fmt)
    return out.getvalue()


@pytest.mark.parametrize(
    ("rate", "channels", "subtype", "fmt"),
    [
        (16000, 2, "PCM_16", "WAV"),
        (44100, 1, "PCM_24", "WAV"),
        (48000, 2, "FLOAT", "WAV"),
        (8000, 1, "ULAW", "WAV"),
        (22050, 1, "PCM_U8", "WAV"),
        (44100, 2, "PCM_16", "FLAC"),
        (32000, 1, "VORBIS", "OGG"),
    ],
)
def test_any_rate_width_and_channels_become_what_asterisk_plays(rate, channels, subtype, fmt):
    converted = greetings.convert(tone(2.0, rate, channels, subtype, fmt))
    info = soundfile.info(io.BytesIO(converted.wav))
    assert (info.format, info.subtype, info.samplerate, info.channels) == (
        "WAV", "PCM_16", 8000, 1
    )  # fmt: skip
    assert converted.seconds == pytest.approx(2.0, abs=0.01)
    samples, _ = soundfile.read(io.BytesIO(converted.wav))
    spectrum = np.abs(np.fft.rfft(samples))
    assert abs(np.argmax(spectrum) * 8000 / len(samples) - 440) < 5  # the tone, not noise


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"RIFF\x24\x00\x00\x00WAVEfmt garbage", greetings.NOT_AUDIO),
        (b"%PDF-1.7 not a sound at all", greetings.NOT_AUDIO),
        (b"", greetings.NOT_AUDIO),
        (tone(0.0, 8000, 1, "PCM_16"), greetings.SILENT),
        (b"x" * (greetings.MAX_GREETING_BYTES + 1), greetings.TOO_BIG),
    ],
    ids=["torn-wav", "pdf", "empty-file", "no-frames", "too-big"],
)
def test_what_cannot_be_a_greeting_is_refused_with_its_reason(data, message):
    with pytest.raises(greetings.GreetingRefused) as refused:
        greetings.convert(data)
    assert str(refused.value) == message


@pytest.fixture
async def site(tmp_path, monkeypatch):
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    async with running_site(tmp_path) as running:
        yield running


def campaign_form(token: str, name: str, mode: str = "message") -> dict[str, str]:
    return {
        "csrf_token": token,
        "name": name,
        "kind": "festival",
        "mode": mode,
        "rule_uploaded": "on",
        "uploaded": "C0001\n13800138000",
        "start": "08:30",
        "end": "19:00",
        "weekdays": "1",
        "max_attempts": "2",
    }


async def test_an_upload_is_converted_its_length_shown_and_a_bad_one_keeps_the_form(site):
    async with site.signed_in("zhou") as client:
        token = CSRF_RE.search((await client.get("/campaigns")).text).group(1)
        refused = await client.post(
            "/campaigns",
            data=campaign_form(token, "春节问候 refused"),
            files={"greeting": ("greeting.wav", b"RIFF....WAVEnot audio", "audio/wav")},
        )
        assert refused.status_code == 400
        page = html.unescape(refused.text)
        assert one_language(greetings.NOT_AUDIO, ZH) in page
        assert 'value="春节问候 refused"' in page  # the rest of the form as posted
        assert "C0001\n13800138000" in page and 'value="08:30"' in page
        assert '<option value="festival" selected>' in page
        with site.sessions()() as session:
            assert session.scalars(select(Campaign)).all() == []

        created = await client.post(
            "/campaigns",
            data=campaign_form(token, "春节问候"),
            files={"greeting": ("greeting.wav", tone(3.25, 16000, 2, "PCM_16"), "audio/wav")},
        )
        assert created.status_code == 303
        detail = await client.get(created.headers["location"])
        assert re.search(r'id="greeting-seconds">3\.2[0-9]?<', detail.text), detail.text
    with site.sessions()() as session:
        campaign = session.scalars(select(Campaign)).one()
    stored = site.settings.greetings_dir / campaign.greeting_file
    info = soundfile.info(str(stored))
    assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "PCM_16")


async def test_a_message_campaign_without_a_greeting_cannot_start(site):
    async with site.signed_in("zhou") as client:
        token = CSRF_RE.search((await client.get("/campaigns")).text).group(1)
        created = await client.post("/campaigns", data=campaign_form(token, "无录音"))
        assert created.status_code == 303
        url = created.headers["location"]
        start = await client.post(f"{url}/action", data={"csrf_token": token, "action": "start"})
        assert start.status_code == 400
        assert one_language(store.NO_GREETING, ZH) in html.unescape(start.text)  # a zh page
        progress = (await client.get(f"{url}/progress")).json()
        assert progress["status"] == "draft" and progress["targets"] == 0
        assert not site.simulator.actions_named("Originate")

        agent_mode = await client.post("/campaigns", data=campaign_form(token, "转坐席", "agent"))
        url = agent_mode.headers["location"]
        start = await client.post(f"{url}/action", data={"csrf_token": token, "action": "start"})
        assert start.status_code == 303  # an agent campaign needs no greeting


async def test_an_edit_with_a_bad_upload_keeps_what_was_typed(site):
    async with site.signed_in("zhou") as client:
        token = CSRF_RE.search((await client.get("/campaigns")).text).group(1)
        created = await client.post("/campaigns", data=campaign_form(token, "端午问候", "agent"))
        url = created.headers["location"]
        edited = await client.post(
            url,
            data=campaign_form(token, "端午问候 改", "message"),
            files={"greeting": ("greeting.mp3", b"ID3 but no frames", "audio/mpeg")},
        )
        assert edited.status_code == 400
        page = html.unescape(edited.text)
        assert one_language(greetings.NOT_AUDIO, ZH) in page and 'value="端午问候 改"' in page
        assert '<option value="message" selected>' in page
    with site.sessions()() as session:
        campaign = session.scalars(select(Campaign)).one()
    assert (campaign.name, campaign.mode, campaign.greeting_file) == ("端午问候", "agent", None)


@pytest.mark.parametrize("field", ["name", "uploaded", "start"])
async def test_a_control_character_in_a_multipart_field_names_the_field_and_keeps_the_form(
    site, field
):
    """A NUL in a text field of the multipart campaign form (which the request guard only
    counts) is refused with 400, said beside the field, the rest of the form refilled; nothing
    saved.
    On the edit form the same."""
    async with site.signed_in("zhou") as client:
        token = CSRF_RE.search((await client.get("/campaigns")).text).group(1)
        form = campaign_form(token, "中秋问候")
        form[field] = form[field][:2] + "\x00" + form[field][2:]
        no_file = {"greeting": ("", b"", "application/octet-stream")}  # as a browser sends it
        refused = await client.post("/campaigns", data=form, files=no_file)
        assert refused.status_code == 400, refused.text
        page = html.unescape(refused.text)
        beside = f'id="err-{field}" role="alert">含有控制字符<'  # a zh page: its half
        assert beside in page  # said beside the field
        assert "\x00" not in page
        assert 'value="中秋问候"' in page or field == "name"
        assert '<option value="festival" selected>' in page
        with site.sessions()() as session:
            assert session.scalars(select(Campaign)).all() == []

        created = await client.post("/campaigns", data=campaign_form(token, "端午问候", "agent"))
        url = created.headers["location"]
        edited = campaign_form(token, "端午问候 改")
        edited[field] = edited[field][:2] + "\x00" + edited[field][2:]
        answer = await client.post(url, data=edited, files=no_file)
        assert answer.status_code == 400, answer.text
        assert f'id="err-{field}" role="alert">含有控制字符' in html.unescape(answer.text)
    with site.sessions()() as session:
        campaign = session.scalars(select(Campaign)).one()
    assert (campaign.name, campaign.mode) == ("端午问候", "agent")
