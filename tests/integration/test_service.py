"""Service behaviour of a real oned: restart, kill -9, systemd notify, daemon mode."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
import xmlrpc.client
from pathlib import Path

import pyone
import pytest

from .conftest import Daemon, free_port, write_conf

pytestmark = pytest.mark.slow


def test_restart_keeps_state(daemon: Daemon) -> None:
    """Stop and start keep users, groups, ids and login tokens; SIGTERM exits 0."""
    one = pyone.OneServer(daemon.url, session=daemon.session)
    gid = one.group.allocate("keep")
    uid = one.user.allocate("keeper", "pw", "", [gid])
    token = pyone.OneServer(daemon.url, session="keeper:pw").user.login("keeper", "", -1, -1)
    assert daemon.stop() == 0
    daemon.start()
    one = pyone.OneServer(daemon.url, session=daemon.session)
    assert one.user.info(uid).GNAME == "keep"
    assert pyone.OneServer(daemon.url, session=f"keeper:{token}").user.info(-1).ID == uid
    assert one.user.allocate("next", "pw", "") == uid + 1
    assert one.group.allocate("next") == gid + 1
    assert "All modules finalized" in daemon.log()


def test_kill_9_loses_no_acknowledged_write(daemon: Daemon) -> None:
    """Writes acknowledged before kill -9 are all present after a restart."""
    acked: list[int] = []
    stop = threading.Event()

    def writer(prefix: str) -> None:
        proxy = xmlrpc.client.ServerProxy(daemon.url)
        n = 0
        while not stop.is_set() and n < 5000:
            try:
                reply = proxy.one.user.allocate(daemon.session, f"{prefix}{n}", "pw", "")
            except (OSError, xmlrpc.client.ProtocolError):
                return
            if reply[0]:
                acked.append(reply[1])
            n += 1

    threads = [threading.Thread(target=writer, args=(f"w{i}_",)) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait(10)
    stop.set()
    for t in threads:
        t.join(10)
    assert len(acked) > 10
    with sqlite3.connect(daemon.root / "var" / "one.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    daemon.start()
    pool = pyone.OneServer(daemon.url, session=daemon.session).userpool.info()
    present = {u.ID for u in pool.USER}
    assert set(acked) <= present
    users_group = pyone.OneServer(daemon.url, session=daemon.session).group.info(1)
    assert set(acked) <= set(users_group.USERS.ID)


def test_systemd_notify(tmp_path: Path) -> None:
    """READY=1 once the API listens, STOPPING=1 at shutdown."""
    sock_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(sock_path))
    notify.settimeout(20)
    d = Daemon(tmp_path / "one")
    env = d.env
    env["NOTIFY_SOCKET"] = str(sock_path)
    (d.root).mkdir(parents=True)
    (d.root / "one_auth").write_text(f"oneadmin:{d.password}\n")
    write_conf(d.root)
    proc = subprocess.Popen(
        [sys.executable, "-m", "oned", "-f", "--port", str(d.port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert notify.recv(100) == b"READY=1"
        assert xmlrpc.client.ServerProxy(d.url).one.system.version(d.session)[0]
        proc.send_signal(signal.SIGTERM)
        assert notify.recv(100) == b"STOPPING=1"
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        notify.close()


def test_daemon_mode_and_generated_credential(tmp_path: Path) -> None:
    """Without -f oned detaches and writes a pidfile; without ONE_AUTH it generates one."""
    root = tmp_path / "one"
    port = free_port()
    env = dict(os.environ, ONE_LOCATION=str(root), HOME=str(tmp_path / "home"))
    env.pop("ONE_AUTH", None)
    write_conf(root)
    done = subprocess.run(
        [sys.executable, "-m", "oned", "--port", str(port)],
        check=False,
        env=env,
        timeout=30,
        capture_output=True,
    )
    assert done.returncode == 0
    pidfile = root / "var" / "oned.pid"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (root / "var" / ".one" / "one_auth").exists():
        time.sleep(0.1)
    auth = root / "var" / ".one" / "one_auth"
    assert stat.S_IMODE(auth.stat().st_mode) == 0o600
    session = auth.read_text().strip()
    assert session.startswith("oneadmin:")
    for name in ("sunstone_auth", "onegate_auth", "oneflow_auth"):
        assert (root / "var" / ".one" / name).read_text().startswith("serveradmin:")
    pid = int(pidfile.read_text())
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                reply = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{port}/RPC2").one.user.info(
                    session, -1
                )
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert reply[0]
        assert "oneadmin credential" in (root / "var" / "oned.log").read_text()
    finally:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pidfile.exists()


def test_port_in_use_fails_cleanly(daemon: Daemon, tmp_path: Path) -> None:
    """A second oned on a busy port exits 1 at once and leaves no driver behind."""
    other = Daemon(tmp_path / "other", port=daemon.port)
    other.root.mkdir(parents=True)
    (other.root / "one_auth").write_text(f"oneadmin:{other.password}\n")
    write_conf(other.root)
    done = subprocess.run(
        [sys.executable, "-m", "oned", "-f", "--port", str(daemon.port)],
        env=other.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "Address already in use" in done.stderr
    assert "All modules finalized" in other.log()
    assert daemon.alive()


def test_init_db_only(tmp_path: Path) -> None:
    """`oned -i` bootstraps the database and exits 0 without serving."""
    d = Daemon(tmp_path / "init")
    d.root.mkdir(parents=True)
    (d.root / "one_auth").write_text(f"oneadmin:{d.password}\n")
    write_conf(d.root)
    done = subprocess.run(
        [sys.executable, "-m", "oned", "-i"],
        env=d.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(d.root / "var" / "one.db") as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM user_pool ORDER BY oid")]
    assert names == ["oneadmin", "serveradmin"]
    d.start()
    assert pyone.OneServer(d.url, session=d.session).user.info(-1).NAME == "oneadmin"
    d.stop()
