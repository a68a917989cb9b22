"""The `xes` command: `serve`, `call`, `match`, `turn-config`."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import secrets
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .server.relay import BuiltinRelay

__all__ = ["main", "build_parser"]


def _add_serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=os.environ.get("XES_HOST", "127.0.0.1"),
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=int(os.environ.get("XES_PORT", "8000")),
                   help="port for the page and the WebSocket (default 8000; 0 picks a free one)")
    p.add_argument("--max-peers", type=int, default=8,
                   help="largest room, a full mesh (default 8; hosts may lower it, not raise it)")
    p.add_argument("--match-relax", type=float, default=10.0, metavar="SECONDS",
                   help="after this wait, a stranger with tags or a language accepts anyone (default 10)")
    p.add_argument("--stun-url", action="append", default=[], metavar="URL",
                   help="a STUN server for clients, e.g. stun:turn.example.org:3478 (repeatable)")
    p.add_argument("--turn-url", action="append", default=[], metavar="URL",
                   help="a TURN server URL, e.g. turn:turn.example.org:3478?transport=udp (repeatable)")
    p.add_argument("--turn-host", metavar="NAME",
                   help="a coturn set up by `xes turn-config`: hands out turn:NAME:3478 over UDP "
                        "and TCP and turns:NAME:443 (TLS) together, so browsers behind firewalls "
                        "that drop UDP still reach it (combines with --turn-url)")
    p.add_argument("--turn-port", type=int, default=3478, metavar="PORT",
                   help="with --turn-host: the plain TURN port, UDP and TCP (default 3478)")
    p.add_argument("--turn-tls-port", type=int, default=443, metavar="PORT",
                   help="with --turn-host: the TURN over TLS port (default 443; 0: no turns: URL, "
                        "for a relay without a certificate)")
    p.add_argument("--turn-secret-file", type=Path, metavar="PATH",
                   help="file holding coturn's static-auth-secret (or set XES_TURN_SECRET)")
    p.add_argument("--turn-secret", metavar="SECRET",
                   help="the secret itself; visible to every user in `ps`, prefer the file or env")
    p.add_argument("--no-turn", action="store_true",
                   help="do not start the built-in relay (a local coturn, started when no --turn-url "
                        "is given and coturn is installed); strangers then meet only if both allow "
                        "a direct connection")
    p.add_argument("--relay-port", type=int, default=0, metavar="PORT",
                   help="UDP and TCP port of the built-in relay (default: a free one)")
    p.add_argument("--turn-ttl", type=int, default=3600, metavar="SECONDS",
                   help="lifetime of TURN credentials (default 3600; clients refresh before expiry)")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="another origin whose pages may connect, e.g. https://xes.example.org")
    p.add_argument("--rate-per-second", type=float, default=100.0,
                   help="messages per second a connection may send, sustained (default 100)")
    p.add_argument("--rate-burst", type=int, default=400,
                   help="messages a connection may send at once before the rate applies (default 400)")
    p.add_argument("--event-loop", choices=("uvloop", "asyncio"), default="uvloop",
                   help="the event loop to serve on (default uvloop: less CPU per message)")
    p.add_argument("--heartbeat", type=float, default=10.0, metavar="SECONDS",
                   help="ping a silent connection after this long; drop it if no pong as long again")
    p.add_argument("--resume-grace", type=float, default=20.0, metavar="SECONDS",
                   help="keep a session whose socket was lost this long for it to resume; "
                        "room-mates still hearing it extend it (default 20)")
    p.add_argument("--resume-cap", type=float, default=120.0, metavar="SECONDS",
                   help="never keep a lost session longer than this after its socket was lost, "
                        "whatever its room-mates report (default 120)")
    p.add_argument("--replay-messages", type=int, default=256, metavar="N",
                   help="messages kept per session to replay on resume (default 256)")
    p.add_argument("--replay-bytes", type=int, default=262_144, metavar="BYTES",
                   help="bytes of messages kept per session to replay on resume (default 262144, "
                        "at least 131072: two messages of the largest size)")
    p.add_argument("--room-wait", type=float, default=120.0, metavar="SECONDS",
                   help="after a crash, how long a saved room keeps its host's seat and waits "
                        "for its people before it is forgotten (default 120)")
    p.add_argument("--debug", action="store_true",
                   help="log every message, with SDP, candidates and addresses (off: none of them; "
                        "resume tokens never)")
    _add_storage_arguments(p)
    p.add_argument("--identity-secret-file", type=Path, metavar="PATH",
                   help="the secret identities are hashed with (default DATA_DIR/identity-secret, "
                        "made on first start); every node sharing a database needs the same one")
    p.add_argument("--redis", metavar="URL", default=os.environ.get("XES_REDIS_URL"),
                   help="redis://host:port/db: run as one node of a cluster sharing rooms and "
                        "sessions through this Redis (or set XES_REDIS_URL); every node needs the "
                        "same --database (PostgreSQL) and --identity-secret-file; /healthz "
                        "answers 503 while Redis is unreachable")
    p.add_argument("--node-id", metavar="ID",
                   help="this node's id in the cluster, on /metrics and in the logs (default: a "
                        "random one per start; with --workers, the workers' ids start with it)")
    p.add_argument("--new-identities-per-day", type=int, default=5, metavar="N",
                   help="new identities one network may make per day (default 5)")
    p.add_argument("--moderate-port", type=int, metavar="PORT",
                   help="serve the moderators' page /moderate on this port (0: a free one; "
                        "default: not served). Keep it off the public internet if you can")
    p.add_argument("--behind-tls", action="store_true",
                   help="a TLS proxy is in front: moderators' session cookies are marked Secure")
    p.add_argument("--trust-forwarded-for", action="store_true",
                   help="behind a reverse proxy: take the client's address from the last "
                        "X-Forwarded-For entry (for the new-identity limit per network only)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="run N server processes on this one port (SO_REUSEPORT), sharing state "
                        "through --redis, under a parent that restarts any that dies (default 1)")
    p.add_argument("--reuse-port", action="store_true",
                   help="listen with SO_REUSEPORT, so that other xes serve processes of the same "
                        "user may listen on the same port (--workers does this for you)")
    p.add_argument("--metrics-port", type=int, metavar="PORT",
                   help="serve /metrics (Prometheus) and /healthz on this port (0: a free one; "
                        "default: not served); with --workers, worker i on PORT + i")
    p.add_argument("--metrics-host", default="127.0.0.1", metavar="ADDRESS",
                   help="address of --metrics-port (default 127.0.0.1, whatever --host is)")
    p.add_argument("--log-format", choices=("text", "json"),
                   default=os.environ.get("XES_LOG_FORMAT", "text"),
                   help="log lines as text or as one JSON object each (default text); "
                        "addresses and message contents are never logged (but with --debug)")


def _add_storage_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=os.environ.get("XES_DATA_DIR"), metavar="DIR",
                   help="where XES keeps its data: the rules of protected rooms (so that a restart "
                        "or a crash never reopens a room weaker), the sessions across a restart, "
                        "the SQLite database (xes.sqlite3, WAL) and the identity secret (default: "
                        "$XES_DATA_DIR, else systemd's $STATE_DIRECTORY, else $XDG_STATE_HOME/xes "
                        "or ~/.local/state/xes); one server per directory")
    p.add_argument("--database", metavar="URL", default=os.environ.get("XES_DATABASE"),
                   help="postgresql://... to keep safety data in PostgreSQL (several nodes) "
                        "instead of SQLite in --data-dir, or sqlite:PATH for SQLite elsewhere "
                        "(or set XES_DATABASE)")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; the peer's options are loaded only when ``command`` needs them, so
    `xes serve` never pays for importing aiortc."""
    parser = argparse.ArgumentParser(
        prog="xes", description="XES: peer-to-peer voice chat. The server signals; audio goes peer to peer.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the signalling server and serve the web client")
    _add_serve_arguments(serve)
    for name, help_text, adder in (
        ("call", "join a room from the terminal (needs the peer extra)", "add_call_arguments"),
        ("match", "talk to a stranger from the terminal (needs the peer extra)", "add_match_arguments"),
    ):
        sub = commands.add_parser(name, help=help_text)
        try:
            if command != name:
                raise ImportError
            peer_cli = importlib.import_module("xes.peer.cli")
        except ImportError:
            sub.add_argument("rest", nargs=argparse.REMAINDER)
        else:
            getattr(peer_cli, adder)(sub)
    moderator = commands.add_parser("moderator", help="manage moderators' accounts")
    moderator_commands = moderator.add_subparsers(dest="moderator_command", required=True, metavar="ACTION")
    add = moderator_commands.add_parser("add", help="create a moderator (or set a new password)")
    add.add_argument("name", help="the moderator's login name")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from standard input instead of asking twice")
    _add_storage_arguments(add)
    turn = commands.add_parser("turn-config", help="print a hardened coturn configuration for this server")
    try:
        from . import turnconfig
    except ImportError:  # pragma: no cover - shipped with xes
        pass
    else:
        turnconfig.add_arguments(turn)
    return parser


