"""Scale-down: the periodic planner pass, timers, drain requests, stale taints (see :mod:`.controller`)."""

from vpsie_autoscaler.controllers.scaledown.controller import ScaleDownController, ScaleDownOptions

__all__ = ["ScaleDownController", "ScaleDownOptions"]
