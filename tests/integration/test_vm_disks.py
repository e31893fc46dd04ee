"""VM disk operations end to end: pyone against a real ``oned -f`` with our dummy VMM,
TM and datastore drivers; every VM document validates against vm.xsd."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pyone
import pytest

from . import xsd
from .conftest import Daemon, MakeDaemon
from .test_vms import ACTIVE, RUNNING, client, setup_infra, wait_for, xml_of

pytestmark = pytest.mark.slow

POWEROFF, DONE = 8, 6
HOTPLUG, DISK_SNAPSHOT, DISK_RESIZE = 17, 57, 62
READY, USED, LOCKED = 1, 2, 4


def wait_image(one: pyone.OneServer, iid: int, state: int, secs: float = 20) -> None:
    deadline = time.monotonic() + secs
    while one.image.info(iid).STATE != state:
        assert time.monotonic() < deadline, f"image {iid} is {one.image.info(iid).STATE}"
        time.sleep(0.05)


def datablock(one: pyone.OneServer) -> int:
    """A READY 100 MB DATABLOCK in datastore 1 on the dummy drivers."""
    one.datastore.update(1, 'DS_MAD="dummy"\nTM_MAD="dummy"', 1)
    deadline = time.monotonic() + 20
    while one.datastore.info(1).FREE_MB <= 0:
        assert time.monotonic() < deadline, "datastore 1 not monitored"
        time.sleep(0.05)
    iid = one.image.allocate('NAME="data"\nTYPE="DATABLOCK"\nSIZE="100"', 1)
    wait_image(one, iid, READY)
    return int(iid)


def valid(d: Daemon, vid: int) -> None:
    if xsd.available():
        assert xsd.errors(xml_of(d, "one.vm.info", vid)) == []


def test_disk_operations_through_pyone(daemon: Daemon) -> None:
    one = client(daemon)
    [hid] = setup_infra(one)
    iid = datablock(one)
    vid = one.vm.allocate('NAME="vm"\nCPU="0.1"\nMEMORY="64"', False)
    one.vm.deploy(vid, hid)
    wait_for(one, vid, ACTIVE, RUNNING)

    one.vm.attach(vid, f"DISK=[IMAGE_ID={iid}]")
    wait_for(one, vid, ACTIVE, RUNNING)
    img = one.image.info(iid)
    assert (img.STATE, img.RUNNING_VMS) == (USED, 1)
    disk = one.vm.info(vid).TEMPLATE["DISK"]
    assert (disk["DISK_ID"], disk["IMAGE_ID"], disk["TARGET"]) == ("0", str(iid), "sda")
    valid(daemon, vid)

    assert one.vm.disksnapshotcreate(vid, 0, "snap") == 0
    wait_for(one, vid, ACTIVE, RUNNING)
    valid(daemon, vid)
    one.vm.disksnapshotrename(vid, 0, 0, "renamed")
    doc = xml_of(daemon, "one.vm.info", vid)
    assert "<NAME><![CDATA[renamed]]></NAME>" in doc
    assert "<ACTIVE><![CDATA[YES]]></ACTIVE>" in doc
    with pytest.raises(pyone.OneActionException):
        one.vm.disksnapshotrevert(vid, 0, 0)
    one.vm.action("poweroff", vid)
    wait_for(one, vid, POWEROFF, 0)
    one.vm.disksnapshotrevert(vid, 0, 0)
    wait_for(one, vid, POWEROFF, 0)
    one.vm.disksnapshotdelete(vid, 0, 0)
    wait_for(one, vid, POWEROFF, 0)
    assert "<SNAPSHOT>" not in xml_of(daemon, "one.vm.info", vid)
    valid(daemon, vid)
    one.vm.action("resume", vid)
    wait_for(one, vid, ACTIVE, RUNNING)

    one.vm.diskresize(vid, 0, "300")
    wait_for(one, vid, ACTIVE, RUNNING)
    assert one.vm.info(vid).TEMPLATE["DISK"]["SIZE"] == "300"
    valid(daemon, vid)

    new = one.vm.disksaveas(vid, 0, "saved", "", -1)
    wait_image(one, new, READY)
    wait_for(one, vid, ACTIVE, RUNNING)
    saved = one.image.info(new)
    assert (saved.SIZE, saved.TEMPLATE["SAVED_VM_ID"]) == (300, str(vid))
    valid(daemon, vid)
    if xsd.available():
        assert xsd.errors(xml_of(daemon, "one.image.info", new)) == []

    one.vm.detach(vid, 0)
    wait_for(one, vid, ACTIVE, RUNNING)
    assert "DISK" not in one.vm.info(vid).TEMPLATE
    img = one.image.info(iid)
    assert (img.STATE, img.RUNNING_VMS) == (READY, 0)
    valid(daemon, vid)
    records = one.vm.info(vid).HISTORY_RECORDS.HISTORY
    assert [h.ACTION for h in records[:-1]] == [21, 25, 41, 26, 11, 29, 22]

    one.vm.action("terminate", vid)
    wait_for(one, vid, DONE, 0)
    valid(daemon, vid)


def test_kill9_during_disk_operations(
    make_daemon: MakeDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """VMs caught by a kill -9 in HOTPLUG, DISK_SNAPSHOT and DISK_RESIZE finish their
    operation after the restart (the driver step is sent again)."""
    actions = tmp_path / "dummy_actions"
    actions.mkdir()
    monkeypatch.setenv("ONE_DUMMY_ACTIONS_DIR", str(actions))
    d = make_daemon(tmp_path / "one")
    d.start()
    one = client(d)
    hids = setup_infra(one, hosts=3)
    vids = []
    for i, hid in enumerate(hids):
        vid = one.vm.allocate(f'NAME="d{i}"\nCPU="0.1"\nMEMORY="64"', False)
        one.vm.deploy(vid, hid)
        vids.append(vid)
    for vid in vids:
        wait_for(one, vid, ACTIVE, RUNNING)
    attach, snap, resize = vids
    iid = datablock(one)
    one.vm.attach(snap, f"DISK=[IMAGE_ID={iid}]")
    one.vm.attach(resize, 'DISK=[TYPE="fs", SIZE="8", FORMAT="raw"]')
    for vid in (snap, resize):
        wait_for(one, vid, ACTIVE, RUNNING)
    for name in ("attach_disk", "disk_snapshot_create", "resize_disk"):
        (actions / name).write_text("success 60\n")
    one.vm.attach(attach, 'DISK=[TYPE="swap", SIZE="8"]')
    one.vm.disksnapshotcreate(snap, 0, "s")
    one.vm.diskresize(resize, 0, "16")
    wait_for(one, attach, ACTIVE, HOTPLUG)
    wait_for(one, snap, ACTIVE, DISK_SNAPSHOT)
    wait_for(one, resize, ACTIVE, DISK_RESIZE)
    d.stop(signal.SIGKILL)
    for name in ("attach_disk", "disk_snapshot_create", "resize_disk"):
        (actions / name).unlink()
    d.start()
    one = client(d)
    for vid in vids:
        wait_for(one, vid, ACTIVE, RUNNING)
    assert one.vm.info(attach).TEMPLATE["DISK"]["TYPE"] == "swap"
    assert one.vm.info(resize).TEMPLATE["DISK"]["SIZE"] == "16"
    assert "<ACTIVE><![CDATA[YES]]></ACTIVE>" in xml_of(d, "one.vm.info", snap)
    assert one.image.info(iid).STATE == USED
    for vid in vids:
        valid(d, vid)
