"""Address ranges and leases: address arithmetic of every AR type, malformed ranges,
hold/release exactly once, next-fit NIC leases through the VM seam (never one address
twice, even concurrently), rm_ar/update_ar/free_ar, reservations, the NETWORK quota,
IPAM_MAD ranges and the cost of a hold in a nearly full 65,536-address range."""

from __future__ import annotations

import time

from twisted.internet.defer import Deferred, gatherResults

from oned.managers.ipam import leases, nic
from oned.objects.address_range import (
    AddressRange,
    ARError,
    ip6_to_s,
    mac_to_i,
    slaac,
)
from oned.objects.vnet import LeaseChanges
from oned.testing.rpc import result_of

from .vnet_case import NET_IP4, NET_MULTI, VNetCase

BASE = 'NAME="n"\nVN_MAD="dummy"\nBRIDGE="br0"\n'


class ArithmeticTests(VNetCase):
    def test_mac_and_slaac(self) -> None:
        """MACs parse like oned (1-2 hex digits, not all-ones) and give EUI-64 addresses."""
        self.assertEqual(mac_to_i("2:0:a:0:0:a"), 0x02000A00000A)
        for bad in ("02:00:0a:00:00", "02:00:0g:00:00:0a", "ff:ff:ff:ff:ff:ff", "020:0:0:0:0:0"):
            self.assertIsNone(mac_to_i(bad), bad)
        mac = mac_to_i("02:00:7c:d9:51:2b")
        assert mac is not None
        self.assertEqual(slaac(0xFD00000100000000, mac), "fd00:1::7cff:fed9:512b")
        self.assertEqual(ip6_to_s(1), "::1")

    def test_ranges_of_every_type(self) -> None:
        """ETHER, IP4, IP6, IP6_STATIC, IP4_6 and IP4_6_STATIC ranges and their leases."""
        oid = self.net(
            BASE
            + 'AR=[TYPE="ETHER", SIZE="2", MAC="02:00:00:00:00:fe"]\n'
            + 'AR=[TYPE="IP4", IP="10.0.0.254", SIZE="4"]\n'
            + 'AR=[TYPE="IP6", ULA_PREFIX="fd00::", SIZE="2", MAC="02:00:00:00:00:01"]\n'
            + 'AR=[TYPE="IP6_STATIC", IP6="2001:db8::ffff:fffe", PREFIX_LENGTH="64", SIZE="4"]\n'
            + 'AR=[TYPE="IP4_6_STATIC", IP="10.1.0.1", IP6="2001:db8:1::1", '
            + 'PREFIX_LENGTH="64", SIZE="2"]\n'
        )
        doc = self.raw_info(oid)
        self.assertIn("<MAC_END><![CDATA[02:00:00:00:00:ff]]></MAC_END>", doc)
        self.assertIn("<IP_END><![CDATA[10.0.1.1]]></IP_END>", doc)
        self.assertIn("<MAC><![CDATA[02:00:0a:00:00:fe]]></MAC>", doc)
        self.assertIn("<IP6_ULA_END><![CDATA[fd00::ff:fe00:2]]></IP6_ULA_END>", doc)
        self.assertIn("<IP6_END><![CDATA[2001:db8::1]]></IP6_END>", doc)
        self.one.ok("one.vn.hold", oid, 'LEASES=[IP="10.0.1.0"]')
        self.one.ok("one.vn.hold", oid, 'LEASES=[IP6="2001:db8:1::2"]')
        self.one.ok("one.vn.hold", oid, 'LEASES=[MAC="02:00:00:00:00:02", AR_ID="2"]')
        doc = self.raw_info(oid)
        self.assertIn(
            "<LEASE><IP><![CDATA[10.0.1.0]]></IP><MAC><![CDATA[02:00:0a:00:01:00]]></MAC>"
            "<VM><![CDATA[-1]]></VM></LEASE>",
            doc,
        )
        self.assertIn("<IP6><![CDATA[2001:db8:1::2]]></IP6>", doc)
        self.assertIn(
            "<IP6_LINK><![CDATA[fe80::ff:fe00:2]]></IP6_LINK><IP6_ULA><![CDATA[fd00::ff:fe00:2]]>",
            doc,
        )
        self.assertIn("<USED_LEASES>3</USED_LEASES><VROUTERS>", doc)

    def test_malformed_ranges_are_refused(self) -> None:
        """Bad TYPE, IP, MAC, SIZE and prefixes get oned's texts; the daemon keeps going."""
        oid = self.net(BASE)
        cases = [
            ('AR=[TYPE="IP5", IP="10.0.0.1", SIZE="1"]', "Unknown or missing address range TYPE."),
            ('AR=[TYPE="IP4", IP="10.0.0.256", SIZE="1"]', "Wrong or empty IP attribute"),
            ('AR=[TYPE="IP4", IP="10.0.0", SIZE="1"]', "Wrong or empty IP attribute"),
            ('AR=[TYPE="IP4", IP="fd00::1", SIZE="1"]', "Wrong or empty IP attribute"),
            ('AR=[TYPE="IP4", IP="10.0.0.1", SIZE="x"]', "Wrong SIZE for address range"),
            ('AR=[TYPE="IP4", IP="10.0.0.1"]', "Wrong SIZE for address range"),
            (
                'AR=[TYPE="ETHER", MAC="02:00:00:00:00", SIZE="1"]',
                "Wrong format for MAC attribute: 02:00:00:00:00",
            ),
            (
                'AR=[TYPE="IP6", GLOBAL_PREFIX="2001:zz::", SIZE="1"]',
                "Wrong format for IP6 global address prefix",
            ),
            ('AR=[TYPE="IP6_STATIC", IP6="2001:db8::1", SIZE="1"]', "Wrong or empty PREFIX_LENGTH"),
            (
                'AR=[TYPE="IP6_STATIC", IP6="10.0.0.1", PREFIX_LENGTH="64"]',
                "Wrong or empty IP6 attribute",
            ),
            (
                'AR=[TYPE="ETHER", SHARED="YES", SIZE="1"]',
                "Shared ARs can be only of type IP4 or IP6_STATIC.",
            ),
            ("FOO=bar", "Wrong AR definition. AR vector attribute is missing."),
        ]
        for text, expected in cases:
            msg, code = self.refused("one.vn.add_ar", oid, text)
            self.assertEqual((msg, code), (f"[one.vn.add_ar] {expected}", 0x2000), text)
        self.one.ok(
            "one.vn.add_ar", oid, 'AR=[TYPE="IP4", IP="255.255.255.250", SIZE="1099511627776"]'
        )
        self.assertIn("<AR_ID><![CDATA[0]]></AR_ID>", self.info(oid))

    def test_ar_from_request_defaults(self) -> None:
        """MAC defaults to MAC_PREFIX + IP; an IP6_STATIC /120 without SIZE gets 256 - host."""
        ar = AddressRange.from_request({"TYPE": "IP4", "IP": "10.0.0.10", "SIZE": "2"}, 3, 0x0200)
        self.assertEqual(ar.attrs["MAC"], "02:00:0a:00:00:0a")
        self.assertEqual(ar.attrs["AR_ID"], "3")
        ar = AddressRange.from_request(
            {"TYPE": "IP6_STATIC", "IP6": "2001:db8::10", "PREFIX_LENGTH": "120"}, 0, 0x0200
        )
        self.assertEqual(ar.size, 240)
        with self.assertRaises(ARError):
            AddressRange.from_request({"TYPE": "IP4", "IP": "1.2.3.4", "SIZE": "-1"}, 0, 2)


