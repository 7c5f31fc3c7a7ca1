"""Live speech in ``/metrics``: streams in use against the limit, calls that did not fit
(post-call transcript only), alerts raised, stream connections and broken ones."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from crm_bridge.live_speech.service import LiveSpeech


class LiveSpeechCollector(Collector):
    def __init__(self, live: LiveSpeech) -> None:
        self._live = live

    def collect(self) -> Iterator[Metric]:
        live, counts = self._live, self._live.counts
        server = live.server.counts
        gauges = (
            ("callbridge_live_speech_streams", "Call sides transcribed live now",
             live.streams_active),
            ("callbridge_live_speech_max_streams", "Call sides that may be live at once",
             live.config.max_streams),
            ("callbridge_live_speech_calls_post_call_only",
             "Calls going on now without a live transcript (the streams were all taken)",
             sum(1 for c in live.calls.values() if c.live == "post_call_only")),
        )  # fmt: skip
        for name, doc, value in gauges:
            gauge = GaugeMetricFamily(name, doc)
            gauge.add_metric([], value)
            yield gauge
        counters = (
            ("callbridge_live_speech_calls_streamed", "Calls given a live transcript",
             counts.calls_streamed),
            ("callbridge_live_speech_calls_refused", "Calls past the live-stream limit",
             counts.calls_post_call_only),
            ("callbridge_live_speech_alerts", "Watch words heard live (final results)",
             counts.alerts),
            ("callbridge_live_speech_stream_connections",
             "AudioSocket streams connected (more than two a call: cut and resumed)",
             counts.stream_connections),
            ("callbridge_live_speech_bad_streams",
             "AudioSocket connections closed for a broken protocol", server.bad_streams),
            ("callbridge_live_speech_unknown_messages",
             "AudioSocket messages of an unknown kind, skipped", server.unknown_messages),
        )  # fmt: skip
        for name, doc, value in counters:
            counter = CounterMetricFamily(name, doc)
            counter.add_metric([], value)
            yield counter
