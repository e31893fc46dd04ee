"""NIC hotplug, NIC_ALIAS and security groups on VMs through the real request manager
and the DM/LCM/VMM managers, with scripted VMM/TM/IPAM drivers (fake clock)."""

from __future__ import annotations

import sys
from pathlib import Path

from lxml import etree
from twisted.internet.defer import Deferred

from oned.managers.ipam.manager import IPAMManager
from oned.managers.ipam.testing import FakeIPAMDrivers
from oned.objects.vm import LcmState as L
from oned.objects.vm import VmState as S
from oned.testing.rpc import result_of

from .test_lifecycle import VM_TEMPLATE, LifecycleCase

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "integration"))
import xsd  # noqa: E402

NET = (
    'NAME="net"\nVN_MAD="dummy"\nBRIDGE="br0"\nAR=[TYPE="IP4", IP="10.0.0.10", SIZE="5"]\n'
    'NETWORK_ADDRESS="10.0.0.0"\nNETWORK_MASK="255.255.255.0"\n'
)
SG = 'NAME="web"\nRULE=[PROTOCOL="TCP", RULE_TYPE="inbound", RANGE="22,80"]\n'
SG2 = 'NAME="dns"\nRULE=[PROTOCOL="UDP", RULE_TYPE="inbound", RANGE="53"]\n'


class NicCase(LifecycleCase):
    def setUp(self) -> None:
        super().setUp()
        self.ipam = FakeIPAMDrivers()
        manager = IPAMManager(self.h.core, self.ipam, self.h.clock)
        self.h.core.ipam_manager = manager
        result_of(Deferred.fromCoroutine(manager.start()))
        self.net = self.h.ok("one.vn.allocate", NET, -1)
        while self.ipam.answer_all():
            self.h.clock.advance(0)
        self.h.clock.advance(0)

    def valid(self, doc: str) -> None:
        if xsd.available():
            self.assertEqual(xsd.errors(doc), [])

    def nics(self, vid: int, name: str = "NIC") -> list[dict[str, str]]:
        vm = self.vm(vid)
        if vm.find("TEMPLATE/TM_MAD_SYSTEM") is not None:  # oned's XSD requires it
            self.valid(etree.tostring(vm, encoding="unicode"))
        return [{c.tag: c.text or "" for c in n} for n in vm.findall(f"TEMPLATE/{name}")]

    def leases(self) -> list[str]:
        doc = etree.fromstring(self.h.ok("one.vn.info", self.net).encode())
        return [
            f"{lease.findtext('IP')}:{lease.findtext('VM')}"
            for lease in doc.findall("AR_POOL/AR/LEASES/LEASE")
        ]

    def sg(self, oid: int) -> dict[str, list[str]]:
        doc = etree.fromstring(self.h.ok("one.secgroup.info", oid).encode())
        return {
            tag: [i.text or "" for i in doc.findall(f"{tag}/ID")]
            for tag in ("UPDATED_VMS", "OUTDATED_VMS", "UPDATING_VMS", "ERROR_VMS")
        }

    def rules(self, vid: int) -> list[str]:
        vm = self.vm(vid)
        return [
            r.findtext("SECURITY_GROUP_ID") or ""
            for r in vm.findall("TEMPLATE/SECURITY_GROUP_RULE")
        ]

    def refused(self, method: str, *params: object) -> tuple[str, int]:
        reply = self.h.call(method, *params)
        self.assertFalse(reply[0], reply)
        return str(reply[1]), int(reply[2])


