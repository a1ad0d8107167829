"""Where the autoscaler's controllers are registered with the manager.

``vpsie-autoscaler run`` builds the :class:`~vpsie_autoscaler.runtime.manager.Manager` (client,
informers, event recorder, leader election, HTTP servers) and calls :func:`setup` once, before the
manager starts. Controllers are created here with ``manager.informers.informer_for(...)`` as their
sources and added with ``manager.add_controller(...)``; periodic work that is not driven by an
informer is added with ``manager.add_runnable(...)``. Each family registers in its own module.
"""

from __future__ import annotations

from vpsie_autoscaler.config import Settings
from vpsie_autoscaler.controllers.autoscaling import setup_autoscaling
from vpsie_autoscaler.controllers.deps import Deps
from vpsie_autoscaler.controllers.lifecycle import setup_lifecycle
from vpsie_autoscaler.controllers.live import LiveSettings
from vpsie_autoscaler.controllers.settings.controller import setup_settings
from vpsie_autoscaler.runtime.manager import Manager


def setup(manager: Manager, settings: Settings) -> None:
    """Register every controller with ``manager``.

    The lifecycle family builds the one VPSie client; scale-up reads plan capacity through it (None
    when no credentials are configured: groups must then state their capacity in the template).
    Both families share one :class:`~vpsie_autoscaler.controllers.deps.Deps`: scale-up and
    scale-down hand their decisions to the NodeGroup controller through its decision log (it alone
    writes NodeGroup status), and every write goes through its one dry-run seam. The
    ``AutoscalerSettings`` object switches them over while running (:mod:`.live`); the flags are its
    defaults.
    """
    deps = Deps.of(manager, settings)
    lifecycle = setup_lifecycle(manager, settings, deps=deps)
    auto = setup_autoscaling(manager, settings, catalogue_client=lifecycle.providers.client, deps=deps)
    lifecycle.nodegroup.plan_price = auto.catalogue.hourly_price  # nodegroup_hourly_cost from the plan
    live = LiveSettings(
        deps, auto.scaleup, auto.scaledown, auto.consolidation, lifecycle.nodegroup, auto.builder
    )
    setup_settings(manager, settings, deps=deps, apply=live.apply)
