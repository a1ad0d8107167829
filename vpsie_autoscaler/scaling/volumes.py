"""Local PersistentVolumes: a pod whose claim is bound to a volume that lives on its node cannot move.

A PersistentVolume is *on one node* when it has ``spec.local`` (a local volume: a disk of that node),
or when its required node affinity admits one ``kubernetes.io/hostname`` only (hostPath and CSI
drivers of node-local disks pin volumes this way). The scheduler places such a pod on that node or
nowhere (``VolumeBinding`` filter), so removing the node loses the data and strands the pod; the
Go autoscaler counted these pods as local storage, cluster-autoscaler finds them unmovable in its
volume-aware simulation. Scale-down therefore keeps the node
(:data:`~vpsie_autoscaler.scaling.reasons.LOCAL_PERSISTENT_VOLUME`), and ``safe-to-evict`` does not
lift it: the pod could not run anywhere else.

A claim whose PersistentVolumeClaim or PersistentVolume the cache does not hold is not known to be
safe, so it keeps the node too (the Go system's "a lookup error counts as unsafe"). A claim not bound
yet has no volume to lose.

Pure: the controllers hand in the claims and volumes of their informer caches as raw JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from vpsie_autoscaler.api.labels import HOSTNAME_LABEL

Obj = Mapping[str, Any]
IN: Final = "In"


def pinned_hostnames(pv: Obj) -> frozenset[str] | None:
    """The hostnames the volume's required node affinity admits, or None when it does not restrict the
    hostname in every term (then it is not tied to nodes by name)."""
    required = (((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required") or {}).get(
        "nodeSelectorTerms"
    ) or ()
    names: set[str] = set()
    for term in required:
        term_names: set[str] | None = None
        for expr in (term or {}).get("matchExpressions") or ():
            if expr.get("key") == HOSTNAME_LABEL and expr.get("operator") == IN:
                values = {str(v) for v in expr.get("values") or ()}
                term_names = values if term_names is None else term_names & values
        if term_names is None:
            return None  # this term admits nodes whatever their name
        names |= term_names
    return frozenset(names) if required else None


def on_one_node(pv: Obj) -> bool:
    """``spec.local``, or a node affinity that admits exactly one hostname."""
    if (pv.get("spec") or {}).get("local") is not None:
        return True
    names = pinned_hostnames(pv)
    return names is not None and len(names) == 1


def local_claims(
    namespace: str, claims: tuple[str, ...], pvcs: Mapping[str, Obj], pvs: Mapping[str, Obj]
) -> tuple[str, ...]:
    """The pod's claims that tie it to its node, each described (``data: PersistentVolume pv-1 is
    local``); ``pvcs`` are keyed ``namespace/name``, ``pvs`` by name."""
    out: list[str] = []
    for claim in claims:
        pvc = pvcs.get(f"{namespace}/{claim}")
        if pvc is None:
            out.append(f"{claim}: PersistentVolumeClaim not found (not known to be movable)")
            continue
        volume = (pvc.get("spec") or {}).get("volumeName")
        if not volume:
            continue  # not bound: no data on any node yet
        pv = pvs.get(str(volume))
        if pv is None:
            out.append(f"{claim}: PersistentVolume {volume} not found (not known to be movable)")
        elif (pv.get("spec") or {}).get("local") is not None:
            out.append(f"{claim}: PersistentVolume {volume} is a local volume of this node")
        elif on_one_node(pv):
            out.append(f"{claim}: PersistentVolume {volume} is bound to this node by its node affinity")
    return tuple(out)
