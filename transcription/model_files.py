"""Vosk model folders: what one must hold, checking one a user brings, installing it.

A Vosk model folder holds ``am/final.mdl`` (the acoustic model), ``conf/mfcc.conf`` and
``conf/model.conf`` (features and decoder), a graph (``graph/HCLG.fst``, or ``graph/HCLr.fst``
with ``graph/Gr.fst`` for the small lookahead models), word boundaries for word times
(``graph/phones/word_boundary.int``), and usually an i-vector extractor (``ivector/``).
Folders and zips are checked against that; ``vosk-model-small-cn-0.22``, recognised by its
name, is checked byte for byte against the sizes and SHA-256 its publisher lists.
"""

from __future__ import annotations

import hashlib
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from transcription.errors import ModelError

REQUIRED_FILES = ("am/final.mdl", "conf/mfcc.conf", "conf/model.conf")
GRAPHS = (("graph/HCLG.fst",), ("graph/HCLr.fst", "graph/Gr.fst"))
WORD_BOUNDARIES = ("graph/phones/word_boundary.int", "graph/phones/align_lexicon.int")
IVECTOR_FILES = (
    "ivector/final.ie",
    "ivector/final.dubm",
    "ivector/final.mat",
    "ivector/global_cmvn.stats",
    "ivector/splice.conf",
    "ivector/online_cmvn.conf",
)


@dataclass(frozen=True)
class PublishedFile:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class PublishedModel:
    name: str
    language: str
    files: tuple[PublishedFile, ...]


SMALL_CN_0_22 = PublishedModel(
    name="vosk-model-small-cn-0.22",
    language="zh",
    files=(
        PublishedFile(
            "am/final.mdl",
            15_901_896,
            "91eda2c04c4f599361cb92b0e5298ccdf6b3c7a1fa52bfcefcd2c4e07aa1c131",
        ),
        PublishedFile(
            "graph/Gr.fst",
            26_082_259,
            "46d41a9b1723abccdcb354d731a5b58d87c060100d88ada1a3e31220f52b0434",
        ),
        PublishedFile(
            "graph/HCLr.fst",
            16_158_762,
            "798af0d9ba6f2d727747f58e1e7b2305f8618bc8ea7f6c51beecd8a2c965b965",
        ),
        PublishedFile(
            "ivector/final.ie",
            9_927_287,
            "c39d46fbff04efb7baa9660ae7a728b0e2f35a4a1250b56ed3a599e26956df86",
        ),
        PublishedFile(
            "ivector/final.dubm",
            168_048,
            "e33276cbd548c0a03ae5812c98115940614997dff23a6d59968af6eaf7630ff8",
        ),
        PublishedFile(
            "ivector/final.mat",
            44_975,
            "42706d88818070ea0d0182b4d11367ba52a13b9a2be45630f60858a422109ada",
        ),
    ),
)
PUBLISHED_MODELS = {SMALL_CN_0_22.name: SMALL_CN_0_22}

MAX_UNPACKED_BYTES = 4 * 1024**3
"""A zip that would unpack to more than this is refused (the largest Vosk models are ~3 GB)."""


@dataclass
class Verification:
    """What checking one model found: the model's name, what passed, what failed."""

    source: Path
    name: str
    published: PublishedModel | None = None
    passed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def report(self) -> str:
        kind = (
            "published model, checked against its sizes and SHA-256"
            if self.published
            else ("checked for the files Vosk needs")
        )
        lines = [f"model {self.name} ({kind})"]
        lines += [f"  ok       {item}" for item in self.passed]
        lines += [f"  PROBLEM  {item}" for item in self.problems]
        verdict = "模型有效 / model is valid" if self.ok else "模型无效 / model is NOT valid"
        lines.append(verdict)
        return "\n".join(lines)


