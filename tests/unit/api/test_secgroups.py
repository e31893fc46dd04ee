"""Security groups: oned's documents, rule validation texts, VM lists and the default group."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from unittest.mock import patch

from lxml import etree
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from oned.api.secgroup_vm import stage_vm_release, stage_vm_rules
from oned.bootstrap import ensure_default_secgroup
from oned.core import Core
from oned.objects.secgroup import RuleError, check_rule
from oned.pools.base import Unit
from oned.template import Template
from oned.testing.rpc import OnedHarness, result_of

SAMPLES = Path(__file__).resolve().parents[4] / "shared" / "samples"

T9 = """NAME="sample-secgroup"
DESCRIPTION="web and ssh"
RULE=[PROTOCOL="TCP", RULE_TYPE="inbound", RANGE="22,80,443"]
RULE=[PROTOCOL="ICMP", RULE_TYPE="inbound", ICMP_TYPE="8"]
RULE=[PROTOCOL="UDP", RULE_TYPE="inbound", RANGE="53", IP="10.0.0.0", SIZE="256"]
RULE=[PROTOCOL="ALL", RULE_TYPE="outbound"]
"""

#: (rule, oned's refusal or None when valid)
RULES: list[tuple[dict[str, str], str | None]] = [
    ({"PROTOCOL": "tcp", "RULE_TYPE": "inbound"}, None),
    ({"PROTOCOL": "IPSEC", "RULE_TYPE": "OUTBOUND"}, None),
    (
        {"PROTOCOL": "GRE", "RULE_TYPE": "inbound"},
        "Wrong PROTOCOL in rule. Valid options: TCP, UDP, ICMP, ICMPV6, IPSEC, ALL.",
    ),
    (
        {"RULE_TYPE": "inbound"},
        "Wrong PROTOCOL in rule. Valid options: TCP, UDP, ICMP, ICMPV6, IPSEC, ALL.",
    ),
    (
        {"PROTOCOL": "TCP", "RULE_TYPE": "sideways"},
        "Wrong RULE_TYPE in rule. Valid options: INBOUND, OUTBOUND.",
    ),
    (
        {"PROTOCOL": "ICMP", "RULE_TYPE": "inbound", "RANGE": "22"},
        "RANGE is supported only for TCP and UDP protocols.",
    ),
    ({"PROTOCOL": "TCP", "RULE_TYPE": "inbound", "RANGE": "22,"}, "Invalid RANGE specification."),
    ({"PROTOCOL": "TCP", "RULE_TYPE": "inbound", "RANGE": "a-b"}, "Invalid RANGE specification."),
    ({"PROTOCOL": "TCP", "RULE_TYPE": "inbound", "RANGE": "1:2:3"}, "Invalid RANGE specification."),
    ({"PROTOCOL": "UDP", "RULE_TYPE": "inbound", "RANGE": "65536"}, "RANGE out of bounds 0-65536."),
    (
        {"PROTOCOL": "UDP", "RULE_TYPE": "inbound", "RANGE": "1:70000"},
        "RANGE out of bounds 0-65536.",
    ),
    (
        {"PROTOCOL": "UDP", "RULE_TYPE": "inbound", "RANGE": "90:80"},
        "RANGE BEGIN value is greater than RANGE END value",
    ),
    (
        {"PROTOCOL": "TCP", "RULE_TYPE": "inbound", "RANGE": "1:2,3:4,5:6,7:8,9:10,11:12,13:14,15"},
        None,
    ),
    (
        {"PROTOCOL": "TCP", "RULE_TYPE": "inbound", "RANGE": ",".join(str(p) for p in range(16))},
        "Not more than 15 ports can be specified in a RULE",
    ),
    (
        {"PROTOCOL": "TCP", "RULE_TYPE": "inbound", "ICMP_TYPE": "8"},
        "ICMP_TYPE is supported only for ICMP protocol.",
    ),
    (
        {"PROTOCOL": "ICMP", "RULE_TYPE": "inbound", "ICMP_TYPE": "echo"},
        "Wrong ICMP_TYPE, it must be integer",
    ),
    (
        {"PROTOCOL": "ICMP", "RULE_TYPE": "inbound", "ICMP_TYPE": "-1"},
        "Wrong ICMP_TYPE, it must be integer",
    ),
    ({"PROTOCOL": "ICMPV6", "RULE_TYPE": "inbound", "ICMPV6_TYPE": "128"}, None),
    (
        {"PROTOCOL": "ICMP", "RULE_TYPE": "inbound", "ICMPV6_TYPE": "128"},
        "ICMPV6_TYPE is supported only for ICMPV6 protocol.",
    ),
    (
        {"PROTOCOL": "ICMPV6", "RULE_TYPE": "inbound", "ICMPV6_TYPE": "x"},
        "Wrong ICMPV6_TYPE, it must be integer",
    ),
    ({"PROTOCOL": "ALL", "RULE_TYPE": "inbound", "IP": "10.0.0.1"}, "Wrong or empty SIZE."),
    (
        {"PROTOCOL": "ALL", "RULE_TYPE": "inbound", "IP": "10.0.0.300", "SIZE": "2"},
        "Wrong format for IP value.",
    ),
    ({"PROTOCOL": "ALL", "RULE_TYPE": "inbound", "IP": "fd00::1", "SIZE": "2"}, None),
    ({"PROTOCOL": "ALL", "RULE_TYPE": "inbound", "NETWORK_ID": "x1"}, "Wrong NETWORK_ID."),
    ({"PROTOCOL": "ALL", "RULE_TYPE": "inbound", "NETWORK_ID": "3"}, None),
]


def sample(name: str) -> str:
    return (SAMPLES / name).read_text(encoding="utf-8")


class RuleTests(SynchronousTestCase):
    def test_rules(self) -> None:
        """Every check of ``SecurityGroup::is_valid``, in oned's order, with its text."""
        for rule, expected in RULES:
            if expected is None:
                check_rule(rule)
                continue
            with self.assertRaises(RuleError) as ctx:
                check_rule(rule)
            self.assertEqual(str(ctx.exception), expected, rule)


class SecurityGroupTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.one = OnedHarness()
        self.addCleanup(self.one.close)
        self.one.ok("one.user.allocate", "ann", "pw", "")
        self.ann = "ann:pw"

    def info(self, oid: int) -> etree._Element:
        return etree.fromstring(self.one.ok("one.secgroup.info", oid))

    def test_default_group_and_pool_as_oned(self) -> None:
        """Group 0 is bootstrapped exactly; user groups start at 100; the pool matches."""
        if not SAMPLES.is_dir():
            self.skipTest("no samples")
        self.assertEqual(
            self.one.ok("one.secgroup.info", 0), sample("one.secgroup.info.default-0.xml")
        )
        self.assertEqual(self.one.call("one.secgroup.allocate", T9), [True, 100, 0])
        self.assertEqual(self.one.ok("one.secgroup.info", 100), sample("one.secgroup.info.xml"))
        self.assertEqual(
            self.one.ok("one.secgrouppool.info", -2, -1, -1), sample("one.secgrouppool.info.xml")
        )
        self.assertEqual(
            self.one.call("one.secgroup.info", 9999),
            [False, "[one.secgroup.info] Error getting security group [9999].", 1024, 9999, -1],
        )

    def test_allocate_refusals(self) -> None:
        """Bad rules, names and duplicates are INTERNAL errors with oned's texts."""
        cases = [
            (
                "NAME=a\nRULE=[PROTOCOL=TCP,RULE_TYPE=in]",
                "Wrong RULE_TYPE in rule. Valid options: INBOUND, OUTBOUND.",
            ),
            ("DESCRIPTION=x", "Invalid NAME, it cannot be empty"),
            ('NAME="a/b"', "Invalid NAME, char '/' is not allowed"),
            ("NAME=[", None),
        ]
        for text, message in cases:
            reply = self.one.call("one.secgroup.allocate", text)
            self.assertEqual(reply[0], False)
            self.assertEqual(reply[2], 0x2000)
            if message is not None:
                self.assertEqual(reply[1], f"[one.secgroup.allocate] {message}")
        self.one.ok("one.secgroup.allocate", "NAME=web")
        self.assertEqual(
            self.one.call("one.secgroup.allocate", "NAME=web")[1],
            "[one.secgroup.allocate] NAME is already taken by SecurityGroup 100.",
        )
        self.assertEqual(self.one.ok("one.secgroup.allocate", "NAME=web", session=self.ann), 101)

    def test_duplicate_rules_dropped(self) -> None:
        oid = self.one.ok(
            "one.secgroup.allocate",
            "NAME=d\nRULE=[PROTOCOL=TCP,RULE_TYPE=inbound,RANGE=22]\n"
            "RULE=[RULE_TYPE=inbound,PROTOCOL=TCP,RANGE=22]\nRULE=[PROTOCOL=ALL,RULE_TYPE=outbound]",
        )
        self.assertEqual(len(self.info(oid).findall("TEMPLATE/RULE")), 2)

    def test_update_validates_and_outdates_vms(self) -> None:
        """An update checks the rules (nothing changes on error) and outdates every VM."""
        oid = self.one.ok("one.secgroup.allocate", T9)
        self._set_vms(oid, updated={1, 2}, updating={3}, error={4})
        reply = self.one.call("one.secgroup.update", oid, "RULE=[PROTOCOL=TCP,RULE_TYPE=x]")
        self.assertEqual(
            reply[1],
            "[one.secgroup.update] Cannot update template. Wrong RULE_TYPE in rule. "
            "Valid options: INBOUND, OUTBOUND.",
        )
        self.assertEqual(len(self.info(oid).findall("TEMPLATE/RULE")), 4)
        self.one.ok("one.secgroup.update", oid, "RULE=[PROTOCOL=UDP,RULE_TYPE=inbound]", 1)
        doc = self.info(oid)
        self.assertEqual(len(doc.findall("TEMPLATE/RULE")), 1)
        self.assertEqual(doc.findtext("DESCRIPTION"), None)
        self.assertEqual(doc.findtext("TEMPLATE/DESCRIPTION"), "web and ssh")
        self.assertEqual(self._ids(doc, "OUTDATED_VMS"), [1, 2, 3, 4])
        self.assertEqual(self._ids(doc, "UPDATED_VMS"), [])
        self.assertEqual(
            self.one.call("one.secgroup.update", oid, "", 2)[1:3],
            ["[one.secgroup.update] Wrong update type", 0x1000],
        )

    def test_commit_recover(self) -> None:
        """commit(recover) retries updating/error VMs; commit(false) all of them."""
        oid = self.one.ok("one.secgroup.allocate", T9)
        self._set_vms(oid, updated={1}, updating={2}, error={3})
        self.one.ok("one.secgroup.commit", oid, True)
        doc = self.info(oid)
        self.assertEqual(self._ids(doc, "UPDATED_VMS"), [1])
        self.assertEqual(self._ids(doc, "OUTDATED_VMS"), [2, 3])
        self.one.ok("one.secgroup.commit", oid, False)
        self.assertEqual(self._ids(self.info(oid), "OUTDATED_VMS"), [1, 2, 3])
        self.assertEqual(self.one.call("one.secgroup.commit", 77, True)[2], 0x400)

    def test_delete(self) -> None:
        """Group 0 and groups with VMs cannot be deleted; others can."""
        self.assertEqual(
            self.one.call("one.secgroup.delete", 0),
            [
                False,
                "[one.secgroup.delete] Cannot delete security group. The default security "
                "group (ID 0) cannot be deleted.",
                0x800,
                -1,
                -1,
            ],
        )
        oid = self.one.ok("one.secgroup.allocate", T9)
        self._set_vms(oid, outdated={9})
        self.assertEqual(
            self.one.call("one.secgroup.delete", oid)[1],
            "[one.secgroup.delete] Cannot delete security group. The security group has VMs "
            "using it",
        )
        self._set_vms(oid)
        self.assertEqual(self.one.ok("one.secgroup.delete", oid), oid)
        self.assertEqual(self.one.call("one.secgroup.info", oid)[2], 0x400)

    def test_clone_rename_chmod_chown(self) -> None:
        oid = self.one.ok("one.secgroup.allocate", T9, session=self.ann)
        copy = self.one.ok("one.secgroup.clone", oid, "copy", session=self.ann)
        doc = self.info(copy)
        self.assertEqual(doc.findtext("NAME"), "copy")
        self.assertEqual(doc.findtext("UNAME"), "ann")
        self.assertEqual(len(doc.findall("TEMPLATE/RULE")), 4)
        self.assertEqual(
            self.one.call("one.secgroup.clone", oid, "copy", session=self.ann)[1],
            "[one.secgroup.clone] NAME is already taken by SecurityGroup 101.",
        )
        self.one.ok("one.secgroup.rename", copy, "copy2", session=self.ann)
        self.assertEqual(self.info(copy).findtext("NAME"), "copy2")
        self.one.ok("one.secgroup.chmod", copy, -1, -1, -1, 1, -1, -1, -1, -1, -1)
        self.assertEqual(self.info(copy).findtext("PERMISSIONS/GROUP_U"), "1")
        self.one.ok("one.secgroup.chown", copy, 0, 0)
        self.assertEqual(self.info(copy).findtext("UNAME"), "oneadmin")
        reply = self.one.call("one.secgroup.update", copy, "A=1", session=self.ann)
        self.assertEqual(reply[2], 0x200)

    def test_default_group_created_for_existing_database(self) -> None:
        """A database whose security group pool never had a group gets group 0 at start."""
        core = self.one.core
        result_of(
            Deferred.fromCoroutine(
                core.db.transact(
                    "drop",
                    [
                        ("DELETE FROM secgroup_pool", ()),
                        ("DELETE FROM pool_control WHERE tablename = 'secgroup_pool'", ()),
                    ],
                )
            )
        )
        fresh = Core.create(self.one.config, self.one.clock, core.db)
        result_of(Deferred.fromCoroutine(fresh.load()))
        self.assertEqual(len(fresh.secgroups), 0)
        result_of(Deferred.fromCoroutine(ensure_default_secgroup(fresh)))
        group = fresh.secgroups.get(0)
        assert group is not None
        self.assertEqual(group.name, "default")
        self.assertEqual(fresh.secgroups.next_oid(), 100)

    def _set_vms(self, oid: int, **lists: set[int]) -> None:
        core = self.one.core
        group = core.secgroups.get(oid)
        assert group is not None
        group = group.copy()
        for name in ("updated", "outdated", "updating", "error"):
            setattr(group, name, set(lists.get(name, set())))
        unit = core.unit()
        unit.save(core.secgroups, group)
        result_of(Deferred.fromCoroutine(unit.commit("vms")))

    @staticmethod
    def _ids(doc: etree._Element, tag: str) -> list[int]:
        return [int(i.text or -1) for i in doc.findall(f"{tag}/ID")]


