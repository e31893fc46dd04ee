"""one.vn.* and one.vnpool.info: oned's documents byte for byte, the state machine
driven by VNET_CREATE/VNET_DELETE replies, recover, restart resume, driver attributes
and VLAN ids, update, delete and cluster membership."""

from __future__ import annotations

import json
import re

from twisted.internet.defer import Deferred

from oned.managers.ipam.manager import IPAMManager
from oned.managers.ipam.testing import FakeIPAMDrivers, Sent
from oned.testing.rpc import result_of

from .vnet_case import NET_IP4, NET_MULTI, VNetCase, sample


class DocumentTests(VNetCase):
    def test_lock_create_document_is_oneds(self) -> None:
        """A new network is LOCK_CREATE (PREV_STATE INIT) with its ARs still in TEMPLATE."""
        oid = self.net(NET_IP4, ready=False)
        self.assertEqual(self.info(oid), sample("one.vn.info.lock-create.xml"))
        self.assertEqual([s.action for s in self.drivers.pending()], ["VNET_CREATE"])
        self.assertIn("<VN_MAD><![CDATA[dummy]]></VN_MAD>", self.drivers.pending()[0].document)

    def test_ready_documents_are_oneds(self) -> None:
        """READY networks, holds and reservations render exactly as oned's samples."""
        self.one.ok("one.cluster.allocate", "c100")
        self.one.ok("one.secgroup.allocate", 'NAME="sg"')
        self.net(NET_IP4)
        self.net(NET_MULTI)
        self.assertEqual(self.info(1), sample("one.vn.info.ip6-ether-ip46.xml"))
        self.assertEqual(self.one.ok("one.vn.reserve", 0, 'NAME="sample-reservation"\nSIZE=4'), 2)
        self.settle()
        self.one.ok("one.cluster.addvnet", 100, 0)
        self.one.ok("one.vn.hold", 0, 'LEASES=[IP="10.0.0.15"]')
        self.assertEqual(self.info(0), sample("one.vn.info.ip4-hold-reservation.xml"))
        self.assertEqual(self.info(2), sample("one.vn.info.reservation.xml"))
        pool = self.one.ok("one.vnpool.info", -2, -1, -1)
        self.valid(pool)
        self.assertNotIn("<LEASES", pool)
        self.assertIn(
            "<ALLOCATED><![CDATA[ 0 274877906946 1 274877906946 2 274877906946 3 "
            "274877906946 5 73014444031]]></ALLOCATED>",
            pool,
        )
        expected = sample("one.vnpool.info.all.xml")
        vnet2 = re.search(r"<VNET><ID>2</ID>.*?</VNET>", expected)
        assert vnet2 is not None
        self.assertIn(vnet2.group(0), pool)
        cluster = self.one.ok("one.cluster.info", 100)
        self.assertIn("<VNETS><ID>0</ID></VNETS>", cluster)

    def test_missing_network(self) -> None:
        """vn.info of a missing id is oned's NO_EXISTS array."""
        reply = self.one.call("one.vn.info", 9999)
        self.assertEqual(reply, json.loads(sample("one.vn.info.missing.json")))


