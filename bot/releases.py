"""Release operations: deploy, rollback, autoscale and undeploy after approval, and their history.

The handler (handlers/deploy.py) rendered the objects and showed them on the card; the executor
applies exactly those, numbers the revision, stores its manifests (bot/models_releases.py), prunes
objects the release no longer has, and watches the rollout with one progress message in the thread.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from bot.clusters import Clusters
from bot.config import Config
from bot.models import Operation
from bot.models_releases import APPLIED, FAILED, READY, REMOVED, ReleaseRevision
from bot.storage import Store
from ops import releases
from ops.errors import OpsError
from ops.releases import ObjectRef, ReleaseApi

if TYPE_CHECKING:
    from bot.worker import Outcome, Progress

log = logging.getLogger(__name__)


def _outcome(ok: bool, message: str) -> Outcome:
    from bot.worker import Outcome  # the worker imports this module's executors

    return Outcome(ok, message)


# ---- history -------------------------------------------------------------------------------------


def history(store: Store, cluster: str, namespace: str, name: str) -> list[ReleaseRevision]:
    with store.reading() as s:
        q = (select(ReleaseRevision).where(ReleaseRevision.cluster == cluster, ReleaseRevision.namespace == namespace,
                                           ReleaseRevision.name == name).order_by(ReleaseRevision.revision))
        return list(s.scalars(q).all())


def _record(store: Store, op: Operation, *, revision: int, action: str, preset: str,
            manifests: list[dict[str, Any]], values: dict[str, Any], note: str = "") -> int:
    with store.session() as s:
        row = ReleaseRevision(cluster=op.cluster, namespace=op.namespace, name=op.target, revision=revision,
                              action=action, preset=preset, manifests=manifests, values=values, status=APPLIED,
                              note=note, operation_id=op.id)
        s.add(row)
        s.flush()
        return row.id


def _next_revision(store: Store, op: Operation) -> int:
    with store.reading() as s:
        top = s.scalar(select(func.max(ReleaseRevision.revision)).where(
            ReleaseRevision.cluster == op.cluster, ReleaseRevision.namespace == op.namespace,
            ReleaseRevision.name == op.target))
    return int(top or 0) + 1


def _set_status(store: Store, row_id: int, status: str, note: str | None = None) -> None:
    with store.session() as s:
        row = s.get(ReleaseRevision, row_id)
        if row is not None:
            row.status = status
            if note is not None:
                row.note = note[:2000]


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
    revision = _next_revision(op_store(progress), op)
    stamped = releases.stamp(objects, release=op.target, revision=revision, namespace=op.namespace, preset=preset)
    releases.check_apis(api, stamped)  # a missing operator is named before anything is applied
    before = releases.owned_objects(api, op.namespace, op.target)
    row = _record(op_store(progress), op, revision=revision, action=action, preset=preset, manifests=stamped,
                  values=values, note=note)
    progress.edit(f"Applying revision {revision} of `{op.target}`: {len(stamped)} object(s)…")
    releases.apply_all(api, stamped)
    pruned = releases.delete_all(api, set(before) - {ObjectRef.of(o) for o in stamped})
    pruned_note = f"; removed {', '.join(f'`{r.key}`' for r in pruned)}" if pruned else ""
    workload = next((o for o in stamped if o["kind"] in releases.WORKLOAD_KINDS), None)
    if workload is None:
        _set_status(op_store(progress), row, READY)
        return _outcome(True, f"revision {revision} of `{op.target}` applied{pruned_note}.")
    params = op.params or {}
    result = releases.wait_ready(
        api, ObjectRef.of(workload), pod_selector=releases.pod_selector(workload),
        timeout=max(float(cluster.rollout_timeout_seconds), 1.0), progress=progress.edit,
        startup_seconds=float(params.get("startup_seconds") or 600))
    _set_status(op_store(progress), row, READY if result.ok else FAILED, None if result.ok else result.message)
    if result.ok:
        return _outcome(True, f"revision {revision}: {result.message}{pruned_note} "
                              f"Endpoint: {releases.endpoint(op.target, op.namespace, workload['kind'])}")
    return _outcome(False, f"revision {revision} applied but not ready: {result.message}{pruned_note}")


def op_store(progress: Progress) -> Store:
    return progress.store


def run_deploy(op: Operation, config: Config, clusters: Clusters, progress: Progress) -> Outcome:
    params = op.params or {}
    return _roll_out(op, config, clusters, progress, action="deploy", objects=list(params["objects"]),
                     preset=str(params.get("preset", "")), values=dict(params.get("values") or {}))


def rollback_target(revisions: Sequence[ReleaseRevision], wanted: int | None) -> ReleaseRevision | None:
    """The stored revision a rollback re-applies: `wanted`, or the one before the latest ("undo")."""
    kept = [r for r in revisions if r.action != "undeploy"]
    if wanted is None:
        return kept[-2] if len(kept) >= 2 else None
    return next((r for r in kept if r.revision == wanted), None)


class ReleaseHistory:
    """What the rollback card needs before approval (handlers.deps.ReleaseHistory)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def known(self, cluster: str, namespace: str, name: str) -> list[int]:
        return [r.revision for r in history(self.store, cluster, namespace, name) if r.action != "undeploy"]

    def rollback_target(self, cluster: str, namespace: str, name: str,
                        wanted: int | None) -> tuple[int, list[dict[str, Any]]] | None:
        target = rollback_target(history(self.store, cluster, namespace, name), wanted)
        return None if target is None else (target.revision, [_unstamped(o) for o in target.manifests])


