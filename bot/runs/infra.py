"""Terraform operations: the plan behind `provision`/`destroy`/`drift`, the apply of an approved
plan, the registration of what was provisioned, and the scheduled drift check.

A command creates a `plan` (or `drift`) operation. It needs no approval (plans change nothing) but
holds the workspace's lock (`terraform:<cluster>`) while it runs, so it waits behind a running
apply instead of tripping over Terraform's state lock. A plan with changes creates the
`provision`/`destroy` operation whose card shows it; approving that applies exactly the saved plan
file, under the same lock. Two plans may wait for approval at once: whichever is applied first makes
the other stale, and it is refused (our inputs check, or Terraform's own stale-plan check).

With `terraform.apply_targets`/`destroy_targets` (ai-on-eks' install.sh and cleanup.sh) the card
still shows the full plan, and approval runs the stages (ops/terraform/stages.py): each planned with
its `-target` just before it runs and applied only within the reviewed plan; otherwise the run stops
and a fresh plan gets a new card. A destroy first removes the bot's releases on the cluster.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.clusters import Clusters
from bot.config import ClusterConfig, Config, Settings
from bot.db.infra import InfraStore, LiveRelease
from bot.db.store import Store
from bot.db.tables import ClusterStatus, Operation, OpStatus, utcnow
from bot.policy import Policy
from bot.runs.progress import Outcome, Progress
from handlers import cards, infra_blocks
from ops import aws, lock_keys, releases
from ops.errors import OpsError
from ops.releases import ObjectRef, ReleaseApi
from ops.terraform import (
    ApplyResult,
    ApplyTracker,
    Deviation,
    Output,
    SavedPlan,
    Stage,
    StalePlan,
    Terraform,
    TerraformError,
    Workspace,
    declared_variables,
    difference,
    stages,
    unreviewed,
    workspace_exists,
)

log = logging.getLogger(__name__)

_CONFIGURE_KUBECTL = re.compile(r"--(name|region)[ =](\S+)")


def _workspace(config: Config, cluster: str) -> Workspace:
    tf = config.terraform
    if not tf.root:
        raise OpsError("Terraform is not set up: set `terraform.root` (the root module) in the bot's config.")
    workdir = Path(tf.workdir).resolve()
    binary = Terraform(Settings().terraform_bin, timeout=tf.timeout_minutes * 60,
                       plugin_cache=workdir / ".plugin-cache")
    return Workspace(binary, Path(tf.root).resolve(), workdir, cluster, var_files=tf.var_file_paths())


def _targets(config: Config, verb: str) -> list[str]:
    tf = config.terraform
    return list(tf.destroy_targets if verb == "destroy" else tf.apply_targets)


def desired_vars(config: Config, store: Store, cluster: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """What a provision plans with: config defaults, then what earlier commands gave, then this one's."""
    tf = config.terraform
    registered = InfraStore(store).registration(cluster)
    values = dict(tf.vars) | (dict(registered.vars) if registered else {}) | dict(given)
    if tf.name_var:
        values[tf.name_var] = cluster
    return values


def _record(store: Store, op: Operation, action: str, outcome: str, headline: str, started: float) -> None:
    InfraStore(store).record_run(cluster=op.cluster, operation_id=op.id, action=action, outcome=outcome,
                           headline=headline, started_at=utcnow() - timedelta(seconds=time.monotonic() - started),
                           seconds=round(time.monotonic() - started, 3))


def _diagnostics(progress: Progress, exc: TerraformError) -> None:
    """terraform's own error messages in the thread: the outcome line carries only the first summary."""
    if exc.diagnostics:
        progress(infra_blocks.diagnostics_text(exc.diagnostics))


# ---- plan ----------------------------------------------------------------------------------------


