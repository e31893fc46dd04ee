"""Issue 7 through real clients: core answers as OpenNebula's oned 7.5.80 gives them.

Every case runs against a real ``oned -f`` process over HTTP, with pyone where it
returns what is compared and with ``xmlrpc.client`` where the whole failure array
(message, code, object id) is the point.
"""

from __future__ import annotations

import json
import xmlrpc.client
from pathlib import Path

import pyone
import pytest
from lxml import etree

from . import xsd
from .conftest import Daemon

pytestmark = pytest.mark.slow

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "samples"


def client(d: Daemon, session: str | None = None) -> pyone.OneServer:
    return pyone.OneServer(d.url, session=session or d.session, timeout=30)


def raw(d: Daemon) -> xmlrpc.client.ServerProxy:
    return xmlrpc.client.ServerProxy(d.url)


def sample(name: str) -> str:
    path = SAMPLES / name
    if not path.exists():
        pytest.skip(f"sample {name} not available")
    return path.read_text()


def test_system_config_alphabetical(tmp_path: Path) -> None:
    """1. Attributes in name order whatever the file's order (repeated names keep
    theirs), the oneadmin group sees DB in clear, others masked."""
    d = Daemon(
        tmp_path / "one",
        extra_conf='ZZ_LAST = "z"\nAA_FIRST = "a"\nMM_TWICE = "1"\nMM_TWICE = "2"',
    )
    d.start()
    try:
        doc = raw(d).one.system.config(d.session)[1]
        names = [c.tag for c in etree.fromstring(doc)]
        assert names == sorted(names)
        assert names[0] == "AA_FIRST" and names[-1] == "ZZ_LAST"
        assert "<MM_TWICE><![CDATA[1]]></MM_TWICE><MM_TWICE><![CDATA[2]]></MM_TWICE>" in doc
        assert doc.startswith("<OPENNEBULA_CONFIGURATION><AA_FIRST>")
        # defaults oned adds for what the file lacks, its <var>/ + /datastores included
        root = etree.fromstring(doc)
        assert root.findtext("DATASTORE_LOCATION") == f"{d.root}/var//datastores"
        assert root.findtext("COLD_MIGRATE_MODE") == "0"
    finally:
        d.stop()


def test_failure_resp_id(daemon: Daemon) -> None:
    """2. Only a missing object puts its id in the fourth element; authorization and
    lock refusals carry -1 (oned's samples)."""
    one = client(daemon)
    one.user.allocate("sampleuser", "samplepass", "")
    rpc = raw(daemon)
    refused = rpc.one.user.info("sampleuser:samplepass", 0)
    assert refused == [
        False,
        "[one.user.info] User [2] : Not authorized to perform USE USER [0].",
        512,
        -1,
        -1,
    ]
    assert refused == json.loads(sample("one.user.info.refused-plain-user.json"))
    doc = one.document.allocate('NAME="d"', 100)
    one.document.lock(doc, 2, False)
    assert rpc.one.document.update(daemon.session, doc, "A=1", 1) == [
        False,
        f"[one.document.update] User [0] : DOCUMENT is locked. [{doc}].",
        512,
        -1,
        -1,
    ]
    assert rpc.one.document.info(daemon.session, 77) == [
        False,
        "[one.document.info] Error getting document [77].",
        1024,
        77,
        -1,
    ]
    assert rpc.one.group.quota("sampleuser:samplepass", 1, "VM=[VMS=1]")[3] == -1


def test_template_parse_errors_in_bison_words(daemon: Daemon) -> None:
    """3. Template syntax errors answer bison's message with oned's token names."""
    rpc = raw(daemon)
    s = daemon.session
    assert rpc.one.document.allocate(s, "NAME = [", 100) == [
        False,
        "[one.document.allocate] Parse error: syntax error, unexpected $end, expecting "
        "CBRACKET or VARIABLE at line 0, columns 8:9",
        8192,
        -1,
        -1,
    ]
    assert rpc.one.user.update(s, 0, 'BROKEN = [ "')[1] == (
        "[one.user.update] Cannot update template. Parse error: syntax error, unexpected "
        "$end, expecting CBRACKET or VARIABLE at line 0, columns 12:13"
    )
    assert rpc.one.group.update(s, 1, 'CPU="1"\nMEMORY="64"\nDISK=[IMAGE_ID="0"')[1] == (
        "[one.group.update] Cannot update template. Parse error: syntax error, unexpected "
        "$end, expecting COMMA or CBRACKET at line 2, columns 36:39"
    )
    assert rpc.one.userquota.update(s, "VM=[VMS=1]]")[1:3] == [
        "[one.userquota.update] Parse error: syntax error, unexpected CBRACKET, expecting "
        "$end at line 0, columns 11:12",
        2048,
    ]
    assert rpc.one.user.update(s, 0, 'A = "x]]>"')[1] == (
        "[one.user.update] Cannot update template. Parse error."
    )
    # an open quote is a plain value for oned's scanner: no parse error
    assert rpc.one.user.update(s, 0, 'NOTE="open\nB=1', 1) == [True, 0, 0]
    assert client(daemon).user.info(0).TEMPLATE["NOTE"] == '"open'


