"""vpsie-autoscaler: a Kubernetes node autoscaler for the VPSie cloud.

Layout mirrors the architecture (see docs/architecture.md):

- ``runtime/``     generic mini controller-runtime (queue, reflector, informer, controller, ...)
- ``kube/``        the only adapter to the Kubernetes API (kubernetes_asyncio, raw JSON)
- ``vpsie/``       typed VPSie API client, node providers and the VPSie simulator
- ``api/``         NodeGroup and VPSieNode CRD models (the CRDs are generated from them)
- ``scaling/``     pure scale-up and scale-down decisions over snapshots
- ``controllers/`` reconcilers that wire the above together
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vpsie-autoscaler")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"
