"""Real ``oned`` processes on free loopback ports for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_conf(root: Path, extra: str = "", replace: dict[str, str] | None = None) -> None:
    """The shipped oned.conf plus ``extra``, with the hook driver on free ports so that
    several daemons (and a developer's own) can run side by side."""
    conf = root / "etc" / "oned.conf"
    if conf.exists():
        return
    from oned.locations import packaged_share

    conf.parent.mkdir(parents=True, exist_ok=True)
    text = (packaged_share() / "etc" / "oned.conf").read_text()
    text = text.replace("-p 2101 -l 2102", "-p 0 -l 0")
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    conf.write_text(text + "\n" + extra + "\n")


def _probe(port: int) -> str:
    """ "oned" when an XML-RPC server answers on ``port``, "foreign" when something else
    does, "" when nothing listens yet."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(
                b"POST /RPC2 HTTP/1.0\r\nContent-Type: text/xml\r\nContent-Length: 0\r\n\r\n"
            )
            sock.settimeout(2.0)
            head = sock.recv(12)
    except OSError:
        return ""
    return "oned" if head.startswith(b"HTTP/") else "foreign"


@dataclass
class Daemon:
    """One ``oned -f`` process with its own ONE_LOCATION."""

    root: Path
    port: int = field(default_factory=free_port)
    password: str = "s3cret-pw"
    proc: subprocess.Popen[bytes] | None = None
    extra_conf: str = ""
    replace_conf: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/RPC2"

    @property
    def session(self) -> str:
        return f"oneadmin:{self.password}"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["ONE_LOCATION"] = str(self.root)
        env["ONE_AUTH"] = str(self.root / "one_auth")
        env.pop("NOTIFY_SOCKET", None)
        return env

    def start(self, timeout: float = 20.0) -> None:
        """Start oned and wait until it answers. A free port can be taken by another
        process between ``free_port`` and oned's bind (a ZeroMQ socket of a daemon next
        door, say): then oned exits or something else answers, and it starts again on
        a new port."""
        for attempt in range(3):
            if self._start_once(timeout):
                return
            self.port = free_port()
        raise RuntimeError(f"oned could not get a port: {self.output()}")

    def _start_once(self, timeout: float) -> bool:
        self.root.mkdir(parents=True, exist_ok=True)
        auth = self.root / "one_auth"
        if not auth.exists():
            auth.write_text(f"oneadmin:{self.password}\n")
        write_conf(self.root, self.extra_conf, self.replace_conf)
        log = open(self.root / "stdout.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "oned", "-f", "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(self.root),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if "in use" in self.output():
                    return False
                raise RuntimeError(f"oned exited with {self.proc.returncode}: {self.output()}")
            answer = _probe(self.port)
            if answer == "oned":
                return True
            if answer == "foreign":
                self.stop(signal.SIGKILL)
                return False
            time.sleep(0.05)
        raise RuntimeError(f"oned did not listen in {timeout}s: {self.output()}")

    def output(self) -> str:
        try:
            return (self.root / "stdout.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def log(self) -> str:
        try:
            return (self.root / "var" / "oned.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(tmp_path / "one")
    d.start()
    yield d
    if d.alive():
        d.stop()


MakeDaemon = Callable[..., Daemon]


@pytest.fixture
def make_daemon(tmp_path: Path) -> Iterator[MakeDaemon]:
    """Build daemons (``Daemon``'s arguments); every one still running is stopped after the
    test, with SIGTERM so that its drivers are finalized too."""
    made: list[Daemon] = []

    def factory(*args: Any, **kwargs: Any) -> Daemon:
        daemon = Daemon(*args, **kwargs)
        made.append(daemon)
        return daemon

    yield factory
    for d in made:
        if d.alive():
            d.stop()
