"""``one.vm.migrate`` end to end: pyone against a real ``oned -f`` with our dummy VMM and
TM drivers, live, cold (save and poweroff modes) and of a POWEROFF VM between two
hosts, with oned's refusal texts; documents validate against OpenNebula's XSD."""

from __future__ import annotations

import pyone
import pytest

from . import xsd
from .conftest import Daemon
from .test_vms import ACTIVE, RUNNING, client, setup_infra, wait_for, xml_of

pytestmark = pytest.mark.slow

POWEROFF = 8


def held(one: pyone.OneServer, hid: int) -> tuple[int, int, list[int]]:
    share = one.host.info(hid)
    vms = share.VMS.ID if share.VMS is not None else []
    return share.HOST_SHARE.CPU_USAGE, share.HOST_SHARE.RUNNING_VMS, list(vms)


def test_migrations_through_pyone(daemon: Daemon) -> None:
    """live, cold (save), poweroff-hard and POWEROFF-VM migrations move the VM, its
    history and its host capacity; refusals carry oned's texts."""
    one = client(daemon)
    h0, h1 = setup_infra(one, hosts=2)
    vid = one.vm.allocate('NAME="m"\nCPU="0.5"\nVCPU="1"\nMEMORY="128"', True)  # on hold
    one.vm.deploy(vid, h0)
    wait_for(one, vid, ACTIVE, RUNNING)
    with pytest.raises(pyone.OneActionException) as same:
        one.vm.migrate(vid, h0, False, False, -1, 0)
    assert str(same.value) == (
        f"[one.vm.migrate] VM is already running on host [{h0}] and datastore [0]"
    )
    with pytest.raises(pyone.OneNoExistsException):
        one.vm.migrate(vid, 99, True, False, -1, 0)

    one.vm.migrate(vid, h1, True, False, -1, 0)
    wait_for(one, vid, ACTIVE, RUNNING)
    assert held(one, h0) == (0, 0, [])
    assert held(one, h1) == (50, 1, [vid])
    one.vm.migrate(vid, h0, False, False, -1, 0)
    wait_for(one, vid, ACTIVE, RUNNING)
    one.vm.migrate(vid, h1, False, False, -1, 2)
    wait_for(one, vid, ACTIVE, RUNNING)
    assert held(one, h1) == (50, 1, [vid])
    one.vm.action("poweroff", vid)
    wait_for(one, vid, POWEROFF)
    one.vm.migrate(vid, h0, False, False, -1, 0)
    wait_for(one, vid, POWEROFF)
    assert held(one, h0) == (50, 1, [vid])
    assert held(one, h1) == (0, 0, [])

    records = one.vm.info(vid).HISTORY_RECORDS.HISTORY
    assert [(r.HOSTNAME, r.ACTION) for r in records] == [
        ("host00", 2),
        ("host01", 1),
        ("host00", 49),
        ("host01", 19),
        ("host00", 1),
    ]
    assert all(r.ETIME > 0 for r in records[:-1])
    vm_dir = daemon.root / "var" / "vms" / str(vid)
    assert (vm_dir / "transfer.2.migrate").read_text().startswith("MV dummy host01:")
    if xsd.available():
        assert xsd.errors(xml_of(daemon, "one.vm.info", vid)) == []
        assert xsd.errors(xml_of(daemon, "one.vmpool.info", -2, -1, -1, -1)) == []
        assert xsd.errors(xml_of(daemon, "one.host.info", h0)) == []
    one.vm.action("terminate", vid)
    wait_for(one, vid, 6)
    assert held(one, h0) == (0, 0, [])