class StateMachineTests(VNetCase):
    def test_driver_failure_is_error_and_recover_success_makes_it_ready(self) -> None:
        """VNET_CREATE FAILURE -> ERROR with the message; recover 1 -> READY."""
        oid = self.net(NET_IP4, ready=False)
        self.drivers.reply("VNET_CREATE", oid, "FAILURE", "no bridge")
        self.one.clock.advance(0)
        doc = self.info(oid)
        self.assertIn("<STATE><![CDATA[5]]></STATE>", doc)
        self.assertRegex(doc, r"<ERROR><!\[CDATA\[.* : no bridge\]\]></ERROR>")
        msg, _ = self.refused("one.vn.recover", oid, 3)
        self.assertEqual(
            msg,
            f"[one.vn.recover] Could not perform 'recover retry' on VN {oid}, wrong state ERROR.",
        )
        self.one.ok("one.vn.recover", oid, 1)
        doc = self.info(oid)
        self.assertIn("<STATE><![CDATA[1]]></STATE>", doc)
        self.assertNotIn("<ERROR>", doc)

    def test_driver_death_failure_text_is_kept(self) -> None:
        """A FAILURE the driver manager makes up (plain text, not base64) is the error."""
        from oned.drivers.message import DriverMessage

        oid = self.net(NET_IP4, ready=False)
        self.drivers.sent.clear()
        msg = DriverMessage("VNET_CREATE", "FAILURE", oid, "Driver ipam_exe exited")
        result_of(Deferred.fromCoroutine(self.manager.apply_create(msg)))
        self.assertIn(" : Driver ipam_exe exited]]></ERROR>", self.info(oid))

    def test_recover_failure_and_delete(self) -> None:
        """recover 0 forces ERROR from LOCK_CREATE; recover 2 drops it and sends VNET_DELETE."""
        oid = self.net(NET_IP4, ready=False)
        self.drivers.sent.clear()
        self.one.ok("one.vn.recover", oid, 0)
        self.assertIn("Failure forced by user", self.info(oid))
        msg, _ = self.refused("one.vn.recover", oid, 0)
        self.assertIn("wrong state ERROR", msg)
        self.refused("one.vn.recover", oid, 7)
        self.one.ok("one.vn.recover", oid, 2)
        self.one.clock.advance(0)
        self.refused("one.vn.info", oid)
        self.assertEqual([s.action for s in self.drivers.pending()], ["VNET_DELETE"])
        self.assertNotIn(f"<ID>{oid}</ID>", self.one.ok("one.cluster.info", 0).split("<VNETS>")[1])

    def test_delete_goes_through_lock_delete(self) -> None:
        """delete: LOCK_DELETE until VNET_DELETE SUCCESS, then gone from pool and cluster."""
        oid = self.net(NET_IP4)
        self.assertIn(f"<VNETS><ID>{oid}</ID></VNETS>", self.one.ok("one.cluster.info", 0))
        self.one.ok("one.vn.delete", oid)
        self.assertIn("<STATE><![CDATA[3]]></STATE>", self.info(oid))
        msg, code = self.refused("one.vn.delete", oid)
        self.assertEqual(
            msg,
            "[one.vn.delete] Cannot delete virtual network. Can not remove a Virtual "
            "Network, wrong state LOCK_DELETE",
        )
        self.settle()
        self.refused("one.vn.info", oid)
        self.assertIn("<VNETS></VNETS>", self.one.ok("one.cluster.info", 0))

    def test_delete_failure_is_error(self) -> None:
        """VNET_DELETE FAILURE leaves the network in ERROR."""
        oid = self.net(NET_IP4)
        self.one.ok("one.vn.delete", oid)
        self.drivers.reply("VNET_DELETE", oid, "FAILURE", "busy")
        self.one.clock.advance(0)
        self.assertIn("<STATE><![CDATA[5]]></STATE>", self.info(oid))

    def test_restart_resends_create_and_delete(self) -> None:
        """A new manager over the same database re-issues the actions still in flight."""
        b = self.net(NET_MULTI)
        a = self.net(NET_IP4, ready=False)
        self.one.ok("one.vn.delete", b)
        drivers = FakeIPAMDrivers()
        manager = IPAMManager(self.one.core, drivers, self.one.clock)
        self.one.core.ipam_manager = manager
        result_of(Deferred.fromCoroutine(manager.start()))
        self.assertEqual(
            [(s.action, s.oid) for s in drivers.pending()],
            [("VNET_DELETE", b), ("VNET_CREATE", a)],
        )
        drivers.answer_all()
        self.one.clock.advance(0)
        self.assertIn("<STATE><![CDATA[1]]></STATE>", self.info(a))
        self.refused("one.vn.info", b)

    def test_reply_in_wrong_state_is_ignored(self) -> None:
        """A VNET_CREATE reply for a READY network changes nothing."""
        oid = self.net(NET_IP4)
        before = self.info(oid)
        self.drivers.sent.append(Sent("VNET_CREATE", oid, ""))
        self.drivers.reply("VNET_CREATE", oid, "FAILURE", "late")
        self.one.clock.advance(0)
        self.assertEqual(self.info(oid), before)


