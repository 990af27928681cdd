"""Tables of provisioning: clusters the bot provisioned, and every Terraform run it made.

Migration 0002_infra creates them (a branch of its own beside the foundation's schema).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bot.models import Base, UTCDateTime, utcnow

PROVISIONED = "provisioned"
DESTROYED = "destroyed"
FAILED = "failed"  # an apply that failed part-way: some resources may exist


class InfraCluster(Base):
    """A cluster the bot provisioned, and how to reach it: later commands take `cluster=<name>`."""

    __tablename__ = "infra_clusters"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    status: Mapped[str] = mapped_column(String(20))  # provisioned | destroyed | failed
    # How its Kubernetes API is reached: "eks" (describe_cluster + tokens), "kubeconfig", or "none"
    # when the module's outputs do not say.
    reach: Mapped[str] = mapped_column(String(20), default="none")
    eks_name: Mapped[str | None] = mapped_column(String(100), default=None)
    region: Mapped[str | None] = mapped_column(String(32), default=None)
    endpoint: Mapped[str | None] = mapped_column(String(300), default=None)
    kubeconfig: Mapped[str | None] = mapped_column(String(1000), default=None)
    context: Mapped[str | None] = mapped_column(String(253), default=None)
    namespace: Mapped[str] = mapped_column(String(63), default="default")
    note: Mapped[str] = mapped_column(Text, default="")  # why it cannot be reached, when it cannot
    # Outputs of the last apply; sensitive ones are recorded by name only, never by value.
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The `var.` values given with commands so far (config defaults stay in the config).
    vars: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    last_operation_id: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TerraformRun(Base):
    """One terraform plan or apply the bot ran: what it found or did, and how long it took."""

    __tablename__ = "terraform_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    cluster: Mapped[str] = mapped_column(String(63), index=True)
    operation_id: Mapped[int] = mapped_column(Integer, index=True)
    action: Mapped[str] = mapped_column(String(16))  # plan | destroy-plan | drift | apply | destroy
    outcome: Mapped[str] = mapped_column(String(16))  # changes | no_changes | ok | failed
    headline: Mapped[str] = mapped_column(Text, default="")
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
