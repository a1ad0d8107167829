"""What every controller is built from, as one typed object.

The controllers share one API client, Event recorder, clock, metrics set, dry-run seam
(:class:`~vpsie_autoscaler.controllers.writes.Writes`) and decision log
(:class:`~vpsie_autoscaler.controllers.decisions.DecisionLog`). :func:`Deps.of` builds them once per
manager, so the lifecycle and the autoscaling controllers see the same ones (scale-up's decisions
reach the NodeGroup controller; one ``dry_run`` gauge), and a misspelt dependency is a type error,
not a runtime ``TypeError`` from ``**kwargs``.
"""

from __future__ import annotations

from dataclasses import dataclass

from vpsie_autoscaler.config import Settings
from vpsie_autoscaler.controllers.decisions import DecisionLog
from vpsie_autoscaler.controllers.metrics import AutoscalerMetrics, autoscaler_metrics
from vpsie_autoscaler.controllers.writes import Writes
from vpsie_autoscaler.kube import KubeClient
from vpsie_autoscaler.runtime.clock import Clock
from vpsie_autoscaler.runtime.events import EventRecorder
from vpsie_autoscaler.runtime.manager import Manager


@dataclass(frozen=True)
class Deps:
    client: KubeClient
    recorder: EventRecorder
    clock: Clock
    metrics: AutoscalerMetrics
    writes: Writes
    decisions: DecisionLog

    @classmethod
    def of(cls, manager: Manager, settings: Settings) -> Deps:
        metrics = autoscaler_metrics(manager.registry)
        metrics.dry_run.set(1 if settings.dry_run else 0)
        return cls(
            client=manager.client,
            recorder=manager.recorder,
            clock=manager.clock,
            metrics=metrics,
            writes=Writes(manager.client, dry_run=settings.dry_run, recorder=manager.recorder),
            decisions=DecisionLog(),
        )