class AllocateTests(VNetCase):
    def test_refusals_have_oneds_texts(self) -> None:
        """Missing NAME/VN_MAD, driver attributes, bridge types and taken names."""
        cases = [
            ('VN_MAD="dummy"\nBRIDGE="b"', "No NAME in template for Virtual Network."),
            ('NAME="x"\nBRIDGE="b"', "No VN_MAD in template for Virtual Network."),
            ('NAME="x"\nVN_MAD="dummy"', "BRIDGE is mandatory for driver dummy"),
            ('NAME="x"\nVN_MAD="802.1Q"', "PHYDEV is mandatory for driver 802.1Q"),
            (
                'NAME="x"\nVN_MAD="802.1Q"\nPHYDEV="eth0"',
                "VLAN_ID (or AUTOMATIC_VLAN_ID) is mandatory for driver 802.1Q",
            ),
            ('NAME="x"\nVN_MAD="nope"', 'VN_MAD named "nope" is not defined in oned.conf'),
            (
                'NAME="x"\nVN_MAD="ovswitch"\nBRIDGE_TYPE="linux"',
                'Attribute BRIDGE_TYPE has wrong value "linux" for VN_MAD_CONF ovswitch in '
                "oned.conf",
            ),
            ('NAME="a;b"\nVN_MAD="bridge"', "Invalid NAME, char ';' is not allowed"),
        ]
        for text, expected in cases:
            msg, code = self.refused("one.vn.allocate", text, -1)
            self.assertEqual((msg, code), (f"[one.vn.allocate] {expected}", 0x2000), text)
        self.net('NAME="x"\nVN_MAD="bridge"')
        msg, _ = self.refused("one.vn.allocate", 'NAME="x"\nVN_MAD="bridge"', -1)
        self.assertEqual(msg, "[one.vn.allocate] NAME is already taken by NET 0.")
        msg, _ = self.refused("one.vn.allocate", 'NAME="y"\nVN_MAD="bridge"', 77)
        self.assertEqual(msg, "[one.vn.allocate] Error getting cluster [77].")

    def test_driver_defaults(self) -> None:
        """bridge/ovswitch defaults: BRIDGE onebr<id>, first BRIDGE_TYPE, SG 0 added."""
        oid = self.net('NAME="o"\nVN_MAD="ovswitch"\nSECURITY_GROUPS="5,3"')
        doc = self.info(oid)
        self.assertIn(f"<BRIDGE><![CDATA[onebr{oid}]]></BRIDGE>", doc)
        self.assertIn("<BRIDGE_TYPE><![CDATA[openvswitch]]></BRIDGE_TYPE>", doc)
        self.assertIn("<SECURITY_GROUPS><![CDATA[0,3,5]]></SECURITY_GROUPS>", doc)

    def test_automatic_vlan_ids_are_distinct(self) -> None:
        """AUTOMATIC_VLAN_ID takes free ids from VLAN_IDS (never twice); VXLAN is START+id."""
        q = 'VN_MAD="802.1Q"\nPHYDEV="eth0"\nAUTOMATIC_VLAN_ID="YES"\n'
        ids = set()
        for i in range(5):
            oid = self.net(f'NAME="v{i}"\n{q}')
            doc = self.info(oid)
            vlan = re.search(r"<VLAN_ID><!\[CDATA\[(\d+)\]\]></VLAN_ID><OUTER", doc)
            assert vlan is not None
            self.assertIn("<VLAN_ID_AUTOMATIC>1</VLAN_ID_AUTOMATIC>", doc)
            self.assertIn(f"<BRIDGE><![CDATA[onebr{oid}]]>", doc)
            ids.add(vlan.group(1))
        self.assertEqual(len(ids), 5)
        self.assertNotIn("0", ids)
        x = self.net('NAME="x"\nVN_MAD="vxlan"\nPHYDEV="eth0"\nAUTOMATIC_VLAN_ID="YES"')
        self.assertIn(f"<VLAN_ID><![CDATA[{2 + x}]]></VLAN_ID>", self.info(x))
        fixed = self.net('NAME="f"\nVN_MAD="802.1Q"\nPHYDEV="eth0"\nVLAN_ID="0042"')
        self.assertIn("<VLAN_ID><![CDATA[42]]></VLAN_ID><OUTER", self.info(fixed))

    def test_restricted_attributes_refused_for_users(self) -> None:
        """A non-admin cannot set VNET_RESTRICTED_ATTR (nor create without NET:CREATE rights)."""
        alice = self.user()
        from oned.auth import acl

        for rule in ("@1 CLUSTER/* ADMIN", "@1 NET/* CREATE"):
            user, res, rights, _ = acl.parse_rule_string(rule, 0)
            self.one.ok("one.acl.addrule", f"{user:x}", f"{res:x}", f"{rights:x}")
        msg, code = self.refused(
            "one.vn.allocate", 'NAME="n"\nVN_MAD="dummy"\nBRIDGE="b"', -1, session=alice
        )
        self.assertEqual(code, 0x200)
        self.assertIn("VNET Template includes a restricted attribute VN_MAD", msg)


