"""A real `prometheus` over backfilled data, on loopback: finding the binaries (Debian package
`prometheus`, which includes promtool), backfilling OpenMetrics files with `promtool tsdb
create-blocks-from openmetrics`, and the server, which logs every query it evaluates.

The sandbox serves bot/sandbox/metrics_data.py's generated day this way; the tests do the same with
their own data sets.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests

INSTALL_HINT = ("Prometheus is not installed: run `apt-get install -y --no-install-recommends prometheus` "
                "(Debian package; it includes promtool)")


def find_binaries() -> tuple[str, str] | None:
    """(prometheus, promtool) from PATH, or None when either is missing."""
    prom, tool = shutil.which("prometheus"), shutil.which("promtool")
    return (prom, tool) if prom and tool else None


def binaries() -> tuple[str, str]:
    """(prometheus, promtool); raises RuntimeError with the install hint when the package is missing."""
    found = find_binaries()
    if found is None:
        raise RuntimeError(INSTALL_HINT)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def backfill(files: Sequence[Path], data_dir: Path) -> None:
    _, promtool = binaries()
    data_dir.mkdir(parents=True, exist_ok=True)

    def one(path: Path) -> None:
        proc = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", "-q", str(path), str(data_dir)],
                              capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"promtool failed on {path.name}: {proc.stderr[-2000:]}")

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(one, files))


def backfill_rules(server: PrometheusServer, rules: Path, start: float, end: float) -> None:
    """Recording rules' series over [start, end] (unix seconds), as Prometheus would have recorded them:
    `promtool tsdb create-blocks-from rules` evaluates them against the running server at the rules'
    interval from `start`; the server then restarts on its data dir with the new blocks."""
    _, promtool = binaries()
    out = server.workdir / "rule-blocks"
    proc = subprocess.run([promtool, "tsdb", "create-blocks-from", "rules", "-q", f"--start={int(start)}",
                           f"--end={int(end)}", f"--url={server.url}", f"--output-dir={out}", str(rules)],
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"promtool failed on {rules.name}: {proc.stderr[-2000:]}")
    server.stop()
    for block in out.iterdir():
        if (block / "meta.json").exists():
            block.rename(server.data_dir / block.name)
    server.start()


@dataclass
class PrometheusServer:
    """`prometheus` over a backfilled data dir, on a free loopback port, logging every query."""

    data_dir: Path
    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def query_log(self) -> Path:
        return self.workdir / "queries.log"

    def start(self, timeout: float = 30) -> PrometheusServer:
        prometheus, _ = binaries()
        config = self.workdir / "prometheus.yml"
        # No scrape jobs: the head stays empty and the backfilled blocks are all there is.
        config.write_text(f"global:\n  query_log_file: {self.query_log}\nscrape_configs: []\n", encoding="utf-8")
        self._log = (self.workdir / "prometheus.log").open("ab")
        self.proc = subprocess.Popen([
            prometheus, f"--config.file={config}", f"--storage.tsdb.path={self.data_dir}",
            # Retention counts back from the newest block; the data is ~a day old at most, but a
            # short retention would delete blocks at start-up.
            "--storage.tsdb.retention.time=10y", f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn"], stdout=self._log, stderr=self._log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {(self.workdir / 'prometheus.log').read_text()[-2000:]}")
            try:
                if requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise RuntimeError("prometheus did not become ready")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if hasattr(self, "_log"):
            self._log.close()

    def queries_logged(self) -> int:
        """Queries Prometheus has evaluated so far (its own query log, one JSON line each)."""
        try:
            return sum(1 for line in self.query_log.read_text(encoding="utf-8").splitlines() if line.strip())
        except FileNotFoundError:
            return 0
