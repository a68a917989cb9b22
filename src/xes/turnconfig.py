"""`xes turn-config`: print a hardened coturn configuration that matches `xes serve`.

XES hands out TURN REST credentials (username ``<expiry>:<peer id>``, credential
``base64(HMAC-SHA1(secret, username))``), so coturn must run with ``use-auth-secret`` and the
*same* shared secret. Everything else in the file is hardening: a TURN server relays UDP to any
address a client names, so without limits it is an open proxy into the operator's own network
(RFC 8656 section 21.2.3, "Bypassing firewalls") and a bandwidth amplifier.

The secret comes from ``--turn-secret-file`` or the ``XES_TURN_SECRET`` environment variable,
never from a command-line argument, so it never shows in ``ps``. The output holds the secret, so
``--output`` writes the file readable by its owner only.

Which lines a test set-up may loosen, and why production must not, is written into the output
itself (see `TEST_OVERLAY_NOTE`), next to the lines it talks about.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "DENIED_PEER_RANGES",
    "SECRET_ENV",
    "TEST_OVERLAY_NOTE",
    "TurnConfig",
    "add_arguments",
    "config_from_args",
    "main",
    "read_secret",
    "render",
    "run",
    "suggested_turn_urls",
    "turn_urls_for_host",
]

SECRET_ENV = "XES_TURN_SECRET"

# The production port plan. 3478 is TURN's registered port, plain TURN over UDP and TCP. 443 is
# where TURN over TLS goes: the one TCP port almost every firewall passes (HTTPS), and TLS there
# looks like any other HTTPS connection, so a network that drops all UDP and all other ports
# still reaches the relay. Binding 443 needs root or CAP_NET_BIND_SERVICE (docs/deploy.md), and
# nothing else (no web server) may already listen on 443 on the relay's address.
TURN_PORT = 3478
TURNS_PORT = 443

# Peer addresses a relay must never send to. A client names the peer in CreatePermission and
# ChannelBind, so without these lines anyone holding a credential can reach services on the
# relay's loopback, its LAN, the cloud metadata endpoint (169.254.169.254) and so on.
# IANA special-purpose registries (RFC 6890, RFC 8190), the same list the coturn project's
# security guide recommends. Multicast and broadcast are handled by `no-multicast-peers`.
# Not "::" (unspecified): coturn 4.6.1 matches it against every IPv4 peer and so refuses all
# of them (found by tests/turn/test_turnconfig.py; coturn never relays to "::" anyway).
DENIED_PEER_RANGES: tuple[tuple[str, str], ...] = (
    ("0.0.0.0", "0.255.255.255"),  # "this network"
    ("10.0.0.0", "10.255.255.255"),  # RFC 1918 private
    ("100.64.0.0", "100.127.255.255"),  # carrier-grade NAT (RFC 6598)
    ("127.0.0.0", "127.255.255.255"),  # loopback: the relay host's own services
    ("169.254.0.0", "169.254.255.255"),  # link-local, including cloud metadata services
    ("172.16.0.0", "172.31.255.255"),  # RFC 1918 private
    ("192.0.0.0", "192.0.0.255"),  # IETF protocol assignments
    ("192.0.2.0", "192.0.2.255"),  # TEST-NET-1 (documentation)
    ("192.88.99.0", "192.88.99.255"),  # 6to4 relay anycast
    ("192.168.0.0", "192.168.255.255"),  # RFC 1918 private
    ("198.18.0.0", "198.19.255.255"),  # benchmarking
    ("198.51.100.0", "198.51.100.255"),  # TEST-NET-2 (documentation)
    ("203.0.113.0", "203.0.113.255"),  # TEST-NET-3 (documentation)
    ("240.0.0.0", "255.255.255.255"),  # reserved and limited broadcast
    ("::1", "::1"),  # loopback
    ("::ffff:0.0.0.0", "::ffff:255.255.255.255"),  # IPv4-mapped: would bypass the v4 list
    ("64:ff9b::", "64:ff9b::ffff:ffff"),  # NAT64: would bypass the v4 list
    ("100::", "100::ffff:ffff:ffff:ffff"),  # discard-only
    ("2001::", "2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff"),  # IETF protocol assignments
    ("2002::", "2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),  # 6to4: would bypass the v4 list
    ("fc00::", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),  # unique local
    ("fe80::", "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),  # link-local
)

TEST_OVERLAY_NOTE = """\
# ---------------------------------------------------------------------------------------------
# What a TEST set-up may loosen (and production must not)
#
# A test that runs both browsers and coturn on one machine relays between 127.0.0.1 addresses,
# which the lines above refuse. Such a test may APPEND, and only append:
#     allow-loopback-peers
#     allowed-peer-ip=127.0.0.1
# (allowed-peer-ip overrides denied-peer-ip for that one address). A lab that uses the
# documentation ranges 198.51.100.0/24 and 203.0.113.0/24 as its "internet" may likewise append
# allowed-peer-ip lines for those ranges. A test may also move ports and addresses, and point
# log-file, pidfile and the database at a scratch directory.
#
# Production must not: a relay that may send to loopback or private addresses lets anyone with a
# credential (that is, anyone who can open the XES page) reach the TURN host's own services and
# its internal network through it. Nothing a voice call needs lives at those addresses; two
# callers on one LAN connect directly and never use the relay.
# ---------------------------------------------------------------------------------------------
"""


@dataclass(frozen=True)
class TurnConfig:
    """Settings for one coturn instance, as given to `xes turn-config`.

    Attributes:
        secret: The shared secret, the same one `xes serve` signs credentials with.
        realm: The TURN realm; also used as the server name.
        listening_ips: Addresses coturn listens on; empty means all.
        external_ip: ``public`` or ``public/private`` when coturn sits behind 1:1 NAT.
        relay_ips: Addresses relayed traffic leaves from; empty lets coturn choose.
        listening_port: Plain TURN (UDP and TCP) port.
        tls_listening_port: TURN over TLS port (``turns:`` URLs).
        min_port: Lowest UDP relay port.
        max_port: Highest UDP relay port.
        cert: TLS certificate chain (PEM); no TLS listener when None.
        pkey: TLS private key (PEM).
        user_quota: Concurrent allocations one username may hold.
        total_quota: Concurrent allocations the whole server may hold.
        max_bps: Bandwidth cap per session, bytes per second (0: none).
        log_file: Where coturn logs; "syslog" for the system log.
    """

    secret: str
    realm: str
    listening_ips: tuple[str, ...] = ()
    external_ip: str | None = None
    relay_ips: tuple[str, ...] = ()
    listening_port: int = TURN_PORT
    tls_listening_port: int = TURNS_PORT
    min_port: int = 49152
    max_port: int = 65535
    cert: str | None = None
    pkey: str | None = None
    user_quota: int = 32
    total_quota: int = 1200
    max_bps: int = 64000
    log_file: str = "syslog"
    denied_peer_ranges: tuple[tuple[str, str], ...] = field(default=DENIED_PEER_RANGES)


def read_secret(secret_file: str | None, environ: Mapping[str, str]) -> str:
    """The TURN shared secret, from a file or the XES_TURN_SECRET environment variable.

    Surrounding whitespace (the file's trailing newline) is not part of the secret.

    Raises:
        ValueError: If neither gives a non-empty secret, or the file cannot be read.
    """
    if secret_file is not None:
        try:
            secret = Path(secret_file).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise ValueError(f"cannot read --turn-secret-file: {error.strerror}") from error
        if not secret:
            raise ValueError(f"--turn-secret-file {secret_file} is empty")
        return secret
    secret = environ.get(SECRET_ENV, "").strip()
    if not secret:
        raise ValueError(
            f"no TURN secret: give --turn-secret-file PATH or set {SECRET_ENV} "
            "(make one with: head -c 32 /dev/urandom | base64 > turn-secret)"
        )
    return secret


def _check(config: TurnConfig) -> None:
    """Refuse settings coturn would reject or silently misread."""
    for port in (config.listening_port, config.tls_listening_port, config.min_port,
                 config.max_port):
        if not 1 <= port <= 65535:
            raise ValueError(f"port {port} is out of range")
    if config.min_port > config.max_port:
        raise ValueError("--min-port must not exceed --max-port")
    if (config.cert is None) != (config.pkey is None):
        raise ValueError("--cert and --pkey go together")
    for address in (*config.listening_ips, *config.relay_ips):
        ipaddress.ip_address(address)
    if config.external_ip is not None:
        for part in config.external_ip.split("/"):
            ipaddress.ip_address(part)
    # A newline would let a value inject lines into the configuration.
    for text in (config.secret, config.realm, config.log_file, config.cert or "",
                 config.pkey or ""):
        if "\n" in text or "\r" in text:
            raise ValueError("values must be single lines")
    if config.user_quota < 1 or config.total_quota < 1 or config.max_bps < 0:
        raise ValueError("quotas must be positive")


def render(config: TurnConfig) -> str:
    """The coturn configuration file for `config`, with comments saying why each line is there.

    Raises:
        ValueError: If a setting is out of range or malformed.
    """
    _check(config)
    lines: list[str] = [
        "# coturn configuration generated by `xes turn-config`.",
        "# It holds the TURN shared secret: keep it readable by coturn only (chmod 600).",
        "",
        "# --- Listeners -------------------------------------------------------------------",
    ]
    lines += [f"listening-ip={address}" for address in config.listening_ips]
    lines += [f"relay-ip={address}" for address in config.relay_ips]
    if config.external_ip is not None:
        lines.append(f"external-ip={config.external_ip}")
    lines += [
        f"listening-port={config.listening_port}",
    ]
    if config.cert is not None:
        lines += [
            "# TURN over TLS (turns:) gets through firewalls that only pass 443/TCP and hides",
            "# even the TURN framing from the network.",
            f"tls-listening-port={config.tls_listening_port}",
            f"cert={config.cert}",
            f"pkey={config.pkey}",
            "no-tlsv1",
            "no-tlsv1_1",
            "cipher-list=ECDHE+AESGCM:ECDHE+CHACHA20",
        ]
    else:
        lines += ["# No certificate given: no TLS listener (give --cert and --pkey for turns:).",
                  "no-tls"]
    lines += [
        "# Browsers never use TURN over DTLS; one listener fewer to attack.",
        "no-dtls",
        "",
        "# --- Authentication: TURN REST API, the credentials `xes serve` issues -------------",
        "use-auth-secret",
        f"static-auth-secret={config.secret}",
        f"realm={config.realm}",
        f"server-name={config.realm}",
        "fingerprint",
        "# Nonces expire, so a captured request cannot be replayed for long.",
        "stale-nonce=600",
        "",
        "# --- What may be relayed ----------------------------------------------------------",
        "# Voice needs UDP relays only; TCP relay (RFC 6062) would let clients open TCP",
        "# connections to arbitrary hosts.",
        "no-tcp-relay",
        "no-multicast-peers",
        f"min-port={config.min_port}",
        f"max-port={config.max_port}",
        "# Never relay to loopback, private, link-local or otherwise special addresses",
        "# (see the note at the end before loosening any of these).",
    ]
    lines += [
        f"denied-peer-ip={low}" if low == high else f"denied-peer-ip={low}-{high}"
        for low, high in config.denied_peer_ranges
    ]
    lines += [
        "",
        "# --- Quotas ----------------------------------------------------------------------",
        "# Each XES username is one peer on one connection; in a mesh of 8 it holds one",
        "# allocation per other member and per TURN URL.",
        f"user-quota={config.user_quota}",
        f"total-quota={config.total_quota}",
        f"max-bps={config.max_bps}",
        "",
        "# --- Less surface ----------------------------------------------------------------",
        "# The telnet admin CLI has a default password; STUN-only extras help reflection",
        "# attacks (RFC 5780 NAT discovery, old RFC 3489 replies); the version helps attackers.",
        "no-cli",
        "no-rfc5780",
        "no-stun-backward-compatibility",
        "response-origin-only-with-rfc5780",
        "no-software-attribute",
        "",
        "# --- Logging: coturn logs client addresses; keep its logs short-lived. -------------",
    ]
    if config.log_file == "syslog":
        lines.append("syslog")
    else:
        lines += [f"log-file={config.log_file}", "simple-log"]
    lines += ["", TEST_OVERLAY_NOTE.rstrip("\n")]
    lines += [
        "# Matching `xes serve` flags (secret from the same file or XES_TURN_SECRET):",
        *(f"#   --turn-url {url}" for url in suggested_turn_urls(config)),
        "# or, the same three (two without a certificate) in one flag:",
        "#   --turn-host " + config.realm
        + ("" if config.listening_port == TURN_PORT else f" --turn-port {config.listening_port}")
        + ("" if config.cert is None or config.tls_listening_port == TURNS_PORT
           else f" --turn-tls-port {config.tls_listening_port}")
        + (" --turn-tls-port 0" if config.cert is None else ""),
    ]
    return "\n".join(lines) + "\n"


def turn_urls_for_host(host: str, port: int = TURN_PORT, tls_port: int | None = TURNS_PORT
                       ) -> list[str]:
    """The three URLs browsers get for one relay: TURN over UDP, over TCP, and over TLS.

    Browsers try them all at once and keep what works: UDP when it passes, else TCP to
    `port`, else TLS to `tls_port` (443 by default, which even HTTPS-only firewalls pass).
    `tls_port` None leaves out the ``turns:`` URL (a relay without a certificate).

    Raises:
        ValueError: If `host` is empty or holds characters that do not belong in a host name,
            or a port is out of range.
    """
    bracketed = host.startswith("[") and host.endswith("]")  # an IPv6 literal
    if (not host or any(c in host for c in "/?#@ \t\r\n")
            or (":" in host and not bracketed)):
        raise ValueError(f"--turn-host {host!r} is not a host name (no port: see --turn-port; "
                         "IPv6 in [brackets])")
    for number in (port, tls_port):
        if number is not None and not 1 <= number <= 65535:
            raise ValueError(f"port {number} is out of range")
    urls = [f"turn:{host}:{port}?transport=udp", f"turn:{host}:{port}?transport=tcp"]
    if tls_port is not None:
        urls.append(f"turns:{host}:{tls_port}?transport=tcp")
    return urls


def suggested_turn_urls(config: TurnConfig) -> list[str]:
    """The `--turn-url` values for `xes serve` that reach this coturn (host = the realm)."""
    return turn_urls_for_host(config.realm, config.listening_port,
                              config.tls_listening_port if config.cert is not None else None)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `xes turn-config` options to `parser`."""
    parser.add_argument(
        "--turn-secret-file", metavar="PATH",
        help=f"file holding the TURN shared secret (else ${SECRET_ENV}); same as for xes serve",
    )
    parser.add_argument("--realm", required=True,
                        help="TURN realm, normally the TURN server's DNS name")
    parser.add_argument("--listening-ip", action="append", default=[], metavar="IP",
                        help="address to listen on (repeatable; default: all)")
    parser.add_argument("--relay-ip", action="append", default=[], metavar="IP",
                        help="address relayed traffic leaves from (repeatable)")
    parser.add_argument("--external-ip", metavar="PUBLIC[/PRIVATE]",
                        help="public address when coturn is behind 1:1 NAT (cloud VMs)")
    parser.add_argument("--listening-port", type=int, default=TURN_PORT,
                        help=f"plain TURN port, UDP and TCP (default {TURN_PORT})")
    parser.add_argument("--tls-listening-port", type=int, default=TURNS_PORT,
                        help=f"TURN over TLS port, with --cert/--pkey (default {TURNS_PORT}, "
                             "which HTTPS-only firewalls pass; binding it needs root or "
                             "CAP_NET_BIND_SERVICE)")
    parser.add_argument("--min-port", type=int, default=49152, help="lowest UDP relay port")
    parser.add_argument("--max-port", type=int, default=65535, help="highest UDP relay port")
    parser.add_argument("--cert", metavar="PEM", help="TLS certificate chain for turns:")
    parser.add_argument("--pkey", metavar="PEM", help="TLS private key for turns:")
    parser.add_argument("--user-quota", type=int, default=32,
                        help="concurrent allocations per username (default 32)")
    parser.add_argument("--total-quota", type=int, default=1200,
                        help="concurrent allocations for the server (default 1200)")
    parser.add_argument("--max-bps", type=int, default=64000,
                        help="bytes per second per session, 0 for no cap (default 64000)")
    parser.add_argument("--log-file", default="syslog",
                        help='coturn log file, or "syslog" (default)')
    parser.add_argument("--output", "-o", metavar="PATH",
                        help="write here (mode 600) instead of standard output")


def config_from_args(args: argparse.Namespace, environ: Mapping[str, str]
                     ) -> TurnConfig:
    """Build a `TurnConfig` from parsed `xes turn-config` arguments.

    Raises:
        ValueError: If the secret is missing or a setting is invalid.
    """
    return TurnConfig(
        secret=read_secret(args.turn_secret_file, environ),
        realm=args.realm,
        listening_ips=tuple(args.listening_ip),
        external_ip=args.external_ip,
        relay_ips=tuple(args.relay_ip),
        listening_port=args.listening_port,
        tls_listening_port=args.tls_listening_port,
        min_port=args.min_port,
        max_port=args.max_port,
        cert=args.cert,
        pkey=args.pkey,
        user_quota=args.user_quota,
        total_quota=args.total_quota,
        max_bps=args.max_bps,
        log_file=args.log_file,
    )


def run(args: argparse.Namespace) -> int:
    """Run `xes turn-config`: print (or write) the configuration. Returns the exit status."""
    try:
        text = render(config_from_args(args, os.environ))
    except ValueError as error:
        print(f"xes turn-config: {error}", file=sys.stderr)
        return 2
    if args.output is None:
        sys.stdout.write(text)
        return 0
    # Created 0600 from the start: the file holds the secret, so it is never world-readable,
    # not even for the moment between create and chmod.
    descriptor = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as output:
        output.write(text)
    os.chmod(args.output, 0o600)
    print(f"xes turn-config: wrote {args.output}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for `python -m xes.turnconfig` (the same as `xes turn-config`)."""
    parser = argparse.ArgumentParser(prog="xes turn-config", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
