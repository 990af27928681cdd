"""The garbage collector of kube-controller-manager, simplified: it finishes what a DELETE started.

Upstream, the API server only marks or removes the object it was asked to delete; dependents found
through ``metadata.ownerReferences`` are the collector's, which works asynchronously:

* an object whose owners are all gone is deleted (Background: the owner went first);
* an owner held by ``foregroundDeletion`` has its dependents deleted, and loses the finalizer (so
  disappears) once no dependent with ``blockOwnerDeletion`` is left;
* an owner held by ``orphan`` has its ownerReference removed from every dependent, then loses the
  finalizer: the dependents keep running without an owner.

Each pass handles what it sees and schedules the next one ``gc_delay`` seconds later while it still
changes something, so a chain (Deployment → ReplicaSet → Pods) goes one link per pass, as clients
of a real cluster observe it. The collector belongs to the controller manager: while the
emulator's controller is paused (``controller.enabled = False``) it waits too.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import logging
import threading
from collections.abc import Mapping
from typing import Any

from bot.sandbox.kubeapi.resources import Obj, ResourceType, meta_of
from bot.sandbox.kubeapi.writes import FOREGROUND, FOREGROUND_FINALIZER, ORPHAN_FINALIZER, Writes

log = logging.getLogger(__name__)


def _refs(obj: Mapping[str, Any]) -> list[Obj]:
    return list(meta_of(obj).get("ownerReferences") or [])


def _finalizers(obj: Mapping[str, Any]) -> list[str]:
    return list(meta_of(obj).get("finalizers") or [])


class GarbageCollector(Writes):
    """Dependents of deleted owners, and the ``foregroundDeletion``/``orphan`` finalizers."""

    gc_delay: float = 0.05  # seconds between a change and the collector's next pass
    _gc_timer: asyncio.TimerHandle | None = None

    def _gc_soon(self) -> None:
        loop = self._loop
        if loop is None or not loop.is_running() or self._gc_timer is not None:
            return
        if threading.current_thread() is not self._loop_thread:
            loop.call_soon_threadsafe(self._gc_soon)
            return
        self._gc_timer = loop.call_later(self.gc_delay, self._gc_pass)

    def _gc_stop(self) -> None:
        if self._gc_timer is not None:
            self._gc_timer.cancel()
            self._gc_timer = None

    def _gc_pass(self) -> None:
        self._gc_timer = None
        if not self.controller.enabled:
            self._gc_soon()  # look again once the controller manager runs
            return
        try:
            with self._store.lock:
                changed = self._collect()
        except Exception:  # the emulator must outlive a bug here; the next change retries
            log.exception("kube emulator garbage collector failed")
            return
        if changed:
            self._gc_soon()

    # ----------------------------------------------------------------------------------------------

    def _everything(self) -> list[tuple[ResourceType, Obj]]:
        found = []
        for key in self._store.resource_keys():
            rt = self._type_for_key(key)
            if rt is not None:
                found += [(rt, obj) for obj in self._store.items(key)]
        return found

    def _current(self, rt: ResourceType, obj: Mapping[str, Any]) -> Obj | None:
        """The object as stored now, if it is still the same one (same uid)."""
        meta = meta_of(obj)
        now = self._store.get(rt.key, meta.get("namespace"), meta["name"])
        return now if now is not None and meta_of(now).get("uid") == meta.get("uid") else None

    def _collect(self) -> bool:
        everything = self._everything()
        by_uid = {meta_of(obj).get("uid"): (rt, obj) for rt, obj in everything}
        dependents: dict[str, list[tuple[ResourceType, Obj]]] = collections.defaultdict(list)
        for rt, obj in everything:
            for ref in _refs(obj):
                dependents[str(ref.get("uid"))].append((rt, obj))

        def alive(uid: str) -> Obj | None:
            found = by_uid.get(uid)
            return self._current(*found) if found is not None else None

        changed = False
        for rt, obj in everything:
            if meta_of(obj).get("deletionTimestamp"):
                changed |= self._finish_owner(rt, obj, dependents.get(meta_of(obj).get("uid", ""), []))
        for rt, obj in everything:
            current = self._current(rt, obj)
            if current is None or not _refs(current) or meta_of(current).get("deletionTimestamp"):
                continue
            owners = [(ref, alive(str(ref.get("uid")))) for ref in _refs(current)]
            living = [owner for _, owner in owners if owner is not None]
            if not living:
                self._delete_object(rt, current)
                changed = True
                continue
            solid = [o for o in living if not (meta_of(o).get("deletionTimestamp")
                                               and FOREGROUND_FINALIZER in _finalizers(o))]
            if not solid:  # every owner left waits for its dependents: this one goes first
                has_own = bool(dependents.get(meta_of(current).get("uid", "")))
                self._delete_object(rt, current, FOREGROUND if has_own else None)
                changed = True
            elif len(living) < len(owners):  # references to owners that are gone are dropped
                kept = [ref for ref, owner in owners if owner is not None]
                self._set_refs(rt, current, kept)
                changed = True
        return changed

    def _finish_owner(self, rt: ResourceType, obj: Obj, deps: list[tuple[ResourceType, Obj]]) -> bool:
        uid = meta_of(obj).get("uid")
        finalizers = _finalizers(obj)
        if ORPHAN_FINALIZER in finalizers:
            for drt, dependent in deps:
                current = self._current(drt, dependent)
                if current is not None:
                    self._set_refs(drt, current, [r for r in _refs(current) if r.get("uid") != uid])
            self._drop_finalizer(rt, obj, ORPHAN_FINALIZER)
            return True
        if FOREGROUND_FINALIZER in finalizers:
            blocking = [d for drt, d in deps if self._current(drt, d) is not None
                        and any(r.get("uid") == uid and r.get("blockOwnerDeletion") for r in _refs(d))]
            if not blocking:
                self._drop_finalizer(rt, obj, FOREGROUND_FINALIZER)
                return True
        return False

    def _drop_finalizer(self, rt: ResourceType, obj: Obj, finalizer: str) -> None:
        current = self._current(rt, obj)
        if current is None:
            return
        new = copy.deepcopy(current)
        new["metadata"]["finalizers"] = [f for f in _finalizers(current) if f != finalizer]
        if not new["metadata"]["finalizers"]:
            del new["metadata"]["finalizers"]
        self._write(rt, new, current)  # the last finalizer gone: the object goes (DELETED)

    def _set_refs(self, rt: ResourceType, obj: Obj, refs: list[Obj]) -> None:
        new = copy.deepcopy(obj)
        if refs:
            new["metadata"]["ownerReferences"] = refs
        else:
            new["metadata"].pop("ownerReferences", None)
        self._write(rt, new, obj)
