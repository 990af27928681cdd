"""Terraform through its own binary: a root module's variables, one workspace folder per cluster,
plans saved to a file and summarised, and apply of exactly that file with streamed progress.

Every call is an argument list (no shell) with a timeout, `-input=false` and machine-readable output
(`-json`). python-terraform is not used: its last release is from 2019, it breaks on Terraform ≥ 0.15
and it cannot stream.

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
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ops.errors import OpsError

VARS_FILE = "infer-bot.auto.tfvars.json"
BOT_DIR = ".infer-bot"
# Never copied from the root module nor hashed as an input: Terraform's own working data and state
# (copying someone's state into a workspace would be a disaster), version control, our own files.
_SKIP_NAMES = frozenset({".git", ".terraform", BOT_DIR, ".terraform.tfstate.lock.info"})
STATE_LOCK_SUMMARY = "Error acquiring the state lock"
STALE_PLAN_SUMMARY = "Saved plan is stale"
# What a plan can do to a managed resource, in the order a summary lists them.
ACTIONS = ("create", "update", "replace", "delete", "forget")
KILL_GRACE_SECONDS = 60  # after SIGINT, how long terraform gets to save its state before SIGKILL


class TerraformError(OpsError):
    """terraform failed; `diagnostics` are its own error messages (summary and detail)."""

    def __init__(self, message: str, diagnostics: Iterable[Diagnostic] = ()) -> None:
        super().__init__(message)
        self.diagnostics = tuple(diagnostics)


class StateLocked(TerraformError):
    """Terraform's state lock is held by another process. Reported, never retried blindly."""


class StalePlan(TerraformError):
    """The saved plan may no longer be applied: too old, its inputs changed, or the state moved on."""


# ---- a root module's variables ---------------------------------------------------------------
#
# Terraform has no command that lists a module's variables without a plan (`validate -json` and
# `console` do not; `show -json` does, of a plan). We must refuse an undeclared `var.` before any
# plan, so the `variable` blocks are read from the files: a small scanner that knows HCL's
# comments, strings (with `${…}` templates) and heredocs finds the top-level blocks, then the
# block's own attributes (`type`, `sensitive`, `default`). `.tf.json` files are plain JSON.

_IDENT = r"[A-Za-z_][A-Za-z0-9_-]*"
_BLOCK_HEAD = re.compile(rf'({_IDENT})((?:\s+(?:"(?:[^"\\]|\\.)*"|{_IDENT}))*)\s*\{{')
_LABEL = re.compile(rf'"((?:[^"\\]|\\.)*)"|({_IDENT})')
_ATTRIBUTE = re.compile(rf"({_IDENT})\s*=(?!=)\s*(.*)", re.S)
_HEREDOC = re.compile(r"<<(-?)([A-Za-z_][A-Za-z0-9_]*)[ \t]*\r?\n")


@dataclass(frozen=True)
class Variable:
    name: str
    type: str = "any"  # the type constraint as written, without spaces: "string", "map(bool)", …
    sensitive: bool = False
    required: bool = False  # no default: a value must be given

    def coerce(self, text: str) -> Any:
        """The value Terraform should get for `text` typed in Slack; ValueError says what to type."""
        if self.type == "string":
            return text
        if self.type == "number":
            try:
                value = json.loads(text)
            except ValueError:
                value = None
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"`var.{self.name}` is a number")
            return value
        if self.type == "bool":
            if text.lower() in ("true", "false"):
                return text.lower() == "true"
            raise ValueError(f"`var.{self.name}` is a bool: `true` or `false`")
        try:
            return json.loads(text)
        except ValueError:
            if self.type == "any":
                return text
            raise ValueError(f"`var.{self.name}` is a `{self.type}`: give it as JSON, "
                             'e.g. `["a","b"]` or `{"k":"v"}`') from None


