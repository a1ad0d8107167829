"""Metric families of the runtime, named exactly as controller-runtime and client-go name them so
existing dashboards and alerts work unchanged.

Every family is registered once per :class:`~prometheus_client.CollectorRegistry` (the registry
the manager owns, or one a test creates): several queues and controllers share the families and
differ only by labels. Never the global default registry.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

# client-go's workqueue histograms: exponential buckets 1e-8 .. 1e3 s, x10 (pkg/metrics/workqueue.go).
WORKQUEUE_BUCKETS = tuple(10.0**exp for exp in range(-8, 4))
# controller-runtime's reconcile time buckets (pkg/internal/controller/metrics/metrics.go).
RECONCILE_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
    1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60,
)  # fmt: skip
WORKQUEUE_LABELS = ("name", "controller")


def new_registry() -> CollectorRegistry:
    """A process's own registry with the standard process, platform and GC collectors."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


@dataclass(frozen=True)
class WorkqueueMetrics:
    depth: Gauge
    adds: Counter
    queue_duration: Histogram
    work_duration: Histogram
    unfinished_work: Gauge
    longest_running: Gauge
    retries: Counter


@dataclass(frozen=True)
class ControllerMetrics:
    reconcile_total: Counter
    reconcile_errors: Counter
    terminal_errors: Counter
    panics: Counter
    timeouts: Counter
    reconcile_time: Histogram
    max_concurrent: Gauge
    active_workers: Gauge


@dataclass(frozen=True)
class LeaderMetrics:
    master_status: Gauge
    slowpath: Counter


@dataclass(frozen=True)
class EventMetrics:
    dropped: Counter
    sent: Counter
    failed: Counter


@dataclass(frozen=True)
class InformerMetrics:
    relists: Counter
    watch_events: Counter
    objects: Gauge


_workqueue: weakref.WeakKeyDictionary[CollectorRegistry, WorkqueueMetrics] = weakref.WeakKeyDictionary()
_controller: weakref.WeakKeyDictionary[CollectorRegistry, ControllerMetrics] = weakref.WeakKeyDictionary()
_leader: weakref.WeakKeyDictionary[CollectorRegistry, LeaderMetrics] = weakref.WeakKeyDictionary()
_events: weakref.WeakKeyDictionary[CollectorRegistry, EventMetrics] = weakref.WeakKeyDictionary()
_informer: weakref.WeakKeyDictionary[CollectorRegistry, InformerMetrics] = weakref.WeakKeyDictionary()


def workqueue_metrics(registry: CollectorRegistry) -> WorkqueueMetrics:
    found = _workqueue.get(registry)
    if found is None:
        found = WorkqueueMetrics(
            depth=Gauge("workqueue_depth", "Current depth of workqueue", WORKQUEUE_LABELS, registry=registry),
            adds=Counter("workqueue_adds", "Total number of adds handled by workqueue", WORKQUEUE_LABELS,
                         registry=registry),
            queue_duration=Histogram(
                "workqueue_queue_duration_seconds",
                "How long in seconds an item stays in workqueue before being requested",
                WORKQUEUE_LABELS, buckets=WORKQUEUE_BUCKETS, registry=registry,
            ),
            work_duration=Histogram(
                "workqueue_work_duration_seconds",
                "How long in seconds processing an item from workqueue takes.",
                WORKQUEUE_LABELS, buckets=WORKQUEUE_BUCKETS, registry=registry,
            ),
            unfinished_work=Gauge(
                "workqueue_unfinished_work_seconds",
                "How many seconds of work has been done that is in progress and hasn't been observed by "
                "work_duration. Large values indicate stuck threads.",
                WORKQUEUE_LABELS, registry=registry,
            ),
            longest_running=Gauge(
                "workqueue_longest_running_processor_seconds",
                "How many seconds has the longest running processor for workqueue been running.",
                WORKQUEUE_LABELS, registry=registry,
            ),
            retries=Counter("workqueue_retries", "Total number of retries handled by workqueue",
                            WORKQUEUE_LABELS, registry=registry),
        )  # fmt: skip
        _workqueue[registry] = found
    return found


def controller_metrics(registry: CollectorRegistry) -> ControllerMetrics:
    found = _controller.get(registry)
    if found is None:
        found = ControllerMetrics(
            reconcile_total=Counter("controller_runtime_reconcile",
                                    "Total number of reconciliations per controller",
                                    ["controller", "result"], registry=registry),
            reconcile_errors=Counter("controller_runtime_reconcile_errors",
                                     "Total number of reconciliation errors per controller",
                                     ["controller"], registry=registry),
            terminal_errors=Counter("controller_runtime_terminal_reconcile_errors",
                                    "Total number of terminal reconciliation errors per controller",
                                    ["controller"], registry=registry),
            panics=Counter("controller_runtime_reconcile_panics",
                           "Total number of reconciliation panics per controller",
                           ["controller"], registry=registry),
            timeouts=Counter("controller_runtime_reconcile_timeouts",
                             "Total number of reconciliation timeouts per controller",
                             ["controller"], registry=registry),
            reconcile_time=Histogram("controller_runtime_reconcile_time_seconds",
                                     "Length of time per reconciliation per controller",
                                     ["controller"], buckets=RECONCILE_BUCKETS, registry=registry),
            max_concurrent=Gauge("controller_runtime_max_concurrent_reconciles",
                                 "Maximum number of concurrent reconciles per controller",
                                 ["controller"], registry=registry),
            active_workers=Gauge("controller_runtime_active_workers",
                                 "Number of currently used workers per controller",
                                 ["controller"], registry=registry),
        )  # fmt: skip
        _controller[registry] = found
    return found


def leader_metrics(registry: CollectorRegistry) -> LeaderMetrics:
    found = _leader.get(registry)
    if found is None:
        found = LeaderMetrics(
            master_status=Gauge("leader_election_master_status",
                                "Gauge of if the reporting system is master of the relevant lease, 0 "
                                "indicates backup, 1 indicates master. 'name' is the string used to "
                                "identify the lease.", ["name"], registry=registry),
            slowpath=Counter("leader_election_slowpath",
                             "Total number of slow path exercised in renewing leader leases. 'name' is "
                             "the string used to identify the lease.", ["name"], registry=registry),
        )  # fmt: skip
        _leader[registry] = found
    return found


def event_metrics(registry: CollectorRegistry) -> EventMetrics:
    found = _events.get(registry)
    if found is None:
        found = EventMetrics(
            dropped=Counter("events_dropped", "Events dropped because the send queue was full",
                            registry=registry),
            sent=Counter("events_sent", "Events (or series updates) written to the API", registry=registry),
            failed=Counter("events_failed", "Events given up after all retries", registry=registry),
        )  # fmt: skip
        _events[registry] = found
    return found


def informer_metrics(registry: CollectorRegistry) -> InformerMetrics:
    found = _informer.get(registry)
    if found is None:
        found = InformerMetrics(
            relists=Counter("informer_lists", "Full LISTs done by a reflector", ["resource"],
                            registry=registry),
            watch_events=Counter("informer_watch_events", "Watch events received by a reflector",
                                 ["resource", "type"], registry=registry),
            objects=Gauge("informer_objects", "Objects in an informer's cache", ["resource"],
                          registry=registry),
        )  # fmt: skip
        _informer[registry] = found
    return found
