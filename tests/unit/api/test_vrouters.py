"""one.vrouter.*: floating leases, instantiate, NIC changes and delete."""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from tests.integration import xsd
from tests.unit.api.vnet_case import VNetCase

SAMPLES = Path(__file__).resolve().parents[3].parent / "shared" / "samples"
NET = 'NAME="sample-net-ip4"\nVN_MAD=dummy\nBRIDGE=br0\nAR=[TYPE=IP4, IP=10.0.0.10, SIZE=8]'
ROUTER = (
    'NAME="sample-vrouter"\nDESCRIPTION="router in front of sample-net-ip4"\n'
    'KEEPALIVED_ID=7\nNIC=[NETWORK="sample-net-ip4"]'
)


class VRouterTests(VNetCase):
    def setUp(self) -> None:
        super().setUp()
        self.vnid = self.net(NET)

    def info(self, oid: int) -> etree._Element:
        return etree.fromstring(self.one.ok("one.vrouter.info", oid))

    def test_document_as_oned(self) -> None:
        oid = self.one.ok("one.vrouter.allocate", ROUTER)
        self.assertEqual(oid, 0)
        body = self.one.ok("one.vrouter.info", oid)
        sample = SAMPLES / "one.vrouter.info.no-vms.xml"
        if sample.exists():
            self.assertEqual(body, sample.read_text())
        if xsd.available():
            self.assertEqual(xsd.errors(body), [])
            self.assertEqual(xsd.errors(self.one.ok("one.vrouterpool.info", -2, -1, -1)), [])
        self.assertEqual(
            self.one.call("one.vrouter.info", 9999)[1],
            "[one.vrouter.info] Error getting virtual router [9999].",
        )

    def test_floating_ip_is_leased_to_the_router(self) -> None:
        oid = self.one.ok(
            "one.vrouter.allocate",
            'NAME=r\nNIC=[NETWORK_ID="0", FLOATING_IP="YES", IP="10.0.0.12"]',
        )
        nic = self.info(oid).find("TEMPLATE/NIC")
        assert nic is not None
        self.assertEqual((nic.findtext("IP"), nic.findtext("AR_ID")), ("10.0.0.12", "0"))
        vn = etree.fromstring(self.one.ok("one.vn.info", self.vnid))
        self.assertEqual([i.text for i in vn.findall("VROUTERS/ID")], [str(oid)])
        lease = vn.find("AR_POOL/AR/LEASES/LEASE")
        assert lease is not None
        self.assertEqual(lease.findtext("VROUTER"), str(oid))
        reply = self.one.call(
            "one.vrouter.allocate", 'NAME=r2\nNIC=[NETWORK_ID="0", NETWORK_MODE="auto"]'
        )
        self.assertEqual(
            reply[1], "[one.vrouter.allocate] Virtual Router is incompatible with auto mode"
        )
        self.one.ok("one.vrouter.delete", oid)
        vn = etree.fromstring(self.one.ok("one.vn.info", self.vnid))
        self.assertEqual(vn.findall("VROUTERS/ID"), [])
        self.assertIsNone(vn.find("AR_POOL/AR/LEASES/LEASE"))

    def test_instantiate_update_nics_and_delete(self) -> None:
        oid = self.one.ok(
            "one.vrouter.allocate",
            ROUTER.replace(
                'NIC=[NETWORK="sample-net-ip4"]', 'NIC=[NETWORK_ID="0", FLOATING_IP="YES"]'
            ),
        )
        plain = self.one.ok("one.template.allocate", "NAME=t\nCPU=0.1\nMEMORY=64")
        reply = self.one.call("one.vrouter.instantiate", oid, 1, plain, "", False, "")
        self.assertEqual(
            reply[1], "[one.vrouter.instantiate] Only virtual router templates are allowed"
        )
        reply = self.one.call("one.vrouter.instantiate", oid, 1, -1, "", False, "")
        self.assertIn("does not have a default one", reply[1])
        tid = self.one.ok("one.template.allocate", "NAME=vr\nCPU=0.1\nMEMORY=64\nVROUTER=YES")
        self.assertEqual(self.one.ok("one.vrouter.instantiate", oid, 2, tid, "", True, ""), oid)
        doc = self.info(oid)
        vms = [int(i.text or -1) for i in doc.findall("VMS/ID")]
        self.assertEqual(len(vms), 2)
        self.assertEqual(doc.findtext("TEMPLATE/TEMPLATE_ID"), str(tid))
        vm = etree.fromstring(self.one.ok("one.vm.info", vms[0]))
        self.assertEqual(vm.findtext("NAME"), "vr-sample-vrouter-0")
        self.assertEqual(vm.findtext("TEMPLATE/VROUTER_ID"), str(oid))
        self.assertEqual(vm.findtext("TEMPLATE/VROUTER_KEEPALIVED_ID"), "7")
        router_ip = doc.findtext("TEMPLATE/NIC/IP")
        self.assertEqual(vm.findtext("TEMPLATE/NIC/VROUTER_IP"), router_ip)
        self.assertNotEqual(vm.findtext("TEMPLATE/NIC/IP"), router_ip)
        # update keeps the router's NICs
        self.one.ok("one.vrouter.update", oid, "DESCRIPTION=new", 0)
        doc = self.info(oid)
        self.assertEqual(doc.findtext("TEMPLATE/DESCRIPTION"), "new")
        self.assertIsNotNone(doc.find("TEMPLATE/NIC"))
        self.assertEqual(
            self.one.call("one.vrouter.detachnic", oid, 5)[1],
            "[one.vrouter.detachnic] NIC with NIC_ID 5 does not exist.",
        )
        self.assertEqual(
            self.one.call("one.vrouter.attachnic", oid, "NIC_ALIAS=[NETWORK_ID=0]")[1],
            "[one.vrouter.attachnic] Alias can't be attached to virtual router.",
        )
        # deleting the router terminates its VMs and frees every lease
        self.one.ok("one.vrouter.delete", oid)
        for vid in vms:
            state = etree.fromstring(self.one.ok("one.vm.info", vid)).findtext("STATE")
            self.assertEqual(state, "6")
        vn = etree.fromstring(self.one.ok("one.vn.info", self.vnid))
        self.assertIsNone(vn.find("AR_POOL/AR/LEASES/LEASE"))

    def test_nic_attach_and_detach_reach_the_router_vms(self) -> None:
        """one.vrouter.attachnic/detachnic run oned's VM NIC attach/detach on each VM
        without the "not supported for virtual router VMs" check of one.vm.attachnic."""
        oid = self.one.ok("one.vrouter.allocate", ROUTER)
        tid = self.one.ok("one.template.allocate", "NAME=vr\nCPU=0.1\nMEMORY=64\nVROUTER=YES")
        self.one.ok("one.vrouter.instantiate", oid, 2, tid, "", True, "")
        vms = [int(i.text or -1) for i in self.info(oid).findall("VMS/ID")]
        self.assertEqual(
            self.one.call("one.vm.attachnic", vms[0], "NIC=[NETWORK_ID=0]")[1],
            "[one.vm.attachnic] Action is not supported for virtual router VMs",
        )
        # VMs on hold: the DispatchManager's own refusal, as oned's (the router keeps
        # its new NIC: oned does not roll it back either)
        self.assertEqual(
            self.one.call("one.vrouter.attachnic", oid, "NIC=[NETWORK_ID=0]")[1],
            f"[one.vrouter.attachnic] Could not add a new NIC to VM {vms[0]}, wrong state HOLD.",
        )
        self.assertEqual(len(self.info(oid).findall("TEMPLATE/NIC")), 2)
        reply = self.one.call("one.vrouter.detachnic", oid, 1)
        self.assertNotIn("virtual router VMs", reply[1])
        self.assertEqual(len(self.info(oid).findall("TEMPLATE/NIC")), 1)
