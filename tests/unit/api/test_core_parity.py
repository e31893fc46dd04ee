"""Issue 7 on the in-memory daemon: core answers as OpenNebula's oned gives them."""

from __future__ import annotations

from typing import Any
from xmlrpc.client import Fault

from lxml import etree
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from oned.api.dispatch import ZONE_DISABLED_ALLOWED
from oned.auth.acl import parse_hex, signed
from oned.testing.rpc import OnedHarness, result_of

DISABLED = "Cannot process request, zone disabled"


class ParityCase(SynchronousTestCase):
    extra_config = ""

    def setUp(self) -> None:
        self.one = OnedHarness(self.extra_config)
        self.addCleanup(self.one.close)

    def ok(self, method: str, *params: Any, session: str | None = None) -> Any:
        reply = self.one.call(method, *params, session=session)
        self.assertTrue(reply[0], (method, reply))
        return reply[1]

    def user(self, name: str = "sampleuser", *groups: int) -> int:
        uid: int = self.ok("one.user.allocate", name, "pw", "", list(groups))
        return uid


class SystemConfigTests(ParityCase):
    extra_config = 'ZZ_LAST = "z"\nAA_FIRST = "a"\nMM_TWICE = "1"\nMM_TWICE = "2"'

    def test_names_in_order(self) -> None:
        """1. oned's template is a multimap by name: alphabetical, repeats in order."""
        doc = self.ok("one.system.config")
        names = [c.tag for c in etree.fromstring(doc)]
        self.assertEqual(names, sorted(names))
        self.assertEqual((names[0], names[-1]), ("AA_FIRST", "ZZ_LAST"))
        self.assertIn("<MM_TWICE><![CDATA[1]]></MM_TWICE><MM_TWICE><![CDATA[2]]></MM_TWICE>", doc)

    def test_defaults_oned_adds(self) -> None:
        """Names the file lacks get OpenNebulaTemplate's defaults; per-driver sections
        get the default drivers the file does not configure, after the file's own."""
        root = etree.fromstring(self.ok("one.system.config"))
        self.assertTrue((root.findtext("DATASTORE_LOCATION") or "").endswith("/var//datastores"))
        self.assertEqual(root.findtext("COLD_MIGRATE_MODE"), "0")
        self.assertEqual(root.findtext("CONTEXT_SAFE_DIRS"), "")
        fed = root.find("FEDERATION")
        assert fed is not None
        auth = [v.findtext("NAME") for v in root.findall("AUTH_MAD_CONF")]
        self.assertEqual(len(auth), len(set(auth)))
        self.assertTrue({"core", "ldap", "server_x509"} <= set(auth))
        vn = [v.findtext("NAME") for v in root.findall("VN_MAD_CONF")]
        self.assertIn("nodeport", vn)
        tm = root.findall("TM_MAD_CONF")
        self.assertEqual(len({v.findtext("NAME") for v in tm}), len(tm))


class ConfigDefaultsOrderTests(SynchronousTestCase):
    def test_file_first_then_defaults(self) -> None:
        """A driver the file configures keeps the file's values; defaults follow."""
        from pathlib import Path

        from oned.config import parse_config_text
        from oned.locations import Locations

        config = parse_config_text(
            'TM_MAD_CONF = [ NAME = "ssh", SHARED = "maybe" ]\nACTION_TIMEOUT = 300',
            Locations.from_env({"ONE_LOCATION": "/srv/one"}),
        )
        tm = config.template.vectors("TM_MAD_CONF")
        self.assertEqual(tm[0], {"NAME": "ssh", "SHARED": "maybe"})
        self.assertEqual([v["NAME"] for v in tm].count("ssh"), 1)
        self.assertEqual(config.template.get("ACTION_TIMEOUT"), "300")
        self.assertEqual(config.template.get("MAX_ACTIONS_PER_HOST"), "2")
        self.assertEqual(
            config.template.get("DATASTORE_LOCATION"), f"{Path('/srv/one/var')}//datastores"
        )


