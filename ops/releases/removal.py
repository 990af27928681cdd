"""Removing a release's objects the way kube-apiserver deletes: a DELETE only starts it.

With `propagationPolicy: Foreground` the owner stays readable (deletionTimestamp set, held by the
`foregroundDeletion` finalizer) until the garbage collector has removed its dependents, and any
other finalizer holds an object until its controller removes it. So a read right after the DELETE
proves nothing: this waits until each object is gone (404, or a new object of the same name: another
uid), bounded by a timeout, and otherwise says what is left and what holds it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ops.releases.api import ReleaseApi
from ops.releases.manifests import ObjectRef, kind_rank

# Finalizers the garbage collector itself sets for a propagation policy; it removes them.
GC_FINALIZERS = ("foregroundDeletion", "orphan")


@dataclass
class Removal:
    deleted: list[ObjectRef] = field(default_factory=list)  # were there, and are gone now
    left: dict[ObjectRef, str] = field(default_factory=dict)  # still there: why

    @property
    def ok(self) -> bool:
        return not self.left

    @property
    def why(self) -> str:
        return "; ".join(self.left[ref] for ref in sorted(self.left))


def holding(ref: ObjectRef, obj: Mapping[str, Any]) -> str:
    """Why an object is still there after its DELETE, in words a user can act on."""
    meta = obj.get("metadata") or {}
    finalizers = list(meta.get("finalizers") or [])
    foreign = [f for f in finalizers if f not in GC_FINALIZERS]
    if not meta.get("deletionTimestamp"):
        return f"{ref.kind} {ref.name} is not being deleted (was it created again?)"
    if foreign:
        noun = "finalizer" if len(foreign) == 1 else "finalizers"
        return (f"{ref.kind} {ref.name} is held by {noun} {', '.join(foreign)} (the controller that set it "
                "has not released it; remove it once that is safe)")
    if "foregroundDeletion" in finalizers:
        return (f"{ref.kind} {ref.name} waits for the garbage collector to delete its dependents "
                "(finalizer foregroundDeletion; a dependent may itself be held by a finalizer)")
    return f"{ref.kind} {ref.name} is still being deleted"


def remove(api: ReleaseApi, refs: Iterable[ObjectRef], *, timeout: float, progress: Callable[[str], None],
           what: str = "", waiting: Mapping[ObjectRef, str] | None = None, poll: float = 0.25) -> Removal:
    """Delete `refs` (Foreground, in reverse apply order) and wait until they are gone, with `waiting`
    (objects whose deletion the caller started: ref → uid), or until `timeout` ran out.

    `progress` gets one line whenever the picture changes (the caller edits one message with it)."""
    doomed = sorted(set(refs) - set(waiting or {}), key=lambda r: (kind_rank(r.kind), r.name), reverse=True)
    uids: dict[ObjectRef, str] = dict(waiting or {})
    for ref in doomed:
        uid = api.delete(ref)
        if uid is not None:
            uids[ref] = uid
    result = Removal()
    pending = dict(uids)
    last: dict[ObjectRef, Mapping[str, Any]] = {}
    deadline = time.monotonic() + timeout
    shown = ""
    label = f" of {what}" if what else ""
    while True:
        for ref, uid in list(pending.items()):
            obj = api.get(ref)
            if obj is None or (uid and (obj.get("metadata") or {}).get("uid") != uid):
                del pending[ref]
                result.deleted.append(ref)
            else:
                last[ref] = obj
        if not pending:
            return result
        reasons = "; ".join(holding(ref, last[ref]) for ref in sorted(pending))
        line = (f"Deleting {len(uids)} object(s){label}: {len(uids) - len(pending)} gone, waiting for "
                f"{', '.join(f'`{r.key}`' for r in sorted(pending))}: {reasons}")
        if line != shown:
            shown = line
            progress(line)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            result.left = {ref: holding(ref, last[ref]) for ref in pending}
            return result
        time.sleep(min(poll, remaining))
        poll = min(poll * 1.5, 2.0)
