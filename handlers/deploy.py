"""`deploy`, `undeploy`, `rollback`, `autoscale`: checks first, then an operation and its approval card.

Everything a user can get wrong is refused here, before any card: an unknown preset, a `set.` key
outside the allow-list, a model that does not fit its instance (with the numbers and the smallest
instance that fits), an `instance=` no Karpenter NodePool allows (ops/karpenter.py; by default the
cheapest type they allow that fits, when they do not allow the preset's own), a custom resource
whose operator is missing, a name taken by an object the bot does not own, a shared ConfigMap
(ops/releases/shared.py) another release uses with other content.
The card then shows the fit estimate, the hourly cost and what will be created or changed; the
worker (bot/runs/releases.py) applies exactly the objects rendered here.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from handlers import cards, release_blocks, scale
from handlers.base import Invocation, Refusal
from handlers.blocks import Operation
from handlers.deps import ClusterConfig, Config, Deps
from handlers.models import catalog_settings
from handlers.parse import Command
from ops import catalog, fit, inference, instances, karpenter, lock_keys, releases, schedules
from ops.errors import OpsError
from ops.helm import ChartSource, Helm
from ops.releases import MissingApi, ObjectRef, ReleaseApi, shared


def _chart(config: Config) -> tuple[ChartSource, Helm, tuple[str, ...]]:
    chart = config.chart
    source = ChartSource(path=chart.path, repo=None if chart.path else chart.repo, name=chart.name,
                         version=chart.version)
    return source, Helm(timeout=chart.timeout_seconds, cache_dir=chart.cache_dir), tuple(chart.allowed_sets)


def _money(value: float | None) -> str:
    return f"${value:,.2f}/h" if value is not None else "no price known"


def _check_sets(cmd: Command, allowed: tuple[str, ...], cluster: str) -> dict[str, Any]:
    refused = [key for key in cmd.sets if not any(fnmatch.fnmatchcase(key, pattern) for pattern in allowed)]
    if refused:
        raise Refusal(f"`set.{refused[0]}` is not allowed here; a deploy may set only: "
                      f"{', '.join(f'`{k}`' for k in allowed)}. Nothing was changed.", cmd.usage, cluster=cluster)
    return {key: releases.typed(value) for key, value in cmd.sets.items()}


def _tuned(preset: catalog.Preset, sets: dict[str, Any]) -> catalog.Preset:
    """The preset as the `set.` values change what the fit check reads."""
    changes: dict[str, Any] = {}
    util = sets.get("modelParameters.gpuMemoryUtilization")
    if isinstance(util, int | float) and 0 < util <= 1:
        changes["gpu_memory_utilization"] = float(util)
    length = sets.get("modelParameters.maxModelLen")
    if isinstance(length, int) and length > 0:
        changes["max_model_len"] = length
    tp = sets.get("modelParameters.tensorParallelSize")
    if isinstance(tp, int) and tp > 0:
        changes["tensor_parallel"] = tp
    return replace(preset, **changes) if changes else preset


@dataclass(frozen=True)
class DeployProposal:
    """A deploy that passed every check, not yet created: the typed command proposes it at once; the
    deploy modal (handlers/deploy_modal.py) checks inside the submission's ack, so a refusal can be
    shown next to its field, and proposes after it."""

    inv: Invocation
    cluster: ClusterConfig
    namespace: str
    name: str
    gate: scale.Gate
    params: dict[str, Any]
    plan: dict[str, Any]

    def propose(self) -> Operation:
        return _propose(self.inv, self.cluster, "deploy", self.namespace, self.name, gate=self.gate,
                        params=self.params, plan=self.plan)


def deploy(cmd: Command, inv: Invocation) -> Operation:
    return check_deploy(cmd, inv).propose()


def check_deploy(cmd: Command, inv: Invocation) -> DeployProposal:
    """Every check of `deploy` (parse is the caller's), and the card's content; raises Refusal/OpsError."""
    cluster = inv.cluster_for(cmd)
    inv.authorize(cluster, "operator", "deploy")
    presets_dir, region = catalog_settings(inv.deps.config)
    try:
        preset = catalog.get_preset(cmd.args[0], presets_dir)
    except OpsError as exc:
        raise Refusal(exc.message, cmd.usage, cluster=cluster.name) from None
    source, helm, allowed = _chart(inv.deps.config)
    sets = _check_sets(cmd, allowed, cluster.name)
    name = cmd.options.get("name") or preset.service_name
    namespace = cmd.options.get("namespace") or cluster.namespace
    replicas = int(cmd.options["replicas"]) if "replicas" in cmd.options else None
    instance = cmd.options.get("instance")
    if replicas is not None and replicas > cluster.max_replicas:
        raise Refusal(f"cluster `{cluster.name}` allows at most {cluster.max_replicas} replicas; asked for {replicas}.",
                      cmd.usage, cluster=cluster.name)

    api = ReleaseApi(inv.deps.clusters.get(cluster))
    tuned, count = _tuned(preset, sets), replicas or _preset_replicas(preset)
    instance, default = _karpenter_instance(api, cmd, cluster.name, tuned, instance, count, region)
    estimate = default or fit.check_preset(tuned, instance, replicas=count, region=region)
    if not estimate.fits:
        raise Refusal(f"`{preset.id}` does not fit: {estimate.message} Nothing was changed.", cmd.usage,
                      cluster=cluster.name)

    values = releases.release_values(preset.values, name=name, namespace=namespace, replicas=replicas,
                                     instance=instance, sets=sets)
    rendered = helm.template(source, name, namespace, values)
    # A re-deploy keeps the release's autoscaler, and leaves the replicas it owns alone.
    scalers = releases.autoscalers(api, namespace, name)
    objects = releases.stamp(releases.without_replicas_under_autoscaler([*rendered, *scalers]), release=name,
                             revision=0, namespace=namespace, preset=preset.id)
    try:
        releases.check_apis(api, objects)
    except MissingApi as exc:
        raise Refusal(f"`{preset.id}` ({preset.framework}) cannot be deployed on `{cluster.name}`: {exc.message}",
                      cluster=cluster.name) from None
    owned = releases.owned_objects(api, namespace, name, [*_stored_kinds(inv, cluster.name, namespace, name),
                                                          *releases.kinds_of(objects)])
    changes = releases.plan(api, objects, previous=owned)
    _refuse_foreign(api, changes, owned, name, cluster.name)
    conflicts = shared.conflicts(api, objects, name)
    if conflicts:
        raise Refusal("\n".join(c.text() for c in conflicts) + f"\n`{name}` would change it under them: deploy "
                      "with the same chart and settings as they did, or into another `namespace=`. Nothing was "
                      "changed.", cluster=cluster.name)

    workload = next((o for o in objects if o["kind"] in releases.WORKLOAD_KINDS), objects[0])
    copies = replicas if replicas is not None else _preset_replicas(preset)
    verb = "update" if owned else "create"
    lines = [f"*Fit:* {estimate.message}",
             f"*Preset:* `{preset.id}` · {preset.model} · {preset.size} · {preset.framework} on "
             f"`{estimate.instance}` × {copies * preset.nodes} · *cost* {_money(estimate.hourly_cost)} on demand "
             f"in {estimate.region}",
             f"*Objects* ({verb}):"]
    lines += [f"• {c.line}" for c in changes]
    if sets:
        lines.append("*Set:* " + ", ".join(f"`{k}={v}`" for k, v in sets.items()))
    if scalers:
        lines.append(f"*Replicas:* owned by `{scalers[0]['kind']}/{name}`; the deploy leaves them as they are"
                     + (f" (`replicas={replicas}` is not applied)" if replicas is not None else "") + ".")
    lines += _missing_secrets(api, objects, namespace, inv.deps.command)

    def change() -> scale.Change:
        # Priced as whole instances, as the fit check's cost is. An update adds only the replicas it
        # adds (none where an autoscaler owns them); a change of instance type is not priced here.
        inst = instances.instance(estimate.instance)
        per_replica = preset.nodes * inst.devices
        now = releases.releases(api, namespace, name) if owned else []
        added = 0 if scalers else copies - (now[0].desired if now else 0)
        price = estimate.hourly_cost / (copies * per_replica) if estimate.hourly_cost is not None and copies else None
        return added * per_replica, price, "Neuron" if inst.accelerator_kind == "neuron" else "GPU"

    gate = scale.budget_gate(inv, cluster, "deploy", change)
    return DeployProposal(inv, cluster, namespace, name, gate=gate, params={
        "preset": preset.id, "objects": [_without_revision(o) for o in objects], "values": values,
        "startup_seconds": preset.startup_seconds,
    }, plan={
        "object": f"{workload['kind']}/{name}",
        "change": f"{verb} `{preset.id}`: {copies} replica(s) on {estimate.instance}, {_money(estimate.hourly_cost)}",
        "details": "\n".join(lines),
        "fit": {"required_gib": round(estimate.required_gib, 1), "available_gib": round(estimate.available_gib, 1),
                "hourly_cost": estimate.hourly_cost, "instance": estimate.instance},
        "changes": [{"action": c.action, "object": c.ref.key, "fields": list(c.fields)} for c in changes],
    })


def _karpenter_instance(api: ReleaseApi, cmd: Command, cluster: str, preset: catalog.Preset, instance: str | None,
                        replicas: int, region: str) -> tuple[str | None, fit.FitEstimate | None]:
    """The instance to deploy on where Karpenter's NodePools decide what can launch: `instance=` only
    if a NodePool allows it (or a Node of that type already exists: a node group); by default the
    cheapest type they allow that fits the preset as configured. Without NodePools (no API, or none)
    nothing changes: the preset's own instance."""
    try:
        nodepools = karpenter.list_nodepools(api)
        allowed = set(karpenter.allowed_instances(nodepools)) | karpenter.node_instance_types(api) \
            if nodepools else set()
    except OpsError:
        return instance, None  # NodePools the bot may not read: the fit check alone, as without Karpenter
    # Karpenter launches whatever the pod's nodeSelector names among what the NodePools allow, so the
    # default is a choice the bot makes: the cheapest allowed type that fits, not the type upstream's
    # values happen to pin (g5.48xlarge for the LWS presets while g6.48xlarge fits for less).
    if not nodepools or (instance is not None and instance in allowed):
        return instance, None
    if instance is not None and instance not in instances.load_instances():
        return instance, None  # a typo: the fit check names the instance types it knows
    best = fit.cheapest_allowed(preset, allowed, replicas=replicas, region=region)
    if instance is not None:
        how = (f"Use `instance={best.instance}` (the cheapest they allow that fits `{preset.id}`), or add "
               if best else "Add ")
        raise Refusal(f"{karpenter.not_allowed(nodepools, instance, cluster)}. {how}"
                      f"{instance.split('.', 1)[0]} to a NodePool's `spec.template.spec.requirements` "
                      f"({karpenter.INSTANCE_FAMILY}). Nothing was changed.", cmd.usage, cluster=cluster)
    if best is None:
        pools = "; ".join(f"`{karpenter.name_of(p)}` ({karpenter.what_allows(p)})" for p in nodepools)
        raise Refusal(f"no instance type the Karpenter NodePools on `{cluster}` allow fits `{preset.id}` "
                      f"(NodePools: {pools}). Allow a larger instance family in a NodePool, or lower "
                      "`set.modelParameters.maxModelLen`. Nothing was changed.", cmd.usage, cluster=cluster)
    return best.instance, best


def _missing_secrets(api: ReleaseApi, objects: list[dict[str, Any]], namespace: str, command: str) -> list[str]:
    """A warning on the card for each Secret the pods read that does not exist yet: they would not start."""
    wanted: set[str] = set()
    for obj in objects:
        text = json.dumps(obj.get("spec") or {})
        wanted |= {name for name in ("hf-token", "ngc-api") if f'"name": "{name}"' in text}
    lines = []
    for name in sorted(wanted):
        if api.get(ObjectRef("v1", "Secret", namespace, name)) is None:
            how = (f"`{command} secret hf-token` sets it privately" if name == "hf-token"
                   else f"`kubectl create secret generic {name} -n {namespace} ...`")
            lines.append(f":warning: The Secret `{name}` does not exist in `{namespace}`: the pods will not start "
                         f"until it does ({how}).")
    return lines


def _preset_replicas(preset: catalog.Preset) -> int:
    dep = ((preset.values.get("inference") or {}).get("modelServer") or {}).get("deployment") or {}
    return int(dep.get("replicas") or 1)


def _without_revision(obj: dict[str, Any]) -> dict[str, Any]:
    labels = {k: v for k, v in obj["metadata"].get("labels", {}).items() if k != releases.REVISION_LABEL}
    return {**obj, "metadata": {**obj["metadata"], "labels": labels}}


def _refuse_foreign(api: ReleaseApi, changes: list[releases.Change], owned: list[ObjectRef], name: str,
                    cluster: str) -> None:
    """An existing object of that name that is not this release's: taking it over would break whoever owns it."""
    ours = set(owned)
    for change in changes:
        if releases.is_shared(change.ref):
            continue  # every release of the framework uses it: ops/releases/shared.py decides
        if change.action != "create" and change.action != "delete" and change.ref not in ours:
            raise Refusal(f"`{change.ref.key}` already exists in `{change.ref.namespace}` and was not deployed by "
                          f"me (no `{releases.RELEASE_LABEL}={name}` label). Choose another `name=`; nothing "
                          "was changed.", cluster=cluster)


def _propose(inv: Invocation, cluster: ClusterConfig, kind: str, namespace: str, name: str, *, params: dict[str, Any],
             plan: dict[str, Any], gate: scale.Gate = scale.NO_BUDGET) -> Operation:
    """The release operation, pending approval, with its card posted; one lock per release.

    `gate`: what the cluster's budget makes of it (its card line; over budget, an admin must approve)."""
    deps = inv.deps
    op = deps.store.create_operation(
        kind=kind, cluster=cluster.name, namespace=namespace, target=name, params=params, plan=gate.plan(plan),
        requested_by=inv.user, channel_id=inv.channel,
        approvals_needed=gate.approvals(deps.policy.approvals_needed(cluster, kind)),
        ttl=deps.approval_ttl, lock_key=lock_keys.workload(cluster.name, namespace, name),
        admin_needed=gate.admin or None)
    try:
        cards.publish(inv.client, deps.store, op, sandbox=inv.sandbox, wake=deps.wake_worker)
    except cards.CardNotPosted as exc:
        raise Refusal(exc.message, cluster=cluster.name) from None
    return op


def _existing(cmd: Command, inv: Invocation, verb: str) -> tuple[Any, str, releases.ReleaseInfo, ReleaseApi]:
    cluster = inv.cluster_for(cmd)
    inv.authorize(cluster, "operator", verb)
    namespace = cmd.options.get("namespace") or cluster.namespace
    name = cmd.args[0]
    api = ReleaseApi(inv.deps.clusters.get(cluster))
    found = releases.releases(api, namespace, name)
    if not found:
        raise Refusal(f"there is no release `{name}` in namespace `{namespace}` of `{cluster.name}` (only what "
                      f"`{inv.deps.command} deploy` created can be changed this way; `{inv.deps.command} status` "
                      "lists them).", cmd.usage, cluster=cluster.name)
    return cluster, namespace, found[0], api


def _stored_kinds(inv: Invocation, cluster: str, namespace: str, name: str) -> list[tuple[str, str]]:
    """Kinds the release's stored revisions rendered: its objects may be of any of them."""
    history = inv.deps.releases
    return history.kinds(cluster, namespace, name) if history is not None else []


def undeploy(cmd: Command, inv: Invocation) -> Operation:
    cluster, namespace, release, api = _existing(cmd, inv, "undeploy")
    owned = releases.owned_objects(api, namespace, release.name,
                                   _stored_kinds(inv, cluster.name, namespace, release.name))
    details = "*Deletes:* " + ", ".join(f"`{r.key}`" for r in sorted(owned))
    uses = _shared_in_use(api, namespace, release.name)
    if uses:
        details += "\n*Shared:* " + "; ".join(uses)
    return _propose(inv, cluster, "undeploy", namespace, release.name, params={}, plan={
        "object": f"{release.kind}/{release.name}",
        "change": f"delete {len(owned)} object(s) of `{release.name}` (revision {release.revision})",
        "details": details,
    })


def _shared_in_use(api: ReleaseApi, namespace: str, name: str) -> list[str]:
    """What undeploy will do with each shared object the release uses: keep it for the others, or delete it."""
    out = []
    for ref in (ObjectRef("v1", "ConfigMap", namespace, n) for n in sorted(releases.SHARED_CONFIGMAPS)):
        live = api.get(ref)
        if live is None or name not in shared.users(live):
            continue
        others = sorted(shared.users(live) - {name})
        out.append(f"`{ref.key}` is kept, still used by {', '.join(f'`{o}`' for o in others)}" if others
                   else f"`{ref.key}` is deleted (no other release uses it)")
    return out


def rollback(cmd: Command, inv: Invocation) -> Operation:
    cluster, namespace, release, api = _existing(cmd, inv, "rollback")
    wanted = int(cmd.options["revision"]) if "revision" in cmd.options else None
    current = int(release.revision) if release.revision.isdigit() else None
    if wanted is not None and wanted == current:
        raise Refusal(f"`{release.name}` is at revision {current} already; nothing to do.", cmd.usage,
                      cluster=cluster.name)
    target = f"revision {wanted}" if wanted is not None else "the revision before the current one"
    details = [f"Re-applies the stored manifests of {target} as a new revision, and deletes objects that "
               "revision did not have (e.g. an autoscaler added later)."]
    history = inv.deps.releases
    if history is not None:
        # Resolved now, so that approval applies exactly the revision this card shows.
        found = history.rollback_target(cluster.name, namespace, release.name, wanted)
        if found is None:
            known = ", ".join(map(str, history.known(cluster.name, namespace, release.name))) or "none"
            raise Refusal(f"`{release.name}` has no stored {target} to roll back to (revisions: {known}). "
                          "Nothing was changed.", cmd.usage, cluster=cluster.name)
        wanted, manifests = found
        target = f"revision {wanted}"
        kinds = _stored_kinds(inv, cluster.name, namespace, release.name)
        changes = releases.plan(api, manifests, previous=releases.owned_objects(api, namespace, release.name, kinds))
        details = [f"*Objects* (back to revision {wanted}):", *(f"• {c.line}" for c in changes)]
    return _propose(inv, cluster, "rollback", namespace, release.name, params={
        "revision": wanted, "startup_seconds": 600,
    }, plan={
        "object": f"{release.kind}/{release.name}",
        "change": f"roll back from revision {release.revision} to {target}",
        "details": "\n".join(details),
    })


QUEUE_METRIC = "vllm:num_requests_waiting"


def autoscale(cmd: Command, inv: Invocation) -> Operation:
    cluster, namespace, release, api = _existing(cmd, inv, "autoscale")
    low, high = int(cmd.options["min"]), int(cmd.options["max"])
    metric = cmd.options.get("metric", "cpu")
    if high > cluster.max_replicas:
        raise Refusal(f"cluster `{cluster.name}` allows at most {cluster.max_replicas} replicas; max={high}.",
                      cmd.usage, cluster=cluster.name)
    if release.kind != "Deployment":
        raise Refusal(f"`{release.name}` is a {release.kind}; autoscale drives Deployments (a RayService "
                      "scales itself with `rayOptions.autoscaling`).", cmd.usage, cluster=cluster.name)
    target = cmd.options.get("target")
    labels = {releases.RELEASE_LABEL: release.name}
    if metric == "cpu":
        utilization = int(float(target)) if target else 70
        scaler = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                  "metadata": {"name": release.name, "namespace": namespace, "labels": labels},
                  "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": release.name},
                           "minReplicas": max(low, 1), "maxReplicas": high,
                           "metrics": [{"type": "Resource", "resource": {
                               "name": "cpu", "target": {"type": "Utilization", "averageUtilization": utilization}}}]}}
        what = f"CPU utilization {utilization}%"
    else:
        served = api.resources_of("keda.sh/v1alpha1")
        if not served or "ScaledObject" not in served:
            raise Refusal(f"`metric=queue` scales on `{QUEUE_METRIC}` through a KEDA ScaledObject, but KEDA is not "
                          f"installed on `{cluster.name}` (no keda.sh ScaledObject API). Install KEDA, or use "
                          "`metric=cpu` for a HorizontalPodAutoscaler.", cmd.usage, cluster=cluster.name)
        waiting = target or "5"
        prometheus = getattr(cluster, "prometheus_url", None) or \
            "http://kube-prometheus-stack-prometheus.monitoring.svc.cluster.local:9090"
        scaler = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
                  "metadata": {"name": release.name, "namespace": namespace, "labels": labels},
                  "spec": {"scaleTargetRef": {"name": release.name}, "minReplicaCount": low, "maxReplicaCount": high,
                           "triggers": [{"type": "prometheus", "metadata": {
                               "serverAddress": prometheus, "threshold": waiting,
                               "query": f'sum({QUEUE_METRIC}{{namespace="{namespace}",'
                                        f'pod=~"{release.name}-.*"}})'}}]}}
        what = f"{QUEUE_METRIC} above {waiting} per replica"
    floor = max(low, 1) if metric == "cpu" else low  # an HPA's minReplicas is at least 1

    def change() -> scale.Change:
        # Measured at the autoscaler's minimum: what it will certainly run whatever the load. Its
        # maximum is a ceiling it may never reach, and pricing it would ask for an admin on every
        # autoscale; the card's change line shows the maximum.
        _, region = catalog_settings(inv.deps.config)
        per = schedules.footprint(inv.deps.clusters.get(cluster), release.name, namespace, region)
        return (floor - release.desired) * per.devices, per.usd_per_device_hour, scale.device_name(per.resource)

    gate = scale.budget_gate(inv, cluster, "autoscale", change)
    return _propose(inv, cluster, "autoscale", namespace, release.name, gate=gate, params={
        "scaler": scaler, "startup_seconds": 600,
    }, plan={
        "object": f"{scaler['kind']}/{release.name}",
        "change": f"autoscale {low}–{high} replicas on {what}",
        "details": f"Adds `{scaler['kind']}/{release.name}` to the release as a new revision "
                   f"(now {release.ready}/{release.desired} ready at revision {release.revision}).",
    })


