"""Consolidation: fewer or cheaper nodes through the existing mechanisms (see :mod:`.controller`)."""

from vpsie_autoscaler.controllers.consolidation.controller import (
    ConsolidationController,
    ConsolidationOptions,
)

__all__ = ["ConsolidationController", "ConsolidationOptions"]
