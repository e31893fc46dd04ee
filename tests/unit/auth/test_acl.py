"""ACL rule codec, validation and authorization."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from oned.auth import acl
from oned.auth.acl import AclRule, AclSyntaxError, parse_hex, parse_rule_string
from oned.auth.authorize import AclEngine, Caller, ObjectAuth
from oned.errors import AuthorizationError
from oned.objects.base import Op, Permissions


def rule(oid: int, text: str) -> AclRule:
    return AclRule(oid, *parse_rule_string(text, 0))


class CodecTests(SynchronousTestCase):
    def test_default_rule_numbers(self) -> None:
        """The bootstrap rules have OpenNebula's numbers."""
        r = rule(0, "@1 VM+IMAGE+TEMPLATE+DOCUMENT+SECGROUP+VMGROUP+BACKUPJOB/* CREATE *")
        self.assertEqual(
            (r.user, r.resource, r.rights, r.zone),
            (0x200000001, 0x121429400000000, 0x8, 0x400000000),
        )
        self.assertEqual(rule(3, "@1 HOST/* MANAGE #0").resource, 0x2400000000)

    def test_string_and_xml(self) -> None:
        """to_str mirrors build_str; XML prints lowercase hex without 0x."""
        r = rule(7, "#5 NET+DATASTORE/%100 USE+MANAGE #0")
        self.assertEqual(r.to_str(), "#5 NET+DATASTORE/%100 USE+MANAGE #0")
        self.assertIn("<USER>100000005</USER>", r.to_xml())
        self.assertIn("<RESOURCE>104800000064</RESOURCE>", r.to_xml())

    def test_parse_hex_like_istringstream(self) -> None:
        """Hex parts accept 0x, ignore trailing garbage and read garbage as 0."""
        self.assertEqual(parse_hex("0x1F"), 31)
        self.assertEqual(parse_hex("1fzz"), 31)
        self.assertEqual(parse_hex("zz"), 0)

    def test_malformed_rules(self) -> None:
        """Malformed rules list every reason."""
        bad = AclRule(0, 0x100000005 | 0x200000000, 0x1000000000, 0, 0x100000000)
        with self.assertRaises(AclSyntaxError) as ctx:
            bad.validate()
        text = str(ctx.exception)
        self.assertIn("is malformed:", text)
        self.assertIn("[user] INDIVIDUAL (#) and GROUP (@) bits are exclusive", text)
        self.assertIn(
            "[resource] is missing one of the INDIVIDUAL, GROUP, CLUSTER or ALL bits", text
        )
        self.assertIn("wrong [rights], it cannot be 0", text)
        rule(0, "@1 VM/* USE #0").validate()
        with self.assertRaises(AclSyntaxError):
            rule(0, "@1 HOST/@1 USE #0").validate()

    def test_bad_strings(self) -> None:
        """Rule strings that do not parse raise AclSyntaxError."""
        for text in ("", "@1", "@x VM/* USE", "@1 FOO/* USE", "@1 VM/* FLY", "@1 VM USE"):
            with self.assertRaises(AclSyntaxError, msg=text):
                parse_rule_string(text, 0)


class AuthorizeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.engine = AclEngine(0)
        self.engine.load([rule(0, "@1 DOCUMENT/* CREATE *"), rule(1, "#7 DOCUMENT/#3 MANAGE *")])
        self.user = Caller(5, 1, "u", "users", frozenset({1}))

    def test_admin_allowed(self) -> None:
        """uid 0 and oneadmin-group members pass every check."""
        admin = Caller(9, 0, "a", "oneadmin", frozenset({0}))
        self.assertTrue(self.engine.authorize(admin, Op.ADMIN, ObjectAuth("USER", 1)))

    def test_permission_bits(self) -> None:
        """Owner/group/other bits grant USE/MANAGE/ADMIN."""
        doc = ObjectAuth("DOCUMENT", 3, 6, 1, Permissions.from_octal(0o640))
        self.assertTrue(self.engine.authorize(self.user, Op.USE, doc))
        self.assertFalse(self.engine.authorize(self.user, Op.MANAGE, doc))
        mine = ObjectAuth("DOCUMENT", 4, 5, 100, Permissions.from_octal(0o600))
        self.assertTrue(self.engine.authorize(self.user, Op.MANAGE, mine))

    def test_acl_rules(self) -> None:
        """Stored rules grant CREATE to a group and MANAGE on one object to a user."""
        self.assertTrue(self.engine.authorize(self.user, Op.CREATE, ObjectAuth("DOCUMENT", -1)))
        self.assertFalse(self.engine.authorize(self.user, Op.CREATE, ObjectAuth("VM", -1)))
        other = Caller(7, 100, "o", "g", frozenset({100}))
        doc = ObjectAuth("DOCUMENT", 3, 6, 1, Permissions.from_octal(0o600))
        self.assertTrue(self.engine.authorize(other, Op.MANAGE, doc))
        self.assertFalse(self.engine.authorize(other, Op.ADMIN, doc))

    def test_locks_block_even_admins(self) -> None:
        """A USE lock blocks everything; a MANAGE lock lets USE through."""
        admin = Caller(0, 0, "oneadmin", "oneadmin", frozenset({0}))
        locked = ObjectAuth("DOCUMENT", 3, 0, 0, Permissions(), locked=2)
        self.engine.check(admin, Op.USE, locked)
        with self.assertRaises(AuthorizationError):
            self.engine.check(admin, Op.MANAGE, locked)
        self.engine.check(admin, Op.MANAGE, locked, ignore_lock=True)

    def test_whole_pool(self) -> None:
        """A TYPE/* USE rule makes the whole pool visible."""
        self.engine.add(rule(2, "* ZONE/* USE *"))
        self.assertTrue(self.engine.whole_pool(self.user, "ZONE"))
        self.assertFalse(self.engine.whole_pool(self.user, "DOCUMENT"))
        self.assertEqual(acl.TYPES["ZONE"], 0x800000000000)
