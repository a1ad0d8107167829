"""Prometheus metrics of the VPSie client, registered on a registry the caller owns.

Names follow the product prefix and Prometheus naming (``_total`` counters, ``_seconds`` histograms).
``code`` is the HTTP status as text, ``200_error`` for an HTTP 200 whose envelope says
``error: true``, or ``timeout`` / ``transport`` / ``invalid_body`` / ``circuit_open`` when there was
no usable HTTP answer.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Cloud calls take 50 ms to tens of seconds (create under load); buckets cover both ends.
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ClientMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "vpsie_autoscaler_vpsie_api_requests_total",
            "VPSie API requests by operation and result code.",
            ["operation", "code"],
            registry=registry,
        )
        self.duration = Histogram(
            "vpsie_autoscaler_vpsie_api_request_duration_seconds",
            "VPSie API request latency by operation (one sample per HTTP attempt).",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.rate_limited_wait = Counter(
            "vpsie_autoscaler_vpsie_api_rate_limit_wait_seconds_total",
            "Seconds requests waited for the client-side rate limiter.",
            registry=registry,
        )
        self.rate_limit = Gauge(
            "vpsie_autoscaler_vpsie_api_rate_limit_requests_per_minute",
            "Current client-side VPSie request rate limit (requests/min): the configured ceiling, lower "
            "after VPSie answered 429 or Retry-After (AIMD).",
            registry=registry,
        )
        self.retries = Counter(
            "vpsie_autoscaler_vpsie_api_retries_total",
            "Retries of idempotent VPSie API calls by operation.",
            ["operation"],
            registry=registry,
        )

        self.circuit_state = Gauge(
            "vpsie_autoscaler_vpsie_api_circuit_state",
            "1 for the state the VPSie API circuit breaker is in (closed, open, half_open), 0 for others.",
            ["state"],
            registry=registry,
        )
        self.circuit_transitions = Counter(
            "vpsie_autoscaler_vpsie_api_circuit_transitions",
            "Changes of state of the VPSie API circuit breaker.",
            ["from", "to"],
            registry=registry,
        )
        self.credential_rotations = Counter(
            "vpsie_autoscaler_vpsie_credential_rotations",
            "New VPSie credentials tried without a restart: success (in use), failure (refused; the old "
            "ones stay in use).",
            ["result"],
            registry=registry,
        )
        for result in ("success", "failure"):
            self.credential_rotations.labels(result=result)

        self.malformed_items = Counter(
            "vpsie_autoscaler_vpsie_api_malformed_items_total",
            "Items of VPSie list answers skipped because they did not fit the model, by operation.",
            ["operation"],
            registry=registry,
        )

    def circuit(self, old: str, new: str) -> None:
        """The breaker moved from ``old`` to ``new`` (``BreakerState`` values)."""
        self.circuit_transitions.labels(old, new).inc()
        self.circuit_state.labels(old).set(0)
        self.circuit_state.labels(new).set(1)

    def observe(self, operation: str, code: str, seconds: float | None) -> None:
        self.requests.labels(operation=operation, code=code).inc()
        if seconds is not None:
            self.duration.labels(operation=operation).observe(seconds)
