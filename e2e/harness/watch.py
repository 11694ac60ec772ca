"""A record of what happened to a namespace's pods, for assertions about order.

`PodHistory` polls the pods of one namespace every 0.2 s from a thread and keeps, per pod
object (uid): its name, when it was first seen, when it first was Ready, and when its
deletion began (deletionTimestamp seen, or the object gone). Polling can miss a state
shorter than its period; the rollouts it watches take seconds per step.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from .kube import Api, condition


@dataclass
class PodLife:
    name: str
    uid: str
    seen: float
    ready: float | None = None
    deleting: float | None = None


class PodHistory:
    def __init__(self, api: Api, namespace: str, interval_s: float = 0.2):
        self.api, self.namespace, self.interval_s = api, namespace, interval_s
        self.lives: dict[str, PodLife] = {}
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="pod-history")

    def __enter__(self) -> "PodHistory":
        self._poll()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._poll()
            except Exception:  # noqa: BLE001 - a missed poll is only a coarser record
                self.errors += 1

    def _poll(self) -> None:
        now = time.monotonic()
        pods = self.api.get(f"/api/v1/namespaces/{self.namespace}/pods")["items"]
        present = set()
        for pod in pods:
            uid = pod["metadata"]["uid"]
            present.add(uid)
            life = self.lives.setdefault(uid, PodLife(pod["metadata"]["name"], uid, now))
            c = condition(pod, "Ready")
            if life.ready is None and c is not None and c["status"] == "True":
                life.ready = now
            if life.deleting is None and pod["metadata"].get("deletionTimestamp"):
                life.deleting = now
        for life in self.lives.values():
            if life.uid not in present and life.deleting is None:
                life.deleting = now

    def of(self, name: str) -> list[PodLife]:
        """The lives of pod `name`, oldest first."""
        return sorted((l for l in self.lives.values() if l.name == name), key=lambda l: l.seen)

    def deletions(self) -> list[PodLife]:
        """The pod objects whose deletion began, in that order."""
        return sorted((l for l in self.lives.values() if l.deleting is not None),
                      key=lambda l: l.deleting)

    def describe(self) -> str:
        start = min((l.seen for l in self.lives.values()), default=0.0)

        def at(t):
            return "-" if t is None else f"{t - start:.1f}s"
        return "\n".join(
            f"{l.name} {l.uid[:8]}: seen {at(l.seen)} ready {at(l.ready)} deleting {at(l.deleting)}"
            for l in sorted(self.lives.values(), key=lambda l: l.seen))
