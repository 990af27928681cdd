"""What Karpenter (karpenter.sh/v1) allows and is doing: the one reading of NodePools and NodeClaims
that the readiness doctor, the deploy fit check and the rollout diagnosis share.

Reads (`list_nodepools`, `list_nodeclaims`, `pod_events`) are thin; everything else is pure over the
objects as Karpenter v1 documents them:

* NodePool `spec.template.spec.requirements` (NodeSelectorRequirements on well-known labels such as
  `karpenter.k8s.aws/instance-family`, `node.kubernetes.io/instance-type`), `spec.limits` (a
  ResourceList, e.g. `nvidia.com/gpu: 8`) and `status.resources` (what its NodeClaims hold).
* NodeClaim `metadata.labels["karpenter.sh/nodepool"]`, `spec.requirements`, and
  `status.conditions` Launched / Registered / Initialized, `status.nodeName`.
* Karpenter's Events on pods: `Nominated` ("Pod should schedule on: nodeclaim/<name>") and
  `FailedScheduling` ("Failed to schedule pod, incompatible with nodepool "<name>", …" or
  "… all available instance types exceed limits for nodepool: "<name>"").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from ops import instances
from ops.catalog import DEVICE_RESOURCE
from ops.errors import OpsError
from ops.instances import Instance

API_VERSION = "karpenter.sh/v1"
NODEPOOL_LABEL = "karpenter.sh/nodepool"
CAPACITY_TYPE = "karpenter.sh/capacity-type"
INSTANCE_FAMILY = "karpenter.k8s.aws/instance-family"
INSTANCE_CATEGORY = "karpenter.k8s.aws/instance-category"
INSTANCE_TYPE = "node.kubernetes.io/instance-type"
ZONE = "topology.kubernetes.io/zone"

Obj = Mapping[str, Any]


class _Resource(Protocol):
    @property
    def plural(self) -> str: ...


class KubeReads(Protocol):
    """What the reads need of ops.releases' ReleaseApi (a protocol: ops.releases.status imports this
    module, so this one must not import ops.releases)."""

    def resources_of(self, api_version: str) -> Mapping[str, _Resource] | None: ...

    def request(self, what: str, method: str, path: str, *, query: Any = ...) -> dict[str, Any] | None: ...


# ---- reads ---------------------------------------------------------------------------------------


def _served(api: KubeReads) -> dict[str, Any] | None:
    served = api.resources_of(API_VERSION)
    return dict(served) if served and "NodePool" in served else None


def list_nodepools(api: KubeReads) -> list[dict[str, Any]] | None:
    """Karpenter's NodePools, or None when the cluster does not serve karpenter.sh/v1 NodePool."""
    served = _served(api)
    if served is None:
        return None
    found = api.request("list Karpenter NodePools", "GET", f"/apis/{API_VERSION}/{served['NodePool'].plural}")
    return list((found or {}).get("items") or [])


def list_nodeclaims(api: KubeReads) -> list[dict[str, Any]]:
    served = _served(api) or {}
    if "NodeClaim" not in served:
        return []
    found = api.request("list Karpenter NodeClaims", "GET", f"/apis/{API_VERSION}/{served['NodeClaim'].plural}")
    return list((found or {}).get("items") or [])


def pod_events(api: KubeReads, namespace: str, pods: Iterable[Obj]) -> list[dict[str, Any]]:
    """The namespace's Events about these pods (one list, filtered here: a field selector per pod
    would be a request per pod)."""
    uids = {(p.get("metadata") or {}).get("uid") for p in pods}
    found = api.request("list events", "GET", f"/api/v1/namespaces/{namespace}/events") or {}
    return [e for e in found.get("items") or [] if (e.get("involvedObject") or {}).get("uid") in uids]


def node_instance_types(api: KubeReads) -> set[str]:
    """Instance types the cluster's Nodes already have (node groups Karpenter does not manage included)."""
    found = api.request("list nodes", "GET", "/api/v1/nodes") or {}
    return {str(t) for n in found.get("items") or []
            if (t := ((n.get("metadata") or {}).get("labels") or {}).get(INSTANCE_TYPE))}


@dataclass(frozen=True)
class Capacity:
    """What Karpenter has and does, as read once: NodePools (None: no NodePool API), NodeClaims."""

    nodepools: list[dict[str, Any]] | None
    nodeclaims: list[dict[str, Any]]


