"""`infer-bot check` reaches every cluster's Prometheus, as a digest would."""

from __future__ import annotations

import subprocess
import sys

import yaml

from tests.support.prometheus import closed_port, main_dataset


def test_check_reports_each_clusters_prometheus(tmp_path, kube, slack):
    _, server = main_dataset()
    kubeconfig = str(kube.write_kubeconfig(tmp_path / "kubeconfig"))
    dead = closed_port()
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"clusters": [
        {"name": "dev", "kubeconfig": kubeconfig, "prometheus_url": server.url},
        {"name": "eu", "kubeconfig": kubeconfig, "prometheus_url": dead},
        {"name": "lab", "kubeconfig": kubeconfig}]}))
    env = {"SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_API_URL": slack.api_url,
           "INFER_BOT_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-m", "bot.cli", "--config", str(config), "check"],
                         capture_output=True, text=True, timeout=60, env=env)
    out = run.stdout
    assert run.returncode == 1, out + run.stderr  # one Prometheus is down: the check fails
    [dev] = [line for line in out.splitlines() if line.startswith("ok   prometheus dev:")]
    assert f"at {server.url} answers queries" in dev and dev.split(":", 1)[1].strip().startswith("Prometheus 2.")
    assert f"FAIL prometheus eu: cannot connect to Prometheus at {dead} (connection refused)" in out
    assert "warn prometheus lab: no `prometheus_url`" in out  # a warning: digests will say so for this cluster
    assert "ok   cluster dev: Kubernetes" in out and "Traceback" not in out + run.stderr
