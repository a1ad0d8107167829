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
        """The dependencies of every controller of ``manager`` (``--dry-run`` from ``settings``)."""
        metrics = autoscaler_metrics(manager.registry)
        metrics.dry_run.set(1 if settings.dry_run else 0)
        return cls.build(
            client=manager.client,
            recorder=manager.recorder,
            clock=manager.clock,
            metrics=metrics,
            dry_run=settings.dry_run,
        )

    @classmethod
    def build(
        cls,
        *,
        client: KubeClient,
        recorder: EventRecorder,
        clock: Clock,
        metrics: AutoscalerMetrics,
        dry_run: bool = False,
    ) -> Deps:
        """From parts (tests, benchmarks): the dry-run seam and the decision log are made here."""
        return cls(
            client=client,
            recorder=recorder,
            clock=clock,
            metrics=metrics,
            writes=Writes(client, dry_run=dry_run, recorder=recorder),
            decisions=DecisionLog(),
        )


class UsesDeps:
    """Base of the controllers: ``self.client``, ``self.clock``, … from one :class:`Deps`."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.client = deps.client
        self.recorder = deps.recorder
        self.clock = deps.clock
        self.metrics = deps.metrics
        self.writes = deps.writes
        self.decisions = deps.decisions