class AttachNicTests(NicCase):
    def test_attach_running_goes_through_hotplug_nic(self) -> None:
        vid = self.running_vm()
        self.h.ok("one.vm.attachnic", vid, f'NIC=[NETWORK_ID="{self.net}"]')
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.HOTPLUG_NIC))
        [nic] = self.nics(vid)
        self.assertEqual(nic["ATTACH"], "YES")
        self.assertEqual((nic["NIC_ID"], nic["NAME"], nic["IP"]), ("0", "NIC0", "10.0.0.10"))
        self.assertEqual(nic["TARGET"], f"one-{vid}-0")
        self.assertEqual(nic["SECURITY_GROUPS"], "0")
        [sent] = self.drivers.pending("ATTACHNIC")
        self.assertIn("<NIC>", sent.document)
        self.assertEqual(self.leases(), [f"10.0.0.10:{vid}"])
        self.assertEqual(self.rules(vid), ["0", "0"])
        self.assertEqual(self.sg(0)["UPDATED_VMS"], [str(vid)])
        self.drivers.reply("ATTACHNIC", vid)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        [nic] = self.nics(vid)
        self.assertNotIn("ATTACH", nic)
        history = self.vm(vid).findall("HISTORY_RECORDS/HISTORY")
        self.assertEqual([h.findtext("ACTION") for h in history], ["23", "0"])

    def test_attach_failure_releases_lease_and_sets_error(self) -> None:
        vid = self.running_vm()
        self.h.ok("one.vm.attachnic", vid, f'NIC=[NETWORK_ID="{self.net}"]')
        self.flush()
        self.drivers.reply("ATTACHNIC", vid, success=False, info="boom")
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assertEqual(self.nics(vid), [])
        self.assertEqual(self.leases(), [])
        self.assertEqual(self.rules(vid), [])
        self.assertEqual(self.sg(0)["UPDATED_VMS"], [])
        self.assertIn("ATTACHNIC: boom", self.vm(vid).findtext("USER_TEMPLATE/ERROR") or "")

    def test_attach_poweroff_is_immediate(self) -> None:
        vid = self.running_vm()
        self.action("poweroff", vid)
        self.settle()
        self.assertEqual(self.states(vid), (S.POWEROFF, L.LCM_INIT))
        self.h.ok("one.vm.attachnic", vid, f'NIC=[NETWORK_ID="{self.net}"]')
        self.flush()
        self.assertEqual(self.states(vid), (S.POWEROFF, L.LCM_INIT))
        self.assertEqual(self.drivers.pending("ATTACHNIC"), [])
        [nic] = self.nics(vid)
        self.assertNotIn("ATTACH", nic)
        self.h.ok("one.vm.detachnic", vid, 0)
        self.assertEqual(self.nics(vid), [])
        self.assertEqual(self.leases(), [])

    def test_refusals(self) -> None:
        vid = self.h.ok("one.vm.allocate", VM_TEMPLATE)
        msg, code = self.refused("one.vm.attachnic", vid, f'NIC=[NETWORK_ID="{self.net}"]')
        self.assertEqual(
            msg, f"[one.vm.attachnic] Could not add a new NIC to VM {vid}, wrong state PENDING."
        )
        self.assertEqual(code, 0x800)
        msg, _ = self.refused("one.vm.attachnic", 99, "NIC=[NETWORK_ID=0]")
        self.assertEqual(msg, "[one.vm.attachnic] Error getting virtual machine [99].")
        msg, _ = self.refused("one.vm.detachnic", vid, 3)
        self.assertIn("wrong state PENDING", msg)
        run = self.running_vm()
        msg, _ = self.refused("one.vm.detachnic", run, 3)
        self.assertEqual(
            msg, "[one.vm.detachnic] Could not detach NIC with NIC_ID 3, it does not exist."
        )
        msg, _ = self.refused("one.vm.attachnic", run, "NIC=[NETWORK_ID=77]")
        self.assertEqual(msg, "[one.vm.attachnic] Virtual network with ID: 77 does not exist")
        msg, _ = self.refused("one.vm.attachnic", run, 'DISK=[SIZE="1"]')
        self.assertEqual(
            msg, "[one.vm.attachnic] Wrong format or missing NIC/NIC_ALIAS/PCI attribute"
        )
        self.assertEqual(self.states(run), (S.ACTIVE, L.RUNNING))
        msg, _ = self.refused("one.vm.updatenic", run, 5, "NIC=[INBOUND_AVG_BW=1]")
        self.assertEqual(msg, f"[one.vm.updatenic] VM {run}: NIC 5 does not exists")

    def test_restart_resends_attachnic(self) -> None:
        vid = self.running_vm()
        self.h.ok("one.vm.attachnic", vid, f'NIC=[NETWORK_ID="{self.net}"]')
        self.flush()
        self.drivers.sent.clear()
        self.h.core.lifecycle_manager._resume_one(self.h.core.vms.get(vid))
        self.flush()
        self.assertEqual(len(self.drivers.pending("ATTACHNIC")), 1)
        self.drivers.reply("ATTACHNIC", vid)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))


