"""Resource descriptors: which URL serves a type, and whether it lives in a namespace.

Upstream analogue: ``schema.GroupVersionResource`` plus the RESTMapper's scope answer. We keep a
static table instead of discovery: the set of types the autoscaler touches is small and fixed, and a
static table costs no API calls at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

CORE_GROUP = ""


@dataclass(frozen=True, slots=True)
class Resource:
    """One API resource type, e.g. ``Resource("", "v1", "pods", "Pod", namespaced=True)``."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        """The ``apiVersion`` string objects of this type carry (``v1``, ``apps/v1``...)."""
        return self.version if self.group == CORE_GROUP else f"{self.group}/{self.version}"

    @property
    def group_resource(self) -> str:
        """``plural.group`` (``pods``, ``leases.coordination.k8s.io``), as RBAC and errors name it."""
        return self.plural if self.group == CORE_GROUP else f"{self.plural}.{self.group}"

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        """The request path for a collection (no ``name``) or one object.

        Namespaced collections without a namespace mean "across all namespaces" (list/watch only).
        """
        prefix = "/api/v1" if self.group == CORE_GROUP else f"/apis/{self.group}/{self.version}"
        if self.group == CORE_GROUP and self.version != "v1":
            prefix = f"/api/{self.version}"
        if self.namespaced and namespace:
            prefix += f"/namespaces/{quote(namespace, safe='')}"
        elif not self.namespaced and namespace:
            raise ValueError(f"{self.group_resource} is cluster-scoped; got namespace {namespace!r}")
        elif self.namespaced and not namespace and name is not None:
            raise ValueError(f"{self.group_resource} is namespaced; {name!r} needs a namespace")
        path = f"{prefix}/{self.plural}"
        if name is not None:
            if not name:
                raise ValueError(f"empty name for {self.group_resource}")
            path += f"/{quote(name, safe='')}"
            if subresource:
                path += f"/{subresource}"
        elif subresource:
            raise ValueError("a subresource needs an object name")
        return path

    def __str__(self) -> str:
        return self.group_resource


# The autoscaler's CRDs (see vpsie_autoscaler/api): cluster-scoped, like Nodes they manage.
AUTOSCALER_GROUP = "autoscaler.vpsie.com"
AUTOSCALER_VERSION = "v1alpha1"

NODES = Resource(CORE_GROUP, "v1", "nodes", "Node", namespaced=False)
PODS = Resource(CORE_GROUP, "v1", "pods", "Pod", namespaced=True)
NAMESPACES = Resource(CORE_GROUP, "v1", "namespaces", "Namespace", namespaced=False)
SECRETS = Resource(CORE_GROUP, "v1", "secrets", "Secret", namespaced=True)
CONFIGMAPS = Resource(CORE_GROUP, "v1", "configmaps", "ConfigMap", namespaced=True)
SERVICEACCOUNTS = Resource(CORE_GROUP, "v1", "serviceaccounts", "ServiceAccount", namespaced=True)
CORE_EVENTS = Resource(CORE_GROUP, "v1", "events", "Event", namespaced=True)
PVCS = Resource(CORE_GROUP, "v1", "persistentvolumeclaims", "PersistentVolumeClaim", namespaced=True)
PVS = Resource(CORE_GROUP, "v1", "persistentvolumes", "PersistentVolume", namespaced=False)
PDBS = Resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", namespaced=True)
EVENTS = Resource("events.k8s.io", "v1", "events", "Event", namespaced=True)
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease", namespaced=True)
DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment", namespaced=True)
DAEMONSETS = Resource("apps", "v1", "daemonsets", "DaemonSet", namespaced=True)
CRDS = Resource(
    "apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", namespaced=False
)
NODEGROUPS = Resource(AUTOSCALER_GROUP, AUTOSCALER_VERSION, "nodegroups", "NodeGroup", namespaced=False)
VPSIENODES = Resource(AUTOSCALER_GROUP, AUTOSCALER_VERSION, "vpsienodes", "VPSieNode", namespaced=False)
AUTOSCALER_SETTINGS = Resource(
    AUTOSCALER_GROUP, AUTOSCALER_VERSION, "autoscalersettings", "AutoscalerSettings", namespaced=False
)
