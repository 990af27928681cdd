"""The names of the digest's recording rules, and the PromQL that reads their series.

The rules themselves (ops.metrics.rules, shipped in the bot's Helm chart as a PrometheusRule) record
per workload, at every evaluation, what the `steps` and `charts` range queries otherwise read per pod
or per GPU and sum per workload in Python: at N = 500 those were the digest's largest answers and
most of its Python time (bench/NOTES.md). Names follow `level:metric:operations` under `infer_bot:`.

Whether to read them is decided per digest from the replicas query (no query of its own): the
version series must be there at the window's end and at its start, so that rules enabled an hour ago
do not give a day's figures from an hour of data.
"""

from __future__ import annotations

VERSION = 1  # raised when a rule's meaning changes: a chart of another version is not read
LEVEL = "infer_bot:namespace_deployment:"
GPU_AVG = LEVEL + "DCGM_FI_DEV_GPU_UTIL:avg"  # mean over the workload's GPUs, percent
GPU_IDLE = LEVEL + "DCGM_FI_DEV_GPU_UTIL_idle:count"  # its GPUs below IDLE_PCT
NEURON_AVG = LEVEL + "neuroncore_utilization_percent:avg"  # mean over its pods (own cores, else the node's)
QUEUE_SUM = LEVEL + "vllm_num_requests_waiting:sum"
PRESENT = "infer_bot:recording_rules:version"
# The idle threshold GPU_IDLE counts below: QuerySettings' default. A digest configured with another
# (`metrics.idle_util_pct`) reads the raw series.
IDLE_PCT = 10.0
STEPS = (GPU_AVG, GPU_IDLE, NEURON_AVG, QUEUE_SUM)
CHARTS = (GPU_AVG, NEURON_AVG)
ALL = (*STEPS, PRESENT)


def presence(window: str) -> str:
    """The version series where it is there both now and a window ago (`window`: a PromQL duration)."""
    return f"(({PRESENT} == {VERSION}) and on () ({PRESENT} offset {window} == {VERSION}))"


def selector(names: tuple[str, ...], match: str = "") -> str:
    """The recorded series of `names` (optionally one workload's: `match` is more matchers)."""
    return f'{{__name__=~"{"|".join(names)}"{", " + match if match else ""}}}'
