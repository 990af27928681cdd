"""The inference chart rendered by the real `helm template`: values in, Kubernetes objects out.

Helm only renders here (the Argo CD model): the bot applies the objects itself and keeps their
history. The chart comes from a local folder (config `chart.path`; the project ships one with the
upstream values keys in ops/data/chart) or from a chart repository at a pinned version, pulled once
with `helm pull` into a cache folder. Helm is run as an argument list with a timeout, never a shell.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ops.errors import OpsError

BUNDLED_CHART = Path(__file__).parent / "data" / "chart"
DEFAULT_TIMEOUT = 60.0
_VERSION = re.compile(r"^v?\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")


@dataclass(frozen=True)
class ChartSource:
    """Where the chart comes from: `path`, or `repo` + `name` + exact `version`."""

    path: str | None = None
    repo: str | None = None
    name: str = "inference-charts"
    version: str = ""

    @property
    def label(self) -> str:
        return f"chart folder `{self.path}`" if self.path else f"`{self.name}` {self.version} from {self.repo}"


class Helm:
    def __init__(self, binary: str | None = None, *, timeout: float = DEFAULT_TIMEOUT,
                 cache_dir: str | Path | None = None) -> None:
        self.binary = binary or os.environ.get("HELM_BIN") or "helm"
        self.timeout = timeout
        self.cache_dir = Path(cache_dir or Path(tempfile.gettempdir()) / "infer-bot-charts")

    def _run(self, args: list[str], what: str, cwd: Path | None = None) -> str:
        # Helm keeps its own state (repositories, cache) under these; point them at our cache so
        # a pull never depends on, or changes, the user's ~/.config/helm.
        env = {**os.environ, "HELM_CACHE_HOME": str(self.cache_dir / ".helm-cache"),
               "HELM_CONFIG_HOME": str(self.cache_dir / ".helm-config"),
               "HELM_DATA_HOME": str(self.cache_dir / ".helm-data")}
        try:
            run = subprocess.run([self.binary, *args], capture_output=True, text=True, timeout=self.timeout,
                                 cwd=cwd, env=env, check=False)
        except FileNotFoundError:
            raise OpsError(f"the `helm` binary was not found (`{self.binary}`); install helm or set HELM_BIN") from None
        except subprocess.TimeoutExpired:
            raise OpsError(f"helm took longer than {self.timeout:g} s to {what}") from None
        if run.returncode != 0:
            # helm's first error line says what is wrong (a template error names file and line).
            lines = [line for line in run.stderr.splitlines() if line.strip()]
            detail = next((line for line in lines if line.startswith("Error")), lines[-1] if lines else "")
            raise OpsError(f"helm could not {what}: {detail[:500]}")
        return run.stdout

    def chart_dir(self, source: ChartSource) -> Path:
        """The chart's folder: the configured path, or the pinned version pulled into the cache."""
        if source.path:
            folder = Path(source.path).expanduser()
            if not (folder / "Chart.yaml").is_file():
                raise OpsError(f"`{folder}` is not a Helm chart (no Chart.yaml); check `chart.path`")
            return folder
        if not source.repo or not _VERSION.match(source.version or ""):
            raise OpsError("set `chart.path`, or `chart.repo`, `chart.name` and an exact `chart.version` "
                           "(a pinned version: what is deployed must not change under the bot)")
        key = hashlib.sha256(f"{source.repo}|{source.name}|{source.version}".encode()).hexdigest()[:16]
        target = self.cache_dir / f"{source.name}-{source.version}-{key}"
        chart = target / source.name
        if (chart / "Chart.yaml").is_file():
            return chart
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        # Pull into a fresh folder and rename: a pull that dies half-way never looks like a cached chart.
        staging = Path(tempfile.mkdtemp(prefix=".pull-", dir=self.cache_dir))
        try:
            self._run(["pull", source.name, "--repo", source.repo, "--version", source.version,
                       "--untar", "--untardir", str(staging)], f"pull {source.label}")
            try:
                staging.rename(target)
            except OSError:
                if not (chart / "Chart.yaml").is_file():  # another process won the race: use theirs
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return chart

    def template(self, source: ChartSource, release: str, namespace: str,
                 values: dict[str, Any]) -> list[dict[str, Any]]:
        """`helm template` of the chart with these values: the objects, in the order helm emits them."""
        chart = self.chart_dir(source)
        with tempfile.TemporaryDirectory(prefix="infer-bot-values-") as tmp:
            values_file = Path(tmp) / "values.yaml"
            values_file.write_text(yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
            out = self._run(["template", release, str(chart), "--namespace", namespace, "--values", str(values_file)],
                            f"render {source.label}")
        try:
            docs = [d for d in yaml.safe_load_all(out) if d]
        except yaml.YAMLError as exc:
            raise OpsError(f"helm rendered something that is not YAML: {exc}") from None
        for doc in docs:
            if not isinstance(doc, dict) or not doc.get("kind") or not (doc.get("metadata") or {}).get("name"):
                raise OpsError("helm rendered a document without kind or metadata.name")
        return docs
