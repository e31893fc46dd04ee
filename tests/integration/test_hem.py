"""Our Hook Execution Manager end to end: a real ``oned -f`` (our one_hm on ZeroMQ) and a
real ``oned-hem`` process; a hook with ON=RUNNING writes a file when a VM (dummy drivers)
reaches RUNNING, its record is in ``one.hook.info``, and a VM that reaches RUNNING while
the HEM is stopped still runs the hook once it is back (and the first one not again)."""

from __future__ import annotations

import base64
import signal
import subprocess
import sys
import time
import xmlrpc.client
from pathlib import Path

import pyone
import pytest
from lxml import etree

from . import xsd
from .conftest import Daemon, MakeDaemon, free_port

pytestmark = pytest.mark.slow

ACTIVE, RUNNING = 3, 3


def _wait(predicate, what: str, secs: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _running(one: pyone.OneServer, vid: int) -> bool:
    vm = one.vm.info(vid)
    return (vm.STATE, vm.LCM_STATE) == (ACTIVE, RUNNING)


def _hem(daemon: Daemon, pub: int, rep: int, root: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable, "-m", "oned.hem",
            "--endpoint", daemon.url,
            "--subscriber", f"tcp://127.0.0.1:{pub}",
            "--replier", f"tcp://127.0.0.1:{rep}",
            "--log", str(root / "onehem.log"),
            "--debug-level", "3",
        ],
        env=daemon.env,  # ONE_AUTH: the credential file, as OpenNebula's tools read it
        stdout=subprocess.DEVNULL,
        stderr=open(root / "hem.err", "ab"),  # noqa: SIM115
    )


def _records(daemon: Daemon, hkid: int) -> list[etree._Element]:
    raw = xmlrpc.client.ServerProxy(daemon.url)
    info = raw.one.hook.info(daemon.session, hkid)
    assert info[0], info
    return etree.fromstring(info[1].encode()).findall("HOOKLOG/HOOK_EXECUTION_RECORD")


def test_running_hook_through_oned_hem(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    pub, rep = free_port(), free_port()
    daemon: Daemon = make_daemon(
        tmp_path / "one", replace_conf={"-p 0 -l 0": f"-p {pub} -l {rep}"}
    )
    daemon.start()
    one = pyone.OneServer(daemon.url, session=daemon.session, timeout=30)
    out = tmp_path / "ran"
    out.mkdir()
    hook_cmd = tmp_path / "on_running.sh"
    # $1 is the VM document (base64), $2 the word "running": one file per VM id
    hook_cmd.write_text(
        "#!/bin/sh\n"
        'id=$(echo "$1" | base64 -d | sed -n "s:^ *<ID>\\([0-9]*\\)</ID>.*:\\1:p" | head -1)\n'
        f'echo "$2" >> {out}/vm-$id\n'
        "echo hook-ran\n"
    )
    hook_cmd.chmod(0o755)
    # no TIMEOUT here: hook.xsd has no TIMEOUT (oned's own document with one fails it too)
    hkid = one.hook.allocate(
        f'NAME="on-running"\nTYPE="state"\nRESOURCE="VM"\nON="RUNNING"\n'
        f'COMMAND="{hook_cmd}"\nARGUMENTS="$TEMPLATE running"'
    )
    one.datastore.update(0, 'TM_MAD="dummy"', 1)
    hid = one.host.allocate("host01", "dummy", "dummy", -1)

    hem = _hem(daemon, pub, rep, tmp_path)
    try:
        _wait(lambda: "Hooks successfully loaded" in _log(tmp_path), "the HEM to load hooks")
        vid = one.vm.allocate('NAME="a"\nCPU="0.1"\nMEMORY="64"', True)
        one.vm.deploy(vid, hid)
        _wait(lambda: _running(one, vid), f"VM {vid} RUNNING")
        first = out / f"vm-{vid}"
        _wait(first.exists, "the hook's file")
        assert first.read_text() == "running\n"

        records = _wait(lambda: _records(daemon, hkid), "the hook log record")
        assert len(records) == 1
        rec = records[0]
        assert rec.findtext("HOOK_ID") == str(hkid)
        assert rec.findtext("EXECUTION_RESULT/CODE") == "0"
        stdout = rec.findtext("EXECUTION_RESULT/STDOUT") or ""
        assert base64.b64decode(stdout) == b"hook-ran\n"
        vm_doc = base64.b64decode((rec.findtext("ARGUMENTS") or "").split(" ")[0])
        assert etree.fromstring(vm_doc).findtext("ID") == str(vid)
        if xsd.available():
            raw = xmlrpc.client.ServerProxy(daemon.url)
            assert xsd.errors(raw.one.hook.info(daemon.session, hkid)[1]) == []

        # The HEM goes down; a VM reaches RUNNING meanwhile; once the HEM is back the
        # hook runs for it (oned kept the event), and not again for the first VM.
        hem.send_signal(signal.SIGTERM)
        assert hem.wait(20) == 0
        vid2 = one.vm.allocate('NAME="b"\nCPU="0.1"\nMEMORY="64"', True)
        one.vm.deploy(vid2, hid)
        _wait(lambda: _running(one, vid2), f"VM {vid2} RUNNING")
        time.sleep(0.5)
        assert not (out / f"vm-{vid2}").exists()
        hem = _hem(daemon, pub, rep, tmp_path)
        _wait((out / f"vm-{vid2}").exists, "the hook for the VM that ran while the HEM was down")
        _wait(lambda: len(_records(daemon, hkid)) == 2, "the second record")
        time.sleep(1.5)  # oned re-sends queued events 1 s after hookpool.info
        assert first.read_text() == "running\n"
        assert (out / f"vm-{vid2}").read_text() == "running\n"
        assert len(_records(daemon, hkid)) == 2
    finally:
        if hem.poll() is None:
            hem.send_signal(signal.SIGTERM)
            try:
                hem.wait(20)
            except subprocess.TimeoutExpired:
                hem.kill()


def _log(root: Path) -> str:
    try:
        return (root / "onehem.log").read_text()
    except OSError:
        return ""
