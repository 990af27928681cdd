"""The readiness doctor's pure logic: which instance families a Karpenter NodePool lets Karpenter
launch (requirements as Karpenter v1 documents them), and the levels of the metric findings."""

from __future__ import annotations

from typing import Any

import pytest

from ops.readiness import allowed_families, nodepool_findings

CANDIDATES = ["c5", "g5", "g6", "inf2", "p4d", "trn1"]


def pool(name: str = "np", *requirements: tuple[str, str, list[str]]) -> dict[str, Any]:
    return {"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": name},
            "spec": {"template": {"spec": {"requirements": [
                {"key": k, "operator": op, "values": v} for k, op, v in requirements]}}}}


FAMILY = "karpenter.k8s.aws/instance-family"
CATEGORY = "karpenter.k8s.aws/instance-category"
TYPE = "node.kubernetes.io/instance-type"


@pytest.mark.parametrize(("requirements", "allowed"), [
    ((), CANDIDATES),  # no restriction: Karpenter may pick any family
    (((FAMILY, "In", ["g5", "inf2"]),), ["g5", "inf2"]),
    (((FAMILY, "NotIn", ["g5", "p4d"]),), ["c5", "g6", "inf2", "trn1"]),
    (((CATEGORY, "In", ["g", "p"]),), ["g5", "g6", "p4d"]),
    (((CATEGORY, "In", ["c", "m", "r"]),), ["c5"]),
    (((CATEGORY, "NotIn", ["g", "p"]),), ["c5", "inf2", "trn1"]),
    (((TYPE, "In", ["g5.xlarge", "g5.2xlarge", "inf2.xlarge"]),), ["g5", "inf2"]),
    (((TYPE, "NotIn", ["g5.xlarge"]),), CANDIDATES),  # other g5 sizes remain
    (((FAMILY, "Exists", []),), CANDIDATES),
    (((FAMILY, "DoesNotExist", []),), []),
    (((CATEGORY, "In", ["g"]), (FAMILY, "NotIn", ["g6"])), ["g5"]),  # every requirement must hold
    ((("kubernetes.io/arch", "In", ["amd64"]),), CANDIDATES),  # keys about other things do not narrow families
])
def test_a_nodepool_allows_the_families_its_requirements_admit(requirements, allowed):
    assert allowed_families(pool("np", *requirements), CANDIDATES) == allowed


def test_nodepools_are_judged_together_for_gpu_and_neuron():
    findings, neuron = nodepool_findings([pool("cpu", (CATEGORY, "In", ["c", "m"])),
                                          pool("gpu", (FAMILY, "In", ["g4dn", "g5"]))])
    assert [f.level for f in findings] == ["ok", "warn"]
    # g4dn is not in the instance table, but its category says GPU: it counts.
    assert findings[0].text == "Karpenter NodePools allowing GPU families: `gpu` (g4dn, g5)"
    assert findings[1].text.startswith(
        "no Karpenter NodePool allows a Neuron instance family (NodePools: `cpu`, `gpu`)")
    assert neuron is False


def test_no_nodepool_api_and_no_nodepool_are_warnings():
    [missing], _ = nodepool_findings(None)
    [empty], _ = nodepool_findings([])
    assert missing.level == empty.level == "warn"
    assert "no karpenter.sh/v1 NodePool API" in missing.text and "has no NodePool" in empty.text
