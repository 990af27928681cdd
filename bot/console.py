"""`infer-bot console`: the bot's own Bolt app and handlers, driven from stdin instead of Slack.

Each line is turned into the signed request Slack would send and dispatched to the same App that
`serve` runs; the bot's outbound Web API calls go to a local Slack API server, and what Slack would
show is printed as text. So what the console shows is what a channel would show.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from slack_bolt.request import BoltRequest

from bot.app import Runtime, build_runtime, make_client
from bot.config import Config, Settings
from bot.sandbox.slack.webapi import Call, LocalSlack, SlackRequests, UploadedFile

FILES_DIR_ENV = "INFER_BOT_FILES_DIR"
FILES_DIR_NAME = "infer-bot-files"  # under the system's temporary folder unless $INFER_BOT_FILES_DIR says where
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")  # a file name the bot chose, kept to what any file system takes

CONSOLE_HELP = """\
Type slash commands as in Slack, e.g. `/infer help`, `/infer status`, `/infer scale qwen3-1-7b-vllm 2`.
Console commands:
  :as USER            act as another Slack user id{personas}
  :approve N          click Approve on operation N's card      :reject N REASON   click Reject and give a reason
  :click ACTION VALUE click any button (action id and value as shown in [brackets])
  :home               open the bot's Home tab (its buttons: :home-click ACTION VALUE)
  :wait               wait until the bot is idle                :quit              leave
{sandbox}"""
SANDBOX_HELP = """\
  :ice TYPE[/ZONE]    sandbox: EC2 has no capacity for TYPE (e.g. g6.48xlarge, g6.xlarge/us-west-2a)
  :ice off            sandbox: capacity everywhere again
"""


def unescape(text: str) -> str:
    """What Slack displays for its three escaped characters."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def render_blocks(blocks: list[dict[str, Any]]) -> str:
    """Block Kit as plain text, one line per block, buttons as [Label → :click action value]."""
    lines: list[str] = []
    for block in blocks or []:
        kind = block.get("type")
        if kind == "header":
            lines.append(f"== {block['text']['text']} ==")
        elif kind == "section":
            if block.get("text"):
                lines.append(block["text"]["text"])
            for f in block.get("fields", []):
                lines.append("  " + f["text"].replace("\n", ": ", 1))
            accessory = block.get("accessory") or {}
            if accessory.get("type") == "button":  # e.g. a suggestion's Apply, beside its text
                lines.append(f"  {_button(accessory)}")
        elif kind == "context":
            lines.append("  " + " ".join(e.get("text", "") for e in block.get("elements", [])))
        elif kind == "actions":
            lines.append("  " + "  ".join(_button(e) for e in block.get("elements", []) if e.get("type") == "button"))
        elif kind == "divider":
            lines.append("-" * 40)
    return unescape("\n".join(lines))


def _files(params: dict[str, Any]) -> list[dict[str, Any]]:
    files = params.get("files")
    if isinstance(files, str):  # form-encoded JSON, as slack_sdk sends it
        try:
            files = json.loads(files)
        except ValueError:
            return []
    return [f for f in files or [] if isinstance(f, dict)]


def _button(element: dict[str, Any]) -> str:
    return f"[{element['text']['text']} → :click {element['action_id']} {element.get('value', '')}]"


def _buttons(block: dict[str, Any]) -> list[dict[str, Any]]:
    """The buttons a block holds: an actions block's elements, or a section's accessory."""
    if block.get("type") == "actions":
        return [e for e in block.get("elements", []) if e.get("type") == "button"]
    accessory = block.get("accessory") or {}
    return [accessory] if accessory.get("type") == "button" else []


