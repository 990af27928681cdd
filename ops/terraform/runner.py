"""The terraform binary: argument lists with timeouts, `-json` output streamed event by event, and
what terraform says (diagnostics, masked outputs, apply progress) read from those events.

Every call is an argument list (no shell) with a timeout, `-input=false` and machine-readable output
(`-json`). python-terraform is not used: its last release is from 2019, it breaks on Terraform ≥ 0.15
and it cannot stream.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops.errors import OpsError
from ops.terraform.plan import PlanSummary

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
            raise OpsError(f"`terraform {args[0]}` did not finish within {minutes(limit)} and was "
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
            raise OpsError(f"`terraform {args[0]}` did not finish within {minutes(limit)} and was interrupted; "
                           "it saved to the state what it had done. Check with a drift check before going on.")
        return proc.returncode, stderr

    def version(self) -> str:
        proc = self.run(Path("."), "version", "-json", timeout=30)
        try:
            return str(json.loads(proc.stdout)["terraform_version"])
        except (ValueError, KeyError):
            raise OpsError(f"`{self.binary} version` did not answer as Terraform does: {tail(proc.stderr)}") from None


def _feed(line: bytes, on_event: Callable[[dict[str, Any]], None]) -> None:
    if not line.strip():
        return
    try:
        event = json.loads(line)
    except ValueError:
        return  # not one of terraform's JSON lines (e.g. a crash report): stderr keeps those
    if isinstance(event, dict):
        on_event(event)


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def tail(text: str, limit: int = 600) -> str:
    """The end of terraform's human output, without its box-drawing frame."""
    lines = [ln.strip(" │╷╵\t") for ln in text.splitlines()]
    joined = " ".join(ln for ln in lines if ln)
    return joined if len(joined) <= limit else "…" + joined[-limit:]


# ---- following an apply ---------------------------------------------------------------------


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

