"""``enx-bot``: parse arguments, configure logging, load the config, run; signals live here only.

Exit codes: 0 normal end, 2 invalid config or arguments, 3 join failed, 4 session lost, 5 not let
into a waiting room, 6 (``report merge``) shards missing or failed. A bot dropped by a moderator or
whose room ran out of time is not a failure (outcomes ``dropped``, ``room_ended``: exit 0).
Bad input gets one line on stderr (what, where, what to do) and never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

import structlog

from bot.agent import EXIT_CONFIG, EXIT_OK, AgentError, ConfigError
from bot.proto import MIN_APP_KEY_BYTES

if TYPE_CHECKING:
    from bot.agent import AgentConfig

PROG = "enx-bot"
ENABLEX_API_URL = "https://api.enablex.io/video/v2"


def _port(text: str) -> int:
    """A TCP port, from ``--port`` or ``$ENX_PORT``."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (0-65535; from --port or $ENX_PORT)")
    return port


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
    serve.add_argument(
        "--host", default=os.environ.get("ENX_HOST", "127.0.0.1"), help="default: $ENX_HOST or 127.0.0.1"
    )
    # a string default goes through ``type`` at parse time, so a bad $ENX_PORT is an error of
    # ``serve`` (one line, exit 2), never a crash while the parser is built (``--help`` works)
    serve.add_argument(
        "--port", type=_port, default=os.environ.get("ENX_PORT") or "8080", help="default: $ENX_PORT or 8080"
    )
    serve.add_argument(
        "--app-id", default=os.environ.get("ENX_APP_ID"), help="Basic auth user (default: $ENX_APP_ID)"
    )
    serve.add_argument(
        "--app-key",
        default=os.environ.get("ENX_APP_KEY"),
        help=f"Basic auth password and token signing key, {MIN_APP_KEY_BYTES}+ bytes (default: $ENX_APP_KEY)",
    )
    serve.add_argument("--create-room", metavar="NAME", help="create a room at start and log its id")
    serve.add_argument(
        "--data-dir",
        metavar="DIR",
        default=os.environ.get("ENX_DATA_DIR") or "./data",
        help="keep rooms and used tokens in DIR/rooms.sqlite3 across restarts; ':memory:' keeps "
        "nothing (default: $ENX_DATA_DIR or ./data)",
    )
    serve.add_argument(
        "--stun", metavar="URL", default=os.environ.get("ENX_STUN_URL"), help="default: $ENX_STUN_URL"
    )
    serve.add_argument(
        "--turn", metavar="URL", default=os.environ.get("ENX_TURN_URL"), help="default: $ENX_TURN_URL"
    )
    serve.add_argument(
        "--turn-username", default=os.environ.get("ENX_TURN_USERNAME"), help="default: $ENX_TURN_USERNAME"
    )
    serve.add_argument(
        "--turn-credential",
        default=os.environ.get("ENX_TURN_CREDENTIAL"),
        help="default: $ENX_TURN_CREDENTIAL (never logged)",
    )
    serve.add_argument(
        "--reconnect-grace",
        metavar="SECONDS",
        type=float,
        default=None,
        help="keep a participant whose socket dropped this long for its rejoin "
        "(default: $ENX_RECONNECT_GRACE_S or 10)",
    )
    serve.add_argument(
        "--bw-window", metavar="SECONDS", type=float, default=None, help="bandwidth detector window (2.5)"
    )
    serve.add_argument("--bw-loss-pct", metavar="PCT", type=float, default=None, help="loss that alerts (5)")
    serve.add_argument(
        "--bw-delay-ms", metavar="MS", type=float, default=None, help="queue delay that alerts (400)"
    )
    serve.add_argument("--no-bw-detector", action="store_true", help="send no bandwidth alerts of its own")
    serve.add_argument(
        "--full-intake",
        action="store_true",
        help="run every received packet through aiortc's whole receive path, subscribed or not "
        "(slower; for comparison: see bot/webrtc/patches/lean_intake.py)",
    )
    serve.add_argument("--log-format", choices=["auto", "json", "console"], default="auto")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")

    tok = sub.add_parser("token", help="mint a token through the REST API and print it")
    tok.add_argument(
        "--api-url",
        default=os.environ.get("ENX_API_URL") or ENABLEX_API_URL,
        help=f"the REST API (default: $ENX_API_URL or {ENABLEX_API_URL})",
    )
    tok.add_argument("--app-id", default=os.environ.get("ENX_APP_ID"), help="default: $ENX_APP_ID")
    tok.add_argument("--app-key", default=os.environ.get("ENX_APP_KEY"), help="default: $ENX_APP_KEY")
    tok.add_argument("--room-id", default=os.environ.get("ENX_ROOM_ID"), help="default: $ENX_ROOM_ID")
    tok.add_argument(
        "--name", default=os.environ.get("ENX_NAME") or "enx-bot", help="default: $ENX_NAME or enx-bot"
    )
    tok.add_argument(
        "--role",
        choices=["moderator", "participant", "viewer"],
        default="participant",
        help="default: participant",
    )

    report = sub.add_parser("report", help="work with run reports")
    report_sub = report.add_subparsers(dest="report_command", required=True, parser_class=_Parser)
    merge = report_sub.add_parser(
        "merge", help="merge the reports of many shards (workers, pods) into one JSON + HTML report"
    )
    merge.add_argument("inputs", nargs="+", metavar="DIR", help="report JSON files, or folders holding them")
    merge.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="a folder (report.json, report.html) or a .json path",
    )
    merge.add_argument(
        "--allow-mixed", action="store_true", help="merge shards of different configs or versions anyway"
    )
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
        if args.command == "report":
            return _cmd_report_merge(args)
    except AgentError as exc:
        return _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        return EXIT_OK
    return EXIT_CONFIG