def _read_turn_secret(args: argparse.Namespace) -> bytes | None:
    if args.turn_secret_file is not None:
        return Path(args.turn_secret_file).read_text().strip().encode()
    if os.environ.get("XES_TURN_SECRET"):
        return os.environ["XES_TURN_SECRET"].strip().encode()
    if args.turn_secret:
        logging.getLogger("xes").warning(
            "--turn-secret is visible to every local user in `ps`; "
            "prefer --turn-secret-file or XES_TURN_SECRET")
        return str(args.turn_secret).encode()
    return None


def _turn_urls(args: argparse.Namespace) -> list[str]:
    """Every TURN URL the operator gave: --turn-url as given, then --turn-host's three.

    Raises:
        ValueError: If --turn-host or its ports are malformed.
    """
    urls = list(args.turn_url)
    if args.turn_host is not None:
        from .turnconfig import turn_urls_for_host

        tls_port = args.turn_tls_port if args.turn_tls_port != 0 else None
        urls += [url for url in turn_urls_for_host(args.turn_host, args.turn_port, tls_port)
                 if url not in urls]
    return urls


def _start_relay(args: argparse.Namespace) -> tuple[BuiltinRelay | None, str]:
    """The built-in relay, if this server should run one, and the start-up line about the relay.

    Raises:
        SystemExit: coturn is installed but failed to start (status 1, the reason printed).
    """
    from .server.relay import RelayFailed, RelayUnavailable, start_builtin_relay

    without = ("Strangers can talk only if both allow a direct connection, which shows each "
               "their IP address; 'Hide my IP' is unavailable.")
    if args.turn_url:
        return None, f"Relay: {', '.join(args.turn_url)} (calls with strangers go through it)."
    if args.no_turn:
        return None, f"Relay: none (--no-turn). {without}"
    turnserver = shutil.which("turnserver")
    if turnserver is None:
        return None, f"Relay: none (coturn is not installed: apt-get install coturn). {without}"
    try:
        relay = start_builtin_relay(args.host, turnserver=turnserver, port=args.relay_port)
    except RelayFailed as exc:
        print(f"xes serve: the built-in relay failed: {exc}\n"
              "(run with --no-turn to serve without a relay)", file=sys.stderr)
        raise SystemExit(1) from None
    except RelayUnavailable as exc:
        return None, f"Relay: none ({exc}). {without}"
    return relay, (f"Relay: built-in coturn at {relay.urls[0]} with a fresh secret "
                   "(calls with strangers go through it).")


