"""The Kubernetes API adapter: the only package that imports kubernetes_asyncio.

Raw JSON dicts in and out, an explicit timeout on every call, typed errors (:mod:`.errors`),
static resource descriptors (:mod:`.resources`).
"""

from vpsie_autoscaler.kube import errors
from vpsie_autoscaler.kube.client import KubeClient
from vpsie_autoscaler.kube.resources import Resource

__all__ = ["KubeClient", "Resource", "errors"]
