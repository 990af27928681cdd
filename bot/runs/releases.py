"""Release operations: deploy, rollback, autoscale and undeploy after approval.

The handler (handlers/deploy.py) rendered the objects and showed them on the card; the executor
applies exactly those, numbers the revision, stores its manifests (bot/db/releases.py), prunes
objects the release no longer has, and watches the rollout with one progress message in the thread.
"""

from __future__ import annotations

import logging
from typing import Any

from bot.clusters import Clusters
from bot.config import Config
from bot.db.releases import ReleaseHistory, rollback_target, unstamped
from bot.db.tables import Operation, RevisionStatus
from bot.runs.progress import Outcome, Progress
from ops import releases
from ops.errors import OpsError
from ops.releases import ObjectRef, ReleaseApi

log = logging.getLogger(__name__)


# ---- executors -----------------------------------------------------------------------------------


def _api(op: Operation, config: Config, clusters: Clusters) -> tuple[Any, ReleaseApi]:
    cluster = config.cluster(op.cluster) or clusters.lookup(op.cluster)
    if cluster is None:
        raise OpsError(f"cluster `{op.cluster}` is no longer configured")
    return cluster, ReleaseApi(clusters.get(cluster))


def _roll_out(op: Operation, config: Config, clusters: Clusters, progress: Progress, *, action: str,
              objects: list[dict[str, Any]], preset: str, values: dict[str, Any], note: str = "") -> Outcome:
    """Apply `objects` as the release's next revision, prune what it no longer has, watch the rollout."""
    cluster, api = _api(op, config, clusters)
    history = ReleaseHistory(progress.store)
    revision = history.next_revision(op)
    stamped = releases.stamp(objects, release=op.target, revision=revision, namespace=op.namespace, preset=preset)
    releases.check_apis(api, stamped)  # a missing operator is named before anything is applied
    before = releases.owned_objects(api, op.namespace, op.target)
    row = history.record(op, revision=revision, action=action, preset=preset, manifests=stamped,
                  values=values, note=note)
    progress.edit(f"Applying revision {revision} of `{op.target}`: {len(stamped)} object(s)…")
    releases.apply_all(api, stamped)
    pruned = releases.delete_all(api, set(before) - {ObjectRef.of(o) for o in stamped})
    pruned_note = f"; removed {', '.join(f'`{r.key}`' for r in pruned)}" if pruned else ""
    workload = next((o for o in stamped if o["kind"] in releases.WORKLOAD_KINDS), None)
    if workload is None:
        history.set_status(row, RevisionStatus.READY)
        return Outcome(True, f"revision {revision} of `{op.target}` applied{pruned_note}.")
    params = op.params or {}
    result = releases.wait_ready(
        api, ObjectRef.of(workload), pod_selector=releases.pod_selector(workload),
        timeout=max(float(cluster.rollout_timeout_seconds), 1.0), progress=progress.edit,
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
    _, api = _api(op, config, clusters)
    owned = set(releases.owned_objects(api, op.namespace, op.target))
    revisions = ReleaseHistory(progress.store).revisions(op.cluster, op.namespace, op.target)
    if revisions:  # also what the last revision applied, should a label have been edited away
        owned |= {ObjectRef.of(o) for o in revisions[-1].manifests}
    progress.edit(f"Deleting {len(owned)} object(s) of `{op.target}`…")
    deleted = releases.delete_all(api, owned)
    left = releases.owned_objects(api, op.namespace, op.target)
    if revisions:
        ReleaseHistory(progress.store).record(op, revision=revisions[-1].revision + 1, action="undeploy",
                                              preset=revisions[-1].preset, manifests=[], values={},
                                              status=RevisionStatus.REMOVED)
    if left:
        return Outcome(False, f"still there after delete: {', '.join(f'`{r.key}`' for r in left)}")
    shown = ", ".join(f"`{r.key}`" for r in sorted(deleted)) or "nothing was left"
    return Outcome(True, f"`{op.target}` removed: deleted {shown}.")