def read(api: KubeReads) -> Capacity:
    pools = list_nodepools(api)
    return Capacity(pools, list_nodeclaims(api) if pools is not None else [])


# ---- NodePool requirements -----------------------------------------------------------------------


def category(family: str) -> str:
    """Karpenter's instance-category: the family's leading letters (g5 → g, inf2 → inf, p4d → p)."""
    match = re.match(r"[a-z]+", family)
    return match.group(0) if match else family


def admits(requirement: Mapping[str, Any], value: str | None) -> bool:
    """Whether a NodeSelectorRequirement admits a node whose label has `value` (None: no such label)."""
    operator, values = requirement.get("operator"), [str(v) for v in requirement.get("values") or []]
    if operator == "In":
        return value is not None and value in values
    if operator == "NotIn":
        return value is None or value not in values
    if operator == "Exists":
        return value is not None
    if operator == "DoesNotExist":
        return value is None
    return True  # Gt/Lt do not apply to these string labels


def requirements(nodepool: Obj) -> list[Mapping[str, Any]]:
    spec = ((nodepool.get("spec") or {}).get("template") or {}).get("spec") or {}
    return [r for r in spec.get("requirements") or [] if isinstance(r, Mapping)]


def name_of(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name", "?"))


def allowed_families(nodepool: Obj, candidates: Iterable[str]) -> list[str]:
    """The candidate families a NodePool's requirements let Karpenter launch.

    No requirement on family, category or type means every family (Karpenter's own default); an
    instance-type `In` admits the families of the types it lists.
    """
    allowed = []
    for family in candidates:
        ok = True
        for req in requirements(nodepool):
            key = req.get("key")
            if key == INSTANCE_FAMILY:
                ok = admits(req, family)
            elif key == INSTANCE_CATEGORY:
                ok = admits(req, category(family))
            elif key == INSTANCE_TYPE:
                values = [str(v) for v in req.get("values") or []]
                if req.get("operator") == "In":
                    ok = any(v.split(".", 1)[0] == family for v in values)
                elif req.get("operator") == "DoesNotExist":
                    ok = False
            if not ok:
                break
        if ok:
            allowed.append(family)
    return allowed


def excluding(nodepool: Obj, instance_type: str) -> Mapping[str, Any] | None:
    """The NodePool requirement that keeps Karpenter from launching `instance_type`, or None."""
    family = instance_type.split(".", 1)[0]
    labels = {INSTANCE_TYPE: instance_type, INSTANCE_FAMILY: family, INSTANCE_CATEGORY: category(family)}
    return next((r for r in requirements(nodepool) if r.get("key") in labels and not admits(r, labels[r["key"]])),
                None)


def allowing(nodepools: Sequence[Obj], instance_type: str) -> list[str]:
    """Names of the NodePools that may launch `instance_type`."""
    return [name_of(p) for p in nodepools if excluding(p, instance_type) is None]


def allowed_instances(nodepools: Sequence[Obj]) -> dict[str, list[str]]:
    """Instance types of the instance table → the NodePools that allow each (only those some allows)."""
    out: dict[str, list[str]] = {}
    for name in instances.load_instances():
        pools = allowing(nodepools, name)
        if pools:
            out[name] = pools
    return out


def requirement_text(req: Mapping[str, Any]) -> str:
    values = ", ".join(str(v) for v in req.get("values") or [])
    return f"{req.get('key')} {req.get('operator')}" + (f" [{values}]" if values else "")


def what_allows(nodepool: Obj) -> str:
    """One NodePool's instance requirements, as a person reads them; "any instance type" without any."""
    shown = [requirement_text(r) for r in requirements(nodepool)
             if r.get("key") in (INSTANCE_FAMILY, INSTANCE_CATEGORY, INSTANCE_TYPE)]
    return "; ".join(shown) or "any instance type"


def not_allowed(nodepools: Sequence[Obj], instance_type: str, cluster: str) -> str:
    """Why `instance=` is refused: each NodePool's name and what it allows."""
    pools = "; ".join(f"NodePool `{name_of(p)}` allows {what_allows(p)}" for p in nodepools)
    return f"`{instance_type}` is not an instance type any Karpenter NodePool on `{cluster}` allows ({pools})"


# ---- limits --------------------------------------------------------------------------------------


def quantity(value: Any) -> Decimal:
    """A Kubernetes quantity ("8", "500m", "64Gi") as a number; 0 when unreadable."""
    text = str(value or "0").strip()
    suffixes: dict[str, Decimal] = {"Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30),
                                    "Ti": Decimal(2**40), "m": Decimal("0.001"), "k": Decimal(10**3),
                                    "M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12)}
    for suffix, factor in suffixes.items():
        if text.endswith(suffix):
            text, scale = text[: -len(suffix)], factor
            break
    else:
        scale = Decimal(1)
    try:
        return Decimal(text) * scale
    except InvalidOperation:
        return Decimal(0)


def at_limit(nodepool: Obj, resource: str | None = None) -> list[tuple[str, Decimal, Decimal]]:
    """(resource, in use, limit) for each `spec.limits` entry `status.resources` has reached."""
    limits = (nodepool.get("spec") or {}).get("limits") or {}
    used = (nodepool.get("status") or {}).get("resources") or {}
    out = []
    for name, limit in limits.items():
        if resource is not None and name != resource:
            continue
        if quantity(used.get(name)) >= quantity(limit):
            out.append((str(name), quantity(used.get(name)), quantity(limit)))
    return out


# ---- pods, NodeClaims and Karpenter's events: the diagnosis ---------------------------------------


def _number(value: Decimal) -> str:
    return f"{value.normalize():f}"


def pod_instance_types(pod: Obj) -> list[str]:
    """The instance types a pod insists on (nodeSelector or required node affinity `In`); [] = any."""
    spec = pod.get("spec") or {}
    named = (spec.get("nodeSelector") or {}).get(INSTANCE_TYPE)
    if named:
        return [str(named)]
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution") or {}
    for term in required.get("nodeSelectorTerms") or []:
        for expr in term.get("matchExpressions") or []:
            if expr.get("key") == INSTANCE_TYPE and expr.get("operator") == "In":
                return [str(v) for v in expr.get("values") or []]
    return []


def pod_device(pod: Obj) -> tuple[str | None, Decimal]:
    """(accelerator resource, count) the pod's containers request; (None, 0) for none."""
    totals: dict[str, Decimal] = {}
    for container in (pod.get("spec") or {}).get("containers") or []:
        resources = container.get("resources") or {}
        asked = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        for device in DEVICE_RESOURCE.values():
            if device in asked:
                totals[device] = totals.get(device, Decimal(0)) + quantity(asked[device])
    first = next(iter(totals), None)
    return first, totals[first] if first else Decimal(0)


def _condition(obj: Obj, kind: str) -> Mapping[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == kind), {})


def _claim_value(claim: Obj, key: str) -> str:
    """A NodeClaim's label, or the single value its requirements allow for `key`."""
    label = ((claim.get("metadata") or {}).get("labels") or {}).get(key)
    if label:
        return str(label)
    for req in (claim.get("spec") or {}).get("requirements") or []:
        values = req.get("values") or []
        if req.get("key") == key and req.get("operator") == "In" and values:
            return str(values[0]) if len(values) == 1 else "/".join(str(v) for v in values[:3])
    return "?"


def _age(created: str | None, now: datetime) -> str:
    if not created:
        return "?"
    seconds = int((now - datetime.fromisoformat(created.replace("Z", "+00:00"))).total_seconds())
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


_NOMINATED = re.compile(r"nodeclaim/([a-z0-9.-]+)")
_LIMITED = re.compile(r'exceed limits for nodepool: "([^"]+)"')
_INCOMPATIBLE = re.compile(r'incompatible with nodepool "([^"]+)"')
_ICE_ZONE = re.compile(r"Availability Zone you requested \(([a-z0-9-]+)\)")


def _karpenter_events(events: Sequence[Obj], uid: str) -> list[Obj]:
    mine = [e for e in events if (e.get("involvedObject") or {}).get("uid") == uid
            and ((e.get("source") or {}).get("component") == "karpenter" or e.get("reportingComponent") == "karpenter")]
    return sorted(mine, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))


