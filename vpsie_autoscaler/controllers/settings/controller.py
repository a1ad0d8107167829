"""The ``AutoscalerSettings`` controller: the object named ``default`` applied on every change.

Each reconcile reads the object from the cache, computes the settings in effect
(:func:`~.effective.effective`: the object's fields over the flags), hands them to ``apply`` (the
wiring in :mod:`vpsie_autoscaler.controllers.live` switches the running controllers over: the next
scale-up plan uses the new expander chain and limits, the next write follows dry-run, the next pass
waits the new scan interval) and reports in the object's ``Applied`` condition.

An object the model cannot read (stored before a rule existed, or edited around the schema) is not
applied: the settings in effect stay as they were, never half-applied and never back to the flags by
accident (a bad edit must not turn dry-run off), and ``Applied=False`` with reason ``Invalid`` says
why, with a Warning Event. Deleting the object returns every setting to its flag.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Literal

import structlog
from pydantic import ValidationError

from vpsie_autoscaler.api.settings import (
    CONDITION_APPLIED,
    SINGLETON_NAME,
    AutoscalerSettings,
    AutoscalerSettingsStatus,
)
from vpsie_autoscaler.api.types import MESSAGE_MAX_LENGTH, set_condition
from vpsie_autoscaler.config import Settings
from vpsie_autoscaler.controllers.deps import Deps, UsesDeps
from vpsie_autoscaler.controllers.settings.effective import Effective, effective, from_flags
from vpsie_autoscaler.kube import errors
from vpsie_autoscaler.kube.resources import AUTOSCALER_SETTINGS
from vpsie_autoscaler.runtime.controller import Request, Result
from vpsie_autoscaler.runtime.informer import SharedInformer
from vpsie_autoscaler.runtime.manager import Manager

log = structlog.get_logger("vpsie_autoscaler.controllers.settings")

REASON_APPLIED: Final = "Applied"
REASON_INVALID: Final = "Invalid"
EVENT_APPLIED: Final = "SettingsApplied"
EVENT_INVALID: Final = "InvalidSettings"
ACTION_APPLY: Final = "Apply"


def _why(exc: ValidationError) -> str:
    """Field paths and messages only: never the input."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {str(e['msg']).removeprefix('Value error, ')}"
        for e in exc.errors()
    )


class SettingsReconciler(UsesDeps):
    """Applies ``default`` (see the module docstring). ``current`` is what the controllers run with."""

    def __init__(
        self,
        deps: Deps,
        *,
        informer: SharedInformer,
        flags: Settings,
        apply: Callable[[Effective], None],
    ) -> None:
        super().__init__(deps)
        self.informer = informer
        self.flags = flags
        self._apply = apply
        self.current = from_flags(flags)
        self._unreported = False  # applied from the cache, not yet said in an Event

    def _switch(self, to: Effective) -> bool:
        if to == self.current:
            return False
        self._apply(to)
        log.info("settings.applied", settings=to.describe())
        self.current = to
        self._unreported = True
        return True

    def sync(self) -> tuple[dict[str, Any] | None, AutoscalerSettings | str | None, bool]:
        """Apply what the cache holds now (no API call): the object, its parse (or why it cannot be
        read), and whether the settings in effect changed. Called from the informer's event handler on
        every replica, so a replica that becomes leader already runs with the settings before its
        first decision (the cache syncs before leader election); the leader's reconcile reports it."""
        obj = self.informer.store.get(SINGLETON_NAME)
        if obj is None:
            return None, None, self._switch(from_flags(self.flags))
        try:
            parsed = AutoscalerSettings.model_validate(obj)
        except ValidationError as exc:
            return obj, _why(exc), False
        return obj, parsed, self._switch(effective(self.flags, parsed.spec))

    async def reconcile(self, request: Request) -> Result:
        if request.name != SINGLETON_NAME:
            return Result()  # refused by the schema; never read
        obj, parsed, changed = self.sync()
        if obj is None or parsed is None:
            return Result()
        if isinstance(parsed, str):
            note = f"not applied, the settings in effect stay: {parsed}"
            await self._report(obj, None, "False", REASON_INVALID, note)
            return Result()
        changed = changed or self._unreported
        self._unreported = False
        note = self.current.describe()
        await self._report(obj, parsed.status, "True", REASON_APPLIED, note, changed=changed)
        return Result()

    async def _report(
        self,
        obj: dict[str, Any],
        status: AutoscalerSettingsStatus | None,
        ok: Literal["True", "False"],
        reason: str,
        message: str,
        *,
        changed: bool = False,
    ) -> None:
        meta = obj.get("metadata") or {}
        generation = meta.get("generation")
        st = (status or AutoscalerSettingsStatus()).model_copy(deep=True)
        before = next((c for c in st.conditions if c.type == CONDITION_APPLIED), None)
        set_condition(
            st.conditions,
            CONDITION_APPLIED,
            ok,
            reason,
            message[:MESSAGE_MAX_LENGTH],
            now=self.clock.now(),
            observed_generation=generation,
        )
        st.observed_generation = generation
        after = next(c for c in st.conditions if c.type == CONDITION_APPLIED)
        if changed or before is None or (before.status, before.message) != (after.status, after.message):
            if ok == "True":
                self.recorder.event(obj, "Normal", EVENT_APPLIED, message, ACTION_APPLY)
            else:
                log.warning("settings.invalid", message=message)
                self.recorder.event(obj, "Warning", EVENT_INVALID, message, ACTION_APPLY)
        if status is not None and st == status:
            return
        try:
            await self.writes.patch_status(AUTOSCALER_SETTINGS, obj, st.to_k8s())
        except (errors.Conflict, errors.NotFound):
            return  # a newer version or a deletion brings us back


SETTINGS_RECONCILE_TIMEOUT_SECONDS: Final = 30.0  # one status write


def setup_settings(
    manager: Manager, flags: Settings, *, deps: Deps, apply: Callable[[Effective], None]
) -> SettingsReconciler:
    """Register controller ``settings`` (leader only: the leader is the one that acts)."""
    informer = manager.informers.informer_for(AUTOSCALER_SETTINGS)
    reconciler = SettingsReconciler(deps, informer=informer, flags=flags, apply=apply)
    controller = manager.new_controller(
        "settings", reconciler, workers=1, reconcile_timeout=SETTINGS_RECONCILE_TIMEOUT_SECONDS
    )
    controller.watch(informer, lambda obj: [Request(SINGLETON_NAME)])

    def on_event(*_: object) -> None:
        reconciler.sync()

    informer.add_event_handler(on_add=on_event, on_update=on_event, on_delete=on_event)
    return reconciler
