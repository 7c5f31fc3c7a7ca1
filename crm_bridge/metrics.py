"""``GET /metrics``: the service's state in Prometheus' text format.

Everything is read at scrape time from what already keeps it (the bridge's links, the pop hub,
the transcription queue in the database), so there is no second bookkeeping to drift. Rates
are Prometheus' job: events per second is ``rate(callbridge_ami_events_total[1m])``. The one
thing kept here is the pop latency histogram, since a latency is gone once the frame is sent:
the hub reports each pop it queues for a page (``PopHub(on_pop_latency=...)``).

The registry belongs to the app, not to the process: tests build several apps in one process.
The route takes the API token (``Authorization: Bearer``) or a supervisor's session, as
``/api/*`` does; Prometheus sends the token with its ``authorization`` scrape setting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from crm_bridge.accounts.auth import api_access
from crm_bridge.calls.bridge import BridgeService
from crm_bridge.db.models import JOB_STATUSES, TranscriptionJob
from crm_bridge.pops.hub import PopHub
from crm_bridge.runtime import RuntimeDep

if TYPE_CHECKING:  # imported only where the relay runs: psycopg is in an extra
    from crm_bridge.pops.relay import PopRelay

POP_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Seconds; a pop takes a few milliseconds at the recorded pace and some 150 ms at 100 times
it (``bench/pop_latency.py``), so the buckets are fine below 0.1 s and coarse past it."""


def pop_latency_histogram() -> Histogram:
    """The histogram the hub feeds: seconds from the AMI event's bytes arriving on the bridge's
    socket to its pop frame being queued for an agent's page (one observation per page)."""
    return Histogram(
        "callbridge_pop_latency_seconds",
        "Seconds from the AMI event arriving to its pop frame being queued for an agent page",
        buckets=POP_LATENCY_BUCKETS,
        registry=None,
    )


class RuntimeCollector(Collector):
    """Reads the bridge, the hub and the job queue each time Prometheus scrapes."""

    def __init__(
        self,
        bridge: BridgeService,
        pops: PopHub,
        sessions: sessionmaker[Session],
        relay: PopRelay | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._bridge = bridge
        self._pops = pops
        self._sessions = sessions
        self._relay = relay
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        yield from self._ami()
        connections = GaugeMetricFamily(
            "callbridge_pop_pages", "Agent pages connected for screen pops"
        )
        connections.add_metric([], self._pops.connections)
        yield connections
        if self._relay is not None:
            yield from self._pop_relay(self._relay)
        yield from self._transcription()

    def _ami(self) -> Iterator[Metric]:
        connected = GaugeMetricFamily(
            "callbridge_ami_connected", "1 while the AMI connection is up", labels=["server"]
        )
        in_flight = GaugeMetricFamily(
            "callbridge_calls_in_flight", "Calls the tracker holds open", labels=["server"]
        )
        events = CounterMetricFamily(
            "callbridge_ami_events",
            "AMI events received from the server, read by the tracker or not",
            labels=["server"],
        )
        for link in self._bridge.status():
            server = [str(link["server"])]
            connected.add_metric(server, 1.0 if link["state"] == "connected" else 0.0)
            in_flight.add_metric(server, float(link["calls_in_flight"]))
            events.add_metric(server, float(link["events_seen"]))
        yield from (connected, in_flight, events)

    @staticmethod
    def _pop_relay(relay: PopRelay) -> Iterator[Metric]:
        """The relay between instances (``crm_bridge/pops/relay.py``): its two connections and
        what became of the events it sent and heard."""
        connected = GaugeMetricFamily(
            "callbridge_pop_relay_connected",
            "1 while the relay's PostgreSQL connection is up",
            labels=["direction"],
        )
        connected.add_metric(["out"], 1.0 if relay.publisher.connected.is_set() else 0.0)
        connected.add_metric(["in"], 1.0 if relay.listener.connected.is_set() else 0.0)
        sent = CounterMetricFamily(
            "callbridge_pop_relay_sent_events",
            "Domain events this instance relayed to the others, by what became of them",
            labels=["result"],
        )
        for result in ("published", "dropped", "refused"):
            sent.add_metric([result], float(getattr(relay.publisher, result)))
        heard = CounterMetricFamily(
            "callbridge_pop_relay_heard_events",
            "Payloads heard from the other instances, by what became of them",
            labels=["result"],
        )
        for result in ("received", "malformed", "ended_unheard"):
            heard.add_metric([result], float(getattr(relay.listener, result)))
        yield from (connected, sent, heard)

    def _transcription(self) -> Iterator[Metric]:
        with self._sessions() as session:
            counts = dict(
                session.execute(
                    select(TranscriptionJob.status, func.count()).group_by(TranscriptionJob.status)
                ).all()
            )
            oldest = session.scalar(
                select(func.min(TranscriptionJob.created_at)).where(
                    TranscriptionJob.status.in_(("queued", "running"))
                )
            )
        jobs = GaugeMetricFamily(
            "callbridge_transcription_jobs", "Transcription jobs by status", labels=["status"]
        )
        for status in JOB_STATUSES:
            jobs.add_metric([status], float(counts.get(status, 0)))
        lag = GaugeMetricFamily(
            "callbridge_transcription_lag_seconds",
            "Age of the oldest job not yet done (0 when the queue is empty)",
        )
        lag.add_metric([], (self._clock() - oldest).total_seconds() if oldest else 0.0)
        yield from (jobs, lag)


def metrics_registry(
    bridge: BridgeService,
    pops: PopHub,
    sessions: sessionmaker[Session],
    pop_latency: Histogram,
    relay: PopRelay | None = None,
) -> CollectorRegistry:
    """A registry of this app's own metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RuntimeCollector(bridge, pops, sessions, relay))
    registry.register(pop_latency)
    return registry


router = APIRouter()


@router.get(
    "/metrics",
    summary="Prometheus metrics (API token or supervisor session)",
    dependencies=[Depends(api_access)],
    response_class=Response,
)
def metrics(request: Request, runtime: RuntimeDep) -> Response:
    registry = runtime.metrics
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
