"""The shared machinery (SharedAPI) exercised through documents and datastores."""

from __future__ import annotations

from lxml import etree
from twisted.trial.unittest import SynchronousTestCase

from oned.testing.rpc import OnedHarness


class SharedTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.one = OnedHarness()
        self.addCleanup(self.one.close)
        self.uid = self.one.ok("one.user.allocate", "ann", "pw", "")
        self.sess = "ann:pw"

    def doc(self, name: str, session: str | None = None) -> int:
        return int(
            self.one.ok(
                "one.document.allocate", f'NAME="{name}"\nA=1', 7, session=session or self.sess
            )
        )

    def test_allocate_owner_and_umask(self) -> None:
        """New objects belong to the caller with umask 177 permissions (um- --- ---)."""
        oid = self.doc("d1")
        doc = etree.fromstring(self.one.ok("one.document.info", oid))
        self.assertEqual(doc.findtext("UNAME"), "ann")
        self.assertEqual(doc.findtext("GNAME"), "users")
        perms = [
            int(doc.findtext(f"PERMISSIONS/{p}") or -1)
            for p in ("OWNER_U", "OWNER_M", "OWNER_A", "GROUP_U", "OTHER_U")
        ]
        self.assertEqual(perms, [1, 1, 0, 0, 0])

    def test_pool_filters_and_paging(self) -> None:
        """-4..-1, uid filters, id ranges and paging, newest first."""
        mine = [self.doc(f"d{i}") for i in range(5)]
        admin_doc = self.doc("adm", session=self.one.admin)

        def ids(*args: int, session: str | None = None) -> list[int]:
            pool = etree.fromstring(
                self.one.ok("one.documentpool.info", *args, session=session or self.sess)
            )
            return [int(d.findtext("ID") or -1) for d in pool]

        self.assertEqual(ids(-2, -1, -1, -1), mine[::-1])
        self.assertEqual(ids(-3, -1, -1, 7), mine[::-1])
        self.assertEqual(ids(-2, -1, -1, -1, session=self.one.admin), [admin_doc, *mine[::-1]])
        self.assertEqual(ids(0, -1, -1, -1, session=self.one.admin), [admin_doc])
        self.assertEqual(ids(-2, mine[1], mine[3], -1), [mine[3], mine[2], mine[1]])
        self.assertEqual(ids(-2, 1, -2, -1), [mine[3], mine[2]])
        self.assertEqual(ids(-2, -1, -1, 99), [])
        self.assertEqual(
            self.one.call("one.documentpool.info", -5, -1, -1, -1)[1:3],
            ["[one.documentpool.info] Incorrect filter_flag", 0x1000],
        )

    def test_chmod_and_group_visibility(self) -> None:
        """chmod opens an object to the group; ADMIN bits need ADMIN rights."""
        oid = self.doc("shared")
        self.one.ok("one.user.allocate", "bea", "pw", "")
        self.assertEqual(self.one.call("one.document.info", oid, session="bea:pw")[2], 0x200)
        self.one.ok("one.document.chmod", oid, -1, -1, -1, 1, -1, -1, -1, -1, -1)
        self.one.ok("one.document.info", oid, session="bea:pw")
        reply = self.one.call(
            "one.document.chmod", oid, -1, -1, 1, -1, -1, -1, -1, -1, -1, session=self.sess
        )
        self.assertEqual(reply[2], 0x200)
        self.assertEqual(
            self.one.call("one.document.chmod", oid, 2, -1, -1, -1, -1, -1, -1, -1, -1)[1:3],
            ["[one.document.chmod] New permission values must be -1, 0 or 1", 0x2000],
        )

    def test_chown(self) -> None:
        """chown changes owner and group; missing targets are NO_EXISTS."""
        oid = self.doc("c")
        self.one.ok("one.document.chown", oid, 0, 0)
        doc = etree.fromstring(self.one.ok("one.document.info", oid))
        self.assertEqual((doc.findtext("UNAME"), doc.findtext("GNAME")), ("oneadmin", "oneadmin"))
        self.assertEqual(
            self.one.call("one.document.chown", oid, 77, -1)[1:4],
            ["[one.document.chown] Error getting user [77].", 0x400, 77],
        )

    def test_rename(self) -> None:
        """Rename validates names."""
        oid = self.doc("r")
        self.one.ok("one.document.rename", oid, "r2")
        self.assertEqual(self.one.call("one.document.rename", oid, "bad/name")[2], 0x800)

    def test_lock_unlock(self) -> None:
        """Locks block manage operations, test=true returns the lock time, unlock frees."""
        oid = self.doc("l")
        self.one.ok("one.document.lock", oid, 2, False, session=self.sess)
        doc = etree.fromstring(self.one.ok("one.document.info", oid))
        self.assertEqual(doc.findtext("LOCK/LOCKED"), "2")
        reply = self.one.call("one.document.update", oid, "B=1", 1)
        self.assertEqual(
            reply[1:3], [f"[one.document.update] User [0] : DOCUMENT is locked. [{oid}].", 0x200]
        )
        test = self.one.call("one.document.lock", oid, 1, True)
        self.assertEqual(test[1:3], [f"[one.document.lock] {int(self.one.clock.seconds())}", 0x800])
        self.assertEqual(self.one.call("one.document.lock", oid, 9)[2], 0x800)
        self.one.ok("one.document.unlock", oid, session=self.sess)
        self.one.ok("one.document.update", oid, "B=1", 1)

    def test_non_lockable(self) -> None:
        """Objects without locks refuse lock calls (users have no lock method at all)."""
        self.assertEqual(self.one.call("one.document.lock", 999, 1)[2], 0x400)

    def test_delete_and_clone(self) -> None:
        """Clone copies the template; delete removes the object."""
        oid = self.doc("orig")
        copy = self.one.ok("one.document.clone", oid, "copy", session=self.sess)
        doc = etree.fromstring(self.one.ok("one.document.info", copy))
        self.assertEqual(doc.findtext("TEMPLATE/A"), "1")
        self.one.ok("one.document.delete", oid, session=self.sess)
        self.assertEqual(self.one.call("one.document.info", oid)[2], 0x400)

    def test_datastore_chmod_chown(self) -> None:
        """Datastores share the same chmod/chown code."""
        self.one.ok("one.datastore.chmod", 1, -1, -1, -1, -1, -1, -1, 1, -1, -1)
        ds = etree.fromstring(self.one.ok("one.datastore.info", 1))
        self.assertEqual(ds.findtext("PERMISSIONS/OTHER_U"), "1")
        self.one.ok("one.datastore.chown", 1, self.uid, 1)
        ds = etree.fromstring(self.one.ok("one.datastore.info", 1))
        self.assertEqual(ds.findtext("UNAME"), "ann")


class SystemTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.one = OnedHarness()
        self.addCleanup(self.one.close)

    def test_version(self) -> None:
        """The version is on the 7.4 line (opennebula-cli accepts it)."""
        self.assertTrue(self.one.ok("one.system.version").startswith("7.4"))

    def test_config_masks_db_for_non_admins(self) -> None:
        """Non-oneadmin-group users see *** for DB credentials."""
        self.one.ok("one.user.allocate", "z", "pw", "")
        admin = self.one.ok("one.system.config")
        self.assertIn("<BACKEND><![CDATA[sqlite]]></BACKEND>", admin)
        user = self.one.ok("one.system.config", session="z:pw")
        self.assertIn("<BACKEND>***</BACKEND>", user)

    def test_faults(self) -> None:
        """Unknown methods, missing and mistyped parameters are XML-RPC faults."""
        import xmlrpc.client

        for args, code in (
            (("one.nope.x", "a"), -506),
            (("one.user.info",), -500),
            (("one.user.info", self.one.admin), -501),
            (("one.user.info", self.one.admin, "1"), -501),
            (("one.user.info", self.one.admin, True), -501),
            (("one.user.enable", self.one.admin, 2, 1), -501),
        ):
            with self.assertRaises(xmlrpc.client.Fault) as ctx:
                self.one.raw(*args)
            self.assertEqual(ctx.exception.faultCode, code, args)
        self.assertEqual(self.one.ok("one.userpool.info", -2, -1, -1)[:11], "<USER_POOL>")

    def test_multicall_and_list_methods(self) -> None:
        """system.multicall runs each call with its own session."""
        results = self.one.raw(
            "system.multicall",
            [
                {"methodName": "one.system.version", "params": [self.one.admin]},
                {"methodName": "one.nope", "params": []},
            ],
        )
        self.assertTrue(results[0][0][0])
        self.assertEqual(results[1]["faultCode"], -506)
        self.assertIn("one.user.info", self.one.raw("system.listMethods"))

    def test_malformed_body(self) -> None:
        """A body that is not XML-RPC gives fault -503."""
        import xmlrpc.client

        from twisted.internet.defer import Deferred

        from oned.testing.rpc import result_of

        for body in (
            b"garbage",
            b"<methodCall>",
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY'
            b' a "b">]><methodCall><methodName>x</methodName></methodCall>',
        ):
            reply = result_of(Deferred.fromCoroutine(self.one.manager.handle_body(body)))
            with self.assertRaises(xmlrpc.client.Fault) as ctx:
                xmlrpc.client.loads(reply)
            self.assertEqual(ctx.exception.faultCode, -503)


