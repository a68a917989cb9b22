"""`xes turn-config`: coturn accepts the generated configuration, and its hardening holds.

These start the real turnserver with the file the command writes, plus only the test overlay the
file itself permits (loopback peers), and ask it real TURN questions over UDP.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aioice import stun
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from xes.turnconfig import DENIED_PEER_RANGES, TurnConfig, render

from .coturn import LOOPBACK_OVERLAY, TURNSERVER, free_port, turn_rest_credentials, wait_for_tcp
from .turnclient import TurnRefused, allocation, turn_error_code

SECRET = "correct horse battery staple"


def write_self_signed(directory: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate and key for coturn's TLS listener."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "xes.test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return cert_path, key_path


def run_turn_config(args: list[str], env_secret: str | None) -> subprocess.CompletedProcess[str]:
    """Run the command as a user would; the secret only ever travels in the environment."""
    env = {k: v for k, v in os.environ.items() if k != "XES_TURN_SECRET"}
    if env_secret is not None:
        env["XES_TURN_SECRET"] = env_secret
    xes = Path(sys.executable).with_name("xes")  # the installed `xes` command, as users run it
    return subprocess.run(
        [str(xes), "turn-config", *args],
        env=env, capture_output=True, text=True, timeout=30,
    )


class RunningTurnserver:
    """A turnserver started straight from a configuration file, as an operator would."""

    def __init__(self, config: Path, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.process = subprocess.Popen(
            [TURNSERVER, "-c", str(config), f"--pidfile={run_dir / 'turn.pid'}",
             f"--db={run_dir / 'turndb.sqlite'}", "--no-stdout-log"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def log(self) -> str:
        path = self.run_dir / "turn.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def generated(tmp_path: Path) -> Iterator[tuple[RunningTurnserver, Path, int, int]]:
    """`xes turn-config` output (TLS on) plus loopback overlay, running.

    Yields (server, production config path, TURN port, TLS port).
    """
    cert, key = write_self_signed(tmp_path)
    port, tls_port = free_port(), free_port()
    output = tmp_path / "turnserver.conf"
    result = run_turn_config(
        ["--realm", "xes.test", "--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1",
         "--listening-port", str(port), "--tls-listening-port", str(tls_port),
         "--min-port", "29000", "--max-port", "29199", "--cert", str(cert), "--pkey", str(key),
         "--log-file", str(tmp_path / "turn.log"), "--output", str(output)],
        env_secret=SECRET,
    )
    assert result.returncode == 0, result.stderr
    test_config = tmp_path / "test-overlay.conf"
    test_config.write_text(output.read_text() + "\n".join(LOOPBACK_OVERLAY) + "\n")
    server = RunningTurnserver(test_config, tmp_path)
    try:
        wait_for_tcp("127.0.0.1", port, 15)
        wait_for_tcp("127.0.0.1", tls_port, 15)
        yield server, output, port, tls_port
    finally:
        server.stop()


def test_output_file_is_private_and_secret_stays_off_the_command_line(tmp_path: Path) -> None:
    """The file holding the secret is mode 600; the secret came from the environment only."""
    output = tmp_path / "turn.conf"
    result = run_turn_config(["--realm", "turn.example.org", "-o", str(output)], "s3cret-value")
    assert result.returncode == 0, result.stderr
    assert output.stat().st_mode & 0o777 == 0o600
    assert "static-auth-secret=s3cret-value" in output.read_text()
    assert "s3cret-value" not in result.stdout + result.stderr


def test_refuses_to_run_without_a_secret(tmp_path: Path) -> None:
    """No secret, no configuration: a TURN server without auth would be an open relay."""
    result = run_turn_config(["--realm", "turn.example.org"], env_secret=None)
    assert result.returncode == 2
    assert "XES_TURN_SECRET" in result.stderr


def test_secret_file_is_read_without_its_newline(tmp_path: Path) -> None:
    """`--turn-secret-file` as written by `echo` or `base64` (trailing newline) gives the secret."""
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-file\n")
    result = run_turn_config(
        ["--realm", "turn.example.org", "--turn-secret-file", str(secret_file)], None)
    assert result.returncode == 0, result.stderr
    assert "static-auth-secret=from-a-file\n" in result.stdout


def test_hardening_lines_are_present() -> None:
    """Every line the issue asks for is in the output, and each denied range is listed."""
    text = render(TurnConfig(secret="x", realm="turn.example.org", cert="/c.pem", pkey="/k.pem"))
    lines = set(text.splitlines())
    for required in ("use-auth-secret", "static-auth-secret=x", "realm=turn.example.org",
                     "no-multicast-peers", "no-cli", "no-tcp-relay", "fingerprint",
                     "user-quota=32", "total-quota=1200", "tls-listening-port=443",
                     "cert=/c.pem", "pkey=/k.pem", "min-port=49152", "max-port=65535",
                     "denied-peer-ip=127.0.0.0-127.255.255.255",
                     "denied-peer-ip=10.0.0.0-10.255.255.255", "denied-peer-ip=::1"):
        assert required in lines, required
    # Production output never loosens what the overlay loosens; the note explains it instead.
    assert "allow-loopback-peers" not in lines
    assert not any(line.startswith("allowed-peer-ip") for line in lines)
    assert "What a TEST set-up may loosen" in text
    assert len([line for line in lines if line.startswith("denied-peer-ip=")]) == len(
        DENIED_PEER_RANGES)


@pytest.mark.parametrize("bad", [
    ["--min-port", "50000", "--max-port", "40000"],
    ["--cert", "/only-a-cert.pem"],
    ["--listening-ip", "not-an-ip"],
])
def test_invalid_settings_are_refused(bad: list[str]) -> None:
    """Settings coturn would reject or misread fail here, with exit status 2."""
    result = run_turn_config(["--realm", "turn.example.org", *bad], env_secret="s")
    assert result.returncode == 2


async def test_coturn_accepts_and_enforces_the_generated_config(
    generated: tuple[RunningTurnserver, Path, int, int],
) -> None:
    """turnserver -c <generated + loopback overlay> starts clean, listens (TURN and TLS),
    accepts our credentials and refuses to relay to private addresses."""
    server, production_config, port, tls_port = generated
    log = server.log()
    assert "Bad configuration format" not in log
    assert "CONFIG ERROR" not in log
    assert "Black listing: 10.0.0.0-10.255.255.255" in log
    assert "White listing: 127.0.0.1" in log  # the overlay, and nothing else, loosened it
    assert server.process.poll() is None

    username, credential = turn_rest_credentials(SECRET, "Qm9iLXBlZXItaWQtMTIzNA",
                                                 int(time.time()) + 600)
    async with allocation(("127.0.0.1", port), username, credential) as turn:
        assert turn.relayed_address is not None
        assert 29000 <= turn.relayed_address[1] <= 29199
        # The overlay's one loosened address is allowed ...
        await turn.channel_bind(0x4000, ("127.0.0.1", 29999))
        # ... and the production lines still refuse private and link-local peers (403).
        for private_peer in (("10.1.2.3", 5000), ("192.168.1.1", 5000),
                             ("169.254.169.254", 80), ("127.0.0.2", 5000)):
            with pytest.raises(TurnRefused) as refused:
                await turn.channel_bind(0x4001, private_peer)
            assert turn_error_code(refused.value) == 403, private_peer
        # A public address is allowed. ChannelBind only installs a permission on the relay;
        # nothing is sent to that address.
        await turn.channel_bind(0x4002, ("8.8.8.8", 53))


async def test_correctly_signed_but_expired_username_is_refused(
    generated: tuple[RunningTurnserver, Path, int, int],
) -> None:
    """coturn answers 401 to an HMAC-valid username whose expiry has passed, and to a
    credential signed with another secret; the same user with a live expiry gets a relay."""
    _server, _config, port, _tls = generated
    server = ("127.0.0.1", port)
    now = int(time.time())
    expired = turn_rest_credentials(SECRET, "peer-a", now - 60)
    wrong_secret = turn_rest_credentials("not the secret", "peer-a", now + 600)
    valid = turn_rest_credentials(SECRET, "peer-a", now + 600)
    for username, credential in (expired, wrong_secret):
        with pytest.raises(TurnRefused) as refused:
            async with allocation(server, username, credential):
                pass
        assert turn_error_code(refused.value) == 401
    async with allocation(server, *valid) as turn:
        assert turn.relayed_address is not None


async def test_open_allocation_outlives_its_credentials(
    generated: tuple[RunningTurnserver, Path, int, int],
) -> None:
    """A call must not drop when its credentials lapse: coturn keeps refreshing an allocation
    (and binding channels) opened while they were valid. Only new allocations need fresh ones,
    which clients get with `ice-refresh`."""
    _server, _config, port, _tls = generated
    username, credential = turn_rest_credentials(SECRET, "peer-b", int(time.time()) + 3)
    async with allocation(("127.0.0.1", port), username, credential) as turn:
        await asyncio.sleep(4.5)  # the username's expiry is now in the past
        refresh = stun.Message(message_method=stun.Method.REFRESH,
                               message_class=stun.Class.REQUEST)
        refresh.attributes["LIFETIME"] = 600
        response, _ = await turn.request_with_retry(refresh)
        assert response.attributes["LIFETIME"] == 600
        await turn.channel_bind(0x4000, ("127.0.0.1", 29999))
    with pytest.raises(TurnRefused):
        async with allocation(("127.0.0.1", port), username, credential):
            pass
