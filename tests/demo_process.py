"""``callbridge demo`` as a user starts it: its own process, its own port, its real log.

Not a fixture module: the tests that need a running service import :func:`running_demo`.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

CALLBRIDGE = Path(sys.executable).with_name("callbridge")
PASSWORD_RE = re.compile(r"本次密码: (\S+)\)")
TOKEN_RE = re.compile(r"API token for this run: (\S+)")
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
START_TIMEOUT = 60.0


@dataclass
class Demo:
    base_url: str
    password: str
    token: str
    log: Path
    """The demo's standard error: every log line it wrote."""

    def signed_in(self, username: str) -> httpx.Client:
        client = httpx.Client(base_url=self.base_url, timeout=30)
        token = CSRF_RE.search(client.get("/login").text).group(1)
        form = {"username": username, "password": self.password, "csrf_token": token}
        assert client.post("/login", data=form).status_code == 303
        return client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_demo(
    tmp_path: Path, *extra: str, env: dict[str, str] | None = None
) -> Iterator[Demo]:
    """``callbridge demo`` on a free loopback port with its data in ``tmp_path`` (and ``env``
    added to its environment); stopped (SIGINT, as Ctrl-C) at the end, so its log is complete
    when the block is left."""
    port = free_port()
    out, err = tmp_path / "demo.out", tmp_path / "demo.err"
    command = [str(CALLBRIDGE), "demo", "--host", "127.0.0.1", "--port", str(port),
               "--data-dir", str(tmp_path / "data"), *extra]  # fmt: skip
    environment = os.environ | {"PYTHONUNBUFFERED": "1"} | (env or {})
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, cwd=tmp_path,
                                   env=environment)  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(base, process, err)
        printed = out.read_text()
        yield Demo(base, PASSWORD_RE.search(printed).group(1),
                   TOKEN_RE.search(printed).group(1), err)  # fmt: skip
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_healthy(base: str, process: subprocess.Popen, err: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the demo exited:\n{err.read_text()[-3000:]}"
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("the demo did not answer /health")
