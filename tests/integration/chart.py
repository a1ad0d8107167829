"""Install the Helm chart into a test cluster (shared by integration and end-to-end tests).

The implementation is ``hack/stack/chart.py`` (the image check uses it too); this module re-exports
what the tests use.
"""

from __future__ import annotations

from hack.stack.chart import (
    CHART,
    ControllerProcess,
    InstalledChart,
    helm,
    install_chart,
    start_controller,
    uninstall_chart,
)

__all__ = [
    "CHART",
    "ControllerProcess",
    "InstalledChart",
    "helm",
    "install_chart",
    "start_controller",
    "uninstall_chart",
]
