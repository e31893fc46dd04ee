"""one.vdc.* and one.vdcpool.info: the default VDC, groups, resources and their rules."""

from __future__ import annotations

from pathlib import Path

from lxml import etree
from twisted.trial.unittest import SynchronousTestCase

from oned.testing.rpc import OnedHarness
from tests.integration import xsd

SAMPLES = Path(__file__).resolve().parents[3].parent / "shared" / "samples"


def rule_strings(one: OnedHarness) -> list[str]:
    return [r.findtext("STRING") or "" for r in etree.fromstring(one.ok("one.acl.info"))]


class VdcTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.one = OnedHarness()
        self.addCleanup(self.one.close)

    def test_default_vdc_is_bootstrapped(self) -> None:
        """VDC 0 holds the users group and every cluster, as oned's bootstrap writes it."""
        body = self.one.ok("one.vdc.info", 0)
        sample = SAMPLES / "one.vdc.info.default-0.xml"
        expected = sample.read_text() if sample.exists() else None
        if expected is not None:
            # the sample was captured after group 100 joined
            expected = expected.replace("<ID>1</ID><ID>100</ID>", "<ID>1</ID>")
            self.assertEqual(body, expected)
        doc = etree.fromstring(body)
        self.assertEqual(doc.findtext("CLUSTERS/CLUSTER/CLUSTER_ID"), "-10")
        self.assertIn("@1 HOST/* MANAGE #0", rule_strings(self.one))

    def test_new_group_joins_default_and_leaves_on_delete(self) -> None:
        gid = self.one.ok("one.group.allocate", "devs")
        groups = etree.fromstring(self.one.ok("one.vdc.info", 0)).findall("GROUPS/ID")
        self.assertEqual([g.text for g in groups], ["1", str(gid)])
        self.one.ok("one.group.delete", gid)
        groups = etree.fromstring(self.one.ok("one.vdc.info", 0)).findall("GROUPS/ID")
        self.assertEqual([g.text for g in groups], ["1"])

    def test_allocate_and_errors(self) -> None:
        oid = self.one.ok("one.vdc.allocate", 'NAME="sample-vdc"\nDESCRIPTION="one group"')
        self.assertEqual(oid, 100)
        self.assertEqual(
            self.one.call("one.vdc.allocate", 'NAME="sample-vdc"')[1:3],
            ["[one.vdc.allocate] NAME is already taken by Vdc 100.", 0x2000],
        )
        self.assertEqual(
            self.one.call("one.vdc.allocate", "DESCRIPTION=x")[1],
            "[one.vdc.allocate] Invalid NAME, it cannot be empty",
        )
        self.assertEqual(
            self.one.call("one.vdc.info", 9999)[1:4],
            ["[one.vdc.info] Error getting VDC [9999].", 1024, 9999],
        )
        self.assertEqual(
            self.one.call("one.vdc.delete", 0)[1],
            "[one.vdc.delete] Cannot delete VDC. System VDCs (ID < 100) cannot be deleted.",
        )
        self.one.ok("one.vdc.addgroup", oid, 1)
        self.one.ok("one.vdc.addcluster", oid, 0, 0)
        self.one.ok("one.vdc.addhost", oid, 0, -10)
        if xsd.available():
            for body in (self.one.ok("one.vdc.info", oid), self.one.ok("one.vdcpool.info")):
                self.assertEqual(xsd.errors(body), [])
        pool = etree.fromstring(self.one.ok("one.vdcpool.info"))
        self.assertEqual(
            [v.findtext("ID") for v in pool.findall("VDC")], ["100", "0"]
        )  # descending, as oned lists pools

    def test_groups_and_resources_give_rules(self) -> None:
        gid = self.one.ok("one.group.allocate", "team")
        self.one.ok("one.group.delete", gid)  # gid 100 gone; use a fresh one
        gid = self.one.ok("one.group.allocate", "team2")
        cid = self.one.ok("one.cluster.allocate", "c100")
        oid = self.one.ok("one.vdc.allocate", "NAME=v")
        self.one.ok("one.vdc.delgroup", 0, gid)
        self.one.ok("one.vdc.addgroup", oid, gid)
        self.assertEqual(
            self.one.call("one.vdc.addgroup", oid, gid)[1],
            f"[one.vdc.addgroup] Group {gid} is already assigned to the VDC {oid}",
        )
        self.one.ok("one.vdc.addcluster", oid, 0, cid)
        strings = rule_strings(self.one)
        for text in (
            f"@{gid} HOST/%{cid} MANAGE #0",
            f"@{gid} NET/%{cid} USE #0",
            f"@{gid} DATASTORE/%{cid} USE #0",
        ):
            self.assertIn(text, strings)
        self.assertNotIn(f"@{gid} HOST/* MANAGE #0", strings)
        self.one.ok("one.vdc.adddatastore", oid, 0, 1)
        self.one.ok("one.vdc.addvnet", oid, 0, -10)
        self.assertIn(f"@{gid} DATASTORE/#1 USE #0", rule_strings(self.one))
        self.assertIn(f"@{gid} NET/* USE #0", rule_strings(self.one))
        self.assertEqual(
            self.one.call("one.vdc.addcluster", oid, 0, cid)[1],
            f"[one.vdc.addcluster] CLUSTER {cid} from Zone 0 is already assigned to the VDC",
        )
        self.assertEqual(
            self.one.call("one.vdc.delhost", oid, 0, 5)[1],
            "[one.vdc.delhost] HOST 5 from Zone 0 is not assigned to the VDC ",
        )
        self.assertEqual(
            self.one.call("one.vdc.addhost", oid, 0, 5)[1:4],
            ["[one.vdc.addhost] Error getting host [5].", 1024, 5],
        )
        self.assertEqual(
            self.one.call("one.vdc.addhost", oid, 7, 5)[1:4],
            ["[one.vdc.addhost] Error getting zone [7].", 1024, 7],
        )
        # ALL replaces the zone's single clusters, with their rules
        self.one.ok("one.vdc.addcluster", oid, 0, -10)
        doc = etree.fromstring(self.one.ok("one.vdc.info", oid))
        self.assertEqual([c.text for c in doc.findall("CLUSTERS/CLUSTER/CLUSTER_ID")], ["-10"])
        strings = rule_strings(self.one)
        self.assertNotIn(f"@{gid} HOST/%{cid} MANAGE #0", strings)
        self.assertIn(f"@{gid} HOST/* MANAGE #0", strings)
        # deleting the datastore takes it out of the VDC; deleting the VDC its rules
        self.one.ok("one.vdc.delcluster", oid, 0, -10)
        self.one.ok("one.vdc.addcluster", oid, 0, cid)
        self.one.ok("one.cluster.delete", cid)
        doc = etree.fromstring(self.one.ok("one.vdc.info", oid))
        self.assertEqual(doc.findall("CLUSTERS/CLUSTER"), [])
        self.one.ok("one.vdc.delete", oid)
        self.assertFalse([s for s in rule_strings(self.one) if s.startswith(f"@{gid} ")])

    def test_plain_user_needs_admin(self) -> None:
        self.one.ok("one.user.allocate", "joe", "pw", "")
        reply = self.one.call("one.vdc.allocate", "NAME=x", session="joe:pw")
        self.assertEqual(reply[2], 0x200)
        reply = self.one.call("one.vdc.addgroup", 0, 1, session="joe:pw")
        self.assertEqual(reply[2], 0x200)