class DetachAliasTests(NicCase):
    def test_alias_attach_and_detach_with_parent(self) -> None:
        vid = self.running_vm()
        self.h.ok("one.vm.attachnic", vid, f'NIC=[NETWORK_ID="{self.net}"]')
        self.settle()
        self.h.ok("one.vm.attachnic", vid, f'NIC_ALIAS=[NETWORK_ID="{self.net}", PARENT="NIC0"]')
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.HOTPLUG_NIC))
        self.drivers.reply("ATTACHNIC", vid)
        self.flush()
        [alias] = self.nics(vid, "NIC_ALIAS")
        self.assertEqual(
            [alias[k] for k in ("NIC_ID", "PARENT", "PARENT_ID", "ALIAS_ID", "NAME")],
            ["1", "NIC0", "0", "0", "NIC0_ALIAS1"],
        )
        [nic] = self.nics(vid)
        self.assertEqual(nic["ALIAS_IDS"], "1")
        self.assertEqual(len(self.leases()), 2)
        self.h.ok("one.vm.detachnic", vid, 0)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.HOTPLUG_NIC))
        self.drivers.reply("DETACHNIC", vid)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assertEqual(self.nics(vid) + self.nics(vid, "NIC_ALIAS"), [])
        self.assertEqual(self.leases(), [])
        self.assertEqual(self.rules(vid), [])

    def test_alias_at_allocate(self) -> None:
        tmpl = (
            f'{VM_TEMPLATE}\nNIC=[NETWORK_ID="{self.net}", NAME="main"]\n'
            f'NIC_ALIAS=[NETWORK_ID="{self.net}", PARENT="main"]\n'
            f'NIC_ALIAS=[NETWORK_ID="{self.net}", PARENT="main"]'
        )
        vid = self.h.ok("one.vm.allocate", tmpl)
        [nic] = self.nics(vid)
        self.assertEqual(nic["ALIAS_IDS"], "1,2")
        aliases = self.nics(vid, "NIC_ALIAS")
        self.assertEqual([a["ALIAS_ID"] for a in aliases], ["0", "1"])
        self.assertEqual([a["NAME"] for a in aliases], ["NIC0_ALIAS1", "NIC0_ALIAS2"])
        self.assertEqual(self.rules(vid), ["0", "0"])
        self.assertEqual(self.sg(0)["UPDATED_VMS"], [str(vid)])
        msg, _ = self.refused(
            "one.vm.allocate",
            f'{VM_TEMPLATE}\nNIC_ALIAS=[NETWORK_ID="{self.net}", PARENT="nope"]',
        )
        self.assertIn("NIC named nope not found for alias", msg)
        self.action("terminate", vid)
        self.settle()
        self.assertEqual(self.sg(0)["UPDATED_VMS"], [])
        self.assertEqual(self.leases(), [])


class SecurityGroupTests(NicCase):
    def test_attach_and_detach_sg_running(self) -> None:
        sg = self.h.ok("one.secgroup.allocate", SG)
        tmpl = f'{VM_TEMPLATE}\nNIC=[NETWORK_ID="{self.net}"]'
        vid = self.h.ok("one.vm.allocate", tmpl)
        self.h.ok("one.vm.deploy", vid, self.hid)
        self.settle()
        self.h.ok("one.vm.attachsg", vid, 0, sg)
        self.flush()
        self.assertEqual(self.sg(sg)["UPDATING_VMS"], [str(vid)])
        self.assertEqual(self.rules(vid), ["0", "0", str(sg)])
        [sent] = self.drivers.pending("UPDATESG")
        self.assertIn(f"<SECURITY_GROUP_ID>{sg}</SECURITY_GROUP_ID>", sent.document)
        self.drivers.reply("UPDATESG", vid, info=str(sg))
        self.flush()
        self.assertEqual(self.sg(sg)["UPDATED_VMS"], [str(vid)])
        [nic] = self.nics(vid)
        self.assertEqual(nic["SECURITY_GROUPS"], f"0,{sg}")
        msg, _ = self.refused("one.vm.attachsg", vid, 0, sg)
        self.assertEqual(msg, f"[one.vm.attachsg] VM {vid} SG {sg} already in NIC 0")
        msg, _ = self.refused("one.vm.attachsg", vid, 4, sg)
        self.assertEqual(msg, f"[one.vm.attachsg] VM {vid} doesn't have NIC id 4")
        self.h.ok("one.vm.detachsg", vid, 0, sg)
        self.flush()
        self.drivers.reply("UPDATESG", vid, info=str(sg))
        self.flush()
        self.assertEqual(self.sg(sg), {k: [] for k in self.sg(sg)})
        self.assertEqual(self.rules(vid), ["0", "0"])
        msg, _ = self.refused("one.vm.detachsg", vid, 0, sg)
        self.assertEqual(msg, f"[one.vm.detachsg] VM {vid} NIC 0 doesn't contain SG {sg}")

    def test_secgroup_update_pushes_rules(self) -> None:
        sg = self.h.ok("one.secgroup.allocate", SG)
        tmpl = f'{VM_TEMPLATE}\nNIC=[NETWORK_ID="{self.net}", SECURITY_GROUPS="{sg}"]'
        vid = self.h.ok("one.vm.allocate", tmpl)
        held = self.h.ok("one.vm.allocate", tmpl, True)
        self.h.ok("one.vm.deploy", vid, self.hid)
        self.settle()
        self.assertEqual(sorted(self.sg(sg)["UPDATED_VMS"]), sorted([str(vid), str(held)]))
        self.h.ok("one.secgroup.update", sg, SG2)
        self.flush()
        doc = self.sg(sg)
        self.assertEqual((doc["UPDATING_VMS"], doc["OUTDATED_VMS"]), ([str(vid)], [str(held)]))
        self.drivers.reply("UPDATESG", vid, success=False, info=str(sg))
        self.flush()
        doc = self.sg(sg)
        self.assertEqual((doc["ERROR_VMS"], doc["UPDATED_VMS"]), ([str(vid)], [str(held)]))
        rules = self.vm(held).findall("TEMPLATE/SECURITY_GROUP_RULE")
        self.assertIn("53", [r.findtext("RANGE") for r in rules])
        self.assertIn("UPDATESG", self.vm(vid).findtext("USER_TEMPLATE/ERROR") or "")