def _serve(args: argparse.Namespace, argv: list[str]) -> int:
    from .core.signalling import CoreSettings
    from .core.turn import IceSettings
    from .server.config import ServerSettings
    from .server.logs import configure_logging
    from .server.store import default_data_dir
    from .server.workers import SUPERVISOR_ENV

    if args.workers < 1:
        print("xes serve: --workers takes a number of processes, 1 or more", file=sys.stderr)
        return 2
    if args.workers > 1 and not args.redis:
        print(f"xes serve: --workers {args.workers} needs --redis URL (or XES_REDIS_URL): the "
              "workers share their rooms, sessions and queue through Redis", file=sys.stderr)
        return 2
    node_id = args.node_id or secrets.token_hex(4)
    configure_logging(args.log_format, args.debug,
                      node_id if args.workers == 1 else f"{node_id}-parent")
    try:
        args.turn_url = _turn_urls(args)
    except ValueError as exc:
        print(f"xes serve: {exc}", file=sys.stderr)
        return 2
    if args.no_turn and args.turn_url:
        print("xes serve: --no-turn and --turn-url/--turn-host contradict each other",
              file=sys.stderr)
        return 2
    if args.workers > 1:
        return _supervise(args, argv, node_id)
    supervisor = os.environ.pop(SUPERVISOR_ENV, None)
    if supervisor is not None and not _die_with(int(supervisor)):
        return 1
    relay: BuiltinRelay | None = None
    try:
        turn_urls, turn_secret = tuple(args.turn_url), _read_turn_secret(args)
        relay, relay_line = _start_relay(args)
        if relay is not None:
            turn_urls, turn_secret = relay.urls, relay.secret
        ice = IceSettings(stun_urls=tuple(args.stun_url), turn_urls=turn_urls,
                          turn_secret=turn_secret, ttl_seconds=args.turn_ttl)
        settings = ServerSettings(
            host=args.host, port=args.port,
            core=CoreSettings(max_peers=args.max_peers, match_relax_seconds=args.match_relax, ice=ice,
                              restore_seconds=args.room_wait,
                              resume_grace_seconds=args.resume_grace,
                              resume_cap_seconds=args.resume_cap,
                              replay_messages=args.replay_messages,
                              replay_bytes=args.replay_bytes,
                              new_identities_per_network=args.new_identities_per_day),
            allowed_origins=frozenset(o.rstrip("/") for o in args.allow_origin),
            rate_per_second=args.rate_per_second, rate_burst=args.rate_burst,
            heartbeat_seconds=args.heartbeat, debug=args.debug,
            data_dir=args.data_dir if args.data_dir is not None else default_data_dir(),
            database=args.database,
            identity_secret_file=args.identity_secret_file,
            moderate_host=args.host if args.moderate_port is not None else None,
            moderate_port=args.moderate_port, behind_tls=args.behind_tls,
            trust_forwarded_for=args.trust_forwarded_for,
            redis_url=args.redis or None, node_id=node_id, reuse_port=args.reuse_port,
            metrics_host=args.metrics_host, metrics_port=args.metrics_port)
    except (ValueError, OSError) as exc:
        if relay is not None:
            relay.stop()
        print(f"xes serve: {exc}", file=sys.stderr)
        return 2
    print(relay_line, flush=True)
    try:
        with asyncio.Runner(loop_factory=_loop_factory(args.event_loop)) as runner:
            return runner.run(_run_server(settings))
    finally:
        if relay is not None:
            relay.stop()


