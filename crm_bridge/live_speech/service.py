"""Live speech: each side of an answered call streamed out of Asterisk, transcribed as it is
said, watched for the supervisors' watch words.

How the audio gets here (``dialplans/extensions_callbridge.conf``, contexts
``callbridge-live-spy`` and ``callbridge-live-audio``): when the bridge reports a call
answered, one AMI ``Originate`` per side places a Local channel. Its ``;1`` half runs
``ChanSpy(<that side's channel>,qoES)`` (only what the channel *receives*: that party's own
voice), its ``;2`` half runs ``AudioSocket(<uuid>,<our address>)``, so the spied audio
reaches :class:`telephony.audiosocket.AudioSocketServer` here as 8 kHz linear PCM. The spy
channels carry the ChannelId prefix ``cblive-``: the manager account's event filter drops
their events and the bridge hides them from the call trackers.

What keeps it going: a side whose stream does not connect within ``CONNECT_SECONDS``, or
whose stream ends while its channel is still up (callbridge restarted, the spy was hung up),
is placed again with back-off; after a restart of callbridge the resync finds the calls
still talking and listens to them again. None of it touches the call or its recording.

Capacity: at most ``max_streams`` sides at once. A call that does not fit gets no live
transcript (the post-call transcript of the recording stays the record) and is shown as
``post_call_only`` to the supervisors and in ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from crm_bridge.calls.bridge import BridgeService
from crm_bridge.db.models import LiveSpeechAlert
from crm_bridge.live_speech.channels import SPY_ID_PREFIX, ChannelIndex, is_spy_event
from crm_bridge.live_speech.hub import LiveSpeechHub
from crm_bridge.live_speech.streams import LiveStream
from crm_bridge.live_speech.watch import Hit, find_watch_words
from crm_bridge.supervision import flags
from telephony.ami_codec import UnsafeAmiValue
from telephony.ami_connection import AmiError
from telephony.audiosocket import AudioSocketServer
from telephony.call_events import CallAnswered, CallEnded, DomainEvent
from transcription.engine import load_model
from transcription.streaming import LiveResult, StreamingRecognizer

log = logging.getLogger(__name__)

CONNECT_SECONDS = 5.0
RETRY_FIRST, RETRY_MOST = 0.5, 5.0
WATCH_REFRESH_SECONDS = 10.0
TRANSCRIPT_KEPT = 50
"""Final results a live call keeps for a supervisor page opened mid-call."""


@dataclass(frozen=True)
class LiveSpeechConfig:
    model_dir: Path
    language: str = "zh"
    host: str = "127.0.0.1"
    port: int = 8090
    max_streams: int = 8
    workers: int = 2


@dataclass(eq=False)
class LiveCall:
    server: str
    linkedid: str
    agent: str | None
    answered_at: float
    live: str = "streaming"
    """``streaming``, or ``post_call_only`` when it did not fit in ``max_streams``."""
    streams: list[LiveStream] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    transcript: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    alerted: set[tuple[Any, ...]] = field(default_factory=set)
    over: bool = False

    @property
    def streams_listening(self) -> int:
        """Sides still listened to: a transferred agent's ended with their channel."""
        return sum(not task.done() for task in self.tasks)

    def summary(self) -> dict[str, Any]:
        return {"linkedid": self.linkedid, "server": self.server, "agent": self.agent,
                "live_transcript": self.live, "streams": self.streams_listening,
                "reconnects": sum(max(0, s.connections - 1) for s in self.streams),
                "link": call_link(self.linkedid)}  # fmt: skip


def call_link(linkedid: str) -> str:
    return f"/supervisor/live/{linkedid}"


@dataclass
class Counts:
    calls_streamed: int = 0
    calls_post_call_only: int = 0
    alerts: int = 0
    stream_connections: int = 0


