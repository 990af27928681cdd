"""The names of the locks that keep two changes of one thing apart, built in this one place.

A lock is held in the database (bot/db/locks.py) under one of these keys; two operations whose keys
are equal never run at the same time, the second waits ("queued behind #N").
"""

from __future__ import annotations


def workload(cluster: str, namespace: str, name: str) -> str:
    """One change at a time per model server: scale, autoscale, deploy, rollback and undeploy alike.

    The kind is left out on purpose: a release's workload (Deployment, LeaderWorkerSet, RayService)
    bears the release's name, so `scale qwen` and `rollback qwen` must meet on the same key whatever
    kind the chart rendered.
    """
    return f"workload:{cluster}/{namespace}/{name}"


def workspace(cluster: str) -> str:
    """One Terraform run per workspace at a time: plans and applies of a cluster share this lock."""
    return f"terraform:{cluster}"
