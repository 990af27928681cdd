"""Digests on a default install, end to end (a real `infer-bot serve` over signed HTTP, the local Slack, the
Kubernetes emulator, a real Prometheus): kube-state-metrics without the node-label allow-list,
neuron-monitor labelled with EC2 labels only, vLLM servers of both metric generations — and the
allow-listed variant, whose series path still works."""

from __future__ import annotations

from ops.instances import instance
from tests.support.prometheus import aligned_now, allowlisted_dataset, main_dataset, neuron_dataset, put_nodes
from tests.support.slack import OPERATOR, VIEWER, text_of


def reply_to(slack, command: str, timeout: float = 30):
    return slack.wait_for(lambda c: c.method == "response_url" and c.target.endswith(command), timeout=timeout)


def digest_message(slack, timeout: float = 30):
    return slack.wait_for(lambda c: c.method == "chat.postMessage" and not c.params.get("thread_ts")
                          and "Inference digest" in str(c.params.get("text")), timeout=timeout)


def node_lists(kube) -> int:
    return sum(1 for method, path, _ in kube.requests if method == "GET" and path == "/api/v1/nodes")


def steps_moved_on(dataset) -> int:
    """How many 5-minute steps the digest's 24 h window has moved on since the data set's end."""
    return int((aligned_now().timestamp() - dataset.end.timestamp()) // 300)


def test_cost_is_priced_from_the_node_objects_without_kube_node_labels(make_bot, slack, kube):
    dataset, server = main_dataset()
    put_nodes(kube, dataset)
    bot = make_bot(cluster={"prometheus_url": server.url})
    moved = [steps_moved_on(dataset)]
    bot.slash("digest now", user=OPERATOR)
    shown = text_of(digest_message(slack))
    moved.append(steps_moved_on(dataset))
    # Σ devices × 24 h × on-demand price per device: 3 + 1 g5.xlarge, 2 g5.2xlarge, 2 g6.xlarge, 1 inf2.xlarge;
    # idle: idle-llama and unused-phi all day, and healthy-mistral's quiet first 4 h — less the 5-minute
    # steps of them that have left the window since the (shared) data set was made.
    assert "*Cost*\n$211.58/day" in shown
    mistral_step = 2 * instance("g6.xlarge").prices["us-west-2"] / 12
    idle = {103.0144 - n * mistral_step for n in moved}
    assert any(f"*Idle cost* (below 10 % util)\n${i:.2f}/day · {100 * i / 211.58:.0f} %" in shown
               for i in idle), (idle, shown)
    assert "*idle-llama* · dev/default · `g5.xlarge` × 3 GPU · *$72.43/day* (idle $72.43)" in shown
    assert "14 PromQL queries" in shown and node_lists(kube) == 1  # one Node list for the whole digest


def test_neuron_deployments_get_utilization_and_idle_cost_through_their_node(make_bot, slack, kube):
    dataset, server = neuron_dataset()
    put_nodes(kube, dataset)
    bot = make_bot(cluster={"prometheus_url": server.url})
    bot.slash("metrics neuron-b", user=VIEWER)
    shown = text_of(reply_to(slack, "metrics neuron-b"))
    # neuron-b requests 2 of the 6 NeuronCores requested on its inf2.24xlarge; neuron-monitor's cores there
    # average 61.7 %, 2 of 6 below 10 %: a third of its 2 × 24 NeuronCore-hours at $6.4906/12 is idle.
    assert "*neuron-b* · dev/default · `inf2.24xlarge` × 2 Neuron · *$25.96/day* (idle $8.65)" in shown
    assert "Neuron util 62 % mean · 62 % p95 · 33 % idle" in shown and "now 62 %" in shown
    bot.slash("metrics neuron-a", user=VIEWER)
    shown = text_of(reply_to(slack, "metrics neuron-a"))
    assert "`inf2.24xlarge` × 8 Neuron · *$103.85/day* (idle $17.31)" in shown and "Neuron util 76 % mean" in shown


def test_vllm_011_time_per_output_token_shows_and_errors_count_as_failed(make_bot, slack, kube):
    dataset, server = main_dataset()
    put_nodes(kube, dataset)
    bot = make_bot(cluster={"prometheus_url": server.url})
    bot.slash("metrics healthy-mistral", user=VIEWER)
    shown = text_of(reply_to(slack, "metrics healthy-mistral"))
    # vLLM 0.12: TPOT only as vllm:inter_token_latency_seconds; 3 % errors and 1 % aborts, 4 % failed.
    assert "TPOT 60 ms" in shown and "4.0 % failed (1.0 % aborted, 3.0 % errors)" in shown
    bot.slash("metrics busy-qwen", user=VIEWER)
    shown = text_of(reply_to(slack, "metrics busy-qwen"))
    assert "TPOT 120 ms" in shown and "5.0 % aborted" in shown and "failed" not in shown  # 0.11, no errors


def test_allowlisted_kube_node_labels_still_price_without_listing_nodes(make_bot, slack, kube):
    _, server = allowlisted_dataset()  # its nodes are not in this cluster's API: only the series can type them
    bot = make_bot(cluster={"prometheus_url": server.url})
    bot.slash("digest now", user=OPERATOR)
    shown = text_of(digest_message(slack))
    assert "*labelled-llama* · dev/default · `g6.xlarge` × 2 GPU · *$38.63/day*" in shown
    # neuron-monitor inside the model server's pod: its own series, counted once.
    assert "*sidecar-neuron* · dev/default · `inf2.xlarge` × 1 Neuron · *$18.20/day*" in shown
    assert "Neuron util 50 % mean" in shown
    assert node_lists(kube) == 0
