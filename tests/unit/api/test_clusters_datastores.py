"""Clusters and datastores: allocate, delete, enable, membership, conf-driven templates."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.internet.defer import Deferred

from oned.testing.rpc import OnedHarness, result_of

SAMPLES = Path(__file__).resolve().parents[4] / "shared" / "samples"

T3 = 'NAME="sample-images"\nTYPE="IMAGE_DS"\nDS_MAD="dummy"\nTM_MAD="dummy"'
T4 = 'NAME="sample-system"\nTYPE="SYSTEM_DS"\nTM_MAD="dummy"'
T5 = 'NAME="sample-backups"\nTYPE="BACKUP_DS"\nDS_MAD="dummy"\nTM_MAD="-"'


@pytest.fixture
def h() -> Iterator[OnedHarness]:
    harness = OnedHarness(extra_config='DATASTORE_LOCATION = "/var/lib/one//datastores"')
    yield harness
    harness.close()


def _volatile(doc: str) -> str:
    """Capacity is monitored (ours: not in a driverless harness)."""
    return re.sub(r"<(TOTAL_MB|FREE_MB|USED_MB)>\d+</\1>", r"<\1>0</\1>", doc)


def _sample(name: str) -> str:
    return _volatile((SAMPLES / name).read_text())


needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason="../shared/samples missing")


@needs_samples
def test_allocated_datastores_match_oned(h: OnedHarness) -> None:
    assert h.ok("one.cluster.allocate", "samplecluster") == 100
    assert h.ok("one.datastore.allocate", T3, -1) == 100
    assert h.ok("one.datastore.allocate", T4, 100) == 101
    assert h.ok("one.datastore.allocate", T5, -1) == 102
    assert h.ok("one.cluster.adddatastore", 100, 100) == 100
    assert _relation(h) == [(0, 0), (0, 1), (0, 2), (0, 100), (0, 102), (100, 100), (100, 101)]
    assert _volatile(h.ok("one.datastore.info", 100)) == _sample(
        "one.datastore.info.new-image-empty.xml"
    )
    for oid, name in ((101, "new-system"), (102, "new-backup")):
        assert _volatile(h.ok("one.datastore.info", oid)) == _sample(
            f"one.datastore.info.{name}.xml"
        )


@needs_samples
def test_bootstrap_datastores_switched_to_dummy_match_oned(h: OnedHarness) -> None:
    for oid, name in ((0, "system-0"), (1, "default-1"), (2, "files-2")):
        h.ok("one.datastore.update", oid, 'TM_MAD="dummy"\nDS_MAD="dummy"', 1)
        assert _volatile(h.ok("one.datastore.info", oid)) == _sample(
            f"one.datastore.info.{name}.xml"
        )


def test_datastore_allocate_errors(h: OnedHarness) -> None:
    def err(text: str, cid: int = -1) -> list[object]:
        reply = h.call("one.datastore.allocate", text, cid)
        assert reply[0] is False
        return list(reply[1:3])

    assert err('NAME="x"\nTM_MAD="dummy"') == [
        "[one.datastore.allocate] No DS_MAD in template.",
        8192,
    ]
    assert err('NAME="x"\nTYPE="SYSTEM_DS"\nDS_MAD="fs"\nTM_MAD="dummy"')[0] == (
        "[one.datastore.allocate] SYSTEM datastores cannot have DS_MAD defined."
    )
    assert err('NAME="x"\nDS_MAD="nope"\nTM_MAD="dummy"')[0] == (
        '[one.datastore.allocate] DS_MAD named "nope" is not defined in oned.conf'
    )
    assert err('NAME="x"\nDS_MAD="dummy"\nTM_MAD="nope"')[0] == (
        '[one.datastore.allocate] TM_MAD named "nope" is not defined in oned.conf'
    )
    assert err('NAME="x"\nDS_MAD="dummy"')[0] == "[one.datastore.allocate] No TM_MAD in template."
    assert err('NAME="x"\nDS_MAD="ceph"\nTM_MAD="ceph"\nDISK_TYPE="RBD"')[0] == (
        '[one.datastore.allocate] Datastore template is missing the "BRIDGE_LIST" '
        "attribute or it's empty."
    )
    assert err('NAME="x"\nDS_MAD="dummy"\nTM_MAD="dummy"\nDISK_TYPE="CDROM"')[0] == (
        "[one.datastore.allocate] Invalid DISK_TYPE for an Image Datastore."
    )
    assert err('NAME="x"\nDS_MAD="dummy"\nTM_MAD="dummy"\nDISK_TYPE="PAPER"')[0] == (
        "[one.datastore.allocate] Unknown DISK_TYPE in template."
    )
    assert err('NAME="default"\nDS_MAD="dummy"\nTM_MAD="dummy"')[0] == (
        "[one.datastore.allocate] NAME is already taken by DATASTORE 1."
    )
    assert err('DS_MAD="dummy"\nTM_MAD="dummy"')[0] == (
        "[one.datastore.allocate] Invalid NAME, it cannot be empty"
    )
    assert err('NAME="x"\nDS_MAD="dummy"\nTM_MAD="dummy"', 555) == [
        "[one.datastore.allocate] Error getting cluster [555].",
        1024,
    ]
    assert err('NAME = [ "') [1] == 8192
    # Nothing was created, and the next id is still 100.
    assert h.ok("one.datastore.allocate", T3, -1) == 100


def test_enable_only_system_datastores(h: OnedHarness) -> None:
    assert h.ok("one.datastore.enable", 0, False) == 0
    assert "<STATE>1</STATE>" in h.ok("one.datastore.info", 0)
    assert h.ok("one.datastore.enable", 0, True) == 0
    assert "<STATE>0</STATE>" in h.ok("one.datastore.info", 0)
    reply = h.call("one.datastore.enable", 1, False)
    assert reply[1:3] == ["[one.datastore.enable] Only SYSTEM_DS can be disabled or enabled", 8192]


def test_datastore_delete_leaves_its_clusters(h: OnedHarness) -> None:
    h.ok("one.cluster.allocate", "c1")
    ds = h.ok("one.datastore.allocate", T3, 100)
    h.ok("one.cluster.adddatastore", 0, ds)
    assert "<ID>100</ID></DATASTORES>" in h.ok("one.cluster.info", 0)
    reply = h.call("one.cluster.delete", 100)
    assert reply[1:3] == [
        "[one.cluster.delete] Cannot delete cluster. Cluster 100 is not empty, "
        "it contains 1 datastores.",
        2048,
    ]
    assert h.ok("one.datastore.delete", ds) == ds
    assert "<DATASTORES></DATASTORES>" in h.ok("one.cluster.info", 100)
    assert "<ID>100</ID>" not in h.ok("one.cluster.info", 0)
    assert h.ok("one.cluster.delete", 100) == 100
    assert _relation(h) == [(0, 0), (0, 1), (0, 2)]


def _relation(h: OnedHarness) -> list[tuple[int, int]]:
    def query(conn: sqlite3.Connection) -> list[tuple[int, int]]:
        sql = "SELECT cid, oid FROM cluster_datastore_relation ORDER BY cid, oid"
        return [(int(c), int(o)) for c, o in conn.execute(sql)]

    rows: list[tuple[int, int]] = result_of(Deferred.fromCoroutine(h.db.run("relation", query)))
    return rows


def test_cluster_rules(h: OnedHarness) -> None:
    assert h.call("one.cluster.allocate", "default")[1:3] == [
        "[one.cluster.allocate] Error allocating a new cluster. NAME is already taken by "
        "CLUSTER 0.",
        16384,
    ]
    assert h.call("one.cluster.delete", 0)[1:3] == [
        "[one.cluster.delete] Cannot delete cluster. System Clusters (ID < 100) cannot be "
        "deleted.",
        2048,
    ]
    assert h.call("one.cluster.adddatastore", 0, 999)[1:4] == [
        "[one.cluster.adddatastore] Error getting datastore [999].",
        1024,
        999,
    ]
    assert h.call("one.cluster.adddatastore", 999, 1)[1:4] == [
        "[one.cluster.adddatastore] Error getting cluster [999].",
        1024,
        999,
    ]
    # Adding twice, or removing what is not there, is a silent success.
    assert h.ok("one.cluster.adddatastore", 0, 1) == 0
    assert h.ok("one.cluster.deldatastore", 0, 1) == 0
    assert h.ok("one.cluster.deldatastore", 0, 1) == 0
    assert "<CLUSTERS></CLUSTERS>" in h.ok("one.datastore.info", 1)


def test_update_reapplies_driver_conf(h: OnedHarness) -> None:
    ds = h.ok("one.datastore.allocate", T3, -1)
    reply = h.call("one.datastore.update", ds, 'TM_MAD="nope"', 1)
    assert reply[1:3] == [
        '[one.datastore.update] Cannot update template. TM_MAD named "nope" is not defined '
        "in oned.conf",
        8192,
    ]
    h.ok("one.datastore.update", ds, 'TM_MAD="ssh"', 1)
    doc = h.ok("one.datastore.info", ds)
    assert "<TM_MAD><![CDATA[ssh]]></TM_MAD>" in doc
    assert "<LN_TARGET><![CDATA[SYSTEM]]></LN_TARGET>" in doc
    assert "<ALLOW_ORPHANS><![CDATA[YES]]></ALLOW_ORPHANS>" in doc


def test_plain_user_cannot_allocate(h: OnedHarness) -> None:
    h.ok("one.user.allocate", "u1", "pw", "")
    reply = h.call("one.datastore.allocate", T3, -1, session="u1:pw")
    assert reply[0] is False and reply[2] == 512
    reply = h.call("one.cluster.allocate", "cc", session="u1:pw")
    assert reply[0] is False and reply[2] == 512


def test_hosts_move_between_clusters(h: OnedHarness) -> None:
    hid = h.ok("one.host.allocate", "node1", "dummy", "dummy", -1)
    assert "<HOSTS><ID>0</ID></HOSTS>" in h.ok("one.cluster.info", 0)
    cid = h.ok("one.cluster.allocate", "c1")
    h.ok("one.cluster.update", cid, 'RESERVED_CPU="100"\nRESERVED_MEM="50%"', 1)
    assert h.ok("one.cluster.addhost", cid, hid) == cid
    doc = h.ok("one.host.info", hid)
    assert f"<CLUSTER_ID>{cid}</CLUSTER_ID><CLUSTER>c1</CLUSTER>" in doc
    assert "<HOSTS></HOSTS>" in h.ok("one.cluster.info", 0)
    assert f"<HOSTS><ID>{hid}</ID></HOSTS>" in h.ok("one.cluster.info", cid)
    # Moving it again is a silent success; the cluster cannot go while it holds it.
    assert h.ok("one.cluster.addhost", cid, hid) == cid
    assert h.call("one.cluster.delete", cid)[1] == (
        "[one.cluster.delete] Cannot delete cluster. Cluster 100 is not empty, it contains "
        "1 hosts."
    )
    h.ok("one.cluster.rename", cid, "c2")
    assert "<CLUSTER>c2</CLUSTER>" in h.ok("one.host.info", hid)
    assert h.call("one.cluster.addhost", cid, 77)[1:4] == [
        "[one.cluster.addhost] Error getting host [77].",
        1024,
        77,
    ]
    # delhost answers the cluster id it was given and puts the host back in cluster 0.
    assert h.ok("one.cluster.delhost", cid, hid) == cid
    assert "<CLUSTER_ID>0</CLUSTER_ID><CLUSTER>default</CLUSTER>" in h.ok("one.host.info", hid)
    assert h.ok("one.cluster.delete", cid) == cid


def test_cluster_reservations_reach_hosts(h: OnedHarness) -> None:
    hid = h.ok("one.host.allocate", "node1", "dummy", "dummy", -1)
    host = h.core.hosts.get(hid)
    assert host is not None
    host = host.copy()
    host.share.total_cpu, host.share.total_mem = 800, 16_000_000
    host.share.max_cpu, host.share.max_mem = 800, 16_000_000
    h.core.hosts._remember(host)
    h.ok("one.cluster.update", 0, 'RESERVED_CPU="100"\nRESERVED_MEM="50%"', 1)
    doc = h.ok("one.host.info", hid)
    assert "<MAX_CPU>700</MAX_CPU>" in doc
    assert "<MAX_MEM>8000000</MAX_MEM>" in doc
