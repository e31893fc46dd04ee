"""one.user.* through the real request manager on an in-memory database."""

from __future__ import annotations

from lxml import etree
from twisted.trial.unittest import SynchronousTestCase

from oned.auth import server_cipher
from oned.testing.rpc import OnedHarness


class UserTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.one = OnedHarness()
        self.addCleanup(self.one.close)

    def test_bootstrap_users(self) -> None:
        """oneadmin (0) from ONE_AUTH and serveradmin (1) exist; new users start at 2."""
        pool = etree.fromstring(self.one.ok("one.userpool.info"))
        self.assertEqual(
            [u.findtext("NAME") for u in pool.findall("USER")], ["serveradmin", "oneadmin"]
        )
        self.assertEqual(pool[-1].tag, "DEFAULT_USER_QUOTAS")
        self.assertEqual(self.one.ok("one.user.allocate", "alice", "pw", ""), 2)

    def test_allocate_defaults_and_login(self) -> None:
        """A user created by oneadmin lands in group users, core driver, SHA-256 password."""
        uid = self.one.ok("one.user.allocate", "bob", "secret", "")
        doc = etree.fromstring(self.one.ok("one.user.info", uid))
        self.assertEqual(doc.findtext("GID"), "1")
        self.assertEqual(doc.findtext("AUTH_DRIVER"), "core")
        self.assertEqual(len(doc.findtext("PASSWORD") or ""), 64)
        self.assertEqual(len(doc.findtext("TEMPLATE/TOKEN_PASSWORD") or ""), 64)
        me = etree.fromstring(self.one.ok("one.user.info", -1, session="bob:secret"))
        self.assertEqual(me.findtext("NAME"), "bob")
        group = etree.fromstring(self.one.ok("one.group.info", 1))
        self.assertEqual([i.text for i in group.findall("USERS/ID")], [str(uid)])

    def test_allocate_errors(self) -> None:
        """Bad names, passwords, duplicates and missing groups get oned's messages."""
        self.one.ok("one.user.allocate", "carol", "pw", "")
        cases = [
            (("carol", "x", ""), 0x2000, "[one.user.allocate] NAME is already taken by USER 2."),
            (
                ("a b", "x", ""),
                0x2000,
                "[one.user.allocate] Invalid NAME, char ' ' is not allowed.",
            ),
            (("dave", "", ""), 0x2000, "[one.user.allocate] Invalid password, it cannot be empty."),
            (("dave", "x", "", [55]), 0x400, "[one.user.allocate] Error getting group [55]."),
        ]
        for params, code, message in cases:
            reply = self.one.call("one.user.allocate", *params)
            self.assertEqual(reply[:3], [False, message, code], params)

    def test_authentication_failures(self) -> None:
        """Wrong password, unknown user, malformed and non-string sessions all fail alike."""
        self.one.ok("one.user.allocate", "erin", "pw", "")
        for session in ("erin:bad", "nobody:pw", "erin", "", ":pw"):
            reply = self.one.raw("one.user.info", session, -1)
            self.assertEqual(
                reply,
                [
                    False,
                    "[one.user.info] User couldn't be authenticated, aborting call.",
                    0x100,
                    -1,
                    -1,
                ],
            )
        self.assertFalse(self.one.raw("one.user.info", 42, -1)[0])

    def test_disable_enable(self) -> None:
        """Disabled users cannot authenticate; oneadmin cannot be disabled."""
        uid = self.one.ok("one.user.allocate", "frank", "pw", "")
        self.one.ok("one.user.enable", uid, False)
        self.assertEqual(self.one.call("one.user.info", -1, session="frank:pw")[2], 0x100)
        self.one.ok("one.user.enable", uid, True)
        self.one.ok("one.user.info", -1, session="frank:pw")
        reply = self.one.call("one.user.enable", 0, False)
        self.assertEqual(
            reply[1:3], ["[one.user.enable] Cannot enable/disable oneadmin user", 0x800]
        )

    def test_passwd_and_session_cache(self) -> None:
        """A new password works at once and the old one stops working."""
        uid = self.one.ok("one.user.allocate", "gina", "old", "")
        self.one.ok("one.user.info", -1, session="gina:old")
        self.one.ok("one.user.passwd", uid, "new", session="gina:old")
        self.assertEqual(self.one.call("one.user.info", -1, session="gina:old")[2], 0x100)
        self.one.ok("one.user.info", -1, session="gina:new")

    def test_sha1_password_upgraded(self) -> None:
        """A legacy SHA-1 hash is accepted once and rewritten as SHA-256."""
        import hashlib

        uid = self.one.ok("one.user.allocate", "hank", "x", "")
        user = self.one.core.users.get(uid)
        assert user is not None
        legacy = user.copy()
        legacy.password = hashlib.sha1(b"pw").hexdigest()  # noqa: S324
        self.one.core.users._remember(legacy)
        self.one.ok("one.user.info", -1, session="hank:pw")
        stored = self.one.core.users.get(uid)
        assert stored is not None
        self.assertEqual(stored.password, hashlib.sha256(b"pw").hexdigest())

    def test_login_tokens(self) -> None:
        """Tokens authenticate until they expire; EGID narrows the groups; 0 revokes."""
        uid = self.one.ok("one.user.allocate", "ivy", "pw", "")
        token = self.one.ok("one.user.login", "ivy", "", 60, session="ivy:pw")
        self.assertEqual(len(token), 64)
        self.one.ok("one.user.info", -1, session=f"ivy:{token}")
        doc = etree.fromstring(self.one.ok("one.user.info", uid))
        self.assertEqual(doc.findtext("LOGIN_TOKEN/EGID"), "-1")
        self.one.clock.advance(61)
        self.assertEqual(self.one.call("one.user.info", -1, session=f"ivy:{token}")[2], 0x100)
        scoped = self.one.ok("one.user.login", "ivy", "mytoken", -1, 1, session="ivy:pw")
        self.assertEqual(scoped, "mytoken")
        self.one.ok("one.user.login", "ivy", "mytoken", 0, session="ivy:pw")
        self.assertEqual(self.one.call("one.user.info", -1, session="ivy:mytoken")[2], 0x100)
        bad = self.one.call("one.user.login", "ivy", "", 10, 0, session="ivy:pw")
        self.assertEqual(bad[1:3], ["[one.user.login] EGID is not in user group list", 0x1000])
        missing = self.one.call("one.user.login", "nobody", "", 10)
        self.assertEqual(missing[1:4], ["[one.user.login] Error getting user Pool.", 0x400, -1])

    def test_server_cipher_proxy(self) -> None:
        """serveradmin:target:token runs as the target user; a bad token fails."""
        self.one.ok("one.user.allocate", "jane", "pw", "")
        server = self.one.core.users.get(1)
        assert server is not None
        now = int(self.one.clock.seconds())
        secret = server_cipher.sign("serveradmin", "jane", now + 60, server.password)
        me = etree.fromstring(self.one.ok("one.user.info", -1, session=f"serveradmin:{secret}"))
        self.assertEqual(me.findtext("NAME"), "jane")
        expired = server_cipher.sign("serveradmin", "jane", now - 1, server.password)
        self.assertEqual(
            self.one.call("one.user.info", -1, session=f"serveradmin:{expired}")[2], 0x100
        )
        self.assertEqual(
            self.one.call("one.user.info", -1, session="serveradmin:jane:zzz")[2], 0x100
        )

    def test_delete(self) -> None:
        """Users can be deleted (not oneadmin); they leave their groups."""
        uid = self.one.ok("one.user.allocate", "kim", "pw", "")
        reply = self.one.call("one.user.delete", 0)
        self.assertEqual(
            reply[1:3], ["[one.user.delete] Cannot delete user. oneadmin cannot be deleted.", 0x800]
        )
        self.assertEqual(self.one.ok("one.user.delete", uid), uid)
        self.assertEqual(
            self.one.call("one.user.info", uid)[1:4],
            [f"[one.user.info] Error getting user [{uid}].", 0x400, uid],
        )
        group = etree.fromstring(self.one.ok("one.group.info", 1))
        self.assertEqual(group.findall("USERS/ID"), [])

    def test_non_admin_limits(self) -> None:
        """A plain user sees only itself and may not create or delete users."""
        uid = self.one.ok("one.user.allocate", "leo", "pw", "")
        pool = etree.fromstring(self.one.ok("one.userpool.info", session="leo:pw"))
        self.assertEqual([u.findtext("ID") for u in pool.findall("USER")], [str(uid)])
        reply = self.one.call("one.user.allocate", "x", "y", "", session="leo:pw")
        self.assertEqual(
            reply[1:3],
            ["[one.user.allocate] User [2] : Not authorized to perform CREATE USER.", 0x200],
        )
        reply = self.one.call("one.user.delete", uid, session="leo:pw")
        self.assertEqual(reply[2], 0x200)

    def test_groups_membership(self) -> None:
        """chgrp, addgroup and delgroup keep both sides consistent."""
        gid = self.one.ok("one.group.allocate", "devs")
        uid = self.one.ok("one.user.allocate", "mia", "pw", "")
        self.one.ok("one.user.addgroup", uid, gid)
        self.assertEqual(
            self.one.call("one.user.addgroup", uid, gid)[1],
            "[one.user.addgroup] User is already in this group",
        )
        self.one.ok("one.user.chgrp", uid, gid)
        doc = etree.fromstring(self.one.ok("one.user.info", uid))
        self.assertEqual(doc.findtext("GID"), str(gid))
        self.assertEqual([i.text for i in doc.findall("GROUPS/ID")], ["1", str(gid)])
        self.assertEqual(
            self.one.call("one.user.delgroup", uid, gid)[1],
            "[one.user.delgroup] Cannot remove user from the primary group",
        )
        self.one.ok("one.user.delgroup", uid, 1)
        users = etree.fromstring(self.one.ok("one.group.info", 1))
        self.assertEqual(users.findall("USERS/ID"), [])

    def test_update_replace_and_merge(self) -> None:
        """Mode 0 replaces, mode 1 merges, other modes are refused."""
        uid = self.one.ok("one.user.allocate", "ned", "pw", "")
        self.one.ok("one.user.update", uid, 'A="1"\nB="2"', 0)
        self.one.ok("one.user.update", uid, 'B="3"\nC="4"', 1)
        doc = etree.fromstring(self.one.ok("one.user.info", uid))
        self.assertEqual(
            [(c.tag, c.text) for c in doc.find("TEMPLATE")], [("A", "1"), ("B", "3"), ("C", "4")]
        )
        self.assertEqual(
            self.one.call("one.user.update", uid, "A=1", 7)[1:3],
            ["[one.user.update] Wrong update type", 0x1000],
        )
        self.assertEqual(self.one.call("one.user.update", uid, "A=[", 0)[2], 0x2000)

    def test_restricted_attributes(self) -> None:
        """Non-admins cannot set VM_*_OPERATIONS in their own template."""
        uid = self.one.ok("one.user.allocate", "ola", "pw", "")
        reply = self.one.call("one.user.update", uid, 'VM_USE_OPERATIONS="x"', 1, session="ola:pw")
        self.assertEqual(reply[2], 0x2000)
        self.one.ok("one.user.update", uid, 'VM_USE_OPERATIONS="x"', 1)

    def test_quotas(self) -> None:
        """Quota limits are stored, rendered as strings, and defaults can be set."""
        uid = self.one.ok("one.user.allocate", "pat", "pw", "")
        self.one.ok("one.user.quota", uid, "VM=[VMS=4, CPU=1.5]\nDATASTORE=[ID=1, SIZE=100]")
        doc = etree.fromstring(self.one.ok("one.user.info", uid))
        self.assertEqual(doc.findtext("VM_QUOTA/VM/VMS"), "4")
        self.assertEqual(doc.findtext("VM_QUOTA/VM/CPU"), "1.50")
        self.assertEqual(doc.findtext("VM_QUOTA/VM/MEMORY"), "-1")
        self.assertEqual(doc.findtext("DATASTORE_QUOTA/DATASTORE/SIZE"), "100")
        self.assertEqual(
            self.one.call("one.user.quota", 0, "VM=[VMS=1]")[1],
            "[one.user.quota] Cannot set quotas for oneadmin user",
        )
        self.assertEqual(self.one.call("one.user.quota", uid, "VM=[VMS=-5]")[2], 0x800)
        defaults = self.one.ok("one.userquota.update", "VM=[VMS=10]")
        self.assertIn("<VMS><![CDATA[10]]></VMS>", defaults)
        self.assertEqual(self.one.ok("one.userquota.info"), defaults)
        reply = self.one.call("one.userquota.update", "VM=[VMS=1]", session="pat:pw")
        self.assertEqual(reply[2], 0x200)

    def test_chauth(self) -> None:
        """chauth changes the driver; a public user can no longer log in with a password."""
        uid = self.one.ok("one.user.allocate", "quin", "pw", "")
        self.one.ok("one.user.chauth", uid, "public", "")
        self.assertEqual(self.one.call("one.user.info", -1, session="quin:pw")[2], 0x100)


class EncryptionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.one = OnedHarness()
        self.addCleanup(self.one.close)

    def test_encrypted_attributes(self) -> None:
        """USER_ENCRYPTED_ATTR values are stored encrypted; admins may ask to decrypt."""
        uid = self.one.ok("one.user.allocate", "enc", "pw", "")
        self.one.ok("one.user.update", uid, 'SSH_PRIVATE_KEY="secret-key"\nOTHER="x"', 1)
        plain = etree.fromstring(self.one.ok("one.user.info", uid))
        stored = plain.findtext("TEMPLATE/SSH_PRIVATE_KEY")
        self.assertNotEqual(stored, "secret-key")
        self.assertEqual(plain.findtext("TEMPLATE/OTHER"), "x")
        clear = etree.fromstring(self.one.ok("one.user.info", uid, True))
        self.assertEqual(clear.findtext("TEMPLATE/SSH_PRIVATE_KEY"), "secret-key")
        mine = etree.fromstring(self.one.ok("one.user.info", uid, True, session="enc:pw"))
        self.assertEqual(mine.findtext("TEMPLATE/SSH_PRIVATE_KEY"), stored)
        self.one.ok("one.user.update", uid, 'OTHER="y"', 1)
        again = etree.fromstring(self.one.ok("one.user.info", uid))
        self.assertEqual(again.findtext("TEMPLATE/SSH_PRIVATE_KEY"), stored)
        self.assertIn("<ONE_KEY>", self.one.ok("one.system.config"))
