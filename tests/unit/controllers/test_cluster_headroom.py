"""Cluster-wide headroom set in ``AutoscalerSettings`` is applied live: the next scale-up orders the
spare capacity with no pod pending, the next scale-down keeps it, and removing it from the object
returns to none (it has no flag)."""

from __future__ import annotations

import random

from tests.unit.controllers.fakes import World
from vpsie_autoscaler.api.settings import AutoscalerSettingsSpec
from vpsie_autoscaler.config import Settings
from vpsie_autoscaler.controllers.live import LiveSettings
from vpsie_autoscaler.controllers.scaledown import ScaleDownController
from vpsie_autoscaler.controllers.scaleup import ScaleUpController, ScaleUpOptions
from vpsie_autoscaler.controllers.settings.effective import effective, from_flags
from vpsie_autoscaler.scaling.resources import Resources

FLAGS = Settings.model_validate({"expander": "priority,least-waste", "scan_interval": 10.0})
SPARE = AutoscalerSettingsSpec.model_validate({"headroom": {"cpu": "2", "memory": "1Gi"}})


def test_the_object_sets_it_and_says_so_and_the_flags_have_none() -> None:
    found = effective(FLAGS, SPARE)
    assert found.headroom == Resources.parse({"cpu": "2", "memory": "1Gi"})
    assert "headroom 2 cpu, 1Gi memory (settings)" in found.describe()
    assert not from_flags(FLAGS).headroom
    assert "headroom" not in from_flags(FLAGS).describe()


async def test_set_live_the_next_scale_up_orders_it_and_removed_it_orders_nothing() -> None:
    world = World()
    world.group("web", cpu="4", memory="8Gi")
    deps = world.deps()
    scaleup = ScaleUpController(deps, builder=world.builder(), options=ScaleUpOptions(), rng=random.Random(1))
    scaledown = ScaleDownController(deps, builder=world.builder())
    live = LiveSettings(deps, scaleup=scaleup, scaledown=scaledown)
    assert await scaleup.scale_up_once() is None  # no pod, no headroom: nothing to decide
    live.apply(effective(FLAGS, SPARE))
    assert scaledown.options.settings.cluster_headroom == Resources.parse({"cpu": "2", "memory": "1Gi"})
    plan = await scaleup.scale_up_once()
    assert plan is not None
    (increase,) = plan.increases
    assert (increase.group, increase.nodes, increase.headroom_pods) == ("web", 1, 1)
    assert len(world.kube.writes("create", "vpsienodes")) == 1
    live.apply(from_flags(FLAGS))
    assert not scaleup.options.headroom
    assert not scaledown.options.settings.cluster_headroom
