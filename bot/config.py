"""Configuration: the YAML file of ../shared/ARCHITECTURE.md plus the process environment.

Every validation error names the file and the key path, so an operator can fix a typo
without reading a traceback.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ops.advisor import RULES_BY_ID, THRESHOLD_NAMES
from ops.cron import parse_crontab
from ops.errors import OpsError
from ops.grafana import DEFAULT_DASHBOARD_UID, UID_PATTERN, check_base_url
from ops.terraform import declared_blocks, declared_variables, first_step, is_address

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
    # Where `/infer test` sends requests; {name} and {namespace} are filled in. Default: the release's
    # Service by in-cluster DNS (the bot runs in the cluster).
    inference_url: str | None = None
    # Grafana's root URL (sub-path included): digest rows, `/infer metrics` and `/infer status <name>` then
    # link to the model server's dashboard. Unset: no links.
    grafana_url: str | None = None
    # Which dashboard: default the ai-on-eks inference dashboard (ops.grafana.DEFAULT_DASHBOARD_UID). Another
    # one is linked with the same variables (var-namespace, var-model_name).
    grafana_dashboard_uid: str = DEFAULT_DASHBOARD_UID

    @field_validator("grafana_url")
    @classmethod
    def _grafana_root(cls, value: str | None) -> str | None:
        return None if value is None else check_base_url(value)

    @field_validator("grafana_dashboard_uid")
    @classmethod
    def _grafana_uid(cls, value: str) -> str:
        if not re.fullmatch(UID_PATTERN, value):
            raise ValueError(f"{value!r} is not a Grafana dashboard uid (up to 40 letters, digits, - and _: "
                             "what follows /d/ in the dashboard's URL)")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> ClusterConfig:
        if self.kubeconfig and self.eks:
            raise ValueError("set either kubeconfig or eks, not both")
        return self


# `set.<key>=` keys a deploy may override; anything else is refused. Engine tuning and the image tag,
# not what runs where or as whom (image repository, service account, node placement).
DEFAULT_ALLOWED_SETS = [
    "modelParameters.gpuMemoryUtilization", "modelParameters.maxModelLen", "modelParameters.maxNumSeqs",
    "modelParameters.maxNumBatchedTokens", "modelParameters.tensorParallelSize", "inference.modelServer.image.tag",
    "inference.modelServer.deployment.minReplicas", "inference.modelServer.deployment.maxReplicas",
]


class ChartConfig(_Strict):
    path: str | None = None
    repo: str = "https://awslabs.github.io/ai-on-eks-charts/"
    name: str = "inference-charts"
    version: str = "0.2.1"
    allowed_sets: list[str] = Field(default_factory=lambda: list(DEFAULT_ALLOWED_SETS))
    cache_dir: str | None = None  # where a pulled chart version is kept (default: the temp folder)
    timeout_seconds: float = Field(default=60, gt=0)  # one helm command


class CatalogConfig(_Strict):
    # A folder of user presets (same format as ops/data/presets/*.yaml); INFER_BOT_PRESETS_DIR if unset.
    presets_dir: str | None = None
    # The region whose on-demand prices `models` and the fit check quote.
    region: str = Field(default="us-west-2", pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")


class TerraformConfig(_Strict):
    root: str | None = None
    workdir: str = "/var/lib/infer-bot/terraform"
    # Values every workspace gets for the module's variables; a command's `var.<k>=<v>` wins.
    vars: dict[str, Any] = {}
    # The module variable that receives the cluster name of `provision <cluster>`. Unset: `name` when
    # the module declares a variable `name` (ai-on-eks does); null: none.
    name_var: str | None = None
    # -var-file files every plan reads, in order, before the bot's own values (which win): paths
    # relative to `root` or absolute (ai-on-eks: the solution's blueprint.tfvars).
    var_files: list[str] = []
    # Staged runs (ai-on-eks' install.sh / cleanup.sh): `-target` applies in this order, then everything;
    # destroys in this order, then the rest. Approvers review the full plan either way.
    apply_targets: list[str] = []
    destroy_targets: list[str] = []
    # Approvals a provision needs for a cluster not listed under `clusters:` (destroy: always ≥ 2).
    approvals: int = Field(default=1, ge=0, le=5)
    # A saved plan older than this is not applied: the world has moved on, plan again.
    plan_max_age_minutes: float = Field(default=120, gt=0)
    timeout_minutes: float = Field(default=120, gt=0)  # any one terraform command
    progress_seconds: float = Field(default=5, gt=0)  # the apply's progress message changes at most this often
    # The scheduled drift check (bot.runs.infra.check_drift_all): when, and where drift is reported.
    drift_cron: str | None = None
    drift_channel: str | None = Field(default=None, pattern=r"^[CG][A-Z0-9]+$")

    @model_validator(mode="before")
    @classmethod
    def _default_name_var(cls, data: Any) -> Any:
        if isinstance(data, dict) and "name_var" not in data and isinstance(data.get("root"), str):
            try:
                declared = declared_variables(Path(data["root"]))
            except OpsError:
                return data  # no module there (yet): `infer-bot check` and the plan say so
            if "name" in declared:
                data = {**data, "name_var": "name"}
        return data

    def var_file_paths(self) -> list[Path]:
        """The var files as absolute paths (relative ones are under `root`)."""
        base = Path(self.root or ".").resolve()
        return [(base / f).resolve() for f in self.var_files]

    @model_validator(mode="after")
    def _staging(self) -> TerraformConfig:
        if (self.var_files or self.apply_targets or self.destroy_targets) and not self.root:
            raise ValueError("var_files, apply_targets and destroy_targets need `root` (the root module)")
        for key, targets in (("apply_targets", self.apply_targets), ("destroy_targets", self.destroy_targets)):
            bad = [t for t in targets if not is_address(t)]
            if bad:
                raise ValueError(f"{key}: {', '.join(repr(t) for t in bad)} is not a module or resource address "
                                 "(e.g. module.vpc, module.eks, aws_iam_role.karpenter)")
            if len(set(targets)) != len(targets):
                raise ValueError(f"{key} names a target twice")
        root = Path(self.root) if self.root else None
        if root is None or not root.is_dir():
            return self  # `infer-bot check` and every plan report a missing root module
        for given, path in zip(self.var_files, self.var_file_paths(), strict=True):
            if not path.is_file():
                raise ValueError(f"var_files: {given!r} is not a file (looked for {path}; relative paths are under "
                                 "`root`)")
        try:
            blocks = declared_blocks(root)
            declared = declared_variables(root)
        except OpsError as exc:
            raise ValueError(exc.message) from None
        for key, targets in (("apply_targets", self.apply_targets), ("destroy_targets", self.destroy_targets)):
            unknown = [t for t in targets if first_step(t) not in blocks]
            if unknown:
                modules = ", ".join(f"module.{n}" for kind, n in sorted(blocks) if kind == "module") or "none"
                raise ValueError(f"{key}: the root module declares no {', '.join(unknown)} (its modules: {modules})")
        if self.name_var is not None and self.name_var not in declared:
            raise ValueError(f"name_var: the root module declares no variable {self.name_var!r}; set one it "
                             "declares, or null")
        return self

    @model_validator(mode="after")
    def _drift_schedule(self) -> TerraformConfig:
        if (self.drift_cron is None) != (self.drift_channel is None):
            raise ValueError("set drift_cron and drift_channel together")
        if self.drift_cron is not None and len(self.drift_cron.split()) != 5:
            raise ValueError("drift_cron needs 5 fields: minute hour day month day-of-week")
        return self


class DigestConfig(_Strict):
    channel: str = Field(pattern=r"^[CG][A-Z0-9]+$")
    cron: str  # standard crontab: day-of-week 0 and 7 are Sunday
    timezone: str = "UTC"
    clusters: list[str] = []

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, value: str) -> str:
        parse_crontab(value)  # raises ValueError naming the wrong field
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use a tz database name such as Europe/Paris") from None
        return value


class BudgetConfig(_Strict):
    """A monthly budget for one cluster (ops/budgets.py): cards of changes show the month's spend;
    one that would take the projected month end over it needs an admin (`hard`: is refused)."""

    cluster: str
    # Meant for the digest's budget line (which channel's digest shows it); accepted, not yet shown:
    # the digest's renderer has no access to the budgets without a change to handlers/digest.py.
    channel: str | None = Field(default=None, pattern=r"^[CG][A-Z0-9]+$")
    monthly_usd: float = Field(gt=0)
    hard: bool = False


class MetricsConfig(_Strict):
    """How digests and `/infer metrics` read Prometheus (ops.metrics.QuerySettings)."""

    window_hours: float = Field(default=24, gt=0, le=24 * 31)
    step_seconds: float = Field(default=300, ge=10)  # resolution of p95, max and idle share over the window
    rate_window_seconds: float = Field(default=300, ge=10)  # ≥ 4 × the scrape interval
    timeout_seconds: float = Field(default=20, gt=0, le=300)  # per query; a dead Prometheus costs one of these
    idle_util_pct: float = Field(default=10, ge=0, le=100)  # accelerator time below this is idle (idle cost)
    # A digest whose time passed while no bot process ran still posts if one starts within this.
    misfire_grace_seconds: float = Field(default=900, ge=1)
    # Digests built and posted at the same time; Slack paces each channel at ~1 message/s, so
    # channels only stay independent while they have a thread each.
    digest_workers: int = Field(default=64, ge=1, le=256)


class AdvisorConfig(_Strict):
    # Thresholds of the advisor's rules, by name (ops.advisor.Thresholds); unset ones keep their default.
    thresholds: dict[str, float] = {}
    disabled: list[str] = []  # rule ids to switch off (ops.advisor.RULES)

    @field_validator("thresholds")
    @classmethod
    def _known_thresholds(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - THRESHOLD_NAMES)
        if unknown:
            raise ValueError(f"unknown thresholds {', '.join(unknown)}; known: {', '.join(sorted(THRESHOLD_NAMES))}")
        return value

    @field_validator("disabled")
    @classmethod
    def _known_rules(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(RULES_BY_ID))
        if unknown:
            raise ValueError(f"unknown rules {', '.join(unknown)}; known: {', '.join(RULES_BY_ID)}")
        return value


class OperationsConfig(_Strict):
    approval_timeout_hours: float = Field(default=24, gt=0)
    # The lease is what tells a live worker from a dead one across replicas: a worker renews it
    # every lease/3 seconds, and only an operation whose lease ran out is declared interrupted.
    lease_seconds: float = Field(default=30, ge=1)
    poll_seconds: float = Field(default=1.0, gt=0)
    # On SIGTERM (a rollout, a scale-in) running operations get this long to finish before the
    # process exits; keep it below the pod's terminationGracePeriodSeconds.
    shutdown_grace_seconds: float = Field(default=25, ge=0)


class ServerConfig(_Strict):
    """The public endpoint (`serve`): Slack's HTTP mode needs a URL anyone can open connections to."""

    # Slack's payloads are a few kB (a view submission tens of kB): anything announcing more is
    # refused with 413 from its headers, before a byte of the body is read.
    max_body_bytes: int = Field(default=1_048_576, ge=65_536)
    # A connection that sends nothing for this long while a request is unfinished (or idles between
    # requests) is closed; waitress' default of 120 s let 100 stalled connections stop the bot.
    read_timeout_seconds: int = Field(default=5, ge=1, le=120)
    # Reading is asynchronous, so an open connection costs a file descriptor, not a thread; the
    # limit only needs to stay below the process's descriptor limit.
    connection_limit: int = Field(default=4000, ge=100)
    threads: int = Field(default=16, ge=1, le=256)  # handle complete requests: verify, parse, ack
    # What follows an ack (cluster reads, cards, replies): "inline" in the serving process's threads,
    # or "queue": through the database to worker processes, so acks never wait behind that work.
    after_ack: Literal["inline", "queue"] = "inline"
    # With "queue": worker processes `serve` starts beside itself (0 when `infer-bot worker` runs elsewhere).
    worker_processes: int = Field(default=1, ge=0, le=32)


