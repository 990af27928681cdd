"""Real Prometheus for the tests: the generator of bot/sandbox/metrics_data.py (also what the sandbox
serves) with the tests' own deployments, each shaped so that one rule of the advisor fires, or none.

The data sets look like a default install (no `kube_node_labels`, neuron-monitor labelled with EC2
labels only, vLLM servers of both metric generations); `allowlisted_dataset` is the one where an
operator allow-listed the node instance-type label (and a neuron-monitor runs inside its model
server's pod), so that both paths stay tested. Where a digest needs instance types, the tests put
the data set's Nodes into the Kubernetes emulator (`put_nodes`, `node_api`), as a real cluster has them.

Every value is a constant, a two-level step or a straight line over the window, and counters grow
linearly, so `rate()` is exact and each expected figure is a short formula (`DataSet.expected`).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bot.sandbox.metrics_data import (  # noqa: F401  (re-exported for the tests)
    E2E_BUCKETS,
    INSTALL_HINT,
    TPOT_BUCKETS,
    TTFT_BUCKETS,
    Case,
    DataSet,
    PrometheusServer,
    aligned_now,
    backfill,
    binaries,
    dataset_at,
    histogram_quantile,
    quantile,
    serve_dataset,
)
from tests.support.botproc import free_port

CASES: tuple[Case, ...] = (
    # Three GPUs at 4 % with a trickle of traffic: scale 3 → 1.
    Case("idle-llama", "g5.xlarge", 3, util=4.0, exported=True, fb_used=4096, fb_free=20480, rps=0.1,
         running=0.2, kv=(0.05, 0.05)),
    # Saturated: 97 % busy, slow, a queue growing by 1 per pod-hour, KV cache near full with preemptions.
    # vLLM 0.11: TPOT under its new name and, deprecated, its old one (read once).
    Case("busy-qwen", "g5.2xlarge", 2, util=97.0, fb_used=22000, fb_free=2576, rps=2.0, abort=0.05,
         e2e=((8.0, 0.1), (16.0, 0.5), (32.0, 0.4)), e2e_mean=15.0,
         ttft=((2.0, 0.5), (4.0, 0.5)), ttft_mean=2.5, tpot=((0.1, 0.5), (0.2, 0.5)), tpot_mean=0.12,
         queue=(0.0, 24.0), running=32.0, kv=(0.9, 0.99), preemptions_per_s=0.01, vllm="0.11.0"),
    # Healthy: 80 % except a quiet first 4 hours at 5 %, fast, no queue, one restart (below threshold).
    # vLLM 0.12: TPOT only under the new name; 3 % of requests end in an engine error, 1 % aborted.
    Case("healthy-mistral", "g6.xlarge", 2, util=80.0, low_util=5.0, low_hours=4.0, rps=1.0,
         kv=(0.5, 0.5), restarts_at_hours=(12.0,), vllm="0.12.0", abort=0.01, error=0.03),
    # Neuron: 60 % / 40 % on its two NeuronCores (neuron-monitor's DaemonSet: EC2 labels, no pod),
    # restarting: 4 restarts in the window.
    Case("neuron-llama", "inf2.xlarge", 1, accelerator="neuron", core_utils=(0.6, 0.4), rps=0.5,
         restarts_at_hours=(4.0, 9.0, 14.0, 19.0)),
    # Nobody called it all day: an undeploy candidate.
    Case("unused-phi", "g5.xlarge", 1, util=0.0, fb_used=6000, fb_free=18576, rps=0.0, running=0.0,
         kv=(0.0, 0.0)),
)


# Every workload kind the inference chart makes.
WORKLOAD_CASES: tuple[Case, ...] = (
    # lws-vllm: two groups, each a leader (serving) and a worker, one GPU per pod.
    Case("scout", "g6e.12xlarge", 2, workload="LeaderWorkerSet", util=55.0, fb_used=30000, fb_free=15000, rps=0.4),
    # ray-vllm: the RayService's RayCluster pods.
    Case("mistral", "g5.12xlarge", 1, workload="RayService", util=35.0, rps=0.3),
    # A Deployment named like an LWS group's worker StatefulSet would be, beside it.
    Case("scout-9", "g5.xlarge", 1, util=20.0, rps=0.2),
)


def fleet(n: int) -> tuple[Case, ...]:
    """n look-alike healthy deployments over several namespaces, for the scale test."""
    return tuple(Case(f"model-{i:03d}", "g5.xlarge", 1, namespace=f"team-{i % 7}", util=60.0 + i % 30,
                      rps=0.5 + (i % 5) / 10) for i in range(n))


# ---- one server per data set per test process ---------------------------------------------------------

_SERVERS: dict[str, tuple[DataSet, PrometheusServer]] = {}


def shared(name: str, make: Callable[[], DataSet]) -> tuple[DataSet, PrometheusServer]:
    """The data set `name` served once per test process (several test modules share it), stopped at exit.

    Session fixtures imported into several modules would be instantiated once per module; this
    cache makes the generate-backfill-start cost a once-per-session cost.
    """
    if name not in _SERVERS:
        import atexit
        import tempfile

        binaries()
        workdir = Path(tempfile.mkdtemp(prefix=f"infer-bot-prom-{name}-"))
        dataset = make()
        server = serve_dataset(dataset, workdir)
        _SERVERS[name] = (dataset, server)

        def cleanup() -> None:
            server.stop()
            shutil.rmtree(workdir, ignore_errors=True)

        atexit.register(cleanup)
    return _SERVERS[name]


def main_dataset() -> tuple[DataSet, PrometheusServer]:
    """The five hand-computable deployments, ending at the last 5-minute boundary (data runs on 1 h more)."""
    return shared("main", lambda: dataset_at(CASES))


FLEET_SIZE = 200


FLEET_INTERVAL = 900


def fleet_dataset() -> tuple[DataSet, PrometheusServer]:
    """200 deployments sampled every 15 minutes (the digest then steps 15 min, rates over 45 min).

    Samples fall on the step times, so every step sees a fresh sample and the figures stay exact;
    the data is a third of a 5-minute set, which keeps the test quick on a 2-core machine.
    """
    return shared("fleet", lambda: dataset_at(fleet(FLEET_SIZE), aligned_now(FLEET_INTERVAL), interval=FLEET_INTERVAL,
                                              step=FLEET_INTERVAL, before=3 * FLEET_INTERVAL, after=0))


# Neuron deployments sharing an inf2.24xlarge (6 chips, 12 NeuronCores), requesting cores: neuron-a's
# first pod (4 cores at 90 %) beside neuron-b's (2 cores at 5 %), neuron-a's second pod alone on a
# node of its own. neuron-monitor reports the node's cores, not whose they are: each pod takes the
# share of its node that it requested (4/6 and 2/6 of the shared node, all of the other).
SHARED_NODE = "ip-10-0-7-1.us-west-2.compute.internal"
NEURON_CASES: tuple[Case, ...] = (
    Case("neuron-a", "inf2.24xlarge", 2, accelerator="neuron", neuron_resource="aws_amazon_com_neuroncore",
         requests_per_pod=4, core_utils=(0.9, 0.9, 0.9, 0.9), rps=1.0,
         nodes=(SHARED_NODE, "ip-10-0-7-2.us-west-2.compute.internal")),
    Case("neuron-b", "inf2.24xlarge", 1, accelerator="neuron", neuron_resource="aws_amazon_com_neuroncore",
         requests_per_pod=2, core_utils=(0.05, 0.05), rps=0.2, nodes=(SHARED_NODE,)),
)

# kube-state-metrics with the node instance-type label allow-listed, and a neuron-monitor running in
# its model server's pod (its series carry that pod as well as the EC2 labels).
ALLOWLISTED_CASES: tuple[Case, ...] = (
    Case("labelled-llama", "g6.xlarge", 2, util=55.0, rps=0.8),
    Case("sidecar-neuron", "inf2.xlarge", 1, accelerator="neuron", neuron_labels="pod", core_utils=(0.7, 0.3),
         rps=0.4),
)


def neuron_dataset() -> tuple[DataSet, PrometheusServer]:
    return shared("neuron", lambda: dataset_at(NEURON_CASES))


def allowlisted_dataset() -> tuple[DataSet, PrometheusServer]:
    return shared("allowlisted", lambda: dataset_at(ALLOWLISTED_CASES, node_labels=True))


# ---- the data set's Nodes in the Kubernetes API ----------------------------------------------------------


def put_nodes(kube: Any, dataset: DataSet) -> None:
    """The Nodes the data set's pods run on, into an emulator (instance-type label, providerID)."""
    from bot.sandbox.environment import dataset_node

    for spec in dataset.nodes():
        kube.put(dataset_node(spec))


@contextlib.contextmanager
def node_api(dataset: DataSet, tmp: Path, name: str = "dev") -> Iterator[Any]:
    """An ops.kube.KubeCluster on a Kubernetes emulator that holds the data set's Nodes (and nothing else)."""
    from bot.sandbox.kubeapi import KubeEmulator
    from ops.kube import KubeCluster

    emulator = KubeEmulator()
    emulator.start()
    try:
        put_nodes(emulator, dataset)
        yield KubeCluster(name, kubeconfig=str(emulator.write_kubeconfig(tmp / "kubeconfig")), context="sandbox"), \
            emulator
    finally:
        emulator.stop()


def closed_port() -> str:
    """A loopback URL nothing listens on: a cluster whose Prometheus is down."""
    return f"http://127.0.0.1:{free_port()}"