def declared_variables(module: Path) -> dict[str, Variable]:
    """The variables a root module declares, by name (its `*.tf` and `*.tf.json` files)."""
    if not module.is_dir():
        raise OpsError(f"the Terraform root module `{module}` is not a folder; check `terraform.root`.")
    files = [p for p in module.iterdir() if p.is_file() and p.name.endswith((".tf", ".tf.json"))]
    # Override files (`override.tf`, `*_override.tf`) change attributes of blocks declared elsewhere.
    files.sort(key=lambda p: (_is_override(p), p.name))
    found: dict[str, dict[str, Any]] = {}
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise OpsError(f"cannot read `{path}`: {exc}") from None
        blocks = _json_variables(text, path) if path.name.endswith(".json") else _hcl_variables(text)
        for name, attrs in blocks:
            if _is_override(path):
                found.setdefault(name, {}).update(attrs)
            else:
                found[name] = dict(attrs)
    out = {}
    for name, attrs in found.items():
        type_ = re.sub(r"\s+", "", str(attrs.get("type") or "any")).removeprefix("${").removesuffix("}")
        sensitive = attrs.get("sensitive") in (True, "true")
        out[name] = Variable(name, type_ or "any", sensitive, required="default" not in attrs)
    return dict(sorted(out.items()))


def _is_override(path: Path) -> bool:
    stem = path.name.removesuffix(".json").removesuffix(".tf")
    return stem == "override" or stem.endswith("_override")