def alternatives(nodepools: Sequence[Obj], resource: str | None, devices: Decimal, *, besides: Iterable[str] = (),
                 region: str = instances.DEFAULT_REGION, shown: int = 2) -> list[tuple[Instance, list[str]]]:
    """The cheapest instance types of other families that NodePools allow and that hold the pod's devices."""
    skip = set(besides)
    kind = next((k for k, r in DEVICE_RESOURCE.items() if r == resource), None)
    table = instances.load_instances()
    found = []
    for name, pools in allowed_instances(nodepools).items():
        inst = table[name]
        if inst.family in skip or region not in inst.prices:
            continue
        if kind is not None and (inst.accelerator_kind != kind or inst.devices < devices):
            continue
        found.append((inst.prices[region], inst, pools))
    found.sort(key=lambda x: (x[0], x[1].name))
    out: list[tuple[Instance, list[str]]] = []
    for _, inst, pools in found:
        if all(o.family != inst.family for o, _ in out):
            out.append((inst, pools))
        if len(out) >= shown:
            break
    return out


def _others(nodepools: Sequence[Obj], resource: str | None, devices: Decimal, besides: Iterable[str],
            pinned: bool) -> str:
    if not pinned:  # Karpenter already tried every type the NodePools allow: only a new family helps
        return f"; or add another instance family to the NodePool's requirements ({INSTANCE_FAMILY})"
    found = alternatives(nodepools, resource, devices, besides=besides)
    if not found:
        return ""
    listed = ", ".join(f"`{i.name}` (NodePool {', '.join(f'`{p}`' for p in pools)})" for i, pools in found)
    return f"; or deploy with `instance=` another family the NodePools allow: {listed}"