def test_quota_errors_quote_the_owner(daemon: Daemon) -> None:
    """4. The refused VM vector shows the UID/GID oned adds to it."""
    one = client(daemon)
    gid = one.group.allocate("samplegroup")
    uid = one.user.allocate("sampleuser", "samplepass", "")
    rpc = raw(daemon)
    assert rpc.one.user.quota(daemon.session, uid, "VM=[VMS=-7]") == [
        False,
        f"[one.user.quota] Negative limits or bad format in quota VM = [ UID={uid},VMS=-7 ]",
        2048,
        -1,
        -1,
    ]
    assert rpc.one.group.quota(daemon.session, gid, "VM=[VMS=-7]") == [
        False,
        f"[one.group.quota] Negative limits or bad format in quota VM = [ GID={gid},VMS=-7 ]",
        2048,
        -1,
        -1,
    ]
    assert rpc.one.user.quota(daemon.session, uid, "DATASTORE=[ID=x,SIZE=1]")[1] == (
        "[one.user.quota] Negative limits or bad format in quota DATASTORE = [ ID=x,SIZE=1 ]"
    )
    one.group.quota(gid, 'VM=[VMS="20", MEMORY="8192", CPU="8"]')
    assert one.group.info(gid).VM_QUOTA.VM[0].VMS == "20"


def test_group_documents_carry_vlan_rules(daemon: Daemon) -> None:
    """5. GROUP documents end with VLAN_RULES (its ID as CDATA) before the default
    quotas, byte for byte as oned's samples; and they validate."""
    one = client(daemon)
    rpc = raw(daemon)
    for gid, name in ((0, "one.group.info.oneadmin.xml"),):
        doc = rpc.one.group.info(daemon.session, gid)[1]
        assert doc == sample(name)
        assert xsd.errors(doc) == []
    gid = one.group.allocate("samplegroup")
    doc = rpc.one.group.info(daemon.session, gid)[1]
    assert f"<VLAN_RULES><ID><![CDATA[{gid}]]></ID></VLAN_RULES><DEFAULT_GROUP_QUOTAS>" in doc
    pool = rpc.one.grouppool.info(daemon.session)[1]
    assert pool.count("<VLAN_RULES>") == 3
    assert xsd.errors(pool) == []
    user = rpc.one.user.info(daemon.session, 0)[1]
    assert "<PASSWORD><![CDATA[" in user and "<AUTH_DRIVER><![CDATA[core]]></AUTH_DRIVER>" in user


def test_default_quotas_as_oned_stores_them(daemon: Daemon) -> None:
    """6. Fresh defaults are empty (sample); a default VM quota fills missing metrics
    with -2; a refused update keeps what oned applied before the bad vector in memory
    (shown) but not in the database (gone after a restart)."""
    rpc = raw(daemon)
    s = daemon.session
    assert rpc.one.groupquota.info(s)[1] == sample("one.groupquota.info.xml")
    assert rpc.one.userquota.info(s)[1] == sample("one.userquota.info.xml")
    one = client(daemon)
    one.groupquota.update("VM=[VMS=40]")
    one.groupquota.update("VM=[MEMORY=1024]")
    vm = etree.fromstring(rpc.one.groupquota.info(s)[1]).find("VM_QUOTA/VM")
    assert vm is not None
    assert (vm.findtext("VMS"), vm.findtext("MEMORY"), vm.findtext("CPU")) == ("-2", "1024", "-2")
    refused = rpc.one.groupquota.update(s, "DATASTORE=[ID=1,SIZE=5]\nVM=[VMS=-7]")
    assert refused[1:3] == [
        "[one.groupquota.update] Negative limits or bad format in quota VM = [ VMS=-7 ]",
        2048,
    ]
    shown = etree.fromstring(rpc.one.groupquota.info(s)[1])
    assert shown.findtext("DATASTORE_QUOTA/DATASTORE/SIZE") == "5"
    daemon.stop()
    daemon.start()
    stored = etree.fromstring(raw(daemon).one.groupquota.info(s)[1])
    assert stored.find("DATASTORE_QUOTA/DATASTORE") is None
    assert stored.findtext("VM_QUOTA/VM/MEMORY") == "1024"


