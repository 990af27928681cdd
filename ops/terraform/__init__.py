"""Terraform through its own binary: a root module's variables, one workspace folder per cluster,
plans saved to a file and summarised, and apply of exactly that file with streamed progress.

The modules, each importing only those above it:

* `variables`: the `variable` blocks a root module declares (read from its files, before any plan).
* `plan`: the plan model: PlanSummary (what a plan would do) and SavedPlan (a plan file as reviewed).
* `runner`: the binary (argument lists, timeouts, `-json` streaming), diagnostics, errors, outputs
  and the ApplyTracker that follows an apply's events.
* `workspace`: one cluster's workspace folder: module copy, init, plan, verify, apply.
* `stages`: a staged apply (`-target` after `-target`, then everything) checked against the reviewed plan.

This package only re-exports their public names, so callers import from `ops.terraform`.
"""

from ops.terraform.plan import ACTIONS, PlanSummary, SavedPlan
from ops.terraform.runner import (
    KILL_GRACE_SECONDS,
    ApplyResult,
    ApplyTracker,
    Diagnostic,
    Output,
    StalePlan,
    StateLocked,
    Terraform,
    TerraformError,
    masked_outputs,
)
from ops.terraform.stages import Deviation, Stage, difference, first_step, is_address, stages, unreviewed
from ops.terraform.variables import Variable, declared_blocks, declared_variables
from ops.terraform.workspace import (
    BOT_DIR,
    STALE_PLAN_SUMMARY,
    STATE_LOCK_SUMMARY,
    VARS_FILE,
    Workspace,
    workspace_exists,
)

__all__ = [
    "ACTIONS",
    "BOT_DIR",
    "KILL_GRACE_SECONDS",
    "STALE_PLAN_SUMMARY",
    "STATE_LOCK_SUMMARY",
    "VARS_FILE",
    "ApplyResult",
    "ApplyTracker",
    "Deviation",
    "Diagnostic",
    "Output",
    "PlanSummary",
    "SavedPlan",
    "Stage",
    "StalePlan",
    "StateLocked",
    "Terraform",
    "TerraformError",
    "Variable",
    "Workspace",
    "declared_blocks",
    "declared_variables",
    "difference",
    "first_step",
    "is_address",
    "masked_outputs",
    "stages",
    "unreviewed",
    "workspace_exists",
]
