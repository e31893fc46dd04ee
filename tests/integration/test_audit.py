"""The audit trail of a real ``oned -f``: a burst of pyone calls is recorded and the
chain verifies; a ``kill -9`` in the middle of a burst loses no acknowledged call's
record, and after the restart the chain goes on and still verifies."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pyone
import pytest

from oned.audit.trail import WRITE_DELAY

from .conftest import Daemon, MakeDaemon

pytestmark = pytest.mark.slow


def client(d: Daemon, session: str | None = None) -> pyone.OneServer:
    return pyone.OneServer(d.url, session=session or d.session, timeout=30)


def settle(d: Daemon) -> None:
    """Wait until every answered call's record is in the log: the journal holds no frame
    (a record waits WRITE_DELAY for its batch, and at start for the scribe to start)."""
    journal = d.root / "var" / ".audit.log.journal"
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            data = journal.read_bytes()
        except FileNotFoundError:
            return
        half = len(data) // 2  # a half's first frame, if any, starts at its start
        if data[:2] != b"AJ" and data[half : half + 2] != b"AJ":
            return
        time.sleep(WRITE_DELAY / 2)


def verify(d: Daemon) -> subprocess.CompletedProcess[str]:
    settle(d)
    return subprocess.run(
        [sys.executable, "-m", "oned.audit", "verify"],
        env=d.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def records(d: Daemon) -> list[dict[str, Any]]:
    settle(d)
    text = (d.root / "var" / "audit.log").read_text()
    return [json.loads(line) for line in text.splitlines()]


def burst(d: Daemon, prefix: str, stop: threading.Event, acked: list[tuple[str, int]]) -> None:
    """Allocate users until ``stop`` (or the daemon dies); note each acknowledged one."""
    one = client(d)
    for i in range(10_000):
        if stop.is_set():
            return
        name = f"{prefix}{i}"
        try:
            uid = one.user.allocate(name, f"pw-{name}", "", [])
        except Exception:  # the daemon was killed under us
            return
        acked.append((name, uid))


def start_bursts(d: Daemon, prefix: str, stop: threading.Event, acked: list[tuple[str, int]]
                 ) -> list[threading.Thread]:  # fmt: skip
    """Four ``burst`` threads, started."""
    threads = [threading.Thread(target=burst, args=(d, f"{prefix}{t}u", stop, acked))
               for t in range(4)]  # fmt: skip
    for t in threads:
        t.start()
    return threads


def test_burst_then_kill9_keeps_every_acknowledged_record(make_daemon: MakeDaemon,
                                                           tmp_path: Path) -> None:  # fmt: skip
    d = make_daemon(tmp_path / "one", extra_conf='AUDIT = [ MODE = "all", FSYNC = "0.2" ]')
    d.start()
    one = client(d)
    acked: list[tuple[str, int]] = []
    stop = threading.Event()
    threads = start_bursts(d, "b", stop, acked)
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(30)
    assert len(acked) > 20
    assert one.userpool.info().USER  # a read, recorded in MODE "all"
    with pytest.raises(pyone.OneAuthenticationException):
        client(d, "intruder:guess").user.info(-1)
    result = verify(d)
    assert result.returncode == 0, result.stdout + result.stderr
    got = records(d)
    assert f"OK: {len(got)} records" in result.stdout
    allocs = {(r["params"][0], r["id"]) for r in got if r["method"] == "one.user.allocate"}
    assert allocs == set(acked)
    assert not any("pw-" in json.dumps(r) for r in got)
    assert got[-1]["user"] == "intruder" and got[-1]["code"] == 256
    assert got[-2]["method"] == "one.userpool.info" and got[-2]["ok"] is True

    # kill -9 in the middle of a burst
    acked.clear()
    stop.clear()
    threads = start_bursts(d, "k", stop, acked)
    time.sleep(1.0)
    d.stop(signal.SIGKILL)
    for t in threads:
        t.join(30)
    assert len(acked) > 5
    d.start()
    result = verify(d)
    assert result.returncode == 0, result.stdout + result.stderr
    recorded = {(r["params"][0], r["id"]) for r in records(d) if r.get("id") is not None}
    assert set(acked) <= recorded
    client(d).user.allocate("after-restart", "pw", "", [])
    result = verify(d)
    assert result.returncode == 0, result.stdout + result.stderr
    last = records(d)[-1]
    assert last["params"][0] == "after-restart" and last["seq"] == len(records(d))
    # an altered record is caught
    log = d.root / "var" / "audit.log"
    lines = log.read_text().splitlines()
    lines[5] = lines[5].replace('"ok":true', '"ok":false')
    log.write_text("\n".join(lines) + "\n")
    result = verify(d)
    assert result.returncode == 1
    assert f"{log}:7: broken link" in result.stdout


def test_sighup_applies_a_new_audit_mode(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    """``systemctl reload``: MODE writes → all without a restart (the chain goes on);
    an AUDIT section that no longer parses changes nothing."""
    d = make_daemon(tmp_path / "one")
    d.start()
    one = client(d)
    one.user.allocate("before-hup", "pw", "", [])
    one.user.info(0)  # a read: not recorded in MODE writes
    assert [r["method"] for r in records(d)] == ["one.user.allocate"]
    conf = d.root / "etc" / "oned.conf"
    original = conf.read_text()
    conf.write_text(original + '\nAUDIT = [ MODE = "all" ]\n')
    assert d.proc is not None
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and records(d)[-1]["method"] != "one.user.info":
        one.user.info(0)
        time.sleep(0.05)
    assert records(d)[-1]["method"] == "one.user.info"
    result = verify(d)
    assert result.returncode == 0, result.stdout + result.stderr
    conf.write_text(original + '\nAUDIT = [ MODE = "loud" ]\n')
    d.proc.send_signal(signal.SIGHUP)
    log = d.root / "var" / "oned.log"
    while time.monotonic() < deadline and "Reload refused" not in log.read_text():
        time.sleep(0.05)
    assert "AUDIT MODE must be one of off, writes, all" in log.read_text()
    seen = len(records(d))
    one.user.info(0)  # still MODE all
    assert len(records(d)) == seen + 1 and d.proc.poll() is None
