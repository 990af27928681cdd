"""One change per workload at a time, whichever verbs: signed Slack HTTP → `infer-bot serve` → real
`helm template` of the bundled chart → the Kubernetes API emulator.

Each test starts a change of the release `chat` that keeps running (a pod waits for a GPU that only a
node added later provides), then asks for a second change of the same release with another verb. The
second waits, its card says "queued behind #N", and it runs only once the first has finished: the
API server received none of its writes before then.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any

import pytest

from bot.sandbox.environment import node
from bot.sandbox.kubeapi import KubeEmulator
from bot.sandbox.slack.webapi import Call, LocalSlack
from ops.helm import BUNDLED_CHART
from tests.support.binaries import needs_helm
from tests.support.botproc import BotProcess, Database
from tests.support.slack import APPROVER, OPERATOR, card_for, op_id_of, text_of
from tests.support.waiting import wait_until

pytestmark = needs_helm

WRITES = ("POST", "PUT", "PATCH", "DELETE")


@dataclass
class Release:
    """The bot, its Slack and database, and the cluster, around one release named `chat`."""

    bot: BotProcess
    slack: LocalSlack
    kube: KubeEmulator
    db: Database
    cards: int = 0

    def ask(self, command: str) -> Call:
        """Run a command and return its approval card."""
        self.bot.slash(command, user=OPERATOR)
        self.cards += 1
        return card_for(self.slack, n=self.cards, timeout=30)

    def approve(self, card: Call) -> int:
        op_id = op_id_of(card)
        assert op_id is not None
        assert self.bot.click("op_approve", op_id, user=APPROVER, message_ts=card.response["ts"]).ok
        return int(op_id)

    def status(self, op_id: int) -> str:
        return str(self.db.operation(op_id)["status"])

    def done(self, op_id: int, timeout: float = 60) -> None:
        wait_until(lambda: self.status(op_id) in ("succeeded", "failed"), timeout=timeout, what=f"#{op_id} done")
        assert self.status(op_id) == "succeeded", self.db.operation(op_id)["result"]

    def deploy(self, *options: str) -> int:
        op_id = self.approve(self.ask(" ".join(["deploy qwen3-1.7b-vllm name=chat", *options])))
        self.done(op_id)
        return op_id

    def writes(self) -> list[tuple[str, str]]:
        """Writes the API server received for the release's own objects (not its pods), in order."""
        return [(method, path) for method, path, _ in self.kube.requests
                if method in WRITES and re.search(r"/namespaces/default/[a-z0-9.]+/chat(/[a-z]+)?$", path)]

    def running_then_queued(self, first_card: Call, second_card: Call, kind: str) -> tuple[int, int]:
        """Approve the first change (a `kind`) and see it run; approve the second and see Slack say it waits."""
        first = self.approve(first_card)
        wait_until(lambda: self.status(first) == "running", what="the first change running")
        # Its progress says it waits for a GPU: everything it writes is written, the rollout goes on.
        self.slack.wait_for(lambda c: c.method in ("chat.postMessage", "chat.update")
                            and "Insufficient nvidia.com/gpu" in text_of(c), timeout=30)
        second = self.approve(second_card)
        ts = second_card.response["ts"]
        behind = f"queued behind #{first} ({kind} of `chat`)"
        # What the users see: the card itself, and a line in its thread.
        self.slack.wait_for(lambda c: c.method == "chat.update" and c.params.get("ts") == ts and behind in text_of(c))
        self.slack.wait_for(lambda c: c.method == "chat.postMessage" and c.params.get("thread_ts") == ts
                            and behind in text_of(c))
        assert (self.status(first), self.status(second)) == ("running", "queued")
        return first, second

    def add_gpu_nodes(self, count: int = 1) -> None:
        """What Karpenter would do for the Pending pod: the first change can now finish."""
        for i in range(3, 3 + count):
            self.kube.put(node({"name": f"gpu-node-{i}", "instance_type": "g5.xlarge", "gpus": 1}))

    def ran_in_order(self, first: int, second: int) -> None:
        """The second started only after the first had finished, by the clock and by the audit log."""
        a, b = self.db.operation(first), self.db.operation(second)
        assert a["finished_at"] <= b["started_at"], (a["finished_at"], b["started_at"])
        rows = self.db.rows("SELECT id, operation_id, action FROM audit_log WHERE operation_id IN (:a, :b) "
                            "ORDER BY id", a=first, b=second)
        finished = next(r["id"] for r in rows if r["operation_id"] == first and r["action"] == "succeeded")
        started = next(r["id"] for r in rows if r["operation_id"] == second and r["action"] == "started")
        dequeued = [r["id"] for r in rows if r["operation_id"] == second and r["action"] == "dequeued"]
        assert dequeued and finished < dequeued[0] < started
        assert self.db.rows("SELECT count(*) AS n FROM locks")[0]["n"] == 0


