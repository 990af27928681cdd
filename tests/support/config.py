"""The configuration every bot in the tests starts from: one cluster `dev`, fast timeouts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.slack import ADMIN, APPROVER, APPROVER2, OPERATOR


def base_config(kubeconfig: Path) -> dict[str, Any]:
    return {
        "roles": {"admin": [ADMIN], "approver": [APPROVER, APPROVER2, "S0APPROVERS"], "operator": [OPERATOR]},
        "clusters": [{"name": "dev", "kubeconfig": str(kubeconfig), "namespace": "default", "approvals": 1,
                      "rollout_timeout_seconds": 20}],
        "operations": {"poll_seconds": 0.2, "lease_seconds": 5, "shutdown_grace_seconds": 3},
    }