def _load(path: str, *, decode_tokens: bool = False) -> AgentConfig:
    from bot.agent import check_media, check_tokens, load_config

    cfg = load_config(path)
    check_tokens(cfg, decode=decode_tokens)
    check_media(cfg)
    return cfg


def _cmd_report_merge(args: argparse.Namespace) -> int:
    """Exit 0 merged; 6 merged, but shards are missing or failed; 2 nothing to merge or mixed."""
    from bot.agent import EXIT_INCOMPLETE, merge_reports, write_merged

    merged = merge_reports(args.inputs, allow_mixed=args.allow_mixed)
    try:
        json_path, html_path = write_merged(merged, args.output)
    except OSError as exc:
        raise ConfigError(f"cannot write the merged report to {args.output}: {exc.strerror or exc}") from None
    s = merged.data["summary"]
    shards = merged.data["meta"]
    print(
        f"merged {shards['merged_shards']} of {shards['shard_count']} shard(s): {s['bots']} bots, "
        f"{s['joined']} joined, join p99 {s['join_latency_ms']['p99']} ms -> {json_path}, {html_path}"
    )
    if merged.complete:
        return EXIT_OK
    problems = [f"shard {i} missing" for i in merged.missing] + [
        f"{f['file']}: {f['error']}" for f in merged.failed
    ]
    sys.stderr.write(f"{PROG}: warning: incomplete: {'; '.join(problems)}\n")
    return EXIT_INCOMPLETE


