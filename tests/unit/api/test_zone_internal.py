"""one.zone.replicate/voterequest/fedreplicate/updatedb as a solo oned answers them."""

from __future__ import annotations

from lxml import etree
from twisted.trial.unittest import SynchronousTestCase

from oned.testing.rpc import OnedHarness


class ZoneInternalTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.one = OnedHarness()
        self.addCleanup(self.one.close)
        self.one.ok("one.user.allocate", "joe", "pw", "")

    def test_replicate(self) -> None:
        self.assertEqual(
            self.one.call("one.zone.replicate", 0, 0, 0, 0, 0, 0, 0, 0, ""), [True, 0, 0]
        )
        reply = self.one.call("one.zone.replicate", 0, 0, 0, 0, 0, 0, 0, 0, "", session="joe:pw")
        self.assertEqual(reply[2:4], [0x200, 0])
        reply = self.one.call("one.zone.replicate", 1, 0, 1, 3, 1, 2, 1, 0, "")
        self.assertEqual(
            reply[1:4], ["[one.zone.replicate] Empty SQL command in log record", 0x800, 0]
        )
        reply = self.one.call("one.zone.replicate", 1, 0, 1, 3, 1, 2, 1, 0, "DELETE FROM acl")
        self.assertEqual(reply[1], "[one.zone.replicate] Error loading previous log record")

    def test_voterequest(self) -> None:
        reply = self.one.call("one.zone.voterequest", 1, -1, 0, 0)
        self.assertEqual(reply[2:4], [0x2000, 0])
        reply = self.one.call("one.zone.voterequest", 1, 2, 10, 1)
        self.assertEqual(
            reply[1:4], ["[one.zone.voterequest] Candidate's log is outdated", 0x800, 0]
        )
        self.assertEqual(
            self.one.call("one.zone.voterequest", 1, 2, 0, 0, session="joe:pw")[2], 0x200
        )

    def test_fedreplicate(self) -> None:
        reply = self.one.call("one.zone.fedreplicate", 4, 3, "")
        self.assertEqual(
            reply[1:5],
            ["[one.zone.fedreplicate] Received an empty SQL command at index4", 0x10000, -1, -1],
        )
        reply = self.one.call("one.zone.fedreplicate", 4, 3, "SELECT 1")
        self.assertEqual(
            reply[1],
            "[one.zone.fedreplicate] Cannot replicate federate log records on federation master",
        )

    def test_updatedb(self) -> None:
        body = self.one.ok("one.zone.info", 0)
        changed = body.replace("<NAME>OpenNebula</NAME>", "<NAME>Renamed</NAME>")
        self.assertEqual(self.one.ok("one.zone.updatedb", 0, changed), 0)
        self.assertEqual(
            etree.fromstring(self.one.ok("one.zone.info", 0)).findtext("NAME"), "Renamed"
        )
        self.assertEqual(
            self.one.call("one.zone.updatedb", 0, "<nope")[1],
            "[one.zone.updatedb] Cannot update object from XML",
        )
        self.assertEqual(
            self.one.call("one.zone.updatedb", 0, changed.replace("<ID>0</ID>", "<ID>5</ID>", 1))[
                1
            ],
            "[one.zone.updatedb] Consistency check failed",
        )
        self.assertEqual(self.one.call("one.zone.updatedb", 9, changed)[2:4], [0x400, 9])
        self.assertEqual(self.one.call("one.zone.updatedb", 0, changed, session="joe:pw")[2], 0x200)
