"""`infer-bot` command line: serve, worker, console, digest, check.

Heavy modules (Bolt, the Kubernetes client, SQLAlchemy) are imported inside the commands, so
`infer-bot --help` answers at once.
"""

from __future__ import annotations

import argparse
import os
import sys

from bot.config import Config, ConfigError, Settings, load_config
from bot.logs import setup_logging


def _config(settings: Settings, path: str | None) -> Config:
    source = path or settings.infer_bot_config
    if not source:
        raise ConfigError("no configuration: pass --config FILE or set INFER_BOT_CONFIG "
                          "(or try the local sandbox: infer-bot console --sandbox)")
    return load_config(source)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    missing = [name for name, value in (("SLACK_SIGNING_SECRET", settings.slack_signing_secret),
                                        ("SLACK_BOT_TOKEN", settings.slack_bot_token)) if not value]
    if args.socket_mode and not settings.slack_app_token:
        missing.append("SLACK_APP_TOKEN")
    if missing:
        print(f"infer-bot serve: set {', '.join(missing)} in the environment", file=sys.stderr)
        return 2
    from bot.app import build_runtime

    config = _config(settings, args.config)
    # Socket Mode's acks go out over its own connection: nothing there to keep free of work.
    queue = config.server.after_ack == "queue" and not args.socket_mode
    runtime = build_runtime(config, settings, role="front" if queue else "all")
    if args.socket_mode:
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        runtime.start_background()
        SocketModeHandler(runtime.app, settings.slack_app_token).start()
        return 0
    from bot.server import serve

    workers = None
    if queue and config.server.worker_processes:
        from bot.processes import WorkerProcesses

        workers = WorkerProcesses(config.server.worker_processes, _passed_on(args))
    serve(runtime, args.host, args.port or settings.port, workers=workers)
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.slack_bot_token:
        print("infer-bot worker: set SLACK_BOT_TOKEN in the environment", file=sys.stderr)
        return 2
    from bot.app import build_runtime
    from bot.processes import run_worker

    run_worker(build_runtime(_config(settings, args.config), settings, role="worker"), metrics_port=args.metrics_port)
    return 0


def _passed_on(args: argparse.Namespace) -> list[str]:
    """The global options a child `infer-bot worker` needs to match its `serve`."""
    out: list[str] = []
    for flag, value in (("--config", args.config), ("--log-level", args.log_level), ("--log-format", args.log_format)):
        if value:
            out += [flag, value]
    return out


def cmd_console(args: argparse.Namespace, settings: Settings) -> int:
    from bot.console import run_console

    config = None if args.sandbox else _config(settings, args.config)
    return run_console(config, settings, sandbox=args.sandbox, user=args.user, channel=args.channel,
                       files_dir=args.files_dir)


def cmd_digest(args: argparse.Namespace, settings: Settings) -> int:
    """Build and post one digest to a channel, then exit (cron jobs, or a first look)."""
    if not args.now:
        print("infer-bot digest: pass --now (scheduled digests run inside `infer-bot serve`)", file=sys.stderr)
        return 2
    if not settings.slack_bot_token:
        print("infer-bot digest: set SLACK_BOT_TOKEN in the environment", file=sys.stderr)
        return 2
    from slack_sdk.errors import SlackApiError

    from bot.app import build_runtime
    from handlers.digest import MANUAL, post_digest

    runtime = build_runtime(_config(settings, args.config), settings)
    assert runtime.deps is not None and runtime.digests is not None
    post_id = runtime.digests.claim_post(args.channel, f"{MANUAL}cli-{os.getpid()}-{os.urandom(4).hex()}", "cli")
    try:
        posted = post_digest(runtime.client, runtime.deps, args.channel, args.cluster or (), post_id)
        if post_id is not None:
            runtime.digests.finish_post(post_id, "posted", ts=posted.ts, summary=posted.summary)
    except SlackApiError as exc:
        error = exc.response.get("error", "error")
        if post_id is not None:
            runtime.digests.finish_post(post_id, "failed", error=error)
        print(f"infer-bot digest: Slack refused the post: {error}", file=sys.stderr)
        return 1
    finally:
        runtime.close()
    s = posted.summary
    print(f"posted to {args.channel} (ts {posted.ts}): {s['deployments']} deployments, {s['suggestions']} "
          f"suggestions, {s['queries']} PromQL queries in {s['build_seconds']} s"
          + (f"; no data from {', '.join(s['clusters_down'])}" if s["clusters_down"] else ""))
    return 0


def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    from bot.check import run_check

    return run_check(_config(settings, args.config), settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="infer-bot", description="Slack chat-ops for LLM inference on EKS")
    parser.add_argument("--config", help="YAML config file (default: $INFER_BOT_CONFIG)")
    parser.add_argument("--log-level", default=os.environ.get("INFER_BOT_LOG_LEVEL"),
                        help="default INFO; WARNING for the console, whose stdout is the conversation")
    parser.add_argument("--log-format", choices=["json", "text"], default=os.environ.get("INFER_BOT_LOG_FORMAT"),
                        help="default json (one object per line) for serve and check, text for the console")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve Slack over HTTP (POST /slack/events) or Socket Mode")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=0, help="default: $PORT or 3000")
    serve.add_argument("--socket-mode", action="store_true", help="connect out with SLACK_APP_TOKEN")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="act on the Slack requests `serve` acked (server.after_ack: queue) "
                                           "and run approved operations, schedules and digests")
    worker.add_argument("--metrics-port", type=int, default=0,
                        help="serve this process's Prometheus metrics on the port (default: none)")
    worker.set_defaults(func=cmd_worker)

    console = sub.add_parser("console", help="the same handlers without Slack, on stdin/stdout")
    console.add_argument("--sandbox", action="store_true", help="run against an embedded local sandbox")
    console.add_argument("--user", default=None, help="act as this Slack user id (default: the operator)")
    console.add_argument("--channel", default="C0CONSOLE", help="the channel id commands come from")
    console.add_argument("--files-dir", default=None,
                         help="where files the bot uploads (charts, images, plans) are saved "
                              "(default: $INFER_BOT_FILES_DIR, else <temp>/infer-bot-files)")
    console.set_defaults(func=cmd_console)

    digest = sub.add_parser("digest", help="build and post one utilization digest now, then exit")
    digest.add_argument("--channel", required=True, help="Slack channel id (C…)")
    digest.add_argument("--now", action="store_true", help="post now (the only mode; schedules run in serve)")
    digest.add_argument("--cluster", action="append", help="only this cluster (repeatable; default: all)")
    digest.set_defaults(func=cmd_digest)

    check = sub.add_parser("check", help="validate the config and reach every dependency")
    check.set_defaults(func=cmd_check)

    args = parser.parse_args(argv)
    settings = Settings()
    console = args.command == "console"
    level = args.log_level or ("WARNING" if console else "INFO")
    fmt = args.log_format or ("text" if console else "json")
    setup_logging(level, fmt, secrets=(settings.slack_bot_token, settings.slack_signing_secret,
                                       settings.slack_app_token))
    try:
        return int(args.func(args, settings))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
