"""Release operations: deploy, rollback, autoscale and undeploy after approval.

The handler (handlers/deploy.py) rendered the objects and showed them on the card; the executor
applies exactly those, numbers the revision, stores its manifests (bot/db/releases.py), prunes
objects the release no longer has, and watches the rollout with one progress message in the thread.

A delete only starts a deletion (finalizers, the garbage collector's Foreground work): pruning and
undeploy wait until the objects are gone, bounded by the cluster's rollout timeout, and otherwise
fail naming what is left and what holds it. Shared objects (ops/releases/shared.py) lose only this
release's mark while another release uses them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from bot.clusters import Clusters
from bot.config import Config
from bot.db.releases import ReleaseHistory, rollback_target, unstamped
from bot.db.tables import Operation, ReleaseRevision, RevisionStatus
from bot.runs.progress import Outcome, Progress
from ops import releases
from ops.errors import OpsError
from ops.releases import ObjectRef, ReleaseApi, shared

log = logging.getLogger(__name__)


# ---- executors -----------------------------------------------------------------------------------


def _api(op: Operation, config: Config, clusters: Clusters) -> tuple[Any, ReleaseApi]:
    cluster = config.cluster(op.cluster) or clusters.lookup(op.cluster)
    if cluster is None:
        raise OpsError(f"cluster `{op.cluster}` is no longer configured")
    return cluster, ReleaseApi(clusters.get(cluster))


def _timeout(cluster: Any) -> float:
    return max(float(cluster.rollout_timeout_seconds), 1.0)


def _latest(revisions: list[ReleaseRevision]) -> ReleaseRevision | None:
    """The revision in the cluster now: none after an undeploy."""
    return revisions[-1] if revisions and revisions[-1].action != "undeploy" else None


def _present(api: ReleaseApi, namespace: str, name: str, revisions: Sequence[ReleaseRevision],
             extra: Sequence[dict[str, Any]] = ()) -> set[ObjectRef]:
    """What the release has in the cluster now: its labelled objects, of every kind its revisions (and
    `extra`) rendered, plus what the latest revision applied, should a label have been edited away."""
    latest = _latest(list(revisions))
    return present_objects(api, namespace, name, latest=latest.manifests if latest else [],
                           kinds=releases.kinds_of([*extra, *(o for r in revisions for o in r.manifests)]))


def present_objects(api: ReleaseApi, namespace: str, name: str, *, latest: Sequence[dict[str, Any]],
                    kinds: Sequence[tuple[str, str]] = ()) -> set[ObjectRef]:
    """A release's objects: labelled ones of the usual kinds and of `kinds`, and those of its `latest` manifests."""
    present = set(releases.owned_objects(api, namespace, name, kinds))
    return present | {ObjectRef.of(o) for o in latest}


def remove_release(api: ReleaseApi, refs: set[ObjectRef], release: str, timeout: float,
                   progress: Callable[[str], None]) -> tuple[releases.Removal, list[str]]:
    """Delete `refs` and wait until they are gone; a shared object only loses this release's mark,
    unless no other release uses it any more. (Undeploy's removal; destroy can use it too.)"""
    plain = {r for r in refs if not releases.is_shared(r)}
    waiting: dict[ObjectRef, str] = {}
    notes = []
    for ref in sorted(refs - plain):
        uid, others = shared.release(api, ref, release)
        if uid is not None:
            waiting[ref] = uid
        elif others:
            notes.append(f"kept the shared `{ref.key}` (still used by {', '.join(f'`{o}`' for o in others)})")
    removal = releases.remove(api, plain, timeout=timeout, progress=progress, what=f"`{release}`", waiting=waiting)
    return removal, notes


def _refused_shared(api: ReleaseApi, stamped: list[dict[str, Any]], release: str) -> Outcome | None:
    found = shared.conflicts(api, stamped, release)
    if not found:
        return None
    return Outcome(False, "\n".join(c.text() for c in found) + "\nNothing was applied: deploy it with the same "
                   "content, or into another `namespace=`.")


