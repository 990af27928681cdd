"""Object defaults and status rules per built-in kind (what kube-apiserver's strategies do), where a
resource keeps what its /scale subresource shows, and quantities in the string form clients read."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Final

from bot.sandbox.kubeapi.resources import Obj, utc_now

KEEP_STATUS_ON_CREATE: Final = frozenset({"Node"})  # kubelets register nodes with their status
# Kinds whose DELETE answers with the object rather than a Status (ReturnDeletedObject upstream).
RETURNS_DELETED_OBJECT: Final = frozenset({("", "Pod"), ("", "Service"), ("", "Namespace")})


def default_deployment(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        strategy["type"] = "RollingUpdate"
        strategy.setdefault("rollingUpdate", {"maxUnavailable": "25%", "maxSurge": "25%"})


def default_statefulset(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})


def _qos_class(spec: Mapping[str, Any]) -> str:
    resources = [c.get("resources") or {} for c in spec.get("containers") or []]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    guaranteed = all(
        (r.get("limits") or {}).get(res) is not None
        and (r.get("requests") or {}).get(res, (r.get("limits") or {}).get(res)) == (r.get("limits") or {}).get(res)
        for r in resources
        for res in ("cpu", "memory")
    )
    return "Guaranteed" if guaranteed else "Burstable"


def default_pod(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("serviceAccountName", "default")
    for container in spec.get("containers") or []:
        image = str(container.get("image", ""))
        latest = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
        container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
    if not obj.get("status"):
        obj["status"] = {"phase": "Pending", "qosClass": _qos_class(spec)}


def default_crd(obj: Obj) -> None:
    conditions = (obj.get("status") or {}).get("conditions") or []
    if any(c.get("type") == "Established" for c in conditions):
        return
    spec = obj.get("spec") or {}
    names = dict(spec.get("names") or {})
    names.setdefault("listKind", f"{names.get('kind', '')}List")
    names.setdefault("singular", str(names.get("kind", "")).lower())
    now = utc_now()
    obj["status"] = {
        "acceptedNames": names,
        "conditions": [
            {
                "type": "NamesAccepted",
                "status": "True",
                "reason": "NoConflicts",
                "message": "no conflicts found",
                "lastTransitionTime": now,
            },
            {
                "type": "Established",
                "status": "True",
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
                "lastTransitionTime": now,
            },
        ],
        "storedVersions": [v["name"] for v in spec.get("versions") or [] if v.get("storage")],
    }


@dataclasses.dataclass(frozen=True, slots=True)
class ScalePaths:
    """Where a resource keeps what its /scale subresource shows (CRDs declare these)."""

    spec_replicas: str = ".spec.replicas"
    status_replicas: str = ".status.replicas"
    label_selector: str | None = None  # None: derive from spec.selector as built-in workloads do

    @classmethod
    def from_crd(cls, scale: Mapping[str, Any]) -> ScalePaths:
        return cls(
            scale.get("specReplicasPath", ".spec.replicas"),
            scale.get("statusReplicasPath", ".status.replicas"),
            scale.get("labelSelectorPath"),
        )


def get_path(obj: Mapping[str, Any], path: str) -> Any:
    value: Any = obj
    for part in path.strip(".").split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def set_path(obj: Obj, path: str, value: Any) -> None:
    *parents, last = path.strip(".").split(".")
    for part in parents:
        obj = obj.setdefault(part, {})
    obj[last] = value


# --------------------------------------------------------------------------------------------------
# Quantities: the API server answers with strings ("1", "16Gi") even when a client sent numbers.
# --------------------------------------------------------------------------------------------------

_QUANTITY_MAPS: Final = frozenset({"requests", "limits", "capacity", "allocatable", "hard", "used", "overhead"})


def format_quantity(number: float) -> str:
    if float(number).is_integer():
        return str(int(number))
    return f"{round(number * 1000)}m"


def normalize_quantities(value: Any) -> None:
    """Turn numeric quantities into strings, in place, where built-in types keep resource lists."""
    if isinstance(value, dict):
        for key, child in value.items():
            if key in _QUANTITY_MAPS and isinstance(child, dict):
                for name, quantity in child.items():
                    if isinstance(quantity, int | float) and not isinstance(quantity, bool):
                        child[name] = format_quantity(quantity)
            normalize_quantities(child)
    elif isinstance(value, list):
        for item in value:
            normalize_quantities(item)
