"""What the real-PBX tests share: the product's app connected to the PBX kit's Asterisk.

``kit_site`` serves the seeded app (``test_pops.seed``: agents wang on 1001 and li on 1002,
supervisor lin, customer 张三 on +8613800138000) under uvicorn, its bridge logged in to the kit's
AMI with the product's own least-privilege account (``info["ami"]``), its recordings root the
kit's recordings folder. Calls are placed with the kit's commands (``pbx_commands``) and checked
through what users see: the pop socket, the JSON API, the supervisor's pages, the database.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from test_pops import ACCOUNTS, Site, seed, served

from crm_bridge.app import create_app
from crm_bridge.settings import Settings

API_TOKEN = "kit-test-token-0123456789"
SECRET_KEY = "kit-test-session-key-0123456789"
ZHANG_SAN_RAW = "13800138000"
ZHANG_SAN = "+8613800138000"
CALLEE = "13900000001"
"""The kit's outbound callee that rings 2 s, answers and stays on."""
WAIT = 30.0
"""How long something that must happen may take before the test fails (not a speed check)."""
CALLBRIDGE = Path(sys.executable).with_name("callbridge")


def kit_settings(data_dir: Path, info: Mapping, **extra: object) -> Settings:
    """The app's settings against the kit. Its FastAGI server (routing) listens on a free port
    unless ``routing_port`` is given: the dialplan then finds nobody at its default address and
    goes on to the plain queue at once, as with the bridge away."""
    ami = info["ami"]
    extra.setdefault("routing_port", 0)
    return Settings(
        data_dir=data_dir,
        ami_host=ami["host"],
        ami_port=ami["port"],
        ami_username=ami["username"],
        ami_secret=ami["secret"],
        recordings_dir=Path(info["recordings"]),
        pbx_recordings_dir=info["recordings"],
        api_token=API_TOKEN,
        secret_key=SECRET_KEY,
        **extra,
    )


def serve_environment(settings: Settings) -> dict[str, str]:
    """The ``CALLBRIDGE_*`` variables that make ``callbridge serve`` run these settings."""
    values = {
        "DATA_DIR": settings.data_dir,
        "DATABASE_URL": settings.database_url,
        "AMI_HOST": settings.ami_host,
        "AMI_PORT": settings.ami_port,
        "AMI_USERNAME": settings.ami_username,
        "AMI_SECRET": settings.ami_secret.get_secret_value(),
        "RECORDINGS_DIR": settings.recordings_dir,
        "PBX_RECORDINGS_DIR": settings.pbx_recordings_dir,
        "JOURNAL_DIR": settings.journal_dir,
        "ROUTING_PORT": settings.routing_port,  # not FastAGI's usual 4573: tests run side by side
        "API_TOKEN": API_TOKEN,
        "SECRET_KEY": SECRET_KEY,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBRIDGE_")}
    env |= {f"CALLBRIDGE_{key}": str(value) for key, value in values.items()}
    return env


@asynccontextmanager
async def kit_site(data_dir: Path, info: Mapping, **extra: object) -> AsyncIterator[Site]:
    """The seeded app under uvicorn, in step with the kit's Asterisk (``extra``: more
    settings)."""
    settings = kit_settings(data_dir, info, **extra)
    seed(settings.database_url)
    app = create_app(settings)
    async with served(app) as address:
        assert await app.state.runtime.bridge.wait_connected(timeout=WAIT)
        yield Site(None, app, address, settings)  # type: ignore[arg-type]


def api(site_or_origin: Site | str) -> httpx.AsyncClient:
    origin = site_or_origin if isinstance(site_or_origin, str) else site_or_origin.origin
    return httpx.AsyncClient(
        base_url=origin, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=WAIT
    )


async def logged_call(origin: str, **filters: str) -> dict:
    """The one call of the call log matching ``filters``, once it is there."""
    async with api(origin) as client:
        deadline = asyncio.get_running_loop().time() + WAIT
        while True:
            calls = (await client.get("/api/calls", params=filters)).json()["calls"]
            if calls:
                assert len(calls) == 1, calls
                return calls[0]
            assert asyncio.get_running_loop().time() < deadline, f"no call {filters} logged"
            await asyncio.sleep(0.2)


async def frame_of_state(
    ws, state: str, skip=("ping", "bridge"), wait: float = WAIT
) -> dict:
    """The next frame on ``ws`` whose call state is ``state`` (earlier ones are dropped); real
    calls take their time, so this waits up to ``wait`` seconds."""
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        left = deadline - asyncio.get_running_loop().time()
        frame = json.loads(await asyncio.wait_for(ws.recv(), max(left, 0.01)))
        if frame["type"] not in skip and frame.get("state") == state:
            return frame


assert ACCOUNTS["wang"][1] == ["1001"] and ACCOUNTS["li"][1] == ["PJSIP/1002"]
