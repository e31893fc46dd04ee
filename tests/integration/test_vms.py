"""VMs end to end: pyone against a real ``oned -f`` with our dummy VMM and TM drivers,
and a ``kill -9`` in the middle of driver actions followed by a restart."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pyone
import pytest
from lxml import etree

from . import xsd
from .conftest import Daemon, MakeDaemon

pytestmark = pytest.mark.slow

ACTIVE, RUNNING = 3, 3


def client(d: Daemon) -> pyone.OneServer:
    return pyone.OneServer(d.url, session=d.session, timeout=30)


def wait_for(one: pyone.OneServer, vid: int, state: int, lcm: int = 0, secs: float = 20) -> None:
    deadline = time.monotonic() + secs
    while True:
        vm = one.vm.info(vid)
        if (vm.STATE, vm.LCM_STATE) == (state, lcm):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"VM {vid} is {vm.STATE}/{vm.LCM_STATE}, not {state}/{lcm}")
        time.sleep(0.05)


def xml_of(d: Daemon, method: str, *args: object) -> str:
    import xmlrpc.client

    server = xmlrpc.client.ServerProxy(d.url)
    reply = getattr(server, method)(d.session, *args)
    assert reply[0], reply
    return str(reply[1])


def extended_errors(doc: str) -> list[str]:
    """Validate a VM_POOL of full VMs against vm_pool_extended.xsd."""
    path = xsd.XSD_DIR / "vm_pool_extended.xsd"
    schema = etree.XMLSchema(etree.parse(str(path)))
    root = xsd._into_ns(etree.fromstring(doc.encode()))  # noqa: SLF001
    return [] if schema.validate(root) else [str(e.message) for e in schema.error_log][:5]


def setup_infra(one: pyone.OneServer, hosts: int = 1) -> list[int]:
    one.datastore.update(0, 'TM_MAD="dummy"', 1)
    return [one.host.allocate(f"host{i:02d}", "dummy", "dummy", -1) for i in range(hosts)]


def test_vm_lifecycle_through_pyone(daemon: Daemon) -> None:
    """A VM goes PENDING, RUNNING, through every action, to DONE; documents validate."""
    one = client(daemon)
    [hid] = setup_infra(one)
    vid = one.vm.allocate('NAME="web"\nCPU="0.5"\nVCPU="1"\nMEMORY="256"\nDESCRIPTION="d"', False)
    assert one.vm.info(vid).STATE == 1
    one.vm.deploy(vid, hid)
    wait_for(one, vid, ACTIVE, RUNNING)
    assert one.vm.info(vid).DEPLOY_ID == "host00:web:dummy"
    share = one.host.info(hid).HOST_SHARE
    assert (share.CPU_USAGE, share.MEM_USAGE, share.RUNNING_VMS) == (50, 262144, 1)
    if xsd.available():
        assert xsd.errors(xml_of(daemon, "one.vm.info", vid)) == []
        assert xsd.errors(xml_of(daemon, "one.vmpool.info", -2, -1, -1, -1)) == []
        assert extended_errors(xml_of(daemon, "one.vmpool.infoextended", -2, -1, -1, -1)) == []
    for name, state, lcm in (
        ("poweroff", 8, 0),
        ("resume", ACTIVE, RUNNING),
        ("suspend", 5, 0),
        ("resume", ACTIVE, RUNNING),
        ("stop", 4, 0),
        ("resume", 1, 0),
    ):
        one.vm.action(name, vid)
        wait_for(one, vid, state, lcm)
    one.vm.deploy(vid, hid)
    wait_for(one, vid, ACTIVE, RUNNING)
    one.vm.action("undeploy", vid)
    wait_for(one, vid, 9, 0)
    with pytest.raises(pyone.OneActionException):
        one.vm.action("suspend", vid)
    one.vm.action("terminate-hard", vid)
    wait_for(one, vid, 6, 0)
    share = one.host.info(hid).HOST_SHARE
    assert (share.CPU_USAGE, share.MEM_USAGE, share.RUNNING_VMS) == (0, 0, 0)
    assert [h.SEQ for h in one.vm.info(vid).HISTORY_RECORDS.HISTORY] == [0, 1, 2, 3]
    vm_dir = daemon.root / "var" / "vms" / str(vid)
    assert (vm_dir / "deployment.0").exists()
    assert (vm_dir / "transfer.0.prolog").exists()
    deadline = time.monotonic() + 5
    while "[Z0][VM][I]: New state is DONE" not in (vm_dir / "vm.log").read_text():
        assert time.monotonic() < deadline, (vm_dir / "vm.log").read_text()
        time.sleep(0.05)
    accounting = xml_of(daemon, "one.vmpool.accounting", -2, -1, -1)
    assert accounting.count("<HISTORY>") == 4
    if xsd.available():
        assert xsd.errors(accounting) == []
    assert one.vmpool.info(-2, -1, -1, -1).VM == []
    assert [v.ID for v in one.vmpool.info(-2, -1, -1, -2).VM] == [vid]


def test_kill9_during_driver_actions_resumes_every_vm(
    make_daemon: MakeDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """VMs caught in BOOT and SHUTDOWN_POWEROFF by a kill -9 settle after the restart."""
    actions = tmp_path / "dummy_actions"
    actions.mkdir()
    monkeypatch.setenv("ONE_DUMMY_ACTIONS_DIR", str(actions))
    d = make_daemon(tmp_path / "one")
    d.start()
    one = client(d)
    hids = setup_infra(one, hosts=2)
    running = []
    for i in range(2):
        vid = one.vm.allocate(f'NAME="r{i}"\nCPU="1"\nMEMORY="64"', False)
        one.vm.deploy(vid, hids[i])
        wait_for(one, vid, ACTIVE, RUNNING)
        running.append(vid)
    (actions / "deploy").write_text("success 60\n")
    (actions / "shutdown").write_text("success 60\n")
    booting = []
    for i in range(4):
        vid = one.vm.allocate(f'NAME="b{i}"\nCPU="1"\nMEMORY="64"', False)
        one.vm.deploy(vid, hids[i % 2])
        booting.append(vid)
    for vid in running:
        one.vm.action("poweroff", vid)
    for vid in booting:
        wait_for(one, vid, ACTIVE, 2)
    for vid in running:
        wait_for(one, vid, ACTIVE, 18)
    d.stop(signal.SIGKILL)
    (actions / "deploy").unlink()
    (actions / "shutdown").unlink()
    d.start()
    one = client(d)
    for vid in booting:
        wait_for(one, vid, ACTIVE, RUNNING)
    for vid in running:
        wait_for(one, vid, 8, 0)
    shares = [one.host.info(h).HOST_SHARE for h in hids]
    assert [s.RUNNING_VMS for s in shares] == [3, 3]
    assert [s.CPU_USAGE for s in shares] == [300, 300]


def test_nic_leases_follow_the_vm(daemon: Daemon) -> None:
    """A NIC takes a lease at allocate (an exhausted range refuses and leaves nothing);
    the lease comes back when the VM is DONE."""
    one = client(daemon)
    [hid] = setup_infra(one)
    vn = one.vn.allocate(
        'NAME="n"\nVN_MAD="dummy"\nBRIDGE="br0"\nDNS="10.0.0.254"\nGATEWAY="10.0.0.254"\n'
        'NETWORK_MASK="255.255.255.0"\nAR=[TYPE="IP4", IP="10.0.0.1", SIZE="1"]',
        -1,
    )
    deadline = time.monotonic() + 10
    while one.vn.info(vn).STATE != 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    vid = one.vm.allocate(
        f'CPU="1"\nMEMORY="64"\nNIC=[NETWORK_ID="{vn}"]\nCONTEXT=[NETWORK="YES"]', False
    )
    context = one.vm.info(vid).TEMPLATE["CONTEXT"]
    assert (context["ETH0_IP"], context["ETH0_DNS"], context["ETH0_MASK"]) == (
        "10.0.0.1",
        "10.0.0.254",
        "255.255.255.0",
    )
    sample = xsd.XSD_DIR.parent / "samples" / "one.vm.info.hold.xml"
    if sample.exists():
        theirs = {c.tag for c in etree.fromstring(sample.read_bytes()).find("TEMPLATE/CONTEXT")}
        assert {k for k in context if k.startswith("ETH0_")} == {
            t for t in theirs if t.startswith("ETH0_")
        }
    nic = one.vm.info(vid).TEMPLATE["NIC"]
    assert (nic["IP"], nic["NIC_ID"], nic["NAME"], nic["TARGET"]) == (
        "10.0.0.1",
        "0",
        "NIC0",
        f"one-{vid}-0",
    )
    with pytest.raises(
        pyone.OneInternalException, match="Cannot get IP/MAC lease from virtual network"
    ):
        one.vm.allocate(f'CPU="1"\nMEMORY="64"\nNIC=[NETWORK_ID="{vn}"]', False)
    assert len(one.vmpool.info(-2, -1, -1, -2).VM) == 1
    one.vm.deploy(vid, hid)
    wait_for(one, vid, ACTIVE, RUNNING)
    one.vm.action("terminate", vid)
    wait_for(one, vid, 6, 0)
    assert one.vn.info(vn).USED_LEASES == 0
    again = one.vm.allocate(f'CPU="1"\nMEMORY="64"\nNIC=[NETWORK_ID="{vn}"]', False)
    assert one.vm.info(again).TEMPLATE["NIC"]["IP"] == "10.0.0.1"


def test_fifty_concurrent_actions_on_one_vm(daemon: Daemon) -> None:
    """50 racing actions get answers (accepted or refused), the VM always ends in a
    resting state and the host capacity is counted once."""
    import xmlrpc.client
    from concurrent.futures import ThreadPoolExecutor

    one = client(daemon)
    [hid] = setup_infra(one)
    vid = one.vm.allocate('NAME="race"\nCPU="1"\nMEMORY="64"', False)
    one.vm.deploy(vid, hid)
    wait_for(one, vid, ACTIVE, RUNNING)
    names = ["poweroff", "resume", "suspend", "reboot", "poweroff-hard", "stop", "hold"] * 8

    def act(name: str) -> bool:
        server = xmlrpc.client.ServerProxy(daemon.url)
        return bool(server.one.vm.action(daemon.session, name, vid)[0])

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(act, names[:50]))
    assert any(results)
    assert not all(results)
    deadline = time.monotonic() + 20
    while True:
        vm = one.vm.info(vid)
        # RUNNING, POWEROFF, SUSPENDED, STOPPED, and after stop+resume PENDING or HOLD
        if (vm.STATE, vm.LCM_STATE) in ((3, 3), (8, 0), (5, 0), (4, 0), (1, 0), (2, 0)):
            break
        assert time.monotonic() < deadline, (vm.STATE, vm.LCM_STATE)
        time.sleep(0.05)
    share = one.host.info(hid).HOST_SHARE
    expected = 0 if vm.STATE in (1, 2, 4) else 1  # off the host once stopped
    assert share.RUNNING_VMS == expected
    assert share.CPU_USAGE == 100 * expected
    one.vm.action("terminate-hard", vid)
    wait_for(one, vid, 6, 0)
    assert one.host.info(hid).HOST_SHARE.RUNNING_VMS == 0