def run_plan(op: Operation, config: Config, clusters: Clusters, progress: Progress) -> Outcome:
    """Executor of `plan` (for provision and destroy) and `drift` operations."""
    verb = str(op.params.get("verb") or ("drift" if op.kind == "drift" else "provision"))
    store = progress.store
    ws = _workspace(config, op.cluster)
    max_age = timedelta(minutes=config.terraform.plan_max_age_minutes)
    if ws.path.is_dir():
        ws.prune(older_than=max_age * 2)
    action = {"provision": "plan", "destroy": "destroy-plan", "drift": "drift"}[verb]
    started = time.monotonic()
    try:
        if verb == "drift":
            # The workspace as the last apply left it: no new variables, no refresh of the module copy.
            saved = ws.plan(f"drift-{op.id}", vars=None, sync=False)
        else:
            values = desired_vars(config, store, op.cluster, op.params.get("vars") or {})
            _check_required(ws, values)
            saved = ws.plan(f"op-{op.id}", vars=values, destroy=verb == "destroy")
    except TerraformError as exc:
        _record(store, op, action, "failed", exc.message, started)
        _diagnostics(progress, exc)
        return Outcome(False, exc.message)
    _record(store, op, action, "changes" if saved.summary.changes else "no_changes", saved.summary.headline(), started)
    if verb == "drift":
        return _report_drift(op, ws, saved, progress)
    if not saved.summary.changes:
        ws.discard(saved)
        what = "nothing to destroy" if verb == "destroy" else "nothing to approve"
        return Outcome(True, f"no changes: `{op.cluster}` already matches its Terraform configuration; {what}.")
    given = dict(op.params.get("vars") or {})
    try:
        card_id = _post_apply_card(op, config, clusters, progress, ws, saved, verb=verb, given=given)
    except cards.CardNotPosted as exc:
        return Outcome(False, f"the plan is ready but {exc.message}")
    return Outcome(True, f"plan ready: {saved.summary.headline()}. The approval card is #{card_id}.")


def _check_required(ws: Workspace, values: Mapping[str, Any]) -> None:
    missing = [name for name, var in declared_variables(ws.root).items() if var.required and name not in values]
    if missing:
        raise TerraformError("the module needs a value for " + ", ".join(f"`var.{n}`" for n in missing)
                             + ": give it with the command (`var.<name>=<value>`) or under `terraform.vars` "
                               "in the bot's config.")


def _post_apply_card(op: Operation, config: Config, clusters: Clusters, progress: Progress, ws: Workspace,
                     saved: SavedPlan, *, verb: str, given: Mapping[str, Any]) -> int:
    """Create the provision/destroy operation of a saved plan and post its card; returns its id.
    Raises CardNotPosted (the plan discarded) when Slack refused the card."""
    store = progress.store
    cluster = clusters.lookup(op.cluster) or ClusterConfig(name=op.cluster, approvals=config.terraform.approvals)
    needed = Policy(config).approvals_needed(cluster, verb)
    waiting = [o.id for o in store.open_operations(lock_keys.workspace(op.cluster), ("provision", "destroy"),
                                                   (OpStatus.PENDING,))]
    sensitive = {n for n, v in declared_variables(ws.root).items() if v.sensitive}
    live = InfraStore(store).live_releases(op.cluster) if verb == "destroy" else []
    doomed = [f"{r.namespace}/{r.name}" for r in live]
    plan = infra_blocks.plan_card(verb, op.cluster, saved.summary, infra_blocks.shown_vars(given, sensitive),
                                  approvals_needed=needed, waiting=waiting, command=config.slack.command,
                                  targets=_targets(config, verb), releases=doomed)
    apply_op = store.create_operation(
        kind=verb, cluster=op.cluster, namespace="-", target="infrastructure",
        params={"plan": saved.to_params(), "vars": dict(given), "plan_operation": op.id},
        plan=plan, requested_by=op.requested_by, channel_id=op.channel_id, approvals_needed=needed,
        ttl=timedelta(hours=config.operations.approval_timeout_hours), lock_key=lock_keys.workspace(op.cluster))
    try:
        # With no approval needed it is approved here; the worker looks for work again as soon as
        # this operation finishes, so there is nothing to wake.
        ts = cards.publish(progress.client, store, apply_op, sandbox=progress.sandbox, wake=lambda: None)
    except cards.CardNotPosted:
        ws.discard(saved)
        raise
    if infra_blocks.collapsed(saved.summary):
        try:
            progress.client.files_upload_v2(
                channel=op.channel_id, thread_ts=ts, filename=f"plan-{op.cluster}-{apply_op.id}.txt",
                title=f"Plan #{apply_op.id}: every address", content=infra_blocks.addresses_text(
                    verb, op.cluster, saved.summary),
                initial_comment="The full list of what this plan changes.")
        except SlackApiError as exc:  # the card is there; the list is a convenience
            log.warning("cannot upload the plan's address list of #%s: %s", apply_op.id, exc.response.get("error"))
    return apply_op.id