class RespIdTests(ParityCase):
    def test_only_missing_objects_carry_their_id(self) -> None:
        """2. NO_EXISTS: the id asked for; authorization, lock and others: -1."""
        uid = self.user()
        self.assertEqual(
            self.one.call("one.user.info", 0, session="sampleuser:pw"),
            [False, f"[one.user.info] User [{uid}] : Not authorized to perform USE USER [0].",
             512, -1, -1],
        )  # fmt: skip
        doc = self.ok("one.document.allocate", "NAME=d", 100)
        self.ok("one.document.lock", doc, 2, False)
        self.assertEqual(
            self.one.call("one.document.update", doc, "A=1", 1),
            [False, f"[one.document.update] User [0] : DOCUMENT is locked. [{doc}].", 512, -1, -1],
        )
        self.assertEqual(
            self.one.call("one.document.info", 42),
            [False, "[one.document.info] Error getting document [42].", 1024, 42, -1],
        )
        self.assertEqual(self.one.call("one.group.quota", 1, "VM=[VMS=1]", session="sampleuser:pw")
                         [2:4], [512, -1])  # fmt: skip
        self.assertEqual(self.one.call("one.user.delete", 0)[3], -1)
        self.assertEqual(self.one.call("one.acl.delrule", 99)[2:4], [0x2000, -1])


class TemplateErrorTests(ParityCase):
    def test_bison_messages_through_the_api(self) -> None:
        """3. Allocate, update and quota calls answer oned's parse errors."""
        self.assertEqual(
            self.one.call("one.document.allocate", "NAME = [", 100)[1],
            "[one.document.allocate] Parse error: syntax error, unexpected $end, expecting "
            "CBRACKET or VARIABLE at line 0, columns 8:9",
        )
        self.assertEqual(
            self.one.call("one.user.update", 0, 'BROKEN = [ "')[1],
            "[one.user.update] Cannot update template. Parse error: syntax error, unexpected "
            "$end, expecting CBRACKET or VARIABLE at line 0, columns 12:13",
        )
        self.assertEqual(
            self.one.call("one.user.quota", 1, "VM=[VMS=]")[1],
            # after EQUAL the scanner skips the "]" it cannot match as a value
            "[one.user.quota] Parse error: syntax error, unexpected $end, expecting "
            "STRING at line 0, columns 9:10",
        )
        self.assertEqual(
            self.one.call("one.group.update", 1, "V = [ A = 1 ]]>")[1],
            "[one.group.update] Cannot update template. Parse error.",
        )

    def test_vm_allocate_samples(self) -> None:
        """oned's samples: an open quote is a plain value (the NAME check refuses it),
        and T30's error is at line 2, columns 36:39."""
        if "one.vm.allocate" not in self.one.manager.registry.methods:
            self.skipTest("one.vm.allocate not served")
        self.assertEqual(
            self.one.call("one.vm.allocate", 'NAME="broken\nCPU=1\n', False),
            [False, "[one.vm.allocate] Invalid NAME, char '\"' is not allowed", 8192, -1, -1],
        )
        self.assertEqual(
            self.one.call("one.vm.allocate", 'CPU="1"\nMEMORY="64"\nDISK=[IMAGE_ID="0"', True),
            [False, "[one.vm.allocate] Parse error: syntax error, unexpected $end, expecting "
             "COMMA or CBRACKET at line 2, columns 36:39", 8192, -1, -1],
        )  # fmt: skip