def diagnose(pods: Sequence[Obj], nodepools: Sequence[Obj], nodeclaims: Sequence[Obj], events: Sequence[Obj],
             now: datetime | None = None) -> list[str]:
    """What Karpenter is doing about these Pending pods, each line with its fix; [] when it says nothing."""
    at = now or datetime.now(UTC)
    claims = {name_of(c): c for c in nodeclaims}
    pools = {name_of(p): p for p in nodepools}
    lines: dict[str, list[str]] = {}  # line → pods it is about (one line for many pods)
    for pod in pods:
        meta = pod.get("metadata") or {}
        pod_name, uid = str(meta.get("name", "?")), str(meta.get("uid", ""))
        resource, devices = pod_device(pod)
        pinned = pod_instance_types(pod)
        mine = _karpenter_events(events, uid)
        nominated = [m.group(1) for e in mine if e.get("reason") == "Nominated"
                     for m in [_NOMINATED.search(str(e.get("message") or ""))] if m]
        live = [claims[n] for n in dict.fromkeys(reversed(nominated)) if n in claims]
        if live:
            claim = live[0]
            lines.setdefault(_claim_line(claim, pools, resource, devices, bool(pinned), at), []).append(pod_name)
            continue
        failed = [e for e in mine if e.get("reason") == "FailedScheduling"]
        if failed:
            for line in _failed_lines(str(failed[-1].get("message") or ""), pools, pinned, resource, devices):
                lines.setdefault(line, []).append(pod_name)
    out = []
    for line, names in lines.items():
        who = f"pod `{names[0]}`" if len(names) == 1 else f"pods {', '.join(f'`{n}`' for n in names)}"
        out.append(f"Karpenter, for {who}: {line}")
    return out


def _claim_line(claim: Obj, pools: Mapping[str, Obj], resource: str | None, devices: Decimal, pinned: bool,
                now: datetime) -> str:
    name = name_of(claim)
    pool = _claim_value(claim, NODEPOOL_LABEL)
    itype, zone = _claim_value(claim, INSTANCE_TYPE), _claim_value(claim, ZONE)
    age = _age((claim.get("metadata") or {}).get("creationTimestamp"), now)
    launched = _condition(claim, "Launched")
    if launched.get("status") == "False":
        message = str(launched.get("message") or "")
        if "insufficient capacity" in message.lower() or "InsufficientCapacity" in str(launched.get("reason")):
            zones = sorted(set(_ICE_ZONE.findall(message))) or [zone]
            family = itype.split(".", 1)[0]
            fix = "wait for EC2 capacity"
            if any(r.get("key") == ZONE for r in requirements(pools.get(pool, {}))):
                fix += f", allow more zones in NodePool `{pool}` (its {ZONE} requirement)"
            return (f"NodeClaim `{name}` (NodePool `{pool}`, {age} old) could not launch: insufficient capacity "
                    f"(ICE) for {itype} in {', '.join(zones)}. Fix: {fix}"
                    f"{_others(list(pools.values()), resource, devices, [family], pinned)}.")
        return (f"NodeClaim `{name}` (NodePool `{pool}`) failed to launch: {launched.get('reason', '')}: "
                f"{message[:300]}. Fix: check NodePool `{pool}` and its EC2NodeClass.")
    what = f"NodeClaim `{name}` ({itype}, {zone}, {age} old, NodePool `{pool}`)"
    if launched.get("status") != "True":
        return f"{what} is launching."
    if _condition(claim, "Registered").get("status") != "True":
        return f"{what} launched; waiting for its node to register."
    node = (claim.get("status") or {}).get("nodeName") or "?"
    if _condition(claim, "Initialized").get("status") != "True":
        return f"{what} registered as node `{node}`; waiting for it to initialize."
    return f"{what} is node `{node}`, ready for the pod."