def _roll_out(op: Operation, config: Config, clusters: Clusters, progress: Progress, *, action: str,
              objects: list[dict[str, Any]], preset: str, values: dict[str, Any], note: str = "") -> Outcome:
    """Apply `objects` as the release's next revision, prune what it no longer has, watch the rollout."""
    cluster, api = _api(op, config, clusters)
    history = ReleaseHistory(progress.store)
    revisions = history.revisions(op.cluster, op.namespace, op.target)
    revision = history.next_revision(op)
    objects = releases.without_replicas_under_autoscaler(objects)
    stamped = releases.stamp(objects, release=op.target, revision=revision, namespace=op.namespace, preset=preset)
    releases.check_apis(api, stamped)  # a missing operator is named before anything is applied
    # Checked again here: another release may have changed a shared object since the card was posted.
    refused = _refused_shared(api, stamped, op.target)
    if refused is not None:
        return refused
    before = _present(api, op.namespace, op.target, revisions, stamped)
    row = history.record(op, revision=revision, action=action, preset=preset, manifests=stamped,
                  values=values, note=note)
    progress.edit(f"Applying revision {revision} of `{op.target}`: {len(stamped)} object(s)…")
    releases.hand_over_replicas(api, stamped)
    releases.apply_all(api, stamped, op.target)
    removal, kept = remove_release(api, before - {ObjectRef.of(o) for o in stamped}, op.target,
                                   _timeout(cluster), progress.edit)
    pruned_note = f"; removed {', '.join(f'`{r.key}`' for r in sorted(removal.deleted))}" if removal.deleted else ""
    pruned_note += "".join(f"; {k}" for k in kept)
    if not removal.ok:
        history.set_status(row, RevisionStatus.FAILED, removal.why)
        return Outcome(False, f"revision {revision} applied, but what it no longer has is still there after "
                              f"{int(_timeout(cluster))} s: {removal.why}{pruned_note}")
    workload = next((o for o in stamped if o["kind"] in releases.WORKLOAD_KINDS), None)
    if workload is None:
        history.set_status(row, RevisionStatus.READY)
        return Outcome(True, f"revision {revision} of `{op.target}` applied{pruned_note}.")
    params = op.params or {}
    result = releases.wait_ready(
        api, ObjectRef.of(workload), pod_selector=releases.pod_selector(workload),
        timeout=_timeout(cluster), progress=progress.edit,
        startup_seconds=float(params.get("startup_seconds") or 600))
    if result.ok:
        history.set_status(row, RevisionStatus.READY)
    else:
        history.set_status(row, RevisionStatus.FAILED, result.message)
    if result.ok:
        return Outcome(True, f"revision {revision}: {result.message}{pruned_note} "
                              f"Endpoint: {releases.endpoint(op.target, op.namespace, workload['kind'])}")
    return Outcome(False, f"revision {revision} applied but not ready: {result.message}{pruned_note}")


def run_deploy(op: Operation, config: Config, clusters: Clusters, progress: Progress) -> Outcome:
    params = op.params or {}
    return _roll_out(op, config, clusters, progress, action="deploy", objects=list(params["objects"]),
                     preset=str(params.get("preset", "")), values=dict(params.get("values") or {}))


def run_rollback(op: Operation, config: Config, clusters: Clusters, progress: Progress) -> Outcome:
    params = op.params or {}
    revisions = ReleaseHistory(progress.store).revisions(op.cluster, op.namespace, op.target)
    wanted = params.get("revision")
    target = rollback_target(revisions, None if wanted is None else int(wanted))
    if target is None:
        known = ", ".join(str(r.revision) for r in revisions if r.action != "undeploy") or "none"
        return Outcome(False, f"no stored revision {wanted or '(previous)'} of `{op.target}`; known: {known}. "
                               "Nothing was changed.")
    objects = [unstamped(o) for o in target.manifests]
    return _roll_out(op, config, clusters, progress, action="rollback", objects=objects, preset=target.preset,
                     values=dict(target.values), note=f"from revision {target.revision}")


def run_autoscale(op: Operation, config: Config, clusters: Clusters, progress: Progress) -> Outcome:
    params = op.params or {}
    revisions = [r for r in ReleaseHistory(progress.store).revisions(op.cluster, op.namespace, op.target)
                 if r.action != "undeploy"]
    if not revisions:
        return Outcome(False, f"`{op.target}` was not deployed by the bot; nothing was changed.")
    latest = revisions[-1]
    scaler_kinds = ("HorizontalPodAutoscaler", "ScaledObject")
    objects = [unstamped(o) for o in latest.manifests if o.get("kind") not in scaler_kinds]
    objects.append(dict(params["scaler"]))
    return _roll_out(op, config, clusters, progress, action="autoscale", objects=objects, preset=latest.preset,
                     values=dict(latest.values))


def run_undeploy(op: Operation, config: Config, clusters: Clusters, progress: Progress) -> Outcome:
    cluster, api = _api(op, config, clusters)
    history = ReleaseHistory(progress.store)
    revisions = history.revisions(op.cluster, op.namespace, op.target)
    owned = _present(api, op.namespace, op.target, revisions)
    progress.edit(f"Deleting {len(owned)} object(s) of `{op.target}`…")
    removal, kept = remove_release(api, owned, op.target, _timeout(cluster), progress.edit)
    kept_note = "".join(f"; {k}" for k in kept)
    if not removal.ok:
        return Outcome(False, f"`{op.target}` is not fully removed: after {int(_timeout(cluster))} s "
                              f"{removal.why}. Deleted so far: "
                              f"{', '.join(f'`{r.key}`' for r in sorted(removal.deleted)) or 'nothing'}{kept_note}")
    latest = revisions[-1] if revisions else None
    if latest is not None:
        history.record(op, revision=latest.revision + 1, action="undeploy", preset=latest.preset, manifests=[],
                       values={}, status=RevisionStatus.REMOVED)
    shown = ", ".join(f"`{r.key}`" for r in sorted(removal.deleted)) or "nothing was left"
    return Outcome(True, f"`{op.target}` removed: deleted {shown}{kept_note}.")