def _die_with(supervisor: int) -> bool:
    """A worker of `--workers`: stop (SIGTERM) when the parent dies, even by SIGKILL; False if
    it is already gone. Its signals were blocked by the parent, which waits for them itself."""
    from .server.relay import die_with_parent

    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD})
    die_with_parent()
    return os.getppid() == supervisor


def _supervise(args: argparse.Namespace, argv: list[str], node_id: str) -> int:
    """`xes serve --workers N`: the parent (xes.server.workers). Returns the exit status."""
    from .server.identity import load_or_create_secret
    from .server.relay import RelayUnavailable
    from .server.storage import open_database
    from .server.store import default_data_dir
    from .server.workers import Supervisor, reserve_port, worker_arguments, worker_command

    try:
        reservation = reserve_port(args.host, args.port)
    except OSError as exc:
        print(f"xes serve: cannot listen on {args.host}:{args.port}: {exc.strerror}",
              file=sys.stderr)
        return 1
    port = reservation.getsockname()[1]
    data_dir = args.data_dir if args.data_dir is not None else default_data_dir()
    shared = ["serve", *argv[1:], "--workers", "1", "--reuse-port", "--port", str(port)]
    relay = None
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        secret_file = args.identity_secret_file or data_dir / "identity-secret"
        load_or_create_secret(secret_file)  # made once, before N workers race to make it
        database = args.database or f"sqlite:{data_dir / 'xes.sqlite3'}"
        open_database(database, data_dir).close()  # migrated once, before the workers open it
        shared += ["--identity-secret-file", str(secret_file), "--database", database]
        relay, relay_line = _start_relay(args)
        if relay is not None:  # one relay for all: its URLs and secret, in a file only we read
            secret = relay.run_dir / "secret"
            secret.touch(mode=0o600)
            secret.write_bytes(relay.secret)
            shared += [arg for url in relay.urls for arg in ("--turn-url", url)]
            shared += ["--turn-secret-file", str(secret)]
        elif not args.turn_url:
            shared.append("--no-turn")
    except (ValueError, OSError, RelayUnavailable) as exc:
        if relay is not None:
            relay.stop()
        print(f"xes serve: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the database: unreachable, or not ours
        print(f"xes serve: cannot open the database: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    # From here the signals wait for Supervisor.run to take them (the workers unblock theirs).
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD})
    supervisor = Supervisor(worker_command(), shared, args.workers, data_dir, node_id,
                            worker_arguments(args), sys.stdout)
    try:
        print(relay_line, flush=True)
        if not supervisor.start():
            print("xes serve: a worker did not start (its output is above)", file=sys.stderr)
            return 1
        print(f"XES is running with {args.workers} workers. Open http://{_shown(args.host)}:{port}/ "
              "in your browser.", flush=True)
        supervisor.run()
        supervisor.stop()
    finally:
        reservation.close()
        if relay is not None:
            relay.stop()
    print("XES stopped.", flush=True)
    return 0