class VlanPoolTests(VNetCase):
    def setUp(self) -> None:
        super().setUp()
        self.one.close()
        from oned.managers.ipam.testing import attach
        from oned.testing.rpc import OnedHarness

        self.one = OnedHarness('VLAN_IDS = [ START = "4092", RESERVED = "4093, 4095" ]')
        self.addCleanup(self.one.close)
        self.drivers = attach(self.one.core, self.one.clock)

    def test_exhausted_vlan_pool_refuses_the_network(self) -> None:
        """Automatic VLAN ids come from VLAN_IDS (START, RESERVED); none left: refused."""
        q = 'VN_MAD="802.1Q"\nPHYDEV="eth0"\nAUTOMATIC_VLAN_ID="YES"\n'
        got = set()
        for i in range(2):
            oid = self.net(f'NAME="v{i}"\n{q}')
            got.add(re.findall(r"<VLAN_ID><!\[CDATA\[(\d+)\]\]>", self.info(oid))[0])
        self.assertEqual(got, {"4092", "4094"})
        msg, _ = self.refused("one.vn.allocate", f'NAME="v9"\n{q}', -1)
        self.assertEqual(msg, "[one.vn.allocate] Cannot automatically assign VLAN_ID to network.")
        self.one.ok("one.vn.delete", 0)
        self.settle()
        self.net(f'NAME="again"\n{q}')


class VlanRuleTests(VNetCase):
    def test_group_vlan_rules_gate_user_vlans(self) -> None:
        """Users may only ask for VLAN ids their group's VLAN rules allow."""
        from oned.auth import acl

        alice = self.user()
        for rule in ("@1 CLUSTER/* ADMIN", "@1 NET/* CREATE"):
            user, res, rights, _ = acl.parse_rule_string(rule, 0)
            self.one.ok("one.acl.addrule", f"{user:x}", f"{res:x}", f"{rights:x}")
        net = 'NAME="v"\nVLAN_ID="{}"'
        msg, code = self.refused("one.vn.allocate", net.format(10), -1, session=alice)
        self.assertEqual(
            (msg, code),
            (
                "[one.vn.allocate] User [2] : User is not authorized to use the requested VLAN_ID.",
                0x200,
            ),
        )
        msg, _ = self.refused("one.vn.allocate", net.format("x"), -1, session=alice)
        self.assertIn("Invalid VLAN_ID specification.", msg)
        self.one.ok("one.group.vlan", 1, 'RULE=[ID="5-20", SCOPE="VLAN_ID"]')
        msg, _ = self.refused("one.vn.allocate", net.format(10), -1, session=alice)
        self.assertIn("No VN_MAD in template", msg)
        msg, _ = self.refused("one.vn.allocate", net.format(30), -1, session=alice)
        self.assertIn("not authorized to use the requested VLAN_ID", msg)


