"""A network lab in namespaces: hosts behind NATs, firewalls and IPv6-only links, one "internet".

Every host of the lab is its own network namespace, so a real Chromium (through `chromium_wrapper`)
or an aiortc peer (through `NetLab.command`) runs there with exactly that host's view of the
network: its own addresses, its own routes, its NAT or firewall in front. Nothing touches the root
namespace: every veth is created directly inside the namespaces
(``ip link add X netns A type veth peer name Y netns B``), and `NetLab.down` kills what runs inside
and deletes them all.

The "internet" is one bridge in the ``pub`` namespace, carrying the documentation ranges, which are
never routed on the real internet: 198.51.100.0/24 and 203.0.113.0/24 (IPv4) and
2001:db8:100::/64 (IPv6). ``pub`` itself is the router and the web server (`WEB4`, `WEB6`); the
relay is the ``relay`` namespace (`RELAY4`, `RELAY6`). Nothing in the lab has a route to
10.0.0.0/8 or 100.64.0.0/10 across the internet, like the real one.

Hosts (`NetLab.add_host`), each a namespace named ``<prefix>-<name>``:

- ``cone``: behind a NAT that maps endpoint-independently and keeps the port (plain MASQUERADE),
  so STUN hole punching works;
- ``symmetric``: behind a NAT that picks a fresh random port per destination
  (MASQUERADE --random-fully), so the server-reflexive address STUN reports is useless to the peer;
- ``double``: behind a cone NAT on a carrier-grade-NAT subnet (100.64/10), itself behind a cone NAT;
- ``firewall``: behind a corporate NAT whose firewall drops all UDP and lets out TCP to port 443 only;
- ``open``: on the internet itself, no NAT (a public IPv4 address);
- ``ipv6``: on the internet with an IPv6 address only (no IPv4 at all);
- and each NAT host may get a second uplink (``second_isp=True``): a standby link to another
  cone NAT on 203.0.113.0/24, which `NetLab.switch_isp` moves the host to, as a phone moves from
  Wi-Fi to mobile data (the first link goes away, a new address and default route appear).

Every namespace gets an empty resolv.conf: nothing in the lab may send DNS queries to the host's
resolver (Chromium needs no DNS here: every URL is an IP literal).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Playwright

__all__ = [
    "WEB4",
    "WEB6",
    "RELAY4",
    "RELAY6",
    "LAB_TURN_OVERLAY",
    "Host",
    "NetLab",
    "chromium_wrapper",
    "launch_chromium_in",
]

WEB4 = "198.51.100.1"
WEB6 = "2001:db8:100::1"
RELAY4 = "198.51.100.2"
RELAY6 = "2001:db8:100::2"
SECOND_ISP_ROUTER = "203.0.113.1"

# The lab's "internet" is the documentation ranges, which production coturn refuses as peers; a
# lab may allow them, and nothing else (the note in `xes turn-config`'s output says so). The
# private and carrier-grade ranges stay denied: coturn closes the whole allocation when relaying to
# a peer fails, which it would when ICE makes it relay to the other side's private host candidate
# that the internet cannot route to; denied, it answers 403 instead.
LAB_TURN_OVERLAY: tuple[str, ...] = (
    "allowed-peer-ip=198.51.100.0-198.51.100.255",
    "allowed-peer-ip=203.0.113.0-203.0.113.255",
)

KINDS = ("cone", "symmetric", "double", "firewall", "open", "ipv6")


@dataclass
class Host:
    """One host of the lab: its namespace and the addresses others see it by."""

    name: str
    ns: str
    kind: str
    local_address: str
    """The address on its own interface (private behind a NAT)."""
    public_address: str
    """Where its packets appear on the internet (its NAT's WAN address, or its own)."""
    second_isp: str | None = None
    """Public address of its standby uplink's NAT, when it has one."""
    on_second_isp: bool = False


@dataclass
class NetLab:
    """The namespaces of one lab. Create with `NetLab.up`, always finish with `down`."""

    prefix: str
    namespaces: list[str] = field(default_factory=list)
    hosts: dict[str, Host] = field(default_factory=dict)
    _next_index: int = 10

    # ------------------------------------------------------------------ building blocks

    def ns(self, role: str) -> str:
        """The namespace name of a role ("pub", a host name, "<host>-nat" ...)."""
        return f"{self.prefix}-{role}"

    def run(self, role: str, *command: str) -> str:
        """Run a command inside a role's namespace; its stdout. Raises on failure."""
        # `ip -n` enters only the network namespace: far cheaper than `ip netns exec`, which
        # also remounts /sys, and building a lab runs ip a few hundred times.
        argv = (["ip", "-n", self.ns(role), *command[1:]] if command[0] == "ip"
                else ["ip", "netns", "exec", self.ns(role), *command])
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"in {self.ns(role)}: {' '.join(command)} failed: {done.stderr}")
        return done.stdout

    def command(self, role: str, *command: str) -> list[str]:
        """argv that runs `command` inside a role's namespace (for Popen)."""
        return ["ip", "netns", "exec", self.ns(role), *command]

    def add_namespace(self, role: str, *, ipv6: bool = False) -> None:
        """A namespace with loopback up, an empty resolver, and IPv6 only when asked for (an
        IPv4-only host must not offer even link-local IPv6 candidates)."""
        name = self.ns(role)
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
        self.namespaces.append(name)
        resolver = Path("/etc/netns") / name
        resolver.mkdir(parents=True, exist_ok=True)
        (resolver / "resolv.conf").write_text("")
        self.run(role, "ip", "link", "set", "lo", "up")
        settings = [f"net.ipv6.conf.{key}.disable_ipv6={0 if ipv6 else 1}"
                    for key in ("all", "default")]
        if ipv6:
            # No duplicate-address detection: addresses work at once, not after ~1 s.
            settings += [f"net.ipv6.conf.{key}.accept_dad=0" for key in ("all", "default")]
        self.run(role, "sysctl", "-q", "-w", *settings)

    def wire(self, a: str, a_dev: str, b: str, b_dev: str) -> None:
        """A veth between two namespaces, both ends up."""
        subprocess.run(["ip", "link", "add", a_dev, "netns", self.ns(a), "type", "veth",
                        "peer", "name", b_dev, "netns", self.ns(b)], check=True,
                       capture_output=True)
        self.run(a, "ip", "link", "set", a_dev, "up")
        self.run(b, "ip", "link", "set", b_dev, "up")

    def to_internet(self, role: str, dev: str) -> None:
        """Plug `dev` of `role` into the internet bridge."""
        port = f"p{len(self.namespaces)}{dev}"[:15]
        self.wire(role, dev, "pub", port)
        self.run("pub", "ip", "link", "set", port, "master", "inet")

    def masquerade(self, role: str, wan: str, *, symmetric: bool) -> None:
        """Make `role` a NAT router out of `wan`."""
        self.run(role, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        rule = ["-j", "MASQUERADE", *(["--random-fully"] if symmetric else [])]
        self.run(role, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", wan, *rule)
        # Linux conntrack would otherwise let an early inbound ICE check create the mapping (and
        # an ICMP unreachable) before our own outbound packet, stealing the port, so even a cone
        # NAT would defeat hole punching. A dropped packet's conntrack entry is never confirmed.
        self.run(role, "iptables", "-A", "INPUT", "-i", wan, "-m", "conntrack",
                 "--ctstate", "NEW", "-j", "DROP")

    def nat_router(self, router: str, host: str, host_dev: str, lan: str, wan_address: str,
                   *, symmetric: bool = False) -> None:
        """A new namespace `router`: the NAT between `host` (its `host_dev` on the private /24
        `lan`, e.g. "10.11.0", the router being .1) and the internet, at `wan_address`."""
        self.add_namespace(router)
        self.wire(host, host_dev, router, "lan")
        self.run(router, "ip", "addr", "add", f"{lan}.1/24", "dev", "lan")
        self.to_internet(router, "wan")
        self.run(router, "ip", "addr", "add", f"{wan_address}/24", "dev", "wan")
        gateway = SECOND_ISP_ROUTER if wan_address.startswith("203.0.113.") else WEB4
        self.run(router, "ip", "route", "add", "default", "via", gateway)
        self.masquerade(router, "wan", symmetric=symmetric)

    def double_nat(self, host: str, lan: str, carrier: str, wan_address: str) -> None:
        """`host` behind a home NAT (`<host>-nat`, on `lan`) whose uplink is a carrier's private
        network (`carrier`, in 100.64/10), behind the carrier's NAT (`<host>-cgn`)."""
        home, carrier_nat = f"{host}-nat", f"{host}-cgn"
        self.add_namespace(home)
        self.add_namespace(carrier_nat)
        self.wire(host, "lan", home, "lan")
        self.wire(home, "wan", carrier_nat, "lan")
        self.to_internet(carrier_nat, "wan")
        self.run(home, "ip", "addr", "add", f"{lan}.1/24", "dev", "lan")
        self.run(home, "ip", "addr", "add", f"{carrier}.2/24", "dev", "wan")
        self.run(home, "ip", "route", "add", "default", "via", f"{carrier}.1")
        self.run(carrier_nat, "ip", "addr", "add", f"{carrier}.1/24", "dev", "lan")
        self.run(carrier_nat, "ip", "addr", "add", f"{wan_address}/24", "dev", "wan")
        self.run(carrier_nat, "ip", "route", "add", "default", "via", WEB4)
        self.masquerade(home, "wan", symmetric=False)
        self.masquerade(carrier_nat, "wan", symmetric=False)

    # ------------------------------------------------------------------ the lab

    @classmethod
    def up(cls, prefix: str) -> NetLab:
        """The internet (``pub``: bridge, web and relay addresses, v4 and v6), no hosts yet."""
        lab = cls(prefix)
        lab.down()  # a lab left over by a killed run would carry stale state
        try:
            lab.add_namespace("pub", ipv6=True)
            lab.run("pub", "ip", "link", "add", "inet", "type", "bridge")
            lab.run("pub", "ip", "link", "set", "inet", "up")
            # pub routes between the internet's two IPv4 ranges (the second "ISP" is on the other).
            lab.run("pub", "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
            for address in (f"{WEB4}/24", f"{SECOND_ISP_ROUTER}/24", f"{WEB6}/64"):
                lab.run("pub", "ip", "addr", "add", address, "dev", "inet")
            # The relay is a host of its own, as in production: its TLS port 443 and the web
            # server's are then two different sockets.
            lab.add_namespace("relay", ipv6=True)
            lab.to_internet("relay", "eth0")
            lab.run("relay", "ip", "addr", "add", f"{RELAY4}/24", "dev", "eth0")
            lab.run("relay", "ip", "-6", "addr", "add", f"{RELAY6}/64", "dev", "eth0", "nodad")
            lab.run("relay", "ip", "route", "add", "default", "via", WEB4)
        except BaseException:
            lab.down()
            raise
        return lab

    def add_host(self, name: str, kind: str, *, second_isp: bool = False) -> Host:
        """Add a host of `kind` (see the module docstring) and return it."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        index = self._next_index
        self._next_index += 2  # the standby uplink takes the next index
        public = f"198.51.100.{index}"
        self.add_namespace(name, ipv6=kind == "ipv6")
        if kind == "open":
            self.to_internet(name, "eth0")
            self.run(name, "ip", "addr", "add", f"{public}/24", "dev", "eth0")
            self.run(name, "ip", "route", "add", "default", "via", WEB4)
            host = Host(name, self.ns(name), kind, public, public)
        elif kind == "ipv6":
            self.to_internet(name, "eth0")
            address = f"2001:db8:100::{index}"
            self.run(name, "ip", "-6", "addr", "add", f"{address}/64", "dev", "eth0", "nodad")
            host = Host(name, self.ns(name), kind, address, address)
        else:
            lan = f"10.{index}.0"
            if kind == "double":
                self.double_nat(name, lan, f"100.64.{index}", public)
            else:
                self.nat_router(f"{name}-nat", name, "lan", lan, public,
                                symmetric=kind == "symmetric")
            if kind == "firewall":
                self.firewall_tcp_443_only(f"{name}-nat")
            self.run(name, "ip", "addr", "add", f"{lan}.2/24", "dev", "lan")
            self.run(name, "ip", "route", "add", "default", "via", f"{lan}.1")
            host = Host(name, self.ns(name), kind, f"{lan}.2", public)
            if second_isp:
                # The standby uplink: wired and NATed, but down until `switch_isp`.
                host.second_isp = f"203.0.113.{index + 1}"
                self.nat_router(f"{name}-isp2", name, "lan2", f"10.{index + 1}.0",
                                host.second_isp)
                self.run(name, "ip", "link", "set", "lan2", "down")
        self.hosts[name] = host
        return host

    def firewall_tcp_443_only(self, router: str) -> None:
        """A corporate firewall: out through `wan` only TCP to port 443; replies come back."""
        for rule in (
            ["-i", "wan", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
            ["-o", "wan", "-p", "tcp", "--dport", "443", "-j", "ACCEPT"],
            ["-j", "DROP"],
        ):
            self.run(router, "iptables", "-A", "FORWARD", *rule)

    def switch_isp(self, name: str) -> float:
        """Move a host from its first uplink to its standby one: the Wi-Fi link goes away, the
        mobile-data link comes up with a new address and default route.

        Returns:
            time.time() when the old link went down.
        """
        host = self.hosts[name]
        if host.second_isp is None or host.on_second_isp:
            raise ValueError(f"{name} has no standby uplink to move to")
        lan = f"10.{host.second_isp.rsplit('.', 1)[1]}.0"
        moved_at = time.time()
        self.run(name, "ip", "link", "set", "lan", "down")
        self.run(name, "ip", "addr", "flush", "dev", "lan")
        self.run(name, "ip", "addr", "add", f"{lan}.2/24", "dev", "lan2")
        self.run(name, "ip", "link", "set", "lan2", "up")
        self.run(name, "ip", "route", "add", "default", "via", f"{lan}.1")
        host.local_address = f"{lan}.2"
        host.public_address = host.second_isp
        host.on_second_isp = True
        return moved_at

    def down(self) -> None:
        """Kill everything running inside the lab's namespaces and delete them (idempotent; also
        finds namespaces of a previous run with the same prefix)."""
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        names = {line.split()[0] for line in listed.splitlines() if line.strip()}
        ours = sorted(n for n in names | set(self.namespaces)
                      if n == self.ns("pub") or n.startswith(f"{self.prefix}-"))
        for name in ours:
            for pid in _pids(name):
                subprocess.run(["kill", "-TERM", pid], capture_output=True)
        for name in ours:
            for _ in range(20):
                if not _pids(name):
                    break
                time.sleep(0.1)
            for pid in _pids(name):
                subprocess.run(["kill", "-KILL", pid], capture_output=True)
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)
            resolver = Path("/etc/netns") / name
            (resolver / "resolv.conf").unlink(missing_ok=True)
            if resolver.exists():
                resolver.rmdir()
        self.namespaces.clear()
        self.hosts.clear()


def _pids(namespace: str) -> list[str]:
    listed = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True)
    return listed.stdout.split()


def chromium_wrapper(directory: Path, namespace: str, chromium: str = "/usr/bin/chromium") -> Path:
    """An executable that runs Chromium inside `namespace`, for Playwright's `executable_path`.

    Playwright talks to Chromium over pipes, which cross `ip netns exec` unchanged; `exec` keeps
    one process, so Playwright's own kill on close reaches Chromium.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"chromium-in-{namespace}"
    path.write_text(f'#!/bin/sh\nexec ip netns exec {namespace} {chromium} "$@"\n')
    path.chmod(0o755)
    return path


def launch_chromium_in(playwright: Playwright, lab: NetLab, host: str, scratch: Path,
                       *, web_origins: Sequence[str], relays: Sequence[str] = (),
                       extra_args: Sequence[str] = ()) -> Browser:
    """Launch the test Chromium (tests.support.browser's flags) inside a lab host's namespace.

    Args:
        web_origins: The XES pages it will open (``http://<ip>:<port>``): plain http on an
            address other than loopback is no secure context, so getUserMedia would be missing;
            these are declared secure. Their hosts are also let past the "no DNS" resolver rule,
            which otherwise refuses even IP literals.
        relays: Addresses of TURN servers it reaches over TLS (``turns:``): Chromium puts even an
            IP literal through its resolver there, so they need the same exception.
        extra_args: More flags (a TURN/TLS certificate pin, for example).
    """
    from urllib.parse import urlsplit

    from tests.support.browser import chromium_args

    hosts = [urlsplit(origin).hostname or "" for origin in web_origins] + list(relays)
    resolver = ", ".join(["MAP * ~NOTFOUND", "EXCLUDE 127.0.0.1", "EXCLUDE localhost",
                          *(f"EXCLUDE {h}" for h in hosts),
                          *(f"EXCLUDE [{h}]" for h in hosts if ":" in h)])
    args = chromium_args(extra=[
        f"--unsafely-treat-insecure-origin-as-secure={','.join(web_origins)}",
        # The same switch again: Chromium keeps the last one, which adds the lab's addresses.
        f"--host-resolver-rules={resolver}",
        *extra_args,
    ])
    return playwright.chromium.launch(
        executable_path=str(chromium_wrapper(scratch, lab.ns(host))), headless=True, args=args)


def main(argv: Sequence[str]) -> int:
    """``python -m tests.support.netlab up KIND [KIND ...] [--prefix P]`` builds the internet
    and one host per KIND (h1, h2, ...) and leaves them up for manual experiments;
    ``... down [--prefix P]`` removes them."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.support.netlab",
                                     description=main.__doc__)
    parser.add_argument("action", choices=("up", "down"))
    parser.add_argument("kinds", nargs="*", metavar="KIND", help=", ".join(KINDS))
    parser.add_argument("--prefix", default="xesnat")
    args = parser.parse_args(argv)
    lab = NetLab(args.prefix)
    if args.action == "down":
        lab.down()
        return 0
    lab = NetLab.up(args.prefix)
    for number, kind in enumerate(args.kinds, start=1):
        host = lab.add_host(f"h{number}", kind)
        print(f"{host.ns}: {kind}, {host.local_address} (seen as {host.public_address})")
    print(f"{lab.ns('pub')}: web {WEB4} {WEB6}; {lab.ns('relay')}: relay {RELAY4} {RELAY6}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
