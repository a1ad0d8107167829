"""Fault injection for the simulator, per route, changeable at run time.

A fault matches requests by method and a glob on the path (``fnmatch``: ``/apps/v2/k8s/*``). Each
matching request triggers it with ``probability`` (a seeded random source, so runs repeat) while
``times`` (if set) is not used up. Faults are set in the config file (``faults: [...]``), by the
``cloudsim --fault '<json>'`` option, or at run time with ``POST /_sim/faults`` (body: a
:class:`FaultSpec` as JSON). Kinds, by whether the request is carried out:

Refused before acting (the state is left untouched; a create, delete or reduce did not happen):

- ``error``: answer ``status`` (default 500) with the JSON error envelope;
- ``html_502``: a 502 with an HTML body, as a load balancer in front of the API would send;
- ``rate_limit``: 429 with ``Retry-After: retry_after`` (VPSie's real 429 behaviour is unknown, §3.4);
- ``error_200``: HTTP 200 with ``{"error": true, "message": message}`` (seen live, §3.2).

Carried out (the state changes as without the fault):

- ``latency``: wait ``seconds``, then serve the request and answer normally. The request is carried
  out after the wait even if the client has given up meanwhile (the server does not cancel it);
- ``never_boot``: the request is served, but an instance it creates never comes up;
- ``reply_lost``: the request is served (the mutation is applied), then the answer is lost on the way
  back, as ``lost_as`` says: ``"502"`` an HTML 502 (nginx), ``"504"`` an HTML 504 Gateway Time-out
  (nginx), ``"504_json"`` a 504 with the JSON error envelope, ``"reset"`` the connection is dropped
  with no HTTP response at all (the client sees a disconnect, e.g. ``ServerDisconnectedError``);
- ``late_reply``: the request is served (the mutation is applied), then the normal answer is sent
  only after ``seconds``; set ``seconds`` above the client's request timeout so it gives up first.

``reply_lost`` and ``late_reply`` are meant for the mutating routes (add-node, node delete, reduce,
VM create, VM delete, and the others that change state); on a read route nothing changes, so they
amount to an error (``reply_lost``) or to ``latency`` (``late_reply``). They apply only to a request
that reaches its handler: an unknown route (404) or a missing token (401) is answered as usual, and
if a refusing kind fires for the same request, the refusal wins. A handler's own error answer (e.g.
400 for a bad body) is lost or delayed like a success.
"""

from __future__ import annotations

import fnmatch
import random
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class FaultKind(StrEnum):
    ERROR = "error"
    HTML_502 = "html_502"
    RATE_LIMIT = "rate_limit"
    ERROR_200 = "error_200"
    LATENCY = "latency"
    NEVER_BOOT = "never_boot"
    REPLY_LOST = "reply_lost"
    LATE_REPLY = "late_reply"


REFUSING_KINDS = frozenset({FaultKind.ERROR, FaultKind.HTML_502, FaultKind.RATE_LIMIT, FaultKind.ERROR_200})
"""Kinds that answer before the request is carried out: the state is left untouched."""
AFTER_KINDS = frozenset({FaultKind.REPLY_LOST, FaultKind.LATE_REPLY})
"""Kinds that act on the answer of a request that was carried out."""

LostAs = Literal["502", "504", "504_json", "reset"]


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
    lost_as: LostAs = "502"

    @field_validator("lost_as", mode="before")
    @classmethod
    def _status_as_text(cls, value: Any) -> Any:
        # ``lost_as: 502`` in YAML or JSON is a number; accept it as the status it names.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


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
