"""VM templates: oned's documents, restricted attributes, clone/delete/chmod, extended
info, and the instantiate preparation (merge, names, persistent copies)."""

from __future__ import annotations

import re
import xmlrpc.client
from pathlib import Path
from typing import Any

from lxml import etree
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from oned.api.context import Call
from oned.api.instantiate import Instantiation, prepare_instantiate
from oned.errors import AuthorizationError, NoExistsError, OneError
from oned.objects.datastore import Datastore
from oned.objects.image import Image
from oned.template import Template, parse_text
from oned.template_merge import (
    RestrictedError,
    instantiate_template,
    merge_user_attrs,
    parse_restricted,
    persistent_plan,
    restricted_change,
    restricted_in,
    sched_action_error,
    vm_name,
    vrouter_vm_name,
)
from oned.testing.rpc import OnedHarness, result_of

SAMPLES = Path(__file__).resolve().parents[4] / "shared" / "samples"

T17 = """NAME="sample-template"
CPU="0.5"
VCPU="1"
MEMORY="256"
DESCRIPTION="VM template with a disk, a NIC and context"
DISK=[IMAGE_ID="1"]
NIC=[NETWORK_ID="0"]
CONTEXT=[NETWORK="YES", SSH_PUBLIC_KEY="$USER[SSH_PUBLIC_KEY]", SAMPLE_VAR="hello"]
GRAPHICS=[TYPE="VNC", LISTEN="0.0.0.0"]
OS=[ARCH="x86_64", BOOT="disk0"]
SCHED_REQUIREMENTS="HYPERVISOR=\\"dummy\\""
LOGO="images/logos/linux.png"
"""


def sample(name: str) -> str:
    return (SAMPLES / name).read_text(encoding="utf-8")


def no_regtime(text: str) -> str:
    return re.sub(r"<REGTIME>\d+</REGTIME>", "<REGTIME/>", text)


class TemplateTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.one = OnedHarness()
        self.addCleanup(self.one.close)
        self.one.ok("one.user.allocate", "ann", "pw", "")
        self.ann = "ann:pw"

    def info(self, oid: int, session: str | None = None) -> etree._Element:
        return etree.fromstring(self.one.ok("one.template.info", oid, session=session))

    def test_documents_as_oned(self) -> None:
        """info and pool match oned's answers byte for byte (REGTIME aside)."""
        if not SAMPLES.is_dir():
            self.skipTest("no samples")
        self.assertEqual(self.one.call("one.template.allocate", T17), [True, 0, 0])
        self.assertEqual(
            no_regtime(self.one.ok("one.template.info", 0)),
            no_regtime(sample("one.template.info.xml")),
        )
        self.assertEqual(
            no_regtime(self.one.ok("one.templatepool.info", -2, -1, -1)),
            no_regtime(sample("one.templatepool.info.xml")),
        )
        self.assertEqual(self.info(0).findtext("REGTIME"), "1700000000")
        self.assertEqual(
            self.one.call("one.template.info", 9999),
            [
                False,
                "[one.template.info] Error getting virtual machine template [9999].",
                1024,
                9999,
                -1,
            ],
        )

    def test_extended_info_resolves_disks(self) -> None:
        """extended=true completes DISKs from the image and its datastore, like oned."""
        if not SAMPLES.is_dir():
            self.skipTest("no samples")
        self._sample_image()
        self.one.ok("one.template.allocate", T17)
        self.assertEqual(
            no_regtime(self.one.ok("one.template.info", 0, True)),
            no_regtime(sample("one.template.info.extended.xml")),
        )
        self.assertNotIn("DISK_ID", self.one.ok("one.template.info", 0))

    def test_allocate_refusals(self) -> None:
        reply = self.one.call("one.template.allocate", "NAME = [")
        self.assertTrue(reply[1].startswith("[one.template.allocate] Parse error: syntax error"))
        self.assertEqual(reply[2], 0x2000)
        self.assertEqual(
            self.one.call("one.template.allocate", "CPU=1")[1],
            "[one.template.allocate] Invalid NAME, it cannot be empty",
        )
        self.one.ok("one.template.allocate", "NAME=t")
        self.assertEqual(
            self.one.call("one.template.allocate", "NAME=t\nCPU=2")[1:3],
            ["[one.template.allocate] NAME is already taken by TEMPLATE 0.", 0x2000],
        )
        self.assertEqual(self.one.ok("one.template.allocate", "NAME=t", session=self.ann), 1)
        self.assertEqual(
            self.one.call("one.template.allocate", "NAME=r\nRAW=[TYPE=vmware,DATA=x]")[1],
            "[one.template.allocate] Invalid RAW section: unsupported TYPE",
        )
        self.one.ok("one.template.allocate", "NAME=r\nRAW=[TYPE=DUMMY,DATA=x]")
        self.assertEqual(
            self.one.call("one.template.allocate", "NAME=s\nSCHED_ACTION=[ACTION=fly,TIME=1]")[1],
            "[one.template.allocate] fly is not supported.",
        )

    def test_restricted_attributes_for_users(self) -> None:
        """VM_RESTRICTED_ATTR: refused to non-admins on allocate and update, with oned's
        texts; replace keeps the admin's values the user did not mention."""
        refused = self.one.call(
            "one.template.allocate",
            "NAME=a\nNIC=[NETWORK_ID=0,MAC=02:00:00:00:00:01]",
            session=self.ann,
        )
        self.assertEqual(
            refused,
            [
                False,
                "[one.template.allocate] User [2] : VM Template includes a restricted "
                "attribute MAC.",
                0x200,
                -1,
                -1,
            ],
        )
        self.assertEqual(
            self.one.call("one.template.allocate", "NAME=a\nCPU_COST=1", session=self.ann)[1],
            "[one.template.allocate] User [2] : VM Template includes a restricted attribute "
            "CPU_COST.",
        )
        oid = self.one.ok("one.template.allocate", "NAME=a\nCPU=1", session=self.ann)
        self.one.ok("one.template.update", oid, "CPU=1\nCPU_COST=3\nNIC=[MAC=aa]", 0)
        self.assertEqual(
            self.one.call("one.template.update", oid, "CPU_COST=4", 1, session=self.ann)[1],
            "[one.template.update] Cannot update template. User Template includes a "
            "restricted attribute CPU_COST",
        )
        self.assertEqual(
            self.one.call("one.template.update", oid, "CPU=2\nNIC=[MAC=bb]", 0, session=self.ann)[
                1
            ],
            "[one.template.update] Cannot update template. Tried to change restricted "
            "attribute: NIC",
        )
        self.one.ok("one.template.update", oid, "CPU=2\nNIC=[MAC=aa]", 0, session=self.ann)
        tmpl = self.info(oid).find("TEMPLATE")
        assert tmpl is not None
        self.assertEqual(tmpl.findtext("CPU_COST"), "3")
        self.assertEqual(tmpl.findtext("CPU"), "2")
        self.one.ok("one.template.update", oid, "MEMORY=64", 1, session=self.ann)
        self.assertEqual(self.info(oid).findtext("TEMPLATE/MEMORY"), "64")

    def test_clone_delete_rename_lock(self) -> None:
        oid = self.one.ok("one.template.allocate", T17, session=self.ann)
        copy = self.one.ok("one.template.clone", oid, "copy", session=self.ann)
        doc = self.info(copy)
        self.assertEqual(doc.findtext("NAME"), "copy")
        self.assertEqual(doc.findtext("TEMPLATE/DISK/IMAGE_ID"), "1")
        self.assertEqual(
            self.one.call("one.template.clone", oid, "copy", session=self.ann)[1],
            "[one.template.clone] NAME is already taken by TEMPLATE 1.",
        )
        self.assertEqual(self.one.call("one.template.clone", 42, "x")[2:4], [0x400, 42])
        self.one.ok("one.template.rename", copy, "copy2", session=self.ann)
        self.one.ok("one.template.lock", copy, 2, session=self.ann)
        self.assertEqual(
            self.one.call("one.template.update", copy, "A=1", session=self.ann)[1],
            "[one.template.update] User [2] : Not authorized to perform MANAGE TEMPLATE [1].",
        )
        self.assertEqual(self.info(copy).findtext("LOCK/LOCKED"), "2")
        self.one.ok("one.template.unlock", copy, session=self.ann)
        self.assertEqual(self.one.ok("one.template.delete", copy, True, session=self.ann), copy)
        self.assertEqual(self.one.call("one.template.info", copy)[2], 0x400)
        self.assertEqual(self.one.ok("one.template.delete", oid), oid)

    def test_chmod_recursive_reaches_images(self) -> None:
        self._sample_image()
        self.one.ok("one.template.allocate", T17)
        self.one.ok("one.template.chmod", 0, -1, -1, -1, 1, -1, -1, -1, -1, -1, True)
        self.assertEqual(self.info(0).findtext("PERMISSIONS/GROUP_U"), "1")
        image = self.one.core.images.get(1)
        assert image is not None
        self.assertEqual(image.perms.group_u, 1)
        self.one.ok("one.template.chmod", 0, -1, -1, -1, 0, -1, -1, -1, -1, -1)
        self.assertEqual(image.perms.group_u, 1)
        self.one.ok("one.template.update", 0, "DISK=[IMAGE_ID=7]", 1)
        self.assertEqual(
            self.one.call("one.template.chmod", 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, True)[1:3],
            ["[one.template.chmod] Cannot chmod image: 7", 0x800],
        )

    def test_extended_info_needs_use_on_images_and_groups(self) -> None:
        """extended=true also asks USE on the DISK images and the NICs' security groups."""
        self._sample_image()
        self.one.ok("one.secgroup.allocate", "NAME=sg")
        oid = self.one.ok(
            "one.template.allocate",
            'NAME=t\nDISK=[IMAGE_ID=1]\nNIC=[NETWORK_ID=0,SECURITY_GROUPS="0,100"]',
            session=self.ann,
        )
        self.one.ok("one.template.info", oid, session=self.ann)
        self.assertEqual(
            self.one.call("one.template.info", oid, True, session=self.ann)[1:3],
            [
                "[one.template.info] User [2] : Not authorized to perform USE IMAGE [1]; "
                "Not authorized to perform USE SECGROUP [100].",
                0x200,
            ],
        )
        self.one.ok("one.image.chmod", 1, -1, -1, -1, -1, -1, -1, 1, -1, -1)
        self.one.ok("one.secgroup.chmod", 100, -1, -1, -1, -1, -1, -1, 1, -1, -1)
        self.one.ok("one.template.info", oid, True, session=self.ann)

    def test_encrypted_attributes(self) -> None:
        """VM_ENCRYPTED_ATTR values are stored encrypted; admins may ask them decrypted."""
        self.one.ok("one.template.allocate", 'NAME=e\nCONTEXT=[PASSWORD="secret",A=1]')
        self.assertNotIn("secret", self.one.ok("one.template.info", 0))
        self.assertIn("[secret]", self.one.ok("one.template.info", 0, False, True))
        self.assertIn("[secret]", self.one.ok("one.template.info", 0, True, True))
        self.one.ok("one.template.chmod", 0, -1, -1, -1, -1, -1, -1, 1, -1, -1)
        self.assertNotIn(
            "secret", self.one.ok("one.template.info", 0, False, True, session=self.ann)
        )
        self.one.ok("one.template.update", 0, 'CONTEXT=[PASSWORD="s2"]', 1)
        self.assertNotIn("s2", self.one.ok("one.template.info", 0))

    def test_pool_filter_and_visibility(self) -> None:
        mine = self.one.ok("one.template.allocate", "NAME=m", session=self.ann)
        self.one.ok("one.template.allocate", "NAME=adm")
        pool = etree.fromstring(self.one.ok("one.templatepool.info", -2, -1, -1, session=self.ann))
        self.assertEqual([int(t.findtext("ID") or -1) for t in pool], [mine])
        self.assertEqual(
            self.one.call("one.templatepool.info", -5, -1, -1)[1],
            "[one.templatepool.info] Incorrect filter_flag",
        )

    def _sample_image(self) -> None:
        """Datastore 100 and image 1 as in the capture (``sample-images``/``sample-os``)."""
        core = self.one.core
        store = Datastore(
            oid=100,
            name="sample-images",
            tm_mad="dummy",
            ds_mad="dummy",
            clusters={0, 100},
            template=parse_text(
                'ALLOW_ORPHANS="NO"\nCLONE_TARGET="SYSTEM"\nDISK_TYPE="FILE"\n'
                'LN_TARGET="NONE"\nPERSISTENT_SNAPSHOTS="YES"\nTM_MAD="dummy"\n'
            ),
        )
        image = Image(
            oid=1,
            name="sample-os",
            source="dummy_path",
            format="dummy_format",
            size=1024,
            state=1,
            datastore_id=100,
            datastore="sample-images",
            template=parse_text('DEV_PREFIX="vd"\n'),
        )
        unit = core.unit()
        unit.add(core.datastores, store)
        unit.add(core.images, image)
        result_of(Deferred.fromCoroutine(unit.commit("sample image")))


