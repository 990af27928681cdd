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
    assert "Fits on `g5.48xlarge`" in out and "create `LeaderWorkerSet/scout`" in out  # the card
    assert "Succeeded: revision 1: `LeaderWorkerSet/scout` is ready" in out
    assert "*scout* rev 1 · 1/1 ready" in out and "http://scout.default.svc.cluster.local:8000" in out
    # `test` reaches the sandbox's stand-in model server through the cluster's inference_url
    assert "Test of scout" in out and "(sandbox model server: no model runs here) You asked: Say hi" in out
    # the seeded server of the same name is not taken over
    assert "`Deployment/qwen3-1-7b-vllm` already exists" in out
