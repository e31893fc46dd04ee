"""one.vm.* and one.vmpool.* through the real request manager (in-memory database, fake
clock, no drivers): documents against the samples, oned's texts, quotas."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from lxml import etree
from twisted.trial.unittest import SynchronousTestCase

from oned.testing.rpc import OnedHarness

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "integration"))
import xsd  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[4] / "shared" / "samples"

T18_NO_DEVICES = (
    'NAME="sample-vm"\nCPU="0.5"\nVCPU="1"\nMEMORY="256"\nCPU_COST="0.1"\n'
    'MEMORY_COST="0.001"\nDISK_COST="0.0001"\nGRAPHICS=[TYPE="VNC", LISTEN="0.0.0.0"]\n'
    'OS=[ARCH="x86_64", BOOT="disk0"]\nSCHED_REQUIREMENTS="ID=0"\n'
    'DESCRIPTION="main sample VM"\n'
)


def sample(name: str) -> str:
    return (SAMPLES / name).read_text()


def strip_devices(doc: str) -> str:
    """The sample without what needs images, networks and clusters (not in this test)."""
    for tag in ("DISK", "NIC", "CONTEXT", "SECURITY_GROUP_RULE"):
        doc = re.sub(rf"<{tag}>.*?</{tag}>", "", doc)
    doc = re.sub(r"<AUTOMATIC_(DS|NIC)_REQUIREMENTS>.*?</AUTOMATIC_\1_REQUIREMENTS>", "", doc)
    doc = re.sub(
        r"<AUTOMATIC_REQUIREMENTS>.*?</AUTOMATIC_REQUIREMENTS>",
        "<AUTOMATIC_REQUIREMENTS><![CDATA[!(PIN_POLICY = PINNED)]]></AUTOMATIC_REQUIREMENTS>",
        doc,
    )
    return doc.replace("<MACHINE><![CDATA[q35]]></MACHINE>", "")


def volatile(doc: str) -> str:
    doc = re.sub(r"<STIME>\d+</STIME>", "<STIME>T</STIME>", doc)
    return re.sub(r"<UUID><!\[CDATA\[[-0-9a-f]+\]\]></UUID>", "<UUID>U</UUID>", doc)


class VmApiCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = OnedHarness()
        self.addCleanup(self.h.close)

    def err(self, method: str, *params: object, session: str | None = None) -> tuple[str, int]:
        reply = self.h.call(method, *params, session=session)
        self.assertFalse(reply[0], reply)
        return reply[1], reply[2]


class AllocateTests(VmApiCase):
    def test_hold_document_matches_the_sample(self) -> None:
        """A held VM is oned's document byte for byte (volatile values aside)."""
        vid = self.h.ok("one.vm.allocate", T18_NO_DEVICES, True)
        self.assertEqual(vid, 0)
        ours = self.h.ok("one.vm.info", vid)
        theirs = strip_devices(sample("one.vm.info.hold.xml"))
        self.assertEqual(volatile(ours), volatile(theirs))

    def test_pool_short_form_matches_the_sample(self) -> None:
        """vmpool.info gives oned's short VM (no PERMISSIONS, short TEMPLATE)."""
        self.h.ok("one.vm.allocate", T18_NO_DEVICES, True)
        ours = self.h.ok("one.vmpool.info", -2, -1, -1, -1)
        expected = (
            "<VM_POOL><VM><ID>0</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME>"
            "<GNAME>oneadmin</GNAME><NAME>sample-vm</NAME><LAST_POLL>0</LAST_POLL>"
            "<STATE>2</STATE><LCM_STATE>0</LCM_STATE><RESCHED>0</RESCHED><STIME>T</STIME>"
            "<ETIME>0</ETIME><DEPLOY_ID></DEPLOY_ID><TEMPLATE><CPU>0.5</CPU><MEMORY>256</MEMORY>"
            "<VCPU>1</VCPU><GRAPHICS><LISTEN><![CDATA[0.0.0.0]]></LISTEN><TYPE><![CDATA[VNC]]>"
            "</TYPE></GRAPHICS></TEMPLATE><MONITORING/><USER_TEMPLATE><SCHED_REQUIREMENTS>"
            "<![CDATA[ID=0]]></SCHED_REQUIREMENTS></USER_TEMPLATE><HISTORY_RECORDS/></VM>"
            "</VM_POOL>"
        )
        self.assertEqual(volatile(ours), expected)
        if xsd.available():
            self.assertEqual(xsd.errors(ours), [])

    def test_allocate_texts(self) -> None:
        """Bad templates answer oned's texts (INTERNAL), and nothing is created."""
        cases = {
            'NAME="broken\nCPU=1\n': "Invalid NAME, char '\"' is not allowed",
            "CPU=1": "MEMORY attribute must be a positive integer value.",
            "CPU=1\nMEMORY=0": "MEMORY attribute must be a positive integer value.",
            "CPU=1\nMEMORY=1.5": "MEMORY attribute must be a positive integer value.",
            "MEMORY=64": "CPU attribute must be a positive float or integer value.",
            "MEMORY=64\nCPU=-1": "CPU attribute must be a positive float or integer value.",
            "MEMORY=64\nCPU=1\nVCPU=0": "VCPU attribute must be a positive integer value.",
            "MEMORY=64\nCPU=1\nCPU_COST=-1": "CPU_COST attribute must be a positive float or "
            "integer value.",
            "MEMORY=64\nCPU=1\nOS=[A=1]\nOS=[B=2]": "Only one OS attribute can be defined.",
            "MEMORY=64\nCPU=1\nDEPLOY_ID=one-3": "Trying to import an OpenNebula VM: 'one-*'.",
        }
        for text, message in cases.items():
            self.assertEqual(
                self.err("one.vm.allocate", text), (f"[one.vm.allocate] {message}", 0x2000), text
            )
        for name in (
            "one.vm.allocate.syntax-error.json",
            "one.vm.allocate.unterminated-quote.json",
        ):
            expected = json.loads(sample(name))
            text = 'CPU="1"\nMEMORY="64"\nDISK=[IMAGE_ID="0"\n'
            if "unterminated" in name:
                text = 'NAME="broken\nCPU=1\n'
            reply = self.h.call("one.vm.allocate", text, True)
            self.assertEqual(reply[0], expected[0])
            self.assertEqual(reply[2], expected[2])
            if "unterminated" in name:
                self.assertEqual(list(reply), expected)
        self.assertEqual(self.h.ok("one.vmpool.info", -2, -1, -1, -2), "<VM_POOL></VM_POOL>")
        self.assertEqual(self.h.ok("one.vm.allocate", "CPU=1\nMEMORY=64"), 0)

    def test_names_and_template_split(self) -> None:
        """Automatic names, TEMPLATE_NAME prefix, VMID; user attributes stay in USER_TEMPLATE."""
        self.assertEqual(self.h.ok("one.vm.allocate", "CPU=1\nMEMORY=64\nLABEL=x"), 0)
        self.h.ok("one.vm.allocate", 'CPU=1\nMEMORY=64\nTEMPLATE_NAME="web"\nTEMPLATE_ID="7"')
        self.h.ok("one.vm.allocate", "CPU=1\nMEMORY=64\nSUBMIT_ON_HOLD=YES")
        docs = [etree.fromstring(self.h.ok("one.vm.info", i).encode()) for i in range(3)]
        self.assertEqual([d.findtext("NAME") for d in docs], ["one-0", "web-1", "one-2"])
        self.assertEqual(docs[0].findtext("USER_TEMPLATE/LABEL"), "x")
        self.assertEqual(docs[1].findtext("TEMPLATE/TEMPLATE_ID"), "7")
        self.assertIsNone(docs[1].find("USER_TEMPLATE/TEMPLATE_NAME"))
        self.assertEqual(docs[2].findtext("STATE"), "2")
        self.assertEqual(docs[2].findtext("TEMPLATE/SUBMIT_ON_HOLD"), "YES")
        self.assertEqual([d.findtext("TEMPLATE/VMID") for d in docs], ["0", "1", "2"])
        log = self.h.config.locations.var / "vms" / "2" / "vm.log"
        self.assertIn("[Z0][VM][I]: New state is HOLD", log.read_text())

    def test_restricted_attribute_for_users(self) -> None:
        """Non-admins cannot set VM_RESTRICTED_ATTR attributes."""
        self.h.ok("one.user.allocate", "u", "pw", "", [1])
        self.assertEqual(
            self.err(
                "one.vm.allocate",
                'CPU=1\nMEMORY=64\nNIC=[MAC="02:00:00:00:00:01"]',
                session="u:pw",
            ),
            (
                "[one.vm.allocate] User [2] : VM Template includes a restricted attribute MAC.",
                0x200,
            ),
        )