class MergeTests(SynchronousTestCase):
    """The instantiate preparation as pure functions."""

    RAS = parse_restricted(["NIC/MAC", "NIC/VLAN_ID", "CPU_COST", "PCI"])

    def test_restricted_in_new_template(self) -> None:
        self.assertEqual(restricted_in(parse_text("NIC=[MAC=a]"), self.RAS), "MAC")
        self.assertEqual(restricted_in(parse_text("CPU_COST=1"), self.RAS), "CPU_COST")
        self.assertIsNone(restricted_in(parse_text("NIC=[NETWORK=a]\nCPU=1"), self.RAS))
        self.assertIsNone(restricted_in(parse_text("PCI=[VENDOR=1]"), self.RAS))
        self.assertEqual(restricted_in(parse_text('NIC=[MAC=""]'), self.RAS), "MAC")

    def test_restricted_change(self) -> None:
        base = parse_text("NIC=[MAC=a]\nCPU_COST=2")
        new = parse_text("NIC=[MAC=a]")
        self.assertIsNone(restricted_change(new, base, self.RAS, append=False))
        self.assertEqual(new.get("CPU_COST"), "2")
        self.assertEqual(
            restricted_change(parse_text("CPU=1"), base, self.RAS, append=False), "NIC"
        )
        self.assertIsNone(restricted_change(parse_text("CPU=1"), base, self.RAS, append=True))
        self.assertEqual(
            restricted_change(parse_text("CPU_COST=3"), base, self.RAS, append=True), "CPU_COST"
        )

    def test_merge_user_attrs(self) -> None:
        tmpl = parse_text("CPU=1\nDISK=[IMAGE_ID=1]\nDISK=[IMAGE_ID=2]\nMEMORY=64")
        merge_user_attrs(tmpl, parse_text("MEMORY=128\nDISK=[IMAGE_ID=5]"), self.RAS)
        self.assertEqual(tmpl.get("MEMORY"), "128")
        self.assertEqual([d["IMAGE_ID"] for d in tmpl.vectors("DISK")], ["5"])
        with self.assertRaises(RestrictedError) as ctx:
            merge_user_attrs(tmpl, parse_text("NIC=[MAC=x]"), self.RAS)
        self.assertEqual(ctx.exception.attribute, "NIC")
        merge_user_attrs(tmpl, parse_text("NIC=[MAC=x]"), None)
        self.assertEqual(tmpl.vectors("NIC"), [{"MAC": "x"}])
        merge_user_attrs(tmpl, Template(), self.RAS)

    def test_instantiate_template_and_names(self) -> None:
        src = parse_text("NAME=x\nTEMPLATE_ID=9\nCPU=1")
        vm = instantiate_template(src, "web", 3, "")
        self.assertEqual(vm.get("TEMPLATE_NAME"), "web")
        self.assertEqual(vm.get("TEMPLATE_ID"), "3")
        self.assertIsNone(vm.get("NAME"))
        self.assertEqual(vm_name(vm, 12), "web-12")
        self.assertEqual(vm_name(instantiate_template(src, "web", 3, "db-1"), 12), "db-1")
        self.assertEqual(vm_name(Template(), 4), "one-4")
        self.assertEqual(src.get("NAME"), "x")
        self.assertEqual(vrouter_vm_name("r1", "", 2), "vr-r1-2")
        self.assertEqual(vrouter_vm_name("r1", "n-%i-%i", 0), "n-0-0")

    def test_persistent_plan(self) -> None:
        plan = persistent_plan(4, "web", "", "MEMORY=1")
        self.assertEqual(plan.clone_name, "web-copy")
        self.assertEqual(plan.clone_extra, "MEMORY=1")
        self.assertEqual(plan.extra, "CLONING_TEMPLATE_ID=4\n")
        self.assertEqual(persistent_plan(4, "web", "mine", "").clone_name, "mine")

    def test_sched_actions(self) -> None:
        cases = [
            ({"ACTION": "reboot", "TIME": "+60"}, None),
            ({"TIME": "1"}, "No ACTION in template for Scheduled Action."),
            ({"ACTION": "reboot"}, "Unable to parse the time value or value is empty: "),
            (
                {"ACTION": "reboot", "TIME": "soon"},
                "Unable to parse the time value or value is empty: soon",
            ),
            (
                {"ACTION": "reboot", "TIME": "1", "WARNING": "x"},
                "Unable to parse the warning value: x",
            ),
            ({"ACTION": "reboot", "TIME": "1", "REPEAT": "7"}, "Wrong REPEAT value: 7"),
            ({"ACTION": "reboot", "TIME": "1", "REPEAT": "0"}, "Repeat set, but DAYS are empty"),
            (
                {"ACTION": "reboot", "TIME": "1", "REPEAT": "0", "DAYS": "7"},
                "Days in a week have to be in [0,6] range",
            ),
            ({"ACTION": "reboot", "TIME": "1", "REPEAT": "1", "DAYS": "1,31"}, None),
            (
                {"ACTION": "reboot", "TIME": "1", "REPEAT": "3", "DAYS": "1,2"},
                "Hours have to be in [0,168] range",
            ),
            ({"ACTION": "reboot", "TIME": "1", "END_TYPE": "5"}, "Wrong END_TYPE value: 5"),
            (
                {"ACTION": "reboot", "TIME": "1", "END_TYPE": "1", "END_VALUE": "-2"},
                "Error parsing END_VALUE, times has to be greater or equal to 0",
            ),
        ]
        for sa, expected in cases:
            self.assertEqual(sched_action_error(sa), expected, sa)