class QuotaTests(ParityCase):
    def test_owner_in_refused_vm_vector(self) -> None:
        """4. UID/GID go into every VM vector before it is applied."""
        gid = self.ok("one.group.allocate", "samplegroup")
        uid = self.user()
        self.assertEqual(
            self.one.call("one.user.quota", uid, "VM=[VMS=-7]"),
            [False, f"[one.user.quota] Negative limits or bad format in quota VM = "
             f"[ UID={uid},VMS=-7 ]", 2048, -1, -1],
        )  # fmt: skip
        self.assertEqual(
            self.one.call("one.group.quota", gid, "VM=[VMS=-7]")[1],
            f"[one.group.quota] Negative limits or bad format in quota VM = [ GID={gid},VMS=-7 ]",
        )

    def test_vector_checks(self) -> None:
        """Bad ids are "bad format"; CLUSTER_IDS are normalised and must exist once."""
        uid = self.user()
        self.assertEqual(
            self.one.call("one.user.quota", uid, "NETWORK=[ID=1.5, LEASES=1]")[1],
            "[one.user.quota] Negative limits or bad format in quota NETWORK = [ ID=1.5,LEASES=1 ]",
        )
        self.assertEqual(
            self.one.call("one.user.quota", uid, 'VM=[VMS=1, CLUSTER_IDS="0,7"]')[1],
            "[one.user.quota] Cluster 7 does not exist",
        )
        self.ok("one.user.quota", uid, 'VM=[VMS=1, CLUSTER_IDS="0,0"]')
        # "x,0, 0" is the same cluster set as "0": that entry is updated
        self.ok("one.user.quota", uid, 'VM=[VMS=2, CLUSTER_IDS="x,0, 0"]')
        self.assertEqual(
            self.one.call("one.user.quota", uid, 'VM=[VMS=-3, CLUSTER_IDS="0"]')[1],
            "[one.user.quota] Negative limits or bad format in quota VM = "
            f"[ CLUSTER_IDS=0,UID={uid},VMS=-3 ]",
        )
        vm = etree.fromstring(self.ok("one.user.info", uid)).find("VM_QUOTA/VM")
        assert vm is not None
        self.assertEqual((vm.findtext("CLUSTER_IDS"), vm.findtext("VMS")), ("0", "2"))
        # a cluster quota turns "default" (-1) limits into unlimited (-2)
        self.assertEqual(vm.findtext("CPU"), "-2")

    def test_limits_as_oned_writes_them(self) -> None:
        """float_to_str of a C float: whole numbers bare, others with two decimals."""
        uid = self.user()
        self.ok("one.user.quota", uid, "VM=[VMS=123456789, CPU=0.5, MEMORY=1.239]")
        vm = etree.fromstring(self.ok("one.user.info", uid)).find("VM_QUOTA/VM")
        assert vm is not None
        self.assertEqual(
            [vm.findtext(m) for m in ("VMS", "CPU", "MEMORY", "RUNNING_VMS")],
            ["123456792", "0.50", "1.24", "-1"],
        )

    def test_default_quotas_change_in_place(self) -> None:
        """6. Missing metrics are -2 in defaults; a refused update leaves what oned had
        applied before the bad vector (or the bad metric) in the shown defaults."""
        fresh = self.ok("one.groupquota.info")
        self.assertEqual(
            fresh,
            "<DEFAULT_GROUP_QUOTAS><DATASTORE_QUOTA></DATASTORE_QUOTA><NETWORK_QUOTA>"
            "</NETWORK_QUOTA><VM_QUOTA></VM_QUOTA><IMAGE_QUOTA></IMAGE_QUOTA>"
            "</DEFAULT_GROUP_QUOTAS>",
        )
        self.ok("one.groupquota.update", "VM=[VMS=40]")
        self.ok("one.groupquota.update", "VM=[MEMORY=1024]")
        vm = etree.fromstring(self.ok("one.groupquota.info")).find("VM_QUOTA/VM")
        assert vm is not None
        self.assertEqual((vm.findtext("VMS"), vm.findtext("MEMORY")), ("-2", "1024"))
        # VMS comes first in oned's metric order: set before CPU is refused
        reply = self.one.call("one.groupquota.update", "VM=[VMS=5, CPU=-1]")
        self.assertEqual(
            reply[1], "[one.groupquota.update] Negative limits or bad format in quota VM = "
            "[ CPU=-1,VMS=5 ]",
        )  # fmt: skip
        vm = etree.fromstring(self.ok("one.groupquota.info")).find("VM_QUOTA/VM")
        assert vm is not None
        self.assertEqual(
            [vm.findtext(m) for m in ("VMS", "RUNNING_VMS", "MEMORY")], ["5", "-2", "1024"]
        )
        # the database still holds the last good update
        stored = result_of(
            Deferred.fromCoroutine(
                self.one.db.run(
                    "read",
                    lambda c: c.execute(
                        "SELECT body FROM system_attributes WHERE name='DEFAULT_GROUP_QUOTAS'"
                    ).fetchone()[0],
                )
            )
        )
        self.assertIn("<VMS><![CDATA[-2]]></VMS>", stored)
        # the user defaults are their own
        self.assertIn("<VM_QUOTA></VM_QUOTA>", self.ok("one.userquota.info"))

    def test_default_vector_left_unlimited_is_dropped(self) -> None:
        self.ok("one.userquota.update", "DATASTORE=[ID=1, SIZE=3]")
        self.ok("one.userquota.update", "DATASTORE=[ID=1, SIZE=-2]")
        self.assertIn("<DATASTORE_QUOTA></DATASTORE_QUOTA>", self.ok("one.userquota.info"))


