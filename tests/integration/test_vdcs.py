"""VDCs through pyone against a real oned: a group's users see exactly its VDC's
resources."""

from __future__ import annotations

import xmlrpc.client

import pyone
import pytest

from . import xsd
from .conftest import Daemon

pytestmark = pytest.mark.slow


def test_group_sees_its_vdc_resources(daemon: Daemon) -> None:
    one = pyone.OneServer(daemon.url, session=daemon.session, timeout=30)
    cid = one.cluster.allocate("edge")
    one.cluster.adddatastore(cid, 1)
    gid = one.group.allocate("edge-team")
    assert one.vdc.info(0).GROUPS.ID == [1, gid]
    one.user.allocate("eve", "evepw", "", [gid])
    eve = pyone.OneServer(daemon.url, session="eve:evepw", timeout=30)
    # in the default VDC: every datastore of the zone (DATASTORE/* USE)
    assert {d.ID for d in eve.datastorepool.info().DATASTORE} == {0, 1, 2}

    vdc = one.vdc.allocate('NAME="edge-vdc"\nDESCRIPTION="edge only"')
    one.vdc.delgroup(0, gid)
    one.vdc.addgroup(vdc, gid)
    one.vdc.addcluster(vdc, 0, cid)
    # in its own VDC: the datastores of its cluster only (DATASTORE/%cid USE)
    assert [d.ID for d in eve.datastorepool.info().DATASTORE] == [1]
    info = one.vdc.info(vdc)
    assert (info.NAME, info.GROUPS.ID, info.CLUSTERS.CLUSTER[0].CLUSTER_ID) == (
        "edge-vdc",
        [gid],
        cid,
    )
    if xsd.available():
        raw = xmlrpc.client.ServerProxy(daemon.url)
        for answer in (raw.one.vdc.info(daemon.session, vdc), raw.one.vdcpool.info(daemon.session)):
            assert answer[0] and xsd.errors(answer[1]) == []
    with pytest.raises(pyone.OneInternalException):
        one.vdc.addcluster(vdc, 0, cid)
    with pytest.raises(pyone.OneActionException):
        one.vdc.delete(0)
    one.vdc.delete(vdc)
    assert eve.datastorepool.info().DATASTORE == []