class QuotaTests(VmApiCase):
    def test_vm_quotas_limit_and_release(self) -> None:
        """VMS/CPU/MEMORY quotas refuse with oned's text; terminate gives usage back."""
        uid = self.h.ok("one.user.allocate", "q", "pw", "", [1])
        self.h.ok("one.user.quota", uid, 'VM=[VMS="1", CPU="2", MEMORY="128"]')
        vid = self.h.ok("one.vm.allocate", "CPU=1\nMEMORY=64", session="q:pw")
        self.assertEqual(
            self.err("one.vm.allocate", "CPU=1\nMEMORY=64", session="q:pw"),
            (
                f"[one.vm.allocate] User [{uid}] : user [{uid}] limit of 1 reached for VMS quota "
                "in VM.",
                0x200,
            ),
        )
        user = etree.fromstring(self.h.ok("one.user.info", uid).encode())
        self.assertEqual(user.findtext("VM_QUOTA/VM/VMS_USED"), "1")
        self.assertEqual(user.findtext("VM_QUOTA/VM/RUNNING_CPU_USED"), "1")
        self.h.ok("one.vm.action", "terminate", vid, session="q:pw")
        user = etree.fromstring(self.h.ok("one.user.info", uid).encode())
        self.assertEqual(user.findtext("VM_QUOTA/VM/VMS_USED"), "0")
        self.assertEqual(user.findtext("VM_QUOTA/VM/MEMORY_USED"), "0")
        self.h.ok("one.vm.allocate", "CPU=1\nMEMORY=64", session="q:pw")