class GroupDocumentTests(ParityCase):
    def test_vlan_rules_and_cdata(self) -> None:
        """5. GROUP documents carry VLAN_RULES (ID as CDATA); USER's PASSWORD and
        AUTH_DRIVER are CDATA."""
        gid = self.ok("one.group.allocate", "g")
        self.assertIn(
            f"</IMAGE_QUOTA><VLAN_RULES><ID><![CDATA[{gid}]]></ID></VLAN_RULES>"
            "<DEFAULT_GROUP_QUOTAS>",
            self.ok("one.group.info", gid),
        )
        self.assertEqual(self.ok("one.grouppool.info").count("<VLAN_RULES><ID><![CDATA["), 3)
        user = self.ok("one.user.info", 0)
        self.assertIn("<PASSWORD><![CDATA[", user)
        self.assertIn("<AUTH_DRIVER><![CDATA[core]]></AUTH_DRIVER>", user)


class ZoneTests(ParityCase):
    def test_disabled_zone_refuses_writes(self) -> None:
        """7. A disabled zone refuses every method but oned's readers, before the
        parameters are even read."""
        self.assertEqual(self.ok("one.zone.enable", 0, False), 0)
        self.assertIn("<STATE>1</STATE>", self.ok("one.zone.info", 0))
        self.assertEqual(
            self.one.call("one.group.allocate", "late"),
            [False, f"[one.group.allocate] {DISABLED}", 8192, -1, -1],
        )
        refused, served = [], []
        for name in sorted(self.one.manager.registry.methods):
            try:
                reply = self.one.call(name)
            except Fault:  # served: it went on to read its (missing) parameters
                reply = []
            (refused if reply[:2] == [False, f"[{name}] {DISABLED}"] else served).append(name)
        self.assertEqual(
            set(served), ZONE_DISABLED_ALLOWED & set(self.one.manager.registry.methods)
        )
        for name in ("one.acl.info", "one.cluster.info", "one.user.login", "one.user.update"):
            self.assertIn(name, refused)
        for name in ("one.user.info", "one.groupquota.info", "one.zone.raftstatus"):
            self.assertIn(name, served)
        self.assertEqual(self.ok("one.zone.enable", 0, True), 0)
        self.assertEqual(self.ok("one.group.allocate", "late"), 100)

    def test_enable_errors(self) -> None:
        uid = self.user()
        self.assertEqual(
            self.one.call("one.zone.enable", 3, False)[1:3],
            ["[one.zone.enable] Enable/disable mode have to be set through the target zone "
             "endpoints", 2048],
        )  # fmt: skip
        self.assertEqual(
            self.one.call("one.zone.enable", 0, False, session="sampleuser:pw")[1:4],
            [f"[one.zone.enable] User [{uid}] : Not authorized to perform ADMIN ZONE [0].",
             512, -1],
        )  # fmt: skip

    def test_raftstatus_and_template(self) -> None:
        """8, 9. Solo RAFT status (LOG_INDEX -1) and ENDPOINT_GRPC in the zone."""
        self.assertEqual(
            self.ok("one.zone.raftstatus"),
            "<RAFT><SERVER_ID>-1</SERVER_ID><STATE>0</STATE><TERM>0</TERM><VOTEDFOR>-1"
            "</VOTEDFOR><COMMIT>0</COMMIT><LOG_INDEX>-1</LOG_INDEX><LOG_TERM>-1</LOG_TERM>"
            "<FEDLOG_INDEX>-1</FEDLOG_INDEX></RAFT>",
        )
        self.assertIn(
            "<ENDPOINT_GRPC><![CDATA[localhost:2634]]></ENDPOINT_GRPC></TEMPLATE>",
            self.ok("one.zone.info", 0),
        )


class ZoneFamilyTests(ParityCase):
    def test_allocate_and_delete(self) -> None:
        """A standalone oned refuses new zones before reading the template; zone 0 is
        a system zone."""
        self.assertEqual(
            self.one.call("one.zone.allocate", "NAME = ["),
            [False, "[one.zone.allocate] Error allocating a new zone. New zones can only be "
             "created at federation master", 0x4000, -1, -1],
        )  # fmt: skip
        self.assertEqual(
            self.one.call("one.zone.delete", 0)[1:3],
            ["[one.zone.delete] Cannot delete zone. System Zones (ID < 100) cannot be "
             "deleted.", 0x800],
        )  # fmt: skip
        self.assertEqual(self.one.call("one.zone.delete", 9)[3], 9)


