"""Fixtures for the tests of the stand-ins: the local Slack Web API started alone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from slack_sdk import WebClient

from bot.sandbox.slack.webapi import LocalSlack, SlackRequests
from tests.support.slack import LOCAL_SECRET, LOCAL_TOKEN


@pytest.fixture
def slack() -> Iterator[LocalSlack]:
    with LocalSlack(bot_token=LOCAL_TOKEN) as server:
        yield server


@pytest.fixture
def client(slack: LocalSlack) -> WebClient:
    return WebClient(token=LOCAL_TOKEN, base_url=slack.api_url, timeout=5)


@pytest.fixture
def signer(slack: LocalSlack) -> SlackRequests:
    return SlackRequests(LOCAL_SECRET, response_slack=slack)
