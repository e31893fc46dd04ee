"""The audit scribe as a real process: the program itself over pipes, and a scribe
``kill -9``\\ ed under a real ``oned -f`` in the middle of a pyone burst (nothing
acknowledged is lost, nothing is written twice, a new scribe takes over)."""

from __future__ import annotations

import json
import marshal
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from oned.audit.journal import Journal, wait_for_scribe
from oned.audit.scribe import LENGTH, scribe_config
from oned.audit.trail import SCRIBE_RESTART
from oned.audit.verify import verify

from .conftest import MakeDaemon
from .test_audit import client, records, start_bursts
from .test_audit import verify as verify_cli

pytestmark = pytest.mark.slow


def scribes_of(pid: int) -> list[int]:
    """The pids of ``pid``'s children running the scribe."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"oned.audit.scribe" in cmdline:
            found.append(int(entry.name))
    return found


def wait_for(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_the_scribe_program(tmp_path: Path) -> None:
    """``python -m oned.audit.scribe``: writes each batch's new records once, acks
    with the seq reached, holds the journal's lock while it runs, ends at EOF."""
    journal = Journal(tmp_path / ".audit.log.journal", size=1 << 16)
    for seq in (1, 2, 3):
        raw = (seq, 1.5, seq, "oneadmin", 0, "oneadmin", 0, "1.2.3.4:5", "one.user.update",
               (seq, 'ROOT_PASSWORD="x"', 1), (True, 0, None, None), 0.5)  # fmt: skip
        assert journal.append(marshal.dumps(raw, 2))
    _, batch = journal.take()
    config = scribe_config(tmp_path / "audit.log", journal.path, 0, 0, 0, ["PASSWORD"])
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[3]))
    child = subprocess.Popen([sys.executable, "-m", "oned.audit.scribe", config],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)  # fmt: skip
    assert child.stdin is not None and child.stdout is not None
    try:
        for _ in range(2):  # the second time, nothing new
            child.stdin.write(LENGTH.pack(len(batch)) + batch)
            child.stdin.flush()
            assert child.stdout.readline() == b"3\n"
        assert not wait_for_scribe(journal.path, 0.05)
    finally:
        child.stdin.close()
        assert child.wait(30) == 0
    assert wait_for_scribe(journal.path, 0.05)
    lines = [json.loads(x) for x in (tmp_path / "audit.log").read_text().splitlines()]
    assert [r["seq"] for r in lines] == [1, 2, 3]
    assert lines[0]["params"] == [1, 'ROOT_PASSWORD="****"', 1]
    assert verify([tmp_path / "audit.log"]).ok



def test_a_scribe_killed_in_a_burst_loses_nothing(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    d = make_daemon(tmp_path / "one", extra_conf='AUDIT = [ MODE = "all" ]')
    d.start()
    assert d.proc is not None
    assert wait_for(lambda: scribes_of(d.proc.pid), 10)
    (first,) = scribes_of(d.proc.pid)
    acked: list[tuple[str, int]] = []
    stop = threading.Event()
    threads = start_bursts(d, "s", stop, acked)
    time.sleep(0.5)
    os.kill(first, signal.SIGKILL)
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(30)
    assert len(acked) > 20
    assert wait_for(lambda: scribes_of(d.proc.pid) not in ([], [first]), SCRIBE_RESTART * 2)
    client(d).user.allocate("after-the-scribe", "pw", "", [])
    result = verify_cli(d)
    assert result.returncode == 0, result.stdout + result.stderr
    got = records(d)
    allocs = [(r["params"][0], r["id"]) for r in got if r["method"] == "one.user.allocate"]
    assert set(allocs) >= set(acked) and len(allocs) == len(set(allocs))
    assert [r["seq"] for r in got] == list(range(1, len(got) + 1))
    assert "The audit scribe stopped" in d.log()
    last = scribes_of(d.proc.pid)
    d.stop()
    assert wait_for(lambda: not any(alive(pid) for pid in last), 10)  # ends with its oned


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