class UpdateNicTests(NicCase):
    def test_updatenic_live(self) -> None:
        tmpl = f'{VM_TEMPLATE}\nNIC=[NETWORK_ID="{self.net}", INBOUND_AVG_BW="10"]'
        vid = self.h.ok("one.vm.allocate", tmpl)
        self.h.ok("one.vm.deploy", vid, self.hid)
        self.settle()
        self.h.ok("one.vm.updatenic", vid, 0, 'NIC=[OUTBOUND_AVG_BW="5", MAC="x"]', 1)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.HOTPLUG_NIC))
        vm = self.vm(vid)
        self.assertEqual(vm.findtext("TEMPLATE/VNET_UPDATE/OUTBOUND_AVG_BW"), "")
        [sent] = self.drivers.pending("UPDATENIC")
        self.assertIn(f"<VIRTUAL_NETWORK_ID>{self.net}</VIRTUAL_NETWORK_ID>", sent.document)
        self.drivers.reply("UPDATENIC", vid, info=str(self.net))
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        [nic] = self.nics(vid)
        self.assertEqual((nic["INBOUND_AVG_BW"], nic["OUTBOUND_AVG_BW"]), ("10", "5"))
        self.assertNotEqual(nic["MAC"], "x")
        self.assertIsNone(self.vm(vid).find("TEMPLATE/VNET_UPDATE"))
        # nothing changes: no driver call
        self.h.ok("one.vm.updatenic", vid, 0, 'NIC=[OUTBOUND_AVG_BW="5", INBOUND_AVG_BW="10"]')
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assertEqual(self.drivers.pending("UPDATENIC"), [])


