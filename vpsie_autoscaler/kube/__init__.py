"""The Kubernetes API adapter: the only package that imports kubernetes_asyncio.

Raw JSON dicts in and out, an explicit timeout on every call, typed errors (:mod:`.errors`),
static resource descriptors (:mod:`.resources`).
"""

from vpsie_autoscaler.kube._lazy_import import install_lazy_kubernetes_asyncio

# Before anything imports kubernetes_asyncio: load its generated modules only on use (see there).
install_lazy_kubernetes_asyncio()

from vpsie_autoscaler.kube import errors  # noqa: E402 - must follow the lazy-import hook
from vpsie_autoscaler.kube.client import KubeClient  # noqa: E402
from vpsie_autoscaler.kube.resources import Resource  # noqa: E402

__all__ = ["KubeClient", "Resource", "errors"]
