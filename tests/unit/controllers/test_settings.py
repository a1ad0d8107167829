"""AutoscalerSettings: the object named ``default`` overrides the flags field by field while it exists,
is applied without a restart (the running controllers switch over), refuses bad input, and says in its
``Applied`` condition what is in effect; a bad object never half-applies."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.unit.controllers.fakes import Store, World
from vpsie_autoscaler.api.crdgen import nodegroup_crd
from vpsie_autoscaler.api.settings import EXPANDER_NAMES, AutoscalerSettingsSpec
from vpsie_autoscaler.config import Settings
from vpsie_autoscaler.controllers.live import LiveSettings
from vpsie_autoscaler.controllers.scaleup.controller import ScaleUpController
from vpsie_autoscaler.controllers.settings.controller import SettingsReconciler
from vpsie_autoscaler.controllers.settings.effective import Effective, effective, from_flags
from vpsie_autoscaler.runtime.controller import Request
from vpsie_autoscaler.runtime.informer import SharedInformer
from vpsie_autoscaler.scaling import ClusterLimits
from vpsie_autoscaler.scaling.expanders import EXPANDERS

DEFAULT_CHAIN = "priority,least-waste"
FLAGS = Settings.model_validate(
    {"expander": "priority,least-waste", "max_nodes_total": 50, "scan_interval": 10.0, "dry_run": False}
)


def test_the_api_names_every_expander_the_planner_has() -> None:
    assert set(EXPANDER_NAMES) == set(EXPANDERS)


@pytest.mark.parametrize(
    ("spec", "expander", "limits", "scan", "dry_run"),
    [
        ({}, DEFAULT_CHAIN, ClusterLimits(max_nodes=50), 10.0, False),
        ({"expander": ["least-cost"]}, "least-cost", ClusterLimits(max_nodes=50), 10.0, False),
        ({"limits": {"maxCoresTotal": 64}}, DEFAULT_CHAIN, ClusterLimits(50, 64, 0), 10.0, False),
        ({"limits": {"maxNodesTotal": 0}}, DEFAULT_CHAIN, ClusterLimits(), 10.0, False),
        (
            {"limits": {"maxMemoryTotalGib": 7.5}},
            "priority,least-waste",
            ClusterLimits(50, 0, 8),
            10.0,
            False,
        ),
        ({"scanInterval": "1m30s"}, DEFAULT_CHAIN, ClusterLimits(max_nodes=50), 90.0, False),
        ({"dryRun": True}, DEFAULT_CHAIN, ClusterLimits(max_nodes=50), 10.0, True),
    ],
)
def test_each_field_set_overrides_its_flag_and_the_others_keep_theirs(
    spec: dict[str, Any], expander: str, limits: ClusterLimits, scan: float, dry_run: bool
) -> None:
    found = effective(FLAGS, AutoscalerSettingsSpec.model_validate(spec))
    assert (found.expander, found.limits) == (expander, limits)
    assert (found.scan_interval, found.dry_run) == (scan, dry_run)


@given(
    st.lists(st.sampled_from(EXPANDER_NAMES), min_size=1, max_size=5, unique=True) | st.none(),
    st.booleans() | st.none(),
)
def test_an_unset_field_is_always_the_flag(expander: list[str] | None, dry_run: bool | None) -> None:
    found = effective(FLAGS, AutoscalerSettingsSpec.model_validate({"expander": expander, "dryRun": dry_run}))
    assert found.expander == (",".join(expander) if expander else FLAGS.expander)
    assert found.dry_run == (FLAGS.dry_run if dry_run is None else dry_run)
    assert found.scan_interval == FLAGS.scan_interval


@pytest.mark.parametrize(
    "spec",
    [
        {"expander": ["cheapest"]},
        {"expander": []},
        {"expander": ["random", "random"]},
        {"scanInterval": "0s"},
        {"scanInterval": "1h"},
        {"scanInterval": "ten seconds"},
        {"limits": {"maxNodesTotal": -1}},
    ],
)
def test_bad_settings_are_refused(spec: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        AutoscalerSettingsSpec.model_validate(spec)


# --- the controller -------------------------------------------------------------------------------------


class Informer:
    def __init__(self, store: Store) -> None:
        self.store = store


def settings(spec: dict[str, Any], *, generation: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaler.vpsie.com/v1alpha1",
        "kind": "AutoscalerSettings",
        "metadata": {"name": "default", "generation": generation, "resourceVersion": "1"},
        "spec": spec,
    }


def reconciler(world: World) -> tuple[SettingsReconciler, list[Effective]]:
    store = world.stores.setdefault("autoscalersettings", Store())
    applied: list[Effective] = []
    rec = SettingsReconciler(
        world.deps(), informer=cast(SharedInformer, Informer(store)), flags=FLAGS, apply=applied.append
    )
    return rec, applied


def applied_condition(world: World) -> dict[str, Any]:
    obj = world.stores["autoscalersettings"].get("default")
    assert obj is not None
    return next(c for c in obj["status"]["conditions"] if c["type"] == "Applied")


async def test_a_change_is_applied_at_once_reported_and_removing_the_object_returns_to_the_flags() -> None:
    world = World()
    rec, applied = reconciler(world)
    world.stores["autoscalersettings"].put(settings({"expander": ["least-cost"], "dryRun": True}))
    await rec.reconcile(Request("default"))
    assert [(e.expander, e.dry_run) for e in applied] == [("least-cost", True)]
    condition = applied_condition(world)
    assert (condition["status"], condition["reason"]) == ("True", "Applied")
    assert "expander least-cost (settings)" in condition["message"]
    assert "dry-run on (settings)" in condition["message"]
    assert world.recorder.reasons("SettingsApplied")
    await rec.reconcile(Request("default"))
    assert len(applied) == 1  # nothing changed: nothing re-applied
    world.stores["autoscalersettings"].objects.clear()
    await rec.reconcile(Request("default"))
    assert applied[-1] == from_flags(FLAGS)


async def test_an_object_the_model_refuses_is_not_applied_and_says_why() -> None:
    world = World()
    rec, applied = reconciler(world)
    world.stores["autoscalersettings"].put(settings({"dryRun": True}))
    await rec.reconcile(Request("default"))
    world.stores["autoscalersettings"].put(
        settings({"dryRun": False, "expander": ["cheapest"]}, generation=2)
    )
    await rec.reconcile(Request("default"))
    assert [e.dry_run for e in applied] == [True]  # a bad edit never turns dry-run off
    assert rec.current.dry_run
    condition = applied_condition(world)
    assert (condition["status"], condition["reason"]) == ("False", "Invalid")
    assert "expander" in condition["message"]
    assert world.recorder.reasons("InvalidSettings")


async def test_the_running_controllers_switch_over() -> None:
    world = World()
    deps = world.deps()
    scaleup = ScaleUpController(deps, builder=world.builder())
    live = LiveSettings(deps, scaleup=scaleup)
    spec = {"expander": ["least-cost"], "dryRun": True, "scanInterval": "3s"}
    live.apply(effective(FLAGS, AutoscalerSettingsSpec.model_validate(spec)))
    assert deps.writes.dry_run
    assert world.sample("vpsie_autoscaler_dry_run") == 1
    assert scaleup.options.expander == "least-cost"
    assert scaleup.options.scan_interval == 3.0
    assert scaleup.expanders.names == ("least-cost",)
    live.apply(from_flags(FLAGS))
    assert deps.writes.dry_run is bool(FLAGS.dry_run)
    assert world.sample("vpsie_autoscaler_dry_run") == 0


async def test_every_replica_applies_from_its_cache_before_leading_and_the_leader_reports_it() -> None:
    world = World()
    rec, applied = reconciler(world)
    world.stores["autoscalersettings"].put(settings({"dryRun": True}))
    rec.sync()  # the informer's event handler, on a standby too: no API call
    assert [e.dry_run for e in applied] == [True]
    assert world.kube.writes() == []
    await rec.reconcile(Request("default"))  # once leading
    assert applied_condition(world)["status"] == "True"
    assert world.recorder.reasons("SettingsApplied")
    assert len(applied) == 1


# --- scale-down defaults ---------------------------------------------------------------------------------


def test_scale_down_defaults_fill_only_what_a_nodegroup_leaves_out() -> None:
    world = World()
    world.group("plain", scaleDown={"enabled": True})
    world.group("own", scaleDown={"enabled": True, "unneededTime": "2m", "utilizationThreshold": 0.7})
    builder = world.builder()
    spec = AutoscalerSettingsSpec.model_validate(
        {"scaleDownDefaults": {"unneededTime": "30m", "utilizationThreshold": 0.2, "delayAfterScaleUp": "1h"}}
    )
    LiveSettings(world.deps(), builder=builder).apply(effective(FLAGS, spec))
    groups = {g.name: g.scale_down for g in builder.build(world.clock.now()).groups}
    assert (groups["plain"].unneeded_time, groups["plain"].utilization_threshold) == (
        timedelta(minutes=30),
        0.2,
    )
    assert groups["plain"].delay_after_scale_up == timedelta(hours=1)
    assert (groups["own"].unneeded_time, groups["own"].utilization_threshold) == (timedelta(minutes=2), 0.7)
    assert groups["own"].delay_after_scale_up == timedelta(hours=1)  # left out: the settings' default
    LiveSettings(world.deps(), builder=builder).apply(from_flags(FLAGS))
    groups = {g.name: g.scale_down for g in builder.build(world.clock.now()).groups}
    assert groups["plain"].unneeded_time == timedelta(minutes=10)  # the built-in default again


def test_the_nodegroup_schema_leaves_settings_defaulted_fields_unset() -> None:
    crd = nodegroup_crd()
    scale_down = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
        "scaleDown"
    ]
    for key in ("utilizationThreshold", "unneededTime", "delayAfterScaleUp"):
        assert "default" not in scale_down["properties"][key]
        assert key not in scale_down["default"]
    assert scale_down["properties"]["maxGracefulTermination"]["default"] == "600s"
