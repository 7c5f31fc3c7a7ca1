"""The supervisor's pages in a real browser (Debian's Chromium through Playwright) against the
app under uvicorn: a call from a real trace, its real recording, transcribed by the real engine
(the Korean test model) through the transcription worker; then a supervisor finds the call by a
word said, plays it from that moment and sees the line highlighted, and an agent who opens the
same address is refused. Screenshots go to ``test-artifacts/``.

Skipped only when ``/usr/bin/chromium`` is missing and ``CALLBRIDGE_REQUIRE_BROWSER`` is unset
(the ``browser`` fixture of tests/conftest.py).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect
from speech_fixtures import dither_free_model
from sqlalchemy import select
from test_pops import CHEAP_ARGON2, PASSWORD, Site, running_site

from crm_bridge.accounts import users
from crm_bridge.calls.call_log import CallLog, NumberRules
from crm_bridge.calls.recordings import RecordingsRoot
from crm_bridge.db.models import AuditEntry, TranscriptSegment
from crm_bridge.speech.jobs import Worker
from telephony.call_events import CallEnded
from telephony.call_tracker import CallTracker
from telephony.trace_files import RECORDED_TRACES, load_trace
from transcription.engine import Transcriber

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
TRACE = "h1_blind_transfer_1001_to_1002"
RECORDING = ROOT / "telephony/traces/recordings/sip_h1_blind_transfer_1001_to_1002.wav"
PBX_FILE = "1795346887.1023.wav"
"""The name the trace's MixMonitor gave the recording (its ``CC_RECFILE``)."""
WAIT_MS = 15_000


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return dither_free_model(tmp_path_factory.getbasetemp())


def log_and_transcribe(site: Site, model: Path) -> int:
    """The trace's call written by the call log (which links its recording and queues the
    transcription), then transcribed by the worker with the real engine; the call's id."""
    folder = site.settings.recordings_dir
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(RECORDING, folder / PBX_FILE)
    events = CallTracker(server="pbx1").feed_all(
        load_trace(RECORDED_TRACES / "sip" / f"{TRACE}.ami").events
    )
    (call,) = [event.call for event in events if isinstance(event, CallEnded)]
    root = RecordingsRoot(folder)
    call_id = CallLog(site.sessions(), NumberRules("CN"), root).record(call)
    transcriber = Transcriber(model, language="ko")
    assert Worker(site.sessions(), root, transcriber.transcribe).run(once=True) == 1
    return call_id


@pytest.fixture
async def site(tmp_path, monkeypatch) -> AsyncIterator[Site]:
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    async with running_site(tmp_path) as running:
        yield running


async def signed_in(site: Site, browser: Browser, username: str, path: str) -> Page:
    context = await browser.new_context(viewport={"width": 1366, "height": 768}, locale="zh-CN")
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    await page.goto(f"{site.origin}{path}")
    assert "/login" in page.url
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_load_state()
    return page


async def test_a_supervisor_finds_a_call_by_a_word_said_and_plays_it_from_there(
    site, browser, model_dir
):
    ARTIFACTS.mkdir(exist_ok=True)
    call_id = log_and_transcribe(site, model_dir)
    with site.sessions()() as session:
        said = session.scalars(
            select(TranscriptSegment).where(TranscriptSegment.call_id == call_id)
        ).first()
    word = max(said.text.split(), key=len)  # a word the engine heard in this call

    page = await signed_in(site, browser, "lin", "/supervisor/calls")
    await page.fill("input[name=words]", word)
    await page.click("#call-filters button[type=submit]")
    rows = page.locator("#calls tr[data-call-id]")
    await expect(rows).to_have_count(1)
    await expect(page.locator("#calls .hit-line")).to_contain_text(word)
    await page.screenshot(path=ARTIFACTS / "supervisor_calls_words.png")
    assert await page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )

    await rows.first.locator("a").click()
    await page.wait_for_url(re.compile(rf"/supervisor/calls/{call_id}\?t="))
    call_url = page.url
    player = page.locator("audio.player")
    line = page.locator(".transcript li", has_text=word)
    await expect(line).to_have_class(re.compile(r"\bhit\b"))
    # the player was sent to the moment the word's line starts
    await page.wait_for_function(
        "([t]) => Math.abs(document.querySelector('audio.player').currentTime - t) < 0.05",
        arg=[said.start_seconds],
    )
    await expect(line).to_have_class(re.compile(r"\bspeaking\b"))

    await line.click()  # play from the line
    await page.wait_for_function(
        "([t]) => { const a = document.querySelector('audio.player');"
        " return !a.paused && a.currentTime > t + 0.3; }",
        arg=[said.start_seconds],
    )
    await expect(line).to_have_class(re.compile(r"\bspeaking\b"))
    await expect(line).to_have_attribute("aria-current", "true")
    await player.evaluate("audio => audio.pause()")
    await page.screenshot(path=ARTIFACTS / "supervisor_call_playing.png")

    agent = await signed_in(site, browser, "wang", "/agent")
    response = await agent.goto(call_url)
    assert response is not None and response.status == 403
    await expect(agent.locator("audio")).to_have_count(0)
    await expect(agent.locator("body")).not_to_contain_text(word)
    with site.sessions()() as session:
        plays = session.scalars(select(AuditEntry).where(AuditEntry.action == "play")).all()
    assert plays and {(e.username, e.subject_type) for e in plays} == {("lin", "recording")}
    assert len(plays) <= 3  # a player's range requests are one playback, not one entry each
