"""The one dry-run seam: every write a controller makes goes through :class:`Writes`.

``--dry-run`` promises "compute and report every decision, change nothing". Controllers therefore
decide exactly as they would for real and hand each write to this facade; in dry-run it makes none
and reports the intended write instead — a structured log line ``dry_run.skipped`` and, where a user
should see it, a ``DryRun`` Event whose note says ``dry-run: would …``. Reports are not changes and
go through in both modes: Events, and the status subresource (``kubectl get ng`` shows the dry-run
decisions).

Controllers ask :attr:`Writes.dry_run` only where the *report* differs (a note prefixed with
:data:`DRY_RUN_PREFIX` by :meth:`Writes.note`, a dry-run decision announced once rather than every
pass), never to guard a write.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, TypeVar

import structlog

from vpsie_autoscaler.controllers import objects
from vpsie_autoscaler.kube import KubeClient
from vpsie_autoscaler.kube.resources import Resource
from vpsie_autoscaler.runtime.events import NORMAL, EventRecorder

log = structlog.get_logger("vpsie_autoscaler.controllers.writes")

DRY_RUN_PREFIX: Final = "dry-run: "
"""Every dry-run note and decision starts with this (users and alerts grep for it)."""
REASON_DRY_RUN: Final = "DryRun"
"""Event reason of a write that dry-run did not make."""
ACTION_DRY_RUN: Final = "DryRun"

T = TypeVar("T")


class Writes:
    """Writes to Kubernetes (and, through :meth:`perform`, to VPSie) that dry-run turns into reports."""

    def __init__(self, client: KubeClient, *, dry_run: bool = False, recorder: EventRecorder | None = None):
        """``recorder``: where :meth:`would` and :meth:`report` put their Events (None: logs only)."""
        self.client = client
        self.recorder = recorder
        self._dry_run = dry_run

    @property
    def dry_run(self) -> bool:
        return self._dry_run

    def set_dry_run(self, value: bool) -> None:
        """Switch dry-run while running (``AutoscalerSettings.spec.dryRun``): the next write follows."""
        self._dry_run = value

    def note(self, text: str) -> str:
        """``text`` as reported in this mode (prefixed :data:`DRY_RUN_PREFIX` in dry-run)."""
        return DRY_RUN_PREFIX + text if self._dry_run else text

    def report(
        self,
        obj: Mapping[str, Any],
        type_: str,
        reason: str,
        note: str,
        action: str,
        *,
        related: Mapping[str, Any] | None = None,
    ) -> None:
        """An Event about a decision, its note as reported in this mode (:meth:`note`)."""
        if self.recorder is not None:
            self.recorder.event(obj, type_, reason, self.note(note), action, related=related)

    def would(self, what: str, *, obj: Mapping[str, Any] | None = None, action: str = ACTION_DRY_RUN) -> bool:
        """In dry-run: report that ``what`` would be done (log; a ``DryRun`` Event on ``obj`` when
        given) and return True, so the caller skips it. Otherwise False."""
        if not self._dry_run:
            return False
        name = (obj.get("metadata") or {}).get("name") if obj is not None else None
        log.info("dry_run.skipped", action=what, object=name)
        if obj is not None and self.recorder is not None:
            self.recorder.event(obj, NORMAL, REASON_DRY_RUN, f"{DRY_RUN_PREFIX}would {what}", action)
        return True

    async def perform(self, what: str, write: Callable[[], Awaitable[T]]) -> T | None:
        """Any other side effect (a VPSie call): awaited for real, reported in dry-run (None)."""
        if self.would(what):
            return None
        return await write()

    # -- Kubernetes ---------------------------------------------------------------------------------

    async def create(
        self, res: Resource, body: dict[str, Any], namespace: str | None = None
    ) -> dict[str, Any] | None:
        name = (body.get("metadata") or {}).get("name", "")
        if self.would(f"create {res.kind} {name}"):
            return None
        return await self.client.create(res, body, namespace)

    async def merge_patch(
        self, res: Resource, name: str, patch: Mapping[str, Any], namespace: str | None = None
    ) -> dict[str, Any] | None:
        if self.would(f"patch {res.kind} {name}: {dict(patch)}"):
            return None
        return await self.client.merge_patch(res, name, dict(patch), namespace)

    async def delete(self, res: Resource, name: str, namespace: str | None = None) -> bool:
        """True when the delete was sent, False in dry-run."""
        if self.would(f"delete {res.kind} {name}"):
            return False
        await self.client.delete(res, name, namespace)
        return True

    async def add_finalizer(self, res: Resource, obj: Mapping[str, Any], finalizer: str) -> bool:
        """:func:`~vpsie_autoscaler.controllers.objects.add_finalizer`; False in dry-run."""
        if finalizer in (objects.meta(obj).get("finalizers") or []):
            return False
        if self.would(f"add finalizer {finalizer} to {res.kind} {objects.meta(obj).get('name')}"):
            return False
        return await objects.add_finalizer(self.client, res, obj, finalizer)

    async def remove_finalizer(self, res: Resource, obj: Mapping[str, Any], finalizer: str) -> bool:
        """:func:`~vpsie_autoscaler.controllers.objects.remove_finalizer`; False in dry-run."""
        if finalizer not in (objects.meta(obj).get("finalizers") or []):
            return False
        if self.would(f"remove finalizer {finalizer} from {res.kind} {objects.meta(obj).get('name')}"):
            return False
        return await objects.remove_finalizer(self.client, res, obj, finalizer)

    async def patch_status(
        self, res: Resource, obj: Mapping[str, Any], status: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Status is a report: written in dry-run too (it says what would be done)."""
        return await objects.patch_status(self.client, res, obj, status)
