"""``callbridge transcribe`` and ``callbridge models verify|install``, run as a user runs them
(Typer's runner in this process, real files, the real Korean model)."""

from __future__ import annotations

import hashlib
import json
import re
import stat
import zipfile
from pathlib import Path

import pytest
from speech_fixtures import (
    ANSWER,
    GREETING,
    concatenate,
    dither_free_model,
    require_speech_tools,
    run,
    seconds,
    silence,
    speech,
)
from typer.testing import CliRunner

from crm_bridge.cli import app
from transcription import model_files
from transcription.model_files import PublishedFile, PublishedModel
from transcription.transcript import Transcript

runner = CliRunner()
LINE = re.compile(r"^\[(\d+\.\d\d)-(\d+\.\d\d)\] (customer|agent|mixed): \S.*$")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return dither_free_model(tmp_path_factory.getbasetemp())


@pytest.fixture(autouse=True)
def no_model_in_environment(monkeypatch):
    monkeypatch.delenv("CALLBRIDGE_VOSK_MODEL", raising=False)


@pytest.fixture(scope="session")
def call(tmp_path_factory) -> Path:
    """A call as the dialplan records it: <uniqueid>.wav (mixed), -in (customer), -out (agent)."""
    require_speech_tools()
    folder = tmp_path_factory.mktemp("monitor")
    greeting = speech(GREETING, folder / "greeting.wav")
    answer = speech(ANSWER, folder / "answer.wav")
    customer = concatenate(folder / "1700000000.7-in.wav", greeting, silence(folder / "a.wav", 4))
    gap = silence(folder / "b.wav", seconds(greeting) + 0.5)
    agent = concatenate(folder / "1700000000.7-out.wav", gap, answer)
    mixed = folder / "1700000000.7.wav"
    run("sox", "-m", customer, agent, mixed)
    return mixed


def env(tmp_path: Path, model: Path | None = None) -> dict[str, str]:
    values = {"CALLBRIDGE_DATA_DIR": str(tmp_path), "CALLBRIDGE_DATABASE_URL": ""}
    if model is not None:
        values["CALLBRIDGE_VOSK_MODEL"] = str(model)
    return values


def segment_lines(stdout: str) -> list[re.Match]:
    lines = stdout.splitlines()
    matches = [LINE.match(line) for line in lines]
    assert lines and all(matches), stdout
    return matches


def test_transcribe_prints_each_side_apart_or_json_with_progress_on_stderr(
    call, model_dir, tmp_path
):
    command = ["transcribe", str(call), "--model", str(model_dir), "--language", "ko"]
    result = runner.invoke(app, command, env=env(tmp_path))
    assert result.exit_code == 0, result.output
    matches = segment_lines(result.stdout)
    assert {m[3] for m in matches} == {"customer", "agent"}
    starts = [float(m[1]) for m in matches]
    assert starts == sorted(starts)
    assert all(float(m[1]) < float(m[2]) for m in matches)
    assert "100%" in result.stderr and "100%" not in result.stdout

    as_json = runner.invoke(app, [*command, "--json"], env=env(tmp_path))
    assert as_json.exit_code == 0, as_json.output
    transcript = Transcript.from_json(json.loads(as_json.stdout))
    assert transcript.language == "ko"
    assert [
        f"[{s.start:.2f}-{s.end:.2f}] {s.speaker}: {s.text}" for s in transcript.segments
    ] == result.stdout.splitlines()


def test_transcribe_mixed_file_with_the_model_from_settings(call, model_dir, tmp_path):
    result = runner.invoke(
        app, ["transcribe", str(call), "--mixed", "--language", "ko"], env=env(tmp_path, model_dir)
    )
    assert result.exit_code == 0, result.output
    assert {m[3] for m in segment_lines(result.stdout)} == {"mixed"}


def test_transcribe_reports_bad_audio_and_missing_model(model_dir, tmp_path):
    text = tmp_path / "notes.wav"
    text.write_text("not audio", encoding="utf-8")
    bad = runner.invoke(
        app, ["transcribe", str(text), "--model", str(model_dir)], env=env(tmp_path)
    )
    assert bad.exit_code == 1
    assert "audio:" in bad.stderr and "notes.wav" in bad.stderr
    unset = runner.invoke(app, ["transcribe", str(text)], env=env(tmp_path))
    assert unset.exit_code == 2
    assert "CALLBRIDGE_VOSK_MODEL is not set" in unset.stderr
    gone = runner.invoke(app, ["transcribe", str(text)], env=env(tmp_path, tmp_path / "nope"))
    assert gone.exit_code == 2
    assert "model:" in gone.stderr and "not found" in gone.stderr


