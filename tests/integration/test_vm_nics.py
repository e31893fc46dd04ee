"""NIC hotplug, NIC_ALIAS and security groups on a RUNNING VM end to end: pyone against a
real ``oned -f`` with the dummy VMM, TM and IPAM drivers."""

from __future__ import annotations

import signal
import time
import xmlrpc.client
from collections.abc import Callable
from pathlib import Path

import pyone
import pytest

from . import xsd
from .conftest import Daemon, MakeDaemon

pytestmark = pytest.mark.slow

ACTIVE, RUNNING, DONE, HOTPLUG_NIC = 3, 3, 6, 25


def wait(check: Callable[[], bool], what: str, secs: float = 20) -> None:
    deadline = time.monotonic() + secs
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def raw(d: Daemon, method: str, *args: object) -> str:
    reply = getattr(xmlrpc.client.ServerProxy(d.url), method)(d.session, *args)
    assert reply[0], reply
    return str(reply[1])


def as_list(value: object) -> list[dict[str, str]]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]  # type: ignore[list-item]


def test_nic_and_secgroup_hotplug_through_pyone(daemon: Daemon) -> None:
    one = pyone.OneServer(daemon.url, session=daemon.session, timeout=30)
    one.datastore.update(0, 'TM_MAD="dummy"', 1)
    hid = one.host.allocate("host01", "dummy", "dummy", -1)
    vn = one.vn.allocate(
        'NAME="pub"\nVN_MAD="dummy"\nBRIDGE="br0"\nAR=[TYPE="IP4", IP="10.1.0.1", SIZE="8"]',
        -1,
    )
    wait(lambda: one.vn.info(vn).STATE == 1, "network READY")
    sg = one.secgroup.allocate('NAME="web"\nRULE=[PROTOCOL="TCP", RULE_TYPE="inbound"]')
    one.user.allocate("bob", "pw", "core", [])
    vid = one.vm.allocate('CPU="0.1"\nMEMORY="64"\nCONTEXT=[NETWORK="YES"]', False)
    one.vm.deploy(vid, hid)
    wait(lambda: (one.vm.info(vid).STATE, one.vm.info(vid).LCM_STATE) == (3, 3), "RUNNING")

    def running() -> bool:
        vm = one.vm.info(vid)
        return (vm.STATE, vm.LCM_STATE) == (ACTIVE, RUNNING)

    # a NIC: lease in the AR, ETH0 context, security group 0 rules
    one.vm.attachnic(vid, f'NIC=[NETWORK_ID="{vn}"]')
    wait(running, "attach done")
    nic = as_list(one.vm.info(vid).TEMPLATE["NIC"])[0]
    assert (nic["NIC_ID"], nic["IP"], nic["SECURITY_GROUPS"]) == ("0", "10.1.0.1", "0")
    assert "ATTACH" not in nic
    assert one.vm.info(vid).TEMPLATE["CONTEXT"]["ETH0_IP"] == "10.1.0.1"
    assert one.vn.info(vn).USED_LEASES == 1
    assert vid in one.secgroup.info(0).UPDATED_VMS.ID

    # an alias of it
    one.vm.attachnic(vid, f'NIC_ALIAS=[NETWORK_ID="{vn}", PARENT="NIC0"]')
    wait(running, "alias attach done")
    tmpl = one.vm.info(vid).TEMPLATE
    alias = as_list(tmpl["NIC_ALIAS"])[0]
    assert (alias["PARENT_ID"], alias["ALIAS_ID"], alias["NAME"]) == ("0", "0", "NIC0_ALIAS1")
    assert as_list(tmpl["NIC"])[0]["ALIAS_IDS"] == "1"
    assert one.vn.info(vn).USED_LEASES == 2

    # updatenic: a live bandwidth change goes through UPDATENIC
    one.vm.updatenic(vid, 0, 'NIC=[INBOUND_AVG_BW="100"]', 1)
    wait(running, "update done")
    assert as_list(one.vm.info(vid).TEMPLATE["NIC"])[0]["INBOUND_AVG_BW"] == "100"
    assert "VNET_UPDATE" not in one.vm.info(vid).TEMPLATE

    # a security group attached and detached (UPDATESG answered by the dummy)
    one.vm.attachsg(vid, 0, sg)
    wait(lambda: vid in (one.secgroup.info(sg).UPDATED_VMS.ID or []), "sg updated")
    rules = as_list(one.vm.info(vid).TEMPLATE["SECURITY_GROUP_RULE"])
    assert [r["SECURITY_GROUP_ID"] for r in rules] == ["0", "0", str(sg)]
    for doc in (raw(daemon, "one.vm.info", vid), raw(daemon, "one.vn.info", vn)):
        if xsd.available():
            assert xsd.errors(doc) == []
    one.vm.detachsg(vid, 0, sg)
    wait(lambda: not one.secgroup.info(sg).UPDATED_VMS.ID, "sg left")
    assert not one.secgroup.info(sg).UPDATING_VMS.ID
    with pytest.raises(pyone.OneActionException, match=f"NIC 0 doesn't contain SG {sg}"):
        one.vm.detachsg(vid, 0, sg)

    # the NIC goes with its alias and both leases
    one.vm.detachnic(vid, 0)
    wait(running, "detach done")
    tmpl = one.vm.info(vid).TEMPLATE
    assert "NIC" not in tmpl and "NIC_ALIAS" not in tmpl and "SECURITY_GROUP_RULE" not in tmpl
    assert one.vn.info(vn).USED_LEASES == 0
    assert not one.secgroup.info(0).UPDATED_VMS.ID
    if xsd.available():
        assert xsd.errors(raw(daemon, "one.vm.info", vid)) == []

    # refusals: wrong state, unknown NIC, not the owner
    with pytest.raises(pyone.OneActionException, match="Could not detach NIC with NIC_ID 7"):
        one.vm.detachnic(vid, 7)
    bob = pyone.OneServer(daemon.url, session="bob:pw", timeout=30)
    with pytest.raises(pyone.OneAuthorizationException):
        bob.vm.attachnic(vid, f'NIC=[NETWORK_ID="{vn}"]')

    # a NIC at terminate gives its lease back
    one.vm.attachnic(vid, f'NIC=[NETWORK_ID="{vn}"]')
    wait(running, "attach again")
    one.vm.action("terminate", vid)
    wait(lambda: one.vm.info(vid).STATE == DONE, "DONE")
    assert one.vn.info(vn).USED_LEASES == 0
    assert not one.secgroup.info(0).UPDATED_VMS.ID


