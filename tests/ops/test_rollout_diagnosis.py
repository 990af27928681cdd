"""Why a pod of a release does not serve, from its status as the API server reports it (pure logic)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ops.releases import pod_problem

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def pod(status: dict, *, node: str | None = "gpu-node-0") -> dict:
    return {"metadata": {"name": "chat-abc", "namespace": "ml"}, "spec": {"nodeName": node} if node else {},
            "status": status}


def container(state: dict, *, last: dict | None = None, restarts: int = 0, ready: bool = False) -> dict:
    return {"containerStatuses": [{"name": "vllm", "image": "vllm/vllm-openai:bad", "state": state,
                                   "lastState": {"terminated": last} if last else {}, "restartCount": restarts,
                                   "ready": ready}]}


def unschedulable(message: str) -> dict:
    return {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                            "message": message}]}


def test_pending_for_gpus_or_neuron_says_what_to_change():
    for resource in ("nvidia.com/gpu", "aws.amazon.com/neuron"):
        problem = pod_problem(pod(unschedulable(f"0/3 nodes are available: 3 Insufficient {resource}."), node=None),
                              startup_seconds=600, now=NOW)
        assert problem is not None and not problem.terminal  # a node may still come (Karpenter)
        assert f"3 Insufficient {resource}" in problem.text and "instance=" in problem.text


def test_image_pull_failure_names_the_image_and_the_values_to_fix():
    problem = pod_problem(pod(container({"waiting": {"reason": "ImagePullBackOff"}})), startup_seconds=600, now=NOW)
    assert problem.terminal and "vllm/vllm-openai:bad" in problem.text and "image.repository" in problem.text


def test_oom_killed_suggests_less_gpu_memory_or_a_larger_instance():
    problem = pod_problem(pod(container({"waiting": {"reason": "CrashLoopBackOff"}},
                                        last={"reason": "OOMKilled", "exitCode": 137}, restarts=3)),
                          startup_seconds=600, now=NOW)
    assert problem.terminal and "OOMKilled" in problem.text
    assert "gpuMemoryUtilization" in problem.text and "larger `instance=`" in problem.text


def test_crash_loop_points_at_the_previous_log():
    problem = pod_problem(pod(container({"waiting": {"reason": "CrashLoopBackOff"}},
                                        last={"reason": "Error", "exitCode": 1}, restarts=2)),
                          startup_seconds=600, now=NOW)
    assert problem.terminal and "kubectl logs chat-abc -n ml --previous" in problem.text
    # One restart is not a loop yet.
    assert pod_problem(pod(container({"waiting": {"reason": "CrashLoopBackOff"}}, restarts=1)),
                       startup_seconds=600, now=NOW) is None


def test_a_pod_past_the_models_startup_allowance_fails_the_rollout():
    started = (NOW - timedelta(seconds=700)).isoformat().replace("+00:00", "Z")
    running = container({"running": {"startedAt": started}})
    problem = pod_problem(pod(running), startup_seconds=600, now=NOW)
    assert problem.terminal and "700 s" in problem.text and "startup allowance of 600 s" in problem.text
    assert pod_problem(pod(running), startup_seconds=900, now=NOW) is None  # a bigger model gets longer


def test_a_missing_hf_token_says_how_to_create_it():
    waiting = {"waiting": {"reason": "CreateContainerConfigError", "message": 'secret "hf-token" not found'}}
    problem = pod_problem(pod(container(waiting)), startup_seconds=600, now=NOW)
    assert problem.terminal and "/infer secret hf-token" in problem.text
    assert "kubectl create secret generic hf-token" in problem.text and "-n ml" in problem.text