class PoolTests(VmApiCase):
    def test_filters_states_and_sets(self) -> None:
        """State filter, DONE hidden by -1, infoset, bad state filter text."""
        for _ in range(3):
            self.h.ok("one.vm.allocate", "CPU=1\nMEMORY=64")
        self.h.ok("one.vm.action", "hold", 1)
        self.h.ok("one.vm.action", "terminate", 2)

        def ids(*args: object, method: str = "one.vmpool.info") -> list[str]:
            doc = etree.fromstring(self.h.ok(method, *args).encode())
            return [i.text or "" for i in doc.findall("VM/ID")]

        self.assertEqual(ids(-2, -1, -1, -1), ["1", "0"])
        self.assertEqual(ids(-2, -1, -1, -2), ["2", "1", "0"])
        self.assertEqual(ids(-2, -1, -1, 2), ["1"])
        self.assertEqual(ids(-2, 0, 1, -2), ["1", "0"])
        self.assertEqual(ids("2,0,x", False, method="one.vmpool.infoset"), ["2", "0"])
        self.assertEqual(self.h.ok("one.vmpool.infoset", "", True), "<VM_POOL></VM_POOL>")
        self.assertEqual(
            self.err("one.vmpool.info", -2, -1, -1, 7 + 5),
            ("[one.vmpool.info] Incorrect state filter 12", 0x1000),
        )
        self.assertEqual(
            self.err("one.vmpool.info", -2, -1, -1, -1, "NAME=x"),
            ("[one.vmpool.info] JSON query search is not supported by the SQL backend", 0x2000),
        )
        extended = self.h.ok("one.vmpool.infoextended", -2, -1, -1, -2)
        self.assertEqual(extended.count("<PERMISSIONS>"), 3)
        self.assertEqual(
            self.h.ok("one.vmpool.monitoring", -2), "<MONITORING_DATA></MONITORING_DATA>"
        )
        self.assertEqual(self.h.ok("one.vm.monitoring", 0), "<MONITORING_DATA></MONITORING_DATA>")
        self.assertEqual(
            self.h.ok("one.vmpool.accounting", -2, -1, -1), "<HISTORY_RECORDS></HISTORY_RECORDS>"
        )

    def test_users_see_their_vms(self) -> None:
        """A user lists only the VMs it may use."""
        self.h.ok("one.user.allocate", "u", "pw", "", [1])
        self.h.ok("one.vm.allocate", "CPU=1\nMEMORY=64")
        mine = self.h.ok("one.vm.allocate", "CPU=1\nMEMORY=64", session="u:pw")
        doc = etree.fromstring(
            self.h.ok("one.vmpool.info", -2, -1, -1, -1, session="u:pw").encode()
        )
        self.assertEqual([i.text for i in doc.findall("VM/ID")], [str(mine)])
        self.assertEqual(
            self.err("one.vm.info", 0, session="u:pw")[0],
            "[one.vm.info] User [2] : Not authorized to perform USE VM [0].",
        )


