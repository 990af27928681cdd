"""What Slack sends to the bot: slash commands, interactivity payloads and Events API callbacks, signed
like Slack signs them."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

from bot.sandbox.slack.records import JSONDict, default_channel, default_user, new_trigger_id


class ResponseSlack(Protocol):
    """Where response_urls, trigger_ids and stored messages come from (:class:`LocalSlack` is one)."""

    @property
    def views(self) -> dict[str, JSONDict]: ...

    def response_url(
        self, name: str = "", *, channel: str | None = None, message_ts: str | None = None, user: str | None = None
    ) -> str: ...

    def trigger_id(self) -> str: ...

    def find_message(self, channel: str, ts: str) -> JSONDict | None: ...

    def home_view(self, user_id: str) -> JSONDict | None: ...

    def user_profile(self, user_id: str) -> JSONDict: ...

    def channel_info(self, channel_id: str) -> JSONDict: ...


class SlackRequests:
    """Builds the HTTP requests Slack sends the bot, signed with the app's signing secret.

    Each builder returns ``(body, headers)``: the exact bytes to POST to ``/slack/events`` and
    the headers to send with them (Content-Type and Slack's signature headers included). With
    ``response_slack`` set, response_urls and trigger_ids come from that :class:`LocalSlack`,
    so what the bot does with them is recorded and policed there.
    """

    user_agent = "Slackbot 1.0 (+https://api.slack.com/robots)"
    form_content_type = "application/x-www-form-urlencoded"
    json_content_type = "application/json"

    def __init__(
        self,
        signing_secret: str,
        response_slack: ResponseSlack | None = None,
        team_id: str = "T0001",
        api_app_id: str = "A0001",
        *,
        team_domain: str = "local",
        verification_token: str = "local-verification-token",
    ) -> None:
        self.signing_secret = signing_secret
        self.response_slack = response_slack
        self.team_id = team_id
        self.api_app_id = api_app_id
        self.team_domain = team_domain
        # Slack still sends the deprecated verification token in every payload; Bolt ignores it.
        self.verification_token = verification_token
        self._verifier = SignatureVerifier(signing_secret)

    def sign(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """Slack's v0 signature headers for ``body`` (``timestamp`` defaults to now)."""
        ts = str(int(time.time()) if timestamp is None else timestamp)
        signature = self._verifier.generate_signature(timestamp=ts, body=body)
        assert signature is not None  # only None when timestamp is None
        return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature}

    def slash(
        self,
        text: str,
        *,
        user_id: str,
        channel_id: str,
        command: str = "/infer",
        extra_headers: Mapping[str, str] | None = None,
        timestamp: int | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        fields = {
            "token": self.verification_token,
            "team_id": self.team_id,
            "team_domain": self.team_domain,
            "channel_id": channel_id,
            "channel_name": self._channel_name(channel_id),
            "user_id": user_id,
            "user_name": self._user_name(user_id),
            "command": command,
            "text": text,
            "api_app_id": self.api_app_id,
            "is_enterprise_install": "false",
            "response_url": self._response_url(f"{command} {text}".strip(), channel_id, None, user_id),
            "trigger_id": self._trigger_id(),
        }
        body = urlencode(fields).encode("utf-8")
        return body, self._headers(body, timestamp, extra_headers)

    def block_action(
        self,
        action_id: str,
        value: str,
        *,
        user_id: str,
        channel_id: str,
        message_ts: str,
        message: Mapping[str, Any] | None = None,
        block_id: str | None = None,
        action_type: str = "button",
        extra_headers: Mapping[str, str] | None = None,
        timestamp: int | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """A click on a button in the message ``message_ts``.

        ``message`` defaults to the message as ``response_slack`` holds it, so the payload
        carries the card's real blocks. ``block_id`` defaults to the block holding
        ``action_id`` in that message (else ``"b"``).
        """
        original = dict(message) if message is not None else self._stored_message(channel_id, message_ts)
        original.setdefault("ts", message_ts)
        element, found_block_id = _find_element(original.get("blocks"), action_id)
        action: JSONDict = {
            "action_id": action_id,
            "block_id": block_id or found_block_id or "b",
            "value": value,
            "type": action_type,
            "action_ts": f"{time.time():.6f}",
        }
        if element is not None and isinstance(element.get("text"), dict):
            action["text"] = element["text"]
        payload = self._interactive(
            "block_actions", user_id,
            container={"type": "message", "message_ts": message_ts, "channel_id": channel_id, "is_ephemeral": False},
            channel={"id": channel_id, "name": self._channel_name(channel_id)},
            message=original,
            state={"values": {}},
            response_url=self._response_url(f"{action_id}:{value}", channel_id, message_ts, user_id),
            actions=[action],
        )
        return self._payload_request(payload, timestamp, extra_headers)

    def view_submission(
        self,
        callback_id: str,
        values: Mapping[str, Any],
        *,
        user_id: str,
        private_metadata: str | None = "",
        view_id: str = "V1",
        extra_headers: Mapping[str, str] | None = None,
        timestamp: int | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """A modal submitted with ``values`` (``{block_id: {action_id: {type, value}}}``).

        ``private_metadata=None`` sends what the stored view carries, as Slack does."""
        view = self._view(view_id, values, callback_id=callback_id, private_metadata=private_metadata)
        payload = self._interactive("view_submission", user_id, view=view, response_urls=[])
        return self._payload_request(payload, timestamp, extra_headers)

    def shortcut(
        self,
        callback_id: str,
        *,
        user_id: str,
        extra_headers: Mapping[str, str] | None = None,
        timestamp: int | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """A global shortcut (type ``shortcut``): no channel, no response_url, a trigger_id for views.open."""
        payload: JSONDict = {
            "type": "shortcut",
            "token": self.verification_token,
            "action_ts": f"{time.time():.6f}",
            "team": {"id": self.team_id, "domain": self.team_domain},
            "user": {"id": user_id, "username": self._user_name(user_id), "team_id": self.team_id},
            "is_enterprise_install": False,
            "enterprise": None,
            "callback_id": callback_id,
            "trigger_id": self._trigger_id(),
        }
        return self._payload_request(payload, timestamp, extra_headers)

    def view_select(
        self,
        view_id: str,
        action_id: str,
        value: str,
        *,
        user_id: str,
        values: Mapping[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timestamp: int | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """The option ``value`` chosen in the select ``action_id`` of a modal: a ``block_actions`` payload
        with a view container (no channel, no message, no response_url). Slack sends it for a select in
        an input block only where the block has ``dispatch_action``; the view's state carries the choice."""
        stored = self.response_slack.views.get(view_id, {}) if self.response_slack is not None else {}
        element, block_id = _find_element(stored.get("blocks"), action_id)
        chosen = _find_option(element, value) or {"text": {"type": "plain_text", "text": value}, "value": value}
        kind = str((element or {}).get("type") or "static_select")
        state = dict(values or {})
        state[block_id or "b"] = {action_id: {"type": kind, "selected_option": chosen}}
        view = self._view(view_id, state)
        action: JSONDict = {
            "type": kind,
            "action_id": action_id,
            "block_id": block_id or "b",
            "selected_option": chosen,
            "action_ts": f"{time.time():.6f}",
        }
        if element is not None and isinstance(element.get("placeholder"), dict):
            action["placeholder"] = element["placeholder"]
        payload = self._interactive("block_actions", user_id, container={"type": "view", "view_id": view_id},
                                    view=view, actions=[action])
        return self._payload_request(payload, timestamp, extra_headers)

    def block_suggestion(
        self,
        view_id: str,
        action_id: str,
        value: str,
        *,
        user_id: str,
        extra_headers: Mapping[str, str] | None = None,
        timestamp: int | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """What the user typed (``value``) into the external select ``action_id`` of a modal; the app
        answers in the HTTP response with ``options`` or ``option_groups`` (at most 100)."""
        stored = self.response_slack.views.get(view_id, {}) if self.response_slack is not None else {}
        _, block_id = _find_element(stored.get("blocks"), action_id)
        payload = self._interactive("block_suggestion", user_id, trigger=False,
                                    container={"type": "view", "view_id": view_id}, action_id=action_id,
                                    block_id=block_id or "b", value=value, view=self._view(view_id, {}))
        return self._payload_request(payload, timestamp, extra_headers)

    def app_home_opened(
        self,
        *,
        user_id: str,
        tab: str = "home",
        event_id: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timestamp: int | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """The Events API callback Slack sends when ``user_id`` opens the app's Home (or Messages) tab.

        Like Slack, it carries the tab's current ``view`` once one was published for the user.
        """
        now = time.time()
        event: JSONDict = {
            "type": "app_home_opened",
            "user": user_id,
            "channel": f"D{user_id.removeprefix('U')[:10]}",  # the app's DM with the user
            "tab": tab,
            "event_ts": f"{now:.6f}",
        }
        view = self.response_slack.home_view(user_id) if self.response_slack is not None else None
        if tab == "home" and view is not None:
            event["view"] = view
        return self._event_request(event, event_id, timestamp, extra_headers)

    def home_action(
        self,
        action_id: str,
        value: str,
        *,
        user_id: str,
        extra_headers: Mapping[str, str] | None = None,
        timestamp: int | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """A click on a button of ``user_id``'s Home tab: the payload names the view, not a channel or a
        message, and has no response_url (Slack gives none for views)."""
        view = (self.response_slack.home_view(user_id) if self.response_slack is not None else None) or {
            "id": "V0HOME", "type": "home", "blocks": []}
        element, block_id = _find_element(view.get("blocks"), action_id)
        action: JSONDict = {
            "action_id": action_id,
            "block_id": block_id or "b",
            "value": value,
            "type": "button",
            "action_ts": f"{time.time():.6f}",
        }
        if element is not None and isinstance(element.get("text"), dict):
            action["text"] = element["text"]
        payload = self._interactive("block_actions", user_id, container={"type": "view", "view_id": view.get("id", "")},
                                    view=view, actions=[action])
        return self._payload_request(payload, timestamp, extra_headers)

    # -- helpers -----------------------------------------------------------------------------

    def _interactive(self, kind: str, user_id: str, *, trigger: bool = True, **fields: Any) -> JSONDict:
        """What every interactivity payload of this app carries (Slack's common fields), then `fields`."""
        payload: JSONDict = {
            "type": kind,
            "user": self._user(user_id),
            "api_app_id": self.api_app_id,
            "token": self.verification_token,
            "team": {"id": self.team_id, "domain": self.team_domain},
            "enterprise": None,
            "is_enterprise_install": False,
        }
        if trigger:
            payload["trigger_id"] = self._trigger_id()
        return {**payload, **fields}

    def _view(
        self, view_id: str, values: Mapping[str, Any], *, callback_id: str | None = None,
        private_metadata: str | None = None,
    ) -> JSONDict:
        """The view as Slack puts it in a payload: the stored one (when known) with the user's input as state."""
        stored = self.response_slack.views.get(view_id, {}) if self.response_slack is not None else {}
        return {
            "id": view_id,
            "team_id": self.team_id,
            "type": "modal",
            "title": stored.get("title", {"type": "plain_text", "text": "infer-bot"}),
            "blocks": stored.get("blocks", []),
            "private_metadata": stored.get("private_metadata", "") if private_metadata is None else private_metadata,
            "callback_id": callback_id if callback_id is not None else stored.get("callback_id", ""),
            "state": {"values": dict(values)},
            "hash": stored.get("hash", f"{int(time.time())}.{secrets.token_hex(4)}"),
            "root_view_id": stored.get("root_view_id", view_id),
            "previous_view_id": None,
            "app_id": self.api_app_id,
            "external_id": stored.get("external_id", ""),
            "bot_id": stored.get("bot_id", ""),
        }

    def _event_request(
        self, event: JSONDict, event_id: str | None, timestamp: int | None, extra_headers: Mapping[str, str] | None
    ) -> tuple[bytes, dict[str, str]]:
        """An ``event_callback`` envelope around ``event``, as JSON (the Events API does not form-encode)."""
        envelope: JSONDict = {
            "token": self.verification_token,
            "team_id": self.team_id,
            "api_app_id": self.api_app_id,
            "event": event,
            "type": "event_callback",
            "event_id": event_id or f"Ev{secrets.token_hex(5).upper()}",
            "event_time": int(time.time()),
            "authorizations": [{"enterprise_id": None, "team_id": self.team_id, "user_id": "UBOT",
                                "is_bot": True, "is_enterprise_install": False}],
            "is_ext_shared_channel": False,
        }
        body = json.dumps(envelope, separators=(",", ":")).encode("utf-8")
        headers = {"Content-Type": self.json_content_type, "User-Agent": self.user_agent}
        headers.update(self.sign(body, timestamp))
        headers.update(extra_headers or {})
        return body, headers


    def _payload_request(
        self, payload: JSONDict, timestamp: int | None, extra_headers: Mapping[str, str] | None
    ) -> tuple[bytes, dict[str, str]]:
        body = urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode("utf-8")
        return body, self._headers(body, timestamp, extra_headers)

    def _headers(
        self, body: bytes, timestamp: int | None, extra_headers: Mapping[str, str] | None
    ) -> dict[str, str]:
        headers = {"Content-Type": self.form_content_type, "User-Agent": self.user_agent}
        headers.update(self.sign(body, timestamp))
        headers.update(extra_headers or {})
        return headers

    def _response_url(self, name: str, channel_id: str, message_ts: str | None, user_id: str) -> str:
        if self.response_slack is not None:
            return self.response_slack.response_url(
                name, channel=channel_id, message_ts=message_ts, user=user_id
            )
        # Shaped like Slack's so code that parses or logs it sees the real thing.
        return f"https://hooks.slack.com/commands/{self.team_id}/{secrets.randbelow(10**13)}/{secrets.token_hex(12)}"

    def _trigger_id(self) -> str:
        return self.response_slack.trigger_id() if self.response_slack is not None else new_trigger_id()

    def _stored_message(self, channel_id: str, message_ts: str) -> JSONDict:
        if self.response_slack is not None:
            stored = self.response_slack.find_message(channel_id, message_ts)
            if stored is not None:
                return stored
        return {"type": "message", "ts": message_ts, "text": ""}

    def _user(self, user_id: str) -> JSONDict:
        name = self._user_name(user_id)
        return {"id": user_id, "username": name, "name": name, "team_id": self.team_id}

    def _user_name(self, user_id: str) -> str:
        if self.response_slack is not None:
            return str(self.response_slack.user_profile(user_id)["name"])
        return str(default_user(user_id, self.team_id)["name"])

    def _channel_name(self, channel_id: str) -> str:
        if self.response_slack is not None:
            return str(self.response_slack.channel_info(channel_id)["name"])
        return str(default_channel(channel_id)["name"])


def _find_element(blocks: Any, action_id: str) -> tuple[JSONDict | None, str | None]:
    """The interactive element with ``action_id`` in ``blocks`` and the id of its block."""
    if not isinstance(blocks, list):
        return None, None
    for block in blocks:
        if not isinstance(block, dict):
            continue
        candidates = list(block.get("elements") or [])
        for key in ("accessory", "element"):  # a section's accessory, an input block's element
            if isinstance(block.get(key), dict):
                candidates.append(block[key])
        for element in candidates:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                return element, block.get("block_id")
    return None, None


def _find_option(element: JSONDict | None, value: str) -> JSONDict | None:
    """The option of a select whose value is ``value`` (in ``options`` or any of ``option_groups``)."""
    if element is None:
        return None
    options = list(element.get("options") or [])
    for group in element.get("option_groups") or []:
        options.extend(group.get("options") or [])
    return next((o for o in options if isinstance(o, dict) and o.get("value") == value), None)
