"""Answering-machine detection on the real Asterisk of the PBX kit (``tests/pbx_kit.py``): one
message campaign calls a person and an answering machine, through the product's pages, its
dialer and database; the bridge and the dialer log in with the product's own AMI account.

- The people are the kit's callee 13900000001, a short "hello world" a second after
  answering, then silence, and 13900000007 answering "喂，您好" (espeak-ng's Mandarin), which
  AMD's default arguments take for a machine (dialplans/extensions_callbridge.conf). The
  machine is 13900000006, made a voicemail box: a recorded greeting, tt-weasels (2.6 s of
  talk), and a beep. Each sound is set as the call rings on the carrier, on that channel only,
  over the carrier's AMI.
- Hang up on machines: the machine's attempts read ``machine`` and are tried again after the
  campaign's machine delay until the attempts run out, without the greeting ever played to
  it; the people's read ``answered``, and they heard the greeting.
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
from speech_fixtures import require_speech_tools, run
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

PERSON, MANDARIN, MACHINE = "+8613900000001", "+8613900000007", "+8613900000006"
CUSTOMERS = {"P1": PERSON, "P2": MANDARIN, "M1": MACHINE}
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
async def callees_say(sim_port: int, sounds: dict[str, str]) -> AsyncIterator[list[str]]:
    """While open, every call to a number of ``sounds`` (E.164) says its sound when it
    answers: its carrier channel gets ``CALLEE_PLAY`` (the kit's callee sound) as it rings, 3 s
    before it answers and plays. Yields the numbers of the calls so steered, in order."""
    reader, writer = await asyncio.open_connection("127.0.0.1", sim_port)
    await reader.readline()  # the banner
    writer.write(b"Action: Login\r\nUsername: sim\r\nSecret: sim-secret\r\nEvents: call\r\n\r\n")
    steered: list[str] = []

    async def steer() -> None:
        while True:
            message = await ami_message(reader)
            number = "+86" + message.get("Exten", "")
            if message.get("Event") == "Newchannel" and number in sounds:
                steered.append(number)
                writer.write(
                    f"Action: Setvar\r\nChannel: {message['Channel']}\r\n"
                    f"Variable: CALLEE_PLAY\r\nValue: {sounds[number]}\r\n\r\n".encode()
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
    one the PBX plays as ``callbridge/greetings``; the customers P1 and P2 (people) and M1
    (the voicemail box), answering as the fixture ``callees`` makes them."""
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


def mandarin_hello(folder: Path) -> Path:
    """"喂，您好" said by espeak-ng, as an 8 kHz mono 16-bit WAV (the kit plays no other)."""
    require_speech_tools()
    run("espeak-ng", "-v", "cmn", "-w", folder / "hello-22k.wav", "喂，您好")
    run("sox", folder / "hello-22k.wav", "-r", "8000", "-c", "1", "-b", "16", folder / "hello.wav")
    return folder / "hello.wav"


@pytest.fixture
async def callees(pbx_kit, tmp_path) -> AsyncIterator[list[str]]:
    """While the test runs, 13900000006 answers as a voicemail box (tt-weasels and a beep)
    and 13900000007 with a Mandarin "喂，您好"; the numbers of the calls they answered."""
    sounds = {
        MACHINE: f"tt-weasels&{beep_wav(tmp_path / 'beep.wav').with_suffix('')}",
        MANDARIN: str(mandarin_hello(tmp_path).with_suffix("")),
    }
    sim_port = pbx_kit["ami"]["port"] + 1  # the carrier's AMI: the PBX's port + 1 (kit README)
    async with callees_say(sim_port, sounds) as steered:
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


async def test_a_machine_is_hung_up_on_and_called_again_people_hear_the_greeting(
    amd_site, callees
):
    async with amd_site.signed_in("zhou") as client:
        token = CSRF_RE.search((await client.get("/campaigns")).text).group(1)
        form = campaign_form(token, "生日留言", "message", list(CUSTOMERS))
        form |= {"on_machine": "hang_up", "retry_machine": str(RETRY_MINUTES)}
        url = await create_and_start(client, token, form, tone_wav(3.0))
        progress = await finished(client, url)
    assert (progress["by_outcome"]["answered"], progress["by_outcome"]["machine"]) == (2, 2)
    assert progress["messages_left"] == 0
    attempts = attempts_by_number(amd_site)
    assert {n: [a.outcome for a in tries] for n, tries in attempts.items()} == {
        PERSON: ["answered"],
        MANDARIN: ["answered"],
        MACHINE: ["machine", "machine"],
    }
    assert sorted(callees) == [MACHINE, MACHINE, MANDARIN]  # each answered as it was made to
    first, second = attempts[MACHINE]
    assert second.created_at - first.finished_at >= timedelta(minutes=RETRY_MINUTES * 0.95)
    assert MESSAGE_LEFT not in (first.reason_code, second.reason_code)
    assert sorted(target_states(amd_site).values()) == ["done", "done", "failed"]
    await logged(amd_site, {a.channel_id for tries in attempts.values() for a in tries})

    for person in (*attempts[PERSON], *attempts[MANDARIN]):
        _, heard = recordings(amd_site, person.channel_id)
        low, high = peak_hz(heard)
        assert abs(low - 440) < 10 and abs(high - 660) < 10
    for attempt in (first, second):
        said, heard = recordings(amd_site, attempt.channel_id)
        assert frames_rms(said).max() > LOUD  # the machine's greeting was there to hear
        assert frames_rms(heard).max() < LOUD  # and nothing was played to the machine


async def test_a_message_is_left_after_the_beep_as_the_scheduler_chose(
    amd_site, callees, browser, tmp_path
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
    await page.screenshot(path=ARTIFACTS / "campaign_on_machine_form.png", full_page=True)
    await page.click("#create")
    await page.wait_for_url(f"{amd_site.origin}/campaigns/*")
    await expect(page.locator("#on-machine")).to_contain_text("提示音后留言")
    await expect(page.locator("#on-machine")).to_contain_text("提示音后留言")
    await expect(page.locator("#c-on-machine")).to_have_value("message")
    await page.click("#action-start")
    await expect(page.locator("#status")).to_contain_text("已完成", timeout=90_000)
    await expect(page.locator("#outcomes [data-outcome=answered]")).to_have_text("1")
    await expect(page.locator("#outcomes [data-outcome=machine]")).to_have_text("1")
    await expect(page.locator("#outcomes")).to_contain_text("答录机")
    await expect(page.locator("#messages-left")).to_have_text("1")
    await page.screenshot(path=ARTIFACTS / "campaign_answering_machine.png", full_page=True)

    attempts = attempts_by_number(amd_site)
    (left,) = attempts[MACHINE]  # a message left: not called again
    assert callees == [MACHINE]
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
