"""Writes a controller made that its informer cache has not shown yet (client-go's
``ControllerExpectations``, used by the ReplicaSet controller; controller-runtime users write the
same by hand).

A reconcile that counts objects from a cache right after creating or patching some would count its
own writes as missing and do them again. So each write is *expected*: until the cache shows it (the
caller's ``observed`` predicate says so) or its deadline passes, the caller treats it as done (skip
the reconcile, or add the pending objects to its snapshot). Deadlines run on the injected
:class:`~vpsie_autoscaler.runtime.clock.Clock`, so tests drive them with a fake clock. A write never
seen within the timeout is given up: the next reconcile counts from the cache again, which is the
level-triggered truth.

In memory on purpose: a restarted controller starts from freshly listed caches, which already hold
every write it made before.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

from vpsie_autoscaler.runtime.clock import Clock

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Expectations(Generic[K, V]):
    """Pending writes by key, each with a value (the created object, a predicate, a name…).

    ``timeout``: seconds after which an unseen write is given up; None keeps it until it is observed
    or forgotten (for writes whose absence must never be mistaken for "not done").
    """

    def __init__(self, clock: Clock, timeout: float | None) -> None:
        self._clock = clock
        self._timeout = timeout
        self._pending: dict[K, tuple[V, float | None]] = {}

    def expect(self, key: K, value: V) -> None:
        """A write was made: treat it as done until the cache shows it (or it times out)."""
        deadline = None if self._timeout is None else self._clock.monotonic() + self._timeout
        self._pending[key] = (value, deadline)

    def observe(self, key: K) -> None:
        """The cache shows the write of ``key``."""
        self._pending.pop(key, None)

    def forget(self, key: K) -> None:
        """Stop expecting ``key`` (its object is gone, or the write was undone)."""
        self._pending.pop(key, None)

    def get(self, key: K) -> V | None:
        entry = self._pending.get(key)
        return None if entry is None else entry[0]

    def pending(self, observed: Callable[[K, V], bool] | None = None) -> dict[K, V]:
        """The writes still pending: those ``observed(key, value)`` confirms and those past their
        deadline are dropped first."""
        now = self._clock.monotonic()
        for key, (value, deadline) in list(self._pending.items()):
            if (deadline is not None and now > deadline) or (observed is not None and observed(key, value)):
                del self._pending[key]
        return {key: value for key, (value, _) in self._pending.items()}

    def items(self) -> Iterator[tuple[K, V]]:
        """Every pending write, deadlines not checked (for lookups by value)."""
        return ((key, value) for key, (value, _) in list(self._pending.items()))

    def __len__(self) -> int:
        return len(self._pending)
