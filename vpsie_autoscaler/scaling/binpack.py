"""First-fit-decreasing bin packing of equivalence groups onto new, identical nodes.

cluster-autoscaler estimates a group's node count with its ``BinpackingNodeEstimator`` (first fit
over pods sorted by size) and Karpenter packs in FFD order too. Packing pod by pod costs
O(pods * nodes); we pack whole equivalence groups instead: bins are runs of identical nodes
(``count`` nodes with the same contents), a group of ``q`` identical pods fills a run arithmetically
and splits at most one run. The result is the same as pod-by-pod FFD over the same order, at a cost
proportional to the number of groups, so 20 000 pending pods cost little more than 20.

FFD over whole classes has one weakness: identical pods are packed together, so classes that
complement each other (cpu-heavy and memory-heavy pods) fill separate nodes, each with one resource
left over. For bursts of up to :data:`COMPLEMENTARY_WORK_LIMIT` pods x classes, :func:`pack` also
fills nodes one at a time with the class that best matches each node's free resources
(:func:`complementary`) and keeps whichever needs fewer nodes: 500 mixed pods of 36 shapes take 54
nodes of 8 cpu / 16 GiB instead of 60 (the lower bound is 53).

Pods that may not share a node (host ports, hostname anti-affinity) are described by ``conflicts``:
for each class, the set of classes it cannot share a node with (itself included when two of its own
pods conflict, which caps it at one per node).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from vpsie_autoscaler.scaling.resources import Resources

UNBOUNDED: Final = 1 << 62
COMPLEMENTARY_WORK_LIMIT: Final = 200_000
"""The largest pods x classes the complementary fill takes on (its work is at most twice that, about
0.2 s of Python); larger bursts are packed by FFD alone."""


@dataclass(frozen=True, slots=True)
class PackItem:
    """``count`` identical pods of class ``index`` requesting ``requests`` each."""

    index: int
    requests: Resources
    count: int


@dataclass(frozen=True, slots=True)
class Run:
    """``count`` identical planned nodes, each holding ``contents[class] `` pods of each class."""

    count: int
    contents: Mapping[int, int]


@dataclass(frozen=True, slots=True)
class PackResult:
    """How many nodes, which runs of identical nodes, and how many pods of each class were placed."""

    nodes: int
    runs: tuple[Run, ...]
    placed: Mapping[int, int]


class _Bin:
    __slots__ = ("contents", "count", "free")

    def __init__(self, free: list[int], count: int, contents: dict[int, int]) -> None:
        self.free = free
        self.count = count
        self.contents = contents

    def copy(self, count: int) -> _Bin:
        return _Bin(list(self.free), count, dict(self.contents))

    def put(self, cls: int, req: Sequence[int], per_node: int) -> None:
        free = self.free
        for i, r in enumerate(req):
            free[i] -= r * per_node
        self.contents[cls] = self.contents.get(cls, 0) + per_node


def _fit(free: Sequence[int], req: Sequence[int]) -> int:
    best = UNBOUNDED
    for f, r in zip(free, req, strict=True):
        if r > 0:
            n = f // r
            if n < best:
                best = n
                if n <= 0:
                    return 0
    return best


def pack(
    items: Sequence[PackItem],
    allocatable: Resources,
    conflicts: Mapping[int, frozenset[int]],
    max_nodes: int,
) -> PackResult:
    """Pack ``items`` onto at most ``max_nodes`` new nodes of ``allocatable`` each: the better of
    first fit decreasing and, for bursts small enough, complementary filling (see the module
    docstring). Better = more pods placed, then fewer nodes; FFD on a tie."""
    ffd = first_fit_decreasing(items, allocatable, conflicts, max_nodes)
    pods = sum(item.count for item in items)
    if len(items) < 2 or pods * len(items) > COMPLEMENTARY_WORK_LIMIT:
        return ffd
    other = complementary(items, allocatable, conflicts, max_nodes)
    if (sum(other.placed.values()), -other.nodes) > (sum(ffd.placed.values()), -ffd.nodes):
        return other
    return ffd


def first_fit_decreasing(
    items: Sequence[PackItem],
    allocatable: Resources,
    conflicts: Mapping[int, frozenset[int]],
    max_nodes: int,
) -> PackResult:
    """Pack ``items`` onto at most ``max_nodes`` new nodes of ``allocatable`` each, FFD order.

    Items are sorted by their largest share of a node's allocatable (ties: more pods first, then
    class index, so the result is deterministic). Items that do not fit an empty node are left
    unplaced (callers screen them out with the predicates first).
    """
    names = sorted({n for item in items for n in item.requests})
    alloc = [allocatable[n] for n in names]

    def share(item: PackItem) -> float:
        worst = 0.0
        for n, a in zip(names, alloc, strict=True):
            r = item.requests[n]
            if r > 0:
                worst = max(worst, r / a if a > 0 else float("inf"))
        return worst

    order = sorted(items, key=lambda it: (-share(it), -it.count, it.index))
    reqs = [[item.requests[n] for n in names] for item in order]
    # suffix_min[j][i]: the smallest request of resource i among items j.. (bins with less free
    # of some resource than every remaining item needs can never take another pod: closed).
    suffix_min: list[list[int]] = [[UNBOUNDED] * len(names) for _ in range(len(order) + 1)]
    for j in range(len(order) - 1, -1, -1):
        suffix_min[j] = [min(a, b) if b > 0 else a for a, b in zip(suffix_min[j + 1], reqs[j], strict=True)]
    bins: list[_Bin] = []  # open bins, in opening order (first fit scans them in this order)
    closed: list[_Bin] = []
    nodes = 0
    placed: dict[int, int] = {}
    for j, item in enumerate(order):
        cls = item.index
        req = reqs[j]
        dims = [(d, r) for d, r in enumerate(req) if r > 0]
        floor = suffix_min[j]
        blocked = conflicts.get(cls, frozenset())
        self_conflict = cls in blocked
        q = item.count
        i = 0
        while q > 0 and i < len(bins):
            b = bins[i]
            if blocked and not blocked.isdisjoint(b.contents):
                i += 1
                continue
            free = b.free
            k = UNBOUNDED
            for d, r in dims:  # inlined _fit: this loop is the planner's hot path
                n = free[d] // r
                if n < k:
                    k = n
                    if n <= 0:
                        # Closed for good when even the smallest remaining request cannot fit.
                        if free[d] < floor[d]:
                            closed.append(bins.pop(i))
                            i -= 1
                        break
            if self_conflict and k > 1:
                k = 1
            if k <= 0:
                i += 1
                continue
            if q >= k * b.count:
                b.put(cls, req, k)
                q -= k * b.count
                i += 1
                continue
            full, rest = divmod(q, k)
            replacement: list[_Bin] = []
            if full:
                nb = b.copy(full)
                nb.put(cls, req, k)
                replacement.append(nb)
            if rest:
                nb = b.copy(1)
                nb.put(cls, req, rest)
                replacement.append(nb)
            untouched = b.count - full - (1 if rest else 0)
            if untouched:
                replacement.append(b.copy(untouched))
            bins[i : i + 1] = replacement
            q = 0
        k0 = _fit(alloc, req)
        if self_conflict:
            k0 = min(k0, 1)
        if k0 > 0:
            full = min(q // k0, max_nodes - nodes)
            if full > 0:
                nb = _Bin(list(alloc), full, {})
                nb.put(cls, req, k0)
                bins.append(nb)
                nodes += full
                q -= full * k0
            if 0 < q < k0 and nodes < max_nodes:
                nb = _Bin(list(alloc), 1, {})
                nb.put(cls, req, q)
                bins.append(nb)
                nodes += 1
                q = 0
        placed[cls] = item.count - q
    bins = closed + bins
    runs = tuple(Run(b.count, dict(b.contents)) for b in bins)
    return PackResult(nodes, runs, placed)


def complementary(
    items: Sequence[PackItem],
    allocatable: Resources,
    conflicts: Mapping[int, frozenset[int]],
    max_nodes: int,
) -> PackResult:
    """Fill one node at a time, pod by pod, with the class that best matches what the node has left.

    The score of a class is the dot product of its requests and the node's free resources, both as
    shares of the allocatable (the "dot product" heuristic of multi-dimensional bin packing): a node
    whose cpu is half gone prefers memory-heavy pods, so cpu-heavy and memory-heavy classes share
    nodes. A filled node's mix is repeated as a run of identical nodes for as long as the classes
    last, so replicas of a few shapes cost a few fills. Each pod placed, and each node closed, costs one
    look at every class: at most (pods + nodes) x classes, which :func:`pack` bounds with
    :data:`COMPLEMENTARY_WORK_LIMIT`.
    """
    names = sorted({n for item in items for n in item.requests})
    alloc = [allocatable[n] for n in names]
    reqs = [[item.requests[n] for n in names] for item in items]
    weights = [1.0 / a if a > 0 else 0.0 for a in alloc]
    shares = [[r * w for r, w in zip(req, weights, strict=True)] for req in reqs]
    remaining = [item.count for item in items]
    index = [item.index for item in items]
    self_conflict = [item.index in conflicts.get(item.index, frozenset()) for item in items]
    runs: list[Run] = []
    placed: dict[int, int] = {}
    nodes = 0
    while nodes < max_nodes:
        free = list(alloc)
        contents: dict[int, int] = {}  # position in ``items`` -> pods on this node
        blocked: set[int] = set()
        while True:
            best, best_score = -1, -1.0
            for j, left in enumerate(remaining):
                if left <= contents.get(j, 0) or index[j] in blocked:
                    continue
                if self_conflict[j] and contents.get(j):
                    continue
                req = reqs[j]
                if any(r > f for r, f in zip(req, free, strict=True)):
                    continue
                score = sum(s * f * w for s, f, w in zip(shares[j], free, weights, strict=True))
                if score > best_score:
                    best, best_score = j, score
            if best < 0:
                break
            for d, r in enumerate(reqs[best]):
                free[d] -= r
            contents[best] = contents.get(best, 0) + 1
            blocked |= conflicts.get(index[best], frozenset()) - {index[best]}
        if not contents:
            break  # nothing left fits an empty node
        repeat = min(*(remaining[j] // k for j, k in contents.items()), max_nodes - nodes)
        for j, k in contents.items():
            remaining[j] -= k * repeat
            placed[index[j]] = placed.get(index[j], 0) + k * repeat
        runs.append(Run(repeat, {index[j]: k for j, k in contents.items()}))
        nodes += repeat
    return PackResult(nodes, tuple(runs), {item.index: placed.get(item.index, 0) for item in items})