class InstantiateTests(SynchronousTestCase):
    """``prepare_instantiate``: the template half of one.template.instantiate."""

    def setUp(self) -> None:
        self.one = OnedHarness()
        self.addCleanup(self.one.close)
        self.uid = self.one.ok("one.user.allocate", "ann", "pw", "")
        self.one.ok("one.template.allocate", 'NAME="web"\nCPU=1\nMEMORY=64\nTEMPLATE_ID=77')
        self.one.ok("one.template.chmod", 0, -1, -1, -1, -1, -1, -1, 1, -1, -1)

    def prepare(self, uid: int, *args: object, **kw: object) -> Instantiation:
        call = Call("one.template.instantiate", self.one.core.caller_of(uid), 1)
        return result_of(
            Deferred.fromCoroutine(prepare_instantiate(self.one.core, call, *args, **kw))  # type: ignore[arg-type]
        )

    def failure(self, uid: int, *args: object, **kw: object) -> OneError:
        with self.assertRaises(OneError) as ctx:
            self.prepare(uid, *args, **kw)
        return ctx.exception

    def test_template_and_owner(self) -> None:
        got = self.prepare(self.uid, 0, "", False, "MEMORY=128\nDESCRIPTION=x")
        self.assertEqual(got.template.get("TEMPLATE_NAME"), "web")
        self.assertEqual(got.template.get("TEMPLATE_ID"), "0")
        self.assertEqual(got.template.get("MEMORY"), "128")
        self.assertIsNone(got.template.get("NAME"))
        self.assertEqual((got.uid, got.uname, got.gname), (self.uid, "ann", "users"))
        named = self.prepare(self.uid, 0, "vm-1", True)
        self.assertEqual((named.template.get("NAME"), named.hold), ("vm-1", True))

    def test_refusals(self) -> None:
        err = self.failure(self.uid, 0, "", False, "CPU_COST=1")
        self.assertEqual(
            (type(err), err.message),
            (AuthorizationError, "User Template includes a restricted attribute CPU_COST"),
        )
        self.assertIsInstance(self.failure(self.uid, 9, ""), NoExistsError)
        self.one.ok("one.template.allocate", "NAME=vr\nVROUTER=YES")
        err = self.failure(0, 1, "")
        self.assertEqual(err.message, "Virtual router templates cannot be instantiated")
        err = self.failure(self.uid, 0, "", False, "AS_UID=1")
        self.assertIsInstance(err, AuthorizationError)
        self.assertEqual(self.prepare(0, 0, "", False, f"AS_UID={self.uid}").uid, self.uid)
        self.assertEqual(self.failure(0, 0, "", False, "AS_GID=55").resp_id, 55)

    def test_persistent_copy(self) -> None:
        """persistent: a private copy named after the VM (or <template>-copy) is made
        and instantiated, with CLONING_TEMPLATE_ID pointing at the original."""
        got = self.prepare(self.uid, 0, "", False, "MEMORY=256", persistent=True)
        self.assertEqual(got.template_id, 1)
        copy = self.one.core.templates.get(1)
        assert copy is not None
        self.assertEqual((copy.name, copy.uid), ("web-copy", self.uid))
        self.assertEqual(copy.template.get("MEMORY"), "256")
        self.assertEqual(got.template.get("CLONING_TEMPLATE_ID"), "0")
        self.assertEqual(got.template.get("TEMPLATE_NAME"), "web-copy")