class SharedMethodTests(VmApiCase):
    def test_update_rename_chmod_chown_lock(self) -> None:
        """USER_TEMPLATE update (replace/merge), rename, chmod, chown, lock levels."""
        vid = self.h.ok("one.vm.allocate", "CPU=1\nMEMORY=64\nA=1")
        self.h.ok("one.vm.update", vid, "B=2", 1)
        doc = etree.fromstring(self.h.ok("one.vm.info", vid).encode())
        self.assertEqual([c.tag for c in doc.find("USER_TEMPLATE")], ["A", "B"])
        self.h.ok("one.vm.update", vid, "C=3", 0)
        doc = etree.fromstring(self.h.ok("one.vm.info", vid).encode())
        self.assertEqual([c.tag for c in doc.find("USER_TEMPLATE")], ["C"])
        self.assertEqual(
            self.err("one.vm.update", vid, "C=3", 2), ("[one.vm.update] Wrong update type", 0x1000)
        )
        self.h.ok("one.vm.rename", vid, "renamed")
        self.assertEqual(
            self.err("one.vm.rename", vid, "bad#name")[0],
            "[one.vm.rename] Invalid NAME, char '#' is not allowed",
        )
        self.h.ok("one.vm.chmod", vid, -1, -1, -1, 1, -1, -1, -1, -1, -1)
        uid = self.h.ok("one.user.allocate", "u", "pw", "", [1])
        self.h.ok("one.vm.chown", vid, uid, 1)
        doc = etree.fromstring(self.h.ok("one.vm.info", vid).encode())
        self.assertEqual(
            [doc.findtext(t) for t in ("NAME", "UNAME", "GNAME", "PERMISSIONS/GROUP_U")],
            ["renamed", "u", "users", "1"],
        )
        self.h.ok("one.vm.lock", vid, 1)
        self.assertEqual(self.h.call("one.vm.action", "hold", vid)[2], 0x200)
        self.assertIn(
            "<LOCK><LOCKED>1</LOCKED></LOCK>", self.h.ok("one.vmpool.info", -2, -1, -1, -1)
        )
        self.h.ok("one.vm.unlock", vid)
        self.h.ok("one.vm.action", "hold", vid)
        self.assertEqual(
            self.err("one.vm.info", 99),
            ("[one.vm.info] Error getting virtual machine [99].", 0x400),
        )


