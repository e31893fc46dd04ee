"""Scheduled actions and backups end to end: pyone against a real ``oned -f`` (timer of
one second) with our dummy VMM, TM and datastore drivers."""

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


def xml_of(d: Daemon, method: str, *args: object) -> str:
    reply = getattr(xmlrpc.client.ServerProxy(d.url), method)(d.session, *args)
    assert reply[0], reply
    return str(reply[1])


def wait_for(one: pyone.OneServer, vid: int, state: int, lcm: int = 0, secs: float = 20) -> None:
    deadline = time.monotonic() + secs
    while True:
        vm = one.vm.info(vid)
        if (vm.STATE, vm.LCM_STATE) == (state, lcm):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"VM {vid} is {vm.STATE}/{vm.LCM_STATE}, not {state}/{lcm}")
        time.sleep(0.05)


def sched(d: Daemon, vid: int, sa_id: int) -> etree._Element:
    vm = etree.fromstring(xml_of(d, "one.vm.info", vid).encode())
    found = vm.find(f"TEMPLATE/SCHED_ACTION[ID='{sa_id}']")
    assert found is not None
    return found


def test_scheduled_actions_backup_and_restore(make_daemon: MakeDaemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    d = make_daemon(tmp_path / "one", extra_conf="MANAGER_TIMER = 1")
    d.start()
    one = pyone.OneServer(d.url, session=d.session, timeout=30)
    one.datastore.update(0, 'TM_MAD="dummy"', 1)
    hid = one.host.allocate("host00", "dummy", "dummy", -1)
    vid = one.vm.allocate('NAME="sched"\nCPU="0.5"\nVCPU="1"\nMEMORY="256"', False)
    one.vm.deploy(vid, hid)
    wait_for(one, vid, ACTIVE, RUNNING)

    # A poweroff two seconds from now runs on its own and is marked done.
    due = int(time.time()) + 2
    sa = one.vm.schedadd(vid, f'SCHED_ACTION=[ACTION="poweroff", TIME="{due}"]')
    assert sched(d, vid, sa).findtext("DONE") == "-1"
    wait_for(one, vid, POWEROFF, 0, secs=15)
    node = sched(d, vid, sa)
    assert int(node.findtext("DONE") or -1) >= due
    assert node.findtext("MESSAGE") == ""
    if xsd.available():
        assert xsd.errors(xml_of(d, "one.vm.info", vid)) == []

    # An hourly resume runs and is re-armed an hour later.
    start = int(time.time()) + 1
    rep = one.vm.schedadd(
        vid, f'SCHED_ACTION=[ACTION="resume", TIME="{start}", REPEAT="3", DAYS="1"]'
    )
    wait_for(one, vid, ACTIVE, RUNNING, secs=15)
    deadline = time.monotonic() + 10
    while sched(d, vid, rep).findtext("TIME") == str(start) and time.monotonic() < deadline:
        time.sleep(0.1)
    node = sched(d, vid, rep)
    assert int(node.findtext("TIME") or 0) == start + 3600
    assert int(node.findtext("DONE") or -1) >= start
    one.vm.scheddelete(vid, rep)
    assert [
        i.text
        for i in etree.fromstring(xml_of(d, "one.vm.info", vid).encode()).findall(
            "SCHED_ACTIONS/ID"
        )
    ] == [str(sa)]

    # Backup of the powered-off VM into a BACKUP datastore, then a restore from it.
    one.vm.action("poweroff", vid)
    wait_for(one, vid, POWEROFF, 0)
    bds = one.datastore.allocate('NAME="backups"\nTYPE="BACKUP_DS"\nDS_MAD="dummy"\nTM_MAD="-"', -1)
    with pytest.raises(pyone.OneActionException, match="Datastore needs to be of type BACKUP"):
        one.vm.backup(vid, 1, False)
    assert one.vm.backup(vid, bds, False) == vid
    wait_for(one, vid, POWEROFF, 0)
    vm = one.vm.info(vid)
    ids = list(vm.BACKUPS.BACKUP_IDS.ID)
    assert len(ids) == 1
    image = one.image.info(ids[0])
    assert (image.TYPE, image.STATE, image.PERSISTENT) == (6, 1, 1)
    assert (image.SOURCE, image.SIZE, image.DATASTORE_ID) == ("dummy-backup-id", 1024, bds)
    assert list(image.VMS.ID) == [vid]
    assert ids[0] in list(one.datastore.info(bds).IMAGES.ID)
    if xsd.available():
        assert xsd.errors(xml_of(d, "one.vm.info", vid)) == []
        assert xsd.errors(xml_of(d, "one.image.info", ids[0])) == []
        assert xsd.errors(xml_of(d, "one.datastore.info", bds)) == []

    assert one.vm.restore(vid, ids[0], -1, -1) == vid
    wait_for(one, vid, POWEROFF, 0)
    history = one.vm.info(vid).HISTORY_RECORDS.HISTORY
    assert [h.ACTION for h in history][-3:] == [50, 60, 0]
    log = tmp_path / "one" / "var" / "vms" / str(vid) / "vm.log"
    deadline = time.monotonic() + 10  # VM log lines are written in batches
    while "VM restore operation completed." not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.1)


def test_kill9_during_a_backup_with_an_action_due_while_down(
    make_daemon: MakeDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The BACKUP in flight at a kill -9 is sent again after the restart and makes its
    image; a poweroff that fell due meanwhile runs once the backup is over."""
    actions = tmp_path / "dummy_actions"
    actions.mkdir()
    monkeypatch.setenv("ONE_DUMMY_ACTIONS_DIR", str(actions))
    d = make_daemon(tmp_path / "one", extra_conf="MANAGER_TIMER = 1")
    d.start()
    one = pyone.OneServer(d.url, session=d.session, timeout=30)
    one.datastore.update(0, 'TM_MAD="dummy"', 1)
    hid = one.host.allocate("host00", "dummy", "dummy", -1)
    bds = one.datastore.allocate('NAME="b"\nTYPE="BACKUP_DS"\nDS_MAD="dummy"\nTM_MAD="-"', -1)
    vid = one.vm.allocate('NAME="k"\nCPU="0.5"\nMEMORY="64"', True)
    one.vm.deploy(vid, hid)
    wait_for(one, vid, ACTIVE, RUNNING)
    (actions / "backup").write_text("success 30\n")
    one.vm.backup(vid, bds, False)
    wait_for(one, vid, ACTIVE, 69)  # BACKUP
    due = int(time.time()) + 2
    sa = one.vm.schedadd(vid, f'SCHED_ACTION=[ACTION="poweroff", TIME="{due}"]')
    d.stop(signal.SIGKILL)
    (actions / "backup").unlink()
    time.sleep(max(0.0, due + 1 - time.time()))
    d.start()
    one = pyone.OneServer(d.url, session=d.session, timeout=30)
    wait_for(one, vid, POWEROFF, 0, secs=30)
    vm = one.vm.info(vid)
    assert len(list(vm.BACKUPS.BACKUP_IDS.ID)) == 1
    assert one.image.info(vm.BACKUPS.BACKUP_IDS.ID[0]).STATE == 1
    node = sched(d, vid, sa)
    assert int(node.findtext("DONE") or -1) >= due
    assert node.findtext("MESSAGE") == ""