def _report_drift(op: Operation, ws: Workspace, saved: SavedPlan, progress: Progress) -> Outcome:
    ws.discard(saved)  # a drift check is never applied; a fix is planned afresh and reviewed
    scheduled = bool(op.params.get("scheduled"))
    if not saved.summary.changes:
        return Outcome(True, f"no drift: `{op.cluster}` matches its Terraform configuration.", quiet=scheduled)
    msg = infra_blocks.drift_message(op.cluster, saved.summary, sandbox=progress.sandbox)
    # In the request's thread; a scheduled check has no card, so its report stands on its own.
    progress.client.chat_postMessage(channel=op.channel_id, thread_ts=progress.op.card_ts, text=msg.text,
                                     blocks=msg.blocks)
    return Outcome(True, f"drift found: a plan now shows {saved.summary.headline()}.", quiet=scheduled)


# ---- apply ---------------------------------------------------------------------------------------


class _ProgressMessage:
    """The one progress message of an apply, changed at most every `interval` seconds."""

    def __init__(self, progress: Progress, verb: str, interval: float) -> None:
        self._show = getattr(progress, "edit", progress)
        self._verb = verb
        self._interval = interval
        self._last = float("-inf")
        self._text = ""
        self.stage = ""  # "Stage 2/3 · " while a staged run applies its second stage

    def update(self, tracker: ApplyTracker, *, final: bool = False, ok: bool = True) -> None:
        now = time.monotonic()
        if not final and now - self._last < self._interval:
            return
        text = self.stage + infra_blocks.apply_progress(self._verb, tracker, final=final, ok=ok)
        if text != self._text:
            self._show(text)
            self._text, self._last = text, now


def run_apply(op: Operation, config: Config, clusters: Clusters, progress: Progress) -> Outcome:
    """Executor of `provision` and `destroy`: apply the plan the card showed, and nothing else.

    Without staging the saved plan file itself is applied. With `terraform.apply_targets` /
    `destroy_targets` each stage is planned with its `-target` just before it runs and applied only
    when its changes are a subset of the reviewed plan; anything else stops the run and asks for a
    new approval. A destroy first removes the bot's releases on the cluster.
    """
    store, verb = progress.store, op.kind
    action = verb if verb == "destroy" else "apply"
    ws = _workspace(config, op.cluster)
    saved = SavedPlan.from_params(op.params["plan"])
    again = f"Ask again: `{config.slack.command} {verb} {op.cluster}`."
    targets = _targets(config, verb)
    started = time.monotonic()
    try:
        # A staged run checks the workspace's files before every stage (and asks for a new approval
        # when they changed); an unstaged one applies the plan file, which must be as reviewed.
        ws.verify(saved, max_age=timedelta(minutes=config.terraform.plan_max_age_minutes), inputs=not targets)
    except StalePlan as exc:
        _record(store, op, action, "failed", exc.message, started)
        return Outcome(False, f"{exc.message} {again}")
    if verb == "destroy":
        try:
            _remove_releases(op, config, clusters, progress)
        except OpsError as exc:
            ws.retire(saved)  # the cluster changed under it: this plan is not applied later either
            _record(store, op, action, "failed", exc.message, started)
            return Outcome(False, f"{exc.message} Nothing was destroyed. {again}")
    shown = _ProgressMessage(progress, verb, config.terraform.progress_seconds)
    if not targets:
        result = ws.apply(saved, on_progress=shown.update)
        shown.update(result.tracker, final=True, ok=result.ok)
        ws.retire(saved)  # applied or failed, a plan file is never applied twice (and it holds secrets)
        if result.error is not None:
            return _apply_failed(op, progress, result, [], again, started)
        return _applied(op, config, progress, ws, saved, [result.tracker], started)
    return _run_stages(op, config, clusters, progress, ws, saved, targets, shown, again, started)


