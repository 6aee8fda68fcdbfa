"""``enx-bot``: parse arguments, configure logging, load the config, run; signals live here only.

Exit codes: 0 normal end, 2 invalid config or arguments, 3 join failed, 4 session lost.
Bad input gets one line on stderr (what, where, what to do) and never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

import structlog

from bot.agent.errors import EXIT_CONFIG, EXIT_OK, AgentError, ConfigError

PROG = "enx-bot"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, exit 2 (argparse's default prints the whole usage)."""
        sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(EXIT_CONFIG)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Headless EnableX room participant (WebRTC bot).")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run the bots of a YAML config until they finish or a signal")
    run.add_argument("config", help="path to the YAML config (e.g. configs/demo.yaml)")
    run.add_argument("--log-format", choices=["auto", "json", "console"], default=None)
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default=None)

    check = sub.add_parser("check", help="validate a config and exit")
    check.add_argument("config")

    serve = sub.add_parser("serve", help="run the local room server standalone")
    serve.add_argument("--host", default=os.environ.get("ENX_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("ENX_PORT", "8080") or 8080))
    serve.add_argument("--app-id", default=os.environ.get("ENX_APP_ID"), help="default: $ENX_APP_ID")
    serve.add_argument("--app-key", default=os.environ.get("ENX_APP_KEY"), help="default: $ENX_APP_KEY")
    serve.add_argument("--create-room", metavar="NAME", help="create a room at start and log its id")
    serve.add_argument("--log-format", choices=["auto", "json", "console"], default="auto")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")

    tok = sub.add_parser("token", help="mint a token through the REST API and print it")
    tok.add_argument("--api-url", default=os.environ.get("ENX_API_URL") or "https://api.enablex.io/video/v2")
    tok.add_argument("--app-id", default=os.environ.get("ENX_APP_ID"))
    tok.add_argument("--app-key", default=os.environ.get("ENX_APP_KEY"))
    tok.add_argument("--room-id", default=os.environ.get("ENX_ROOM_ID"))
    tok.add_argument("--name", default=os.environ.get("ENX_NAME") or "enx-bot")
    tok.add_argument("--role", choices=["moderator", "participant", "viewer"], default="participant")
    return p


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "check":
            return _cmd_check(args)
        if args.command == "serve":
            return _cmd_serve(args)
        if args.command == "token":
            return _cmd_token(args)
    except AgentError as exc:
        return _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        return EXIT_OK
    return EXIT_CONFIG


def _load(path: str):  # type: ignore[no-untyped-def]
    from bot.agent.config import load_config
    from bot.agent.media_check import check_media

    cfg = load_config(path)
    check_media(cfg)
    return cfg


def _cmd_check(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    print(f"{args.config}: ok ({len(cfg.bots)} bot(s), {cfg.mode} mode)")
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    from bot.agent.logs import configure_logging
    from bot.agent.runner import Agent

    cfg = _load(args.config)
    configure_logging(args.log_format or cfg.log_format, args.log_level or cfg.log_level)
    agent = Agent(cfg)
    code = _run_with_signals(agent.run(), agent.stop)
    failure = agent.first_failure()
    if code != EXIT_OK and failure:
        _fail(failure, code)
    return code


def _run_with_signals(coro, on_first_signal) -> int:  # type: ignore[no-untyped-def]
    """First SIGINT/SIGTERM drains (bots leave), the second cancels."""
    log = structlog.get_logger("bot.cli")

    async def main() -> int:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        seen = 0

        def on_signal(signame: str) -> None:
            nonlocal seen
            seen += 1
            log.info("signal_received", signal=signame, count=seen)
            if seen == 1:
                on_first_signal()
            elif task is not None:
                task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig.name)
        try:
            result: int = await coro
            return result
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    try:
        return asyncio.run(main())
    except asyncio.CancelledError:
        return EXIT_OK


def _cmd_serve(args: argparse.Namespace) -> int:
    from bot.agent.logs import configure_logging
    from bot.server import serve

    if not args.app_id or not args.app_key:
        raise ConfigError("no app id/key: set ENX_APP_ID and ENX_APP_KEY, or pass --app-id and --app-key")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port} is not a TCP port (0-65535)")
    configure_logging(args.log_format, args.log_level)
    stop = asyncio.Event()

    async def run() -> int:
        task = asyncio.create_task(
            serve(args.host, args.port, args.app_id, args.app_key, create_room=args.create_room)
        )
        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            waiter.cancel()
            task.result()  # re-raise a bind failure
            return EXIT_OK
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return EXIT_OK

    try:
        return _run_with_signals(run(), stop.set)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc}): choose another --port"
        ) from None


def _cmd_token(args: argparse.Namespace) -> int:
    from bot.agent.tokens import RestTokens

    missing = [n for n in ("app_id", "app_key", "room_id") if not getattr(args, n)]
    if missing:
        flags = ", ".join("--" + m.replace("_", "-") for m in missing)
        raise ConfigError(f"missing {flags} (or ENX_APP_ID / ENX_APP_KEY / ENX_ROOM_ID)")
    source = RestTokens(args.api_url, args.app_id, args.app_key, args.room_id)
    token = asyncio.run(source.token_for(args.name, args.role, args.name))
    print(token)
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
