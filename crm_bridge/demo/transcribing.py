"""The demo's speech worker: the real transcription worker, on a thread of the demo's process.

``callbridge serve`` leaves transcription to ``callbridge worker`` processes; the demo is one
command, so when ``CALLBRIDGE_VOSK_MODEL`` names a model folder it runs the same
:class:`~crm_bridge.speech.jobs.Worker` with the same Vosk engine beside the service, on the
demo's own database and recordings folder. Without a model nothing is transcribed, and the
supervisors' pages say what to install (no Mandarin model comes with the package).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from crm_bridge.calls.recordings import RecordingsRoot
from crm_bridge.speech.jobs import AudioSource, Worker
from transcription.engine import Transcriber
from transcription.errors import ModelError
from transcription.model_files import check_model
from transcription.transcript import Transcript

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
STOP_WAIT_SECONDS = 30.0
"""How long stopping waits for the recording in hand to be finished."""


class DemoTranscription:
    """Loads the model on its thread (a second or two), then works the transcription queue."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        root: RecordingsRoot,
        model_dir: Path,
        language: str,
    ) -> None:
        self._model_dir = model_dir
        self._language = language
        self._engine: Transcriber | None = None
        self._worker = Worker(sessions, root, self._transcribe, name="demo-worker",
                              poll_seconds=POLL_SECONDS)  # fmt: skip
        self._thread = threading.Thread(target=self._run, name="demo-transcription", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._worker.stopping.set()
        if self._thread.is_alive():
            self._thread.join(STOP_WAIT_SECONDS)

    def _transcribe(self, source: AudioSource) -> Transcript:
        assert self._engine is not None
        return self._engine.transcribe(source)

    def _run(self) -> None:
        try:
            check_model(self._model_dir)
            self._engine = Transcriber(self._model_dir, language=self._language)
        except ModelError as exc:
            log.error("demo: no transcription, the speech model is unusable: %s", exc)
            return
        log.info("demo: transcribing with the model %s", self._model_dir.name)
        self._worker.run()
