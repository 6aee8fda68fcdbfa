"""Real faults for tests: network namespaces joined by a veth pair, links cut or throttled by tc,
and a real TURN server (coturn).

Everything stays inside the machine: addresses are on a veth pair between namespaces that the
test creates (and always deletes, even when the test fails), or on loopback.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pytest


def need_root_netns() -> None:
    """Skip (with the reason) where namespaces cannot be made: CI runs these as root."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces (CI runs as root)")
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs '{tool}' from iproute2 (.ci/run installs it)")


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=20)


@dataclass
class NetLab:
    """Two hosts, ``server`` and ``bot``, each in its own namespace, joined by one veth link."""

    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    subnet: int = field(default_factory=lambda: 100 + secrets.randbelow(100))
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def server_ns(self) -> str:
        return f"enxs-{self.tag}"

    @property
    def bot_ns(self) -> str:
        return f"enxb-{self.tag}"

    @property
    def server_ip(self) -> str:
        return f"10.213.{self.subnet}.1"

    @property
    def bot_ip(self) -> str:
        return f"10.213.{self.subnet}.2"

    @property
    def bot_dev(self) -> str:
        return f"vb{self.tag}"

    @property
    def server_dev(self) -> str:
        return f"vs{self.tag}"

    def up(self) -> None:
        sh("ip", "netns", "add", self.server_ns)
        sh("ip", "netns", "add", self.bot_ns)
        sh("ip", "link", "add", self.server_dev, "type", "veth", "peer", "name", self.bot_dev)
        sh("ip", "link", "set", self.server_dev, "netns", self.server_ns)
        sh("ip", "link", "set", self.bot_dev, "netns", self.bot_ns)
        for ns, dev, ip in (
            (self.server_ns, self.server_dev, self.server_ip),
            (self.bot_ns, self.bot_dev, self.bot_ip),
        ):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")

    def down(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
        for ns in (self.server_ns, self.bot_ns):
            pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            sh("ip", "netns", "del", ns, check=False)

    def spawn(
        self, ns: str, argv: Sequence[str], env: dict[str, str] | None = None, **kw: object
    ) -> subprocess.Popen[bytes]:
        """Start a process inside namespace ``ns`` (its own process group, killed at teardown)."""
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv],
            env=env,
            start_new_session=True,
            **kw,  # type: ignore[arg-type]
        )
        self.procs.append(proc)
        return proc

    # faults, applied on the bot's side of the link
    def cut(self) -> None:
        sh("ip", "-n", self.bot_ns, "link", "set", self.bot_dev, "down")

    def restore(self) -> None:
        sh("ip", "-n", self.bot_ns, "link", "set", self.bot_dev, "up")

    def throttle(self, rate_kbit: int, loss_pct: float = 0.0, delay_ms: int = 0) -> str:
        """Limit what the bot can send (its egress). Returns the qdisc used.

        netem (rate + random loss + delay) where the kernel has it; otherwise tbf, whose short
        queue tail-drops what exceeds the rate: real loss, but only while the offered load is
        above ``rate_kbit`` (some kernels here ship without netem).
        """
        dev = ["tc", "-n", self.bot_ns, "qdisc", "replace", "dev", self.bot_dev, "root"]
        netem = [*dev, "netem", "rate", f"{rate_kbit}kbit"]
        if loss_pct:
            netem += ["loss", f"{loss_pct}%"]
        if delay_ms:
            netem += ["delay", f"{delay_ms}ms"]
        if sh(*netem, check=False).returncode == 0:
            return "netem"
        sh(*dev, "tbf", "rate", f"{rate_kbit}kbit", "burst", "4kb", "latency", f"{max(delay_ms, 50)}ms")
        return "tbf"

    def unthrottle(self) -> None:
        sh("tc", "-n", self.bot_ns, "qdisc", "del", "dev", self.bot_dev, "root", check=False)


@contextlib.contextmanager
def netlab() -> Iterator[NetLab]:
    need_root_netns()
    lab = NetLab()
    try:
        lab.up()
        yield lab
    finally:
        lab.down()


def free_udp_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Turn:
    url: str
    username: str
    credential: str


@contextlib.contextmanager
def coturn(listen_ip: str = "127.0.0.1") -> Iterator[Turn]:
    """A real coturn on a free loopback port with a test user (FACTS.md: the flags that work here)."""
    exe = shutil.which("turnserver")
    if exe is None:
        pytest.skip("needs coturn's 'turnserver' (apt-get install -y coturn; .ci/run installs it)")
    port = free_udp_tcp_port()
    user, password = "bot", secrets.token_hex(8)
    proc = subprocess.Popen(
        [
            exe,
            f"--listening-ip={listen_ip}",
            f"--relay-ip={listen_ip}",
            f"--listening-port={port}",
            "--lt-cred-mech",
            f"--user={user}:{password}",
            "--realm=test.local",
            "--no-tls",
            "--no-dtls",
            "--no-cli",
            "--allow-loopback-peers",
            "--fingerprint",
            "--min-port=49152",
            "--max-port=65535",
            "--log-file=stdout",
            "--simple-log",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex((listen_ip, port)) == 0:
                    break
            if proc.poll() is not None:
                pytest.fail(f"turnserver exited with {proc.returncode}")
            time.sleep(0.05)
        yield Turn(url=f"turn:{listen_ip}:{port}", username=user, credential=password)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
