"""Config validation: every error names the file and the key, and the CLI says so without a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bot.config import ConfigError, Settings, load_config
from bot.sandbox.slack.webapi import LocalSlack


def write(tmp_path, text: str):
    path = tmp_path / "infer-bot.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_valid_config_loads_with_defaults(tmp_path):
    cfg = load_config(write(tmp_path, """
roles: {admin: [U1], approver: [U2, S0GROUP], operator: [U3]}
clusters:
  - {name: dev, kubeconfig: /k, namespace: models, channels: [C1], approvals: 2}
digests:
  - {channel: C1, cron: "0 9 * * *", clusters: [dev]}
"""))
    assert cfg.cluster("dev").approvals == 2 and cfg.cluster(None).name == "dev"
    assert cfg.slack.command == "/infer" and cfg.operations.approval_timeout_hours == 24
    assert cfg.cluster("dev").max_replicas == 20


@pytest.mark.parametrize(("text", "expected"), [
    ("clusters: [{name: Dev_1}]", "clusters[0].name"),
    ("clusters: [{name: dev, approvals: -1}]", "clusters[0].approvals"),
    ("clusters: [{name: dev, colour: red}]", "clusters[0].colour"),
    ("roles: {admin: [bob]}", "roles.admin[0]"),
    ("clusters: [{name: a}, {name: a}]", "cluster names must be unique"),
    ("digests: [{channel: C1, cron: '0 9 * *'}]", "digests[0].cron"),
    ("digests: [{channel: C1, cron: '0 9 * * *', clusters: [nope]}]", "unknown clusters: nope"),
    ("clusters: [{name: a, kubeconfig: /k, eks: {name: x, region: us-west-2}}]", "either kubeconfig or eks"),
    ("- just\n- a list", "top level must be a mapping"),
    ("clusters: [unclosed", "not valid YAML at line 1"),
])
def test_invalid_configs_name_the_file_and_the_key(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and expected in str(err.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        load_config(tmp_path / "nope.yaml")


def test_check_reports_bad_config_without_a_traceback(tmp_path):
    path = write(tmp_path, "clusters: [{name: Dev}]")
    run = subprocess.run([sys.executable, "-m", "bot.cli", "--config", str(path), "check"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "clusters[0].name" in run.stderr and "Traceback" not in run.stderr


def test_check_reaches_every_dependency(tmp_path, kube, slack):
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    good = write(tmp_path, f"clusters: [{{name: dev, kubeconfig: {kubeconfig}}}, "
                           f"{{name: gone, kubeconfig: {tmp_path / 'missing'}}}]")
    env = {"SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_API_URL": slack.api_url,
           "INFER_BOT_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-m", "bot.cli", "--config", str(good), "check"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "ok   cluster dev: Kubernetes" in run.stdout
    assert "FAIL cluster gone" in run.stdout
    assert "ok   slack" in run.stdout and "ok   database" in run.stdout
    assert "xoxb-test-token" not in run.stdout + run.stderr


def test_slack_api_url_works_with_or_without_its_trailing_slash():
    from bot.app import make_client

    with LocalSlack(bot_token="xoxb-t") as slack:
        for url in (slack.api_url, slack.api_url.rstrip("/")):
            client = make_client(Settings(slack_bot_token="xoxb-t", slack_api_url=url))
            assert client.auth_test()["ok"] is True