def _run_stages(op: Operation, config: Config, clusters: Clusters, progress: Progress, ws: Workspace,
                saved: SavedPlan, targets: list[str], shown: _ProgressMessage, again: str,
                started: float) -> Outcome:
    verb = op.kind
    done: list[ApplyTracker] = []
    for stage in stages(targets):
        changed = ws.changed_inputs(saved)
        if changed:
            return _stop(op, config, clusters, progress, ws, saved, stage, done, started,
                         f"the workspace changed after the reviewed plan was made ({changed})", [])
        try:
            part = ws.plan(f"op-{op.id}-stage-{stage.number}", vars=saved.vars, destroy=saved.destroy, sync=False,
                           target=stage.target)
        except TerraformError as exc:
            ws.retire(saved)
            _diagnostics(progress, exc)
            _record(progress.store, op, verb if verb == "destroy" else "apply", "failed", exc.message, started)
            if any(t.done for t in done) and verb == "provision":
                InfraStore(progress.store).register(op.cluster, status=ClusterStatus.FAILED, last_operation_id=op.id,
                                                    note=f"#{op.id} stopped part-way "
                                                         f"({infra_blocks.total_counts(done)})")
            return Outcome(False, f"planning {stage.label} failed: {exc.message}{_done_note(done)} {again}")
        off = unreviewed(saved.summary, part.summary)
        if off:
            ws.discard(part)
            return _stop(op, config, clusters, progress, ws, saved, stage, done, started,
                         "its plan would do what the approvers did not see", off)
        if not part.summary.changes:
            ws.discard(part)
            progress(f"{stage.label.capitalize()}: nothing to do.")
            continue
        progress(f"{stage.label.capitalize()}: {part.summary.headline()}, all in the reviewed plan; "
                 f"{'destroying' if verb == 'destroy' else 'applying'}.")
        shown.stage = f"Stage {stage.number}/{stage.total} · "
        result = ws.apply(part, on_progress=shown.update)
        shown.update(result.tracker, final=True, ok=result.ok)
        ws.retire(part)
        if result.error is not None:
            ws.retire(saved)
            return _apply_failed(op, progress, result, done, again, started, stage=stage)
        done.append(result.tracker)
    ws.retire(saved)
    return _applied(op, config, progress, ws, saved, done, started)


def _done_note(done: list[ApplyTracker]) -> str:
    return f" Done before it stopped: {infra_blocks.total_counts(done)}." if any(t.done for t in done) else ""


def _stop(op: Operation, config: Config, clusters: Clusters, progress: Progress, ws: Workspace, saved: SavedPlan,
          stage: Stage, done: list[ApplyTracker], started: float, reason: str, off: list[Deviation]) -> Outcome:
    """A stage may not run as reviewed: stop, show the difference, plan afresh and post a new card."""
    store, verb = progress.store, op.kind
    ws.retire(saved)  # never applied, in part or whole, after this
    lines = [f":octagonal_sign: Stopped before {stage.label}: {reason}."]
    what = f"stopped before {stage.label}: {reason}."
    try:
        fresh = ws.plan(f"op-{op.id}-again", vars=saved.vars, destroy=saved.destroy)
    except TerraformError as exc:
        _diagnostics(progress, exc)
        fresh = None
        lines.append(f"A new plan failed too: {exc.message}")
    if not off and fresh is not None:
        off = difference(saved.summary, fresh.summary)
    if off:
        lines.append("Difference from the reviewed plan:")
        lines += [f"• {d.line()}" for d in off[:20]] + ([f"• …and {len(off) - 20} more"] if len(off) > 20 else [])
    progress("\n".join(lines))
    _record(store, op, verb if verb == "destroy" else "apply", "failed", what, started)
    if any(t.done for t in done) and verb == "provision":
        InfraStore(store).register(op.cluster, status=ClusterStatus.FAILED, last_operation_id=op.id,
                                   note=f"#{op.id} stopped part-way ({infra_blocks.total_counts(done)})")
    again = f"Ask again: `{config.slack.command} {verb} {op.cluster}`."
    if fresh is None:
        return Outcome(False, f"{what}{_done_note(done)} {again}")
    if not fresh.summary.changes:
        ws.discard(fresh)
        return Outcome(False, f"{what}{_done_note(done)} A new plan has no changes: nothing more to approve.")
    try:
        card_id = _post_apply_card(op, config, clusters, progress, ws, fresh, verb=verb,
                                   given=dict(op.params.get("vars") or {}))
    except cards.CardNotPosted as exc:
        return Outcome(False, f"{what}{_done_note(done)} A new plan is ready but {exc.message}")
    return Outcome(False, f"{what}{_done_note(done)} A new plan ({fresh.summary.headline()}) needs approval: "
                          f"#{card_id}.")


