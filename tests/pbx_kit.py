"""The real Asterisk of the PBX kit (``../shared/pbx``) as pytest fixtures.

``pbx_kit`` (session): one kit per test run, loading the product's own ``dialplans/`` (never a
copy), its work dir in a temp folder (``../shared`` is read-only in CI). It yields the kit's
``--json`` start info: ``info["ami"]`` holds host, port, username and secret of the product's own
least-privilege account; ``info["greetings"]`` is the folder the PBX plays as the sounds
``callbridge/greetings`` (link a test's ``<data_dir>/greetings`` to it). ``pbx`` (per test):
the far ends put back to their defaults first, and the PBX left idle after, so no call leaks
into the next test; it is the kit's command runner.

Where the kit cannot start (not there, libraries missing, ports taken, a binary this CPU cannot
run) the tests that need it are skipped with the reason; under ``CALLBRIDGE_REQUIRE_PBX=1`` (CI)
they fail instead. ``PBX_KIT`` names another kit folder (e.g. one rebuilt for this CPU with the
kit's own ``build/build-tarball.sh``); ``PBX_PORT_OFFSET`` moves every port of the kit (two test
runs on one machine). Under pytest-xdist each worker that needs the kit starts its own, its ports
moved a further ``WORKER_PORT_STEP`` per worker (gw0, gw1, ...).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from telephony.ami_connection import AmiConfig, AmiConnection, AmiState

ROOT = Path(__file__).resolve().parents[1]
KIT = Path(os.environ.get("PBX_KIT") or ROOT.parent / "shared" / "pbx")
PBX = KIT / "pbx"

PbxRunner = Callable[..., str]
WORKER_PORT_STEP = 10_000
"""Apart by this, two kits' ports never meet: each kit's highest range is its RTP ports at
14000-14999 plus its offset, its lowest its AMI at 5038."""


def port_offset() -> int:
    """This test process's kit ports: ``PBX_PORT_OFFSET``, plus a step per xdist worker."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    return int(os.environ.get("PBX_PORT_OFFSET") or 0) + WORKER_PORT_STEP * int(worker or 0)


def pbx(*args: str | Path, timeout: float = 120) -> str:
    """Run one kit command; its stdout. Raises CalledProcessError with the kit's message."""
    return subprocess.run(
        [str(PBX), *map(str, args)], check=True, capture_output=True, text=True, timeout=timeout
    ).stdout


def _unavailable(reason: str, *, required_here: bool = True) -> None:
    if required_here and os.environ.get("CALLBRIDGE_REQUIRE_PBX") == "1":
        pytest.fail(f"the real-PBX tests are required here: {reason}")
    pytest.skip(reason)


def _start_failure(exc: subprocess.SubprocessError) -> str:
    output = (getattr(exc, "stderr", "") or "") + (getattr(exc, "stdout", "") or "")
    return f"PBX kit cannot start: {(output or str(exc)).strip()[-500:]}"


def _cpu_cannot_run(work: Path) -> bool:
    """True when the kit's Asterisk dies of SIGILL here: built for instructions this CPU lacks.

    The kit then prints only "asterisk failed to start"; a remote-console call of the same binary
    shows the signal. No configuration of ours can fix that, only a rebuild of the tarball.
    """
    binary, conf = work / "asterisk" / "sbin" / "asterisk", work / "etc" / "pbx" / "asterisk.conf"
    if not binary.exists() or not conf.exists():
        return False
    probe = subprocess.run(
        [str(binary), "-C", str(conf), "-rx", "core show version"], capture_output=True, timeout=30
    )
    return probe.returncode == -signal.SIGILL


def start_info(output: str) -> dict:
    """The JSON object ``pbx start --json`` ends with (the kit's notes on what it changed in
    the product's files come first)."""
    return json.loads(output[output.index("\n{") + 1 :] if not output.startswith("{") else output)


@pytest.fixture(scope="session")
def pbx_kit(tmp_path_factory) -> Iterator[dict]:
    if not PBX.exists():
        _unavailable(f"PBX kit not found at {KIT} (PBX_KIT names another)")
    work = tmp_path_factory.mktemp("pbx")
    os.environ["PBX_WORKDIR"] = str(work)  # every later kit command uses this work dir
    check = subprocess.run([str(PBX), "deps", "--check"], capture_output=True, text=True)
    if check.returncode != 0:
        _unavailable(f"PBX kit: runtime libraries missing (run {PBX} deps): {check.stdout.strip()}")
    offset = str(port_offset())
    greetings = work / "greetings"  # the sound folder callbridge/greetings of the PBX
    greetings.mkdir()
    try:
        info = start_info(
            pbx(
                "start",
                "--dialplans",
                ROOT / "dialplans",
                "--recordings",
                work / "recordings",
                "--greetings",
                greetings,
                "--port-offset",
                offset,
                "--json",
            )
        )
        info["greetings"] = str(greetings)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, ValueError) as exc:
        subprocess.run([str(PBX), "stop"], capture_output=True)
        if _cpu_cannot_run(work):
            # Not a defect of ours, and nothing CI can install: say so loudly and skip.
            _unavailable(
                f"the PBX kit's Asterisk ({KIT}) stops with an illegal instruction on this CPU; "
                "rebuild it with the kit's build/build-tarball.sh and name that kit in PBX_KIT",
                required_here=False,
            )
        _unavailable(_start_failure(exc))
    try:
        yield info
    finally:
        subprocess.run([str(PBX), "stop"], capture_output=True)


def load_amd() -> None:
    """The kit's PBX leaves ``app_amd`` out (a ``noload`` of its own ``modules.conf``); the
    product's message campaigns run ``AMD()`` (dialplans/README.md, install step 6), so it is
    loaded as an installation does, with the product's ``amd.conf``: after every start and
    every restart a test may have made."""
    pbx("rx", "pbx", "module load app_amd.so")
    if "app_amd.so" not in pbx("rx", "pbx", "module show like app_amd"):
        pytest.fail("the PBX kit could not load app_amd (answering-machine detection)")


@pytest.fixture
def pbx_commands(pbx_kit) -> Iterator[PbxRunner]:
    """The kit's command runner, the far ends reset before (and ``app_amd`` loaded) and the
    PBX idle after the test."""
    pbx("reset")
    load_amd()
    yield pbx
    pbx("wait-idle", "--timeout", "60")


class KitAmi(AmiConnection):
    """An AMI session that keeps every event it hears, in order, in ``heard``."""

    def __init__(self, config: AmiConfig) -> None:
        self.heard: list[dict] = []
        super().__init__(config, on_event=lambda event: self.heard.append(dict(event)))


@pytest.fixture
async def kit_bridge(pbx_kit) -> AsyncIterator[KitAmi]:
    """An AMI session of the kit's own read/write-all ``bridge`` account, with every event it
    hears: "another tool" (a phone's own feature, an operator's console) acting on the PBX
    beside callbridge, and a witness of what the PBX did."""
    ami = pbx_kit["ami"]
    connection = KitAmi(AmiConfig(name="kit-bridge", host=ami["host"], port=ami["port"],
                                  username="bridge", secret="bridge-secret"))  # fmt: skip
    await connection.start()
    try:
        async with asyncio.timeout(60):
            while connection.state is not AmiState.CONNECTED:
                await asyncio.sleep(0.05)
        yield connection
    finally:
        await connection.stop()