class Console:
    def __init__(self, runtime: Runtime, slack: LocalSlack, requests: SlackRequests, *, user: str,
                 channel: str, out: TextIO, files_dir: Path | None = None,
                 short_of: set[str] | None = None) -> None:
        self.runtime = runtime
        # The sandbox Karpenter's insufficient-capacity list (None outside the sandbox): what `:ice` edits.
        self.short_of = short_of
        self.slack = slack
        self.requests = requests
        self.user = user
        self.channel = channel
        self.out = out
        self.files_dir = files_dir  # where uploaded files are written (None: only their titles are shown)
        self._print_lock = threading.Lock()

    # ---- output: every Web API call the bot makes, shown as the channel would show it -----------

    def show(self, call: Call) -> None:
        p = call.params
        body = render_blocks(p.get("blocks") or []) or str(p.get("text", ""))
        if call.method == "chat.postMessage":
            where = f"↳ thread of {p['thread_ts']}" if p.get("thread_ts") else f"#{p.get('channel')}"
            self._print(f"[{where}] {body}")
        elif call.method == "chat.update":
            self._print(f"[card {p.get('ts')} updated]\n{body}")
        elif call.method == "chat.postEphemeral":
            self._print(f"[only {p.get('user')} sees] {body}")
        elif call.method == "response_url":
            self._print(f"[only you see] {body}")
        elif call.method == "files.completeUploadExternal":
            # A terminal cannot show the chart (or the image, or the plan file): it is written to the
            # files folder and its path printed where Slack would show the file.
            where = f"thread of {p['thread_ts']}" if p.get("thread_ts") else f"#{p.get('channel_id')}"
            uploaded = {f.id: f for f in self.slack.files}
            for entry in _files(p):
                title = entry.get("title") or entry.get("id", "")
                saved = self._save(uploaded.get(str(entry.get("id", ""))))
                self._print(f"[↳ {where}] (file: {title})" + (f" saved as {saved}" if saved else ""))
        elif call.method == "views.publish" and call.ok:
            user = p.get("user_id", "")
            self._print(f"[Home tab of {user}]\n{render_blocks((p.get('view') or {}).get('blocks') or [])}")
        elif call.method == "views.open":
            title = (p.get("view") or {}).get("title", {}).get("text", "")
            self._print(f"[form opened: {title}]")

    def _save(self, upload: UploadedFile | None) -> Path | None:
        """Write an uploaded file to the files folder; its name starts with Slack's file id, so a second
        digest's digest.png does not overwrite the first."""
        if upload is None or self.files_dir is None:
            return None
        name = SAFE_NAME.sub("_", Path(upload.filename).name).lstrip(".") or "file"
        path = self.files_dir / f"{upload.id}-{name}"
        try:
            self.files_dir.mkdir(parents=True, exist_ok=True)
            path.write_bytes(upload.content)
        except OSError as exc:
            self._print(f"[cannot save {upload.filename} in {self.files_dir}: {exc.strerror}]")
            return None
        return path.resolve()

    def _print(self, text: str) -> None:
        with self._print_lock:
            print(text, file=self.out, flush=True)

    # ---- input ---------------------------------------------------------------------------------

    def handle(self, line: str) -> bool:
        """Handle one input line; False means quit."""
        line = line.strip()
        if not line or line.startswith("#"):
            return True
        if line.startswith(":"):
            return self._console_command(line)
        if not line.startswith("/"):
            self._print("Start with a slash command (`/infer help`) or a console command (`:help`).")
            return True
        command, _, text = line.partition(" ")
        body, headers = self.requests.slash(text, user_id=self.user, channel_id=self.channel, command=command)
        self._dispatch(body, headers)
        return True

    def _console_command(self, line: str) -> bool:
        try:
            words = shlex.split(line)
        except ValueError:
            words = line.split()
        verb, args = words[0], words[1:]
        if verb in (":quit", ":exit", ":q"):
            return False
        if verb == ":as" and args:
            self.user = args[0]
            role = self.runtime.policy.role_of(self.user)
            self._print(f"Now acting as {self.user} ({role}).")
        elif verb == ":approve" and args:
            self.click("op_approve", args[0])
        elif verb == ":reject" and len(args) >= 2:
            self.click("op_reject", args[0])
            self.wait()
            values = {"reason": {"value": {"type": "plain_text_input", "value": " ".join(args[1:])}}}
            body, headers = self.requests.view_submission("reject_reason", values, user_id=self.user,
                                                          private_metadata=args[0])
            self._dispatch(body, headers)
        elif verb == ":click" and len(args) == 2:
            self.click(args[0], args[1])
        elif verb == ":home":
            body, headers = self.requests.app_home_opened(user_id=self.user)
            self._dispatch(body, headers)
        elif verb == ":home-click" and len(args) == 2:
            body, headers = self.requests.home_action(args[0], args[1], user_id=self.user)
            self._dispatch(body, headers)
        elif verb == ":wait":
            self.wait(timeout=120)
        elif verb == ":ice" and len(args) == 1 and self.short_of is not None:
            self._insufficient_capacity(args[0])
        else:
            self._print(CONSOLE_HELP.format(personas="", sandbox=SANDBOX_HELP if self.short_of is not None else ""))
        return True

    def _insufficient_capacity(self, offering: str) -> None:
        assert self.short_of is not None
        if offering == "off":
            self.short_of.clear()
            self._print("[sandbox] EC2 has capacity for every instance type again.")
            return
        self.short_of.add(offering)
        self._print(f"[sandbox] EC2 now has no capacity for {offering}: Karpenter's launches of it fail "
                    "(InsufficientCapacityError) until `:ice off`.")

    def click(self, action_id: str, value: str) -> None:
        card = self._find_button(action_id, value)
        if card is None:
            self._print(f"No button {action_id} {value} in #{self.channel}.")
            return
        body, headers = self.requests.block_action(action_id, value, user_id=self.user, channel_id=self.channel,
                                                   message_ts=card["ts"], message=card)
        self._dispatch(body, headers)

    def _find_button(self, action_id: str, value: str) -> dict[str, Any] | None:
        for message in reversed(self.slack.messages(self.channel)):
            for block in message.get("blocks") or []:
                for e in _buttons(block):
                    if e.get("action_id") == action_id and e.get("value") == value:
                        return message
        return None

    def _dispatch(self, body: bytes, headers: dict[str, str]) -> None:
        bolt_headers: dict[str, str | Sequence[str]] = dict(headers)
        resp = self.runtime.app.dispatch(BoltRequest(body=body.decode(), headers=bolt_headers))
        if resp.status != 200:
            self._print(f"[Slack would show an error: HTTP {resp.status}]")
        elif resp.body:
            try:
                payload = json.loads(resp.body)
            except ValueError:
                payload = {"text": resp.body}
            self._print(f"[only you see] {render_blocks(payload.get('blocks') or []) or payload.get('text', '')}")
        self.wait()

    def wait(self, timeout: float = 60) -> None:
        """Until the bot is quiet: no listener or operation in flight and no new Slack call for a moment."""
        deadline = time.monotonic() + timeout
        seen, quiet_since = len(self.slack.calls), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            if len(self.slack.calls) != seen or not self.runtime.quiet:
                seen, quiet_since = len(self.slack.calls), time.monotonic()
                continue
            if time.monotonic() - quiet_since > 0.2 and not self.runtime.store.list_operations(
                    ["approved", "running"], limit=1):
                return

    def loop(self, stdin: TextIO) -> None:
        interactive = stdin.isatty()
        while True:
            if interactive:
                self.out.write(f"{self.user}> ")
                self.out.flush()
            line = stdin.readline()
            if not line or not self.handle(line):
                return


