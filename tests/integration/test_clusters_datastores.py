"""Clusters and datastores end to end: pyone over HTTP against a real oned."""

from __future__ import annotations

import pyone
import pytest

from . import xsd
from .conftest import Daemon

pytestmark = pytest.mark.slow

IMAGE_DS = 'NAME="imgs"\nTYPE="IMAGE_DS"\nDS_MAD="dummy"\nTM_MAD="dummy"'
SYSTEM_DS = 'NAME="sys"\nTYPE="SYSTEM_DS"\nTM_MAD="ssh"'


def test_clusters_and_datastores_through_pyone(daemon: Daemon) -> None:
    one = pyone.OneServer(daemon.url, session=daemon.session, timeout=30)
    cid = one.cluster.allocate("prod")
    assert cid == 100
    img = one.datastore.allocate(IMAGE_DS, cid)
    sys_ds = one.datastore.allocate(SYSTEM_DS, -1)
    assert (img, sys_ds) == (100, 101)
    one.cluster.adddatastore(cid, sys_ds)
    cluster = one.cluster.info(cid)
    assert sorted(cluster.DATASTORES.ID) == [100, 101]
    ds = one.datastore.info(sys_ds)
    assert sorted(ds.CLUSTERS.ID) == [0, 100]
    assert ds.TEMPLATE["SHARED"] == "NO" and ds.TEMPLATE["DS_MIGRATE"] == "YES"
    assert ds.BASE_PATH.endswith(f"/datastores/{sys_ds}")

    one.datastore.enable(sys_ds, False)
    assert one.datastore.info(sys_ds).STATE == 1
    with pytest.raises(pyone.OneInternalException, match="Only SYSTEM_DS"):
        one.datastore.enable(img, False)
    with pytest.raises(pyone.OneInternalException, match='TM_MAD named "x" is not defined'):
        one.datastore.update(img, 'TM_MAD="x"', 1)
    with pytest.raises(pyone.OneActionException, match="is not empty, it contains 2 datastores"):
        one.cluster.delete(cid)
    with pytest.raises(pyone.OneNoExistsException):
        one.cluster.adddatastore(cid, 999)
    one.cluster.rename(cid, "production")
    one.cluster.update(cid, 'RESERVED_CPU="10%"', 1)

    # Everything survives a restart (state comes from the database).
    daemon.stop()
    daemon.start()
    one = pyone.OneServer(daemon.url, session=daemon.session, timeout=30)
    cluster = one.cluster.info(cid)
    assert cluster.NAME == "production"
    assert cluster.TEMPLATE["RESERVED_CPU"] == "10%"
    assert one.datastore.info(sys_ds).STATE == 1
    one.cluster.deldatastore(cid, sys_ds)
    one.datastore.delete(img)
    assert not one.cluster.info(cid).DATASTORES.ID
    one.cluster.delete(cid)
    with pytest.raises(pyone.OneNoExistsException):
        one.cluster.info(cid)
    assert [c.ID for c in one.clusterpool.info().CLUSTER] == [0]


def test_documents_validate(daemon: Daemon) -> None:
    """Every cluster and datastore document, single and pool, against the XSD."""
    import xmlrpc.client

    if not xsd.available():
        pytest.skip("../shared/xsd missing")
    rpc = xmlrpc.client.ServerProxy(daemon.url)
    s = daemon.session
    assert rpc.one.cluster.allocate(s, "c1")[0]
    assert rpc.one.datastore.allocate(s, IMAGE_DS, 100)[0]
    assert rpc.one.datastore.allocate(s, 'NAME="b"\nTYPE="BACKUP_DS"\nDS_MAD="dummy"', -1)[0]
    docs = [
        rpc.one.cluster.info(s, 0),
        rpc.one.cluster.info(s, 100),
        rpc.one.clusterpool.info(s),
        rpc.one.datastorepool.info(s),
        *(rpc.one.datastore.info(s, i) for i in (0, 1, 2, 100, 101)),
    ]
    for reply in docs:
        assert reply[0], reply
        assert xsd.errors(reply[1]) == [], reply[1][:200]


def test_concurrent_host_moves_stay_consistent(daemon: Daemon) -> None:
    """Many clients moving one host between clusters at once: it ends in exactly one."""
    import threading
    import xmlrpc.client

    s = daemon.session
    rpc = xmlrpc.client.ServerProxy(daemon.url)
    hid = rpc.one.host.allocate(s, "mover", "dummy", "dummy", -1)[1]
    cids = [rpc.one.cluster.allocate(s, f"c{i}")[1] for i in range(4)]
    errors: list[object] = []

    def mover(seed: int) -> None:
        proxy = xmlrpc.client.ServerProxy(daemon.url)
        for n in range(10):
            reply = proxy.one.cluster.addhost(s, cids[(seed + n) % 4], hid)
            if not reply[0]:
                errors.append(reply)

    threads = [threading.Thread(target=mover, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    one = pyone.OneServer(daemon.url, session=s, timeout=30)
    where = one.host.info(hid).CLUSTER_ID
    holders = [c.ID for c in one.clusterpool.info().CLUSTER if hid in (c.HOSTS.ID or [])]
    assert holders == [where]