# models verify / install


def tiny_model(folder: Path) -> Path:
    """A folder with every file a Vosk model needs, holding a few bytes each."""
    for relative in (
        *model_files.REQUIRED_FILES,
        "graph/HCLr.fst",
        "graph/Gr.fst",
        "graph/phones/word_boundary.int",
        *model_files.IVECTOR_FILES,
    ):
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"contents of {relative}\n".encode())
    return folder


def zipped(folder: Path, archive: Path, prefix: str) -> Path:
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                bundle.write(path, f"{prefix}{path.relative_to(folder).as_posix()}")
    return archive


def publish(monkeypatch, folder: Path, name: str, language: str = "zh") -> None:
    """Enter the files of ``folder`` in the table of published models, as ``name``."""
    files = tuple(
        PublishedFile(p, (folder / p).stat().st_size, hashlib.sha256((folder / p).read_bytes())
                      .hexdigest())
        for p in ("am/final.mdl", "graph/Gr.fst", "graph/HCLr.fst", "ivector/final.ie")
    )  # fmt: skip
    monkeypatch.setitem(model_files.PUBLISHED_MODELS, name, PublishedModel(name, language, files))


def test_verify_the_real_korean_model_folder(model_dir):
    result = runner.invoke(app, ["models", "verify", str(model_dir)])
    assert result.exit_code == 0, result.output
    assert "checked for the files Vosk needs" in result.stdout
    assert "graph/HCLr.fst + graph/Gr.fst" in result.stdout
    assert "model is valid" in result.stdout


def test_verify_small_cn_against_the_published_sizes_and_hashes(tmp_path):
    fake = tiny_model(tmp_path / "vosk-model-small-cn-0.22")
    result = runner.invoke(app, ["models", "verify", str(fake)])
    assert result.exit_code == 1
    assert "published model" in result.stdout
    size = len(b"contents of am/final.mdl\n")
    assert f"am/final.mdl: {size} bytes, expected 15901896" in result.stdout
    assert "model is NOT valid" in result.stdout


def test_verify_passes_matching_hashes_and_catches_one_changed_byte(tmp_path, monkeypatch):
    folder = tiny_model(tmp_path / "vosk-model-test-1.0")
    publish(monkeypatch, folder, "vosk-model-test-1.0")
    good = runner.invoke(app, ["models", "verify", str(folder)])
    assert good.exit_code == 0, good.output
    assert good.stdout.count("size and SHA-256 match") == 4
    archive = zipped(folder, tmp_path / "download.zip", "vosk-model-test-1.0/")
    assert runner.invoke(app, ["models", "verify", str(archive)]).exit_code == 0
    graph = folder / "graph" / "Gr.fst"
    graph.write_bytes(graph.read_bytes().replace(b"c", b"C", 1))
    bad = runner.invoke(app, ["models", "verify", str(folder)])
    assert bad.exit_code == 1
    assert "graph/Gr.fst: SHA-256" in bad.stdout and "not the published one" in bad.stdout


def test_verify_reports_missing_files_and_unreadable_zips(tmp_path):
    folder = tiny_model(tmp_path / "some-model")
    (folder / "graph" / "Gr.fst").unlink()
    (folder / "ivector" / "final.ie").unlink()
    result = runner.invoke(app, ["models", "verify", str(folder)])
    assert result.exit_code == 1
    assert "no graph" in result.stdout and "ivector/final.ie" in result.stdout
    junk = tmp_path / "model.zip"
    junk.write_bytes(b"PK but not really")
    assert "not a readable zip" in runner.invoke(app, ["models", "verify", str(junk)]).stdout
    missing = runner.invoke(app, ["models", "verify", str(tmp_path / "nothing")])
    assert missing.exit_code == 1 and "no such folder or file" in missing.stdout


