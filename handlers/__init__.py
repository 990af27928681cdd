"""Slack-facing verbs: parse → authorize → call ops or create an operation → render → reply.

`handlers.listeners.register` attaches them to a Bolt app; `handlers.commands` holds the verb table.
"""