class HoldReleaseTests(VNetCase):
    def test_hold_and_release_exactly_once(self) -> None:
        """A held lease cannot be held again; release frees it once; texts as oned's."""
        oid = self.net(NET_IP4)
        self.one.ok("one.vn.hold", oid, 'LEASES=[IP="10.0.0.12"]')
        msg, code = self.refused("one.vn.hold", oid, 'LEASES=[IP="10.0.0.12"]')
        self.assertEqual(msg, "[one.vn.hold] Address is not part of the address range or in use.")
        self.assertEqual(code, 0x2000)
        self.refused("one.vn.hold", oid, 'LEASES=[IP="10.0.0.60"]')
        self.refused("one.vn.hold", oid, 'LEASES=[IP="10.0.0.9"]')
        msg, _ = self.refused("one.vn.hold", oid, 'LEASES=[IP="10.0.0.1", MAC="02:00:00:00:00:01"]')
        self.assertEqual(msg, "[one.vn.hold] Only one attribute MAC, IP or IP6 can be set.")
        msg, _ = self.refused("one.vn.hold", oid, 'LEASES=[AR_ID="0"]')
        self.assertEqual(msg, "[one.vn.hold] Missing MAC, IP or IP6.")
        msg, _ = self.refused("one.vn.hold", oid, 'FOO="1"')
        self.assertEqual(msg, "[one.vn.hold] Empty lease description.")
        self.one.ok("one.vn.release", oid, 'LEASES=[IP="10.0.0.12"]')
        self.one.ok("one.vn.release", oid, 'LEASES=[IP="10.0.0.12"]')
        self.assertIn("<USED_LEASES>0</USED_LEASES>", self.info(oid))
        self.one.ok("one.vn.hold", oid, 'LEASES=[MAC="02:00:0a:00:00:0c", AR_ID="0"]')
        self.assertIn("<USED_LEASES>1</USED_LEASES>", self.info(oid))

    def test_concurrent_holds_of_one_address(self) -> None:
        """Two hundred concurrent holds of ten addresses: exactly ten succeed."""
        oid = self.net(BASE + 'AR=[TYPE="IP4", IP="10.9.0.1", SIZE="10"]')
        core = self.one.core
        results = []
        for i in range(200):
            body = (
                __import__("xmlrpc.client")
                .client.dumps(
                    (self.one.admin, oid, f'LEASES=[IP="10.9.0.{1 + i % 10}"]'), "one.vn.hold"
                )
                .encode()
            )
            results.append(Deferred.fromCoroutine(self.one.manager.handle_body(body, "p")))
        done = result_of(gatherResults(results))
        ok = sum(1 for r in done if b"<boolean>1</boolean>" in r)
        self.assertEqual(ok, 10)
        vn = core.vnets.get(oid)
        assert vn is not None
        self.assertEqual(vn.used_leases(), 10)

    def test_hold_cost_does_not_grow_with_leases(self) -> None:
        """Taking a lease in a 65,536 range with 60,000 leases costs what it costs empty
        (free-index byte map, per-block ALLOCATED cache); the call still works end to end."""
        full = self.net(BASE + 'AR=[TYPE="IP4", IP="10.0.0.0", SIZE="65536"]')
        empty = self.net(
            'NAME="e"\nVN_MAD="dummy"\nBRIDGE="b"\nAR=[TYPE="IP4", IP="10.8.0.0", SIZE="65536"]'
        )
        core = self.one.core
        vn_full, vn_empty = core.vnets.get(full), core.vnets.get(empty)
        assert vn_full is not None and vn_empty is not None
        for i in range(60000):
            vn_full.ars[0].set_allocated((i * 7) % 65536, 0x10FFFFFFFF)
        vn_full.ars[0].to_xml()

        def cost(vn: object) -> float:
            start = time.perf_counter()
            for _ in range(300):
                changes = LeaseChanges()
                got = result_of(Deferred.fromCoroutine(leases.take(core, vn, changes, 5)))  # type: ignore[arg-type]
                assert got is not None
                got[0].xml_parts()
                changes.rollback()
            return time.perf_counter() - start

        self.assertLess(cost(vn_full), cost(vn_empty) * 10 + 0.2)
        free = next(i for i in range(65535, 0, -1) if vn_full.ars[0].is_free(i))
        self.one.ok("one.vn.hold", full, f'LEASES=[IP="10.0.{free >> 8}.{free & 255}"]')
        vn = core.vnets.get(full)
        assert vn is not None
        self.assertEqual(vn.used_leases(), 60001)


