"""Audio and Vosk, nothing else (no database, no web).

- :mod:`transcription.engine`: :class:`~transcription.engine.Transcriber`, ``load_model``
  (one shared model per folder and process), ``check_model`` (for start-up);
- :mod:`transcription.transcript`: ``Transcript``, ``Segment``, ``Word`` and their JSON form;
- :mod:`transcription.recording_files`: which recording file or channel is which speaker;
- :mod:`transcription.model_files`: checking and installing model folders and zips;
- :mod:`transcription.accuracy`: character error rate against a reference;
- :mod:`transcription.errors`: ``AudioError`` (permanent) and ``ModelError``.
"""