def _cmd_check(args: argparse.Namespace) -> int:
    cfg = _load(args.config, decode_tokens=True)
    print(f"{args.config}: ok ({len(cfg.bots)} bot(s), {cfg.mode} mode)")
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    """Run the config's bots here, or (``workers`` > 1) in worker processes of this one."""
    from bot.agent import (
        Agent,
        Ops,
        Supervisor,
        SwarmPlan,
        configure_logging,
        die_with_parent,
        loop_factory,
        raise_fd_limit,
        resolve_workers,
        tune_gc,
    )
    from bot.webrtc import fast_path_gauges, log_fast_paths

    plan = SwarmPlan.from_env(os.environ)  # set when this process is a worker of a swarm
    if plan is not None and not die_with_parent(plan.parent):
        return EXIT_OK  # the parent is already gone: nothing to run for
    cfg = _load(args.config)
    factory = loop_factory(cfg.event_loop)
    configure_logging(args.log_format or cfg.log_format, args.log_level or cfg.log_level)
    workers = 1 if plan is not None else resolve_workers(cfg)
    raise_fd_limit(-(-len(cfg.my_bots()) // workers))
    tune_gc()
    runner: Agent | Supervisor
    if workers > 1:
        argv = ["run", args.config]
        for flag, value in (("--log-format", args.log_format), ("--log-level", args.log_level)):
            if value:
                argv += [flag, value]
        runner = Supervisor(cfg, workers, argv)
        code = _run_with_signals(runner.run(), runner.stop, factory)
    else:
        ops = Ops.for_process(cfg, plan, os.environ)
        # once per process, before any bot: a fast path off is a CPU cliff, said at WARNING
        ops.set_fast_paths(fast_path_gauges(log_fast_paths(structlog.get_logger("bot.agent"))))
        agent = runner = Agent(
            cfg, plan=plan, events=ops.events, on_server=lambda s: ops.add_registry(s.registry)
        )

        def on_signal() -> None:
            ops.signal_received("SIGTERM")
            agent.stop()

        try:
            code = _run_with_signals(ops.run(agent.run()), on_signal, factory)
        except OSError as exc:  # the metrics port is taken
            raise ConfigError(
                f"cannot serve metrics ({exc.strerror or exc}): choose another metrics_port"
            ) from None
    failure = runner.first_failure()
    if code != EXIT_OK and failure:
        _fail(failure, code)
    return code


def _run_with_signals(coro, on_first_signal, loop_factory=None) -> int:  # type: ignore[no-untyped-def]
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
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(main())
    except asyncio.CancelledError:
        return EXIT_OK


def _serve_options(args: argparse.Namespace) -> dict[str, object]:
    """ICE servers, data directory, grace period and detector settings of ``serve``."""
    from dataclasses import replace

    from bot.proto import IceServer
    from bot.server import BandwidthSettings

    ice: list[IceServer] = []
    if args.stun:
        if not args.stun.startswith("stun:"):
            raise ConfigError(f"--stun {args.stun!r} must be a stun: URL (e.g. stun:stun.example.org:3478)")
        ice.append(IceServer(urls=args.stun))
    if args.turn:
        if not args.turn.startswith(("turn:", "turns:")):
            raise ConfigError(f"--turn {args.turn!r} must be a turn: or turns: URL (e.g. turn:10.0.0.1:3478)")
        if not args.turn_username or not args.turn_credential:
            raise ConfigError(
                "--turn needs --turn-username and --turn-credential (or ENX_TURN_USERNAME/_CREDENTIAL)"
            )
        ice.append(IceServer(urls=args.turn, username=args.turn_username, credential=args.turn_credential))
    grace = args.reconnect_grace
    if grace is None:
        value = os.environ.get("ENX_RECONNECT_GRACE_S") or "10"
        try:
            grace = float(value)
        except ValueError:
            raise ConfigError(f"$ENX_RECONNECT_GRACE_S must be a number of seconds, not {value!r}") from None
    if grace < 0:
        raise ConfigError(f"--reconnect-grace {grace} must be 0 or more seconds")
    bandwidth = BandwidthSettings(enabled=not args.no_bw_detector)
    try:
        if args.bw_window is not None:
            tick = min(bandwidth.tick_s, args.bw_window)
            recent = min(bandwidth.recent_s, args.bw_window)
            bandwidth = replace(bandwidth, window_s=args.bw_window, tick_s=tick, recent_s=recent)
        if args.bw_loss_pct is not None:
            restore = min(bandwidth.loss_restore_pct, args.bw_loss_pct)
            bandwidth = replace(bandwidth, loss_low_pct=args.bw_loss_pct, loss_restore_pct=restore)
        if args.bw_delay_ms is not None:
            restore = min(bandwidth.delay_restore_ms, args.bw_delay_ms)
            bandwidth = replace(bandwidth, delay_low_ms=args.bw_delay_ms, delay_restore_ms=restore)
    except ValueError as exc:
        raise ConfigError(f"bandwidth detector: {exc}") from None
    return {
        "data_dir": args.data_dir,
        "ice_servers": ice,
        "reconnect_grace_s": grace,
        "bandwidth": bandwidth,
        "lean_intake": not args.full_intake,
    }


def _cmd_serve(args: argparse.Namespace) -> int:
    from bot.agent import configure_logging
    from bot.server import StoreError, serve
    from bot.webrtc import log_fast_paths

    if not args.app_id or not args.app_key:
        raise ConfigError("no app id/key: set ENX_APP_ID and ENX_APP_KEY, or pass --app-id and --app-key")
    if (size := len(args.app_key.encode())) < MIN_APP_KEY_BYTES:
        raise ConfigError(
            f"the app key (--app-key or ENX_APP_KEY) is {size} bytes; the server signs tokens with it "
            f"(HS256) and needs at least {MIN_APP_KEY_BYTES}: e.g. "
            "ENX_APP_KEY=$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
        )
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port} is not a TCP port (0-65535)")
    options = _serve_options(args)
    configure_logging(args.log_format, args.log_level)
    from bot.agent import raise_fd_limit, tune_gc

    raise_fd_limit(0)
    tune_gc()
    log_fast_paths(structlog.get_logger("bot.server"))
    stop = asyncio.Event()

    async def run() -> int:
        task = asyncio.create_task(
            serve(
                args.host,
                args.port,
                args.app_id,
                args.app_key,
                create_room=args.create_room,
                **options,  # type: ignore[arg-type]
            )
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
    except StoreError as exc:
        raise ConfigError(f"{exc}: choose another --data-dir (or ':memory:')") from None
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc}): choose another --port"
        ) from None


def _cmd_token(args: argparse.Namespace) -> int:
    from bot.agent import RestTokens

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