class VmSideTests(SynchronousTestCase):
    """What a VM's NICs do to their groups (``get_security_group_rules``)."""

    def setUp(self) -> None:
        self.one = OnedHarness()
        self.addCleanup(self.one.close)
        self.one.ok("one.secgroup.allocate", T9)
        self.one.ok(
            "one.secgroup.allocate",
            "NAME=net\nRULE=[PROTOCOL=TCP,RULE_TYPE=inbound,NETWORK_ID=7]",
        )

    def commit(self, unit: Unit) -> None:
        result_of(Deferred.fromCoroutine(unit.commit("test")))

    def test_rules_and_lists(self) -> None:
        core = self.one.core
        unit = core.unit()
        rules = stage_vm_rules(core, unit, 5, [100, 0, 100, 55])
        self.commit(unit)
        if SAMPLES.is_dir():
            vm = sample("one.vm.info.pending.xml")
            shown = re.findall(r"<SECURITY_GROUP_RULE>.*?</SECURITY_GROUP_RULE>", vm)
            mine = [Template([("SECURITY_GROUP_RULE", r)]).to_xml("X")[3:-4] for r in rules]
            self.assertEqual(mine, shown)
        self.assertEqual([r["SECURITY_GROUP_ID"] for r in rules], ["0", "0"] + ["100"] * 4)
        for oid in (0, 100):
            group = core.secgroups.get(oid)
            assert group is not None
            self.assertEqual(group.updated, {5})
        self.assertIn("<UPDATED_VMS><ID>5</ID></UPDATED_VMS>", self.one.ok("one.secgroup.info", 0))
        self.assertEqual(
            self.one.call("one.secgroup.delete", 100)[1],
            "[one.secgroup.delete] Cannot delete security group. The security group has VMs "
            "using it",
        )
        unit = core.unit()
        stage_vm_release(core, unit, 5, [0, 100])
        self.commit(unit)
        self.assertEqual(self.one.ok("one.secgroup.delete", 100), 100)
        group = core.secgroups.get(0)
        assert group is not None
        self.assertEqual(group.vm_count(), 0)

    def test_network_rules_expand_per_address_range(self) -> None:
        """A NETWORK_ID rule becomes one rule per AR of the network; none if it is gone."""
        core = self.one.core
        self.assertEqual(stage_vm_rules(core, core.unit(), -1, [101]), [])
        ars = [
            SimpleNamespace(
                attrs={
                    "AR_ID": "0",
                    "TYPE": "IP4",
                    "SIZE": "50",
                    "IP": "10.0.0.10",
                    "MAC": "02:00:0a:00:00:0a",
                },
                ula6=0,
                global6=0,
                mac=0x02000A00000A,
            ),
            SimpleNamespace(
                attrs={"AR_ID": "1", "TYPE": "IP6", "SIZE": "16", "MAC": "02:00:00:00:00:01"},
                ula6=0xFD00000100000000,
                global6=0,
                mac=0x020000000001,
            ),
        ]
        vnets = SimpleNamespace(get=lambda oid: SimpleNamespace(ars=ars) if oid == 7 else None)
        with patch.object(core, "vnets", vnets, create=True):
            rules = stage_vm_rules(core, core.unit(), -1, [101])
        self.assertEqual([r["AR_ID"] for r in rules], ["0", "1"])
        self.assertEqual(rules[0]["IP"], "10.0.0.10")
        self.assertEqual(rules[1]["IP6_ULA"], "fd00:1::ff:fe00:1")
        self.assertNotIn("IP6_ULA", rules[0])
