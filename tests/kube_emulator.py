"""kmock's KubernetesEmulator served over HTTP from a background thread, with fault injection.

The official (synchronous) ``kubernetes`` client talks to it like to a real API server.
Faults are injected per request: an error status instead of an answer, or a "lost
response" (the object is stored, then the client gets a 500), which is what kmock does
on its own for an injected 500 on create (design.md "Measured facts").
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import attrs
import kmock
from kmock._internal import k8s as kmock_k8s


@dataclass
class Faults:
    """What to inject; changed by tests while the server runs."""

    rate: float = 0.0                       # share of API requests that fail
    statuses: tuple[int, ...] = (429, 500, 503)
    lost_create_names: set[str] = field(default_factory=set)  # store, then answer 500 once
    forbidden: set[tuple[str, str]] = field(default_factory=set)  # (verb, plural): a 403
    seed: int = 0
    rng: random.Random = field(default_factory=random.Random)
    injected: int = 0


@attrs.define(kw_only=True)
class FaultyEmulator(kmock.KubernetesEmulator):
    faults: Faults = attrs.field(factory=Faults)
    served: int = 0
    # kmock matches each request against its whole request history (quadratic: 1,000
    # creates take minutes); the benchmark keeps only the requests that may be in flight
    trim_history: bool = False

    async def _handle(self, request: Any) -> Any:
        self.served += 1
        if self.trim_history:
            del self._requests[:-64]
        if request.resource is not None:
            name = ((request.data or {}).get("metadata") or {}).get("name") if isinstance(
                request.data, dict) else None
            if request.action == kmock.action.CREATE and name in self.faults.lost_create_names:
                self.faults.lost_create_names.discard(name)
                await super()._handle(request)  # stored...
                self.faults.injected += 1
                raise kmock_k8s.KubernetesError(status=500, reason="InternalError",
                                                message="lost response (injected)")
            if (str(request.action.name).lower(), request.resource.plural) in \
                    self.faults.forbidden:
                raise kmock_k8s.KubernetesError(status=403, reason="Forbidden",
                                                message="forbidden (injected)")
            if self.faults.rate and self.faults.rng.random() < self.faults.rate:
                self.faults.injected += 1
                status = self.faults.rng.choice(self.faults.statuses)
                if status == 500 and request.action == kmock.action.CREATE:
                    await super()._handle(request)  # a 500 after the store: a lost response
                raise kmock_k8s.KubernetesError(status=status, reason="Injected",
                                                message=f"injected {status}")
        return await super()._handle(request)


@dataclass
class RunningEmulator:
    url: str
    emulator: FaultyEmulator

    def objects(self, kind: str, namespace: str) -> dict[str, dict[str, Any]]:
        """name -> stored object (not deleted) of a kind ("jobs" or "configmaps")."""
        out: dict[str, dict[str, Any]] = {}
        for (resource, ns, name), obj in list(self.emulator.objects.items()):
            if resource.plural == kind and ns == namespace and not obj.deleted:
                out[name] = obj.raw
        return out

    def creates(self, kind: str) -> int:
        return sum(1 for r in list(self.emulator) if r.action == kmock.action.CREATE
                   and r.resource is not None and r.resource.plural == kind)


@contextmanager
def running_emulator(*, trim_history: bool = False) -> Iterator[RunningEmulator]:
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def serve() -> None:
        stop = asyncio.Event()
        holder["stop"] = stop
        holder["loop"] = asyncio.get_running_loop()
        async with FaultyEmulator(trim_history=trim_history) as emulator, \
                kmock.Server(emulator) as server:
            # kmock answers 404 to a list of a resource it has never seen: declare ours
            emulator.resources["batch/v1/jobs"] = kmock.ResourceInfo(kind="Job", namespaced=True)
            emulator.resources["v1/configmaps"] = kmock.ResourceInfo(kind="ConfigMap",
                                                                    namespaced=True)
            emulator.resources["v1/services"] = kmock.ResourceInfo(kind="Service",
                                                                  namespaced=True)
            holder["url"] = str(server.url).rstrip("/")
            holder["emulator"] = emulator
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    if not ready.wait(30):
        raise RuntimeError("kmock did not start")
    try:
        yield RunningEmulator(holder["url"], holder["emulator"])
    finally:
        holder["loop"].call_soon_threadsafe(holder["stop"].set)
        thread.join(10)