class SqlQueryTests(ParityCase):
    def test_rows_as_oned_writes_them(self) -> None:
        """Rows in the order SQLite gives them, values as CDATA, XML values base64 in
        a <name>64 element; oneadmin only; a failing or writing query: ACTION, -200."""
        self.ok("one.group.allocate", "samplegroup")
        uid = self.user("sampleuser")
        self.assertEqual(
            self.ok("one.system.sqlquery", "SELECT oid,name FROM user_pool"),
            "<SQL_COMMAND><QUERY><![CDATA[SELECT oid,name FROM user_pool]]></QUERY><RESULT>"
            "<ROW><oid><![CDATA[0]]></oid><name><![CDATA[oneadmin]]></name></ROW>"
            "<ROW><oid><![CDATA[2]]></oid><name><![CDATA[sampleuser]]></name></ROW>"
            "<ROW><oid><![CDATA[1]]></oid><name><![CDATA[serveradmin]]></name></ROW>"
            "</RESULT></SQL_COMMAND>",
        )
        self.assertIn(
            "<body64><![CDATA[PFpPTkU+",
            self.ok("one.system.sqlquery", "SELECT body FROM zone_pool"),
        )
        self.assertEqual(
            self.one.call("one.system.sqlquery", "SELECT 1", session="sampleuser:pw"),
            [False, f"[one.system.sqlquery] User [{uid}] not authorized to perform action on -.",
             512, -1, -1],
        )  # fmt: skip
        for bad in ("SELEC 1", "DELETE FROM user_pool"):
            self.assertEqual(
                self.one.call("one.system.sqlquery", bad),
                [False, "[one.system.sqlquery] ", 2048, -200, -1],
            )
        self.assertEqual(self.ok("one.user.info", uid).count("<NAME>sampleuser</NAME>"), 1)


class ZoneServerTests(ParityCase):
    def test_servers_in_the_server_pool(self) -> None:
        """addserver/delserver edit SERVER_POOL (ids from the highest + 1, as oned
        rebuilds them); wrong zone, missing SERVER/NAME/endpoint are refused."""
        add = "one.zone.addserver"
        self.assertEqual(self.ok(add, 0, 'SERVER=[NAME="s1", ENDPOINT="http://a:2633/RPC2"]'), 0)
        self.ok(add, 0, 'SERVER=[NAME="s2", ENDPOINT_GRPC="b:2634"]')
        self.assertIn(
            "<SERVER_POOL><SERVER><ENDPOINT><![CDATA[http://a:2633/RPC2]]></ENDPOINT>"
            "<ID><![CDATA[0]]></ID><NAME><![CDATA[s1]]></NAME></SERVER><SERVER>"
            "<ENDPOINT_GRPC><![CDATA[b:2634]]></ENDPOINT_GRPC><ID><![CDATA[1]]></ID>"
            "<NAME><![CDATA[s2]]></NAME></SERVER></SERVER_POOL></ZONE>",
            self.ok("one.zone.info", 0),
        )
        for params, text in (
            ((0, 'SERVER=[NAME="s3"]'), "Missing ENDPOINT or ENDPOINT_GRPC in SERVER"),
            ((0, 'SERVER=[ENDPOINT="x"]'), "Missing NAME in SERVER"),
            ((0, "FOO=1"), "SERVER not found in template"),
            ((4, "FOO=1"), "Servers have to be added through the target zone endpoints"),
        ):
            self.assertEqual(self.one.call(add, *params)[1:3], [f"[{add}] {text}", 0x800])
        self.ok("one.zone.delserver", 0, 1)
        self.assertEqual(
            self.one.call("one.zone.delserver", 0, 1)[1],
            "[one.zone.delserver] SERVER not found in zone",
        )
        self.ok(add, 0, 'SERVER=[NAME="s4", ENDPOINT="e"]')
        self.assertIn("<ID><![CDATA[1]]></ID><NAME><![CDATA[s4]]>", self.ok("one.zone.info", 0))
        self.assertEqual(self.ok("one.zone.resetserver", 0, 7), 0)


