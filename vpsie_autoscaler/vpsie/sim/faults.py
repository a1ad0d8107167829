"""Fault injection for the simulator, per route, changeable at run time.

A fault matches requests by method and a glob on the path (``fnmatch``: ``/apps/v2/k8s/*``). Each
matching request triggers it with ``probability`` (a seeded random source, so runs repeat) while
``times`` (if set) is not used up. Kinds:

- ``error``: answer ``status`` (default 500) with the JSON error envelope;
- ``html_502``: a 502 with an HTML body, as a load balancer in front of the API would send;
- ``rate_limit``: 429 with ``Retry-After: retry_after`` (VPSie's real 429 behaviour is unknown, §3.4);
- ``error_200``: HTTP 200 with ``{"error": true, "message": message}`` (seen live, §3.2);
- ``latency``: wait ``seconds`` before answering normally;
- ``never_boot``: the request is served, but an instance it creates never comes up.
"""

from __future__ import annotations

import fnmatch
import random
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class FaultKind(StrEnum):
    ERROR = "error"
    HTML_502 = "html_502"
    RATE_LIMIT = "rate_limit"
    ERROR_200 = "error_200"
    LATENCY = "latency"
    NEVER_BOOT = "never_boot"


class FaultSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: FaultKind
    path: str = "*"
    method: str = "*"
    probability: float = Field(default=1.0, ge=0.0, le=1.0)
    times: int | None = Field(default=None, ge=0)
    status: int = Field(default=500, ge=400, le=599)
    retry_after: float = Field(default=1.0, ge=0)
    message: str = "Simulated failure"
    seconds: float = Field(default=1.0, ge=0)


class Fault(FaultSpec):
    id: int
    hits: int = 0


class FaultSet:
    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._faults: dict[int, Fault] = {}
        self._next_id = 1

    def add(self, spec: FaultSpec) -> Fault:
        fault = Fault(id=self._next_id, **spec.model_dump())
        self._faults[fault.id] = fault
        self._next_id += 1
        return fault

    def remove(self, fault_id: int) -> bool:
        return self._faults.pop(fault_id, None) is not None

    def clear(self) -> None:
        self._faults.clear()

    def all(self) -> list[Fault]:
        return list(self._faults.values())

    def trigger(self, method: str, path: str) -> list[Fault]:
        """The faults that fire for this request (each consumes one of its ``times``)."""
        fired = []
        for fault in self._faults.values():
            if fault.method not in ("*", method.upper()) or not fnmatch.fnmatchcase(path, fault.path):
                continue
            if fault.times is not None and fault.hits >= fault.times:
                continue
            if fault.probability < 1.0 and self._rng.random() >= fault.probability:
                continue
            fault.hits += 1
            fired.append(fault)
        return fired
