"""``GET /metrics``: the server's Prometheus metrics (one registry per app, so several apps can live in a process)."""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from ..result import Result

__all__ = ["Metrics"]

disable_created_metrics()  # type: ignore[no-untyped-call]  # the *_created series only add noise to scrapes

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_TOKEN_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28)


class Metrics:
    """Requests by endpoint and outcome, tokens, the engine's queue depth and live sequences, time to first token,
    inter-token latency and request latency histograms, prefix-cache hits, and the process's memory and CPU
    (Prometheus' ``process_*`` series)."""

    def __init__(self, model: Any) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("structgen_requests", "HTTP requests by endpoint and outcome (ok or the error type)",
                                ["endpoint", "outcome"], registry=r)
        self.prompt_tokens = Counter("structgen_prompt_tokens", "Prompt tokens of served requests", registry=r)
        self.completion_tokens = Counter("structgen_completion_tokens", "Generated tokens of served requests",
                                         registry=r)
        self.wasted_tokens = Counter("structgen_wasted_tokens", "Tokens of attempts that gave no valid value",
                                     registry=r)
        self.prefix_hits = Counter("structgen_prefix_cache_hit_tokens",
                                   "Prompt tokens whose KV came from the prefix cache", registry=r)
        self.ttft = Histogram("structgen_time_to_first_token_seconds", "From arrival to the first generated token",
                              buckets=_LATENCY_BUCKETS, registry=r)
        self.itl = Histogram("structgen_inter_token_latency_seconds", "Mean time between generated tokens, per "
                             "request", buckets=_TOKEN_BUCKETS, registry=r)
        self.latency = Histogram("structgen_request_latency_seconds", "From arrival to the last byte of the answer",
                                 buckets=_LATENCY_BUCKETS, registry=r)
        ProcessCollector(registry=r)   # process_resident_memory_bytes & co.: a long-running server's memory
        self.in_flight = Gauge("structgen_requests_in_flight", "HTTP requests being served", registry=r)
        scheduler = getattr(model, "scheduler", None)
        queue_depth = Gauge("structgen_queue_depth", "Requests waiting for room in the engine", registry=r)
        live = Gauge("structgen_live_sequences", "Sequences decoding in the engine", registry=r)
        if scheduler is not None:
            queue_depth.set_function(lambda: scheduler.queued)
            live.set_function(lambda: scheduler.live_sequences)

    def served(self, result: Result[Any], seconds: float) -> None:
        """Record one validated result that took ``seconds`` end to end."""
        t = result.timings
        self.prompt_tokens.inc(t.prompt_tokens)
        self.completion_tokens.inc(t.generated_tokens)
        self.wasted_tokens.inc(t.wasted_tokens)
        self.prefix_hits.inc(t.prefix_hit_tokens)
        if t.first_token_ms > 0:
            self.ttft.observe(t.first_token_ms / 1000)
        if t.generated_tokens > 1 and t.decode_ms > 0:
            self.itl.observe(t.decode_ms / 1000 / t.generated_tokens)
        self.latency.observe(seconds)

    def outcome(self, endpoint: str, outcome: str) -> None:
        """Count one finished HTTP request."""
        self.requests.labels(endpoint, outcome).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