class NicTests(VNetCase):
    def _acquire(self, nic_attrs: dict[str, str], vm: int) -> dict[str, str]:
        core = self.one.core
        unit = core.unit()
        filled, _ = result_of(
            Deferred.fromCoroutine(nic.acquire_nic(core, unit, nic_attrs, vm, 0, 0))
        )
        result_of(Deferred.fromCoroutine(unit.commit("nic")))
        return dict(filled)

    def test_nic_attributes_as_oned_fills_them(self) -> None:
        """A NIC gets IP/MAC next-fit, the network's attributes and inherited values."""
        self.one.ok("one.secgroup.allocate", 'NAME="sg"')
        self.one.ok("one.cluster.allocate", "c")
        oid = self.net(NET_IP4)
        self.one.ok("one.cluster.addvnet", 100, oid)
        self.one.ok("one.vn.hold", oid, 'LEASES=[IP="10.0.0.10"]')
        got = self._acquire({"NETWORK": "sample-net-ip4"}, 0)
        self.assertEqual(
            got,
            {
                "AR_ID": "0",
                "BRIDGE": "br0",
                "BRIDGE_TYPE": "linux",
                "CLUSTER_ID": "0,100",
                "DNS": "10.0.0.1",
                "GATEWAY": "10.0.0.1",
                "IP": "10.0.0.11",
                "MAC": "02:00:0a:00:00:0b",
                "NETWORK": "sample-net-ip4",
                "NETWORK_ID": "0",
                "NIC_ID": "0",
                "SECURITY_GROUPS": "0,100",
                "TARGET": "one-0-0",
                "VN_MAD": "dummy",
            },
        )
        self.assertIn(
            "<LEASE><IP><![CDATA[10.0.0.11]]></IP><MAC><![CDATA[02:00:0a:00:00:0b]]></MAC><VM><![CDATA[0]]></VM></LEASE>",
            self.info(oid),
        )
        self.assertIn("<UPDATED_VMS><ID>0</ID></UPDATED_VMS>", self.info(oid))
        by_ip = self._acquire({"NETWORK_ID": "0", "IP": "10.0.0.30"}, 1)
        self.assertEqual(by_ip["MAC"], "02:00:0a:00:00:1e")
        with self.assertRaises(Exception) as ctx:
            self._acquire({"NETWORK_ID": "0", "IP": "10.0.0.30"}, 2)
        self.assertIn("Cannot get IP/MAC lease from virtual network 0.", str(ctx.exception))
        unit = self.one.core.unit()
        result_of(Deferred.fromCoroutine(nic.release_nic(self.one.core, unit, by_ip, 1, 0, 0)))
        result_of(Deferred.fromCoroutine(unit.commit("release")))
        self.assertNotIn("10.0.0.30", self.info(oid))
        self.assertEqual(self._acquire({"NETWORK_MODE": "auto"}, 3), {"NETWORK_MODE": "auto"})

    def test_full_range_gives_distinct_addresses_then_refuses(self) -> None:
        """Next-fit wraps around; every address is given once, then no lease."""
        oid = self.net(BASE + 'AR=[TYPE="IP4", IP="10.2.0.1", SIZE="5"]')
        self.one.ok("one.vn.hold", oid, 'LEASES=[IP="10.2.0.2"]')
        ips = {self._acquire({"NETWORK_ID": str(oid)}, vm)["IP"] for vm in range(4)}
        self.assertEqual(ips, {"10.2.0.1", "10.2.0.3", "10.2.0.4", "10.2.0.5"})
        with self.assertRaises(Exception):
            self._acquire({"NETWORK_ID": str(oid)}, 9)
        with self.assertRaises(Exception) as ctx:
            self._acquire({"NETWORK": "nope"}, 9)
        self.assertIn("User 0 does not own a network with name: nope", str(ctx.exception))