def test_disabled_zone_refuses_writes(daemon: Daemon) -> None:
    """7. one.zone.enable(0, false): STATE 1, every write refused with INTERNAL
    "Cannot process request, zone disabled", reads still served; it survives a
    restart; one.zone.enable(0, true) lifts it."""
    one = client(daemon)
    rpc = raw(daemon)
    s = daemon.session
    assert one.zone.enable(0, False) == 0
    assert one.zone.info(0).STATE == 1
    disabled = [False, "[one.group.allocate] Cannot process request, zone disabled", 8192, -1, -1]
    assert rpc.one.group.allocate(s, "late") == disabled
    assert rpc.one.user.update(s, 0, "A=1")[1:3] == [
        "[one.user.update] Cannot process request, zone disabled",
        8192,
    ]
    refused = rpc.one.acl.info(s)
    assert refused[1:3] == ["[one.acl.info] Cannot process request, zone disabled", 8192]
    assert one.user.info(0).NAME == "oneadmin"
    assert one.system.version().startswith("7.")
    assert rpc.one.userpool.info(s)[0] is True
    daemon.stop()
    daemon.start()
    assert raw(daemon).one.group.allocate(s, "late") == disabled
    one = client(daemon)
    assert one.zone.enable(0, True) == 0
    assert one.zone.info(0).STATE == 0
    assert one.group.allocate("late") == 100
    assert raw(daemon).one.zone.enable(s, 5, False)[1:3] == [
        "[one.zone.enable] Enable/disable mode have to be set through the target zone endpoints",
        2048,
    ]


def test_raftstatus_and_zone_as_samples(daemon: Daemon) -> None:
    """8, 9. RAFT of a solo server (LOG_INDEX/LOG_TERM -1) and the zone TEMPLATE with
    ENDPOINT_GRPC, byte for byte as oned's samples (our port in ENDPOINT)."""
    rpc = raw(daemon)
    s = daemon.session
    assert rpc.one.zone.raftstatus(s)[1] == sample("one.zone.raftstatus.xml")
    port = f"localhost:{daemon.port}/"
    assert rpc.one.zone.info(s, 0)[1].replace(port, "localhost:2633/") == sample(
        "one.zone.info.0.xml"
    )
    assert rpc.one.zonepool.info(s)[1].replace(port, "localhost:2633/") == sample(
        "one.zonepool.info.xml"
    )
    assert client(daemon).zone.info(0).TEMPLATE["ENDPOINT_GRPC"] == "localhost:2634"


def test_acl_order_is_oneds_multimap(daemon: Daemon) -> None:
    """10. Rules listed by user set as a signed 64-bit key (#uid < @gid < *), then by
    id; deleting and adding keeps that order; a user set with the top bit set (a
    negative key in oned) comes first."""
    one = client(daemon)
    gid = one.group.allocate("g")  # rules 6, 7, 8 for @100
    uid = one.user.allocate("u", "p", "", [gid])
    one.group.addadmin(gid, uid)  # rules 9..12 for #2
    r13 = one.acl.addrule("0x400000000", "0x400400000000", "0x1")  # * USER/* USE
    r14 = one.acl.addrule("0x100000000", "0x400400000000", "0x1")  # #0 USER/* USE
    one.acl.delrule(1)
    r15 = one.acl.addrule("-7FFFFFFEFFFFFFFE", "0x400400000000", "0x1")  # top bit + #2
    r16 = one.acl.addrule("0x200000001", "0x400400000000", "0x1")  # @1 USER/* USE
    ids = [r.ID for r in one.acl.info().ACL]
    assert ids == [r15, r14, 9, 10, 11, 12, 0, 3, 4, 5, r16, 6, 7, 8, 2, r13]
    daemon.stop()
    daemon.start()
    assert [r.ID for r in client(daemon).acl.info().ACL] == ids


def test_sqlquery_as_sample(daemon: Daemon) -> None:
    """one.system.sqlquery: byte for byte as oned's sample; refused to others."""
    one = client(daemon)
    one.group.allocate("samplegroup")
    one.user.allocate("sampleuser", "samplepass", "")
    rpc = raw(daemon)
    reply = rpc.one.system.sqlquery(daemon.session, "SELECT oid,name FROM user_pool")
    assert reply == [True, sample("one.system.sqlquery.xml"), 0]
    refused = rpc.one.system.sqlquery("sampleuser:samplepass", "SELECT 1")
    assert refused == json.loads(sample("one.system.sqlquery.refused-plain-user.json"))


def test_neighbours_zone_acl_introspection(daemon: Daemon) -> None:
    """Same family, same care: zone.allocate/delete of a standalone oned, ACL rules
    only as hex with malformed's reasons, oned's help and signature strings."""
    rpc = raw(daemon)
    s = daemon.session
    assert rpc.one.zone.allocate(s, "NAME=z") == [
        False,
        "[one.zone.allocate] Error allocating a new zone. New zones can only be created at "
        "federation master",
        16384,
        -1,
        -1,
    ]
    assert rpc.one.zone.delete(s, 0)[1:3] == [
        "[one.zone.delete] Cannot delete zone. System Zones (ID < 100) cannot be deleted.",
        2048,
    ]
    assert rpc.one.acl.addrule(s, "#3 DOCUMENT/#0 USE", "", "")[1].startswith(
        "[one.acl.addrule] Rule ?? /??  #0 is malformed: [user] is missing one of the "
    )
    assert rpc.system.methodHelp("one.zone.enable") == "Enable or disable zone"
    assert rpc.system.methodSignature("one.zone.enable") == [["array", "string", "int", "int"]]
