"""Backup jobs end to end: pyone against a real ``oned -f`` (timer of one second) with our
dummy VMM, TM and datastore drivers: a job over three powered-off VMs runs on
``one.backupjob.backup`` and again from its own scheduled action, and a ``kill -9``
in the middle of a run is followed by a restart that finishes it."""

from __future__ import annotations

import signal
import time
import xmlrpc.client
from pathlib import Path

import pyone
import pytest
from lxml import etree

from . import xsd
from .conftest import Daemon, MakeDaemon

pytestmark = pytest.mark.slow

ACTIVE, RUNNING, POWEROFF = 3, 3, 8


def xml_of(d: Daemon, method: str, *args: object) -> etree._Element:
    reply = getattr(xmlrpc.client.ServerProxy(d.url), method)(d.session, *args)
    assert reply[0], reply
    if xsd.available():
        assert xsd.errors(str(reply[1])) == []
    return etree.fromstring(str(reply[1]).encode())


def ids(doc: etree._Element, path: str) -> list[int]:
    return [int(i.text or -1) for i in doc.findall(f"{path}/ID")]


def wait(check, what: str, secs: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + secs
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def backups_of(one: pyone.OneServer, vid: int) -> int:
    return len(list(one.vm.info(vid).BACKUPS.BACKUP_IDS.ID))


def test_backup_job_runs_by_call_by_schedule_and_across_a_kill9(
    make_daemon: MakeDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    actions = tmp_path / "dummy_actions"
    actions.mkdir()
    monkeypatch.setenv("ONE_DUMMY_ACTIONS_DIR", str(actions))
    d = make_daemon(tmp_path / "one", extra_conf="MANAGER_TIMER = 1")
    d.start()
    one = pyone.OneServer(d.url, session=d.session, timeout=30)
    one.datastore.update(0, 'TM_MAD="dummy"', 1)
    hid = one.host.allocate("host00", "dummy", "dummy", -1)
    bds = one.datastore.allocate('NAME="b"\nTYPE="BACKUP_DS"\nDS_MAD="dummy"\nTM_MAD="-"', -1)
    vms = []
    for n in range(3):
        vid = one.vm.allocate(f'NAME="bj{n}"\nCPU="0.1"\nMEMORY="64"', False)
        one.vm.deploy(vid, hid)
        vms.append(vid)
    wait(lambda: all(one.vm.info(v).LCM_STATE == RUNNING for v in vms), "RUNNING")
    for vid in vms:
        one.vm.action("poweroff", vid)
    wait(lambda: all(one.vm.info(v).STATE == POWEROFF for v in vms), "POWEROFF")

    job = one.backupjob.allocate(
        f'NAME="nightly"\nBACKUP_VMS="{",".join(map(str, vms))}"\nDATASTORE_ID="{bds}"\n'
        'EXECUTION="PARALLEL"\nKEEP_LAST="5"'
    )
    info = one.backupjob.info(job)
    assert (info.NAME, info.PRIORITY, info.TEMPLATE["EXECUTION"]) == ("nightly", 50, "PARALLEL")
    assert one.vm.info(vms[0]).BACKUPS.BACKUP_CONFIG.BACKUP_JOB_ID == str(job)

    def finished(count: int) -> bool:
        doc = xml_of(d, "one.backupjob.info", job)
        return (
            ids(doc, "OUTDATED_VMS") == []
            and ids(doc, "BACKING_UP_VMS") == []
            and ids(doc, "UPDATED_VMS") == vms
            and all(backups_of(one, v) == count for v in vms)
        )

    # Run now.
    assert one.backupjob.backup(job) == job
    wait(lambda: finished(1), "the first run")
    for vid in vms:
        assert one.vm.info(vid).STATE == POWEROFF
        image = one.image.info(one.vm.info(vid).BACKUPS.BACKUP_IDS.ID[0])
        assert (image.TYPE, image.STATE, image.DATASTORE_ID) == (6, 1, bds)
    assert ids(xml_of(d, "one.backupjob.info", job), "ERROR_VMS") == []
    xml_of(d, "one.vm.info", vms[0])  # BACKUP_JOB_ID in BACKUP_CONFIG validates
    xml_of(d, "one.backupjobpool.info", -2, -1, -1)
    assert [j.ID for j in one.backupjobpool.info(-2, -1, -1).BACKUPJOB] == [job]

    # Its own scheduled action runs it again.
    due = int(time.time()) + 2
    sa = one.backupjob.schedadd(job, f'SCHED_ACTION=[TIME="{due}"]')
    wait(lambda: finished(2), "the scheduled run")
    node = xml_of(d, "one.backupjob.info", job).find(f"TEMPLATE/SCHED_ACTION[ID='{sa}']")
    assert node is not None
    assert int(node.findtext("DONE") or -1) >= due
    assert node.findtext("MESSAGE") == ""

    # kill -9 while the backups run; the restart re-sends them and the run completes.
    (actions / "backup").write_text("success 30\n")
    one.backupjob.backup(job)
    wait(lambda: ids(xml_of(d, "one.backupjob.info", job), "BACKING_UP_VMS") != [], "BACKUP")
    d.stop(signal.SIGKILL)
    (actions / "backup").unlink()
    d.start()
    one = pyone.OneServer(d.url, session=d.session, timeout=30)
    wait(lambda: finished(3), "the run after the restart", secs=60)
    assert ids(xml_of(d, "one.backupjob.info", job), "ERROR_VMS") == []
