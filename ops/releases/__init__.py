"""Releases: a model preset rendered by helm, applied by the bot, watched until it serves.

The Argo CD model: helm only renders (ops/helm.py); the bot applies every object with server-side
apply under its own field manager, labels it with the release name and revision, and keeps the
rendered manifests of every revision (in its database, bot/runs/releases.py), so that undeploy deletes
exactly what a release owns and rollback re-applies a stored revision.

Objects are handled as raw JSON through the kubernetes client's ApiClient, so that any kind the
chart renders (built-in or custom) goes the same way; discovery of its group/version tells the
resource's plural and, for custom resources, whether the operator behind them is installed.

The modules, each importing only those above it:

* `manifests`: values, object references, labels and apply order (no cluster involved).
* `api`: ReleaseApi, the kind-agnostic Kubernetes API; missing operators; Secrets.
* `changes`: what a deploy changes (plan, diff), applying and deleting a release's objects.
* `removal`: deleting objects and waiting until they are really gone (finalizers, Foreground GC).
* `shared`: the upstream chart's fixed-name ConfigMaps that every release of a framework shares.
* `status`: the releases of a namespace and the rollout watch.

This package only re-exports their public names, so callers import from `ops.releases`.
"""

from ops.releases.api import APPLY_PATCH, OPERATORS, ApiResource, MissingApi, ReleaseApi, check_apis, put_secret
from ops.releases.changes import (
    Change,
    apply_all,
    autoscalers,
    delete_all,
    diff,
    hand_over_replicas,
    kinds_of,
    owned_objects,
    plan,
)
from ops.releases.manifests import (
    AUTOSCALER_KINDS,
    KIND_ORDER,
    MANAGER,
    OWNED_KINDS,
    PRESET_ANNOTATION,
    RELEASE_LABEL,
    REVISION_LABEL,
    SHARED_CONFIGMAPS,
    WORKLOAD_KINDS,
    ObjectRef,
    is_shared,
    ordered,
    release_values,
    set_path,
    stamp,
    typed,
    without_replicas_under_autoscaler,
)
from ops.releases.removal import Removal, holding, remove
from ops.releases.status import (
    Problem,
    Progress,
    ReleaseInfo,
    RolloutResult,
    WorkloadState,
    endpoint,
    pod_problem,
    pod_selector,
    releases,
    wait_ready,
    workload_state,
)

__all__ = [
    "APPLY_PATCH",
    "AUTOSCALER_KINDS",
    "SHARED_CONFIGMAPS",
    "Removal",
    "autoscalers",
    "hand_over_replicas",
    "holding",
    "is_shared",
    "kinds_of",
    "remove",
    "without_replicas_under_autoscaler",
    "KIND_ORDER",
    "MANAGER",
    "OPERATORS",
    "OWNED_KINDS",
    "PRESET_ANNOTATION",
    "RELEASE_LABEL",
    "REVISION_LABEL",
    "WORKLOAD_KINDS",
    "ApiResource",
    "Change",
    "MissingApi",
    "ObjectRef",
    "Problem",
    "Progress",
    "ReleaseApi",
    "ReleaseInfo",
    "RolloutResult",
    "WorkloadState",
    "apply_all",
    "check_apis",
    "delete_all",
    "diff",
    "endpoint",
    "ordered",
    "owned_objects",
    "plan",
    "pod_problem",
    "pod_selector",
    "put_secret",
    "release_values",
    "releases",
    "set_path",
    "stamp",
    "typed",
    "wait_ready",
    "workload_state",
]
