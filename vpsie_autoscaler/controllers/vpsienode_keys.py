"""Keys and reasons the lifecycle controllers write (in addition to ``api/labels.py``)."""

from __future__ import annotations

from typing import Final

from vpsie_autoscaler.api.labels import GROUP

ERROR_CLASS_ANNOTATION: Final = f"{GROUP}/error-class"
"""On Failed VPSieNodes: the VPSie ``ErrorClass`` of the provisioning failure (``quota``,
``plan_unavailable``, ``transient``, ``auth``, ``invalid``, ``not_found``). The NodeGroup controller
derives the group's back-off from it; Failed records without it (a Node lost after it was Ready) do
not count as provisioning failures."""

FAILED_REASON_ANNOTATION: Final = f"{GROUP}/failed-reason"
"""On Failed VPSieNodes: one word saying why (``CreateFailed``, ``ProvisionTimeout``, ...)."""

# Event reasons on VPSieNodes (and Nodes for the drain).
REASON_LAUNCHED: Final = "Launched"
REASON_ADOPTED: Final = "Adopted"
REASON_REGISTERED: Final = "Registered"
REASON_READY: Final = "Ready"
REASON_CREATE_FAILED: Final = "CreateFailed"
REASON_PROVISION_TIMEOUT: Final = "ProvisionTimeout"
REASON_INSTANCE_FAILED: Final = "InstanceFailed"
REASON_INSTANCE_NOT_FOUND: Final = "InstanceNotFound"
REASON_NODE_LOST: Final = "NodeLost"
REASON_NODE_CLAIMED: Final = "NodeClaimedByAnother"
REASON_DRAINING: Final = "Draining"
REASON_DRAINED: Final = "Drained"
REASON_DRAIN_FAILED: Final = "DrainFailed"
REASON_EVICTION_BLOCKED: Final = "EvictionBlocked"
REASON_INSTANCE_DELETED: Final = "InstanceDeleted"
REASON_DELETE_FAILED: Final = "DeleteFailed"
REASON_INVALID: Final = "InvalidSpec"
REASON_LAUNCHING: Final = "Launching"
REASON_TERMINATION_BLOCKED: Final = "TerminationBlocked"