class IntrospectionTests(ParityCase):
    def test_help_and_signature_as_oned_registers_them(self) -> None:
        """system.methodHelp/methodSignature give oned's strings, types spelled out."""
        self.assertEqual(
            self.one.raw("system.methodHelp", "one.user.info"), "Returns user information"
        )
        self.assertEqual(
            self.one.raw("system.methodSignature", "one.user.info"),
            [["array", "string", "int", "boolean"]],
        )
        # oned advertises ints for enable although it reads a boolean
        self.assertEqual(
            self.one.raw("system.methodSignature", "one.zone.enable"),
            [["array", "string", "int", "int"]],
        )
        self.assertEqual(
            self.one.raw("system.methodHelp", "one.zone.enable"), "Enable or disable zone"
        )


class AclOrderTests(ParityCase):
    def test_multimap_order(self) -> None:
        """10. By signed user set (#uid < @gid < *; top bit first), then id."""
        gid = self.ok("one.group.allocate", "g")
        uid = self.user("u", gid)
        self.ok("one.group.addadmin", gid, uid)
        r13 = self.ok("one.acl.addrule", "0x400000000", "0x400400000000", "0x1")
        r14 = self.ok("one.acl.addrule", "0x100000000", "0x400400000000", "0x1")
        self.ok("one.acl.delrule", 1)
        r15 = self.ok("one.acl.addrule", "-7FFFFFFEFFFFFFFE", "0x400400000000", "0x1")
        r16 = self.ok("one.acl.addrule", "0x200000001", "0x400400000000", "0x1")
        rules = etree.fromstring(self.ok("one.acl.info"))
        self.assertEqual(
            [int(r.findtext("ID") or -1) for r in rules],
            [r15, r14, 9, 10, 11, 12, 0, 3, 4, 5, r16, 6, 7, 8, 2, r13],
        )
        self.assertEqual(rules[0].findtext("USER"), "8000000100000002")

    def test_deletes_drop_only_exact_resource_rules(self) -> None:
        """Deleting object 0 drops rules on exactly ``DOCUMENT/#0``; a rule on
        ``TEMPLATE+DOCUMENT/#0`` stays, in its place."""
        doc = self.ok("one.document.allocate", "NAME=d", 100)
        exact = self.ok("one.acl.addrule", "100000000", "400100000000", "1")
        both = self.ok("one.acl.addrule", "100000000", "420100000000", "1")
        self.ok("one.document.delete", doc)
        ids = [int(r.findtext("ID") or -1) for r in etree.fromstring(self.ok("one.acl.info"))]
        self.assertEqual(ids, [both, 0, 3, 4, 5, 1, 2])
        self.assertNotIn(exact, ids)

    def test_malformed_as_oned_words_it(self) -> None:
        """Only hex numbers: a rule string is read as oned reads it (nothing parsable is
        0) and refused with AclRule::malformed's reasons; the zone's GROUP reason has
        no separator; ids are the low 32 bits as a signed int."""
        self.assertEqual(
            self.one.call("one.acl.addrule", "#3 DOCUMENT/#0 USE", "", "")[1:3],
            ["[one.acl.addrule] Rule ?? /??  #0 is malformed: [user] is missing one of the "
             "INDIVIDUAL, GROUP or ALL bits; [resource] is missing one of the INDIVIDUAL, "
             "GROUP, CLUSTER or ALL bits; [resource] type is missing; wrong [rights], it "
             "cannot be 0", 0x2000],
        )  # fmt: skip
        self.assertEqual(
            self.one.call("one.acl.addrule", "1ffffffff", "400400000000", "0", "200000000")[1],
            "[one.acl.addrule] Rule #-1 DOCUMENT/*  ?? is malformed: [user] ID cannot be "
            "negative; wrong [rights], it cannot be 0[zone] GROUP (@) bit is not supported",
        )
        # the HOOK type bit is no ACL type: no name in the string, "wrong type"
        self.assertEqual(
            self.one.call("one.acl.addrule", "100000002", "80000400000000", "1")[1],
            "[one.acl.addrule] Rule #2 /* USE #0 is malformed: wrong [resource] type",
        )

    def test_hex_like_istringstream(self) -> None:
        cases = {
            "0x100000002": 0x100000002,
            " 100000002 ": 0x100000002,
            "1g": 1,
            "zz": 0,
            "-1": (1 << 64) - 1,
            "ffffffffffffffffff": (1 << 63) - 1,
            "-ffffffffffffffffff": 1 << 63,
        }
        for text, value in cases.items():
            self.assertEqual(parse_hex(text), value, text)
        self.assertEqual(signed(1 << 63), -(1 << 63))
