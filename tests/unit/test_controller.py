"""Controller semantics from controller-runtime's reconcileHandler (runtime-semantics §1.5, §3.6)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

import pytest
import structlog
from prometheus_client import CollectorRegistry

from tests.support.wait import eventually
from vpsie_autoscaler.kube import errors
from vpsie_autoscaler.runtime.clock import FakeClock
from vpsie_autoscaler.runtime.controller import (
    Controller,
    FuncReconciler,
    Request,
    Result,
    TerminalError,
    generation_changed,
    request_for_object,
)

A = Request("a")


class Harness:
    def __init__(
        self, fn: Callable[[Request], Awaitable[Result]], *, workers: int = 1, timeout: float | None = None
    ) -> None:
        self.clock = FakeClock()
        self.registry = CollectorRegistry()
        self.controller = Controller(
            "test", FuncReconciler(fn), workers=workers, reconcile_timeout=timeout, clock=self.clock,
            registry=self.registry,
        )  # fmt: skip
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.controller.run())

    def total(self, result: str) -> float | None:
        return self.registry.get_sample_value(
            "controller_runtime_reconcile_total", {"controller": "test", "result": result}
        )

    def metric(self, name: str) -> float | None:
        return self.registry.get_sample_value(name, {"controller": "test"})

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


async def test_success_forgets_and_counts() -> None:
    calls: list[Request] = []

    async def fn(req: Request) -> Result:
        calls.append(req)
        return Result()

    h = Harness(fn)
    assert h.total("success") == 0, "result labels are pre-initialised"
    assert h.metric("controller_runtime_max_concurrent_reconciles") == 1
    h.start()
    h.controller.enqueue(A)
    await eventually(lambda: h.total("success") == 1)
    assert calls == [A]
    assert h.controller.queue.num_requeues(A) == 0
    await h.stop()


async def test_an_error_is_requeued_with_exponential_backoff() -> None:
    attempts: list[float] = []

    async def fn(req: Request) -> Result:
        attempts.append(h.clock.monotonic())
        if len(attempts) < 4:
            raise RuntimeError("transient")
        return Result()

    h = Harness(fn)
    h.start()
    h.controller.enqueue(A)
    await eventually(lambda: len(attempts) == 1)
    for _ in range(3):
        n = len(attempts)
        await eventually(lambda: h.controller.queue.waiting() == 1, what="retry scheduled")
        await h.clock.advance(0.05)
        await eventually(lambda n=n: len(attempts) == n + 1, what="retry ran")  # type: ignore[misc]
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.005
    assert h.total("error") == 3
    assert h.metric("controller_runtime_reconcile_errors_total") == 3
    assert h.metric("controller_runtime_reconcile_panics_total") == 3, "non-API exceptions are bugs"
    await eventually(lambda: h.total("success") == 1)
    assert h.controller.queue.num_requeues(A) == 0, "success forgets the failures"
    await h.stop()


async def test_a_terminal_error_is_not_requeued() -> None:
    calls = 0

    async def fn(req: Request) -> Result:
        nonlocal calls
        calls += 1
        raise TerminalError("spec.minNodes > spec.maxNodes")

    h = Harness(fn)
    h.start()
    h.controller.enqueue(A)
    await eventually(lambda: h.metric("controller_runtime_terminal_reconcile_errors_total") == 1)
    await h.clock.advance(2000)
    assert calls == 1
    assert h.controller.queue.waiting() == 0
    assert h.total("error") == 1
    await h.stop()


async def test_a_conflict_is_requeued_not_lost() -> None:
    calls = 0

    async def fn(req: Request) -> Result:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise errors.Conflict("the object has been modified", status=409, reason="Conflict")
        return Result()

    h = Harness(fn)
    h.start()
    h.controller.enqueue(A)
    await eventually(lambda: h.controller.queue.waiting() == 1)
    await h.clock.advance(0.005)
    await eventually(lambda: h.total("success") == 1)
    assert h.metric("controller_runtime_reconcile_panics_total") == 0
    await h.stop()


async def test_requeue_after_forgets_backoff_and_delays() -> None:
    calls: list[float] = []

    async def fn(req: Request) -> Result:
        calls.append(h.clock.monotonic())
        if len(calls) == 1:
            raise RuntimeError("first fails")
        return Result(requeue_after=30)

    h = Harness(fn)
    h.start()
    h.controller.enqueue(A)
    await eventually(lambda: h.controller.queue.waiting() == 1)
    await h.clock.advance(0.005)
    await eventually(lambda: h.total("requeue_after") == 1)
    assert h.controller.queue.num_requeues(A) == 0, "requeue_after resets the back-off"
    await h.clock.advance(29)
    assert len(calls) == 2
    await h.clock.advance(1)
    await eventually(lambda: len(calls) == 3)
    await h.stop()


async def test_requeue_is_rate_limited() -> None:
    async def fn(req: Request) -> Result:
        return Result(requeue=True)

    h = Harness(fn)
    h.start()
    h.controller.enqueue(A)
    await eventually(lambda: h.total("requeue") == 1)
    assert h.controller.queue.num_requeues(A) == 1
    await h.stop()


async def test_an_exception_does_not_kill_the_worker() -> None:
    seen: list[str] = []

    async def fn(req: Request) -> Result:
        seen.append(req.name)
        if req.name == "bad":
            raise ValueError("bug")
        return Result()

    h = Harness(fn)
    h.start()
    h.controller.enqueue(Request("bad"))
    await eventually(lambda: seen == ["bad"])
    h.controller.enqueue(Request("good"))
    await eventually(lambda: seen == ["bad", "good"])
    assert h.controller.alive()
    await h.stop()


async def test_a_hung_reconcile_times_out_and_is_retried() -> None:
    release = asyncio.Event()
    calls = 0

    async def fn(req: Request) -> Result:
        nonlocal calls
        calls += 1
        if calls == 1:
            await release.wait()
        return Result()

    h = Harness(fn, timeout=0.05)
    h.start()
    h.controller.enqueue(A)
    await eventually(lambda: h.metric("controller_runtime_reconcile_timeouts_total") == 1)
    await h.clock.advance(0.005)
    await eventually(lambda: h.total("success") == 1)
    assert h.total("error") == 1
    await h.stop()


async def test_one_key_is_never_reconciled_twice_at_once_with_many_workers() -> None:
    running: set[Request] = set()
    overlaps = 0
    done = 0

    async def fn(req: Request) -> Result:
        nonlocal overlaps, done
        if req in running:
            overlaps += 1
        running.add(req)
        for _ in range(3):
            await asyncio.sleep(0)
        h.controller.enqueue(req)  # an event for the same key arrives mid-reconcile
        running.discard(req)
        done += 1
        return Result()

    h = Harness(fn, workers=4)
    h.start()
    for name in "abc":
        h.controller.enqueue(Request(name))
    await eventually(lambda: done >= 100)
    assert overlaps == 0
    await h.stop()


async def test_every_log_line_of_a_reconcile_carries_its_reconcile_id() -> None:
    logger = structlog.get_logger("test")

    async def fn(req: Request) -> Result:
        logger.info("step one")
        logger.info("step two")
        return Result()

    structlog.configure(processors=[structlog.contextvars.merge_contextvars, structlog.testing.LogCapture()])
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        h = Harness(fn)
        h.start()
        h.controller.enqueue(Request("p", "ns"))
        await eventually(lambda: h.total("success") == 1)
        await h.stop()
    steps = [e for e in logs if e["event"].startswith("step")]
    assert len(steps) == 2
    assert steps[0]["reconcile_id"] == steps[1]["reconcile_id"]
    assert steps[0]["controller"] == "test"
    assert (steps[0]["namespace"], steps[0]["name"]) == ("ns", "p")
    structlog.reset_defaults()


async def test_shutdown_lets_the_in_flight_reconcile_finish() -> None:
    release = asyncio.Event()
    finished: list[str] = []

    async def fn(req: Request) -> Result:
        await release.wait()
        finished.append(req.name)
        return Result()

    h = Harness(fn)
    h.start()
    h.controller.enqueue(A)
    await eventually(lambda: h.metric("controller_runtime_active_workers") == 1)
    h.controller.enqueue(Request("queued"))
    assert h.task is not None
    h.task.cancel()
    await asyncio.sleep(0)
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await h.task
    assert finished == ["a"], "in-flight work finished; queued work is left for the next leader"


def test_request_mapping_and_predicates() -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns", "generation": 1}}
    assert request_for_object(pod) == [Request("p", "ns")]
    assert request_for_object({"metadata": {"name": "n"}}) == [Request("n")]
    assert str(Request("p", "ns")) == "ns/p"
    assert not generation_changed(pod, pod)
    assert generation_changed(pod, {"metadata": {"generation": 2}})
