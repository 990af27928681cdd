"""Is a cluster ready for the bot? Each piece the presets, digests and provisioning rely on, found or
not, and what a missing one costs: the readiness doctor behind `infer-bot check` and
`/infer clusters <name>`.

Only reads: API discovery, NodePools (ops/karpenter.py's reading) and one Secret's existence
through the cluster's ApiClient, a few counting PromQL queries through ops.metrics' client, and
`version` of the helm and terraform binaries. Nothing here decides how a finding looks; handlers/readiness_blocks.py and
bot/check.py render the same findings.

Levels: `fail` blocks the bot (the cluster or its Prometheus cannot be reached, a binary a
configured verb needs is missing); `warn` is an optional piece that is missing, with its cost;
`info` is a fact worth knowing that costs nothing; `ok` is a piece that is there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from ops.errors import OpsError
from ops.instances import load_instances
from ops.karpenter import INSTANCE_FAMILY, INSTANCE_TYPE, allowed_families, category, list_nodepools
from ops.kube import KubeCluster
from ops.metrics import PromError, Prometheus, probe
from ops.releases.api import ReleaseApi

Level = Literal["ok", "info", "warn", "fail"]

HF_TOKEN_SECRET = "hf-token"
# How far back a series counts as "there": a few scrape intervals, so one missed scrape does not
# make an exporter look absent.
LOOKBACK = "15m"
BINARY_TIMEOUT = 15.0


@dataclass(frozen=True)
class Finding:
    piece: str  # what was looked at: "KubeRay CRDs", "DCGM exporter", "helm"
    level: Level
    text: str  # one line: what is there, or what is missing, what that costs and how to fix it


@dataclass(frozen=True)
class Readiness:
    cluster: str
    findings: tuple[Finding, ...]

    @property
    def blocking(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.level == "fail")


# ---- custom resources the presets and verbs render ---------------------------------------------


@dataclass(frozen=True)
class Crd:
    piece: str
    api_version: str
    kind: str
    name: str  # the CRD's own name: <plural>.<group>
    cost: str
    fix: str


CRDS: tuple[Crd, ...] = (
    Crd("KubeRay CRDs", "ray.io/v1", "RayService", "rayservices.ray.io",
        "ray-vllm presets cannot deploy", "enable_kuberay_operator in the blueprint"),
    Crd("LWS CRDs", "leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet", "leaderworkersets.leaderworkerset.x-k8s.io",
        "lws-vllm presets cannot deploy", "enable_leader_worker_set in the blueprint"),
    Crd("KEDA CRDs", "keda.sh/v1alpha1", "ScaledObject", "scaledobjects.keda.sh",
        "`autoscale metric=queue` is refused (metric=cpu still works)", "install KEDA (kedacore/keda)"),
    Crd("AIBrix CRDs", "autoscaling.aibrix.ai/v1alpha1", "PodAutoscaler", "podautoscalers.autoscaling.aibrix.ai",
        "aibrix presets run as plain vLLM Deployments, without AIBrix's gateway routing and autoscaling",
        "enable_aibrix_stack in the blueprint"),
)


def crd_findings(api: ReleaseApi) -> list[Finding]:
    out = []
    for crd in CRDS:
        served = api.resources_of(crd.api_version)
        if served is not None and crd.kind in served:
            out.append(Finding(crd.piece, "ok", f"{crd.piece}: {crd.name} ({crd.api_version})"))
        else:
            out.append(Finding(crd.piece, "warn", f"{crd.piece} missing ({crd.name}): {crd.cost}; {crd.fix}"))
    return out


# ---- Karpenter NodePools -------------------------------------------------------------------------
# The NodePool reading and requirement logic live in ops/karpenter.py, shared with the deploy fit
# check and the rollout diagnosis; the doctor only judges what it finds.


def accelerator_families() -> dict[str, str]:
    """family → "gpu" | "neuron", for every accelerated family the instance table knows."""
    return {i.family: i.accelerator_kind for i in load_instances().values()}


def _kind_of(family: str, known: Mapping[str, str]) -> str | None:
    if family in known:
        return known[family]
    return {"g": "gpu", "gr": "gpu", "p": "gpu", "inf": "neuron", "trn": "neuron"}.get(category(family))


def _named_families(nodepool: Mapping[str, Any]) -> set[str]:
    spec = ((nodepool.get("spec") or {}).get("template") or {}).get("spec") or {}
    named: set[str] = set()
    for req in spec.get("requirements") or []:
        if isinstance(req, Mapping) and req.get("operator") == "In":
            values = [str(v) for v in req.get("values") or []]
            if req.get("key") == INSTANCE_FAMILY:
                named |= set(values)
            elif req.get("key") == INSTANCE_TYPE:
                named |= {v.split(".", 1)[0] for v in values}
    return named


def nodepool_findings(nodepools: Sequence[Mapping[str, Any]] | None) -> tuple[list[Finding], bool]:
    """Findings about Karpenter, and whether any NodePool admits a Neuron family."""
    if nodepools is None:
        return [Finding("Karpenter", "warn", "Karpenter NodePools missing (no karpenter.sh/v1 NodePool API): nothing "
                        "adds GPU or Neuron nodes for Pending pods, models run only on existing node groups; "
                        "install Karpenter (the ai-on-eks inference-ready cluster includes it)")], False
    if not nodepools:
        return [Finding("Karpenter", "warn", "Karpenter has no NodePool: nothing adds nodes for Pending pods; "
                        "create a NodePool that allows GPU instance families")], False
    known = accelerator_families()
    by_kind: dict[str, list[tuple[str, list[str]]]] = {"gpu": [], "neuron": []}
    for pool in nodepools:
        name = str((pool.get("metadata") or {}).get("name", "?"))
        candidates = sorted(set(known) | _named_families(pool))
        families = allowed_families(pool, candidates)
        for kind in by_kind:
            mine = [f for f in families if _kind_of(f, known) == kind]
            if mine:
                by_kind[kind].append((name, mine))
    names = ", ".join(f"`{(p.get('metadata') or {}).get('name', '?')}`" for p in nodepools)
    out = []
    for kind, label, what in (("gpu", "GPU", "GPU presets"), ("neuron", "Neuron", "Inferentia/Trainium presets")):
        pools = by_kind[kind]
        if pools:
            listed = "; ".join(f"`{name}` ({_shorten(fams)})" for name, fams in pools)
            out.append(Finding(f"Karpenter {label}", "ok", f"Karpenter NodePools allowing {label} families: {listed}"))
        else:
            example = "g5, g6" if kind == "gpu" else "inf2, trn1"
            out.append(Finding(f"Karpenter {label}", "warn",
                               f"no Karpenter NodePool allows a {label} instance family (NodePools: {names}): "
                               f"{what} stay Pending unless a node group provides them; allow {example} in a "
                               f"NodePool's {INSTANCE_FAMILY}"))
    return out, bool(by_kind["neuron"])


def _shorten(families: Sequence[str], shown: int = 6) -> str:
    return ", ".join(families[:shown]) + (f", … ({len(families)} families)" if len(families) > shown else "")


# ---- the hf-token Secret -----------------------------------------------------------------------


def secret_finding(api: ReleaseApi, namespace: str, command: str = "/infer") -> Finding:
    # Only whether it exists: the value never leaves the cluster.
    found = api.request(f"read Secret {namespace}/{HF_TOKEN_SECRET}", "GET",
                        f"/api/v1/namespaces/{namespace}/secrets/{HF_TOKEN_SECRET}")
    if found is not None:
        return Finding("hf-token", "ok", f"Secret `{HF_TOKEN_SECRET}` in `{namespace}`")
    return Finding("hf-token", "warn", f"Secret `{HF_TOKEN_SECRET}` missing in `{namespace}`: presets of gated "
                   f"models (Llama, Mistral, …) cannot download their weights; `{command} secret hf-token` sets it")


# ---- Prometheus: which exporters are scraped, and how they are labelled -------------------------


def _q(expr: str) -> str:
    return f"count(last_over_time({expr}[{LOOKBACK}]))"


QUERIES: dict[str, str] = {
    "dcgm": _q("DCGM_FI_DEV_GPU_UTIL"),
    "dcgm_exported": _q('DCGM_FI_DEV_GPU_UTIL{exported_pod!=""}'),
    "dcgm_pod": _q('DCGM_FI_DEV_GPU_UTIL{exported_pod="",pod!=""}'),
    "ksm_nodes": _q("kube_node_info"),
    "node_labels": _q('kube_node_labels{label_node_kubernetes_io_instance_type!=""}'),
    "vllm_new": _q("vllm:inter_token_latency_seconds_count"),
    # Servers that export only the old name: a 0.11 server exports both while the old one is deprecated.
    "vllm_old": (f"count(last_over_time(vllm:time_per_output_token_seconds_count[{LOOKBACK}]) unless on(job, instance) "
                 f"last_over_time(vllm:inter_token_latency_seconds_count[{LOOKBACK}]))"),
    "neuron": _q("neuroncore_utilization_ratio"),
}


def _count(prom: Prometheus, promql: str, at: datetime) -> int:
    result = prom.query(promql, at)
    return int(float(result[0]["value"][1])) if result else 0


def prometheus_findings(url: str | None, timeout: float, *, neuron_expected: bool,
                        now: datetime | None = None) -> list[Finding]:
    if not url:
        return [Finding("Prometheus", "warn", "no `prometheus_url`: digests and `/infer metrics` have no data for "
                        "this cluster; set it to the cluster's Prometheus (kube-prometheus-stack)")]
    try:
        version = probe(url, timeout=timeout)
    except PromError as exc:
        return [Finding("Prometheus", "fail", str(exc))]
    prom = Prometheus(url, timeout)
    at = now or datetime.now(UTC)
    try:
        n = {key: _count(prom, promql, at) for key, promql in QUERIES.items()}
    except PromError as exc:
        return [Finding("Prometheus", "fail", f"Prometheus {version} at {url} answers, but a query failed: {exc}")]
    out = [Finding("Prometheus", "ok", f"Prometheus {version} at {url} answers queries")]
    out.append(_dcgm(n["dcgm"], n["dcgm_exported"], n["dcgm_pod"]))
    out.append(_kube_state_metrics(n["ksm_nodes"], n["node_labels"]))
    out.append(_vllm(n["vllm_new"], n["vllm_old"]))
    out.append(_neuron(n["neuron"], neuron_expected))
    return out


def _dcgm(total: int, exported: int, pod: int) -> Finding:
    if not total:
        return Finding("DCGM exporter", "warn", "DCGM exporter missing (no DCGM_FI_DEV_GPU_UTIL): GPU deployments show "
                       "no utilization, memory or idle cost in digests; install NVIDIA dcgm-exporter with a "
                       "ServiceMonitor")
    if exported:
        return Finding("DCGM exporter", "ok", f"DCGM exporter: {total} GPU series, workload pods labelled "
                       "`exported_namespace`/`exported_pod` (ServiceMonitor with honorLabels: false); read as such")
    if pod:
        return Finding("DCGM exporter", "ok", f"DCGM exporter: {total} GPU series, workload pods labelled "
                       "`namespace`/`pod` (honorLabels: true)")
    return Finding("DCGM exporter", "warn", f"DCGM exporter: {total} GPU series without pod labels: GPU use cannot be "
                   "attributed to deployments; turn on dcgm-exporter's Kubernetes pod mapping")


def _kube_state_metrics(nodes: int, labelled: int) -> Finding:
    if not nodes:
        return Finding("kube-state-metrics", "warn", "kube-state-metrics missing (no kube_node_info): digests cannot "
                       "map accelerators to deployments or see replicas and restarts; install kube-state-metrics")
    if labelled:
        return Finding("kube-state-metrics", "ok", f"kube-state-metrics: {nodes} nodes; kube_node_labels carries "
                       "the instance type")
    return Finding("kube-state-metrics", "info", f"kube-state-metrics: {nodes} nodes, no kube_node_labels instance "
                   "type (a default install): instance types come from the Kubernetes Node objects; "
                   "--metric-labels-allowlist=nodes=[node.kubernetes.io/instance-type] puts them in Prometheus")


def _vllm(new: int, old: int) -> Finding:
    if new and old:
        return Finding("vLLM metrics", "ok", f"vLLM metrics: both generations, {new} server(s) with the ≥ 0.11 names "
                       f"and {old} with the older ones; both are read")
    if new:
        return Finding("vLLM metrics", "ok", f"vLLM metrics: ≥ 0.11 names (vllm:inter_token_latency_seconds) "
                       f"on {new} server(s)")
    if old:
        return Finding("vLLM metrics", "ok", f"vLLM metrics: pre-0.11 names (vllm:time_per_output_token_seconds) "
                       f"on {old} server(s)")
    return Finding("vLLM metrics", "info", "vLLM metrics: none scraped yet: latency, throughput and queue figures "
                   "appear once a vLLM server's /metrics is scraped")


def _neuron(cores: int, expected: bool) -> Finding:
    if cores:
        return Finding("neuron-monitor", "ok", f"neuron-monitor: {cores} NeuronCore series")
    if expected:
        return Finding("neuron-monitor", "warn", "neuron-monitor missing (no neuroncore_utilization_ratio): "
                       "Inferentia/Trainium deployments show no utilization or idle cost; run neuron-monitor "
                       "with its Prometheus exporter")
    return Finding("neuron-monitor", "info", "neuron-monitor: not scraped (only Inferentia/Trainium nodes need it)")


# ---- one cluster --------------------------------------------------------------------------------


def check_cluster(kube: KubeCluster, namespace: str, prometheus_url: str | None, *, timeout: float = 10.0,
                  command: str = "/infer", now: datetime | None = None) -> Readiness:
    """Everything about one cluster; an unreachable API server is the only reason to skip its reads."""
    findings: list[Finding] = []
    neuron_expected = False
    try:
        findings.append(Finding("Kubernetes", "ok", f"Kubernetes {kube.ping()} reachable"))
    except OpsError as exc:
        findings.append(Finding("Kubernetes", "fail", exc.message))
    else:
        api = ReleaseApi(kube)
        findings += _guarded("CRDs", lambda: crd_findings(api))
        def nodepools() -> list[Finding]:
            nonlocal neuron_expected
            found, neuron_expected = nodepool_findings(list_nodepools(api))
            return found

        findings += _guarded("Karpenter", nodepools)
        findings += _guarded("hf-token", lambda: [secret_finding(api, namespace, command)])
    findings += prometheus_findings(prometheus_url, timeout, neuron_expected=neuron_expected, now=now)
    return Readiness(kube.name, tuple(findings))


def _guarded(piece: str, read: Callable[[], list[Finding]]) -> list[Finding]:
    # A read the bot's RBAC does not allow is a warning about that piece, not a failed check.
    try:
        return read()
    except OpsError as exc:
        return [Finding(piece, "warn", f"{piece}: could not check ({exc.message})")]


# ---- the binaries deploy and provision run ------------------------------------------------------


def helm_binary() -> str:
    return os.environ.get("HELM_BIN") or "helm"


def terraform_binary() -> str:
    return os.environ.get("TERRAFORM_BIN") or "terraform"


def _version(argv: list[str]) -> tuple[str | None, str]:
    """(its output, "") or (None, why not)."""
    if shutil.which(argv[0]) is None:
        return None, "not found"
    try:
        run = subprocess.run(argv, capture_output=True, text=True, timeout=BINARY_TIMEOUT, check=False,
                             stdin=subprocess.DEVNULL, env={**os.environ, "CHECKPOINT_DISABLE": "1"})
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, type(exc).__name__
    if run.returncode != 0:
        lines = [line for line in run.stderr.splitlines() if line.strip()]
        return None, f"exit {run.returncode}: {lines[-1][:200] if lines else ''}".rstrip(": ")
    return run.stdout.strip(), ""


def binary_findings(*, helm: str | None = None, terraform: str | None = None,
                    terraform_needed: bool) -> list[Finding]:
    helm, terraform = helm or helm_binary(), terraform or terraform_binary()
    out = []
    version, why = _version([helm, "version", "--template", "{{.Version}}"])
    if version:
        out.append(Finding("helm", "ok", f"helm {version} (`{shutil.which(helm)}`)"))
    else:
        out.append(Finding("helm", "fail", f"helm `{helm}` {why}: deploy, rollback and undeploy cannot render the "
                           "chart; install helm or set HELM_BIN"))
    found, why = _version([terraform, "version", "-json"])
    tf_version = None
    if found:
        try:
            tf_version = str(json.loads(found)["terraform_version"])
        except (ValueError, KeyError, TypeError):
            found, why = None, "answered `version -json` without a version"
    if tf_version:
        where = shutil.which(terraform)
        tail = "" if terraform_needed else "; provisioning is off (no `terraform.root`)"
        out.append(Finding("terraform", "ok", f"terraform {tf_version} (`{where}`){tail}"))
    elif terraform_needed:
        out.append(Finding("terraform", "fail", f"terraform `{terraform}` {why}: provision, destroy and drift cannot "
                           "run; install Terraform or set TERRAFORM_BIN"))
    else:
        out.append(Finding("terraform", "info", f"terraform `{terraform}` {why}; not needed while `terraform.root` "
                           "is unset (provisioning is off)"))
    return out