class RangeCallTests(VNetCase):
    def test_rm_ar_with_leases_needs_force(self) -> None:
        """rm_ar refuses ranges with leases unless forced; unknown ids are refused."""
        oid = self.net(NET_IP4)
        self.one.ok("one.vn.hold", oid, 'LEASES=[IP="10.0.0.12"]')
        msg, _ = self.refused("one.vn.rm_ar", oid, 0)
        self.assertEqual(msg, "[one.vn.rm_ar] Address Range has leases in use")
        msg, _ = self.refused("one.vn.rm_ar", oid, 5)
        self.assertEqual(msg, "[one.vn.rm_ar] Address Range does not exist")
        msg, _ = self.refused("one.vn.delete", oid)
        self.assertIn("Can not remove a virtual network with leases in use", msg)
        self.one.ok("one.vn.rm_ar", oid, 0, True)
        self.assertIn("<AR_POOL></AR_POOL>", self.info(oid))
        self.one.ok("one.vn.add_ar", oid, 'AR=[TYPE="ETHER", SIZE="3"]')
        self.assertIn("<AR_ID><![CDATA[1]]></AR_ID>", self.info(oid))

    def test_update_ar(self) -> None:
        """update_ar keeps TYPE/IP/MAC, checks SIZE against leases and reservations."""
        oid = self.net(NET_IP4)
        self.one.ok("one.vn.hold", oid, 'LEASES=[IP="10.0.0.40"]')
        self.one.ok("one.vn.update_ar", oid, 'AR=[AR_ID="0", SIZE="40", IP="1.1.1.1", FOO="x"]')
        doc = self.raw_info(oid)
        self.assertIn("<FOO><![CDATA[x]]></FOO><IP><![CDATA[10.0.0.10]]></IP>", doc)
        self.assertIn("<SIZE><![CDATA[40]]></SIZE>", doc)
        msg, _ = self.refused("one.vn.update_ar", oid, 'AR=[AR_ID="0", SIZE="20"]')
        self.assertEqual(
            msg,
            "[one.vn.update_ar] New SIZE cannot be applied. There are used leases that would "
            "fall outside the range.",
        )
        msg, _ = self.refused("one.vn.update_ar", oid, 'AR=[AR_ID="9"]')
        self.assertEqual(msg, "[one.vn.update_ar] Address Range with ID 9 was not found.")
        msg, _ = self.refused("one.vn.update_ar", oid, 'AR=[SIZE="9"]')
        self.assertEqual(msg, "[one.vn.update_ar] AR/AR_ID attribute is missing.")

    def test_reservations(self) -> None:
        """reserve into new and existing reservations; refusals; free_ar gives them back."""
        oid = self.net(NET_IP4)
        rid = self.one.ok("one.vn.reserve", oid, 'NAME="r"\nSIZE="5"')
        self.settle()
        self.one.ok(
            "one.vn.reserve", oid, f'NETWORK_ID="{rid}"\nSIZE="2"\nAR_ID="0"\nIP="10.0.0.40"'
        )
        doc = self.info(rid)
        self.assertIn("<PARENT_NETWORK_ID>0</PARENT_NETWORK_ID>", doc)
        self.assertIn("<IP><![CDATA[10.0.0.40]]></IP>", doc)
        self.assertIn("<USED_LEASES>7</USED_LEASES>", self.info(oid))
        refusals = [
            (oid, 'NAME="x"\nSIZE="0"', "Reservation SIZE must be a greater than 0"),
            (oid, 'SIZE="1"', "NAME for reservation has to be set"),
            (
                oid,
                'NAME="x"\nSIZE="1"\nIP="10.0.0.1"',
                "AR_ID must be specified for IP/MAC based reservations",
            ),
            (
                oid,
                f'NETWORK_ID="{oid}"\nSIZE="1"',
                "Cannot add a reservation from the same network",
            ),
            (rid, 'NAME="x"\nSIZE="1"', "Cannot reserve addresses from a reserved VNET"),
            (oid, 'NAME="x"\nSIZE="100"', "Not enough free addresses in an address range"),
            (
                oid,
                'NAME="x"\nSIZE="2"\nAR_ID="0"\nIP="10.0.0.40"',
                "Not enough free addresses in address range 0, or it does not exist",
            ),
        ]
        for net, text, expected in refusals:
            msg, code = self.refused("one.vn.reserve", net, text)
            self.assertEqual((msg, code), (f"[one.vn.reserve] {expected}", 0x800), text)
        self.settle()
        self.assertEqual(len(self.one.core.vnets), 2)
        self.one.ok("one.vn.free_ar", rid, 1)
        self.assertIn("<USED_LEASES>5</USED_LEASES>", self.info(oid))
        self.one.ok("one.vn.delete", rid)
        self.settle()
        self.assertIn("<USED_LEASES>0</USED_LEASES>", self.info(oid))

    def test_network_quota(self) -> None:
        """A user's LEASES quota caps reservations and is given back exactly."""
        alice = self.user()
        oid = self.net(NET_IP4)
        self.one.ok("one.vn.chmod", oid, 1, 1, 0, 1, 0, 0, 1, 0, 0)
        self.one.ok("one.user.quota", 2, "NETWORK=[ID=0, LEASES=3]")
        rid = self.one.ok("one.vn.reserve", oid, 'NAME="r"\nSIZE="2"', session=alice)
        self.settle()
        msg, code = self.refused("one.vn.reserve", oid, 'NAME="r2"\nSIZE="2"', session=alice)
        self.assertEqual(code, 0x200)
        self.assertIn("limit of 3 reached for LEASES quota in NETWORK with ID: 0", msg)
        self.settle()
        quota = self.one.ok("one.user.info", 2)
        self.assertIn("<LEASES_USED><![CDATA[2]]></LEASES_USED>", quota)
        self.one.ok("one.vn.delete", rid, session=alice)
        self.settle()
        self.assertIn("<LEASES_USED><![CDATA[0]]></LEASES_USED>", self.one.ok("one.user.info", 2))