# ---- test ----------------------------------------------------------------------------------------


def test(cmd: Command, inv: Invocation) -> None:
    """One completion against the release's Service (or the cluster's `inference_url`): no change, no card."""
    cluster = inv.cluster_for(cmd)
    inv.authorize(cluster, "operator", "test")
    namespace = cmd.options.get("namespace") or cluster.namespace
    name, prompt = cmd.args[0], cmd.args[1]
    api = ReleaseApi(inv.deps.clusters.get(cluster))
    found = releases.releases(api, namespace, name)
    if not found:
        raise Refusal(f"there is no release `{name}` in namespace `{namespace}` of `{cluster.name}`.", cmd.usage,
                      cluster=cluster.name)
    release = found[0]
    model, framework, task = name, "vllm", "text"
    if release.preset:
        presets_dir, _ = catalog_settings(inv.deps.config)
        # A preset removed since: fall back to the release name and an OpenAI-compatible text model.
        with contextlib.suppress(OpsError):
            preset = catalog.get_preset(release.preset, presets_dir)
            model, framework, task = preset.model, preset.framework, preset.task
    template = cluster.inference_url
    base = template.format(name=name, namespace=namespace) if template else release.endpoint
    answer = inference.ask(base, framework=framework, task=task, model=model, prompt=prompt)
    message = release_blocks.test_message(name, prompt, answer.text, latency_s=answer.latency_s,
                                          prompt_tokens=answer.prompt_tokens,
                                          completion_tokens=answer.completion_tokens, url=answer.url,
                                          image_bytes=len(answer.image) if answer.image else None,
                                          sandbox=inv.sandbox)
    if answer.image is not None:
        # An image cannot ride in an ephemeral reply: it is shared in the channel, where the
        # requester asked, under the same summary.
        try:
            inv.client.files_upload_v2(channel=inv.channel, file=answer.image,
                                       filename=f"{name}-test.{answer.image_ext}", title=f"{name}: {prompt[:200]}",
                                       initial_comment=message.text)
        except SlackApiError as exc:
            raise Refusal(f"`{name}` answered with an image, but it could not be shared in this channel "
                          f"({exc.response.get('error', 'error')}); invite the bot to the channel and try again.",
                          cmd.usage, cluster=cluster.name) from None
    inv.reply(message)


