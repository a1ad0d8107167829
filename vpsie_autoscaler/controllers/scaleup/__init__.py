"""Scale-up: unschedulable pods, batched, planned, turned into new VPSieNodes (see :mod:`.controller`)."""

from vpsie_autoscaler.controllers.scaleup.batcher import IDLE_SECONDS, MAX_SECONDS, Batcher
from vpsie_autoscaler.controllers.scaleup.controller import ScaleUpController, ScaleUpOptions

__all__ = ["IDLE_SECONDS", "MAX_SECONDS", "Batcher", "ScaleUpController", "ScaleUpOptions"]
