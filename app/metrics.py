"""The service's Prometheus metrics, through prometheus_client, in a registry of the app's own.

A registry per app (not the library's global one) lets tests and embedders create several apps in
one process; the process collector adds RSS, CPU time and open file descriptors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

# Samples named *_created double every counter's series and mean nothing to a service's dashboards.
prometheus_client.disable_created_metrics()

LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
EXPOSITION_CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # what generate_latest writes


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        http_labels = ("route", "method", "status")
        self.requests = Counter(
            "facever_http_requests", "HTTP requests answered.", http_labels, registry=self.registry
        )
        self.request_seconds = self._latency(
            "facever_http_request_duration_seconds", "Time from request arrival to the end of the response.", http_labels
        )
        self.inference_seconds = self._latency(
            "facever_inference_duration_seconds", "Time in the inference thread: decode, detect, align and embed.",
            ("operation",),
        )
        self.faces_detected = Counter(
            "facever_faces_detected",
            "Faces the detector found in images it answered for.",
            ("operation",),
            registry=self.registry,
        )
        # By a key's public id (a stored key's, or env, env-write, open), never its secret.
        self.key_requests = Counter(
            "facever_key_requests", "Requests let through, by key id and the scope they used.", ("key_id", "scope"),
            registry=self.registry,
        )
        self.key_refusals = Counter(
            "facever_key_refusals",
            "Requests refused by authentication, scope or rate limit, by key id ('-' where none was recognised) "
            "and reason (unauthorized, forbidden, rate_limited, throttled).",
            ("key_id", "reason"),
            registry=self.registry,
        )
        self.inference_rejected = Counter(
            "facever_inference_rejected",
            "Inferences refused because the service was full (overloaded) or past the deadline (timeout).",
            ("reason",),
            registry=self.registry,
        )

    def _latency(self, name: str, help_text: str, labels: Sequence[str]) -> Histogram:
        return Histogram(name, help_text, labels, buckets=LATENCY_BUCKETS_S, registry=self.registry)

    def count_faces(self, operation: str, faces: Sequence[Any]) -> None:
        self.faces_detected.labels(operation=operation).inc(sum(face.faces_detected or 0 for face in faces))

    def render(self) -> bytes:
        """The Prometheus text exposition format (version 0.0.4)."""
        return generate_latest(self.registry)