def _apply_failed(op: Operation, progress: Progress, result: ApplyResult, done: list[ApplyTracker], again: str,
                  started: float, *, stage: Stage | None = None) -> Outcome:
    store, verb, tracker = progress.store, op.kind, result.tracker
    assert result.error is not None
    trackers = [*done, tracker]
    counts = infra_blocks.total_counts(trackers)
    _record(store, op, verb if verb == "destroy" else "apply", "failed", result.error.message, started)
    _diagnostics(progress, result.error)
    if any(t.done for t in trackers) and verb == "provision":
        InfraStore(store).register(op.cluster, status=ClusterStatus.FAILED, last_operation_id=op.id,
                                   note=f"the apply of #{op.id} failed part-way ({counts})")
    hint = f" {again}" if isinstance(result.error, StalePlan) else ""
    where = f" (in {stage.label})" if stage is not None else ""
    finished = f" Done before it stopped: {counts}." if any(t.done for t in trackers) else ""
    return Outcome(False, f"{result.error.message}{where}{finished}{hint}")


def _applied(op: Operation, config: Config, progress: Progress, ws: Workspace, saved: SavedPlan,
             done: list[ApplyTracker], started: float) -> Outcome:
    store, verb = progress.store, op.kind
    counts = infra_blocks.total_counts(done)
    _record(store, op, verb if verb == "destroy" else "apply", "ok", counts, started)
    if verb == "destroy":
        InfraStore(store).register(op.cluster, status=ClusterStatus.DESTROYED, last_operation_id=op.id, reach="none",
                                   endpoint=None, note=f"destroyed by #{op.id}")
        return Outcome(True, f"destroyed ({counts}). `{op.cluster}` is no longer registered.")
    if saved.vars is not None:
        ws.record_applied(saved.vars)
    last = done[-1] if done else None
    outputs = last.outputs if last is not None and last.outputs is not None and len(done) == 1 else ws.outputs()
    reach = _reach(op.cluster, outputs)
    registered = InfraStore(store).registration(op.cluster)
    given = dict(registered.vars) if registered else {}
    InfraStore(store).register(op.cluster, status=ClusterStatus.PROVISIONED, last_operation_id=op.id,
                               outputs={n: {"sensitive": o.sensitive, "value": o.value} for n, o in outputs.items()},
                               vars=given | dict(op.params.get("vars") or {}), **reach)
    sentence = infra_blocks.registration_sentence(op.cluster, reach, configured=config.cluster(op.cluster) is not None)
    msg = infra_blocks.outputs_message(op.cluster, list(outputs.values()), sentence, sandbox=progress.sandbox)
    progress.client.chat_postMessage(channel=op.channel_id, thread_ts=progress.op.card_ts, text=msg.text,
                                     blocks=msg.blocks)
    elapsed = time.monotonic() - started
    return Outcome(True, f"applied ({counts}) in {elapsed:.0f} s. {sentence}")


# ---- a destroy removes the bot's releases first ------------------------------------------------


def _remove_releases(op: Operation, config: Config, clusters: Clusters, progress: Progress) -> None:
    """Undeploy every release the bot has on the cluster, before Terraform runs: their Services own
    cloud load balancers, which keep the VPC from being destroyed (cleanup.sh deletes them first for
    the same reason). Each is deleted as kube-apiserver deletes (ops.releases.remove waits until its
    objects are gone). Raises OpsError naming what is left and what holds it."""
    store = progress.store
    doomed = InfraStore(store).live_releases(op.cluster)
    if not doomed:
        return
    cluster = config.cluster(op.cluster) or clusters.lookup(op.cluster)
    if cluster is None:
        raise OpsError(f"the bot's releases on `{op.cluster}` ({_names(doomed)}) cannot be removed: the cluster "
                       "cannot be reached (not configured nor registered).")
    api = ReleaseApi(clusters.get(cluster))
    progress(f"Removing the bot's releases on `{op.cluster}` before destroying it: {_names(doomed)}.")
    timeout = max(float(cluster.rollout_timeout_seconds), 1.0)
    for release in doomed:
        # The whole cluster goes next, so an object the chart shares between releases goes too.
        owned = set(releases.owned_objects(api, release.namespace, release.name,
                                           releases.kinds_of(release.manifests)))
        owned |= {ObjectRef.of(o) for o in release.manifests}
        removal = releases.remove(api, owned, timeout=timeout, progress=progress.edit,
                                  what=f"`{release.namespace}/{release.name}`")
        if not removal.ok:
            raise OpsError(f"release `{release.namespace}/{release.name}` is not fully removed after "
                           f"{int(timeout)} s: {removal.why}.")
        InfraStore(store).record_removed(op, release)
        progress(f"Removed release `{release.namespace}/{release.name}` ({len(removal.deleted)} object(s)).")