def test_kill9_during_nic_hotplug_resumes(
    make_daemon: MakeDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """VMs caught in HOTPLUG_NIC (an attach and a detach) by a kill -9 finish them
    after the restart: the NIC stays or goes with its lease."""
    actions = tmp_path / "dummy_actions"
    actions.mkdir()
    monkeypatch.setenv("ONE_DUMMY_ACTIONS_DIR", str(actions))
    d = make_daemon(tmp_path / "one")
    d.start()
    one = pyone.OneServer(d.url, session=d.session, timeout=30)
    one.datastore.update(0, 'TM_MAD="dummy"', 1)
    hid = one.host.allocate("host01", "dummy", "dummy", -1)
    vn = one.vn.allocate(
        'NAME="n"\nVN_MAD="dummy"\nBRIDGE="br0"\nAR=[TYPE="IP4", IP="10.2.0.1", SIZE="8"]', -1
    )
    wait(lambda: one.vn.info(vn).STATE == 1, "network READY")
    attaching = one.vm.allocate('CPU="0.1"\nMEMORY="64"', False)
    detaching = one.vm.allocate(f'CPU="0.1"\nMEMORY="64"\nNIC=[NETWORK_ID="{vn}"]', False)
    for vid in (attaching, detaching):
        one.vm.deploy(vid, hid)
    for vid in (attaching, detaching):
        wait(lambda vid=vid: one.vm.info(vid).LCM_STATE == RUNNING, "RUNNING")
    (actions / "attach_nic").write_text("success 60\n")
    (actions / "detach_nic").write_text("success 60\n")
    one.vm.attachnic(attaching, f'NIC=[NETWORK_ID="{vn}"]')
    one.vm.detachnic(detaching, 0)
    for vid in (attaching, detaching):
        wait(lambda vid=vid: one.vm.info(vid).LCM_STATE == HOTPLUG_NIC, "HOTPLUG_NIC")
    d.stop(signal.SIGKILL)
    (actions / "attach_nic").unlink()
    (actions / "detach_nic").unlink()
    d.start()
    one = pyone.OneServer(d.url, session=d.session, timeout=30)
    for vid in (attaching, detaching):
        wait(lambda vid=vid: one.vm.info(vid).LCM_STATE == RUNNING, "RUNNING after restart")
    assert as_list(one.vm.info(attaching).TEMPLATE["NIC"])[0]["IP"] == "10.2.0.2"
    assert "ATTACH" not in as_list(one.vm.info(attaching).TEMPLATE["NIC"])[0]
    assert "NIC" not in one.vm.info(detaching).TEMPLATE
    assert one.vn.info(vn).USED_LEASES == 1