def _shown(host: str) -> str:
    """The address to print for a server listening on ``host``."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"[{shown}]" if ":" in shown else shown


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop `xes serve` runs on: asyncio's own, or uvloop's (the same API in C over
    libuv: the profile's event-loop and socket-transport share shrinks)."""
    if name == "uvloop":
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory
    return None


async def _run_server(settings: object) -> int:
    from .server.app import XesServer
    from .server.config import ServerSettings

    assert isinstance(settings, ServerSettings)
    server = XesServer(settings)
    from .server.store import DataDirBusy

    try:
        port = await server.start()
    except (DataDirBusy, ValueError) as exc:
        print(f"xes serve: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = (f"use the data directory {exc.filename}" if exc.filename is not None
                 else f"listen on {settings.host}:{settings.port}")
        print(f"xes serve: cannot {where}: {exc.strerror}", file=sys.stderr)
        return 1
    except Exception as exc:  # the database or Redis: unreachable, or not ours
        what = "reach Redis" if type(exc).__module__.startswith("redis") else "open the database"
        print(f"xes serve: cannot {what}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    shown = _shown(settings.host)
    if server.metrics_port is not None:
        print(f"Metrics: http://{_shown(settings.metrics_host)}:{server.metrics_port}/metrics",
              flush=True)
    if server.moderate_port is not None:
        print(f"Moderators: http://{shown}:{server.moderate_port}/moderate", flush=True)
    print(f"XES is running. Open http://{shown}:{port}/ in your browser.", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()
    print("XES stopped.", flush=True)
    return 0


def _moderator(args: argparse.Namespace) -> int:
    """`xes moderator add NAME`: store a scrypt hash of a new password (never the password)."""
    import getpass
    import secrets
    import time

    from .core.access import SALT_BYTES, hash_password
    from .server.storage import open_database
    from .server.store import default_data_dir

    if not 1 <= len(args.name) <= 64 or not args.name.isprintable():
        print("xes moderator: a name is 1-64 printable characters", file=sys.stderr)
        return 2
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"Password for {args.name}: ")
        if getpass.getpass("Again: ") != password:
            print("xes moderator: the passwords differ", file=sys.stderr)
            return 2
    if len(password) < 12:
        print("xes moderator: use a password of at least 12 characters", file=sys.stderr)
        return 2
    salt = secrets.token_bytes(SALT_BYTES)
    hashed = hash_password(password, salt)
    database = open_database(args.database, args.data_dir or default_data_dir())
    try:
        database.add_moderator(args.name, hashed.salt, hashed.digest, time.time())
    finally:
        database.close()
    print(f"Moderator {args.name} can now log in at /moderate.")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    if args.command == "serve":
        return _serve(args, argv)
    if args.command == "moderator":
        return _moderator(args)
    if args.command in ("call", "match"):
        try:
            peer_cli = importlib.import_module("xes.peer.cli")
        except ImportError:
            print("xes: the Python peer needs aiortc: install the peer extra"
                  " (from a clone: pip install '.[peer]')", file=sys.stderr)
            return 2
        runner = peer_cli.run_call if args.command == "call" else peer_cli.run_match
        return int(runner(args))
    from . import turnconfig
    return int(turnconfig.run(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
