"""one.group.* and one.acl.* through the real request manager."""

from __future__ import annotations

from lxml import etree
from twisted.trial.unittest import SynchronousTestCase

from oned.testing.rpc import OnedHarness


class GroupTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.one = OnedHarness()
        self.addCleanup(self.one.close)

    def test_allocate_adds_vdc_rules(self) -> None:
        """New groups start at 100 and get the default VDC's three rules."""
        gid = self.one.ok("one.group.allocate", "devs")
        self.assertEqual(gid, 100)
        rules = etree.fromstring(self.one.ok("one.acl.info"))
        strings = [r.findtext("STRING") for r in rules]
        self.assertIn("@100 HOST/* MANAGE #0", strings)
        self.assertIn("@100 NET/* USE #0", strings)
        self.assertIn("@100 DATASTORE/* USE #0", strings)
        reply = self.one.call("one.group.allocate", "devs")
        self.assertEqual(
            reply[1:3], ["[one.group.allocate] NAME is already taken by GROUP 100.", 0x2000]
        )

    def test_delete_rules(self) -> None:
        """System groups and groups with users cannot be deleted; deletion drops rules."""
        self.assertEqual(
            self.one.call("one.group.delete", 1)[1],
            "[one.group.delete] Cannot delete group. System Groups (ID < 100) cannot be deleted.",
        )
        gid = self.one.ok("one.group.allocate", "tmp")
        uid = self.one.ok("one.user.allocate", "u1", "pw", "", [gid])
        self.assertEqual(
            self.one.call("one.group.delete", gid)[1],
            f"[one.group.delete] Cannot delete group. Group {gid} is not empty.",
        )
        self.one.ok("one.user.delete", uid)
        self.one.ok("one.group.delete", gid)
        rules = etree.fromstring(self.one.ok("one.acl.info"))
        self.assertFalse([r for r in rules if f"@{gid}" in (r.findtext("STRING") or "")])

    def test_group_info_and_membership_visibility(self) -> None:
        """Members can read their group, non-members cannot; -1 is the primary group."""
        gid = self.one.ok("one.group.allocate", "team")
        self.one.ok("one.user.allocate", "m", "pw", "", [gid])
        self.one.ok("one.user.allocate", "n", "pw", "")
        doc = etree.fromstring(self.one.ok("one.group.info", -1, session="m:pw"))
        self.assertEqual(doc.findtext("NAME"), "team")
        self.assertEqual(self.one.call("one.group.info", gid, session="n:pw")[2], 0x200)
        pool = etree.fromstring(self.one.ok("one.grouppool.info", session="m:pw"))
        self.assertEqual([g.findtext("NAME") for g in pool.findall("GROUP")], ["team"])

    def test_group_admins(self) -> None:
        """addadmin adds the four admin rules; deladmin removes them."""
        gid = self.one.ok("one.group.allocate", "ops")
        uid = self.one.ok("one.user.allocate", "boss", "pw", "", [gid])
        self.one.ok("one.group.addadmin", gid, uid)
        strings = [r.findtext("STRING") for r in etree.fromstring(self.one.ok("one.acl.info"))]
        self.assertIn(f"#{uid} USER/@{gid} USE+MANAGE+ADMIN+CREATE *", strings)
        self.assertIn(f"#{uid} GROUP/#{gid} MANAGE *", strings)
        worker = self.one.ok("one.user.allocate", "worker", "pw", "", [gid])
        pool = etree.fromstring(self.one.ok("one.userpool.info", session="boss:pw"))
        self.assertIn(str(worker), [u.findtext("ID") for u in pool.findall("USER")])
        self.one.ok("one.group.deladmin", gid, uid)
        strings = [r.findtext("STRING") for r in etree.fromstring(self.one.ok("one.acl.info"))]
        self.assertFalse([s for s in strings if s and s.startswith(f"#{uid} ")])


class AclApiTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.one = OnedHarness()
        self.addCleanup(self.one.close)

    def test_bootstrap_rules_order(self) -> None:
        """Fresh rules 0,3,4,5 (@1) then 1,2 (*), as oned lists them."""
        rules = etree.fromstring(self.one.ok("one.acl.info"))
        self.assertEqual([r.findtext("ID") for r in rules], ["0", "3", "4", "5", "1", "2"])
        self.assertEqual(rules[4].findtext("STRING"), "* ZONE/* USE *")

    def test_add_and_delete(self) -> None:
        """Hex rules are added once; duplicates, malformed rules and unknown ids fail."""
        oid = self.one.ok("one.acl.addrule", "0x100000002", "0x21400000000", "0x1")
        self.assertEqual(oid, 6)
        dup = self.one.call("one.acl.addrule", "100000002", "21400000000", "1", "")
        self.assertEqual(
            dup[1:3], ["[one.acl.addrule] Rule #2 VM+TEMPLATE/* USE #0 already exists", 0x2000]
        )
        bad = self.one.call("one.acl.addrule", "zz", "zz", "zz")
        self.assertEqual(bad[2], 0x2000)
        self.assertIn("is malformed", bad[1])
        self.one.ok("one.acl.delrule", oid)
        self.assertEqual(
            self.one.call("one.acl.delrule", oid)[1:3],
            [f"[one.acl.delrule] Rule {oid} does not exist", 0x2000],
        )

    def test_rule_grants_access(self) -> None:
        """A rule for a user lets it read another user's object."""
        self.one.ok("one.user.allocate", "a", "pw", "")
        self.one.ok("one.user.allocate", "b", "pw", "")
        doc = self.one.ok("one.document.allocate", 'NAME="d"', 1, session="a:pw")
        self.assertEqual(self.one.call("one.document.info", doc, session="b:pw")[2], 0x200)
        self.one.ok("one.acl.addrule", "0x100000003", "0x400100000000", "0x1")  # #3 DOCUMENT/#0 USE
        self.one.ok("one.document.info", doc, session="b:pw")

    def test_non_admin_cannot_manage_acl(self) -> None:
        """Plain users get AUTHORIZATION from every ACL call."""
        self.one.ok("one.user.allocate", "c", "pw", "")
        self.assertEqual(
            self.one.call("one.acl.info", session="c:pw")[1],
            "[one.acl.info] User [2] : Not authorized to perform MANAGE ACL.",
        )


class VlanTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.one = OnedHarness()
        self.addCleanup(self.one.close)

    def test_vlan_rules(self) -> None:
        """group.vlan replaces the rules, normalised; bad rules are ACTION errors."""
        gid = self.one.ok("one.group.allocate", "net")
        self.one.ok("one.group.vlan", gid, 'RULE=[ID="100-200,300", SCOPE="vlan_id"]')
        doc = etree.fromstring(self.one.ok("one.group.info", gid))
        rule = doc.find("VLAN_RULES/RULE")
        assert rule is not None
        self.assertEqual(
            [(c.tag, c.text) for c in rule],
            [("ID", "100-200,300"), ("SCOPE", "VLAN_ID"), ("VNTEMPLATE", "-1")],
        )
        self.assertEqual(
            self.one.call("one.group.vlan", gid, "RULE=[ID=x, SCOPE=ANY]")[1:3],
            ["[one.group.vlan] Invalid ID specification.", 0x800],
        )
        self.assertEqual(
            self.one.call("one.group.vlan", gid, "RULE=[ID=1, SCOPE=NO]")[1],
            "[one.group.vlan] Wrong SCOPE in rule.",
        )
        self.one.ok("one.group.vlan", gid, "")
        doc = etree.fromstring(self.one.ok("one.group.info", gid))
        self.assertIsNone(doc.find("VLAN_RULES/RULE"))
