"""The README's demo command, run exactly as the README prints it, as a new user would.

Standard library only: it runs before anything is installed. It takes the command from the
README's first ``sh`` block that starts the demo, runs it (a bare venv: ``pip install -e .``,
no extras) in the background, waits for ``/health``, signs in as the agent it printed with the
password it printed, checks that ``/agent`` answers 200 with the agent's page, and stops it.
Exit status 1, with the end of the demo's output, when any of that fails.

Run from the repository root: ``python3 .ci/readme_demo.py``.
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

DEMO_COMMAND = re.compile(r"^python3 -m venv \.venv && .*callbridge demo .*$", re.MULTILINE)
PASSWORD = re.compile(r"本次密码: (\S+)\)")
AGENT = re.compile(r"^\s+(\S+)\s+agent\b", re.MULTILINE)
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
START_TIMEOUT = 600.0
"""pip installs every dependency first (from its cache in CI)."""


def readme_command() -> tuple[str, str]:
    """The demo command of the README, and the base URL its ``--host``/``--port`` make."""
    command = DEMO_COMMAND.search(Path("README.md").read_text()).group(0)
    host = re.search(r"--host (\S+)", command).group(1)
    port = re.search(r"--port (\d+)", command).group(1)
    return command, f"http://{host}:{port}"


def wait_for_health(base: str, demo: subprocess.Popen, deadline: float) -> None:
    while time.monotonic() < deadline:
        if demo.poll() is not None:
            raise RuntimeError(f"the demo exited with status {demo.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=5) as answer:  # noqa: S310
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(1)
    raise RuntimeError("/health did not answer in time")


def agent_page_status(base: str, username: str, password: str) -> tuple[int, str]:
    """Sign in through the form (CSRF token and all) and open ``/agent``."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(f"{base}/login", timeout=10) as answer:
        token = CSRF.search(answer.read().decode()).group(1)
    form = {"username": username, "password": password, "csrf_token": token, "next": ""}
    data = urllib.parse.urlencode(form).encode()
    with opener.open(f"{base}/login", data=data, timeout=30) as answer:
        answer.read()
    with opener.open(f"{base}/agent", timeout=10) as answer:
        return answer.status, answer.read().decode()


def main() -> int:
    command, base = readme_command()
    print(f"README demo: {command}", flush=True)
    log = Path(tempfile.mkstemp(prefix="readme-demo-", suffix=".log")[1])
    with log.open("wb") as output:
        demo = subprocess.Popen(  # noqa: S602 - the README's command, as a user types it
            command, shell=True, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_for_health(base, demo, time.monotonic() + START_TIMEOUT)
        printed = log.read_text(errors="replace")
        password = PASSWORD.search(printed).group(1)
        agent = AGENT.search(printed).group(1)
        status, page = agent_page_status(base, agent, password)
        if status != 200 or "/static/agent.js" not in page:
            raise RuntimeError(f"/agent answered {status} without the agent's page")
        print(f"README demo: /health ok, {agent} signed in, /agent {status}", flush=True)
        return 0
    except Exception as exc:
        print(f"README demo FAILED: {exc}", file=sys.stderr)
        print(log.read_text(errors="replace")[-4000:], file=sys.stderr)
        return 1
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        try:
            demo.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
        log.unlink()


if __name__ == "__main__":
    sys.exit(main())
