"""Per-deployment inference metrics from Prometheus: a fixed set of aggregated PromQL queries per cluster.

Cost on Prometheus is the design constraint: a digest costs `len(QUERIES)` queries per cluster,
whatever the number of deployments (ops/metrics/queries.py says how).

The modules, each importing only those above it:

* `recorded`: the names of the digest's recording rules and the PromQL that reads their series.
* `queries`: QuerySettings and the PromQL builder (QUERIES, promql()).
* `rules`: the recording rules themselves (the Helm chart's PrometheusRule is its output).
* `client`: Prometheus' HTTP API (instant and range queries, probe) and PromError.
* `workloads`: the per-pod and raw answers combined per workload with the owner mapping (sums,
  means, maxima, the step statistics: utilization p95, queue max, the charts).
* `collector`: collect() over every cluster's Prometheus, the result types and bucket_quantile.
* `nodes`: the instance types of a cluster's Node objects (Kubernetes API), for the nodes that
  kube-state-metrics does not type (a default install has no `kube_node_labels` instance type).

This package only re-exports their public names, so callers import from `ops.metrics`.
"""

from ops.metrics.client import PromError, Prometheus, probe
from ops.metrics.collector import (
    ClusterMetrics,
    DeploymentMetrics,
    Point,
    Stats,
    Target,
    bucket_quantile,
    collect,
)
from ops.metrics.queries import INSTANT, QUERIES, RANGE, DigestQueries, Key, QuerySettings, promql, range_promql

__all__ = [
    "INSTANT",
    "QUERIES",
    "RANGE",
    "ClusterMetrics",
    "DeploymentMetrics",
    "DigestQueries",
    "Key",
    "Point",
    "PromError",
    "Prometheus",
    "QuerySettings",
    "Stats",
    "Target",
    "bucket_quantile",
    "collect",
    "probe",
    "promql",
    "range_promql",
]