class IpamTests(VNetCase):
    def test_ipam_range_registers_and_allocates_through_the_driver(self) -> None:
        """IPAM_MAD ranges: REGISTER on create, ALLOCATE/FREE on hold/release."""
        self.drivers.replies["REGISTER_ADDRESS_RANGE"] = (
            True,
            'AR=[TYPE="IP4", IP="10.5.0.1", SIZE="10", IPAM_MAD="dummy"]',
        )
        oid = self.net(BASE + 'AR=[TYPE="IP4", IPAM_MAD="dummy", SIZE="10"]')
        self.assertIn(
            "<IP><![CDATA[10.5.0.1]]></IP><IPAM_MAD><![CDATA[dummy]]>", self.raw_info(oid)
        )
        self.one.ok("one.vn.hold", oid, 'LEASES=[IP="10.5.0.3"]')
        self.one.ok("one.vn.release", oid, 'LEASES=[IP="10.5.0.3"]')
        actions = [r.action for r in self.drivers.requests]
        self.assertEqual(actions, ["REGISTER_ADDRESS_RANGE", "ALLOCATE_ADDRESS", "FREE_ADDRESS"])
        self.drivers.replies["ALLOCATE_ADDRESS"] = (False, "taken")
        self.refused("one.vn.hold", oid, 'LEASES=[IP="10.5.0.3"]')
        self.drivers.replies["REGISTER_ADDRESS_RANGE"] = (False, "no space")
        bad = self.net(
            'NAME="b"\nVN_MAD="dummy"\nBRIDGE="x"\nAR=[TYPE="IP4", IPAM_MAD="dummy", SIZE="10"]'
        )
        doc = self.raw_info(bad)
        self.assertIn("<STATE><![CDATA[5]]></STATE>", doc)
        self.assertIn("no space", doc)