class _ModelFiles:
    """Read access to the files of a model, in a folder or under one prefix of a zip."""

    def __init__(self, names: set[str], opener: Callable[[str], BinaryIO]) -> None:
        self.names = names
        self._open = opener

    def has(self, relative: str) -> bool:
        return relative in self.names

    def has_folder(self, relative: str) -> bool:
        prefix = relative.rstrip("/") + "/"
        return any(name.startswith(prefix) for name in self.names)

    def size_and_sha256(self, relative: str) -> tuple[int, str]:
        digest = hashlib.sha256()
        size = 0
        with self._open(relative) as stream:
            while chunk := stream.read(1024 * 1024):
                digest.update(chunk)
                size += len(chunk)
        return size, digest.hexdigest()


def structure_problems(files: _ModelFiles) -> tuple[list[str], list[str]]:
    """(what is there, what is missing) among the files Vosk needs."""
    passed = [relative for relative in REQUIRED_FILES if files.has(relative)]
    problems = [f"{relative} is missing" for relative in REQUIRED_FILES if not files.has(relative)]
    graph = next((g for g in GRAPHS if all(files.has(p) for p in g)), None)
    if graph:
        passed.append(" + ".join(graph))
    else:
        problems.append("no graph: needs graph/HCLG.fst, or graph/HCLr.fst and graph/Gr.fst")
    boundary = next((p for p in WORD_BOUNDARIES if files.has(p)), None)
    if boundary:
        passed.append(boundary)
    else:
        problems.append("graph/phones/word_boundary.int is missing (needed for word times)")
    if files.has_folder("ivector"):
        missing = [p for p in IVECTOR_FILES if not files.has(p)]
        if missing:
            problems.append("ivector/ is incomplete: " + ", ".join(missing) + " missing")
        else:
            passed.append("ivector/ complete")
    return passed, problems


def _published_file_problem(files: _ModelFiles, expected: PublishedFile) -> str | None:
    if not files.has(expected.path):
        return f"{expected.path} is missing"
    size, sha256 = files.size_and_sha256(expected.path)
    if size != expected.size:
        return f"{expected.path}: {size} bytes, expected {expected.size}"
    if sha256 != expected.sha256:
        return f"{expected.path}: SHA-256 {sha256} is not the published one"
    return None


def _check(files: _ModelFiles, source: Path, name: str) -> Verification:
    result = Verification(source=source, name=name, published=PUBLISHED_MODELS.get(name))
    result.passed, result.problems = structure_problems(files)
    for expected in result.published.files if result.published else ():
        problem = _published_file_problem(files, expected)
        if problem is None:
            result.passed.append(f"{expected.path}: size and SHA-256 match")
        elif problem not in result.problems:
            result.problems.append(problem)
    return result


def _folder_files(folder: Path) -> _ModelFiles:
    names = {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}
    return _ModelFiles(names, lambda relative: (folder / relative).open("rb"))


def check_model(model_dir: Path) -> None:
    """Raise :class:`ModelError` unless ``model_dir`` holds the files Vosk needs.

    Cheap (no hashing, no loading): meant for start-up, so a missing model is reported before
    the first call is transcribed.
    """
    if not model_dir.is_dir():
        raise ModelError(f"Vosk model folder not found: {model_dir}")
    _, problems = structure_problems(_folder_files(model_dir))
    if problems:
        raise ModelError(f"{model_dir} is not a usable Vosk model: " + "; ".join(problems))


def _zip_model_prefix(names: list[str]) -> str:
    """The folder inside the zip that holds the model ("" when it sits at the top)."""
    for name in names:
        if name.endswith("am/final.mdl"):
            return name[: -len("am/final.mdl")]
    return ""


