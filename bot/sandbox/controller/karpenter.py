"""Karpenter v1 (karpenter.sh/v1 NodePool and NodeClaim), simplified, as its documentation describes it.

For each pod kube-scheduler leaves Pending (Unschedulable), the provisioner looks for a NodePool
(highest `spec.weight` first) whose template requirements, taints and `spec.limits` allow an
instance type that holds the pod, and creates a NodeClaim for it: one per pod, with the NodePool's
requirements plus `node.kubernetes.io/instance-type In [the types that fit]`, and a `Nominated`
Event on the pod ("Pod should schedule on: nodeclaim/<name>"). When no NodePool can, it records
Karpenter's `FailedScheduling` Event on the pod in upstream's words ("Failed to schedule pod,
incompatible with nodepool "<name>", … no instance type satisfied resources … and requirements …",
"all available instance types exceed limits for nodepool: "<name>"").

A NodeClaim then goes through the lifecycle conditions Launched → Registered → Initialized (and
Ready): after `launch_delay` the cloud provider launches the cheapest offering (instance type ×
zone × capacity type) not listed in `insufficient_capacity`; with none left the launch fails with
an insufficient-capacity error (Launched=False, an `InsufficientCapacityError` Event on the
NodeClaim), and after `ice_retry` seconds the NodeClaim is deleted and the pod gets another try,
as Karpenter does. A launched NodeClaim becomes a Node (`status.nodeName`) after `register_delay`.
NodePool `status.resources` sums its NodeClaims' capacity, which is what `spec.limits` caps.

Instance types and their resources come from the instance table (ops/data/instances.yaml), the
same catalogue of EC2 facts Karpenter's AWS provider resolves. Karpenter runs only when the
cluster has NodePools, as a cluster has Karpenter only when someone installed it; the CRDs and a
NodePool builder are in bot/sandbox/operators.py with the other operators' CRDs.
"""

from __future__ import annotations

import collections
import json
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

from bot.sandbox.controller.base import ControllerBase
from bot.sandbox.objects import (
    Obj,
    is_deleting,
    make_condition,
    meta_of,
    owner_ref,
    parse_quantity,
    pod_requests,
    random_suffix,
    safe_hash,
    status_of,
    utc_now,
)

API: Final = "karpenter.sh/v1"
NODEPOOL_LABEL: Final = "karpenter.sh/nodepool"
INSTANCE_TYPE: Final = "node.kubernetes.io/instance-type"
FAMILY: Final = "karpenter.k8s.aws/instance-family"
CATEGORY: Final = "karpenter.k8s.aws/instance-category"
CAPACITY_TYPE: Final = "karpenter.sh/capacity-type"
ZONE: Final = "topology.kubernetes.io/zone"
REGION: Final = "us-west-2"
ZONES: Final = ("us-west-2a", "us-west-2b", "us-west-2c")
DEVICES: Final = {"gpu": "nvidia.com/gpu", "neuron": "aws.amazon.com/neuron"}
Usage = collections.defaultdict[str, Decimal]


def _instance_labels(inst: Any) -> dict[str, str]:
    family = inst.family
    category = "".join(c for c in family if c.isalpha()) or family
    return {INSTANCE_TYPE: inst.name, FAMILY: family, CATEGORY: category, "kubernetes.io/arch": "amd64",
            "kubernetes.io/os": "linux"}


def _admits(req: Mapping[str, Any], value: str | None) -> bool:
    values = [str(v) for v in req.get("values") or []]
    match req.get("operator"):
        case "In":
            return value is not None and value in values
        case "NotIn":
            return value is None or value not in values
        case "Exists":
            return value is not None
        case "DoesNotExist":
            return value is None
        case _:
            return True


def _requirement_text(reqs: list[Obj]) -> str:
    """Karpenter's rendering of a requirement set: `key In [a b]`, sorted by key, comma-separated."""
    parts = []
    for req in sorted(reqs, key=lambda r: str(r.get("key"))):
        values = " ".join(str(v) for v in req.get("values") or [])
        parts.append(f"{req.get('key')} {req.get('operator')}" + (f" [{values}]" if values else ""))
    return ", ".join(parts)


def _pod_requirements(pod: Mapping[str, Any]) -> list[Obj]:
    """nodeSelector and the first required node-affinity term, as requirements."""
    spec = pod.get("spec") or {}
    reqs: list[Obj] = [{"key": k, "operator": "In", "values": [str(v)]}
                       for k, v in (spec.get("nodeSelector") or {}).items()]
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution") or {}
    terms = required.get("nodeSelectorTerms") or []
    if terms:
        reqs += [dict(e) for e in terms[0].get("matchExpressions") or []]
    return reqs


