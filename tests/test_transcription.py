"""The speech engine on the real Korean Vosk model: mechanics on espeak-ng audio, accuracy on
real recordings against bare Vosk in the same run (see tests/speech_fixtures.py)."""

from __future__ import annotations

import json
import os
import wave
from pathlib import Path

import pytest
import vosk
from speech_fixtures import (
    ANSWER,
    ASR_SAMPLES,
    GREETING,
    ZH_MODEL_ENV,
    concatenate,
    dither_free_model,
    manifest,
    require_speech_tools,
    run,
    seconds,
    silence,
    speech,
    stereo,
)

from transcription.accuracy import character_error_rate
from transcription.engine import Transcriber, check_model, join_words, load_model
from transcription.errors import AudioError, ModelError
from transcription.recording_files import direction_files
from transcription.transcript import Transcript, Word


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return dither_free_model(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def transcriber(model_dir) -> Transcriber:
    return Transcriber(model_dir, language="ko")


@pytest.fixture(scope="session")
def audio(tmp_path_factory) -> dict[str, Path]:
    """Telephone-like (8 kHz mono) files said by espeak-ng: one phrase, two phrases with a
    pause, silence, and a two-sided call where the customer speaks first, then the agent."""
    require_speech_tools()
    folder = tmp_path_factory.mktemp("speech")
    greeting = speech(GREETING, folder / "greeting.wav")
    answer = speech(ANSWER, folder / "answer.wav")
    pause = silence(folder / "pause.wav", 1.5)
    customer = concatenate(folder / "call-in.wav", greeting, silence(folder / "s1.wav", 4.0))
    agent = concatenate(
        folder / "call-out.wav", silence(folder / "s2.wav", seconds(greeting) + 0.5), answer
    )
    return {
        "one": greeting,
        "two": concatenate(folder / "two.wav", greeting, pause, answer),
        "silence": silence(folder / "silence.wav", 3.0),
        "customer": customer,
        "agent": agent,
        "stereo": stereo(folder / "stereo.wav", customer, agent),
        "left_only": stereo(folder / "left-only.wav", greeting, silence(folder / "s3.wav", 3.0)),
    }


def assert_well_formed(transcript: Transcript) -> None:
    """Segments in time order, each with words inside it, inside the recording."""
    starts = [segment.start for segment in transcript.segments]
    assert starts == sorted(starts)
    for segment in transcript.segments:
        assert 0 <= segment.start < segment.end <= transcript.duration_seconds + 0.05
        assert segment.words and segment.text
        assert segment.words[0].start == segment.start and segment.words[-1].end == segment.end
        for word in segment.words:
            assert segment.start <= word.start <= word.end <= segment.end
            assert 0.0 <= word.confidence <= 1.0
        assert [w.start for w in segment.words] == sorted(w.start for w in segment.words)


def test_mono_file_gives_mixed_segments_with_timed_words(transcriber, audio):
    reported: list[float] = []
    transcript = transcriber.transcribe(audio["two"], progress=reported.append)
    assert transcript.language == "ko"
    assert transcript.duration_seconds == pytest.approx(seconds(audio["two"]), abs=0.01)
    assert len(transcript.segments) >= 2, transcript
    assert {segment.speaker for segment in transcript.segments} == {"mixed"}
    assert_well_formed(transcript)
    assert reported == sorted(reported) and reported[-1] == 1.0 and len(reported) > 2


def test_decoding_repeats_with_the_dither_free_test_model(transcriber, audio):
    assert transcriber.transcribe(audio["one"]) == transcriber.transcribe(audio["one"])


@pytest.fixture(scope="session")
def call(transcriber, audio) -> Transcript:
    """The two-sided call, one file per direction."""
    return transcriber.transcribe({"customer": audio["customer"], "agent": audio["agent"]})


def test_two_files_keep_the_speakers_apart_in_time_order(call, audio):
    transcript = call
    assert_well_formed(transcript)
    speakers = [segment.speaker for segment in transcript.segments]
    assert "customer" in speakers and "agent" in speakers
    greeting_end = seconds(audio["one"])
    for segment in transcript.segments:
        if segment.speaker == "customer":
            assert segment.end <= greeting_end + 0.1
        else:
            assert segment.start >= greeting_end + 0.4
    assert speakers == sorted(speakers, key=lambda speaker: speaker == "agent")


def test_stereo_file_is_customer_left_and_agent_right(transcriber, audio, call):
    assert transcriber.transcribe(audio["stereo"]) == call


def test_speech_on_one_side_only_gives_segments_for_that_side_only(transcriber, audio):
    transcript = transcriber.transcribe(audio["left_only"])
    assert transcript.segments
    assert {segment.speaker for segment in transcript.segments} == {"customer"}


def test_silence_and_header_only_files_give_no_segments(transcriber, audio, tmp_path):
    assert transcriber.transcribe(audio["silence"]).segments == ()
    header_only = tmp_path / "abandoned.wav"  # what MixMonitor leaves for an abandoned call
    with wave.open(str(header_only), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
    assert header_only.stat().st_size == 44
    empty = transcriber.transcribe({"customer": header_only, "agent": header_only})
    assert empty.segments == () and empty.duration_seconds == 0.0


@pytest.mark.parametrize("encoding", ["u-law", "gsm-full-rate"])
def test_telephone_encodings_are_read(transcriber, audio, tmp_path, encoding):
    """µ-law and GSM WAVs, as Asterisk's ``wav``-family formats write them."""
    encoded = tmp_path / "encoded.wav"
    run("sox", audio["one"], "-t", "wav", "-e", encoding, encoded)
    transcript = transcriber.transcribe(encoded)
    assert transcript.segments and {s.speaker for s in transcript.segments} == {"mixed"}
    assert_well_formed(transcript)


def test_transcript_json_round_trip(call):
    data = json.loads(json.dumps(call.to_json(), ensure_ascii=False))
    assert Transcript.from_json(data) == call


@pytest.mark.parametrize(
    "content", [b"", b"hello, not audio\n", b"RIFF\x24\x00\x00\x00WAVEfmt garbage" * 3]
)
def test_what_is_not_audio_raises_audio_error(transcriber, tmp_path, content):
    path = tmp_path / "recording.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match="recording.wav"):
        transcriber.transcribe(path)
    with pytest.raises(AudioError):
        transcriber.transcribe({"customer": path, "agent": path})


def test_missing_file_and_wrong_shapes_raise_audio_error(transcriber, audio, tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        transcriber.transcribe(tmp_path / "gone.wav")
    with pytest.raises(AudioError, match="mono"):
        transcriber.transcribe({"customer": audio["stereo"]})
    with pytest.raises(ValueError, match="unknown side"):
        transcriber.transcribe({"caller": audio["one"]})


def test_missing_or_incomplete_model_raises_model_error(tmp_path, model_dir):
    with pytest.raises(ModelError, match="not found"):
        check_model(tmp_path / "no-model")
    with pytest.raises(ModelError, match="not found"):
        Transcriber(tmp_path / "no-model")
    broken = tmp_path / "broken"
    (broken / "am").mkdir(parents=True)
    (broken / "am" / "final.mdl").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="conf/mfcc.conf is missing"):
        Transcriber(broken)
    check_model(model_dir)


def test_model_that_vosk_cannot_load_raises_model_error(tmp_path, model_dir):
    fake = tmp_path / "fake"
    for source in model_dir.rglob("*"):
        if source.is_file():
            target = fake / source.relative_to(model_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.name == "final.mdl":
                target.write_bytes(b"garbage")
            else:
                target.symlink_to(source.resolve())
    check_model(fake)  # the structure is right
    with pytest.raises(ModelError, match="could not load"):
        load_model(fake)


def test_model_is_loaded_once_per_folder(model_dir, transcriber):
    assert load_model(model_dir) is load_model(model_dir / ".." / model_dir.name)
    assert Transcriber(model_dir)._model is transcriber._model


def test_direction_files_follow_the_dialplan_names(tmp_path):
    mixed = tmp_path / "1700000000.42.wav"
    mixed.write_bytes(b"")
    assert direction_files(mixed) is None
    (tmp_path / "1700000000.42-in.wav").write_bytes(b"")
    (tmp_path / "1700000000.42-out.wav").write_bytes(b"")
    assert direction_files(mixed) == {
        "customer": tmp_path / "1700000000.42-in.wav",
        "agent": tmp_path / "1700000000.42-out.wav",
    }


# Accuracy on real human speech: callbridge must get exactly what bare Vosk gets.


def bare_vosk_text(model: vosk.Model, path: Path) -> str:
    """Vosk's own example loop: the WAV's frames in blocks to one KaldiRecognizer."""
    with wave.open(str(path), "rb") as audio:
        recogniser = vosk.KaldiRecognizer(model, audio.getframerate())
        recogniser.SetWords(True)
        texts = []
        while data := audio.readframes(4000):
            if recogniser.AcceptWaveform(data):
                texts.append(json.loads(recogniser.Result())["text"])
        texts.append(json.loads(recogniser.FinalResult())["text"])
    return " ".join(text for text in texts if text)


def callbridge_text(transcriber: Transcriber, path: Path) -> str:
    return " ".join(segment.text for segment in transcriber.transcribe(path).segments)


@pytest.fixture(scope="session")
def bare_korean_model(model_dir) -> vosk.Model:
    """A second, separately loaded copy of the test model, for bare Vosk."""
    return vosk.Model(str(model_dir))


@pytest.mark.parametrize("entry", manifest("ko"), ids=lambda entry: entry["file"])
def test_korean_accuracy_equals_bare_vosk(transcriber, bare_korean_model, entry):
    path = ASR_SAMPLES / entry["file"]
    ours = character_error_rate(callbridge_text(transcriber, path), entry["reference"])
    bare = character_error_rate(bare_vosk_text(bare_korean_model, path), entry["reference"])
    assert ours == bare
    # A model that recognises real speech, not noise (measured: 0.04-0.31 at 16 kHz).
    assert ours < (0.5 if entry["sample_rate"] == 16000 else 0.9)


@pytest.mark.skipif(not os.environ.get(ZH_MODEL_ENV), reason=f"{ZH_MODEL_ENV} is not set")
@pytest.mark.parametrize("entry", manifest("zh"), ids=lambda entry: entry["file"])
def test_mandarin_accuracy_equals_bare_vosk(entry, tmp_path_factory):
    model_dir = dither_free_model(tmp_path_factory.getbasetemp(), Path(os.environ[ZH_MODEL_ENV]))
    path = ASR_SAMPLES / entry["file"]
    ours = character_error_rate(
        callbridge_text(Transcriber(model_dir, language="zh"), path), entry["reference"]
    )
    bare = character_error_rate(
        bare_vosk_text(vosk.Model(str(model_dir)), path), entry["reference"]
    )
    assert ours == bare
    assert ours < 0.5


def test_words_of_unspaced_languages_are_joined_without_spaces():
    words = tuple(Word(text, 0.0, 0.1, 1.0) for text in ["您好", "我", "想", "问", "VIP", "card"])
    assert join_words(words, "zh") == "您好我想问VIP card"
    assert join_words(words[:3], "ko") == "您好 我 想"