class JournalTests(VNetCase):
    def test_lease_changes_survive_a_restart_before_the_body_is_written(self) -> None:
        """Holds commit journal rows; a reload replays them; the flush writes ALLOCATED."""
        from oned.managers.ipam.vnpool import VirtualNetworkPool

        oid = self.net(NET_IP4)
        self.one.ok("one.vn.hold", oid, 'LEASES=[IP="10.0.0.12"]')
        self.one.ok("one.vn.hold", oid, 'LEASES=[IP="10.0.0.13"]')
        self.one.ok("one.vn.release", oid, 'LEASES=[IP="10.0.0.12"]')
        pool = self.one.ok("one.vnpool.info", -2, -1, -1)
        self.assertIn("<ALLOCATED><![CDATA[ 3 73014444031]]></ALLOCATED>", pool)
        conn = self.one.db._conn
        rows = conn.execute("SELECT COUNT(*) FROM network_lease_journal").fetchone()[0]
        self.assertEqual(rows, 3)
        body = conn.execute("SELECT body FROM network_pool WHERE oid = ?", (oid,)).fetchone()[0]
        self.assertNotIn("<ALLOCATED>", body)
        fresh = VirtualNetworkPool(self.one.db)
        result_of(Deferred.fromCoroutine(fresh.load()))
        vn = fresh.get(oid)
        assert vn is not None
        self.assertEqual(vn.ars[0].allocated, {3: 0x10FFFFFFFF})
        self.assertEqual(
            conn.execute("SELECT COUNT(*) FROM network_lease_journal").fetchone()[0], 0
        )
        body = conn.execute("SELECT body FROM network_pool WHERE oid = ?", (oid,)).fetchone()[0]
        self.assertIn("<ALLOCATED><![CDATA[ 3 73014444031]]></ALLOCATED>", body)

    def test_flush_after_delay(self) -> None:
        """The body is written FLUSH_DELAY after a lease change."""
        oid = self.net(NET_IP4)
        self.one.ok("one.vn.hold", oid, 'LEASES=[IP="10.0.0.20"]')
        self.one.clock.advance(1)
        conn = self.one.db._conn
        body = conn.execute("SELECT body FROM network_pool WHERE oid = ?", (oid,)).fetchone()[0]
        self.assertIn("<ALLOCATED><![CDATA[ 10 73014444031]]></ALLOCATED>", body)
        self.assertEqual(
            conn.execute("SELECT COUNT(*) FROM network_lease_journal").fetchone()[0], 0
        )