class InstantiateTests(VmApiCase):
    def test_template_instantiate_creates_the_vm(self) -> None:
        """one.template.instantiate: TEMPLATE_NAME-<id> name, TEMPLATE_ID, user merge, hold."""
        tid = self.h.ok("one.template.allocate", "NAME=web\nCPU=1\nMEMORY=64\nDESCRIPTION=x")
        vid = self.h.ok("one.template.instantiate", tid, "", True, "LABEL=y")
        doc = etree.fromstring(self.h.ok("one.vm.info", vid).encode())
        self.assertEqual(
            [
                doc.findtext(p)
                for p in ("NAME", "STATE", "TEMPLATE/TEMPLATE_ID", "USER_TEMPLATE/LABEL")
            ],
            [f"web-{vid}", "2", str(tid), "y"],
        )
        named = self.h.ok("one.template.instantiate", tid, "given")
        self.assertEqual(
            etree.fromstring(self.h.ok("one.vm.info", named).encode()).findtext("NAME"), "given"
        )
        self.assertEqual(
            self.err("one.template.instantiate", tid, "bad#"),
            (
                "[one.template.instantiate] Error allocating a new virtual machine. "
                "Invalid NAME, char '#' is not allowed",
                0x4000,
            ),
        )
        self.assertEqual(
            self.err("one.template.instantiate", 9, ""),
            ("[one.template.instantiate] Error getting virtual machine template [9].", 0x400),
        )


class ChownQuotaTests(VmApiCase):
    def test_chown_moves_quota_usage(self) -> None:
        """chown charges the new owner's VM quota (refused past its limit)."""
        uid = self.h.ok("one.user.allocate", "q", "pw", "", [1])
        self.h.ok("one.user.quota", uid, 'VM=[VMS="1", CPU="-2", MEMORY="-2"]')
        first = self.h.ok("one.vm.allocate", "CPU=1\nMEMORY=64")
        second = self.h.ok("one.vm.allocate", "CPU=1\nMEMORY=64")
        self.h.ok("one.vm.chown", first, uid, -1)
        user = etree.fromstring(self.h.ok("one.user.info", uid).encode())
        self.assertEqual(user.findtext("VM_QUOTA/VM/VMS_USED"), "1")
        self.assertEqual(
            self.err("one.vm.chown", second, uid, -1),
            (
                f"[one.vm.chown] User [0] : user [{uid}] limit of 1 reached for VMS quota in VM.",
                0x200,
            ),
        )
        self.h.ok("one.vm.chown", first, 0, -1)
        user = etree.fromstring(self.h.ok("one.user.info", uid).encode())
        self.assertEqual(user.findtext("VM_QUOTA/VM/VMS_USED"), "0")
        self.h.ok("one.vm.chown", second, uid, 1)
        doc = etree.fromstring(self.h.ok("one.vm.info", second).encode())
        self.assertEqual((doc.findtext("UNAME"), doc.findtext("GNAME")), ("q", "users"))


class EncryptionTests(VmApiCase):
    def test_context_password_is_stored_encrypted(self) -> None:
        """VM_ENCRYPTED_ATTR values are stored encrypted; admins may decrypt on info."""
        vid = self.h.ok(
            "one.vm.allocate",
            'CPU=1\nMEMORY=64\nCONTEXT=[PASSWORD="s3cret"]\nONEAPP_ONEKS_CLUSTER_SPEC="x"',
        )
        plain = etree.fromstring(self.h.ok("one.vm.info", vid).encode())
        self.assertNotEqual(plain.findtext("TEMPLATE/CONTEXT/PASSWORD"), "s3cret")
        self.assertNotEqual(plain.findtext("USER_TEMPLATE/ONEAPP_ONEKS_CLUSTER_SPEC"), "x")
        clear = etree.fromstring(self.h.ok("one.vm.info", vid, True).encode())
        self.assertEqual(clear.findtext("TEMPLATE/CONTEXT/PASSWORD"), "s3cret")
        self.assertEqual(clear.findtext("USER_TEMPLATE/ONEAPP_ONEKS_CLUSTER_SPEC"), "x")
