"""The phase table: which handler drives a VPSieNode in each phase, and where each phase may lead.

The lifecycle is Karpenter's NodeClaim lifecycle with VPSie's facts (docs/lifecycle.md)::

    Pending ──launch record, create──▶ Provisioning ──running──▶ Joining ──Node Ready──▶ Ready
       │                                    │                        │                    │
       └── refused / InstanceFailed / not Ready within maxProvisionTime ──▶ Failed ◀── NodeLost
    drain requested (any phase but Failed) ──▶ Draining ──drained──▶ (VPSieNode deleted)
                                                  └── past maxGracefulTermination ──▶ Ready
                                                       (Provisioning while the instance is unbound)
    deletionTimestamp (any phase) ──▶ Deleting: drain, delete the instance, delete the Node, finalizer

:data:`PHASES` is that diagram as data. Each row names the handler (one module, one job) and the
phases a record may move to *from* that phase; :meth:`~.context.Lifecycle.enter` refuses any other
move, so the table is enforced, not just documented. :func:`route` is the one pure rule that picks the
row for a record: a deletion or a drain request overrides the phase, the phase decides otherwise.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from vpsie_autoscaler.api.labels import DRAIN_REQUESTED_ANNOTATION
from vpsie_autoscaler.api.vpsienode import Phase, VPSieNode, VPSieNodeStatus
from vpsie_autoscaler.controllers.vpsienode import draining, failure, launch, registration, termination
from vpsie_autoscaler.controllers.vpsienode.context import Lifecycle, Raw, Transitions
from vpsie_autoscaler.runtime.controller import Result

Handler = Callable[[Lifecycle, Raw, VPSieNode, VPSieNodeStatus], Awaitable[Result]]
"""``(lifecycle, raw object, parsed record, status copy to change) → Result``: one pass, no waiting."""


@dataclass(frozen=True)
class PhaseRule:
    handler: Handler
    to: frozenset[Phase]
    """The phases a record in this phase may enter next (staying is always allowed)."""
    why: str


def _to(*phases: Phase) -> frozenset[Phase]:
    return frozenset(phases)


PHASES: Final[Mapping[Phase, PhaseRule]] = MappingProxyType(
    {
        "Pending": PhaseRule(
            launch.launch,
            # Joining and Failed: a Pending record that already has a launch record is provisioned
            # like a Provisioning one (route), and may join or time out from there.
            _to("Provisioning", "Joining", "Failed", "Draining", "Deleting"),
            "write the launch record, then ask VPSie once (or bind the adopted instance)",
        ),
        "Provisioning": PhaseRule(
            registration.provision,
            _to("Joining", "Failed", "Draining", "Deleting"),
            "bind the instance from the shared listing and poll it until it runs",
        ),
        "Joining": PhaseRule(
            registration.provision,
            _to("Ready", "Failed", "Draining", "Deleting"),
            "label and taint the Node until it is Ready",
        ),
        "Ready": PhaseRule(
            registration.ready,
            _to("Failed", "Draining", "Deleting"),
            "keep the Node's labels and taints; a Node lost for node_lost_grace fails the record",
        ),
        "Draining": PhaseRule(
            draining.drain,
            _to("Ready", "Provisioning", "Deleting"),
            "taint, evict, then delete the record; past maxGracefulTermination give up (back to Ready, "
            "or Provisioning while the instance is unbound)",
        ),
        "Failed": PhaseRule(
            failure.failed,
            _to("Deleting"),
            "keep the bound instance deleted (drain a late Node first); wait for the TTL",
        ),
        "Deleting": PhaseRule(
            termination.finalize,
            _to(),
            "drain, delete the bound instance and the Node, then drop the finalizer",
        ),
    }
)

TRANSITIONS: Final[Transitions] = MappingProxyType({phase: rule.to for phase, rule in PHASES.items()})


def route(vn: VPSieNode) -> Phase:
    """The row whose handler drives ``vn`` now.

    A deletion overrides everything (the finalizer must run); a drain request overrides every phase
    but Failed (a Failed record has no capacity to drain; its instance goes by its own handler).
    A record without a phase is Pending; one whose launch record exists is provisioned even if its
    phase still says Pending, and so is a non-deleted record whose status says Deleting (which only
    a hand-written status can produce: read as in flight)."""
    if vn.metadata.deletion_timestamp is not None:
        return "Deleting"
    phase: Phase = vn.status.phase or "Pending"
    if phase == "Failed":
        return "Failed"
    if DRAIN_REQUESTED_ANNOTATION in vn.metadata.annotations or phase == "Draining":
        return "Draining"
    if phase == "Ready":
        return "Ready"
    if phase == "Pending" and vn.status.launch is None:
        return "Pending"
    if phase == "Joining":
        return "Joining"
    return "Provisioning"