class LeaseTemplateTests(VNetCase):
    def test_fast_lease_parse_matches_the_parser(self) -> None:
        """The plain-vector fast path reads what the template parser reads."""
        from oned.api.vnet import _parse
        from oned.template import parse_str_or_xml

        for text in (
            'LEASES=[IP="10.0.0.1"]',
            ' leases = [ ip = " 10.0.0.1 " , ar_id="0" ]\n',
            'LEASES=[IP="1", IP="2"]',
            'AR=[AR_ID="0", SIZE="40"]',
            'LEASES=[IP="a\\"b"]',
            'X="1"',
        ):
            self.assertEqual(_parse(text).items, parse_str_or_xml(text).items, text)


class VmLeaseSampleTests(VNetCase):
    def test_vm_lease_document_is_oneds(self) -> None:
        """A VM NIC after a reservation and a hold: oned's vn.info sample byte for byte."""
        from .vnet_case import sample

        self.one.ok("one.cluster.allocate", "c100")
        self.one.ok("one.secgroup.allocate", 'NAME="sg"')
        oid = self.net(NET_IP4)
        self.net(NET_MULTI)
        self.one.ok("one.vn.reserve", oid, 'NAME="r"\nSIZE=4')
        self.settle()
        self.one.ok("one.cluster.addvnet", 100, oid)
        core = self.one.core
        unit = core.unit()
        filled, _ = result_of(
            Deferred.fromCoroutine(nic.acquire_nic(core, unit, {"NETWORK_ID": "0"}, 0, 0, 0))
        )
        result_of(Deferred.fromCoroutine(unit.commit("vm 0")))
        self.assertEqual(filled["IP"], "10.0.0.14")
        self.one.ok("one.vn.hold", oid, 'LEASES=[IP="10.0.0.15"]')
        self.assertEqual(self.info(oid), sample("one.vn.info.ip4-with-vm-lease.xml"))


class NicJournalTests(VNetCase):
    def test_nic_leases_replay_with_their_vm_lists(self) -> None:
        """NIC leases are journaled; a reload puts the VM in UPDATED_VMS, a release out."""
        from oned.managers.ipam.vnpool import VirtualNetworkPool

        oid = self.net(NET_IP4)
        core = self.one.core
        for vm in (7, 8):
            unit = core.unit()
            result_of(
                Deferred.fromCoroutine(nic.acquire_nic(core, unit, {"NETWORK_ID": "0"}, vm, 0, 0))
            )
            result_of(Deferred.fromCoroutine(unit.commit("vm")))
        unit = core.unit()
        result_of(
            Deferred.fromCoroutine(
                nic.release_nic(
                    core,
                    unit,
                    {"NETWORK_ID": "0", "AR_ID": "0", "MAC": "02:00:0a:00:00:0a"},
                    7,
                    0,
                    0,
                )
            )
        )
        result_of(Deferred.fromCoroutine(unit.commit("release")))
        fresh = VirtualNetworkPool(self.one.db)
        result_of(Deferred.fromCoroutine(fresh.load()))
        vn = fresh.get(oid)
        assert vn is not None
        self.assertEqual(vn.ars[0].allocated, {1: 0x1000000008})
        self.assertEqual(vn.updated, {8})
        self.assertEqual(vn.ars[0].next, 2)
