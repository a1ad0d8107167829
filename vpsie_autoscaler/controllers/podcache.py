"""Trim pods before they enter the informer cache: the autoscaler's largest cache by far.

A Pod as the API server sends it is mostly what a kubelet needs (environment, probes, mounts,
container statuses, the projected service-account volume): about 7 KB of Python objects each, so a
cluster with 30 000 pods costs over 200 MiB before anything else (docs/benchmarks.md, "Informers").
The decisions read only identity, ownership, placement constraints, requests, volumes that hold local
data, and phase/conditions. Like controller-runtime's ``cache.Options.DefaultTransform`` (and
cluster-autoscaler's trimmed pod lister), we drop what nothing reads.

The list below is a *drop* list, not a keep list, on purpose: a field a future predicate starts to read
is kept by default. A unit test proves the scheduling snapshot of a pod is the same before and after.
"""

from __future__ import annotations

from typing import Any, Final

CONTAINER_FIELDS_DROPPED: Final = frozenset(
    {
        "command", "args", "env", "envFrom", "workingDir", "volumeMounts", "volumeDevices",
        "livenessProbe", "readinessProbe", "startupProbe", "lifecycle", "securityContext",
        "terminationMessagePath", "terminationMessagePolicy", "imagePullPolicy", "stdin", "stdinOnce",
        "tty", "resizePolicy",
    }
)  # fmt: skip
"""Everything a container carries for the kubelet; requests, ports and restartPolicy stay."""

SPEC_FIELDS_DROPPED: Final = frozenset(
    {"dnsConfig", "hostAliases", "imagePullSecrets", "securityContext", "ephemeralContainers"}
)
STATUS_FIELDS_DROPPED: Final = frozenset(
    {
        "containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses", "podIPs",
        "hostIPs", "resourceClaimStatuses", "message",
    }
)  # fmt: skip
VOLUME_SOURCES_WITHOUT_LOCAL_DATA: Final = frozenset(
    {"configMap", "secret", "projected", "downwardAPI", "serviceAccountToken"}
)
"""Volumes rebuilt from the API on any node: never a reason to keep a node, so not cached."""


def trim_pod(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``obj`` without the fields no scaling decision reads (the input is not modified)."""
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    trimmed_spec = {k: v for k, v in spec.items() if k not in SPEC_FIELDS_DROPPED}
    for key in ("containers", "initContainers"):
        if key in spec:
            trimmed_spec[key] = [_trim_container(c) for c in spec[key] or ()]
    if "volumes" in spec:
        trimmed_spec["volumes"] = [v for v in spec["volumes"] or () if not _rebuildable(v)]
    out = dict(obj)
    out["spec"] = trimmed_spec
    out["status"] = {k: v for k, v in status.items() if k not in STATUS_FIELDS_DROPPED}
    return out


def _trim_container(container: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in container.items() if k not in CONTAINER_FIELDS_DROPPED}


def _rebuildable(volume: dict[str, Any]) -> bool:
    sources = set(volume) - {"name"}
    return bool(sources) and sources <= VOLUME_SOURCES_WITHOUT_LOCAL_DATA
