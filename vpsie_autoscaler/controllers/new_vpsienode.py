"""Building new VPSieNodes: the one place that turns "the group needs another node" into an object.

Both the scale-up controller (pending pods) and the NodeGroup controller (``minNodes``) create
capacity, and both must create exactly the same thing: a VPSieNode whose hostname is chosen *before*
any cloud call, labelled with its group, and carrying a frozen copy of the group's source and node
template. That copy is what makes a crash harmless (Karpenter's NodeClaim pattern): the lifecycle
controller can always find the instance again by hostname, create it if it is missing, or delete it,
without reading a NodeGroup that may have changed or gone in the meantime.
"""

from __future__ import annotations

import random
from typing import Any

from vpsie_autoscaler.api.labels import MANAGED_BY_LABEL, MANAGED_BY_VALUE, NODEGROUP_LABEL
from vpsie_autoscaler.api.nodegroup import NodeGroup
from vpsie_autoscaler.api.types import ObjectMeta
from vpsie_autoscaler.api.vpsienode import (
    VPSieNode,
    VPSieNodeSpec,
    hostname_for,
    random_suffix,
)


def new_vpsienode(group: NodeGroup, *, rng: random.Random | None = None) -> VPSieNode:
    """A Pending VPSieNode for ``group`` with a fresh hostname (also its name).

    The name collision chance is 36**-5 per pair within one group; the API server refuses a
    duplicate name with 409 AlreadyExists, and callers simply try again with a new suffix.
    """
    hostname = hostname_for(group.metadata.name, random_suffix(rng))
    template = group.spec.template
    return VPSieNode(
        metadata=ObjectMeta(
            name=hostname,
            labels={NODEGROUP_LABEL: group.metadata.name, MANAGED_BY_LABEL: MANAGED_BY_VALUE},
        ),
        spec=VPSieNodeSpec(
            node_group=group.metadata.name,
            hostname=hostname,
            managed=group.spec.managed,
            vm=group.spec.vm,
            labels={**template.labels, NODEGROUP_LABEL: group.metadata.name},
            taints=list(template.taints),
            instance_type=template.instance_type,
        ),
    )


def creation_body(node: VPSieNode) -> dict[str, Any]:
    """The JSON body to POST: metadata and spec only (status goes through the subresource)."""
    body = node.to_k8s()
    body.pop("status", None)
    return body