class _HeldExecutor:
    """A DB executor whose work waits until ``flush``: calls interleave as on a thread."""

    def __init__(self) -> None:
        self.queue: list[tuple[Any, Deferred[Any]]] = []

    def submit(self, fn: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.queue.append((fn, d))
        return d

    def flush(self) -> None:
        while self.queue:
            fn, d = self.queue.pop(0)
            try:
                d.callback(fn())
            except Exception:
                d.errback(Failure())

    def close(self) -> None:
        pass


class ConcurrencyTests(SynchronousTestCase):
    def test_racing_allocations_take_a_name_once(self) -> None:
        """Allocations whose commits overlap still see each other's names."""
        one = OnedHarness()
        self.addCleanup(one.close)
        one.ok("one.user.info", -1)
        held = _HeldExecutor()
        one.db._executor = held  # type: ignore[assignment]
        for method, taken in (
            ("one.template.allocate", "NAME is already taken by TEMPLATE"),
            ("one.secgroup.allocate", "NAME is already taken by SecurityGroup"),
        ):
            body = xmlrpc.client.dumps((one.admin, 'NAME="same"'), method).encode()
            pending = [
                Deferred.fromCoroutine(one.manager.handle_body(body, "127.0.0.1:1"))
                for _ in range(3)
            ]
            held.flush()
            replies = [xmlrpc.client.loads(result_of(d))[0][0] for d in pending]
            self.assertEqual([r[0] for r in replies], [True, False, False])
            self.assertIn(taken, replies[1][1])