def files_folder(given: str | os.PathLike[str] | None = None) -> Path:
    """Where the console writes uploaded files: `given`, else $INFER_BOT_FILES_DIR, else
    <temp>/infer-bot-files (/tmp/infer-bot-files on Linux).

    Not the console's own temporary folder, which goes when the console exits (the chart is worth
    opening afterwards), and not the working directory, which is often a checkout.
    """
    return Path(given or os.environ.get(FILES_DIR_ENV) or Path(tempfile.gettempdir()) / FILES_DIR_NAME)


def run_console(config: Config | None, settings: Settings, *, sandbox: bool, user: str | None,
                channel: str, stdin: TextIO | None = None, out: TextIO | None = None,
                files_dir: str | os.PathLike[str] | None = None) -> int:
    stdin = stdin or sys.stdin
    out = out or sys.stdout
    files = files_folder(files_dir)
    secret = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="infer-bot-console-") as tmp:
        box = None
        if sandbox:
            try:
                from bot.sandbox.environment import CHANNEL, PERSONAS, start_sandbox
            except ModuleNotFoundError as exc:  # kmock is the `sandbox` extra, absent from serve-only installs
                if exc.name != "kmock":
                    raise
                print("infer-bot console: the sandbox needs `pip install 'infer-bot[sandbox]'`", file=sys.stderr)
                return 2

            box = start_sandbox(Path(tmp))
            config = box.config
            channel = CHANNEL if channel == "C0CONSOLE" else channel
            user = user or "U0OPERATOR"
            database_url = box.database_url
        else:
            database_url = settings.infer_bot_database_url
            user = user or "U0CONSOLE"
        assert config is not None
        console: Console | None = None
        slack = LocalSlack(bot_token="xoxb-console", on_call=lambda call: console.show(call) if console else None)
        slack.start()
        try:
            local = settings.model_copy(update={"slack_bot_token": "xoxb-console", "slack_signing_secret": secret,
                                                "slack_api_url": slack.api_url,
                                                "infer_bot_database_url": database_url})
            runtime = build_runtime(config, local, client=make_client(local))
            runtime.worker.start()
            runtime.start_home()
            console = Console(runtime, slack, SlackRequests(secret, response_slack=slack), user=user,
                              channel=channel, out=out, files_dir=files,
                              short_of=box.emulator.controller.insufficient_capacity if box is not None else None)
            if sandbox:
                personas = "; sandbox personas: " + ", ".join(f"{u} ({r})" for u, r in PERSONAS.items())
                notes = "".join(f"{note}\n" for note in box.notes) if box is not None else ""
                print("infer-bot console: SANDBOX (an emulated local cluster; nothing real is changed)\n"
                      + notes + CONSOLE_HELP.format(personas=personas, sandbox=SANDBOX_HELP)
                      + f"You are {user} in #{channel}. "
                      f"Files the bot uploads (charts, images, plans) are saved in {files.resolve()}.", file=out)
            console.loop(stdin)
            console.wait()
            runtime.close()
        finally:
            slack.stop()
            if box is not None:
                box.stop()
    return 0