class QuotaRecoverTests(NicCase):
    def test_leases_quota_of_the_owner(self) -> None:
        uid = self.h.ok("one.user.allocate", "bob", "pw", "core", [])
        self.h.ok("one.user.quota", uid, f'NETWORK=[ID="{self.net}", LEASES="1"]')
        vid = self.running_vm()
        self.h.ok("one.vm.chown", vid, uid, -1)
        self.h.ok("one.vm.attachnic", vid, f'NIC=[NETWORK_ID="{self.net}"]')
        self.settle()
        user = etree.fromstring(self.h.ok("one.user.info", uid).encode())
        self.assertEqual(user.findtext("NETWORK_QUOTA/NETWORK/LEASES_USED"), "1")
        msg, code = self.refused("one.vm.attachnic", vid, f'NIC=[NETWORK_ID="{self.net}"]')
        self.assertEqual(code, 0x200)
        self.assertIn("LEASES quota in NETWORK with ID", msg)
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assertEqual(len(self.leases()), 1)
        self.h.ok("one.vm.detachnic", vid, 0)
        self.settle()
        user = etree.fromstring(self.h.ok("one.user.info", uid).encode())
        self.assertEqual(user.findtext("NETWORK_QUOTA/NETWORK/LEASES_USED"), "0")

    def test_detach_failure_keeps_the_nic_and_recover(self) -> None:
        vid = self.running_vm()
        self.h.ok("one.vm.attachnic", vid, f'NIC=[NETWORK_ID="{self.net}"]')
        self.settle()
        self.h.ok("one.vm.detachnic", vid, 0)
        self.flush()
        self.drivers.reply("DETACHNIC", vid, success=False)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        [nic] = self.nics(vid)
        self.assertNotIn("ATTACH", nic)
        self.assertEqual(len(self.leases()), 1)
        self.assertIsNone(self.vm(vid).find("USER_TEMPLATE/ERROR"))  # info "-": log only
        # recover --failure of a hanging attach drops the NIC
        self.h.ok("one.vm.attachnic", vid, f'NIC=[NETWORK_ID="{self.net}"]')
        self.flush()
        self.h.ok("one.vm.recover", vid, 0)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assertEqual(len(self.nics(vid)), 1)
        self.assertEqual(len(self.leases()), 1)

    def test_alias_context_at_allocate(self) -> None:
        tmpl = (
            f'{VM_TEMPLATE}\nCONTEXT=[NETWORK="YES"]\nNIC=[NETWORK_ID="{self.net}"]\n'
            f'NIC_ALIAS=[NETWORK_ID="{self.net}", PARENT="NIC0"]'
        )
        vid = self.h.ok("one.vm.allocate", tmpl)
        context = self.vm(vid).find("TEMPLATE/CONTEXT")
        assert context is not None
        self.assertEqual(context.findtext("ETH0_IP"), "10.0.0.10")
        self.assertEqual(context.findtext("ETH0_ALIAS0_IP"), "10.0.0.11")
        self.assertEqual(context.findtext("ETH0_ALIAS0_MASK"), "255.255.255.0")


class MoreNicTests(NicCase):
    def test_sg_on_poweroff_and_in_hotplug(self) -> None:
        sg = self.h.ok("one.secgroup.allocate", SG)
        vid = self.h.ok("one.vm.allocate", f'{VM_TEMPLATE}\nNIC=[NETWORK_ID="{self.net}"]')
        self.h.ok("one.vm.deploy", vid, self.hid)
        self.settle()
        self.h.ok("one.vm.attachnic", vid, f'NIC=[NETWORK_ID="{self.net}"]')
        self.flush()
        msg, code = self.refused("one.vm.attachsg", vid, 0, sg)
        self.assertEqual(msg, f"[one.vm.attachsg] VM {vid} is in wrong state HOTPLUG_NIC")
        self.assertEqual(code, 0x800)
        self.settle()
        self.action("poweroff", vid)
        self.settle()
        self.drivers.sent.clear()
        self.h.ok("one.vm.attachsg", vid, 1, sg)
        self.assertEqual(self.drivers.pending("UPDATESG"), [])
        self.assertEqual(self.sg(sg)["UPDATED_VMS"], [str(vid)])
        self.assertEqual(self.nics(vid)[1]["SECURITY_GROUPS"], f"0,{sg}")
        # updatenic of a VM that is not ACTIVE changes the NIC only
        self.h.ok("one.vm.updatenic", vid, 1, 'NIC=[INBOUND_AVG_BW="7"]')
        self.assertEqual(self.nics(vid)[1]["INBOUND_AVG_BW"], "7")
        self.assertIsNone(self.vm(vid).find("TEMPLATE/VNET_UPDATE"))
        self.assertEqual(self.states(vid), (S.POWEROFF, L.LCM_INIT))
        msg, _ = self.refused("one.vm.detachsg", vid, 1, 99)
        self.assertEqual(msg, f"[one.vm.detachsg] VM {vid} NIC 1 doesn't contain SG 99")
        msg, _ = self.refused("one.vm.attachsg", vid, 1, 99)
        self.assertEqual(msg, "[one.vm.attachsg] Could not attach SG 99 to VM, SG does not exist")

    def test_restart_resends_detachnic_and_pool_lists_aliases(self) -> None:
        tmpl = (
            f'{VM_TEMPLATE}\nNIC=[NETWORK_ID="{self.net}"]\n'
            f'NIC_ALIAS=[NETWORK_ID="{self.net}", PARENT="NIC0"]'
        )
        vid = self.h.ok("one.vm.allocate", tmpl)
        pool = etree.fromstring(self.h.ok("one.vmpool.info", -2, -1, -1, -1).encode())
        self.assertEqual(
            [n.findtext("NIC_ID") for n in pool.findall("VM/TEMPLATE/NIC")], ["0", "1"]
        )
        self.h.ok("one.vm.deploy", vid, self.hid)
        self.settle()
        self.h.ok("one.vm.detachnic", vid, 1)
        self.flush()
        self.assertEqual(self.nics(vid)[0].get("ALIAS_IDS"), "")
        self.drivers.sent.clear()
        self.h.core.lifecycle_manager._resume_one(self.h.core.vms.get(vid))
        self.flush()
        self.drivers.reply("DETACHNIC", vid)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assertEqual(self.nics(vid, "NIC_ALIAS"), [])
        self.assertEqual(len(self.leases()), 1)

    def test_other_users_are_refused(self) -> None:
        self.h.ok("one.user.allocate", "eve", "pw", "core", [])
        vid = self.running_vm()
        reply = self.h.call(
            "one.vm.attachnic", vid, f'NIC=[NETWORK_ID="{self.net}"]', session="eve:pw"
        )
        self.assertFalse(reply[0])
        self.assertEqual(reply[2], 0x200)
        self.assertIn("Not authorized to perform MANAGE VM", str(reply[1]))