# ---- secret hf-token -----------------------------------------------------------------------------

SECRET_CALLBACK = "hf_token_submit"


def secret(cmd: Command, inv: Invocation) -> None:
    """A modal, so the token is typed into Slack's form and never into a channel."""
    cluster = inv.cluster_for(cmd)
    inv.authorize(cluster, "admin", "secret")
    namespace = cluster.namespace
    from slack_sdk.models.blocks import InputBlock, PlainTextInputElement, SectionBlock
    from slack_sdk.models.views import View

    view = View(type="modal", callback_id=SECRET_CALLBACK, title="Hugging Face token", submit="Save",
                close="Cancel", private_metadata=json.dumps({"cluster": cluster.name, "namespace": namespace,
                                                              "channel": inv.channel}),
                blocks=[SectionBlock(text=f"Stored as the Secret `hf-token` (key `token`) in `{namespace}` on "
                                          f"`{cluster.name}`. It is not shown again or logged."),
                        InputBlock(block_id="token", label="Token (hf_…)",
                                   element=PlainTextInputElement(action_id="value", min_length=8, max_length=200))])
    try:
        inv.client.views_open(trigger_id=inv.trigger_id, view=view.to_dict())
    except SlackApiError as exc:
        raise Refusal(f"I could not open the form ({exc.response.get('error')}); run the command again.",
                      cluster=cluster.name) from None