class UpdateTests(VNetCase):
    def test_update_replace_and_merge(self) -> None:
        """update keeps the driver attributes in the template; merge adds, replace swaps."""
        oid = self.net(NET_IP4)
        self.one.ok("one.vn.update", oid, 'FOO="bar"', 1)
        doc = self.info(oid)
        self.assertIn("<FOO><![CDATA[bar]]></FOO>", doc)
        self.assertIn("<DNS>", doc)
        self.one.ok("one.vn.update", oid, 'VN_MAD="dummy"\nMTU="9000"', 0)
        doc = self.info(oid)
        self.assertNotIn("<DNS>", doc)
        self.assertIn("<BRIDGE><![CDATA[br0]]></BRIDGE>", doc)
        self.assertIn("<VNET_UPDATE><MTU><![CDATA[]]></MTU></VNET_UPDATE>", doc)
        msg, _ = self.refused("one.vn.update", oid, 'MTU="1"', 0)
        self.assertEqual(
            msg,
            "[one.vn.update] Cannot update template. No VN_MAD in template for Virtual Network.",
        )
        self.refused("one.vn.update", oid, "X", 5)
        self.assertIn("<MTU><![CDATA[9000]]></MTU>", self.info(oid))

    def test_rename_chmod_lock(self) -> None:
        """The shared calls work on networks."""
        oid = self.net(NET_IP4)
        self.one.ok("one.vn.rename", oid, "renamed")
        self.one.ok("one.vn.chmod", oid, 1, 1, 1, 1, 0, 0, 0, 0, 0)
        self.one.ok("one.vn.lock", oid, 1)
        doc = self.info(oid)
        self.assertIn("<NAME>renamed</NAME><LOCK><LOCKED>1</LOCKED>", doc)
        self.assertIn("<OWNER_A>1</OWNER_A><GROUP_U>1</GROUP_U>", doc)
        self.one.ok("one.vn.unlock", oid)

    def test_cluster_add_and_del(self) -> None:
        """addvnet/delvnet keep CLUSTERS and VNETS consistent."""
        oid = self.net(NET_IP4)
        cid = self.one.ok("one.cluster.allocate", "c")
        self.one.ok("one.cluster.addvnet", cid, oid)
        self.assertIn("<CLUSTERS><ID>0</ID><ID>100</ID></CLUSTERS>", self.info(oid))
        self.one.ok("one.cluster.delvnet", 0, oid)
        self.assertIn("<CLUSTERS><ID>100</ID></CLUSTERS>", self.info(oid))
        self.assertIn("<VNETS></VNETS>", self.one.ok("one.cluster.info", 0))
        msg, _ = self.refused("one.cluster.delete", cid)
        self.assertIn("contains 1 vnets", msg)


class VisibilityTests(VNetCase):
    def test_users_without_manage_see_only_their_leases(self) -> None:
        """vn.info for a USE-only caller lists no holds and no other owners' leases."""
        alice = self.user()
        oid = self.net(NET_IP4)
        self.one.ok("one.vn.chmod", oid, 1, 1, 0, 0, 0, 0, 1, 0, 0)
        self.one.ok("one.vn.hold", oid, 'LEASES=[IP="10.0.0.12"]')
        doc = self.one.ok("one.vn.info", oid, session=alice)
        self.assertIn("<USED_LEASES>1</USED_LEASES><LEASES></LEASES>", doc)
        self.assertIn("10.0.0.12", self.one.ok("one.vn.info", oid))
        msg, code = self.refused("one.vn.hold", oid, 'LEASES=[IP="10.0.0.13"]', session=alice)
        self.assertEqual(code, 0x200)