def _failed_lines(message: str, pools: Mapping[str, Obj], pinned: list[str], resource: str | None,
                  devices: Decimal) -> list[str]:
    out = []
    for pool_name in dict.fromkeys(_LIMITED.findall(message)):
        pool = pools.get(pool_name, {})
        others = [p for n, p in pools.items() if n != pool_name]  # the full one cannot be the way out
        reached = at_limit(pool, resource) or at_limit(pool)
        if reached:
            res, used, limit = reached[0]
            usage = f"{res} {_number(used)} in use of {_number(limit)}"
        else:
            res, usage = resource or "cpu", "its limits"
        out.append(f"NodePool `{pool_name}` is at its limits ({usage}), so Karpenter launches no node for it. "
                   f"Fix: raise `spec.limits` `{res}` of NodePool `{pool_name}`, or free capacity "
                   f"(scale another model down){_others(others, resource, devices, [], True) if pinned else ''}.")
    incompatible = list(dict.fromkeys(_INCOMPATIBLE.findall(message)))
    if incompatible and pinned:
        why = []
        for pool_name in incompatible:
            req = excluding(pools.get(pool_name, {}), pinned[0])
            if req is not None:
                why.append(f"NodePool `{pool_name}` requires `{requirement_text(req)}`")
        if why:
            family = pinned[0].split(".", 1)[0]
            found = alternatives(list(pools.values()), resource, devices)
            listed = ", ".join(f"`{i.name}`" for i, _ in found)
            out.append(f"no instance type satisfied the requirements: no NodePool allows {pinned[0]} "
                       f"({'; '.join(why)}). Fix: add {family} to a NodePool's `spec.template.spec.requirements` "
                       f"({INSTANCE_FAMILY})" + (f", or deploy with `instance=` one they allow: {listed}" if listed
                                                 else "") + ".")
    elif incompatible and not out:
        said = message.removeprefix("Failed to schedule pod, ")[:300]
        out.append(f"no instance type satisfied the requirements of NodePools "
                   f"{', '.join(f'`{n}`' for n in incompatible)}: {said}")
    return out


def explain(api: KubeReads, namespace: str, pending: Sequence[Obj], capacity: Capacity | None = None) -> list[str]:
    """Read what Karpenter did for `pending` pods and say it; [] without Karpenter or with nothing to say."""
    if not pending:
        return []
    try:
        capacity = capacity or read(api)
        if capacity.nodepools is None:
            return []
        return diagnose(pending, capacity.nodepools, capacity.nodeclaims, pod_events(api, namespace, pending))
    except OpsError:
        return []  # a diagnosis is an aid: a read the cluster refuses must not fail the rollout


def explain_selected(api: KubeReads, namespace: str, selector: Mapping[str, str]) -> list[str]:
    """`explain` for the pods a label selector picks (a Deployment's), read here."""
    if not selector:
        return []
    try:
        found = api.request("list pods", "GET", f"/api/v1/namespaces/{namespace}/pods",
                            query=[("labelSelector", ",".join(f"{k}={v}" for k, v in sorted(selector.items())))])
    except OpsError:
        return []
    return explain(api, namespace, [p for p in (found or {}).get("items") or [] if is_unschedulable(p)])


def is_unschedulable(pod: Obj) -> bool:
    if (pod.get("spec") or {}).get("nodeName") or (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return any(c.get("type") == "PodScheduled" and c.get("status") == "False"
               for c in (pod.get("status") or {}).get("conditions") or [])