def on_secret_submit(ack: Callable[..., Any], body: dict[str, Any], view: dict[str, Any], context: dict[str, Any],
                     client: WebClient) -> None:
    deps: Deps = context["deps"]
    user = body.get("user", {}).get("id", "")
    values = (view.get("state") or {}).get("values") or {}
    token = str(((values.get("token") or {}).get("value") or {}).get("value") or "").strip()
    try:
        meta = json.loads(view.get("private_metadata") or "{}")
        cluster = deps.clusters.lookup(str(meta["cluster"]))
        namespace, channel = str(meta["namespace"]), str(meta.get("channel") or "")
    except (ValueError, KeyError, TypeError):
        cluster, namespace, channel = None, "", ""
    refusal = ""
    if cluster is None:
        refusal = "that cluster is no longer configured."
    elif not token or any(c.isspace() for c in token):
        refusal = "paste the token itself (one word, e.g. hf_…)."
    else:
        decision = deps.policy.check(user, channel, cluster, "admin", "secret")
        refusal = "" if decision.allowed else decision.reason
    if refusal:
        deps.store.audit(user, "secret", "refused", channel_id=channel or None, detail=f"hf-token: {refusal}")
        ack(response_action="errors", errors={"token": refusal})
        return
    ack()
    assert cluster is not None
    try:
        existed = releases.put_secret(ReleaseApi(deps.clusters.get(cluster)), namespace, "hf-token", "token", token)
    except OpsError as exc:
        deps.store.audit(user, "secret", "failed", cluster=cluster.name, channel_id=channel or None,
                         detail=f"hf-token in {namespace}: {exc.message}")
        text = f":no_entry: The Secret `hf-token` was not saved: {exc.message}"
    else:
        what = "updated" if existed else "created"
        deps.store.audit(user, "secret", "ok", cluster=cluster.name, channel_id=channel or None,
                         detail=f"hf-token {what} in {namespace}")  # never the value
        text = f":key: Secret `hf-token` {what} in `{namespace}` on `{cluster.name}`."
    if channel:
        with contextlib.suppress(SlackApiError):  # the audit row has it; a lost notice must not undo the save
            client.chat_postEphemeral(channel=channel, user=user, text=text)
