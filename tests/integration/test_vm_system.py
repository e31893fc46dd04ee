"""System snapshots, resize, updateconf, PCI devices and guest exec end to end: pyone
against a real ``oned -f`` with our dummy VMM/TM/IM drivers."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pyone
import pytest
from lxml import etree

from . import xsd
from .conftest import Daemon, MakeDaemon
from .test_vms import ACTIVE, RUNNING, client, setup_infra, wait_for, xml_of

pytestmark = pytest.mark.slow

POWEROFF = 8


def vm_doc(d: Daemon, vid: int) -> etree._Element:
    doc = xml_of(d, "one.vm.info", vid)
    if xsd.available():
        assert xsd.errors(doc) == []
    return etree.fromstring(doc.encode())


def refused(exc: type[Exception], text: str, call: object, *args: object) -> None:
    with pytest.raises(exc) as info:
        call(*args)  # type: ignore[operator]
    assert str(info.value) == text


def wait_monitored(one: pyone.OneServer, hid: int, secs: float = 30) -> None:
    deadline = time.monotonic() + secs
    while one.host.info(hid).STATE != 2 or not one.host.info(hid).HOST_SHARE.MAX_CPU:
        assert time.monotonic() < deadline, "host never monitored"
        time.sleep(0.1)


def test_snapshots_resize_updateconf_pci_exec(daemon: Daemon) -> None:
    one = client(daemon)
    [hid] = setup_infra(one)
    uid = one.user.allocate("quser", "pw", "", [1])
    one.user.quota(uid, 'VM=[ CPU="4", MEMORY="2048", SYSTEM_DISK_SIZE="1024" ]')
    vid = one.vm.allocate(  # on hold: placed by the test, not by the scheduler
        'NAME="sys"\nCPU="0.5"\nVCPU="1"\nMEMORY="256"\nCONTEXT=[ VAR="a" ]', True
    )
    one.vm.chown(vid, uid, -1)
    one.vm.deploy(vid, hid)
    wait_for(one, vid, ACTIVE, RUNNING)
    wait_monitored(one, hid)

    # -- system snapshots: HOTPLUG_SNAPSHOT around each dummy VMM action ---------------
    assert one.vm.snapshotcreate(vid, "first") == 0
    wait_for(one, vid, ACTIVE, RUNNING)
    snap = vm_doc(daemon, vid).find("TEMPLATE/SNAPSHOT")
    assert snap is not None
    assert [c.tag for c in snap] == [
        "HYPERVISOR_ID",
        "NAME",
        "SNAPSHOT_ID",
        "SYSTEM_DISK_SIZE",
        "TIME",
    ]
    assert (snap.findtext("HYPERVISOR_ID"), snap.findtext("NAME")) == ("dummy-snap", "first")
    assert "<SYSTEM_DISK_SIZE_USED><![CDATA[256]]>" in xml_of(daemon, "one.user.info", uid)
    assert one.vm.snapshotrevert(vid, 0) == vid
    wait_for(one, vid, ACTIVE, RUNNING)
    refused(
        pyone.OneActionException,
        f"[one.vm.snapshotrevert] Could not revert VM {vid} to snapshot 5, it does not exist.",
        one.vm.snapshotrevert,
        vid,
        5,
    )
    assert one.vm.snapshotdelete(vid, 0) == vid
    wait_for(one, vid, ACTIVE, RUNNING)
    assert vm_doc(daemon, vid).find("TEMPLATE/SNAPSHOT") is None
    assert "<SYSTEM_DISK_SIZE_USED><![CDATA[0]]>" in xml_of(daemon, "one.user.info", uid)

    # -- resize: live refused by the dummy driver, done in POWEROFF ---------------------
    refused(
        pyone.OneActionException,
        "[one.vm.resize] Hotplug resize not supported by driver dummy",
        one.vm.resize,
        vid,
        'CPU="1"',
        False,
    )
    one.vm.action("poweroff", vid)
    wait_for(one, vid, POWEROFF, 0)
    refused(
        pyone.OneActionException,
        f"[one.vm.snapshotcreate] Could not create a new snapshot for VM {vid}, "
        "wrong state POWEROFF.",
        one.vm.snapshotcreate,
        vid,
        "x",
    )
    with pytest.raises(pyone.OneAuthorizationException):
        one.vm.resize(vid, 'MEMORY="4096"', False)
    one.vm.resize(vid, 'CPU="1"\nVCPU="2"\nMEMORY="512"', True)
    share = one.host.info(hid).HOST_SHARE
    assert (share.CPU_USAGE, share.MEM_USAGE, share.RUNNING_VMS) == (100, 512 * 1024, 1)
    user = xml_of(daemon, "one.user.info", uid)
    assert "<MEMORY_USED><![CDATA[512]]></MEMORY_USED>" in user
    assert "<CPU_USED><![CDATA[1]]></CPU_USED>" in user
    doc = vm_doc(daemon, vid)
    assert [doc.findtext(f"TEMPLATE/{n}") for n in ("CPU", "VCPU", "MEMORY")] == ["1", "2", "512"]
    assert [h.findtext("ACTION") for h in doc.findall("HISTORY_RECORDS/HISTORY")][-2:] == [
        "35",
        "19",
    ]

    # -- updateconf: only oned's sections are taken --------------------------------------
    one.vm.updateconf(
        vid, 'OS=[ ARCH="x86_64", MACHINE="q35" ]\nMEMORY="1"\nCONTEXT=[ VAR="b" ]', 1
    )
    doc = vm_doc(daemon, vid)
    assert doc.findtext("TEMPLATE/OS/MACHINE") == "q35"
    assert doc.findtext("TEMPLATE/MEMORY") == "512"
    assert doc.findtext("TEMPLATE/CONTEXT/VAR") == "b"
    refused(
        pyone.OneApiException,
        "[one.vm.updateconf] Wrong update type",
        one.vm.updateconf,
        vid,
        "",
        3,
    )

    # -- PCI devices: POWEROFF only, a free host device -------------------------------------
    one.vm.attachpci(vid, 'PCI=[ SHORT_ADDRESS="00:06.0" ]')
    pci = vm_doc(daemon, vid).find("TEMPLATE/PCI")
    assert pci is not None
    assert (pci.findtext("PCI_ID"), pci.findtext("ADDRESS")) == ("0", "0000:00:06:0")
    assert (pci.findtext("VM_BUS"), pci.findtext("VM_SLOT")) == ("0x01", "0000")
    host = etree.fromstring(xml_of(daemon, "one.host.info", hid).encode())
    used = [p.findtext("VMID") for p in host.findall("HOST_SHARE/PCI_DEVICES/PCI")]
    assert used.count(str(vid)) == 1
    if xsd.available():
        assert xsd.errors(xml_of(daemon, "one.host.info", hid)) == []
    refused(
        pyone.OneActionException,
        "[one.vm.attachpci] Cannot assign PCI device in host. Check address and free devices",
        one.vm.attachpci,
        vid,
        'PCI=[ SHORT_ADDRESS="00:06.0" ]',
    )
    one.vm.detachpci(vid, 0)
    assert vm_doc(daemon, vid).find("TEMPLATE/PCI") is None
    host = etree.fromstring(xml_of(daemon, "one.host.info", hid).encode())
    assert str(vid) not in [p.findtext("VMID") for p in host.findall("HOST_SHARE/PCI_DEVICES/PCI")]

    # -- guest exec: RUNNING only ---------------------------------------------------------
    refused(
        pyone.OneActionException,
        "[one.vm.exec] Could not execute command, VM must be in running",
        one.vm.exec,
        vid,
        "uptime",
        "",
    )
    one.vm.action("resume", vid)
    wait_for(one, vid, ACTIVE, RUNNING)
    refused(
        pyone.OneActionException,
        "[one.vm.attachpci] VM in wrong state, it has to be in poweroff",
        one.vm.attachpci,
        vid,
        'PCI=[ SHORT_ADDRESS="00:06.0" ]',
    )
    one.vm.updateconf(vid, 'CONTEXT=[ VAR="c" ]', 1)  # live: HOTPLUG, VMM UPDATECONF
    wait_for(one, vid, ACTIVE, RUNNING)
    assert vm_doc(daemon, vid).findtext("TEMPLATE/CONTEXT/VAR") == "c"
    log = daemon.root / "var" / "vms" / str(vid) / "vm.log"
    deadline = time.monotonic() + 5
    while "[VMM][I]: VM update conf succesfull." not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    assert "New LCM state is HOTPLUG" in log.read_text()
    one.vm.exec(vid, "uptime", "")
    wait_for(one, vid, ACTIVE, RUNNING)
    assert vm_doc(daemon, vid).findtext("TEMPLATE/QEMU_GA_EXEC/STATUS") == "EXECUTING"
    one.vm.cancelexec(vid)
    wait_for(one, vid, ACTIVE, RUNNING)
    doc = vm_doc(daemon, vid)
    assert doc.findtext("TEMPLATE/QEMU_GA_EXEC/STATUS") == "CANCELLED"
    assert doc.findtext("TEMPLATE/QEMU_GA_EXEC/COMMAND") == "uptime"
    refused(
        pyone.OneActionException,
        "[one.vm.cancelexec] Could not cancel command, there is no command being executed",
        one.vm.cancelexec,
        vid,
    )


def test_kill9_during_snapshot_and_exec_resumes(
    make_daemon: MakeDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """VMs caught in HOTPLUG_SNAPSHOT and HOTPLUG (exec) by a kill -9 get their VMM
    action sent again after the restart and settle RUNNING."""
    actions = tmp_path / "dummy_actions"
    actions.mkdir()
    monkeypatch.setenv("ONE_DUMMY_ACTIONS_DIR", str(actions))
    d = make_daemon(tmp_path / "one")
    d.start()
    one = client(d)
    [hid] = setup_infra(one)
    vids = []
    for i in range(2):
        vid = one.vm.allocate(f'NAME="k{i}"\nCPU="0.5"\nMEMORY="64"', True)
        one.vm.deploy(vid, hid)
        wait_for(one, vid, ACTIVE, RUNNING)
        vids.append(vid)
    (actions / "snapshot_create").write_text("success 60\n")
    (actions / "exec").write_text("success 60\n")
    snap, guest = vids
    assert one.vm.snapshotcreate(snap, "before-crash") == 0
    one.vm.exec(guest, "uptime", "")
    wait_for(one, snap, ACTIVE, 24)
    wait_for(one, guest, ACTIVE, 17)
    d.stop(signal.SIGKILL)
    (actions / "snapshot_create").unlink()
    (actions / "exec").unlink()
    d.start()
    one = client(d)
    wait_for(one, snap, ACTIVE, RUNNING)
    wait_for(one, guest, ACTIVE, RUNNING)
    snapshot = vm_doc(d, snap).find("TEMPLATE/SNAPSHOT")
    assert snapshot is not None
    assert (snapshot.findtext("NAME"), snapshot.findtext("HYPERVISOR_ID")) == (
        "before-crash",
        "dummy-snap",
    )
    assert vm_doc(d, guest).findtext("TEMPLATE/QEMU_GA_EXEC/STATUS") == "EXECUTING"
