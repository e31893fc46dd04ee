"""one.system.sql: oneadmin's statements reach the database and the pools read it again."""

from __future__ import annotations

from lxml import etree
from twisted.trial.unittest import SynchronousTestCase

from oned.testing.rpc import OnedHarness


class SystemSqlTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.one = OnedHarness()
        self.addCleanup(self.one.close)

    def test_write_reaches_the_pools(self) -> None:
        gid = self.one.ok("one.group.allocate", "g1")
        body = self.one.ok("one.group.info", gid)
        renamed = body.replace("<NAME>g1</NAME>", "<NAME>g2</NAME>")
        statement = f"UPDATE group_pool SET name='g2', body='{renamed}' WHERE oid={gid}"
        self.assertEqual(self.one.call("one.system.sql", statement, False), [True, 0, 0])
        self.assertEqual(
            etree.fromstring(self.one.ok("one.group.info", gid)).findtext("NAME"), "g2"
        )
        self.one.ok("one.system.sql", f"DELETE FROM group_pool WHERE oid={gid}", False)
        self.assertEqual(self.one.call("one.group.info", gid)[2], 0x400)
        # the ACL engine follows its table too
        rules = len(etree.fromstring(self.one.ok("one.acl.info")))
        self.one.ok("one.system.sql", "DELETE FROM acl WHERE oid=(SELECT MAX(oid) FROM acl)", False)
        self.assertEqual(len(etree.fromstring(self.one.ok("one.acl.info"))), rules - 1)

    def test_refusals(self) -> None:
        self.assertEqual(
            self.one.call("one.system.sql", "UPDATE nosuch SET a=1", False)[1:4],
            ["[one.system.sql] ", 0x800, -200],
        )
        self.assertEqual(self.one.call("one.system.sql", "SELEC", False)[3], -200)
        self.one.ok("one.user.allocate", "joe", "pw", "")
        reply = self.one.call("one.system.sql", "DELETE FROM acl", False, session="joe:pw")
        self.assertEqual(reply[2], 0x200)
        self.assertGreater(len(etree.fromstring(self.one.ok("one.acl.info"))), 0)