def unsafe_member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a zip member may not be unpacked (a path leaving the target, a link), or None."""
    name = info.filename
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return f"{name}: absolute path"
    if ".." in path.parts:
        return f"{name}: climbs out of the folder (..)"
    if stat.S_ISLNK(info.external_attr >> 16):
        return f"{name}: symbolic link"
    return None


def verify_zip(archive: Path) -> Verification:
    """Check a zip of a model without unpacking it: safe members, structure, published hashes."""
    try:
        bundle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        result = Verification(source=archive, name=archive.stem)
        result.problems.append(f"not a readable zip: {exc}")
        return result
    with bundle:
        infos = bundle.infolist()
        unsafe = [problem for info in infos if (problem := unsafe_member_problem(info))]
        prefix = _zip_model_prefix([info.filename for info in infos])
        name = PurePosixPath(prefix).name or archive.stem
        names = {
            info.filename[len(prefix) :]
            for info in infos
            if info.filename.startswith(prefix) and not info.is_dir()
        }
        result = _check(
            _ModelFiles(names, lambda relative: bundle.open(prefix + relative)), archive, name
        )
        total = sum(info.file_size for info in infos)
    result.problems[:0] = unsafe
    if total > MAX_UNPACKED_BYTES:
        result.problems.append(f"unpacks to {total} bytes, more than {MAX_UNPACKED_BYTES}")
    return result


def verify(path: Path) -> Verification:
    """Check a model folder or a zip of one; never raises for a bad model, reports it."""
    if path.is_dir():
        return _check(_folder_files(path), path, path.resolve().name)
    if path.is_file():
        return verify_zip(path)
    result = Verification(source=path, name=path.name)
    result.problems.append("no such folder or file")
    return result


def _stage(source: Path, work: Path) -> Path:
    """A complete copy of the model of ``source`` (a folder, or a zip unpacked member by
    member, each checked to stay inside ``work``) under ``work``; returns its folder."""
    if source.is_dir():
        return Path(shutil.copytree(source, work / "model", symlinks=False))
    root = (work / "unpacked").resolve()
    with zipfile.ZipFile(source) as bundle:
        for info in bundle.infolist():
            target = (root / info.filename).resolve()
            if unsafe_member_problem(info) or not target.is_relative_to(root):
                raise ModelError(f"refusing zip member {info.filename!r}")
            bundle.extract(info, root)
        return root / _zip_model_prefix(bundle.namelist())


def install(
    source: Path, target: Path, *, language: str | None = None, replace: bool = False
) -> Verification:
    """Verify ``source`` (folder or zip) and put the model at ``target``.

    The copy is made beside ``target`` and renamed into place only once complete, so a
    failed install leaves the old model as it was. Raises :class:`ModelError` when the model
    fails verification, is a published model of another ``language``, or ``target`` already
    holds something and ``replace`` is false. Only a model folder is ever replaced.
    """
    result = verify(source)
    if not result.ok:
        raise ModelError(result.report())
    if language and result.published and result.published.language != language:
        raise ModelError(f"{result.name} is a {result.published.language} model, not {language}")
    if target.exists() and not target.is_dir():
        raise ModelError(f"{target} is a file, not a folder")
    if target.exists() and any(target.iterdir()):
        if not replace:
            raise ModelError(f"{target} is not empty; use --replace to replace the model in it")
        try:
            check_model(target)
        except ModelError:
            raise ModelError(
                f"{target} holds something other than a Vosk model; refusing to replace it"
            ) from None
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".model-install-") as work:
        staged = _stage(source, Path(work))
        check_model(staged)
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)
    return result


def dither_free_copy(model: Path, folder: Path) -> Path:
    """``model`` with ``--dither=0`` in ``folder`` (links to its files, made once, then
    reused). Kaldi's MFCC dither defaults to 1.0, so the same audio decodes a little
    differently, and takes a different time, from run to run; without it a decode repeats
    itself, which tests and like-for-like timings need."""
    if folder.is_dir():
        return folder
    staging = folder.with_suffix(".partial")
    for source in model.rglob("*"):
        if source.is_file() and source.relative_to(model).as_posix() != "conf/mfcc.conf":
            link = staging / source.relative_to(model)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(source.resolve())
    conf = (model / "conf" / "mfcc.conf").read_text()
    (staging / "conf" / "mfcc.conf").write_text(conf.rstrip("\n") + "\n--dither=0\n")
    staging.rename(folder)
    return folder