class ListOrderTests(SynchronousTestCase):
    def test_user_template_overrides_list_order(self) -> None:
        """OPENNEBULA=[API_LIST_ORDER=ASC] in the user template lists oldest first."""
        one = OnedHarness()
        self.addCleanup(one.close)
        first = one.ok("one.document.allocate", 'NAME="a"', 1)
        second = one.ok("one.document.allocate", 'NAME="b"', 1)
        pool = etree.fromstring(one.ok("one.documentpool.info", -2, -1, -1, -1))
        self.assertEqual([d.findtext("ID") for d in pool], [str(second), str(first)])
        one.ok("one.user.update", 0, "OPENNEBULA=[API_LIST_ORDER=ASC]", 1)
        pool = etree.fromstring(one.ok("one.documentpool.info", -2, -1, -1, -1))
        self.assertEqual([d.findtext("ID") for d in pool], [str(first), str(second)])


class AuthorizationMessageTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.one = OnedHarness()
        self.addCleanup(self.one.close)

    def test_locked_object_for_owner_is_not_authorized(self) -> None:
        """A non-admin hitting a lock gets 'Not authorized', admins get 'is locked'."""
        self.one.ok("one.user.allocate", "own", "pw", "")
        doc = self.one.ok("one.document.allocate", 'NAME="x"', 1, session="own:pw")
        self.one.ok("one.document.lock", doc, 1, False, session="own:pw")
        reply = self.one.call("one.document.update", doc, "A=1", 1, session="own:pw")
        self.assertEqual(
            reply[1],
            f"[one.document.update] User [2] : Not authorized to perform MANAGE DOCUMENT [{doc}].",
        )

    def test_every_refusal_is_listed(self) -> None:
        """All failed auth requests of one call are joined with '; '."""
        self.one.ok("one.user.allocate", "plain", "pw", "")
        gid = self.one.ok("one.group.allocate", "other")
        reply = self.one.call("one.user.allocate", "x", "y", "", [gid], session="plain:pw")
        self.assertEqual(
            reply[1],
            "[one.user.allocate] User [2] : Not authorized to perform "
            f"CREATE USER; Not authorized to perform MANAGE GROUP [{gid}].",
        )
        missing = self.one.call("one.user.allocate", "x", "y", "", [404], session="plain:pw")
        self.assertEqual(missing[1:3], ["[one.user.allocate] Error getting group [404].", 0x400])

    def test_restricted_attribute_messages(self) -> None:
        """Replace and merge refuse restricted attributes with oned's two texts."""
        uid = self.one.ok("one.user.allocate", "r", "pw", "")
        merge = self.one.call("one.user.update", uid, "VM_USE_OPERATIONS=a", 1, session="r:pw")
        self.assertEqual(
            merge[1],
            "[one.user.update] Cannot update template. User Template "
            "includes a restricted attribute VM_USE_OPERATIONS",
        )
        replace = self.one.call("one.user.update", uid, "VM_USE_OPERATIONS=a", 0, session="r:pw")
        self.assertEqual(
            replace[1],
            "[one.user.update] Cannot update template. Tried to change "
            "restricted attribute: VM_USE_OPERATIONS",
        )
