"""The NodeGroup controller: level-triggered status, ``minNodes``/``maxNodes``, back-off, finalizer.

Every reconcile reads the group's VPSieNodes from the cache and the group's instances from the
provider (VPSie cannot be watched), asks the pure rules of :mod:`.rules` for the next step, and
performs it:

- below ``minNodes`` (and not in back-off) → create the missing VPSieNodes with
  :func:`~vpsie_autoscaler.controllers.new_vpsienode.new_vpsienode` (Event ``ScaledUp``);
- above ``maxNodes`` (the spec was lowered) → drain requests on the surplus, not-ready nodes first
  (Event ``ScaleDownRequested``): the group converges to ``maxNodes`` instead of staying above it.
  This controller is the only one that converges it. Requested nodes stop counting at once, so the
  next reconcile does not ask again;
- status, of which this controller is the single writer: counts (leaving nodes never counted),
  ``desiredNodes`` = ``current`` clamped to ``[minNodes, maxNodes]``, conditions ``Ready`` (one-word
  reason for ``kubectl get ng``), ``ScalingUp``, ``ScalingDown``, ``Backoff``, ``AtMinCapacity``,
  ``AtMaxCapacity``, ``CloudError``, ``backoffUntil``/``consecutiveFailures`` derived from Failed
  VPSieNodes, ``lastScaleUpTime`` derived from the newest VPSieNode it or scale-up created, and
  ``lastDecision``: its own, or the latest one scale-up or scale-down recorded in the
  :class:`~vpsie_autoscaler.controllers.decisions.DecisionLog`;
- per-group gauges (min, max, desired, current, ready, backoff, hourly cost).

Managed groups: the VPSie cluster, node group, size and datacenter are resolved first
(:mod:`~vpsie_autoscaler.controllers.discovery`, into ``status.managed`` and the ``SourceResolved`` and
``SizeMismatch`` conditions); a VPSie node group named by the spec that does not exist is created.

Deleting a NodeGroup deletes its VPSieNodes (their finalizers delete the instances and Nodes) and only
then drops ``NODEGROUP_FINALIZER`` (after deleting the VPSie group it created, with
``groupDeletionPolicy: Delete``). It never creates instances nor drains: the lifecycle controller
does (docs/architecture.md, "Who owns which fact").
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

import structlog
from pydantic import ValidationError

from vpsie_autoscaler.api.labels import (
    DRAIN_REASON_ANNOTATION,
    DRAIN_REQUESTED_ANNOTATION,
    NODEGROUP_FINALIZER,
    NODEGROUP_LABEL,
)
from vpsie_autoscaler.api.nodegroup import (
    CONDITION_AT_MAX_CAPACITY,
    CONDITION_AT_MIN_CAPACITY,
    CONDITION_BACKOFF,
    CONDITION_CLOUD_ERROR,
    CONDITION_READY,
    CONDITION_SCALING_DOWN,
    CONDITION_SCALING_UP,
    CONDITION_SIZE_MISMATCH,
    CONDITION_SOURCE_RESOLVED,
    DECISION_MAX_LENGTH,
    GROUP_DELETE,
    NodeGroup,
    NodeGroupStatus,
)
from vpsie_autoscaler.api.types import MESSAGE_MAX_LENGTH, set_condition
from vpsie_autoscaler.api.vpsienode import AdoptTarget, VPSieNode
from vpsie_autoscaler.controllers import discovery
from vpsie_autoscaler.controllers.binding import (
    SOURCE_INDEX,
    BindingBook,
    instance_key,
    source_index,
    source_key,
    unowned,
)
from vpsie_autoscaler.controllers.cloud import Providers
from vpsie_autoscaler.controllers.cluster_state import InvalidObject, InvalidObjects, NodeGroupParser
from vpsie_autoscaler.controllers.deps import Deps, UsesDeps
from vpsie_autoscaler.controllers.discovery import ClusterDiscovery, SourceResolver
from vpsie_autoscaler.controllers.flexible import size_groups_made_for
from vpsie_autoscaler.controllers.new_vpsienode import creation_body, new_vpsienode
from vpsie_autoscaler.controllers.nodegroup import rules
from vpsie_autoscaler.controllers.nodegroup import status as nodegroup_status
from vpsie_autoscaler.controllers.nodes import node_ready
from vpsie_autoscaler.controllers.objects import (
    ensure_index,
    labels_of,
    rfc3339,
)
from vpsie_autoscaler.kube import errors
from vpsie_autoscaler.kube.resources import NODEGROUPS, VPSIENODES
from vpsie_autoscaler.runtime.controller import Request, Result
from vpsie_autoscaler.runtime.expectations import Expectations
from vpsie_autoscaler.runtime.informer import SharedInformer
from vpsie_autoscaler.vpsie.errors import VPSieError
from vpsie_autoscaler.vpsie.provider import Instance, ManagedSource

log = structlog.get_logger("vpsie_autoscaler.controllers.nodegroup")

GROUP_INDEX: Final = "lifecycle.nodegroup"
"""VPSieNode index: ``NODEGROUP_LABEL`` → VPSieNodes of that group."""

DEFAULT_RESYNC_SECONDS: Final = 10.0  # the cloud is polled at the scan interval
DELETE_POLL_SECONDS: Final = 2.0  # while a deleted group waits for its VPSieNodes to go
EXPECTATION_POLL_SECONDS: Final = 0.5
EXPECTATION_TIMEOUT_SECONDS: Final = 60.0  # a write never seen by the watch is given up (then re-counted)
CREATE_ATTEMPTS: Final = 5  # 409 AlreadyExists → new suffix; 5 collisions in a row is a bug, not luck

REASON_SCALED_UP: Final = "ScaledUp"
REASON_SCALE_DOWN_REQUESTED: Final = "ScaleDownRequested"
REASON_BACKOFF: Final = "BackOff"
REASON_CLOUD_ERROR: Final = "CloudError"
REASON_DELETING: Final = "DeletingNodes"
REASON_INVALID: Final = "InvalidSpec"
CONDITION_VALIDATION_FAILED: Final = "ValidationFailed"
"""True while the stored NodeGroup cannot be parsed (written raw: the model cannot hold it)."""
REASON_ADOPTING: Final = "AdoptedInstance"
ACTION_SCALE: Final = "Scale"
ACTION_RESOLVE: Final = "Resolve"
REASON_GROUP_CREATED: Final = "VPSieGroupCreated"
REASON_GROUP_DELETED: Final = "VPSieGroupDeleted"
STATE_UNRESOLVED: Final = "SourceUnresolved"
"""Ready reason (the STATUS column) of a managed group whose VPSie cluster or group is not known."""


@dataclass(frozen=True)
class NodeGroupOptions:
    resync_interval: float = DEFAULT_RESYNC_SECONDS
    cluster_identifier: str | None = None
    """``--vpsie-cluster-identifier``: the VPSie cluster of managed groups that do not name one."""


_NEVER: Final = datetime.min.replace(tzinfo=UTC)


def _drain_requested(obj: Mapping[str, Any]) -> bool:
    return DRAIN_REQUESTED_ANNOTATION in ((obj.get("metadata") or {}).get("annotations") or {})


def _managed_of(group: NodeGroup) -> Mapping[str, Any] | None:
    """The group's managed source as its records carry it: resolved (a discovered cluster included)."""
    return group.spec.managed.to_k8s() if group.spec.managed is not None else None


