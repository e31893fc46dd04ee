"""Accounting, showback and VM monitoring listings end to end: pyone against a real
``oned -f`` with the dummy drivers; documents validated against OpenNebula's schemas."""

from __future__ import annotations

import time
import xmlrpc.client

import pyone
import pytest

from . import xsd
from .conftest import Daemon
from .test_vms import ACTIVE, RUNNING, client, setup_infra, wait_for, xml_of

pytestmark = pytest.mark.slow

COSTED = 'NAME="acct"\nCPU="1"\nVCPU="1"\nMEMORY="512"\nCPU_COST="2"\nMEMORY_COST="0.5"'


def test_accounting_showback_and_monitoring(daemon: Daemon) -> None:
    """History records of a VM placed twice, its monthly showback, and monitoring
    listings, as pyone reads them; the raw documents validate."""
    one = client(daemon)
    [hid] = setup_infra(one)
    vid = one.vm.allocate(COSTED, False)
    other = one.vm.allocate('NAME="idle"\nCPU="0.1"\nMEMORY="64"', True)
    one.vm.deploy(vid, hid)
    wait_for(one, vid, ACTIVE, RUNNING)
    one.vm.action("poweroff-hard", vid)
    wait_for(one, vid, 8, 0)
    one.vm.action("resume", vid)
    wait_for(one, vid, ACTIVE, RUNNING)

    records = one.vmpool.accounting(-2, -1, -1).HISTORY
    assert [(h.OID, h.SEQ) for h in records] == [(vid, 0), (vid, 1)]
    assert records[0].ETIME > 0 and records[1].ETIME == 0
    assert records[0].VM.NAME == "acct"
    assert one.vmpool.accounting(-2, records[0].ETIME, -1).HISTORY[0].SEQ == 1
    assert one.vmpool.accounting(-2, -1, records[0].STIME).HISTORY == []
    raw = xml_of(daemon, "one.vmpool.accounting", -2, -1, -1)
    if xsd.available():
        assert xsd.errors(raw) == []

    time.sleep(1.1)  # showback counts records that started before now (oned's stime < end)
    now = time.localtime()
    assert one.vmpool.calculateshowback(now.tm_mon, now.tm_year, now.tm_mon, now.tm_year) == " "
    shown = one.vmpool.showback(-2, now.tm_mon, now.tm_year, now.tm_mon, now.tm_year).SHOWBACK
    assert [(s.VMID, s.VMNAME, s.YEAR, s.MONTH) for s in shown] == [
        (vid, "acct", now.tm_year, now.tm_mon)
    ]
    assert other not in [s.VMID for s in shown]
    raw = xml_of(daemon, "one.vmpool.showback", -2, -1, -1, -1, -1)
    if xsd.available():
        assert xsd.errors(raw) == []
    with pytest.raises(pyone.OneException):
        one.vmpool.showback(-9, -1, -1, -1, -1)
    user = one.user.allocate("acct-user", "pw", "core", [])
    one.user.chgrp(user, 1)
    as_user = xmlrpc.client.ServerProxy(daemon.url)
    reply = as_user.one.vmpool.calculateshowback("acct-user:pw", -1, -1, -1, -1)
    assert reply[:3] == [
        False,
        f"[one.vmpool.calculateshowback] User [{user}] : Action reserved for group 0 only.",
        0x200,
    ]

    # a listing over a megabyte is written piece by piece as the socket drains
    batch = xmlrpc.client.ServerProxy(daemon.url)
    template = 'NAME="bulk"\nCPU="0.1"\nMEMORY="64"\nDESCRIPTION="{}"'.format("x" * 900)
    calls = [
        {"methodName": "one.vm.allocate", "params": [daemon.session, template, True]}
        for _ in range(600)
    ]
    assert all(r[0][0] for r in batch.system.multicall(calls))
    big = xml_of(daemon, "one.vmpool.infoextended", -2, -1, -1, -1)
    assert len(big) > 1 << 20
    listed = [v.ID for v in one.vmpool.infoextended(-2, -1, -1, -1).VM]
    assert len(listed) == 602 and listed[-2:] == [other, vid]
    assert big.count("<VM><ID>") == 602  # (VMs on hold lack TM_MAD_SYSTEM, as oned's: no XSD)
    for doc in (
        xml_of(daemon, "one.vm.monitoring", vid),
        xml_of(daemon, "one.vmpool.monitoring", -2, 0),
        xml_of(daemon, "one.vmpool.monitoring", -2, -1),
        xml_of(daemon, "one.vmpool.monitoring", -2, 3600),
    ):
        assert doc.startswith("<MONITORING_DATA>")
        if xsd.available():
            assert xsd.errors(doc) == []
