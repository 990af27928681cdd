"""One cluster's Terraform workspace: the root module copied in, init, plans saved and verified,
apply of exactly the reviewed plan file, and terraform's failures turned into what to do next.

A workspace is `<workdir>/<cluster>/`: a copy of the root module (refreshed before each plan, so a
change of the module reaches the next plan), Terraform's `.terraform/` and local state, the vars last
applied in `infer-bot.auto.tfvars.json` (so a person running terraform there by hand, or a drift
check, sees what the bot applied), and `.infer-bot/` with the bot's own files: saved plans, each with
the variables it was made from and a manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ops.errors import OpsError
from ops.terraform.plan import PlanSummary, SavedPlan
from ops.terraform.runner import (
    ApplyResult,
    ApplyTracker,
    Diagnostic,
    Output,
    StalePlan,
    StateLocked,
    Terraform,
    TerraformError,
    masked_outputs,
    minutes,
    tail,
)

VARS_FILE = "infer-bot.auto.tfvars.json"
BOT_DIR = ".infer-bot"
# Never copied from the root module nor hashed as an input: Terraform's own working data and state
# (copying someone's state into a workspace would be a disaster), version control, our own files.
_SKIP_NAMES = frozenset({".git", ".terraform", BOT_DIR, ".terraform.tfstate.lock.info"})
STATE_LOCK_SUMMARY = "Error acquiring the state lock"
STALE_PLAN_SUMMARY = "Saved plan is stale"


def workspace_exists(workdir: Path, name: str) -> bool:
    """True when the bot has planned in this cluster's workspace before."""
    return (workdir / name / BOT_DIR).is_dir()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _files(base: Path, *, skip: Path | None = None) -> dict[str, Path]:
    """Every file under base that belongs to a module's configuration, by relative path."""
    out: dict[str, Path] = {}
    for folder, dirs, names in os.walk(base):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_NAMES and (skip is None or here / d != skip))
        for name in sorted(names):
            if name in _SKIP_NAMES or name.startswith("terraform.tfstate") or name.endswith(".tfplan"):
                continue
            out[(here / name).relative_to(base).as_posix()] = here / name
    return out


