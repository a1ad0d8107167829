"""What a VPSieNode counts as — leaving, in flight — defined once.

Three places count VPSieNodes: the cluster state the planners see (``controllers/cluster_state.py``),
the NodeGroup status (``controllers/nodegroup/status.py``) and the lifecycle controllers. They used to
define "leaving" three times and disagreed on drain requests. The rule, for all of them:

- **leaving**: being deleted, ``Draining``/``Deleting``/``Failed``, or a drain has been requested
  (the requester already counted the removal: a drain request stops counting as capacity at once, so
  the next pass does not ask again — client-go's expectations, applied to counting);
- **in flight**: not leaving and ``Pending``/``Provisioning``/``Joining`` (capacity on the way, counted
  by scale-up before asking for more).

Pure functions over plain facts, so raw objects (the cluster state reads tolerant JSON) and parsed
models use the same rule.
"""

from __future__ import annotations

from vpsie_autoscaler.api.labels import DRAIN_REQUESTED_ANNOTATION
from vpsie_autoscaler.api.vpsienode import IN_FLIGHT_PHASES, LEAVING_PHASES, VPSieNode

DEFAULT_PHASE = "Pending"
"""A VPSieNode without a phase has just been created."""


def is_leaving(phase: str | None, *, deleting: bool, drain_requested: bool) -> bool:
    return deleting or drain_requested or (phase or DEFAULT_PHASE) in LEAVING_PHASES


def is_in_flight(phase: str | None, *, deleting: bool, drain_requested: bool) -> bool:
    leaving = is_leaving(phase, deleting=deleting, drain_requested=drain_requested)
    return not leaving and (phase or DEFAULT_PHASE) in IN_FLIGHT_PHASES


def leaving(vn: VPSieNode) -> bool:
    """:func:`is_leaving` of a parsed VPSieNode."""
    return is_leaving(
        vn.status.phase,
        deleting=vn.metadata.deletion_timestamp is not None,
        drain_requested=DRAIN_REQUESTED_ANNOTATION in vn.metadata.annotations,
    )


def in_flight(vn: VPSieNode) -> bool:
    """:func:`is_in_flight` of a parsed VPSieNode."""
    return is_in_flight(
        vn.status.phase,
        deleting=vn.metadata.deletion_timestamp is not None,
        drain_requested=DRAIN_REQUESTED_ANNOTATION in vn.metadata.annotations,
    )
