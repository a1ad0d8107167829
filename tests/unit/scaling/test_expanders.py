"""Each expander narrows the candidates; chained, ties fall through; the end is reproducible."""

from __future__ import annotations

import random

import pytest

from vpsie_autoscaler.scaling.expanders import ExpanderChain, Option
from vpsie_autoscaler.scaling.resources import Resources

NODE = Resources.parse({"cpu": "4", "memory": "8Gi"})
BIG = Resources.parse({"cpu": "8", "memory": "16Gi"})


def opt(name: str, nodes: int = 1, pods: int = 4, cpu: str = "4", mem: str = "8Gi", **kw: object) -> Option:
    alloc = kw.pop("alloc", NODE)
    return Option(name, nodes, pods, Resources.parse({"cpu": cpu, "memory": mem}), alloc, **kw)  # type: ignore[arg-type]


def names(options: list[Option]) -> list[str]:
    return [o.group for o in options]


def test_priority_keeps_the_highest() -> None:
    chain = ExpanderChain.parse("priority")
    winner, _ = chain.choose([opt("a", priority=1), opt("b", priority=5), opt("c", priority=5)])
    assert winner.group == "b"  # tie b/c broken by name without rng


def test_least_waste_prefers_the_tightest_fit() -> None:
    tight = opt("tight", cpu="4", mem="8Gi")
    loose = opt("loose", cpu="4", mem="8Gi", alloc=BIG)
    winner, trail = ExpanderChain.parse("least-waste").choose([loose, tight])
    assert winner.group == "tight"
    assert trail == ("least-waste: loose, tight -> tight",)


def test_least_cost_uses_price_per_scheduled_pod_and_prices_beat_unknown() -> None:
    cheap_per_pod = opt("big", pods=10, hourly_price=1.0)  # 0.1 per pod
    cheap_node = opt("small", pods=2, hourly_price=0.5)  # 0.25 per pod
    unknown = opt("unknown", pods=10)
    winner, _ = ExpanderChain.parse("least-cost").choose([cheap_node, unknown, cheap_per_pod])
    assert winner.group == "big"


def test_most_pods() -> None:
    winner, _ = ExpanderChain.parse("most-pods").choose([opt("a", pods=3), opt("b", pods=7)])
    assert winner.group == "b"


def test_random_is_seeded() -> None:
    options = [opt(n) for n in "abcdef"]
    picks = {
        ExpanderChain.parse("random").choose(options, random.Random(seed))[0].group for seed in range(30)
    }
    assert len(picks) > 1
    again = ExpanderChain.parse("random").choose(options, random.Random(7))[0].group
    assert again == ExpanderChain.parse("random").choose(options, random.Random(7))[0].group


def test_default_chain_breaks_priority_ties_by_waste() -> None:
    chain = ExpanderChain.parse()
    assert chain.names == ("priority", "least-waste")
    low = opt("low-prio-tight", priority=0)
    hi_loose = opt("hi-loose", priority=10, alloc=BIG)
    hi_tight = opt("hi-tight", priority=10)
    winner, trail = chain.choose([low, hi_loose, hi_tight])
    assert winner.group == "hi-tight"
    assert len(trail) == 2


@pytest.mark.parametrize(("spec", "message"), [("", "empty"), ("priority,cheapest", "unknown expander")])
def test_bad_chains_are_refused(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ExpanderChain.parse(spec)


def test_choose_needs_options() -> None:
    with pytest.raises(ValueError, match="no options"):
        ExpanderChain.parse().choose([])


def test_a_tie_the_chain_leaves_goes_to_the_cheaper_then_to_fewer_nodes_never_to_chance() -> None:
    """One 8-cpu node or two 4-cpu nodes for the same pods waste exactly as much: the same price
    buys fewer nodes; a lower price wins over fewer nodes; only a full tie is left to chance."""
    two_small = opt("a-advanced", nodes=2, cpu="8", mem="16Gi", hourly_price=0.05)
    one_big = opt("b-professional", nodes=1, cpu="8", mem="16Gi", alloc=BIG, hourly_price=0.10)
    assert two_small.waste() == one_big.waste()
    for seed in range(20):
        winner, trail = ExpanderChain.parse().choose([two_small, one_big], random.Random(seed))
        assert winner.group == "b-professional"
    assert trail[-1] == "tie-break fewest-nodes: a-advanced, b-professional -> b-professional"
    cheaper_small = opt("a-advanced", nodes=2, cpu="8", mem="16Gi", hourly_price=0.04)
    assert ExpanderChain.parse().choose([cheaper_small, one_big])[0].group == "a-advanced"
    twin = opt("c-professional", nodes=1, cpu="8", mem="16Gi", alloc=BIG, hourly_price=0.10)
    picks = {ExpanderChain.parse().choose([one_big, twin], random.Random(s))[0].group for s in range(30)}
    assert picks == {"b-professional", "c-professional"}