class Config(_Strict):
    slack: SlackConfig = SlackConfig()
    server: ServerConfig = ServerConfig()
    roles: Roles = Roles()
    clusters: list[ClusterConfig] = []
    chart: ChartConfig = ChartConfig()
    catalog: CatalogConfig = CatalogConfig()
    terraform: TerraformConfig = TerraformConfig()
    digests: list[DigestConfig] = []
    budgets: list[BudgetConfig] = []
    metrics: MetricsConfig = MetricsConfig()
    advisor: AdvisorConfig = AdvisorConfig()
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
        budgeted = [b.cluster for b in self.budgets]
        for name in budgeted:
            if name not in known:
                raise ValueError(f"budgets: cluster `{name}` is not configured under `clusters:`")
        again = sorted({n for n in budgeted if budgeted.count(n) > 1})
        if again:
            raise ValueError(f"budgets: one budget per cluster; repeated: {', '.join(again)}")
        return self

    def budget(self, cluster: str) -> BudgetConfig | None:
        return next((b for b in self.budgets if b.cluster == cluster), None)

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

    @field_validator("slack_api_url")
    @classmethod
    def _trailing_slash(cls, url: str) -> str:
        # slack_sdk appends the method name to the base URL as is: without the slash,
        # `…/api` + `chat.postMessage` would become `…/apichat.postMessage`.
        return url if url.endswith("/") else url + "/"


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
