"""Configuration: the YAML file of ARCHITECTURE.md plus the process environment.

Every validation error names the file and the key path, so an operator can fix a typo
without reading a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
SLACK_PRINCIPAL = r"^[USW][A-Z0-9_]+$"


class ConfigError(Exception):
    """Raised with a message that names the file and every wrong key."""


class _Strict(BaseModel):
    # Unknown keys are refused so a misspelt key is an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlackConfig(_Strict):
    command: str = Field(default="/infer", pattern=r"^/[a-z0-9_-]{1,31}$")


class Roles(_Strict):
    admin: list[Annotated[str, Field(pattern=SLACK_PRINCIPAL)]] = []
    approver: list[Annotated[str, Field(pattern=SLACK_PRINCIPAL)]] = []
    operator: list[Annotated[str, Field(pattern=SLACK_PRINCIPAL)]] = []


class EksRef(_Strict):
    name: str
    region: str


class ClusterConfig(_Strict):
    name: str = Field(pattern=DNS_LABEL)
    kubeconfig: str | None = None
    eks: EksRef | None = None
    context: str | None = None
    namespace: str = Field(default="default", pattern=DNS_LABEL)
    prometheus_url: str | None = None
    channels: list[Annotated[str, Field(pattern=r"^[CGD][A-Z0-9]+$")]] = []
    approvals: int = Field(default=1, ge=0, le=5)
    max_replicas: int = Field(default=20, ge=1, le=1000)
    rollout_timeout_seconds: float = Field(default=600, gt=0)

    @model_validator(mode="after")
    def _one_source(self) -> ClusterConfig:
        if self.kubeconfig and self.eks:
            raise ValueError("set either kubeconfig or eks, not both")
        return self


class ChartConfig(_Strict):
    path: str | None = None
    repo: str = "https://awslabs.github.io/ai-on-eks-charts/"
    name: str = "inference-charts"
    version: str = "0.2.1"


class TerraformConfig(_Strict):
    root: str | None = None
    workdir: str = "/var/lib/infer-bot/terraform"


class DigestConfig(_Strict):
    channel: str = Field(pattern=r"^[CG][A-Z0-9]+$")
    cron: str
    timezone: str = "UTC"
    clusters: list[str] = []

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError("cron needs 5 fields: minute hour day month day-of-week")
        return value


class OperationsConfig(_Strict):
    approval_timeout_hours: float = Field(default=24, gt=0)
    # The lease is what tells a live worker from a dead one across replicas: a worker renews it
    # every lease/3 seconds, and only an operation whose lease ran out is declared interrupted.
    lease_seconds: float = Field(default=30, ge=1)
    poll_seconds: float = Field(default=1.0, gt=0)


class Config(_Strict):
    slack: SlackConfig = SlackConfig()
    roles: Roles = Roles()
    clusters: list[ClusterConfig] = []
    chart: ChartConfig = ChartConfig()
    terraform: TerraformConfig = TerraformConfig()
    digests: list[DigestConfig] = []
    operations: OperationsConfig = OperationsConfig()
    sandbox: bool = False  # set only by `--sandbox`; every message is labelled when true

    @model_validator(mode="after")
    def _unique_clusters(self) -> Config:
        names = [c.name for c in self.clusters]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"cluster names must be unique; repeated: {', '.join(dupes)}")
        known = set(names)
        for digest in self.digests:
            missing = [c for c in digest.clusters if c not in known]
            if missing:
                raise ValueError(f"digest for {digest.channel} names unknown clusters: {', '.join(missing)}")
        return self

    def cluster(self, name: str | None) -> ClusterConfig | None:
        """The named cluster, or the first one when no name is given."""
        if name is None:
            return self.clusters[0] if self.clusters else None
        return next((c for c in self.clusters if c.name == name), None)


class Settings(BaseSettings):
    """Process environment (the contract's variable names)."""

    model_config = SettingsConfigDict(extra="ignore")

    slack_bot_token: str = ""
    slack_signing_secret: str = ""
    slack_app_token: str = ""
    slack_api_url: str = "https://slack.com/api/"
    infer_bot_config: str = ""
    infer_bot_database_url: str = "sqlite:///infer-bot.sqlite3"
    port: int = 3000
    helm_bin: str = "helm"
    terraform_bin: str = "terraform"


def _format_errors(path: str, exc: ValidationError) -> str:
    lines = [f"{path}: invalid configuration"]
    for err in exc.errors():
        loc = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in err["loc"]).replace(".[", "[")
        lines.append(f"  {loc or '(top level)'}: {err['msg']}")
    return "\n".join(lines)


def parse_config(data: Any, source: str) -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys, got {type(data).__name__}")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(source, exc)) from None


def load_config(path: str | os.PathLike[str]) -> Config:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the configuration file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{file}: not valid YAML{where}") from None
    return parse_config(data, str(file))


Role = Literal["viewer", "operator", "approver", "admin"]
