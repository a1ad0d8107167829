"""Where settings changed at run time reach the running controllers (``AutoscalerSettings``).

:class:`LiveSettings` is the one place that knows which controller reads which setting: dry-run is the
shared :class:`~vpsie_autoscaler.controllers.writes.Writes` seam (every controller's writes, the
VPSieNode lifecycle's included) and the ``dry_run`` gauge; the expander chain and the cluster-wide
limits are scale-up's options; the scan interval paces scale-up's re-planning, scale-down's and
consolidation's passes and the NodeGroup controller's cloud resync; the scale-down defaults reach the
NodeGroups of every snapshot (for the fields a NodeGroup leaves out). Each controller reads its options
at the start of a pass, so a change takes effect at the next decision, never in the middle of one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from vpsie_autoscaler.controllers.cluster_state import SnapshotBuilder
from vpsie_autoscaler.controllers.consolidation.controller import ConsolidationController
from vpsie_autoscaler.controllers.deps import Deps
from vpsie_autoscaler.controllers.nodegroup.reconciler import NodeGroupReconciler
from vpsie_autoscaler.controllers.scaledown.controller import ScaleDownController
from vpsie_autoscaler.controllers.scaleup.controller import ScaleUpController
from vpsie_autoscaler.controllers.settings.effective import Effective
from vpsie_autoscaler.scaling.expanders import ExpanderChain


@dataclass
class LiveSettings:
    deps: Deps
    scaleup: ScaleUpController | None = None
    scaledown: ScaleDownController | None = None
    consolidation: ConsolidationController | None = None
    nodegroup: NodeGroupReconciler | None = None
    builder: SnapshotBuilder | None = None

    def apply(self, settings: Effective) -> None:
        self.deps.writes.set_dry_run(settings.dry_run)
        self.deps.metrics.dry_run.set(1 if settings.dry_run else 0)
        if self.scaleup is not None:
            self.scaleup.options = dataclasses.replace(
                self.scaleup.options,
                expander=settings.expander,
                limits=settings.limits,
                scan_interval=settings.scan_interval,
                headroom=settings.headroom,
            )
            self.scaleup.expanders = ExpanderChain.parse(settings.expander)
        if self.builder is not None:  # the planners' NodeGroups (scale-up, scale-down, consolidation)
            self.builder.scale_down_defaults = dict(settings.scale_down_defaults)
        if self.scaledown is not None:
            self.scaledown.options = dataclasses.replace(
                self.scaledown.options,
                scan_interval=settings.scan_interval,
                settings=dataclasses.replace(
                    self.scaledown.options.settings, cluster_headroom=settings.headroom
                ),
            )
        if self.consolidation is not None:
            self.consolidation.options = dataclasses.replace(
                self.consolidation.options, scan_interval=settings.scan_interval
            )
        if self.nodegroup is not None:
            self.nodegroup.options = dataclasses.replace(
                self.nodegroup.options, resync_interval=settings.scan_interval
            )
