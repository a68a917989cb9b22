"""``xes call`` and ``xes match``: the Python peer from a terminal.

``src/xes/cli.py`` builds the ``xes`` command and imports this module lazily; importing it
raises ImportError when aiortc is not installed (without importing aiortc, so ``xes serve``
stays fast), and the ``xes`` command then says to install the ``peer`` extra. It also runs
standalone: ``python -m xes.peer.cli call <room link or id> ...``.

Exit status: 0 after a clean leave (Ctrl-C, SIGTERM, ``--duration``, or the match ended with
``--once``); 1 for a runtime failure (server unreachable, join refused, connection lost, audio
file unreadable); 2 for a wrong room link or bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import logging
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TextIO, TypeVar

if importlib.util.find_spec("aiortc") is None:  # checked without importing aiortc (slow)
    raise ImportError("the Python peer needs aiortc: install the peer extra"
                      " (from a clone: pip install '.[peer]')", name="aiortc")

if TYPE_CHECKING:
    from aiortc import MediaStreamTrack

    from xes.peer.audio import WavRecorder
    from xes.peer.events import Event
    from xes.peer.peer import Peer, RemotePeer
    from xes.protocol.messages import Rules

__all__ = ["add_call_arguments", "run_call", "add_match_arguments", "run_match", "main"]

_T = TypeVar("_T")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def _add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", metavar="URL",
                        help="the XES server, e.g. http://127.0.0.1:8000 (default: the room link's "
                             "own server, else $XES_SERVER, else http://127.0.0.1:8000)")
    parser.add_argument("--name", default="python", help="the name others see (default: python)")
    parser.add_argument("--play", metavar="FILE",
                        help="send this audio file (WAV, MP3, Ogg...) instead of the microphone")
    parser.add_argument("--loop", action="store_true",
                        help="with --play: start the file over at its end, forever")
    parser.add_argument("--no-mic", action="store_true",
                        help="send nothing when no --play file is given (only listen)")
    parser.add_argument("--record", metavar="FILE",
                        help="record what you hear to a WAV file; put {peer} or {name} in FILE for "
                             "one file per member (e.g. 'call-{name}-{peer}.wav'), else all "
                             "members are mixed into one")
    parser.add_argument("--relay", action="store_true",
                        help="send everything through the server's TURN relay, so no member learns "
                             "your address (needs a server with TURN)")
    parser.add_argument("--allow-loopback", action=argparse.BooleanOptionalAction, default=None,
                        help="also offer 127.0.0.1 as an address (aiortc leaves it out); default: "
                             "on when the server is on a loopback address")
    parser.add_argument("--connect-timeout", type=float, default=15.0, metavar="SECONDS",
                        help="report a link as failed when not connected within this (default 15)")
    parser.add_argument("--duration", type=float, metavar="SECONDS",
                        help="leave after this many seconds (default: stay until Ctrl-C)")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more (-v: links and signalling; -vv: aiortc too)")
    parser.add_argument("--chat", action="store_true",
                        help="send each line typed on standard input as a chat message (chat "
                             "from the others is always printed)")
    parser.add_argument("--identity-file", type=Path, metavar="FILE",
                        help="keep this peer's pseudonymous identity (an ECDSA P-256 key, PEM) in "
                             "FILE, made on first use; without it each run is a new identity")


def add_call_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``xes call``'s arguments to `parser`."""
    parser.description = ("Join an XES room as a full-mesh member: send the microphone or a "
                          "file, hear (and record) everyone, Ctrl-C to leave.")
    parser.add_argument("room", metavar="ROOM",
                        help="a room link (http://host:port/r/<room id>) or a room id")
    parser.add_argument("--password", help="the room's password, if it has one")
    _add_common_arguments(parser)


def add_match_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``xes match``'s arguments to `parser`."""
    parser.description = ("Talk to a stranger through the matchmaking queue; when they leave, "
                          "queue again (or exit with --once). Ctrl-C to leave.")
    parser.add_argument("--tags", nargs="+", default=[], metavar="TAG",
                        help="interests; strangers sharing one are matched first")
    parser.add_argument("--language", help="a language to prefer, e.g. en")
    parser.add_argument("--once", action="store_true",
                        help="exit when the first match ends instead of queueing again")
    parser.add_argument("--allow-direct", action="store_true",
                        help="consent to a direct connection, which shows the stranger your IP "
                             "address (a server with no relay pairs only those who consent)")
    parser.add_argument("--text-only", action="store_true",
                        help="a text chat without audio: no microphone is opened, each line on "
                             "standard input is sent as a chat message; you meet text-only "
                             "strangers and those who accept text")
    parser.add_argument("--accept-text", action="store_true",
                        help="also meet text-only strangers (that call is a text chat: your "
                             "audio is not sent)")
    _add_common_arguments(parser)