def _names(found: list[LiveRelease]) -> str:
    return ", ".join(f"`{r.namespace}/{r.name}`" for r in found)


def _reach(cluster: str, outputs: Mapping[str, Output]) -> dict[str, Any]:
    """How to reach the new cluster's API, from the module's outputs (registration fields)."""

    def value(*names: str) -> str | None:
        for name in names:
            out = outputs.get(name)
            if out is not None and not out.sensitive and isinstance(out.value, str) and out.value:
                return out.value
        return None

    kubeconfig = value("kubeconfig_path", "kubeconfig_file")
    if kubeconfig:
        return {"reach": "kubeconfig", "kubeconfig": kubeconfig, "context": value("kubeconfig_context"),
                "eks_name": None, "region": None, "endpoint": None, "note": ""}
    eks_name = value("cluster_name", "eks_cluster_name")
    region = value("region", "cluster_region", "aws_region", "eks_cluster_region")
    # Most EKS modules (ai-on-eks among them) print `aws eks --region R update-kubeconfig --name N`.
    command = value("configure_kubectl", "kubeconfig_command", "update_kubeconfig", "kubectl_config")
    found = dict(_CONFIGURE_KUBECTL.findall(command or ""))
    eks_name, region = eks_name or found.get("name"), region or found.get("region")
    if eks_name and region:
        fields: dict[str, Any] = {"reach": "eks", "eks_name": eks_name, "region": region, "kubeconfig": None,
                                  "context": None, "note": ""}
        try:
            fields["endpoint"] = aws.describe_cluster(eks_name, region).endpoint
        except OpsError as exc:  # registered anyway: reaching it is retried on use
            fields["endpoint"] = None
            fields["note"] = f"describe_cluster failed: {exc.message}"
        return fields
    return {"reach": "none", "eks_name": None, "region": None, "endpoint": None, "kubeconfig": None, "context": None,
            "note": "its outputs do not say how to reach it (output `kubeconfig_path`, or `cluster_name` and "
                    "`region` of an EKS cluster)"}


# ---- the scheduled drift check -------------------------------------------------------------------


def check_drift_all(config: Config, store: Store, *, channel: str | None = None) -> list[int]:
    """Queue a drift check of every provisioned cluster; returns the new operations' ids.

    For a scheduler: call it on `terraform.drift_cron`, then wake the worker. Each check is a `drift`
    operation (it waits for the workspace's lock like any run); it reports only drift, in `channel`
    (default `terraform.drift_channel`), with a button to plan a fix. A cluster whose previous check
    has not run yet gets no second one.
    """
    channel = channel or config.terraform.drift_channel
    if not channel or not config.terraform.root:
        return []
    workdir = Path(config.terraform.workdir)
    created = []
    for row in InfraStore(store).registrations():
        if row.status != ClusterStatus.PROVISIONED or not workspace_exists(workdir, row.name):
            continue
        busy = (OpStatus.APPROVED, OpStatus.QUEUED, OpStatus.RUNNING)
        if store.open_operations(lock_keys.workspace(row.name), ("drift",), busy):
            continue
        op = store.create_operation(
            kind="drift", cluster=row.name, namespace="-", target="infrastructure",
            params={"verb": "drift", "scheduled": True},
            plan=infra_blocks.plan_request("drift", row.name, {}), requested_by="scheduler", channel_id=channel,
            approvals_needed=0, ttl=timedelta(hours=config.operations.approval_timeout_hours),
            lock_key=lock_keys.workspace(row.name))
        # No card by design: a clean check says nothing, and drift is reported on its own.
        store.approve_by_policy(op.id)
        created.append(op.id)
    return created