class LiveSpeech:
    """Create and use on the event loop; see the module docstring."""

    def __init__(
        self,
        config: LiveSpeechConfig,
        bridge: BridgeService,
        hub: LiveSpeechHub,
        sessions: sessionmaker[Session] | None,
        *,
        agent_contexts: frozenset[str] = frozenset({"internal", "from-internal"}),
        watch_words: Callable[[], list[str]] | None = None,
    ) -> None:
        self.config = config
        self.hub = hub
        self._bridge = bridge
        self._sessions = sessions
        self._agent_contexts = agent_contexts
        self._load_watch_words = watch_words or self._watch_words_from_database
        self.watch_words: list[str] = []
        self._indexes: dict[str, ChannelIndex] = {}
        self._awaiting: dict[uuid.UUID, LiveStream] = {}
        self.calls: dict[tuple[str, str], LiveCall] = {}
        self._pool = ThreadPoolExecutor(config.workers, thread_name_prefix="live-speech")
        self._tasks: set[asyncio.Task[Any]] = set()
        self.server = AudioSocketServer(self._open_stream, config.host, config.port)
        self.counts = Counts()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, load_model, self.config.model_dir)
        self.watch_words = await loop.run_in_executor(self._pool, self._load_watch_words)
        await self.server.start()
        self._bridge.listen_to_channels(self, is_spy_event)
        self._bridge.subscribe(self.on_event)
        self._spawn(self._refresh_watch_words())

    async def stop(self) -> None:
        for call in self.calls.values():
            call.over = True
        await self.server.stop()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._pool.shutdown(wait=True)

    @property
    def streams_active(self) -> int:
        return sum(c.streams_listening for c in self.calls.values() if c.live == "streaming")

    def live_calls(self) -> list[dict[str, Any]]:
        return [call.summary() for call in self.calls.values()]

    def call(self, linkedid: str) -> LiveCall | None:
        return next((c for (_, lid), c in self.calls.items() if lid == linkedid), None)

    # ------------------------------------------------------------ from the bridge

    def on_event(self, event: DomainEvent) -> None:
        key = (event.call.server, event.call.linkedid)
        if isinstance(event, CallAnswered) and key not in self.calls:
            self._begin(key, event.agent, event.call.answered_at or event.at)
        elif isinstance(event, CallAnswered) and event.agent != self.calls[key].agent:
            self._follow(self.calls[key], event.agent)
        elif isinstance(event, CallEnded) and key in self.calls:
            self._end(self.calls.pop(key))

    def on_ami_event(self, server: str, event: dict[str, str]) -> None:
        self._index(server).feed(event)

    def on_resync(self, server: str, channels: list[dict[str, str]]) -> None:
        self._index(server).replace(channels)
        asyncio.get_running_loop().call_soon(self._listen_again, server)

    def _listen_again(self, server: str) -> None:
        """After a (re)connect: listen to every call talking that we are not listening to."""
        agents = {c.linkedid: c.agent for link in self._bridge.links
                  if link.config.name == server for c in link.tracker.active_calls()}  # fmt: skip
        for linkedid in self._index(server).talking():
            if (server, linkedid) not in self.calls:
                self._begin((server, linkedid), agents.get(linkedid), time.time())

    def _index(self, server: str) -> ChannelIndex:
        if server not in self._indexes:
            self._indexes[server] = ChannelIndex(self._agent_contexts)
        return self._indexes[server]

    # ------------------------------------------------------------ streams

    def _begin(self, key: tuple[str, str], agent: str | None, answered_at: float) -> None:
        server, linkedid = key
        sides = self._index(server).sides(linkedid, agent).items()
        if not sides:
            return
        call = LiveCall(server, linkedid, agent, answered_at)
        self.calls[key] = call
        if self.streams_active + len(sides) > self.config.max_streams:
            call.live = "post_call_only"
            self.counts.calls_post_call_only += 1
            log.warning("live speech full (%d streams): call %s gets the post-call transcript "
                        "only", self.config.max_streams, linkedid)  # fmt: skip
        else:
            self.counts.calls_streamed += 1
            for side, channel in sides:
                stream = LiveStream(linkedid, side, channel)
                call.streams.append(stream)
                call.tasks.append(self._spawn(self._keep_listening(call, stream)))
        self.hub.publish({"type": "live_call", **call.summary()}, agent, to_agent=False)

    def _follow(self, call: LiveCall, agent: str | None) -> None:
        """The call was transferred and another agent answered it: their side is listened to
        from now on, in the place of the first agent's (whose stream ends with their channel,
        maybe a moment later), and the live transcript goes to them. The customer's stream goes
        on as it was."""
        call.agent = agent
        channel = self._index(call.server).sides(call.linkedid, agent).agent
        leaving = sum(stream.side == "agent" and not task.done()
                      for stream, task in zip(call.streams, call.tasks, strict=True))  # fmt: skip
        if call.live == "streaming" and channel is not None:
            if self.streams_active - leaving + 1 > self.config.max_streams:
                log.warning(
                    "live speech full (%d streams): the agent side of call %s after its transfer "
                    "is not listened to", self.config.max_streams, call.linkedid,
                )  # fmt: skip
            elif not any(s.channel == channel for s in call.streams):
                stream = LiveStream(call.linkedid, "agent", channel)
                call.streams.append(stream)
                call.tasks.append(self._spawn(self._keep_listening(call, stream)))
        self.hub.publish({"type": "live_call", **call.summary()}, agent, to_agent=False)

    def _end(self, call: LiveCall) -> None:
        call.over = True
        self.hub.publish({"type": "live_call", **call.summary(), "live_transcript": "ended"},
                         call.agent, to_agent=False)  # fmt: skip

    async def _keep_listening(self, call: LiveCall, stream: LiveStream) -> None:
        """Place the spy of one side, transcribe what it streams, and place it again when it
        fails or is cut while the call goes on."""
        delay = RETRY_FIRST
        index = self._index(call.server)
        while not call.over and index.alive(stream.channel):
            stream_id = uuid.uuid4()
            stream.expect_connection()
            self._awaiting[stream_id] = stream
            connected = await self._originate(call, stream, stream_id) and await _within(
                stream.connected.wait(), CONNECT_SECONDS
            )
            self._awaiting.pop(stream_id, None)
            if not connected:
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MOST)
                continue
            delay = RETRY_FIRST
            await stream.recognize(
                self._recognizer, self._pool, lambda s, found: self._on_results(call, s, found)
            )
            if not call.over:
                log.info("live stream of call %s (%s) ended (%s); placed again",
                         call.linkedid, stream.side, stream.end_reason)  # fmt: skip
                await asyncio.sleep(RETRY_FIRST)

    async def _originate(self, call: LiveCall, stream: LiveStream, stream_id: uuid.UUID) -> bool:
        link = next((ln for ln in self._bridge.links if ln.config.name == call.server), None)
        if link is None or link.connection is None:
            return False
        headers = [
            ("Channel", f"Local/{stream_id}@callbridge-live-audio/n"),
            ("Context", "callbridge-live-spy"),
            ("Exten", "s"),
            ("Priority", "1"),
            ("ChannelId", f"{SPY_ID_PREFIX}{stream_id}"),
            ("OtherChannelId", f"{SPY_ID_PREFIX}{stream_id}-2"),
            ("Timeout", "5000"),
            ("Async", "true"),
            ("Variable", f"CC_SPY_CHANNEL={stream.channel}"),
        ]
        try:
            response = await link.connection.send_action("Originate", headers, timeout=5.0)
        except (AmiError, UnsafeAmiValue) as exc:
            log.warning("live stream of call %s not placed: %s", call.linkedid, type(exc).__name__)
            return False
        return response.get("Response") == "Success"

    def _open_stream(self, stream_id: uuid.UUID) -> LiveStream | None:
        stream = self._awaiting.pop(stream_id, None)
        if stream is None:
            return None
        self.counts.stream_connections += 1
        return stream.opened()

    def _recognizer(self) -> StreamingRecognizer:
        return StreamingRecognizer(self.config.model_dir, language=self.config.language)

    # ------------------------------------------------------------ results

    def _on_results(self, call: LiveCall, stream: LiveStream, results: list[LiveResult]) -> None:
        base = (stream.connected_at or time.time()) - call.answered_at
        for result in results:
            frame = {"type": "live_speech", "linkedid": call.linkedid, "side": stream.side,
                     "final": result.final, "text": result.text,
                     "start": round(base + result.words[0].start, 2),
                     "end": round(base + result.words[-1].end, 2)}  # fmt: skip
            if result.final:
                call.transcript = [*call.transcript[-TRANSCRIPT_KEPT + 1 :], frame]
            self.hub.publish(frame, call.agent)
            for hit in find_watch_words(result.words, self.watch_words):
                self._alert(call, stream, result, hit)

    def _alert(self, call: LiveCall, stream: LiveStream, result: LiveResult, hit: Hit) -> None:
        """A tentative alert on the first partial that says the word, a firm one (stored)
        on the final; each once per utterance. A tentative alert's time is when the word was
        first heard (a partial has no word times of its own); the firm one's is the word's."""
        utterance = (stream.side, stream.connections, result.utterance)
        firm = result.final
        if (*utterance, hit.word, hit.occurrence, firm) in call.alerted:
            return
        call.alerted.add((*utterance, hit.word, hit.occurrence, firm))
        said_at = (stream.connected_at or time.time()) + hit.start
        alert = {"type": "live_alert", "linkedid": call.linkedid, "server": call.server,
                 "side": stream.side, "agent": call.agent, "word": hit.word,
                 "tentative": not firm, "text": result.text,
                 "said_at": datetime.fromtimestamp(said_at, UTC).isoformat(),
                 "call_second": round(said_at - call.answered_at, 1),
                 "word_end": round(hit.end, 3), "utterance": result.utterance,
                 "occurrence": hit.occurrence, "link": call_link(call.linkedid)}  # fmt: skip
        self.hub.publish(alert, call.agent, to_agent=False)
        if firm:
            self.counts.alerts += 1
            call.alerts.append(alert)
            self._spawn(self._store(alert, said_at))

    async def _store(self, alert: dict[str, Any], said_at: float) -> None:
        if self._sessions is None:
            return
        row = LiveSpeechAlert(
            server=alert["server"], linkedid=alert["linkedid"], side=alert["side"],
            agent=alert["agent"], word=alert["word"],
            said_at=datetime.fromtimestamp(said_at, UTC), call_second=alert["call_second"],
            text=alert["text"],
        )  # fmt: skip
        try:
            await asyncio.get_running_loop().run_in_executor(None, self._insert, row)
        except Exception:
            log.exception("live alert of call %s not stored", alert["linkedid"])

    def _insert(self, row: LiveSpeechAlert) -> None:
        assert self._sessions is not None
        with self._sessions.begin() as session:
            session.add(row)

    def _watch_words_from_database(self) -> list[str]:
        if self._sessions is None:
            return []
        with self._sessions() as session:
            return flags.watch_words(session)

    async def _refresh_watch_words(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(WATCH_REFRESH_SECONDS)
            with contextlib.suppress(Exception):
                self.watch_words = await loop.run_in_executor(None, self._load_watch_words)

    def _spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


async def _within(awaitable: Any, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            await awaitable
    except TimeoutError:
        return False
    return True
