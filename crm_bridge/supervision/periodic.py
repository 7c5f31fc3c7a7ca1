"""The supervisors' background work, run from the service's lifespan: the retention job
(crm_bridge/supervision/retention.py) every hour, and the watch-word sweep
(crm_bridge/supervision/flags.py) every minute. Each run goes to a worker thread so the event loop
keeps serving; a failing run is logged and the next one happens as planned."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from crm_bridge.supervision.flags import sweep
from crm_bridge.supervision.retention import run_retention

log = logging.getLogger(__name__)

RETENTION_EVERY_SECONDS = 3600.0
FLAG_SWEEP_EVERY_SECONDS = 60.0


class PeriodicJobs:
    def __init__(self, jobs: list[tuple[str, float, Callable[[], object]]]) -> None:
        self._jobs = jobs
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._every(name, seconds, job), name=f"periodic:{name}")
            for name, seconds, job in self._jobs
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _every(self, name: str, seconds: float, job: Callable[[], object]) -> None:
        while True:
            try:
                await asyncio.to_thread(job)
            except Exception:  # logged and retried on the next round
                log.exception("periodic job %s failed", name)
            await asyncio.sleep(seconds)


def supervision_jobs(sessions: sessionmaker[Session], recordings_dir: Path) -> PeriodicJobs:
    return PeriodicJobs(
        [
            ("retention", RETENTION_EVERY_SECONDS, lambda: run_retention(sessions, recordings_dir)),
            ("flags", FLAG_SWEEP_EVERY_SECONDS, lambda: sweep(sessions)),
        ]
    )