def _json_variables(text: str, path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise OpsError(f"`{path}` is not valid JSON: {exc}") from None
    blocks = doc.get("variable") if isinstance(doc, dict) else None
    for block in blocks if isinstance(blocks, list) else [blocks or {}]:
        for name, attrs in (block or {}).items():
            yield name, attrs if isinstance(attrs, dict) else {}


def _hcl_variables(text: str) -> Iterator[tuple[str, dict[str, str]]]:
    for statement in _statements(text):
        head = _BLOCK_HEAD.match(statement)
        if head is None or head.group(1) != "variable":
            continue
        labels = [quoted or bare for quoted, bare in _LABEL.findall(head.group(2))]
        if len(labels) != 1:
            continue
        body = statement[head.end(): statement.rfind("}")]
        attrs = {}
        for inner in _statements(body):
            attribute = _ATTRIBUTE.fullmatch(inner)
            if attribute:
                attrs[attribute.group(1)] = attribute.group(2).strip()
        yield labels[0], attrs


def _statements(text: str) -> list[str]:
    """Split HCL body text into its top-level statements (attributes and blocks), comments removed."""
    out: list[str] = []
    buf: list[str] = []
    depth, i, n = 0, 0, len(text)

    def flush() -> None:
        statement = "".join(buf).strip()
        if statement:
            out.append(statement)
        buf.clear()

    while i < n:
        c = text[i]
        if c == "#" or text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
            buf.append(" ")
            continue
        if c == '"':
            end = _skip_string(text, i)
            buf.append(text[i:end])
            i = end
            continue
        heredoc = _HEREDOC.match(text, i) if c == "<" else None
        if heredoc:
            end = _skip_heredoc(text, heredoc)
            buf.append(text[i:end])
            i = end
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth = max(0, depth - 1)
        elif c == "\n" and depth == 0:
            flush()
            i += 1
            continue
        buf.append(c)
        i += 1
    flush()
    return out


def _skip_string(text: str, start: int) -> int:
    """Index just after the string literal opening at `start` (templates `${…}` may nest strings)."""
    i, n = start + 1, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
        elif c == '"':
            return i + 1
        elif text.startswith(("${", "%{"), i):
            i = _skip_template(text, i + 2)
        else:
            i += 1
    return n


def _skip_template(text: str, i: int) -> int:
    depth, n = 1, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            i = _skip_string(text, i)
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return n


def _skip_heredoc(text: str, opening: re.Match[str]) -> int:
    marker, pos, n = opening.group(2), opening.end(), len(text)
    while pos < n:
        end = text.find("\n", pos)
        end = n if end < 0 else end
        if text[pos:end].strip() == marker:
            return end
        pos = end + 1
    return n


# ---- what terraform says ---------------------------------------------------------------------


@dataclass(frozen=True)
class Diagnostic:
    severity: str
    summary: str
    detail: str = ""
    address: str = ""

    @staticmethod
    def from_json(raw: Mapping[str, Any]) -> Diagnostic:
        return Diagnostic(str(raw.get("severity", "error")), str(raw.get("summary", "")),
                          str(raw.get("detail") or ""), str(raw.get("address") or ""))

    def text(self) -> str:
        where = f" ({self.address})" if self.address else ""
        return f"{self.summary}{where}" + (f": {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class Output:
    name: str
    sensitive: bool
    value: Any = None  # always None when sensitive: the value is never kept

    def shown(self, limit: int = 300) -> str:
        if self.sensitive:
            return "(sensitive)"
        text = self.value if isinstance(self.value, str) else json.dumps(self.value, separators=(",", ":"))
        return text if len(text) <= limit else text[: limit - 1] + "…"


def masked_outputs(raw: Mapping[str, Any]) -> dict[str, Output]:
    """`output -json` / the apply's outputs event, with every sensitive value dropped."""
    out = {}
    for name, item in raw.items():
        item = item if isinstance(item, Mapping) else {}
        sensitive = bool(item.get("sensitive"))
        out[name] = Output(name, sensitive, None if sensitive else item.get("value"))
    return out


def _action(actions: Iterable[str]) -> str:
    found = set(actions)
    if found == {"create", "delete"}:
        return "replace"
    return next(iter(found)) if len(found) == 1 else "+".join(sorted(found))


@dataclass(frozen=True)
class PlanSummary:
    """What a plan would do, by resource address; never any value (values may be sensitive)."""

    by_action: dict[str, tuple[str, ...]] = field(default_factory=dict)
    drifted: tuple[str, ...] = ()  # changed outside Terraform since the last apply (refresh found it)
    outputs: tuple[str, ...] = ()  # names of outputs that change

    @staticmethod
    def from_show(doc: Mapping[str, Any]) -> PlanSummary:
        version = str(doc.get("format_version", ""))
        if not version.startswith("1."):
            raise OpsError(f"`terraform show -json` format {version or '?'} is not supported (1.x is)")
        by_action: dict[str, list[str]] = {a: [] for a in ACTIONS}
        for change in doc.get("resource_changes") or []:
            if change.get("mode", "managed") != "managed":
                continue  # data sources are read, never changed
            action = _action((change.get("change") or {}).get("actions") or ["no-op"])
            if action in by_action:
                by_action[action].append(str(change.get("address")))
        drifted = [str(d.get("address")) for d in doc.get("resource_drift") or []
                   if _action((d.get("change") or {}).get("actions") or ["no-op"]) != "no-op"]
        outputs = [name for name, oc in (doc.get("output_changes") or {}).items()
                   if _action((oc or {}).get("actions") or ["no-op"]) != "no-op"]
        return PlanSummary({a: tuple(v) for a, v in by_action.items() if v}, tuple(drifted), tuple(sorted(outputs)))

    def count(self, action: str) -> int:
        return len(self.by_action.get(action, ()))

    @property
    def add(self) -> int:  # Terraform's own "N to add" counts replacements too
        return self.count("create") + self.count("replace")

    @property
    def change(self) -> int:
        return self.count("update")

    @property
    def destroy(self) -> int:
        return self.count("delete") + self.count("replace")

    @property
    def resources(self) -> int:
        return sum(len(v) for v in self.by_action.values())

    @property
    def changes(self) -> bool:
        return bool(self.resources or self.outputs)

    def headline(self) -> str:
        line = f"{self.add} to add, {self.change} to change, {self.destroy} to destroy"
        extra = [f"{self.count('replace')} replaced"] if self.count("replace") else []
        if self.count("forget"):
            extra.append(f"{self.count('forget')} to forget")
        if not self.resources and self.outputs:
            extra.append(f"{len(self.outputs)} output(s) change")
        return line + (f" ({', '.join(extra)})" if extra else "")

    def to_dict(self) -> dict[str, Any]:
        return {"by_action": {a: list(v) for a, v in self.by_action.items()}, "drifted": list(self.drifted),
                "outputs": list(self.outputs)}

    @staticmethod
    def from_dict(raw: Mapping[str, Any]) -> PlanSummary:
        return PlanSummary({a: tuple(v) for a, v in (raw.get("by_action") or {}).items()},
                           tuple(raw.get("drifted") or ()), tuple(raw.get("outputs") or ()))


# ---- the binary ------------------------------------------------------------------------------


class Terraform:
    """The terraform binary: every call an argument list, with a timeout and no input prompts."""

    def __init__(self, binary: str = "terraform", *, timeout: float = 3600,
                 plugin_cache: Path | None = None) -> None:
        self.binary = binary
        self.timeout = timeout
        self.plugin_cache = plugin_cache

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        # TF_IN_AUTOMATION drops "run terraform apply next" hints; CHECKPOINT_DISABLE stops the
        # version check-in (the bot may run where nothing outside answers).
        env.update(TF_IN_AUTOMATION="1", TF_INPUT="0", CHECKPOINT_DISABLE="1")
        if self.plugin_cache is not None and "TF_PLUGIN_CACHE_DIR" not in env:
            # Providers downloaded once serve every workspace (and init works offline afterwards).
            self.plugin_cache.mkdir(parents=True, exist_ok=True)
            env["TF_PLUGIN_CACHE_DIR"] = str(self.plugin_cache)
        return env

    def _argv(self, chdir: Path, args: Iterable[str]) -> list[str]:
        return [self.binary, f"-chdir={chdir}", *args]

    def run(self, chdir: Path, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        limit = timeout or self.timeout
        try:
            return subprocess.run(self._argv(chdir, args), capture_output=True, text=True, timeout=limit,
                                  env=self.env(), stdin=subprocess.DEVNULL, check=False)
        except FileNotFoundError:
            raise OpsError(f"the terraform binary `{self.binary}` was not found; install Terraform or "
                           "set TERRAFORM_BIN") from None
        except subprocess.TimeoutExpired:
            raise OpsError(f"`terraform {args[0]}` did not finish within {_minutes(limit)} and was "
                           "stopped") from None

    def stream(self, chdir: Path, *args: str, log: Path, on_event: Callable[[dict[str, Any]], None],
               on_tick: Callable[[], None] | None = None, timeout: float | None = None) -> tuple[int, str]:
        """Run a `-json` command, feeding each event to on_event as it comes; returns (exit code, stderr).

        Output goes to `log`, not to a pipe: if the bot process dies, terraform is not killed by a
        broken pipe half-way through an apply, but finishes and saves its state (the operation is
        then reported interrupted and never re-run). Past the timeout terraform gets SIGINT, which
        makes it stop cleanly and save what it did, then SIGKILL after a grace period.
        """
        limit = timeout or self.timeout
        stderr_path = log.with_suffix(".stderr")
        with log.open("wb") as out, stderr_path.open("wb") as err:
            try:
                proc = subprocess.Popen(self._argv(chdir, args), stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                        env=self.env(), start_new_session=True)
            except FileNotFoundError:
                raise OpsError(f"the terraform binary `{self.binary}` was not found; install Terraform "
                               "or set TERRAFORM_BIN") from None
        deadline = time.monotonic() + limit
        kill_at: float | None = None
        pending = b""
        with log.open("rb") as reader:
            while True:
                finished = proc.poll() is not None
                chunk = reader.read()
                if chunk:
                    *lines, pending = (pending + chunk).split(b"\n")
                    for line in lines:
                        _feed(line, on_event)
                if finished:
                    _feed(pending, on_event)
                    break
                if on_tick is not None:
                    on_tick()
                now = time.monotonic()
                if kill_at is None and now > deadline:
                    proc.send_signal(signal.SIGINT)
                    kill_at = now + KILL_GRACE_SECONDS
                elif kill_at is not None and now > kill_at:
                    proc.kill()
                time.sleep(0.2)
        stderr = stderr_path.read_text(encoding="utf-8", errors="replace")
        if kill_at is not None:
            raise OpsError(f"`terraform {args[0]}` did not finish within {_minutes(limit)} and was interrupted; "
                           "it saved to the state what it had done. Check with a drift check before going on.")
        return proc.returncode, stderr

    def version(self) -> str:
        proc = self.run(Path("."), "version", "-json", timeout=30)
        try:
            return str(json.loads(proc.stdout)["terraform_version"])
        except (ValueError, KeyError):
            raise OpsError(f"`{self.binary} version` did not answer as Terraform does: {_tail(proc.stderr)}") from None


def _feed(line: bytes, on_event: Callable[[dict[str, Any]], None]) -> None:
    if not line.strip():
        return
    try:
        event = json.loads(line)
    except ValueError:
        return  # not one of terraform's JSON lines (e.g. a crash report): stderr keeps those
    if isinstance(event, dict):
        on_event(event)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _tail(text: str, limit: int = 600) -> str:
    """The end of terraform's human output, without its box-drawing frame."""
    lines = [ln.strip(" │╷╵\t") for ln in text.splitlines()]
    joined = " ".join(ln for ln in lines if ln)
    return joined if len(joined) <= limit else "…" + joined[-limit:]


# ---- plans and the workspace -----------------------------------------------------------------


@dataclass(frozen=True)
class SavedPlan:
    """A plan file as the approvers saw it, with what it was made from."""

    id: str
    dir: Path
    destroy: bool
    created_at: datetime
    inputs: dict[str, str]  # input file → sha256 at plan time: module copy, workspace files, plan vars
    plan_sha256: str
    summary: PlanSummary
    vars: dict[str, Any] | None  # the variables given with this plan (None: the workspace's own)
    exit_code: int = 2

    @property
    def plan_file(self) -> Path:
        return self.dir / "plan.tfplan"

    @property
    def vars_file(self) -> Path:
        return self.dir / "vars.tfvars.json"

    def to_params(self) -> dict[str, Any]:
        """What an operation keeps to apply this plan later (no variable values: they stay on disk)."""
        return {"id": self.id, "dir": str(self.dir), "destroy": self.destroy, "created_at": self.created_at.isoformat(),
                "inputs": self.inputs, "plan_sha256": self.plan_sha256, "summary": self.summary.to_dict(),
                "has_vars": self.vars is not None, "exit_code": self.exit_code}

    @staticmethod
    def from_params(raw: Mapping[str, Any]) -> SavedPlan:
        pdir = Path(raw["dir"])
        values = None
        if raw.get("has_vars"):
            try:
                values = json.loads((pdir / "vars.tfvars.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                values = {}  # verify() reports the missing file as a changed input
        return SavedPlan(str(raw["id"]), pdir, bool(raw["destroy"]), datetime.fromisoformat(raw["created_at"]),
                         dict(raw["inputs"]), str(raw["plan_sha256"]), PlanSummary.from_dict(raw["summary"]),
                         values, int(raw.get("exit_code", 2)))


class ApplyTracker:
    """Follows `apply -json` events: resources done of total, what runs now, diagnostics, outputs."""

    def __init__(self, summary: PlanSummary, clock: Callable[[], float] = time.monotonic) -> None:
        # A replacement is two steps (delete and create, in either order) of one resource.
        self._steps = {address: 2 if action == "replace" else 1
                       for action, addresses in summary.by_action.items() if action != "forget"
                       for address in addresses}
        self.total = len(self._steps)
        self._clock = clock
        self.started = clock()
        self.running: dict[str, str] = {}  # address → action, in the order they started
        self.errored: list[str] = []
        self.diagnostics: list[Diagnostic] = []
        self.outputs: dict[str, Output] | None = None
        self.counts: dict[str, int] = {}

    def feed(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        hook = event.get("hook") or {}
        address = str((hook.get("resource") or {}).get("addr", ""))
        if kind == "apply_start":
            self.running[address] = str(hook.get("action", ""))
        elif kind == "apply_complete":
            self.running.pop(address, None)
            if address in self._steps:
                self._steps[address] -= 1
        elif kind == "apply_errored":
            self.running.pop(address, None)
            self.errored.append(address)
        elif kind == "diagnostic":
            self.diagnostics.append(Diagnostic.from_json(event.get("diagnostic") or {}))
        elif kind == "change_summary":
            self.counts = {k: int(v) for k, v in (event.get("changes") or {}).items() if isinstance(v, int)}
        elif kind == "outputs":
            # This event carries no value for sensitive outputs at all.
            self.outputs = masked_outputs(event.get("outputs") or {})

    @property
    def done(self) -> int:
        return sum(1 for left in self._steps.values() if left <= 0)

    @property
    def current(self) -> tuple[str, str] | None:
        """(address, action) of the resource that started last and is still running."""
        return next(reversed(self.running.items()), None)

    @property
    def elapsed(self) -> float:
        return self._clock() - self.started

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]


@dataclass(frozen=True)
class ApplyResult:
    tracker: ApplyTracker
    error: TerraformError | None

    @property
    def ok(self) -> bool:
        return self.error is None


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

    def __init__(self, tf: Terraform, root: Path, workdir: Path, name: str) -> None:
        self.tf = tf
        self.root = root
        self.workdir = workdir
        self.name = name
        self.path = workdir / name
        self.bot_dir = self.path / BOT_DIR

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
            raise TerraformError(f"terraform init failed: {_tail(proc.stderr or proc.stdout)}")
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
        return inputs

    # ---- plan ----------------------------------------------------------------------------------

    def plan(self, plan_id: str, *, vars: Mapping[str, Any] | None, destroy: bool = False, sync: bool = True,
             on_event: Callable[[dict[str, Any]], None] | None = None) -> SavedPlan:
        """Plan into a saved file and summarise it.

        `vars` are given to this plan only (`-var-file`), so planning never changes what another
        plan waiting for approval was made from; None plans with the workspace's own files (a drift
        check). `sync` refreshes the module copy from the root module first.
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
        vars_file = None
        if saved_vars is not None:
            vars_file = pdir / "vars.tfvars.json"
            vars_file.write_text(json.dumps(saved_vars, indent=2, sort_keys=True), encoding="utf-8")
            args.append(f"-var-file={vars_file}")
        if destroy:
            args.append("-destroy")
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
            raise TerraformError(f"terraform show of the saved plan failed: {_tail(show.stderr)}")
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

    def verify(self, saved: SavedPlan, *, max_age: timedelta, now: datetime | None = None) -> None:
        """Refuse (StalePlan) unless the saved plan is young enough and everything it was made from
        is as it was then. The state is Terraform's to check: it refuses a plan whose state moved on.

        (Terraform applies the configuration saved inside the plan file, so what runs is what was
        reviewed either way; this makes sure it is still what the workspace says should be.)"""
        age = (now or datetime.now(UTC)) - saved.created_at
        if age > max_age:
            raise StalePlan(f"this plan was made {_minutes(age.total_seconds())} ago and plans older than "
                            f"{_minutes(max_age.total_seconds())} are not applied; nothing was changed. "
                            "A new plan is needed.")
        if not saved.plan_file.is_file() or _sha256(saved.plan_file) != saved.plan_sha256:
            raise StalePlan("the saved plan file is gone or differs from the one reviewed; nothing was changed. "
                            "A new plan is needed.")
        current = self._inputs(saved.vars_file if saved.vars is not None else None)
        if current != saved.inputs:
            raise StalePlan(f"workspace `{self.name}` changed after this plan was made "
                            f"({_changed(saved.inputs, current)}); nothing was changed. A new plan is needed.")

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
            raise TerraformError(f"terraform output failed: {_tail(proc.stderr)}")
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
        return TerraformError(f"terraform {action} failed: {_tail(stderr) or 'no message'}")


def _changed(before: Mapping[str, str], after: Mapping[str, str]) -> str:
    names = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    shown = ", ".join(f"`{n}`" for n in names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")
