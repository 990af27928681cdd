"""`budgets:` in the config: a budget per configured cluster; a bad entry is refused naming its key."""

from __future__ import annotations

import pytest

from bot.config import ConfigError, load_config

CLUSTERS = "clusters: [{name: dev, kubeconfig: /k}, {name: prod, kubeconfig: /k}]\n"


def write(tmp_path, text: str):
    path = tmp_path / "infer-bot.yaml"
    path.write_text(CLUSTERS + text, encoding="utf-8")
    return path


def test_budgets_load_with_their_defaults(tmp_path):
    cfg = load_config(write(tmp_path, "budgets:\n  - {cluster: prod, monthly_usd: 20000}\n"
                                      "  - {cluster: dev, channel: C0DEV, monthly_usd: 500.5, hard: true}\n"))
    prod, dev = cfg.budget("prod"), cfg.budget("dev")
    assert prod is not None and (prod.monthly_usd, prod.hard, prod.channel) == (20000, False, None)
    assert dev is not None and (dev.monthly_usd, dev.hard, dev.channel) == (500.5, True, "C0DEV")
    assert load_config(write(tmp_path, "")).budget("prod") is None


@pytest.mark.parametrize(("text", "expected"), [
    ("budgets: [{cluster: prod, monthly_usd: 0}]", "budgets[0].monthly_usd"),
    ("budgets: [{cluster: prod, monthly_usd: lots}]", "budgets[0].monthly_usd"),
    ("budgets: [{cluster: prod}]", "budgets[0].monthly_usd"),
    ("budgets: [{cluster: prod, monthly_usd: 10, hard: maybe}]", "budgets[0].hard"),
    ("budgets: [{cluster: prod, monthly_usd: 10, channel: general}]", "budgets[0].channel"),
    ("budgets: [{cluster: prod, monthly_usd: 10, currency: EUR}]", "budgets[0].currency"),
    ("budgets: [{cluster: staging, monthly_usd: 10}]", "budgets: cluster `staging` is not configured"),
    ("budgets: [{cluster: prod, monthly_usd: 10}, {cluster: prod, monthly_usd: 20}]", "one budget per cluster"),
])
def test_bad_budgets_are_refused_naming_the_key(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and expected in str(err.value)