@pytest.fixture
def release(make_bot: Any, kube: KubeEmulator, slack: LocalSlack) -> Release:
    """`chat` deployed from the bundled chart: 1 replica on one of the two GPUs `qwen` leaves free."""
    kube.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf-token", "namespace": "default"},
              "type": "Opaque", "data": {"token": base64.b64encode(b"hf_test_value").decode()}})
    bot = make_bot(chart={"path": str(BUNDLED_CHART)})
    return Release(bot, slack, kube, Database(bot.database_url))


def test_a_rollback_waits_for_a_scale_of_the_same_release(release: Release):
    release.deploy()
    release.deploy("set.modelParameters.maxModelLen=4096")
    before = len(release.writes())
    # 3 replicas need 3 GPUs, 2 are free: the scale keeps rolling out, holding the workload's lock.
    scale = release.ask("scale chat 3")
    rollback = release.ask("rollback chat revision=1")
    first, second = release.running_then_queued(scale, rollback, "scale")
    while_queued = release.writes()[before:]
    assert while_queued == [("PATCH", "/apis/apps/v1/namespaces/default/deployments/chat/scale")]

    release.add_gpu_nodes(2)  # one for the scale, one for the rollback's rolling update to surge into
    release.done(first)
    release.done(second)
    release.ran_in_order(first, second)
    after = release.writes()[before:]
    assert after[:1] == while_queued
    rollback_writes = after[1:]
    assert ("PATCH", "/apis/apps/v1/namespaces/default/deployments/chat") in rollback_writes
    assert all(not path.endswith("/scale") for _, path in rollback_writes)
    dep = release.kube.get("apps/v1", "Deployment", "default", "chat")
    # The rollback, applied last, decides the end state: revision 1's spec and replica count.
    assert dep["metadata"]["labels"]["infer-bot.io/revision"] == "3"
    assert "--max-model-len=8192" in dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert dep["spec"]["replicas"] == 1


def test_an_undeploy_waits_for_a_scale_of_the_same_release(release: Release):
    release.deploy()
    before = len(release.writes())
    scale = release.ask("scale chat 3")
    undeploy = release.ask("undeploy chat")
    first, second = release.running_then_queued(scale, undeploy, "scale")
    while_queued = release.writes()[before:]
    assert while_queued == [("PATCH", "/apis/apps/v1/namespaces/default/deployments/chat/scale")]
    assert release.kube.get("apps/v1", "Deployment", "default", "chat") is not None

    release.add_gpu_nodes()
    release.done(first)
    release.done(second)
    release.ran_in_order(first, second)
    after = release.writes()[before:]
    assert after[:1] == while_queued
    assert {method for method, _ in after[1:]} == {"DELETE"}
    assert ("DELETE", "/apis/apps/v1/namespaces/default/deployments/chat") in after[1:]
    assert release.kube.get("apps/v1", "Deployment", "default", "chat") is None
    scaled = release.slack.wait_for(lambda c: c.params.get("thread_ts") == scale.response["ts"]
                                    and "Succeeded" in text_of(c))
    assert "3/3 replicas available" in text_of(scaled)  # the scale finished its rollout, undisturbed


def test_an_autoscale_waits_for_a_deploy_of_the_same_release(release: Release):
    release.deploy()
    before = len(release.writes())
    # A re-deploy to 3 replicas: its rollout waits for a GPU, holding the workload's lock.
    deploy = release.ask("deploy qwen3-1.7b-vllm name=chat replicas=3")
    autoscale = release.ask("autoscale chat min=1 max=3 metric=cpu")
    first, second = release.running_then_queued(deploy, autoscale, "deploy")
    while_queued = release.writes()[before:]
    assert ("PATCH", "/apis/apps/v1/namespaces/default/deployments/chat") in while_queued
    assert not [w for w in while_queued if "horizontalpodautoscalers" in w[1]]
    assert release.kube.get("autoscaling/v2", "HorizontalPodAutoscaler", "default", "chat") is None

    release.add_gpu_nodes()
    release.done(first)
    release.done(second)
    release.ran_in_order(first, second)
    after = release.writes()[before:]
    assert after[:len(while_queued)] == while_queued
    autoscale_writes = after[len(while_queued):]
    assert ("PATCH", "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/chat") in autoscale_writes
    hpa = release.kube.get("autoscaling/v2", "HorizontalPodAutoscaler", "default", "chat")
    assert hpa["metadata"]["labels"]["infer-bot.io/revision"] == "3"
    rows = release.db.rows("SELECT revision, action FROM release_revisions WHERE name = 'chat' ORDER BY revision")
    assert [(r["revision"], r["action"]) for r in rows] == [(1, "deploy"), (2, "deploy"), (3, "autoscale")]