def _tolerated(pod: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    for tol in (pod.get("spec") or {}).get("tolerations") or []:
        if tol.get("effect") and tol["effect"] != taint.get("effect"):
            continue
        if tol.get("operator") == "Exists" and (not tol.get("key") or tol["key"] == taint.get("key")):
            return True
        if tol.get("key") == taint.get("key") and (tol.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def _resources_json(resources: Mapping[str, Decimal]) -> str:
    return json.dumps({k: f"{v.normalize():f}" for k, v in sorted(resources.items()) if v}, separators=(",", ":"))


class Karpenter(ControllerBase):
    """The provisioner and the NodeClaim lifecycle; knobs are documented on the Controller."""

    def _pools(self) -> list[Obj]:
        try:
            pools = self.api.list(API, "NodePool")
        except ValueError:  # no NodePool CRD: no Karpenter in this cluster
            return []
        return sorted(pools, key=lambda p: (-int((p.get("spec") or {}).get("weight") or 0), meta_of(p)["name"]))

    def _claims(self) -> list[Obj]:
        try:
            return self.api.list(API, "NodeClaim")
        except ValueError:
            return []

    # ---- provisioning --------------------------------------------------------------------------

    def _provision(self, unschedulable: list[Obj]) -> None:
        """Called by the scheduler with the pods it could not place."""
        pools = self._pools()
        if not pools or not unschedulable:
            return
        claims = [c for c in self._claims() if not is_deleting(c)]
        # A NodeClaim is on its way until it has a node; one whose node another pod took does not count.
        live = {meta_of(c)["name"] for c in claims if not status_of(c).get("nodeName")}
        usage = self._usage(pools, claims)
        waiting = {meta_of(p)["uid"] for p in unschedulable}
        # In-flight NodeClaims no Pending pod waits for: their pod took another pod's node, which
        # leaves this one for that other pod (Karpenter counts in-flight capacity, not one claim per pod).
        taken = {n for uid, n in self._nominated.items() if uid in waiting}
        free = [c for c in claims if meta_of(c)["name"] in live and meta_of(c)["name"] not in taken]
        for pod in unschedulable:
            uid = meta_of(pod)["uid"]
            if self._nominated.get(uid) in live:
                continue  # its NodeClaim is on the way
            spare = next((c for c in free if self._holds(c, pod)), None)
            if spare is not None:
                free.remove(spare)
                self._nominate(pod, meta_of(spare)["name"])
                continue
            claim, error = self._plan(pod, pools, usage)
            if claim is None:
                self._recorder.record(pod, "Warning", "FailedScheduling", f"Failed to schedule pod, {error}",
                                      "karpenter")
                continue
            created = self.api.put(claim)
            claims.append(created)
            usage = self._usage(pools, claims)  # the next pod sees this one's node counted against the limits
            name = meta_of(created)["name"]
            live.add(name)
            self._nominate(pod, name)
            self._later(self.launch_delay, ("NodeClaim", "", name))
        self._write_pool_status(pools)

    def _nominate(self, pod: Obj, claim: str) -> None:
        self._nominated[meta_of(pod)["uid"]] = claim
        self._recorder.record(pod, "Normal", "Nominated", f"Pod should schedule on: nodeclaim/{claim}", "karpenter")

    def _holds(self, claim: Obj, pod: Obj) -> bool:
        """Whether an in-flight NodeClaim suits the pod: its NodePool, instance types and size."""
        selector = (pod.get("spec") or {}).get("nodeSelector") or {}
        labels = meta_of(claim).get("labels") or {}
        if NODEPOOL_LABEL in selector and labels.get(NODEPOOL_LABEL) != selector[NODEPOOL_LABEL]:
            return False
        if INSTANCE_TYPE in selector and selector[INSTANCE_TYPE] not in self._claim_types(claim):
            return False
        asked = ((claim.get("spec") or {}).get("resources") or {}).get("requests") or {}
        return all(parse_quantity(asked.get(k, "0")) >= v for k, v in pod_requests(pod).items() if v)

    def _usage(self, pools: list[Obj], claims: list[Obj]) -> dict[str, Usage]:
        """Per NodePool, what its NodeClaims hold (launched: their capacity; in flight: the type's)."""
        used: dict[str, Usage] = {meta_of(p)["name"]: collections.defaultdict(Decimal) for p in pools}
        for claim in claims:
            pool = (meta_of(claim).get("labels") or {}).get(NODEPOOL_LABEL, "")
            capacity = status_of(claim).get("capacity") or self._capacity_of(self._claim_types(claim)[0])
            counter = used.setdefault(pool, collections.defaultdict(Decimal))
            for resource, amount in capacity.items():
                counter[resource] += parse_quantity(amount)
            counter["nodes"] += 1
        return used

    def _write_pool_status(self, pools: list[Obj]) -> None:
        used = self._usage(pools, [c for c in self._claims() if not is_deleting(c)])
        for pool in pools:
            resources = {k: f"{Decimal(v).normalize():f}" for k, v in sorted(used[meta_of(pool)["name"]].items())}
            conditions = [make_condition((pool.get("status") or {}).get("conditions") or [], "Ready", "True", "", "")]
            status = {"resources": resources, "nodes": int(used[meta_of(pool)["name"]]["nodes"]),
                      "conditions": conditions}
            if status != (pool.get("status") or {}):
                self.api.put({**pool, "status": status})

    def _plan(self, pod: Obj, pools: list[Obj], usage: Mapping[str, Usage]) -> tuple[Obj | None, str]:
        """A NodeClaim for the pod from the first NodePool that can hold it, or Karpenter's error."""
        from ops import instances  # the instance table: the EC2 facts Karpenter's AWS provider knows

        requests = pod_requests(pod)
        requests["pods"] = requests.get("pods", Decimal(0)) + 1
        pod_reqs = _pod_requirements(pod)
        errors = []
        for pool in pools:
            name = meta_of(pool)["name"]
            template = (pool.get("spec") or {}).get("template") or {}
            tspec = template.get("spec") or {}
            taint = next((t for t in tspec.get("taints") or [] if not _tolerated(pod, t)), None)
            if taint is not None:
                errors.append(f'incompatible with nodepool "{name}", did not tolerate '
                              f"{taint.get('key')}={taint.get('value', '')}:{taint.get('effect')}")
                continue
            pool_reqs = [*(tspec.get("requirements") or []), {"key": NODEPOOL_LABEL, "operator": "In",
                                                               "values": [name]}]
            fixed = {**((template.get("metadata") or {}).get("labels") or {}), NODEPOOL_LABEL: name}
            unknown = next((r for r in pod_reqs if r.get("operator") == "In" and r["key"] not in fixed
                            and not any(p.get("key") == r["key"] for p in pool_reqs)
                            and r["key"] not in (INSTANCE_TYPE, FAMILY, CATEGORY, ZONE, CAPACITY_TYPE,
                                                 "kubernetes.io/arch", "kubernetes.io/os")), None)
            if unknown is not None:
                errors.append(f'incompatible with nodepool "{name}", incompatible requirements, label '
                              f'"{unknown["key"]}" does not have known values')
                continue
            clash = next((r for r in pod_reqs if r["key"] in fixed and not _admits(r, fixed[r["key"]])), None)
            if clash is not None:
                errors.append(f'incompatible with nodepool "{name}", incompatible requirements, key {clash["key"]}, '
                              f"{_requirement_text([clash])} not in {clash['key']} In [{fixed[clash['key']]}]")
                continue
            fitting = []
            for inst in instances.load_instances().values():
                labels = _instance_labels(inst)
                if not all(_admits(r, labels.get(r["key"])) for r in [*pool_reqs, *pod_reqs]
                           if r["key"] in labels):
                    continue
                capacity = self._capacity_of(inst.name)
                if all(parse_quantity(capacity.get(k, "0")) >= v for k, v in requests.items() if v):
                    fitting.append(inst)
            if not fitting:
                shown = [r for r in [*pool_reqs, *pod_reqs] if r["key"] != NODEPOOL_LABEL or r in pool_reqs]
                errors.append(f'incompatible with nodepool "{name}", daemonset overhead={{}}, no instance type '
                              f"satisfied resources {_resources_json(requests)} and requirements "
                              f"{_requirement_text(shown)} (no instance type met the scheduling requirements "
                              "or had enough resources)")
                continue
            limits = (pool.get("spec") or {}).get("limits") or {}
            used = usage.get(name) or collections.defaultdict(Decimal)
            within = [i for i in fitting if self._within(i.name, limits, used)]
            if not within:
                errors.append(f'all available instance types exceed limits for nodepool: "{name}"')
                continue
            within.sort(key=lambda i: (i.prices.get(REGION, 1e9), i.name))
            return self._claim(pool, pool_reqs, pod_reqs, [i.name for i in within], requests), ""
        return None, "; ".join(errors) or "no nodepools found"

    @classmethod
    def _within(cls, itype: str, limits: Mapping[str, Any], used: Mapping[str, Decimal]) -> bool:
        """Whether one more node of `itype` keeps the NodePool within its `spec.limits`."""
        capacity = {**cls._capacity_of(itype), "nodes": "1"}
        return all(used.get(k, Decimal(0)) + parse_quantity(capacity.get(k, "0")) <= parse_quantity(v)
                   for k, v in limits.items())

    @staticmethod
    def _capacity_of(instance_type: str) -> dict[str, str]:
        from ops import instances

        try:
            inst = instances.instance(instance_type)
        except Exception:  # an unknown type (a hand-written NodeClaim): no capacity to count
            return {}
        return {"cpu": str(inst.vcpus), "memory": f"{int(inst.memory_gib)}Gi", "pods": "110",
                "ephemeral-storage": "100Gi", DEVICES[inst.accelerator_kind]: str(inst.devices)}

    @staticmethod
    def _claim_types(claim: Mapping[str, Any]) -> list[str]:
        label = (meta_of(claim).get("labels") or {}).get(INSTANCE_TYPE)
        if label:
            return [str(label)]
        for req in (claim.get("spec") or {}).get("requirements") or []:
            if req.get("key") == INSTANCE_TYPE and req.get("operator") == "In":
                return [str(v) for v in req.get("values") or []] or [""]
        return [""]

    def _claim(self, pool: Obj, pool_reqs: list[Obj], pod_reqs: list[Obj], types: list[str],
               requests: Mapping[str, Decimal]) -> Obj:
        name = meta_of(pool)["name"]
        template = (pool.get("spec") or {}).get("template") or {}
        reqs = [dict(r) for r in pool_reqs if r.get("key") != INSTANCE_TYPE]
        reqs += [dict(r) for r in pod_reqs if r.get("key") not in (INSTANCE_TYPE, NODEPOOL_LABEL)
                 and not any(r.get("key") == p.get("key") for p in reqs)]
        reqs.append({"key": INSTANCE_TYPE, "operator": "In", "values": types[:60]})
        unknown = [{"type": t, "status": "Unknown", "reason": "AwaitingReconciliation",
                    "message": "object is awaiting reconciliation", "lastTransitionTime": utc_now()}
                   for t in ("Launched", "Registered", "Initialized", "Ready")]
        return {"apiVersion": API, "kind": "NodeClaim",
                "metadata": {"name": f"{name}-{random_suffix()}",
                             "labels": {**((template.get("metadata") or {}).get("labels") or {}),
                                        NODEPOOL_LABEL: name},
                             "annotations": {"karpenter.sh/nodepool-hash": safe_hash(pool.get("spec"), 16),
                                             "karpenter.sh/nodepool-hash-version": "v3"},
                             "ownerReferences": [{**owner_ref(pool), "controller": True}]},
                "spec": {"nodeClassRef": dict((template.get("spec") or {}).get("nodeClassRef") or {}),
                         "requirements": reqs, "taints": list((template.get("spec") or {}).get("taints") or []),
                         "expireAfter": (template.get("spec") or {}).get("expireAfter", "720h"),
                         "resources": {"requests": {k: f"{v.normalize():f}" for k, v in sorted(requests.items())
                                                    if v}}},
                "status": {"conditions": unknown}}

    # ---- the NodeClaim lifecycle ---------------------------------------------------------------

    def _sync_nodeclaim(self, _namespace: str, name: str) -> None:
        claim = self.api.get(API, "NodeClaim", None, name)
        if claim is None or is_deleting(claim):
            return
        uid = meta_of(claim)["uid"]
        conditions = status_of(claim).get("conditions") or []
        launched: Obj = next((c for c in conditions if c.get("type") == "Launched"), {})
        since = self._claim_since.setdefault(uid, time.monotonic())
        if launched.get("status") == "False":  # the ICE retry: delete it, the pods get another try
            wait = since + self.ice_retry - time.monotonic()
            if wait > 0:
                self._later(wait, ("NodeClaim", "", name))
                return
            self.api.delete(API, "NodeClaim", None, name)
            self._claim_since.pop(uid, None)
            self._enqueue(("Scheduler", "", ""))
            return
        if launched.get("status") != "True":
            wait = since + self.launch_delay - time.monotonic()
            if wait > 0:
                self._later(wait, ("NodeClaim", "", name))
                return
            self._launch(claim)
            return
        if not status_of(claim).get("nodeName"):
            wait = since + self.register_delay - time.monotonic()
            if wait > 0:
                self._later(wait, ("NodeClaim", "", name))
                return
            self._register(claim)

    def _launch(self, claim: Obj) -> None:
        """CreateFleet over the claim's offerings: the cheapest one with capacity, or an ICE."""
        reqs = (claim.get("spec") or {}).get("requirements") or []
        zones = next((list(r.get("values") or []) for r in reqs if r.get("key") == ZONE and r.get("operator") == "In"),
                     list(ZONES))
        capacity_types = next((list(r.get("values") or []) for r in reqs if r.get("key") == CAPACITY_TYPE
                               and r.get("operator") == "In"), ["on-demand"])
        types = self._claim_types(claim)
        offer = next(((t, z) for t in types for z in zones
                      if t not in self.insufficient_capacity and f"{t}/{z}" not in self.insufficient_capacity), None)
        conditions = status_of(claim).get("conditions") or []
        meta = meta_of(claim)
        self._claim_since[meta["uid"]] = time.monotonic()
        if offer is None:
            errors = "; ".join(
                f"InsufficientInstanceCapacity: We currently do not have sufficient {t} capacity in the "
                f"Availability Zone you requested ({z}). Our system will be working on provisioning additional "
                f"capacity." for t in types[:2] for z in zones)
            message = f"creating instance, insufficient capacity, with fleet error(s), {errors}"
            short = message if len(message) < 300 else message[:300] + "..."
            claim["status"] = {**status_of(claim), "conditions": [
                make_condition(conditions, "Launched", "False", "InsufficientCapacity", short),
                *(c for c in conditions if c.get("type") != "Launched")]}
            self.api.put(claim)
            self._recorder.record(claim, "Warning", "InsufficientCapacityError",
                                  f"NodeClaim {meta['name']} event: {short}", "karpenter")
            self._later(self.ice_retry, ("NodeClaim", "", meta["name"]))
            return
        itype, zone = offer
        capacity = self._capacity_of(itype)
        instance_id = f"i-0{safe_hash([meta['uid'], itype], 16)}"
        meta["labels"] = {**(meta.get("labels") or {}), **self._labels_for(itype, zone, capacity_types[0]),
                          "karpenter.sh/nodeclaim": meta["name"]}  # a self-referential label, as upstream sets
        claim["status"] = {**status_of(claim), "providerID": f"aws:///{zone}/{instance_id}",
                           "imageID": "ami-0sandbox0eks0gpu", "capacity": capacity, "allocatable": capacity,
                           "conditions": [make_condition(conditions, "Launched", "True", "Launched", ""),
                                          *(c for c in conditions if c.get("type") != "Launched")]}
        self.api.put(claim)
        self._later(self.register_delay, ("NodeClaim", "", meta["name"]))
        self._write_pool_status(self._pools())

    def _labels_for(self, itype: str, zone: str, capacity_type: str) -> dict[str, str]:
        from ops import instances

        try:
            labels = _instance_labels(instances.instance(itype))
        except Exception:
            labels = {INSTANCE_TYPE: itype}
        return {**labels, ZONE: zone, "topology.kubernetes.io/region": REGION, CAPACITY_TYPE: capacity_type}

    def _register(self, claim: Obj) -> None:
        meta, status = meta_of(claim), status_of(claim)
        octets = safe_hash([meta["uid"]], 4)
        node_name = f"ip-10-0-{ord(octets[0]) % 250}-{ord(octets[1]) % 250}.{REGION}.compute.internal"
        labels = {k: v for k, v in (meta.get("labels") or {}).items() if k != "karpenter.sh/nodeclaim"}
        labels.update({"kubernetes.io/hostname": node_name, "karpenter.sh/registered": "true",
                       "karpenter.sh/initialized": "true"})
        if DEVICES["gpu"] in (status.get("capacity") or {}):
            labels["nvidia.com/gpu.present"] = "true"
        self.api.put({"apiVersion": "v1", "kind": "Node",
                      "metadata": {"name": node_name, "labels": labels,
                                   "ownerReferences": [{**owner_ref(claim), "blockOwnerDeletion": True}]},
                      "spec": {"providerID": status.get("providerID"),
                               "taints": list((claim.get("spec") or {}).get("taints") or [])},
                      "status": {"capacity": status.get("capacity") or {},
                                 "allocatable": status.get("allocatable") or {},
                                 "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                                 "message": "kubelet is posting ready status",
                                                 "lastTransitionTime": utc_now()}]}})
        conditions = status.get("conditions") or []
        claim["status"] = {**status, "nodeName": node_name, "conditions": [
            next(c for c in conditions if c.get("type") == "Launched"),
            make_condition(conditions, "Registered", "True", "Registered", ""),
            make_condition(conditions, "Initialized", "True", "Initialized", ""),
            make_condition(conditions, "Ready", "True", "Ready", "")]}
        self.api.put(claim)
        self._claim_since.pop(meta["uid"], None)
