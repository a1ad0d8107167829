"""The local stack the tests, the demo and the benchmarks start, one module per job.

- ``processes``: child processes in their own process groups, HTTP helpers, waits that fail fast
- ``kube``: API paths of the autoscaler's objects, CRD install, watches
- ``cloudsim``: the VPSie simulator process and its admin endpoints
- ``autoscaler``: ``vpsie-autoscaler run`` as a process
- ``objects``: NodeGroup, workload and PDB manifests
- ``scenario``: :class:`~hack.stack.scenario.E2E`, one running stack with waits and cleanup
- ``chart``: install the Helm chart and run the autoscaler as its pod would

The control plane itself comes from ``hack/devcluster``. Tooling never imports ``tests``; the tests
import this library (``tests/e2e/harness.py``, ``tests/integration/chart.py``).
"""
