"""The sandbox as a newcomer meets it: deploy a preset from the console, approve, see it ready in status,
send it a test prompt."""

from __future__ import annotations

from tests.support.console import run_console

SCRIPT = """\
/infer deploy llama-4-scout-17b-lws-vllm name=scout
:as U0APPROVER
:approve 1
/infer status
/infer test scout Say hi to the sandbox
/infer deploy qwen3-1.7b-vllm
:quit
"""


def test_sandbox_deploys_a_multi_node_preset_and_shows_it_in_status():
    out = run_console(SCRIPT)
    # the card: the cheapest type the sandbox NodePools allow that fits (g6, not the g5 upstream pins)
    assert "Fits on `g6.48xlarge`" in out and "create `LeaderWorkerSet/scout`" in out
    assert "Succeeded: revision 1: `LeaderWorkerSet/scout` is ready" in out
    assert "*scout* rev 1 · 1/1 ready" in out and "http://scout.default.svc.cluster.local:8000" in out
    # `test` reaches the sandbox's stand-in model server through the cluster's inference_url
    assert "Test of scout" in out and "(sandbox model server: no model runs here) You asked: Say hi" in out
    # the seeded server of the same name is not taken over
    assert "`Deployment/qwen3-1-7b-vllm` already exists" in out


def test_the_console_makes_ec2_short_of_an_instance_type_and_the_thread_says_so():
    out = run_console(""":ice g6.48xlarge
/infer deploy llama-4-scout-17b-lws-vllm name=scout
:as U0APPROVER
:approve 1
:ice off
:quit
""")
    assert "[sandbox] EC2 now has no capacity for g6.48xlarge" in out
    # Karpenter's launch fails; the rollout thread names the shortage and a family the NodePools allow
    assert "insufficient capacity (ICE) for g6.48xlarge" in out
    assert "or deploy with `instance=` another family the NodePools allow: `g5.48xlarge`" in out
    assert "[sandbox] EC2 has capacity for every instance type again." in out
