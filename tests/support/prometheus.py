"""Real Prometheus for the tests: the generator of bot/sandbox/metrics_data.py (also what the sandbox
serves) with the tests' own deployments, each shaped so that one rule of the advisor fires, or none.

Every value is a constant, a two-level step or a straight line over the window, and counters grow
linearly, so `rate()` is exact and each expected figure is a short formula (`DataSet.expected`).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

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
    Case("busy-qwen", "g5.2xlarge", 2, util=97.0, fb_used=22000, fb_free=2576, rps=2.0, abort=0.05,
         e2e=((8.0, 0.1), (16.0, 0.5), (32.0, 0.4)), e2e_mean=15.0,
         ttft=((2.0, 0.5), (4.0, 0.5)), ttft_mean=2.5, tpot=((0.1, 0.5), (0.2, 0.5)), tpot_mean=0.12,
         queue=(0.0, 24.0), running=32.0, kv=(0.9, 0.99), preemptions_per_s=0.01),
    # Healthy: 80 % except a quiet first 4 hours at 5 %, fast, no queue, one restart (below threshold).
    Case("healthy-mistral", "g6.xlarge", 2, util=80.0, low_util=5.0, low_hours=4.0, rps=1.0,
         kv=(0.5, 0.5), restarts_at_hours=(12.0,)),
    # Neuron: 60 % / 40 % on its two NeuronCores, restarting: 4 restarts in the window.
    Case("neuron-llama", "inf2.xlarge", 1, accelerator="neuron", core_utils=(0.6, 0.4), rps=0.5,
         restarts_at_hours=(4.0, 9.0, 14.0, 19.0)),
    # Nobody called it all day: an undeploy candidate.
    Case("unused-phi", "g5.xlarge", 1, util=0.0, fb_used=6000, fb_free=18576, rps=0.0, running=0.0,
         kv=(0.0, 0.0)),
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


def closed_port() -> str:
    """A loopback URL nothing listens on: a cluster whose Prometheus is down."""
    return f"http://127.0.0.1:{free_port()}"