def run_rollback(op: Operation, config: Config, clusters: Clusters, progress: Progress) -> Outcome:
    params = op.params or {}
    revisions = history(progress.store, op.cluster, op.namespace, op.target)
    wanted = params.get("revision")
    target = rollback_target(revisions, None if wanted is None else int(wanted))
    if target is None:
        known = ", ".join(str(r.revision) for r in revisions if r.action != "undeploy") or "none"
        return _outcome(False, f"no stored revision {wanted or '(previous)'} of `{op.target}`; known: {known}. "
                               "Nothing was changed.")
    objects = [_unstamped(o) for o in target.manifests]
    return _roll_out(op, config, clusters, progress, action="rollback", objects=objects, preset=target.preset,
                     values=dict(target.values), note=f"from revision {target.revision}")


def run_autoscale(op: Operation, config: Config, clusters: Clusters, progress: Progress) -> Outcome:
    params = op.params or {}
    revisions = [r for r in history(progress.store, op.cluster, op.namespace, op.target) if r.action != "undeploy"]
    if not revisions:
        return _outcome(False, f"`{op.target}` was not deployed by the bot; nothing was changed.")
    latest = revisions[-1]
    scaler_kinds = ("HorizontalPodAutoscaler", "ScaledObject")
    objects = [_unstamped(o) for o in latest.manifests if o.get("kind") not in scaler_kinds]
    objects.append(dict(params["scaler"]))
    return _roll_out(op, config, clusters, progress, action="autoscale", objects=objects, preset=latest.preset,
                     values=dict(latest.values))


def run_undeploy(op: Operation, config: Config, clusters: Clusters, progress: Progress) -> Outcome:
    _, api = _api(op, config, clusters)
    owned = set(releases.owned_objects(api, op.namespace, op.target))
    revisions = history(progress.store, op.cluster, op.namespace, op.target)
    if revisions:  # also what the last revision applied, should a label have been edited away
        owned |= {ObjectRef.of(o) for o in revisions[-1].manifests}
    progress.edit(f"Deleting {len(owned)} object(s) of `{op.target}`…")
    deleted = releases.delete_all(api, owned)
    left = releases.owned_objects(api, op.namespace, op.target)
    if revisions:
        with progress.store.session() as s:
            s.add(ReleaseRevision(cluster=op.cluster, namespace=op.namespace, name=op.target,
                                  revision=revisions[-1].revision + 1, action="undeploy", preset=revisions[-1].preset,
                                  manifests=[], values={}, status=REMOVED, note="", operation_id=op.id))
    if left:
        return _outcome(False, f"still there after delete: {', '.join(f'`{r.key}`' for r in left)}")
    shown = ", ".join(f"`{r.key}`" for r in sorted(deleted)) or "nothing was left"
    return _outcome(True, f"`{op.target}` removed: deleted {shown}.")


def _unstamped(obj: dict[str, Any]) -> dict[str, Any]:
    """A stored manifest without the revision label: the next revision stamps its own."""
    out = dict(obj)
    meta = dict(out.get("metadata") or {})
    meta["labels"] = {k: v for k, v in (meta.get("labels") or {}).items() if k != releases.REVISION_LABEL}
    out["metadata"] = meta
    return out