def run_call(args: argparse.Namespace) -> int:
    """Run ``xes call`` with parsed `args`; returns the exit status."""
    return _run(args, matching=False)


def run_match(args: argparse.Namespace) -> int:
    """Run ``xes match`` with parsed `args`; returns the exit status."""
    return _run(args, matching=True)


def _run(args: argparse.Namespace, *, matching: bool) -> int:
    command = "xes match" if matching else "xes call"
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(name)s: %(message)s")
    if args.verbose < 2:
        for noisy in ("aiortc", "aioice", "picows"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    session = _Session(args, matching=matching, command=command)
    return asyncio.run(session.run())


class _Session:
    """One run of the command: open audio, connect, join or match, print events, leave."""

    def __init__(self, args: argparse.Namespace, *, matching: bool, command: str) -> None:
        self.args = args
        self.matching = matching
        self.command = command
        self.out: TextIO = sys.stdout
        self.stop = asyncio.Event()
        self.partner_gone = asyncio.Event()
        self.mixed: WavRecorder | None = None
        self.per_peer: dict[str, WavRecorder] = {}

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def fail(self, text: str, status: int = EXIT_FAILURE) -> int:
        print(f"{self.command}: error: {text}", file=sys.stderr, flush=True)
        return status

    async def run(self) -> int:
        from xes.peer.errors import AudioError, JoinRefused, PeerError
        from xes.peer.identity import PeerIdentity
        from xes.peer.links import resolve_room, websocket_url
        from xes.peer.peer import Peer

        args = self.args
        try:
            if self.matching:
                room_id = None
                server = args.server or os.environ.get("XES_SERVER") or "http://127.0.0.1:8000"
                ws_url = websocket_url(server)
            else:
                target = resolve_room(args.room, args.server)
                room_id, ws_url = target.room_id, target.ws_url
            if args.record and _per_peer_template(args.record):
                _check_template(args.record)
        except ValueError as error:  # RoomLinkError is one, and so is a bad --record pattern
            return self.fail(str(error), EXIT_USAGE)
        try:
            audio = self._open_audio()
            if args.record and not _per_peer_template(args.record):
                from xes.peer.audio import WavRecorder

                self.mixed = WavRecorder(args.record)
        except AudioError as error:
            return self.fail(str(error))

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.stop.set)
        if args.duration is not None:
            loop.call_later(args.duration, self.stop.set)

        identity = PeerIdentity.from_file(args.identity_file) if args.identity_file else None
        peer = Peer(ws_url, name=args.name, audio=audio, relay=True if args.relay else None,
                    allow_loopback=args.allow_loopback, connect_timeout=args.connect_timeout,
                    identity=identity)
        status = EXIT_OK
        printer: asyncio.Task[None] | None = None
        chatter: asyncio.Task[None] | None = None
        try:
            await peer.connect()
            self.say(f"connected to {ws_url} as {peer.id}")
            printer = asyncio.ensure_future(self._print_events(peer))
            if args.chat or (self.matching and args.text_only):
                chatter = asyncio.ensure_future(self._chat_from_stdin(peer))
            if self.matching:
                status = await self._match_loop(peer)
            else:
                assert room_id is not None
                joining = asyncio.ensure_future(peer.join(room_id, password=args.password))
                await self._until_stopped(joining)
                if joining.done():
                    joining.result()  # raises JoinRefused and friends
                    await self._until_stopped(None)
        except JoinRefused as error:
            status = self.fail(f"the server refused to let you in: {error} ({error.code})")
        except PeerError as error:
            status = self.fail(str(error))
        finally:
            if chatter is not None:
                chatter.cancel()
            was_in_room = peer.room is not None
            await peer.close()
            if printer is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(printer, 2)
            await self._stop_recorders()
            if was_in_room and status == EXIT_OK:
                self.say("left the room")
        return status

    async def _until_stopped(self, task: asyncio.Future[_T] | None) -> None:
        """Wait for `task` (if any), Ctrl-C, --duration, or the connection's end."""
        stopper = asyncio.ensure_future(self.stop.wait())
        waiters: set[asyncio.Future[_T] | asyncio.Future[Literal[True]]] = {stopper}
        if task is not None:
            waiters.add(task)
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if task is not None and not task.done():
                task.cancel()

    async def _match_loop(self, peer: Peer) -> int:
        args = self.args
        while not self.stop.is_set():
            self.partner_gone.clear()
            matching = asyncio.ensure_future(peer.match(
                tags=args.tags, language=args.language, direct=args.allow_direct,
                text_only=args.text_only, accept_text=args.accept_text))
            await self._until_stopped(matching)
            if not matching.done() or matching.cancelled():
                return EXIT_OK
            matching.result()
            gone = asyncio.ensure_future(self.partner_gone.wait())
            await self._until_stopped(gone)
            if self.stop.is_set():
                return EXIT_OK
            await peer.leave()
            if args.once:
                self.stop.set()
                return EXIT_OK
            self.say("looking for someone new")
        return EXIT_OK

    def _open_audio(self) -> MediaStreamTrack | None:
        from xes.peer.audio import open_file_source, open_microphone

        if self.matching and self.args.text_only:
            self.say("text only: no audio either way; type a line and press Enter to send it")
            return None
        if self.args.play:
            track = open_file_source(self.args.play, loop=self.args.loop)
            self.say(f"sending {self.args.play}" + (" (looped)" if self.args.loop else ""))
            return track
        if self.args.no_mic:
            self.say("sending nothing (listening only)")
            return None
        microphone = open_microphone()
        if microphone is None:
            self.say("no microphone found: listening only (use --play FILE to send a file)")
        else:
            self.say("sending the microphone")
        return microphone

    async def _chat_from_stdin(self, peer: Peer) -> None:
        """Send each line of standard input as a chat message, until it ends."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        try:
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        except ValueError:  # a regular file: not a stream to wait on
            self.say("cannot read chat from standard input (not a terminal or a pipe)")
            return
        try:
            while line := await reader.readline():
                text = line.decode(errors="replace").strip()
                if not text:
                    continue
                try:
                    sent = peer.send_chat(text)
                except ValueError as error:
                    self.say(f"not sent: {error}")
                    continue
                if sent == 0:
                    self.say("not sent: nobody is connected yet")
        finally:
            # The pipe transport made the descriptor non-blocking; a terminal shared with the
            # shell must not stay so after we exit.
            with contextlib.suppress(OSError, ValueError):
                os.set_blocking(sys.stdin.fileno(), True)

    async def _print_events(self, peer: Peer) -> None:
        async for event in peer.events():
            self._show(event, peer)

    def _show(self, event: Event, peer: Peer) -> None:
        from xes.peer import events as ev
        from xes.peer.connection import LinkState

        if isinstance(event, ev.Joined):
            room = event.room
            others = ", ".join(_who(member) for member in room.peers) or "nobody yet"
            what = "matched in room" if room.match else "joined room"
            self.say(f"{what} {room.id} as {room.you}; here: {others}")
            for member in room.peers:
                self._record(member)
        elif isinstance(event, ev.Queued):
            self.say("waiting for a stranger...")
        elif isinstance(event, ev.WaitingInLobby):
            self.say("waiting in the lobby for the host to let you in...")
        elif isinstance(event, ev.PeerJoined):
            self.say(f"peer joined: {_who(event.peer)}")
            self._record(event.peer)
        elif isinstance(event, ev.PeerLeft):
            self.say(f"peer left: {_who(event.peer)} ({event.reason})")
            self._unrecord(event.peer)
            if peer.room is not None and peer.room.match:
                self.partner_gone.set()
        elif isinstance(event, ev.LinkChanged):
            text = f"link to {_who(event.peer)}: {event.state.value}"
            if event.state is LinkState.CONNECTED and event.route is not None:
                text += f", {event.route.value}"
                if event.peer.candidate_types is not None:
                    local, remote = event.peer.candidate_types
                    text += f" ({local} -> {remote})"
            elif event.state is LinkState.FAILED and event.peer.link is not None:
                text += f" ({event.peer.link.failure})"
            self.say(text)
        elif isinstance(event, ev.AudioStarted):
            self.say(f"hearing {_who(event.peer)}")
        elif isinstance(event, ev.HostChanged):
            self.say(f"host is now {event.peer_id}")
        elif isinstance(event, ev.RulesChanged):
            self.say(f"room rules: {_describe_rules(event.rules)}")
        elif isinstance(event, ev.Knocked):
            self.say(f"{event.name} ({event.peer_id}) is waiting in the lobby")
        elif isinstance(event, ev.RoomLeft):
            if event.reason == "disconnected":
                # The server's grace ran out before we were back: a room is joined again by
                # the peer itself; a stranger is gone, so `xes match` looks for someone new.
                if self.command == "match":
                    self.say("the server lost this session while we were away; the call ended")
                    self.partner_gone.set()
                else:
                    self.say("the server lost this session while we were away; joining again")
            elif event.reason != "left":
                self.say(f"you were {event.reason} from the room")
                self.stop.set()
        elif isinstance(event, ev.Reconnecting):
            self.say(f"lost the server ({event.error}); reconnecting, the call goes on")
        elif isinstance(event, ev.Resumed):
            self.say(f"reconnected: the session goes on as {event.peer_id}")
        elif isinstance(event, ev.Reconnected):
            self.say(f"reconnected as {event.peer_id} (a new session)")
        elif isinstance(event, ev.ServerError):
            self.say(f"server refused {event.ref}: {event.message} ({event.code})")
        elif isinstance(event, ev.SafetyCodeChanged):
            if event.words is None:
                return
            self.say(f"safety code: {' '.join(event.words)} "
                     "(read it aloud; everyone should see the same words)")
            for member in peer.members.values():
                code = peer.link_code(member)
                if code is not None:
                    self.say(f"link code with {_who(member)}: {' '.join(code)}")
        elif isinstance(event, ev.SafetyAlert):
            self.say(f"WARNING: {event.text}; someone may be in the middle")
        elif isinstance(event, ev.ChatReceived):
            self.say(f"chat from {_who(event.peer)}: {event.text}")
        elif isinstance(event, ev.Disconnected):
            if event.error is not None:
                print(f"{self.command}: error: lost the server: {event.error}",
                      file=sys.stderr, flush=True)
            self.stop.set()

    def _record(self, member: RemotePeer) -> None:
        from xes.peer.audio import WavRecorder
        from xes.peer.errors import AudioError

        if not self.args.record:
            return
        if self.mixed is not None:
            self.mixed.add(member.id, member.listen())
            return
        path = _per_peer_template(self.args.record)
        assert path is not None
        filename = path.format(peer=member.id, name=_safe(member.name))
        try:
            recorder = WavRecorder(filename)
        except AudioError as error:
            self.say(f"not recording {_who(member)}: {error}")
            return
        recorder.add(member.id, member.listen())
        self.per_peer[member.id] = recorder
        self.say(f"recording {_who(member)} to {filename}")

    def _unrecord(self, member: RemotePeer) -> None:
        if self.mixed is not None:
            self.mixed.remove(member.id)
        recorder = self.per_peer.pop(member.id, None)
        if recorder is not None:
            asyncio.ensure_future(self._finish(recorder))

    async def _finish(self, recorder: WavRecorder) -> None:
        await recorder.stop()
        self.say(f"recorded {recorder.samples_written / 48000:.1f} s to {recorder.path}")

    async def _stop_recorders(self) -> None:
        recorders = list(self.per_peer.values()) + ([self.mixed] if self.mixed else [])
        self.per_peer.clear()
        for recorder in recorders:
            await self._finish(recorder)


def _who(member: RemotePeer) -> str:
    return f"{member.name} [{member.id}]" + (" (text only)" if member.text_only else "")


def _describe_rules(rules: Rules) -> str:
    """The rules in words, as the browser shows them: "locked, password set, max 4 people"."""
    words = [word for on, word in ((rules.locked, "locked"), (rules.password, "password set"),
                                    (rules.lobby, "lobby on")) if on]
    return ", ".join([*(words or ["open to anyone with the link"]), f"max {rules.max_peers} people"])


def _per_peer_template(record: str) -> str | None:
    return record if ("{peer}" in record or "{name}" in record) else None


def _check_template(template: str) -> None:
    try:
        sample = template.format(peer="p", name="n")
    except (KeyError, IndexError, ValueError) as error:
        raise ValueError(f"bad --record pattern {template!r}: only {{peer}} and {{name}} "
                            f"may appear in braces ({error})") from None
    parent = Path(sample).parent
    if not parent.is_dir():
        raise ValueError(f"--record: no directory {str(parent)!r}")


def _safe(name: str) -> str:
    """A member's chosen name made safe for a file name (it comes from a stranger)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._")[:32] or "peer"


def main(argv: list[str] | None = None) -> int:
    """``python -m xes.peer.cli call|match ...``: the same commands without ``xes``."""
    parser = argparse.ArgumentParser(prog="python -m xes.peer.cli")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_call_arguments(commands.add_parser("call", help="join a room"))
    add_match_arguments(commands.add_parser("match", help="talk to a stranger"))
    args = parser.parse_args(argv)
    started = time.monotonic()
    status = run_call(args) if args.command == "call" else run_match(args)
    logging.getLogger(__name__).debug("ran for %.1f s", time.monotonic() - started)
    return status


if __name__ == "__main__":
    sys.exit(main())
