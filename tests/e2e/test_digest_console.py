"""Digests in the sandbox console: a real Prometheus over generated data, or a clear word when there is none."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.console import run_console

DIGEST_AND_APPLY = """\
/infer digest now
/infer metrics qwen3-1-7b-vllm
:click suggestion_apply 1
:click suggestion_apply 1
:as U0APPROVER
:approve 1
:quit
"""


def test_sandbox_digest_shows_real_numbers_suggestions_and_apply_goes_through_approval():
    out = run_console(DIGEST_AND_APPLY)
    assert "Prometheus at http://127.0.0.1:" in out and "generated day of metrics" in out
    digest, _, rest = out.partition("== qwen3-1-7b-vllm · last 24 h ==")
    # The headline: utilization (96 % and 6 % on one GPU each), cost of two g5.xlarge, the worst latency.
    assert "*Accelerator utilization*: :small_red_triangle_down: 51.0 % (target 70 %)" in digest
    assert "*Cost*: $48.29/day" in digest and "*Worst latency*: 30.0 s p95 · `qwen3-1-7b-vllm`" in digest
    assert "clusters: sandbox :white_check_mark: · 14 PromQL queries" in digest
    assert "p50/p95/p99 14.4 s / 30.0 s / 31.6 s" in digest and "GPU util 6 % mean" in digest
    # The seed's servers are of both vLLM generations (0.10.2 and 0.11): each shows its TPOT.
    assert "TPOT 120 ms" in digest and "TPOT 60 ms" in digest
    assert "*Scale qwen3-1-7b-vllm 1 → 2*" in digest and "[Apply → :click suggestion_apply 1]" in digest
    assert "llama-32-1b-vllm: a cheaper instance would do" in digest and "`g6.xlarge`" in digest
    assert "(file: Accelerator utilization and p95 latency, last 24 h)" in digest  # the chart, in the thread
    # /infer metrics: only the asker sees it, with its trend and its own Apply button.
    assert digest.rstrip().endswith("[only you see]   :test_tube: SANDBOX: a local emulated cluster, "
                                    "nothing real is changed")
    assert "util   `" in rest and "now 96 %" in rest and "[Apply → :click suggestion_apply 2]" in rest
    # Apply: the same approval card a typed `scale` gets; a second click requests nothing more.
    assert "*Change*: replicas 1 → 2" in rest and "[Approve → :click op_approve 1]" in rest
    assert "Requested `scale qwen3-1-7b-vllm 2 namespace=default cluster=sandbox` as operation #1" in rest
    assert "already applied by <@U0OPERATOR> as operation #1; nothing new was requested" in rest
    assert "Approved by <@U0APPROVER>" in rest and "has 2/2 replicas available" in rest
    assert "operation #2" not in rest


def test_sandbox_without_prometheus_says_so_and_digests_report_it_unreachable():
    # PATH without /usr/bin: the machine's `prometheus` and `promtool` are out of reach.
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    run = subprocess.run([sys.executable, "-m", "bot.cli", "console", "--sandbox"], env=env, text=True,
                         input="/infer digest now\n/infer metrics qwen3-1-7b-vllm\n:quit\n",
                         capture_output=True, timeout=120)
    assert run.returncode == 0 and "Traceback" not in run.stdout + run.stderr, run.stdout + run.stderr
    out = run.stdout
    assert "No Prometheus in this sandbox: `prometheus`/`promtool` are not on PATH" in out
    assert "apt-get install -y --no-install-recommends prometheus" in out
    assert ":warning: *sandbox*: no data — cannot connect to Prometheus at http://127.0.0.1:" in out
    assert "(connection refused)" in out and "The other clusters are complete" not in out
    assert "*Cost*: n/a" in out and "clusters: sandbox :x:" in out
    assert ":no_entry: I cannot read the metrics of `sandbox`: cannot connect to Prometheus" in out