@pytest.mark.parametrize(
    ("member", "problem"),
    [("../outside.txt", "climbs out"), ("/etc/evil.txt", "absolute path"),
     ("m/../../outside.txt", "climbs out"), ("link", "symbolic link")],
)  # fmt: skip
def test_unsafe_zip_members_are_refused(tmp_path, member, problem):
    archive = zipped(tiny_model(tmp_path / "m"), tmp_path / "model.zip", "m/")
    with zipfile.ZipFile(archive, "a") as bundle:
        info = zipfile.ZipInfo(member)
        if member == "link":
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        bundle.writestr(info, "../../etc/passwd" if member == "link" else "pwned")
    verified = runner.invoke(app, ["models", "verify", str(archive)])
    assert verified.exit_code == 1 and problem in verified.stdout
    target = tmp_path / "installed" / "model"
    installed = runner.invoke(app, ["models", "install", str(archive)], env=env(tmp_path, target))
    assert installed.exit_code == 1 and problem in installed.stderr
    assert not (tmp_path / "installed").exists()  # refused before anything was unpacked
    assert not (tmp_path / "outside.txt").exists()


def test_install_from_a_zip_then_replace_only_on_request(tmp_path):
    archive = zipped(tiny_model(tmp_path / "src"), tmp_path / "model.zip", "vosk-model-x/")
    target = tmp_path / "models" / "zh"
    first = runner.invoke(app, ["models", "install", str(archive)], env=env(tmp_path, target))
    assert first.exit_code == 0, first.output
    assert (target / "am" / "final.mdl").read_bytes() == b"contents of am/final.mdl\n"
    assert "installed vosk-model-x (zh)" in first.stdout
    again = runner.invoke(app, ["models", "install", str(archive)], env=env(tmp_path, target))
    assert again.exit_code == 1 and "--replace" in again.stderr
    replaced = runner.invoke(
        app, ["models", "install", str(archive), "--replace"], env=env(tmp_path, target)
    )
    assert replaced.exit_code == 0, replaced.output
    assert sorted(p.name for p in target.parent.iterdir()) == ["zh"]  # no staging left behind


def test_install_never_replaces_what_is_not_a_model(tmp_path):
    target = tmp_path / "documents"
    target.mkdir()
    (target / "keep.txt").write_text("mine", encoding="utf-8")
    source = tiny_model(tmp_path / "src")
    result = runner.invoke(
        app, ["models", "install", str(source), "--replace"], env=env(tmp_path, target)
    )
    assert result.exit_code == 1 and "refusing to replace" in result.stderr
    assert (target / "keep.txt").read_text(encoding="utf-8") == "mine"


def test_install_refuses_an_invalid_model_a_wrong_language_and_no_target(tmp_path, monkeypatch):
    target = tmp_path / "model"
    broken = tiny_model(tmp_path / "broken")
    (broken / "am" / "final.mdl").unlink()
    invalid = runner.invoke(app, ["models", "install", str(broken)], env=env(tmp_path, target))
    assert invalid.exit_code == 1 and "am/final.mdl is missing" in invalid.stderr
    cn = tiny_model(tmp_path / "vosk-model-small-cn-0.22")
    publish(monkeypatch, cn, "vosk-model-small-cn-0.22", language="zh")
    english = runner.invoke(
        app, ["models", "install", str(cn), "--language", "en"], env=env(tmp_path, target)
    )
    assert english.exit_code == 1 and "is a zh model, not en" in english.stderr
    assert not target.exists()
    nowhere = runner.invoke(app, ["models", "install", str(cn)], env=env(tmp_path))
    assert nowhere.exit_code == 2 and "CALLBRIDGE_VOSK_MODEL is not set" in nowhere.stderr


def test_installed_real_model_transcribes(model_dir, call, tmp_path):
    target = tmp_path / "models" / "ko"
    installed = runner.invoke(app, ["models", "install", str(model_dir), "--language", "ko"],
                              env=env(tmp_path, target))  # fmt: skip
    assert installed.exit_code == 0, installed.output
    assert not any(path.is_symlink() for path in target.rglob("*"))  # real copies
    result = runner.invoke(
        app, ["transcribe", str(call), "--language", "ko"], env=env(tmp_path, target)
    )
    assert result.exit_code == 0, result.output
    assert {m[3] for m in segment_lines(result.stdout)} == {"customer", "agent"}
