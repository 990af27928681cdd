"""Counters the handlers own; bot/server.py exposes the process registry at /metrics."""

from prometheus_client import Counter

COMMANDS = Counter("infer_bot_commands_total", "Slash commands handled", ["verb", "outcome"])
ACTIONS = Counter("infer_bot_actions_total", "Button clicks and modal submissions handled",
                  ["action", "outcome"])
