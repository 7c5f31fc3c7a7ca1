"""What can go wrong while transcribing, split by what the caller should do about it."""

from __future__ import annotations


class TranscriptionError(Exception):
    """Base of every error the transcription package raises on purpose."""


class AudioError(TranscriptionError):
    """The audio is missing, corrupt, unreadable or of an unsupported shape.

    Permanent: the same file fails the same way again, so a job that meets it is not retried.
    """


class ModelError(TranscriptionError):
    """The model folder is missing, incomplete or not a model Vosk can load."""
