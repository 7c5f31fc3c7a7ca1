"""The speech commands of ``callbridge``: ``transcribe`` and ``models verify|install``.

The progress bar is rich's, the library Typer already uses for its own output, drawn on
standard error so that standard output carries only the transcript (a line per segment, or
JSON) and can be piped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from crm_bridge.settings import ConfigurationError, Settings

models_app = typer.Typer(help="Vosk speech models: check one, install one.", no_args_is_help=True)

LanguageOption = Annotated[str, typer.Option(help="language of the model: zh, en, ko…")]


def _settings() -> Settings:
    try:
        return Settings(serving=False)
    except ConfigurationError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(code)


def segment_line(start: float, end: float, speaker: str, text: str) -> str:
    """``[0.00-3.20] customer: text``"""
    return f"[{start:.2f}-{end:.2f}] {speaker}: {text}"


def transcribe(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="a WAV (or any libsndfile) file")
    ],
    model: Annotated[
        Path | None, typer.Option(help="Vosk model folder (default: CALLBRIDGE_VOSK_MODEL)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the transcript as JSON")] = False,
    language: LanguageOption = "zh",
    mixed: Annotated[
        bool, typer.Option("--mixed", help="use FILE even when its -in/-out files are beside it")
    ] = False,
) -> None:
    """Transcribe one recording; print a line per segment (times, speaker, text) or JSON.

    A mono file is one speaker ("mixed"); a stereo file is customer (left) and agent (right).
    For a call's mixed <uniqueid>.wav with <uniqueid>-in.wav and <uniqueid>-out.wav beside
    it, the two sides are transcribed apart unless --mixed.
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeElapsedColumn

    from transcription.engine import Transcriber
    from transcription.errors import AudioError, ModelError
    from transcription.recording_files import direction_files

    model_dir = model or _settings().vosk_model
    if model_dir is None:
        raise _fail("CALLBRIDGE_VOSK_MODEL is not set: name the model folder or pass --model", 2)
    sides = None if mixed else direction_files(file)
    if sides:
        typer.echo(f"customer: {sides['customer']}, agent: {sides['agent']}", err=True)
    console = Console(stderr=True)
    try:
        with console.status("loading the model…"):
            transcriber = Transcriber(model_dir, language=language)
        with Progress(
            "{task.description}", BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
            console=console,
        ) as progress:  # fmt: skip
            task = progress.add_task(file.name, total=1.0)
            transcript = transcriber.transcribe(
                sides or file, lambda done: progress.update(task, completed=done)
            )
    except ModelError as exc:
        raise _fail(f"model: {exc}", 2) from None
    except AudioError as exc:
        raise _fail(f"audio: {exc}", 1) from None
    if as_json:
        typer.echo(json.dumps(transcript.to_json(), ensure_ascii=False, indent=2))
        return
    for segment in transcript.segments:
        typer.echo(segment_line(segment.start, segment.end, segment.speaker, segment.text))


@models_app.command("verify")
def models_verify(
    path: Annotated[Path, typer.Argument(help="a model folder or a zip of one")],
) -> None:
    """Check a model: the files Vosk needs, and for vosk-model-small-cn-0.22 the published
    sizes and SHA-256 of its large files. Exit code 1 when it is not valid."""
    from transcription.model_files import verify

    result = verify(path)
    typer.echo(result.report())
    if not result.ok:
        raise typer.Exit(1)


@models_app.command("install")
def models_install(
    path: Annotated[Path, typer.Argument(help="a model folder or a zip of one")],
    language: LanguageOption = "zh",
    replace: Annotated[bool, typer.Option(help="replace the model already installed")] = False,
) -> None:
    """Verify a model, then copy or unzip it into the folder CALLBRIDGE_VOSK_MODEL names."""
    from transcription.errors import ModelError
    from transcription.model_files import install

    target = _settings().vosk_model
    if target is None:
        raise _fail("CALLBRIDGE_VOSK_MODEL is not set: name the folder to install into", 2)
    try:
        result = install(path, target, language=language, replace=replace)
    except ModelError as exc:
        raise _fail(str(exc), 1) from None
    typer.echo(result.report())
    typer.echo(f"已安装 / installed {result.name} ({language}) into {target}")
