"""Install the generated CRDs into a test cluster (shared by integration and end-to-end tests).

The implementation is ``hack/stack/kube.py`` (the demo and the benchmarks use it too): the CRDs are
exactly what ``vpsie-autoscaler crds`` prints, installing is idempotent, so any test module may call
:func:`install_crds`; they stay installed for the rest of the session (the cluster is per session).
"""

from __future__ import annotations

from hack.stack.kube import CRD_API, install_crds

__all__ = ["CRD_API", "install_crds"]