class VnetUpdateTests(NicCase):
    def test_vn_update_reaches_the_nics(self) -> None:
        tmpl = f'{VM_TEMPLATE}\nNIC=[NETWORK_ID="{self.net}"]'
        vid = self.h.ok("one.vm.allocate", tmpl)
        held = self.h.ok("one.vm.allocate", tmpl, True)
        own = self.h.ok("one.vm.allocate", f'{tmpl[:-1]}, INBOUND_AVG_BW="9"]', True)
        self.h.ok("one.vm.deploy", vid, self.hid)
        self.settle()
        self.h.ok("one.vn.update", self.net, 'INBOUND_AVG_BW="100"', 1)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.HOTPLUG_NIC))
        [sent] = self.drivers.pending("UPDATENIC")
        self.assertIn(f"<VIRTUAL_NETWORK_ID>{self.net}</VIRTUAL_NETWORK_ID>", sent.document)
        vn = etree.fromstring(self.h.ok("one.vn.info", self.net).encode())
        self.assertEqual([i.text for i in vn.findall("UPDATING_VMS/ID")], [str(vid)])
        # (oned's vm.xsd has no VNET_UPDATE: the document is not validated meanwhile)
        self.assertEqual(self.vm(vid).findtext("TEMPLATE/NIC/INBOUND_AVG_BW"), "100")
        self.assertEqual(self.vm(vid).findtext("TEMPLATE/VNET_UPDATE/INBOUND_AVG_BW"), "")
        self.drivers.reply("UPDATENIC", vid, info=str(self.net))
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assertIsNone(self.vm(vid).find("TEMPLATE/VNET_UPDATE"))
        vn = etree.fromstring(self.h.ok("one.vn.info", self.net).encode())
        self.assertEqual(
            sorted(i.text or "" for i in vn.findall("UPDATED_VMS/ID")),
            sorted([str(vid), str(held), str(own)]),
        )
        self.assertIsNone(vn.find("TEMPLATE/VNET_UPDATE"))
        self.assertEqual(self.nics(held)[0]["INBOUND_AVG_BW"], "100")
        self.assertEqual(self.nics(own)[0]["INBOUND_AVG_BW"], "9")


class ColdAttachTests(NicCase):
    def test_cold_nic_attach_goes_through_the_driver(self) -> None:
        self.h.core.config.template.add(
            "VM_MAD", {"NAME": "dummy", "EXECUTABLE": "one_vmm_dummy", "COLD_NIC_ATTACH": "YES"}
        )
        vid = self.running_vm()
        self.action("poweroff", vid)
        self.settle()
        self.h.ok("one.vm.attachnic", vid, f'NIC=[NETWORK_ID="{self.net}"]')
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.HOTPLUG_NIC_POWEROFF))
        self.drivers.reply("ATTACHNIC", vid)
        self.flush()
        self.assertEqual(self.states(vid), (S.POWEROFF, L.LCM_INIT))
        self.assertNotIn("ATTACH", self.nics(vid)[0])
        self.h.ok("one.vm.detachnic", vid, 0)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.HOTPLUG_NIC_POWEROFF))
        self.drivers.reply("DETACHNIC", vid)
        self.flush()
        self.assertEqual(self.states(vid), (S.POWEROFF, L.LCM_INIT))
        self.assertEqual(self.nics(vid), [])
        self.assertEqual(self.leases(), [])