def group_index(obj: Mapping[str, Any]) -> list[str]:
    group = labels_of(obj).get(NODEGROUP_LABEL) or (obj.get("spec") or {}).get("nodeGroup")
    return [group] if group else []


class NodeGroupReconciler(UsesDeps):
    def __init__(
        self,
        deps: Deps,
        *,
        providers: Providers,
        nodegroups: SharedInformer,
        vpsienodes: SharedInformer,
        nodes: SharedInformer,
        options: NodeGroupOptions | None = None,
        rng: random.Random | None = None,
        book: BindingBook | None = None,
        discovery: ClusterDiscovery | None = None,
    ) -> None:
        super().__init__(deps)
        self._decided_at: dict[str, datetime] = {}  # when status.lastDecision was last written, per group
        self.book = book or BindingBook()
        self.providers = providers
        self.nodegroups = nodegroups
        self.vpsienodes = vpsienodes
        self.nodes = nodes
        self.options = options or NodeGroupOptions()
        self.rng = rng
        self.plan_price: Callable[[NodeGroup], float | None] = lambda _group: None
        """Hourly price of one node of the group's plan from the plan catalogue, for
        ``nodegroup_hourly_cost`` when the template states none (set by ``controllers/setup.py``)."""
        discovery = discovery or ClusterDiscovery(
            client=lambda: providers.client,
            nodes=nodes.store.list,
            setting=self.options.cluster_identifier,
            hints=lambda: providers.hints,
            retry_after=self.options.resync_interval,
        )
        self.sources = SourceResolver(providers, discovery, max_age=self.options.resync_interval)
        # (group, VPSieNode) → "the cache shows our write".
        self._expectations: Expectations[tuple[str, str], Callable[[Mapping[str, Any]], bool]] = Expectations(
            deps.clock, EXPECTATION_TIMEOUT_SECONDS
        )
        self.invalid = InvalidObjects("NodeGroup", deps.metrics)
        self._parser = NodeGroupParser()  # the resync every resync_interval re-reads unchanged groups
        ensure_index(vpsienodes, GROUP_INDEX, group_index)
        ensure_index(vpsienodes, SOURCE_INDEX, source_index)

    # -- expectations (the ReplicaSet controller's ``ControllerExpectations``) ----------------------

    def _expect(self, group: str, vpsienode: str, seen: Callable[[Mapping[str, Any]], bool]) -> None:
        self._expectations.expect((group, vpsienode), seen)

    def _expectations_met(self, group: str) -> bool:
        def observed(key: tuple[str, str], seen: Callable[[Mapping[str, Any]], bool]) -> bool:
            obj = self.vpsienodes.store.get(key[1])
            return obj is not None and seen(obj)

        return not any(g == group for g, _ in self._expectations.pending(observed))

    def requests_for_vpsienode(self, obj: dict[str, Any]) -> list[Request]:
        return [Request(g) for g in group_index(obj)]

    def _node_ready(self, name: str) -> bool:
        node = self.nodes.store.get(name)
        return node is not None and node_ready(node)

    def _members(self, name: str) -> tuple[list[VPSieNode], int]:
        """The group's VPSieNodes, and how many more exist that cannot be parsed (they are counted
        as current: a record we cannot read still stands for a node, so minNodes never adds one)."""
        members, unparsable = [], 0
        for obj in self.vpsienodes.store.by_index(GROUP_INDEX, name):
            try:
                members.append(VPSieNode.from_k8s(obj))
            except ValidationError as exc:
                unparsable += 1
                log.error("vpsienode.invalid", vpsienode=obj["metadata"]["name"], error=str(exc))
        return members, unparsable

    async def reconcile(self, request: Request) -> Result:
        obj = self.nodegroups.store.get(request.name)
        if obj is None:
            self._parser.forget(request.name)
            self.metrics.forget_group(request.name)
            self.invalid.forget(request.name)
            self.decisions.forget(request.name)
            self._decided_at.pop(request.name, None)
            return Result()
        try:
            try:
                group = self._parser.parse(obj)
            except InvalidObject as exc:
                # Reported and never scaled; its deletion still completes (from the raw object).
                await self._report_invalid(obj, str(exc))
                if (obj.get("metadata") or {}).get("deletionTimestamp"):
                    return await self._finalize(obj)
                return Result()  # the fix is an update: its watch event brings the group back
            self.invalid.forget(request.name)
            if _validation_failed(obj):  # fixed: say so, then carry on from the status just written
                await self._put_validation_condition(obj, "False", "Valid", "the spec parses")
                return Result(requeue=True)
            if group.metadata.deletion_timestamp is not None:
                return await self._finalize(obj)
            if await self.writes.add_finalizer(NODEGROUPS, obj, NODEGROUP_FINALIZER):
                return Result()
            return await self._sync(obj, group)
        except errors.Conflict:
            return Result(requeue=True)  # read again from a fresher cache
        except errors.NotFound:
            return Result()  # deleted while we worked: its delete event ends the story

    # -- steady state -----------------------------------------------------------------------------

    async def _sync(self, obj: dict[str, Any], group: NodeGroup) -> Result:
        name, spec = group.metadata.name, group.spec
        now = self.clock.now()
        if not self._expectations_met(name):
            # Our last writes are not in the cache yet: counting now would count them as missing and
            # create (or drain) again. Their watch events bring us back; the requeue is the safety net.
            return Result(requeue_after=EXPECTATION_POLL_SECONDS)
        observed = group.status
        resolution = await self._resolve(obj, group)
        if resolution is not None and resolution.found is not None:
            group = group.model_copy(
                update={"status": observed.model_copy(update={"managed": resolution.found})}
            ).with_resolved_source()
        members, unparsable = self._members(name)
        counts = nodegroup_status.count(members, self._node_ready)
        if unparsable:
            counts = dataclasses.replace(counts, current=counts.current + unparsable)
        back = nodegroup_status.backoff(members, spec.provisioning.backoff)
        in_backoff = back.active(now)
        if resolution is None or resolution.ok:
            cloud_error = await self._cloud_check(obj, group, members)
        else:  # nowhere to look for nodes, nowhere to create them
            cloud_error = resolution.message if resolution.reason == discovery.REASON_LOOKUP_FAILED else None
        # The status this resync writes. Its fields are assigned, never edited in place, and
        # set_condition replaces a condition rather than changing it: a copy that owns its list of
        # conditions keeps ``observed`` intact. (A deep copy of every condition and of the resolved
        # source, on every resync of every group, was the largest cost of an idle controller.)
        st = group.status.model_copy(update={"conditions": list(group.status.conditions)})
        view = rules.GroupView(
            min_nodes=spec.min_nodes,
            max_nodes=spec.max_nodes,
            counts=counts,
            backoff=back,
            now=now,
            members=members,
            node_ready=self._node_ready,
        )
        step = rules.next_step(view) if resolution is None or resolution.ok else None
        decision: str | None = None
        if step is not None:
            decision, done = await self._perform(obj, group, step, st, now)
            counts = rules.settle(counts, step, done)

        self._conditions(obj, group, st, counts, back, in_backoff, cloud_error, now)
        if resolution is not None:
            self._source_conditions(obj, group, st, resolution, now)
        st.desired_nodes = rules.desired_nodes(counts, spec.min_nodes, spec.max_nodes)
        st.current_nodes, st.ready_nodes = counts.current, counts.ready
        st.provisioning_nodes, st.deleting_nodes = counts.provisioning, counts.deleting
        st.backoff_until = back.until if in_backoff else None
        st.consecutive_failures = back.failures
        st.observed_generation = group.metadata.generation
        st.last_scale_up_time = nodegroup_status.last_scale_up(st.last_scale_up_time, members)
        decided_at = now
        if decision is not None:
            log.info("nodegroup.decision", nodegroup=name, decision=decision)
        else:
            recorded = self.decisions.latest(name)
            if recorded is not None and recorded.at > self._decided_at.get(name, _NEVER):
                decision, decided_at = recorded.text, recorded.at
        if decision is not None:
            st.last_decision = decision[:DECISION_MAX_LENGTH]
        facts = self.decisions.facts(name)  # headroom and plan choice, as scale-up last saw them
        if facts is not None:
            st.headroom = facts.headroom
            st.last_plan_choice = facts.last_plan_choice or st.last_plan_choice
        if st != observed:
            await self.writes.patch_status(NODEGROUPS, obj, st.to_k8s())
        if decision is not None:
            self._decided_at[name] = decided_at
        self._gauges(group, st, in_backoff)
        requeue = self.options.resync_interval
        if in_backoff and back.until is not None:
            requeue = min(requeue, max((back.until - now).total_seconds(), 0.0) + 0.1)
        return Result(requeue_after=requeue)

    async def _perform(
        self, obj: dict[str, Any], group: NodeGroup, step: rules.Step, st: NodeGroupStatus, now: datetime
    ) -> tuple[str, int]:
        """Do the step's writes (in dry-run: announce them); returns the decision and how many
        nodes the writes created or asked to leave."""
        name = group.metadata.name
        if step.reason == rules.STEP_WAIT_BACKOFF:
            return step.decision(dry_run=self.writes.dry_run), 0
        if self.writes.would(step.action(), obj=obj, action=ACTION_SCALE):
            return step.decision(dry_run=True), 0
        if step.reason == rules.STEP_CREATE_MIN:
            created = await self._create(group, step.create)
            decision = step.decision(dry_run=False, done=created)
            self.metrics.scale_up_total.labels(name, rules.STEP_CREATE_MIN).inc(created)
            self.recorder.event(obj, "Normal", REASON_SCALED_UP, decision, ACTION_SCALE)
            return decision, created
        requested = await self._request_drains(list(step.drain), now)
        self.metrics.scale_down_total.labels(name, rules.STEP_DRAIN_ABOVE_MAX).inc(requested)
        decision = step.decision(dry_run=False)
        self.recorder.event(obj, "Normal", REASON_SCALE_DOWN_REQUESTED, decision, ACTION_SCALE)
        st.last_scale_down_time = now
        return decision, len(step.drain)

    async def _resolve(self, obj: dict[str, Any], group: NodeGroup) -> discovery.Resolution | None:
        """Managed groups: the VPSie cluster, group, size and datacenter (controllers/discovery.py); a
        VPSie group named by the spec that does not exist is created (in dry-run: announced)."""
        if group.spec.managed is None:
            return None
        resolution = await self.sources.resolve(
            group.spec.managed,
            group.status.managed,
            may_create=lambda what: not self.writes.would(what, obj=obj, action=ACTION_RESOLVE),
        )
        was = group.status.managed
        if (
            resolution.found is not None
            and resolution.found.created
            and not (was is not None and was.created)
        ):
            self.recorder.event(
                obj, "Normal", REASON_GROUP_CREATED, f"created {resolution.message}", ACTION_RESOLVE
            )
        return resolution

    def _source_conditions(
        self,
        obj: dict[str, Any],
        group: NodeGroup,
        st: NodeGroupStatus,
        resolution: discovery.Resolution,
        now: datetime,
    ) -> None:
        """``SourceResolved`` and ``SizeMismatch``, each with an Event when it turns bad (or good)."""
        gen = group.metadata.generation
        was_resolved = group.status.condition(CONDITION_SOURCE_RESOLVED)
        status: Literal["True", "False"] = "True" if resolution.ok else "False"
        set_condition(
            st.conditions,
            CONDITION_SOURCE_RESOLVED,
            status,
            resolution.reason,
            resolution.message[:MESSAGE_MAX_LENGTH],
            now=now,
            observed_generation=gen,
        )
        if was_resolved is None or (was_resolved.status, was_resolved.reason) != (status, resolution.reason):
            if resolution.ok:
                self.recorder.event(
                    obj, "Normal", CONDITION_SOURCE_RESOLVED, resolution.message, ACTION_RESOLVE
                )
            else:
                self.recorder.event(obj, "Warning", resolution.reason, resolution.message, ACTION_RESOLVE)
        if not resolution.ok:  # not Ready: it can neither count its VPSie nodes nor add one
            set_condition(
                st.conditions,
                CONDITION_READY,
                "False",
                STATE_UNRESOLVED,
                resolution.message[:MESSAGE_MAX_LENGTH],
                now=now,
                observed_generation=gen,
            )
            return  # the size is compared once the VPSie group is known
        mismatch = resolution.size_mismatch
        was = group.status.condition(CONDITION_SIZE_MISMATCH)
        set_condition(
            st.conditions,
            CONDITION_SIZE_MISMATCH,
            "True" if mismatch else "False",
            discovery.REASON_SIZE_MISMATCH if mismatch else discovery.REASON_SIZE_MATCHES,
            (mismatch or "spec.managed.sizeId is unset or the VPSie group's size")[:MESSAGE_MAX_LENGTH],
            now=now,
            observed_generation=gen,
        )
        if mismatch and (was is None or was.status != "True" or was.message != mismatch[:MESSAGE_MAX_LENGTH]):
            self.recorder.event(obj, "Warning", discovery.REASON_SIZE_MISMATCH, mismatch, ACTION_RESOLVE)

    async def _cloud_check(
        self, obj: dict[str, Any], group: NodeGroup, members: list[VPSieNode]
    ) -> str | None:
        """The provider's view of the group (the shared listing): None when VPSie answered, else the
        error in words. Nodes of a managed group that no record owns are adopted on the way."""
        try:
            source = await self.providers.source_for(group.metadata.name, group.spec.managed, group.spec.vm)
            listed = await self.providers.listing(source, max_age=self.options.resync_interval)
        except VPSieError as exc:
            return str(exc)
        if isinstance(source, ManagedSource):
            await self._adopt(obj, group, source, listed)
            try:  # spec.plans: the VPSie groups made for this group's other sizes
                for size, sized in await size_groups_made_for(self.providers, group, members):
                    found = await self.providers.listing(sized, max_age=self.options.resync_interval)
                    await self._adopt(obj, group, sized, found, size)
            except VPSieError as exc:
                return str(exc)
        return None

    async def _adopt(
        self,
        obj: dict[str, Any],
        group: NodeGroup,
        source: ManagedSource,
        listed: list[Instance],
        size: int | None = None,
    ) -> None:
        """Give every node of the VPSie group that no record owns or waits for a record of its own.

        Deferred while a record of the source has not written its launch record yet (its add-node may
        be answered by one of these nodes; the cache always shows the record before its launch). An
        adopted node is counted, scaled down like any other, and never deleted on sight.
        """
        records = []
        for o in self.vpsienodes.store.by_index(
            SOURCE_INDEX, source_key(group.metadata.name, _managed_of(group), size)
        ):
            try:
                records.append(VPSieNode.from_k8s(o))
            except ValidationError:
                return  # a record we cannot read may own any of these nodes: never adopt past it
        if any(vn.status.launch is None and vn.spec.adopt is None for vn in records):
            return
        async with self.book.lock(source):
            waiting, owned = self.book.view(records)
            strays = unowned(source, waiting, listed, owned)
            for inst in strays:
                if inst.identifier is None:
                    continue
                note = f"VPSie node {inst.hostname} is in the group without a record"
                if self.writes.would(f"adopt it ({note})", obj=obj, action=ACTION_SCALE):
                    continue
                created = await self._create_one(
                    group, adopt=AdoptTarget(identifier=inst.identifier, hostname=inst.hostname), size=size
                )
                if created is None:
                    continue
                self.book.expect(instance_key(inst), created)
                self.metrics.adopted_instances_total.labels(group.metadata.name).inc()
                self.recorder.event(
                    obj, "Normal", REASON_ADOPTING, f"{note}: adopted as VPSieNode {created}", ACTION_SCALE
                )
                log.warning(
                    "nodegroup.adopted",
                    nodegroup=group.metadata.name,
                    hostname=inst.hostname,
                    vpsienode=created,
                )

    async def _create(self, group: NodeGroup, need: int) -> int:
        created = 0
        for _ in range(need):
            if await self._create_one(group) is not None:
                created += 1
        return created

    async def _create_one(
        self, group: NodeGroup, *, adopt: AdoptTarget | None = None, size: int | None = None
    ) -> str | None:
        for _attempt in range(CREATE_ATTEMPTS):
            node = new_vpsienode(group, rng=self.rng)
            node.spec.adopt = adopt
            node.spec.plan_size_id = size
            try:
                if await self.writes.create(VPSIENODES, creation_body(node)) is None:
                    return None  # dry-run
            except errors.AlreadyExists:
                continue
            self._expect(group.metadata.name, node.metadata.name, lambda o: True)
            log.info(
                "nodegroup.created_vpsienode", nodegroup=group.metadata.name, vpsienode=node.metadata.name
            )
            return node.metadata.name
        return None

    async def _request_drains(self, chosen: list[VPSieNode], now: datetime) -> int:
        """Annotate each chosen VPSieNode (the drain protocol); returns how many were requested."""
        requested = 0
        for vn in chosen:
            patch = {
                "metadata": {
                    "annotations": {
                        DRAIN_REQUESTED_ANNOTATION: rfc3339(now),
                        DRAIN_REASON_ANNOTATION: rules.STEP_DRAIN_ABOVE_MAX,
                    }
                }
            }
            try:
                if await self.writes.merge_patch(VPSIENODES, vn.metadata.name, patch) is None:
                    continue  # dry-run
            except errors.NotFound:
                continue
            self._expect(vn.spec.node_group, vn.metadata.name, _drain_requested)
            requested += 1
        return requested

    def _conditions(  # noqa: PLR0917 - everything the conditions are computed from
        self,
        obj: dict[str, Any],
        group: NodeGroup,
        st: NodeGroupStatus,
        counts: nodegroup_status.Counts,
        back: nodegroup_status.Backoff,
        in_backoff: bool,
        cloud_error: str | None,
        now: datetime,
    ) -> None:
        spec, gen = group.spec, group.metadata.generation

        def put(type_: str, ok: bool, reason: str, message: str) -> bool:
            return set_condition(
                st.conditions,
                type_,
                "True" if ok else "False",
                reason,
                message[:MESSAGE_MAX_LENGTH],
                now=now,
                observed_generation=gen,
            )

        was_backoff = (c := group.status.condition(CONDITION_BACKOFF)) is not None and c.status == "True"
        was_error = (c := group.status.condition(CONDITION_CLOUD_ERROR)) is not None and c.status == "True"
        ready_ok, state = nodegroup_status.ready_state(
            cloud_error=cloud_error is not None,
            in_backoff=in_backoff,
            counts=counts,
            min_nodes=spec.min_nodes,
            max_nodes=spec.max_nodes,
        )
        summary = (
            f"{counts.current} current ({counts.ready} ready, {counts.provisioning} provisioning), "
            f"{counts.deleting} leaving, {counts.failed} failed; min {spec.min_nodes}, max {spec.max_nodes}"
        )
        put(CONDITION_READY, ready_ok, state, cloud_error or summary)
        put(
            CONDITION_SCALING_UP,
            counts.provisioning > 0,
            "Provisioning" if counts.provisioning else "Idle",
            f"{counts.provisioning} node(s) provisioning",
        )
        put(
            CONDITION_SCALING_DOWN,
            counts.deleting > 0,
            "Draining" if counts.deleting else "Idle",
            f"{counts.deleting} node(s) leaving",
        )
        if in_backoff:
            klass = (back.error_class or "unknown").title().replace("_", "")
            msg = (
                f"{back.failures} consecutive provisioning failure(s), last {back.error_class}: "
                f"{back.last_error or ''}; no scale-up until {rfc3339(back.until or now)}"
            )
            put(CONDITION_BACKOFF, True, klass, msg)
            if not was_backoff:
                self.recorder.event(obj, "Warning", REASON_BACKOFF, msg, ACTION_SCALE)
        else:
            put(
                CONDITION_BACKOFF, False, "NoRecentFailures", "no provisioning failure since the last success"
            )
        put(
            CONDITION_AT_MIN_CAPACITY,
            counts.current <= spec.min_nodes,
            "AtMin" if counts.current <= spec.min_nodes else "AboveMin",
            f"{counts.current} of min {spec.min_nodes}",
        )
        put(
            CONDITION_AT_MAX_CAPACITY,
            counts.current >= spec.max_nodes,
            "AtMax" if counts.current >= spec.max_nodes else "BelowMax",
            f"{counts.current} of max {spec.max_nodes}",
        )
        if cloud_error is not None:
            put(CONDITION_CLOUD_ERROR, True, "VPSieAPIError", cloud_error)
            if not was_error:
                self.recorder.event(obj, "Warning", REASON_CLOUD_ERROR, cloud_error, ACTION_SCALE)
        else:
            put(
                CONDITION_CLOUD_ERROR, False, "VPSieReachable", "the last VPSie call for this group succeeded"
            )

    def _gauges(self, group: NodeGroup, st: NodeGroupStatus, in_backoff: bool) -> None:
        name, m = group.metadata.name, self.metrics
        m.nodegroup_min_nodes.labels(name).set(group.spec.min_nodes)
        m.nodegroup_max_nodes.labels(name).set(group.spec.max_nodes)
        m.nodegroup_desired_nodes.labels(name).set(st.desired_nodes)
        m.nodegroup_current_nodes.labels(name).set(st.current_nodes)
        m.nodegroup_ready_nodes.labels(name).set(st.ready_nodes)
        m.nodegroup_backoff.labels(name).set(1 if in_backoff else 0)
        price = group.spec.template.effective_hourly_price()
        if price is None:
            price = self.plan_price(group)
        m.nodegroup_hourly_cost.labels(name).set((price or 0.0) * st.current_nodes)

    # -- invalid objects --------------------------------------------------------------------------

    async def _report_invalid(self, obj: dict[str, Any], why: str) -> None:
        """Event ``InvalidSpec`` once per generation, condition ``ValidationFailed`` written with a raw
        merge patch (the model cannot parse the object), the ``invalid_objects`` gauge."""
        meta = obj.get("metadata") or {}
        name = meta.get("name", "")
        if self.invalid.note(obj, why) and not _validation_failed(obj, why):
            log.error("nodegroup.invalid", nodegroup=name, error=why)
            self.recorder.event(obj, "Warning", REASON_INVALID, f"cannot parse: {why}", "Validate")
        if meta.get("deletionTimestamp") or _validation_failed(obj, why):
            return
        await self._put_validation_condition(obj, "True", REASON_INVALID, f"cannot parse: {why}")

    async def _put_validation_condition(
        self, obj: dict[str, Any], status: str, reason: str, message: str
    ) -> None:
        meta = obj.get("metadata") or {}
        now = rfc3339(self.clock.now())
        found = _conditions(obj)
        previous = next((c for c in found if c.get("type") == CONDITION_VALIDATION_FAILED), None)
        condition = {
            "type": CONDITION_VALIDATION_FAILED,
            "status": status,
            "reason": reason,
            "message": message[:MESSAGE_MAX_LENGTH],
            "lastTransitionTime": (
                previous.get("lastTransitionTime") or now
                if previous is not None and previous.get("status") == status
                else now
            ),
            "observedGeneration": meta.get("generation") or 0,
        }
        others = [c for c in found if c.get("type") != CONDITION_VALIDATION_FAILED]
        patch = {
            "metadata": {"resourceVersion": meta.get("resourceVersion")},
            "status": {"conditions": [*others, condition]},
        }
        try:
            await self.client.merge_patch(NODEGROUPS, meta.get("name", ""), patch, subresource="status")
        except (errors.Conflict, errors.NotFound):
            raise
        except errors.KubeError as exc:  # e.g. the stored status itself is what the schema refuses
            log.warning("nodegroup.validation_condition_failed", nodegroup=meta.get("name"), error=str(exc))

    # -- deletion ---------------------------------------------------------------------------------

    async def _finalize(self, obj: dict[str, Any]) -> Result:
        """From the raw object (an invalid group is deleted the same way): delete the group's
        VPSieNodes (label index, parsable or not), then drop the finalizer once none is left."""
        meta = obj.get("metadata") or {}
        name = meta.get("name", "")
        if NODEGROUP_FINALIZER not in (meta.get("finalizers") or []):
            return Result()
        members = list(self.vpsienodes.store.by_index(GROUP_INDEX, name))
        if self.writes.would(f"delete {len(members)} VPSieNode(s)", obj=obj, action=ACTION_SCALE):
            return Result(requeue_after=self.options.resync_interval)
        if members:
            pending = [o for o in members if not (o.get("metadata") or {}).get("deletionTimestamp")]
            for o in pending:
                try:
                    await self.writes.delete(VPSIENODES, o["metadata"]["name"])
                except errors.NotFound:
                    continue
            if pending:
                self.recorder.event(
                    obj,
                    "Normal",
                    REASON_DELETING,
                    f"deleting {len(pending)} VPSieNode(s) of the group",
                    ACTION_SCALE,
                )
            return Result(requeue_after=DELETE_POLL_SECONDS)
        await self._release_vpsie_group(obj)
        await self.writes.remove_finalizer(NODEGROUPS, obj, NODEGROUP_FINALIZER)
        self.metrics.forget_group(name)
        return Result()

    async def _release_vpsie_group(self, obj: dict[str, Any]) -> None:
        """``groupDeletionPolicy: Delete``: the VPSie group this NodeGroup created goes with it, once
        empty (``Providers.delete_group_if_empty``); ``Retain`` (the default) leaves it. Read from the
        raw object: an invalid NodeGroup is deleted the same way."""
        managed = (obj.get("spec") or {}).get("managed") or {}
        found = (obj.get("status") or {}).get("managed") or {}
        if managed.get("groupDeletionPolicy") != GROUP_DELETE or not found.get("created"):
            return
        cluster, group_id = found.get("clusterIdentifier"), found.get("nodeGroupId")
        if not isinstance(cluster, str) or not isinstance(group_id, int):
            return
        what = (
            f"delete VPSie node group {found.get('nodeGroupName') or group_id} (groupDeletionPolicy Delete)"
        )
        if self.writes.would(what, obj=obj, action=ACTION_RESOLVE):
            return
        try:
            done = await self.providers.delete_group_if_empty(
                cluster, group_id, reason=f"NodeGroup {obj['metadata']['name']} deleted"
            )
        except VPSieError as exc:
            # Kept, and said so: a NodeGroup deletion never waits on VPSie.
            done = f"VPSie node group {group_id} not deleted: {exc}"
        self.recorder.event(obj, "Normal", REASON_GROUP_DELETED, done, ACTION_RESOLVE)
        log.info("nodegroup.vpsie_group_released", nodegroup=obj["metadata"]["name"], outcome=done)


def _conditions(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = (obj.get("status") or {}).get("conditions")
    return [c for c in found if isinstance(c, Mapping)] if isinstance(found, list) else []


def _validation_failed(obj: Mapping[str, Any], why: str | None = None) -> bool:
    """The stored status already says ``ValidationFailed=True`` for this generation (and reason)."""
    generation = (obj.get("metadata") or {}).get("generation") or 0
    for c in _conditions(obj):
        if c.get("type") == CONDITION_VALIDATION_FAILED and c.get("status") == "True":
            if why is None:
                return True
            return (
                c.get("observedGeneration") == generation
                and c.get("message") == f"cannot parse: {why}"[:MESSAGE_MAX_LENGTH]
            )
    return False
