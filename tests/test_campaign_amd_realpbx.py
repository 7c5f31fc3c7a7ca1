"""Answering-machine detection on the real Asterisk of the PBX kit (``tests/pbx_kit.py``): one
message campaign calls a person and an answering machine, through the product's pages, its
dialer and database; the bridge and the dialer log in with the product's own AMI account.

- The person is the kit's callee 13900000001: a short "hello world" a second after answering,
  then silence. The machine is 13900000006, made a voicemail box for this test: as its call
  rings on the carrier, its sound is set (on that channel only, over the carrier's AMI) to a
  recorded greeting, tt-weasels (2.6 s of talk), and a beep.
- Hang up on machines: the machine's attempts read ``machine`` and are tried again after the
  campaign's machine delay until the attempts run out, without the greeting ever played to
  it; the person's reads ``answered``, and the person heard the greeting.
- Leave the message, chosen on the campaign form in Chromium: the greeting plays to the
  machine after its beep (the call's two recordings, in step, show it), the attempt reads
  ``machine`` with a message left, the target is done, and the campaign page shows one
  answered and one answering machine.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import soundfile
from playwright.async_api import expect
from sqlalchemy import select
from test_campaigns_browser import ARTIFACTS, signed_in
from test_campaigns_realpbx import (
    API_TOKEN,
    CSRF_RE,
    attempts_by_number,
    campaign_form,
    create_and_start,
    finished,
    logged,
    peak_hz,
    tone_wav,
)
from test_pops import CHEAP_ARGON2, Site, seed, served

from crm_bridge.accounts import users
from crm_bridge.app import create_app
from crm_bridge.db.engine import make_engine, make_session_factory
from crm_bridge.db.models import CampaignTarget, Customer, CustomerPhone
from crm_bridge.settings import Settings
from telephony.dialer import MESSAGE_LEFT

pytestmark = pytest.mark.realpbx

PERSON, MACHINE = "+8613900000001", "+8613900000006"
CUSTOMERS = {"P1": PERSON, "M1": MACHINE}
RETRY_MINUTES = 0.05
"""3 s between attempts: long enough to see the delay kept, short enough for a test."""
FRAME = 160
"""20 ms at 8 kHz: the frames the recordings are looked at in."""
LOUD = 0.02
"""RMS (of full scale) above which a frame of a recording holds sound."""


def beep_wav(path: Path) -> Path:
    """What a voicemail box says after its greeting: 0.4 s of quiet, a 0.5 s 1 kHz beep."""
    t = np.arange(4000) / 8000
    samples = np.concatenate([np.zeros(3200), 0.5 * np.sin(2 * np.pi * 1000 * t)])
    soundfile.write(str(path), samples, 8000, subtype="PCM_16", format="WAV")
    return path


async def ami_message(reader: asyncio.StreamReader) -> dict[str, str]:
    """The next AMI message (headers up to a blank line)."""
    message: dict[str, str] = {}
    while True:
        raw = await reader.readline()
        if not raw:
            raise ConnectionError("the carrier's AMI closed the connection")
        line = raw.decode().strip()
        if line:
            key, _, value = line.partition(":")
            message[key.strip()] = value.strip()
        elif message:
            return message


@asynccontextmanager
async def voicemail_box(sim_port: int, sound: str) -> AsyncIterator[list[str]]:
    """While open, every call to 13900000006 on the carrier says ``sound`` when it answers:
    its channel gets ``CALLEE_PLAY`` (the kit's callee sound) as it rings, 3 s before it
    answers and plays. Yields the carrier channels so steered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", sim_port)
    await reader.readline()  # the banner
    writer.write(b"Action: Login\r\nUsername: sim\r\nSecret: sim-secret\r\nEvents: call\r\n\r\n")
    steered: list[str] = []

    async def steer() -> None:
        while True:
            message = await ami_message(reader)
            channel = message.get("Channel", "")
            if message.get("Event") == "Newchannel" and message.get("Exten") == MACHINE[3:]:
                steered.append(channel)
                writer.write(
                    f"Action: Setvar\r\nChannel: {channel}\r\nVariable: CALLEE_PLAY\r\n"
                    f"Value: {sound}\r\n\r\n".encode()
                )

    task = asyncio.create_task(steer())
    try:
        yield steered
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        writer.close()


@pytest.fixture
async def amd_site(pbx_kit, pbx_commands, tmp_path, monkeypatch) -> AsyncIterator[Site]:
    """The app under uvicorn, its bridge and dialer on the kit's PBX, the greetings folder the
    one the PBX plays as ``callbridge/greetings``; the customers P1 (a person) and M1 (the
    voicemail box of the fixture ``voicemail``)."""
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    (tmp_path / "greetings").symlink_to(pbx_kit["greetings"], target_is_directory=True)
    ami = pbx_kit["ami"]
    settings = Settings(
        data_dir=tmp_path,
        ami_host=ami["host"],
        ami_port=ami["port"],
        ami_username=ami["username"],
        ami_secret=ami["secret"],
        api_token=API_TOKEN,
        secret_key="an-amd-realpbx-test-secret-key-of-some-length",
        recordings_dir=pbx_kit["recordings"],
        pbx_recordings_dir=pbx_kit["recordings"],
        campaign_calls_per_second=5,
        campaign_max_concurrent=3,
        campaign_ring_seconds=6.0,
    )
    seed(settings.database_url)  # the scheduler zhou among them
    engine = make_engine(settings.database_url)
    with make_session_factory(engine).begin() as session:
        for card_no, number in CUSTOMERS.items():
            session.add(Customer(card_no=card_no, name=f"客户{card_no}",
                                 phones=[CustomerPhone(number_e164=number)]))  # fmt: skip
    engine.dispose()
    app = create_app(settings)
    async with served(app) as address:
        assert await app.state.runtime.bridge.wait_connected(timeout=15)
        yield Site(None, app, address, settings)  # type: ignore[arg-type]


@pytest.fixture
async def voicemail(pbx_kit, tmp_path) -> AsyncIterator[list[str]]:
    """13900000006 answers as a voicemail box (tt-weasels and a beep) while the test runs;
    the carrier channels it answered on."""
    sound = f"tt-weasels&{beep_wav(tmp_path / 'beep.wav').with_suffix('')}"
    sim_port = pbx_kit["ami"]["port"] + 1  # the carrier's AMI: the PBX's port + 1 (kit README)
    async with voicemail_box(sim_port, sound) as steered:
        yield steered


def frames_rms(path: Path) -> np.ndarray:
    samples, _ = soundfile.read(str(path))
    whole = len(samples) // FRAME * FRAME
    return np.sqrt((samples[:whole].reshape(-1, FRAME) ** 2).mean(axis=1))


def recordings(site: Site, channel_id: str) -> tuple[Path, Path]:
    """What the callee said (-in) and what it heard (-out) on the campaign call."""
    folder = Path(site.settings.recordings_dir)
    return folder / f"{channel_id}-in.wav", folder / f"{channel_id}-out.wav"


def target_states(site: Site) -> dict[int, str]:
    with site.sessions()() as session:
        query = select(CampaignTarget.customer_id, CampaignTarget.state)
        return dict(session.execute(query).all())


async def test_a_machine_is_hung_up_on_and_called_again_a_person_hears_the_greeting(
    amd_site, voicemail
):
    async with amd_site.signed_in("zhou") as client:
        token = CSRF_RE.search((await client.get("/campaigns")).text).group(1)
        form = campaign_form(token, "生日留言", "message", list(CUSTOMERS))
        form |= {"on_machine": "hang_up", "retry_machine": str(RETRY_MINUTES)}
        url = await create_and_start(client, token, form, tone_wav(3.0))
        progress = await finished(client, url)
    assert (progress["by_outcome"]["answered"], progress["by_outcome"]["machine"]) == (1, 2)
    assert progress["messages_left"] == 0
    attempts = attempts_by_number(amd_site)
    assert {n: [a.outcome for a in tries] for n, tries in attempts.items()} == {
        PERSON: ["answered"],
        MACHINE: ["machine", "machine"],
    }
    assert len(voicemail) == 2  # both machine calls answered as the voicemail box
    first, second = attempts[MACHINE]
    assert second.created_at - first.finished_at >= timedelta(minutes=RETRY_MINUTES * 0.95)
    assert MESSAGE_LEFT not in (first.reason_code, second.reason_code)
    assert sorted(target_states(amd_site).values()) == ["done", "failed"]
    await logged(amd_site, {a.channel_id for tries in attempts.values() for a in tries})

    (person,) = attempts[PERSON]
    _, heard = recordings(amd_site, person.channel_id)
    low, high = peak_hz(heard)
    assert abs(low - 440) < 10 and abs(high - 660) < 10
    for attempt in (first, second):
        said, heard = recordings(amd_site, attempt.channel_id)
        assert frames_rms(said).max() > LOUD  # the machine's greeting was there to hear
        assert frames_rms(heard).max() < LOUD  # and nothing was played to the machine


async def test_a_message_is_left_after_the_beep_as_the_scheduler_chose(
    amd_site, voicemail, browser, tmp_path
):
    ARTIFACTS.mkdir(exist_ok=True)
    page = await signed_in(amd_site, browser, "zhou", "/campaigns")
    await page.fill("#c-name", "生日祝福留言")
    await page.select_option("#c-kind", "birthday")
    await page.select_option("#c-mode", "message")
    await page.select_option("#c-on-machine", "message")
    await page.check("input[name=rule_uploaded]")
    await page.fill("textarea[name=uploaded]", "P1\nM1")
    await page.fill("input[name=start]", "00:00")
    await page.fill("input[name=end]", "00:00")
    (tmp_path / "greeting.wav").write_bytes(tone_wav(3.0))
    await page.set_input_files("#c-greeting", tmp_path / "greeting.wav")
    await page.locator("#c-on-machine").screenshot(path=ARTIFACTS / "campaign_on_machine.png")
    await page.click("#create")
    await page.wait_for_url(f"{amd_site.origin}/campaigns/*")
    await expect(page.locator("#on-machine")).to_contain_text("提示音后留言")
    await expect(page.locator("#on-machine")).to_contain_text("Leave the greeting after the beep")
    await expect(page.locator("#c-on-machine")).to_have_value("message")
    await page.click("#action-start")
    await expect(page.locator("#status")).to_contain_text("已完成", timeout=90_000)
    await expect(page.locator("#outcomes [data-outcome=answered]")).to_have_text("1")
    await expect(page.locator("#outcomes [data-outcome=machine]")).to_have_text("1")
    await expect(page.locator("#outcomes")).to_contain_text("答录机 Answering machine")
    await expect(page.locator("#messages-left")).to_have_text("1")
    await page.screenshot(path=ARTIFACTS / "campaign_answering_machine.png", full_page=True)

    attempts = attempts_by_number(amd_site)
    (left,) = attempts[MACHINE]  # a message left: not called again
    assert len(voicemail) == 1
    assert (left.outcome, left.reason_code) == ("machine", MESSAGE_LEFT)
    assert [a.outcome for a in attempts[PERSON]] == ["answered"]
    assert sorted(target_states(amd_site).values()) == ["done", "done"]
    await logged(amd_site, {left.channel_id})  # ended, its recordings closed

    said, heard = recordings(amd_site, left.channel_id)
    spoken = np.flatnonzero(frames_rms(said) > LOUD)
    played = np.flatnonzero(frames_rms(heard) > LOUD)
    assert spoken.size and played.size
    assert played[0] > spoken[-1]  # the greeting began once the machine's greeting and beep
    low, high = peak_hz(heard)  # were over, and it is the scheduler's greeting
    assert abs(low - 440) < 10 and abs(high - 660) < 10
    assert soundfile.info(str(heard)).duration >= 3.0
