"""Where the autoscaler's controllers are registered with the manager.

``vpsie-autoscaler run`` builds the :class:`~vpsie_autoscaler.runtime.manager.Manager` (client,
informers, event recorder, leader election, HTTP servers) and calls :func:`setup` once, before the
manager starts. Controllers are created here with ``manager.informers.informer_for(...)`` as their
sources and added with ``manager.add_controller(...)``; periodic work that is not driven by an
informer is added with ``manager.add_runnable(...)``.
"""

from __future__ import annotations

from vpsie_autoscaler.config import Settings
from vpsie_autoscaler.runtime.manager import Manager


def setup(manager: Manager, settings: Settings) -> None:
    """Register every controller with ``manager``. No controllers are registered yet."""
    del manager, settings
