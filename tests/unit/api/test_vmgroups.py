"""one.vmgroup.*, the pool, and VMs joining and leaving roles."""

from __future__ import annotations

from pathlib import Path

from lxml import etree
from twisted.trial.unittest import SynchronousTestCase

from oned.testing.rpc import OnedHarness
from tests.integration import xsd

SAMPLES = Path(__file__).resolve().parents[3].parent / "shared" / "samples"
GROUP = (
    'NAME="sample-vmgroup"\nDESCRIPTION="two roles kept apart"\n'
    'ROLE=[NAME="web", POLICY="AFFINED"]\nROLE=[NAME="db", POLICY="ANTI_AFFINED"]\n'
    'ANTI_AFFINED="web, db"'
)
VM = 'NAME=v\nCPU=1\nMEMORY=64\nVMGROUP=[VMGROUP_ID="{gid}", ROLE="{role}"]'


def role_vms(one: OnedHarness, gid: int) -> dict[str, str]:
    doc = etree.fromstring(one.ok("one.vmgroup.info", gid))
    return {r.findtext("NAME") or "": r.findtext("VMS") or "" for r in doc.findall("ROLES/ROLE")}


class VMGroupTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.one = OnedHarness()
        self.addCleanup(self.one.close)

    def test_document_as_oned(self) -> None:
        gid = self.one.ok("one.vmgroup.allocate", GROUP)
        self.assertEqual(gid, 0)
        body = self.one.ok("one.vmgroup.info", gid)
        sample = SAMPLES / "one.vmgroup.info.empty.xml"
        if sample.exists():
            self.assertEqual(body, sample.read_text())
        if xsd.available():
            self.assertEqual(xsd.errors(body), [])
            self.assertEqual(xsd.errors(self.one.ok("one.vmgrouppool.info", -2, -1, -1)), [])
        self.assertEqual(
            self.one.call("one.vmgroup.info", 9999)[1],
            "[one.vmgroup.info] Error getting vm group [9999].",
        )

    def test_allocate_refusals(self) -> None:
        cases = [
            ("ROLE=[NAME=a]", "Invalid NAME, it cannot be empty"),
            ("NAME=g\nROLE=[POLICY=AFFINED]", "Missing NAME in VM group role"),
            ("NAME=g\nROLE=[NAME=a]\nROLE=[NAME=a]", "Role already exists"),
            (
                'NAME=g\nROLE=[NAME=a]\nAFFINED="a, b"',
                "Some roles used in AFFINED attribute (a, b) are not defined",
            ),
            (
                'NAME=g\nROLE=[NAME=a,POLICY=ANTI_AFFINED]\nROLE=[NAME=b]\nAFFINED="a,b"',
                "Role a is in an AFFINED rule but the role policy is ANTI_AFFINED",
            ),
            (
                'NAME=g\nROLE=[NAME=a]\nROLE=[NAME=b]\nAFFINED="a,b"\nANTI_AFFINED="b,a"',
                "Roles defined in AFFINED and ANTI_AFFINED rules: a b",
            ),
        ]
        for text, message in cases:
            reply = self.one.call("one.vmgroup.allocate", text)
            self.assertEqual(reply[1:3], [f"[one.vmgroup.allocate] {message}", 0x2000], text)
        self.one.ok("one.vmgroup.allocate", "NAME=g")
        self.assertEqual(
            self.one.call("one.vmgroup.allocate", "NAME=g")[1],
            "[one.vmgroup.allocate] NAME is already taken by VMGroup 0.",
        )

    def test_roles_add_update_delete(self) -> None:
        gid = self.one.ok("one.vmgroup.allocate", GROUP)
        self.one.ok("one.vmgroup.roleadd", gid, 'ROLE=[NAME="cache", HOST_AFFINED="1,2"]')
        self.assertEqual(
            self.one.call("one.vmgroup.roleadd", gid, "NAME=x")[1:3],
            ["[one.vmgroup.roleadd] No ROLE attribute in template", 0x800],
        )
        self.one.ok("one.vmgroup.roleupdate", gid, 2, 'ROLE=[NAME="cache2"]')
        doc = etree.fromstring(self.one.ok("one.vmgroup.info", gid))
        role = doc.findall("ROLES/ROLE")[2]
        self.assertEqual(
            [c.tag for c in role], ["HOST_AFFINED", "ID", "NAME"]
        )  # keys in name order, as oned writes a vector
        self.assertEqual(role.findtext("NAME"), "cache2")
        self.assertEqual(
            self.one.call("one.vmgroup.roledelete", gid, 7)[1],
            "[one.vmgroup.roledelete] Unable to delete role 7, the role doesn't exists",
        )
        self.one.ok("one.vmgroup.roledelete", gid, 2)
        self.assertEqual(len(role_vms(self.one, gid)), 2)

    def test_vms_join_and_leave(self) -> None:
        gid = self.one.ok("one.vmgroup.allocate", GROUP)
        vid = self.one.ok("one.vm.allocate", VM.format(gid=gid, role="web"), True)
        self.assertEqual(role_vms(self.one, gid), {"web": str(vid), "db": ""})
        vm = etree.fromstring(self.one.ok("one.vm.info", vid))
        self.assertEqual(vm.findtext("TEMPLATE/VMGROUP/VMGROUP_ID"), str(gid))
        self.assertIsNone(vm.find("USER_TEMPLATE/VMGROUP"))
        reply = self.one.call("one.vm.allocate", VM.format(gid=gid, role="nope"), True)
        self.assertEqual(reply[1], "[one.vm.allocate] Role does not exist in VM Group")
        reply = self.one.call("one.vm.allocate", VM.format(gid=77, role="web"), True)
        self.assertEqual(reply[1], "[one.vm.allocate] Cannot find VM Group to associate the VM")
        # a group with VMs cannot change its template or that role
        self.assertEqual(
            self.one.call("one.vmgroup.update", gid, "X=1", 1)[1],
            "[one.vmgroup.update] VM Group has 1 VMs",
        )
        self.assertEqual(
            self.one.call("one.vmgroup.roledelete", gid, 0)[1],
            "[one.vmgroup.roledelete] Unable to delete role 0, the role has assigned VMs ",
        )
        other = self.one.ok("one.vm.allocate", "NAME=w\nCPU=1\nMEMORY=64", True)
        self.one.ok("one.vm.vmgroupadd", other, gid, "db")
        self.assertEqual(role_vms(self.one, gid), {"web": str(vid), "db": str(other)})
        self.one.ok("one.vm.vmgroupdel", other)
        self.assertEqual(role_vms(self.one, gid)["db"], "")
        self.one.ok("one.vm.action", "terminate", vid)
        self.assertEqual(role_vms(self.one, gid), {"web": "", "db": ""})