class Workspace:
    """One cluster's Terraform workspace folder under `workdir` (see the module docstring)."""

    def __init__(self, tf: Terraform, root: Path, workdir: Path, name: str, *,
                 var_files: Sequence[Path] = ()) -> None:
        self.tf = tf
        self.root = root
        self.workdir = workdir
        self.name = name
        self.path = workdir / name
        self.bot_dir = self.path / BOT_DIR
        # Absolute paths. One inside the root module is given as its copy in the workspace (as
        # install.sh copies the module beside blueprint.tfvars); one outside is read where it is.
        self.var_files = tuple(var_files)

    def _var_file_args(self) -> list[str]:
        args = []
        for path in self.var_files:
            try:
                args.append(f"-var-file={self.path / path.relative_to(self.root)}")
            except ValueError:
                args.append(f"-var-file={path}")
        return args

    # ---- preparing ---------------------------------------------------------------------------

    def _sync(self) -> None:
        """Bring the copy of the root module up to date (new, changed and removed files)."""
        source = _files(self.root, skip=self.workdir)
        if not source:
            raise OpsError(f"the Terraform root module `{self.root}` has no files; check `terraform.root`.")
        record = self.bot_dir / "module-files.json"
        try:
            previous = set(json.loads(record.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            previous = set()
        for rel in sorted(previous - source.keys()):
            (self.path / rel).unlink(missing_ok=True)
        for rel, src in source.items():
            dst = self.path / rel
            if dst.is_file() and dst.read_bytes() == src.read_bytes():
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)  # with its mode: a module may run its own scripts
        record.write_text(json.dumps(sorted(source)), encoding="utf-8")

    def _init(self) -> None:
        """`terraform init`, when the workspace is new or its configuration files changed since."""
        configuration = {rel: _sha256(p) for rel, p in _files(self.path).items()
                         if rel.endswith((".tf", ".tf.json")) or rel == ".terraform.lock.hcl"}
        key = hashlib.sha256(json.dumps(configuration, sort_keys=True).encode()).hexdigest()
        marker = self.bot_dir / "init.sha256"
        if (self.path / ".terraform").is_dir() and marker.is_file() and marker.read_text() == key:
            return
        proc = self.tf.run(self.path, "init", "-input=false", "-no-color")
        if proc.returncode != 0:
            raise TerraformError(f"terraform init failed: {tail(proc.stderr or proc.stdout)}")
        # init may write the dependency lock file, which is configuration too: key it as it is now.
        configuration = {rel: _sha256(p) for rel, p in _files(self.path).items()
                         if rel.endswith((".tf", ".tf.json")) or rel == ".terraform.lock.hcl"}
        marker.write_text(hashlib.sha256(json.dumps(configuration, sort_keys=True).encode()).hexdigest())

    def _inputs(self, vars_file: Path | None) -> dict[str, str]:
        """sha256 of every file a plan depends on besides the state: the root module, the workspace's
        own configuration files, and the variables given with the plan."""
        inputs = {f"module/{rel}": _sha256(p) for rel, p in _files(self.root, skip=self.workdir).items()}
        inputs |= {f"workspace/{rel}": _sha256(p) for rel, p in _files(self.path).items()}
        if vars_file is not None:
            inputs["plan vars"] = _sha256(vars_file) if vars_file.is_file() else "missing"
        for path in self.var_files:
            if not path.is_relative_to(self.root):
                inputs[f"var file {path}"] = _sha256(path) if path.is_file() else "missing"
        return inputs

    # ---- plan ----------------------------------------------------------------------------------

    def plan(self, plan_id: str, *, vars: Mapping[str, Any] | None, destroy: bool = False, sync: bool = True,
             target: str | None = None, on_event: Callable[[dict[str, Any]], None] | None = None) -> SavedPlan:
        """Plan into a saved file and summarise it.

        `vars` are given to this plan only (`-var-file`, after the configured var files), so planning
        never changes what another plan waiting for approval was made from; None plans with the
        workspace's own files (a drift check). `sync` refreshes the module copy from the root module
        first. `target` plans one stage of a staged apply (`-target`).
        """
        self.path.mkdir(parents=True, exist_ok=True)
        self.bot_dir.mkdir(mode=0o700, exist_ok=True)
        if sync:
            self._sync()
        self._init()
        pdir = self.bot_dir / "plans" / plan_id
        if pdir.exists():
            shutil.rmtree(pdir)
        pdir.mkdir(parents=True, mode=0o700)
        saved_vars = dict(vars) if vars is not None else None
        args = ["plan", "-input=false", "-json", "-detailed-exitcode", "-lock-timeout=0s",
                f"-out={pdir / 'plan.tfplan'}"]
        args += self._var_file_args()
        vars_file = None
        if saved_vars is not None:
            vars_file = pdir / "vars.tfvars.json"
            vars_file.write_text(json.dumps(saved_vars, indent=2, sort_keys=True), encoding="utf-8")
            args.append(f"-var-file={vars_file}")
        elif self.var_files and (self.path / VARS_FILE).is_file():
            # Given again after the var files: what the bot applied last wins over them, as it did then
            # (terraform reads *.auto.tfvars.json before any -var-file).
            args.append(f"-var-file={self.path / VARS_FILE}")
        if destroy:
            args.append("-destroy")
        if target is not None:
            args.append(f"-target={target}")
        before = self._inputs(vars_file)
        diagnostics: list[Diagnostic] = []

        def collect(event: dict[str, Any]) -> None:
            if event.get("type") == "diagnostic":
                diagnostics.append(Diagnostic.from_json(event.get("diagnostic") or {}))
            if on_event is not None:
                on_event(event)

        code, stderr = self.tf.stream(self.path, *args, log=pdir / "plan.jsonl", on_event=collect)
        if code not in (0, 2):
            raise self._failure("plan", diagnostics, stderr)
        after = self._inputs(vars_file)
        if after != before:
            raise StalePlan(f"files of workspace `{self.name}` changed while it was being planned "
                            f"({_changed(before, after)}); plan again.")
        show = self.tf.run(self.path, "show", "-json", "-no-color", str(pdir / "plan.tfplan"))
        if show.returncode != 0:
            raise TerraformError(f"terraform show of the saved plan failed: {tail(show.stderr)}")
        try:
            summary = PlanSummary.from_show(json.loads(show.stdout))
        except ValueError:
            raise TerraformError("terraform show -json did not answer JSON") from None
        saved = SavedPlan(plan_id, pdir, destroy, datetime.now(UTC), after, _sha256(pdir / "plan.tfplan"),
                          summary, saved_vars, code)
        manifest = {k: v for k, v in saved.to_params().items() if k != "dir"} | {"workspace": self.name}
        (pdir / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        return saved

    def discard(self, saved: SavedPlan) -> None:
        shutil.rmtree(saved.dir, ignore_errors=True)

    def retire(self, saved: SavedPlan) -> None:
        """After an apply: drop the plan file and its variables (secrets in clear), keep the logs."""
        saved.plan_file.unlink(missing_ok=True)
        saved.vars_file.unlink(missing_ok=True)

    def prune(self, older_than: timedelta) -> None:
        """Remove saved plans that can no longer be applied anyway (plan files hold secrets in clear)."""
        limit = time.time() - older_than.total_seconds()
        for pdir in (self.bot_dir / "plans").glob("*"):
            if pdir.is_dir() and pdir.stat().st_mtime < limit:
                shutil.rmtree(pdir, ignore_errors=True)

    # ---- apply ---------------------------------------------------------------------------------

    def changed_inputs(self, saved: SavedPlan) -> str:
        """Which files the saved plan was made from changed since ("" when none did)."""
        current = self._inputs(saved.vars_file if saved.vars is not None else None)
        return _changed(saved.inputs, current) if current != saved.inputs else ""

    def verify(self, saved: SavedPlan, *, max_age: timedelta, now: datetime | None = None,
               inputs: bool = True) -> None:
        """Refuse (StalePlan) unless the saved plan is young enough and everything it was made from
        is as it was then. The state is Terraform's to check: it refuses a plan whose state moved on.

        (Terraform applies the configuration saved inside the plan file, so what runs is what was
        reviewed either way; this makes sure it is still what the workspace says should be.)
        `inputs=False` leaves the files to the caller: a staged run checks them before every stage."""
        age = (now or datetime.now(UTC)) - saved.created_at
        if age > max_age:
            raise StalePlan(f"this plan was made {minutes(age.total_seconds())} ago and plans older than "
                            f"{minutes(max_age.total_seconds())} are not applied; nothing was changed. "
                            "A new plan is needed.")
        if not saved.plan_file.is_file() or _sha256(saved.plan_file) != saved.plan_sha256:
            raise StalePlan("the saved plan file is gone or differs from the one reviewed; nothing was changed. "
                            "A new plan is needed.")
        changed = self.changed_inputs(saved) if inputs else ""
        if changed:
            raise StalePlan(f"workspace `{self.name}` changed after this plan was made "
                            f"({changed}); nothing was changed. A new plan is needed.")

    def apply(self, saved: SavedPlan, *, on_progress: Callable[[ApplyTracker], None] | None = None) -> ApplyResult:
        """Apply exactly the saved plan file; progress is reported on every event and tick."""
        tracker = ApplyTracker(saved.summary)

        def event(raw: dict[str, Any]) -> None:
            tracker.feed(raw)
            if on_progress is not None:
                on_progress(tracker)

        tick = (lambda: on_progress(tracker)) if on_progress is not None else None
        try:
            code, stderr = self.tf.stream(self.path, "apply", "-input=false", "-json", "-lock-timeout=0s",
                                          str(saved.plan_file), log=saved.dir / "apply.jsonl",
                                          on_event=event, on_tick=tick)
        except TerraformError as exc:
            return ApplyResult(tracker, exc)
        except OpsError as exc:
            return ApplyResult(tracker, TerraformError(exc.message, tracker.errors))
        if code < 0:  # killed from outside (OOM killer, an admin): terraform could not say anything
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            return ApplyResult(tracker, TerraformError(
                f"terraform apply was killed ({name}) with {tracker.done}/{tracker.total} resources done"
                + (f", while changing {', '.join(tracker.running)}" if tracker.running else "")
                + ". What it finished is in the state; what it was changing may be half-made. "
                "Run a drift check before going on.",
                tracker.errors))
        if code != 0:
            try:
                raise self._failure("apply", tracker.diagnostics, stderr)
            except TerraformError as exc:
                return ApplyResult(tracker, exc)
        return ApplyResult(tracker, None)

    def record_applied(self, values: Mapping[str, Any]) -> None:
        """Keep the variables just applied as the workspace's own (terraform by hand sees them too)."""
        target = self.path / VARS_FILE
        target.write_text(json.dumps(dict(values), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        target.chmod(0o600)

    def outputs(self) -> dict[str, Output]:
        proc = self.tf.run(self.path, "output", "-json", "-no-color")
        if proc.returncode != 0:
            raise TerraformError(f"terraform output failed: {tail(proc.stderr)}")
        try:
            return masked_outputs(json.loads(proc.stdout or "{}"))
        except ValueError:
            raise TerraformError("terraform output -json did not answer JSON") from None

    # ---- failures ------------------------------------------------------------------------------

    def _failure(self, action: str, diagnostics: Iterable[Diagnostic], stderr: str) -> TerraformError:
        errors = [d for d in diagnostics if d.severity == "error"]
        lock = next((d for d in errors if d.summary == STATE_LOCK_SUMMARY), None)
        if lock is not None:
            lock_id = re.search(r"ID:\s+(\S+)", lock.detail)
            who = re.search(r"Who:\s+(\S+)", lock.detail)
            holder = f" (held by {who.group(1)})" if who else ""
            release = (f"an admin can release it with `terraform force-unlock {lock_id.group(1)}` in `{self.path}`"
                       if lock_id else "the lock goes with the process that holds it")
            return StateLocked(f"Terraform's state of workspace `{self.name}` is locked by another run{holder}; "
                               f"I did not retry. Ask again when that run is over. If nothing is running, "
                               f"{release}.", errors)
        if any(d.summary == STALE_PLAN_SUMMARY for d in errors):
            return StalePlan("the state changed after this plan was made (another run applied in between); "
                             "nothing was changed. A new plan is needed.", errors)
        if errors:
            # The summary only: details are long and multi-line; whoever shows this shows them apart.
            first = errors[0]
            where = f" ({first.address})" if first.address else ""
            more = f" (and {len(errors) - 1} more error(s))" if len(errors) > 1 else ""
            return TerraformError(f"terraform {action} failed: {first.summary}{where}{more}", errors)
        return TerraformError(f"terraform {action} failed: {tail(stderr) or 'no message'}")


def _changed(before: Mapping[str, str], after: Mapping[str, str]) -> str:
    names = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    shown = ", ".join(f"`{n}`" for n in names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")
