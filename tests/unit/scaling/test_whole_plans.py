"""Options are judged as the whole plans they lead to: a group that takes the small pods with little
waste does not win when the pods it leaves cost more elsewhere than one larger node holding them all."""

from __future__ import annotations

from tests.unit.scaling.builders import NOW, group, pod
from vpsie_autoscaler.scaling.expanders import ExpanderChain
from vpsie_autoscaler.scaling.groups import GroupTemplate
from vpsie_autoscaler.scaling.scaleup import TRIGGERED, ScaleUpPlan, plan_scale_up
from vpsie_autoscaler.scaling.scheduling_facts import PodInfo

# The simulator's five plans as plain-VM NodeGroups (cpu, memory, $ a month), as the side-by-side
# benchmark runs them.
PLANS = {
    "starter": ("1", "2Gi", 10.0),
    "standard": ("2", "4Gi", 20.0),
    "advanced": ("4", "8Gi", 40.0),
    "professional": ("8", "16Gi", 80.0),
    "highmem": ("4", "32Gi", 90.0),
}
# The first ten pods of its mixed burst (cpu millicores, memory MiB): 6.95 cpu, 8 GiB together.
BURST = [
    (100, 4096),
    (500, 512),
    (2000, 256),
    (250, 512),
    (1000, 256),
    (500, 128),
    (250, 1024),
    (100, 256),
    (250, 128),
    (2000, 1024),
]


def groups() -> list[GroupTemplate]:
    return [group(n, cpu, mem, max_nodes=1000, price=month / 730) for n, (cpu, mem, month) in PLANS.items()]


def burst() -> list[PodInfo]:
    return [pod(f"p{i}", f"{cpu}m", f"{mem}Mi") for i, (cpu, mem) in enumerate(BURST)]


def cost(plan: ScaleUpPlan, gs: list[GroupTemplate]) -> float:
    price = {g.name: g.hourly_price or 0.0 for g in gs}
    return sum(price[i.group] * i.nodes for i in plan.increases)


def test_the_mixed_burst_gets_the_cheapest_single_plan_packing() -> None:
    gs = groups()
    plan = plan_scale_up(burst(), gs, now=NOW)  # the default chain: priority, least-waste
    assert {o.status for o in plan.pods} == {TRIGGERED}
    alone = [(g, plan_scale_up(burst(), [g], now=NOW)) for g in gs]
    cheapest = min(cost(p, [g]) for g, p in alone if {o.status for o in p.pods} == {TRIGGERED})
    assert cost(plan, gs) == cheapest  # one Professional ($80 a month), not 3 Starter + 3 Standard ($90)
    assert [(i.group, i.nodes) for i in plan.increases] == [("professional", 1)]  # and the fewest nodes


def test_every_chain_still_serves_every_pod() -> None:
    for chain in ("least-waste", "least-cost", "most-pods", "random", "priority,least-waste"):
        plan = plan_scale_up(burst(), groups(), now=NOW, expanders=ExpanderChain.parse(chain))
        assert {o.status for o in plan.pods} == {TRIGGERED}, chain


def test_a_group_only_some_pods_fit_still_serves_them_with_the_cheapest_whole_plan() -> None:
    """The look-ahead follows the chain: the pods only a GPU group holds go there either way."""
    gs = [
        *groups(),
        group("gpu", "2", "4Gi", max_nodes=10, price=1.0, extra={"nvidia.com/gpu": "1"}),
    ]
    pending = [*burst(), pod("train", "1", "1Gi", extra={"nvidia.com/gpu": "1"})]
    plan = plan_scale_up(pending, gs, now=NOW)
    assert {o.status for o in plan.pods} == {TRIGGERED}
    assert plan.outcome("default/train").group == "gpu"
    assert sorted((i.group, i.nodes) for i in plan.increases) == [("gpu", 1), ("professional", 1)]
    assert len(plan.increase_for("professional").pods) == len(BURST)  # type: ignore[union-attr]
