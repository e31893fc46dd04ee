"""one.image.* and one.imagepool.info through the real request manager, with a scripted
datastore driver behind the ImageManager (in-memory database, fake clock)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from lxml import etree
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from oned.managers.image import usage
from oned.managers.image.manager import ImageManager
from oned.managers.image.stage import Stage
from oned.managers.image.testing import FakeDatastoreDrivers
from oned.objects import image as im
from oned.objects.image import Image
from oned.testing.rpc import OnedHarness, result_of

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "integration"))
import xsd  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[4] / "shared" / "samples"

T6 = 'NAME="sample-datablock"\nTYPE="DATABLOCK"\nSIZE="256"\nDESCRIPTION="empty 256 MB datablock"\n'
T7 = (
    'NAME="sample-os"\nTYPE="OS"\nPATH="https://example.org/images/sample-os.qcow2"\n'
    'DEV_PREFIX="vd"\nDESCRIPTION="OS image registered from a PATH"\n'
)
T8 = 'NAME="sample-persistent"\nTYPE="DATABLOCK"\nSIZE="128"\nPERSISTENT="YES"\n'


def normalize(doc: str) -> str:
    """Drop what differs between runs and setups (times, datastore id and name)."""
    doc = re.sub(r"<(REGTIME|MODTIME)>\d+</\1>", r"<\1>T</\1>", doc)
    doc = re.sub(r"<DATASTORE_ID>\d+</DATASTORE_ID>", "<DATASTORE_ID>D</DATASTORE_ID>", doc)
    return re.sub(r"<DATASTORE>[^<]*</DATASTORE>", "<DATASTORE>N</DATASTORE>", doc)


class ImageCase(SynchronousTestCase):
    """A harness whose datastore 1 uses the dummy drivers, with a fake driver seam."""

    def setUp(self) -> None:
        self.one = OnedHarness()
        self.addCleanup(self.one.close)
        self.one.ok("one.datastore.update", 1, 'DS_MAD="dummy"\nTM_MAD="dummy"', 1)
        self.drivers = FakeDatastoreDrivers()
        self.manager = ImageManager(self.one.core, self.drivers, self.one.clock)
        self.one.core.image_manager = self.manager
        result_of(Deferred.fromCoroutine(self.manager.start()))
        self.drivers.answer_all("MONITOR")
        self.settle()
        self.drivers.sent.clear()

    def settle(self) -> None:
        """Let batched driver replies be applied."""
        self.one.clock.advance(0)
        self.one.clock.advance(0)

    def answer(self, action: str | None = None) -> None:
        self.drivers.answer_all(action)
        self.settle()

    def info(self, oid: int) -> str:
        return str(self.one.ok("one.image.info", oid))

    def state(self, oid: int) -> int:
        return int(etree.fromstring(self.info(oid)).findtext("STATE") or -1)

    def fail(self, method: str, *params: object, session: str | None = None) -> list[object]:
        reply = self.one.call(method, *params, session=session)
        self.assertFalse(reply[0], reply)
        return list(reply[1:3])

    def user(self, name: str = "alice") -> str:
        self.one.ok("one.user.allocate", name, "pw", "")
        return f"{name}:pw"


class DocumentTests(ImageCase):
    def test_datablock_matches_samples(self) -> None:
        """MKFS datablock: LOCKED right after allocate, then READY, as oned renders them."""
        oid = self.one.ok("one.image.allocate", T6, 1)
        self.assertEqual(oid, 0)
        self.assertEqual([s.action for s in self.drivers.sent], ["MKFS"])
        locked = (SAMPLES / "one.image.info.locked.xml").read_text()
        self.assertEqual(normalize(self.info(oid)), normalize(locked))
        self.answer()
        ready = (SAMPLES / "one.image.info.datablock-ready.xml").read_text()
        self.assertEqual(normalize(self.info(oid)), normalize(ready))
        self.assertEqual(xsd.errors(self.info(oid)), [])

    def test_os_persistent_clone_and_pool_match_samples(self) -> None:
        """CP of a PATH, a persistent datablock and a clone: the samples' documents."""
        self.one.ok("one.image.allocate", T6, 1)
        self.assertEqual(self.one.ok("one.image.allocate", T7, 1), 1)
        self.assertEqual(self.drivers.requests[-1].action, "STAT")
        self.assertEqual(self.one.ok("one.image.allocate", T8, 1), 2)
        self.answer()
        for oid, name in ((1, "os-ready"), (2, "persistent-ready")):
            sample = (SAMPLES / f"one.image.info.{name}.xml").read_text()
            self.assertEqual(normalize(self.info(oid)), normalize(sample), name)
        self.assertEqual(self.one.ok("one.image.clone", 1, "sample-os-clone"), 3)
        sample = (SAMPLES / "one.image.info.os-while-cloning.xml").read_text()
        self.assertEqual(normalize(self.info(1)), normalize(sample))
        self.answer("CLONE")
        for oid, name in ((1, "os-ready"), (3, "clone-ready")):
            sample = (SAMPLES / f"one.image.info.{name}.xml").read_text()
            self.assertEqual(normalize(self.info(oid)), normalize(sample), name)
        pool = str(self.one.ok("one.imagepool.info", -2, -1, -1))
        self.assertEqual(xsd.errors(pool), [])
        ids = [i.findtext("ID") for i in etree.fromstring(pool)]
        self.assertEqual(ids, ["3", "2", "1", "0"])
        ds = etree.fromstring(self.one.ok("one.datastore.info", 1))
        self.assertEqual([i.text for i in ds.findall("IMAGES/ID")], ["0", "1", "2", "3"])

    def test_missing_image(self) -> None:
        """A missing image is oned's NO_EXISTS answer."""
        reply = self.one.call("one.image.info", 9999)
        self.assertEqual(
            reply, [False, "[one.image.info] Error getting image [9999].", 1024, 9999, -1]
        )

    def test_any_save_sets_prev_state(self) -> None:
        """PREV_STATE is INIT right after allocate and STATE after any later save."""
        oid = self.one.ok("one.image.allocate", T6, 1)
        self.assertIn("<STATE>4</STATE><PREV_STATE>0</PREV_STATE>", self.info(oid))
        self.one.ok("one.image.update", oid, "LABEL=x", 1)
        self.assertIn("<STATE>4</STATE><PREV_STATE>4</PREV_STATE>", self.info(oid))

    def test_source_given_is_ready_at_once(self) -> None:
        """SOURCE (with FORMAT) skips the driver: READY at once, PREV_STATE READY."""
        oid = self.one.ok("one.image.allocate", "NAME=s\nSOURCE=/x\nFORMAT=raw\nSIZE=10", 1)
        self.assertEqual(self.drivers.pending("MKFS") + self.drivers.pending("CP"), [])
        doc = etree.fromstring(self.info(oid))
        self.assertEqual((doc.findtext("STATE"), doc.findtext("PREV_STATE")), ("1", "1"))


class AllocateErrorTests(ImageCase):
    def test_allocate_errors(self) -> None:
        """Wrong datastores, names, types and sources get oned's texts and codes."""
        self.one.ok("one.image.allocate", T6, 1)
        cases = [
            ((T6, 77), ["[one.image.allocate] Error getting datastore [77].", 1024]),
            (
                (T6, 0),
                [
                    "[one.image.allocate] Error allocating a new image. New images can only be "
                    "allocated in a files or image datastore.",
                    0x4000,
                ],
            ),
            (
                (T6, 1),
                [
                    "[one.image.allocate] Error allocating a new image. NAME is already taken "
                    "by IMAGE 0.",
                    0x4000,
                ],
            ),
            (
                ("NAME=x\nTYPE=DATABLOCK", 1),
                [
                    "[one.image.allocate] Cannot parse image SIZE: Wrong number or missing SIZE "
                    "attribute.",
                    0x2000,
                ],
            ),
            (
                ("NAME=x\nTYPE=BOGUS\nSIZE=1", 1),
                ["[one.image.allocate] Error allocating a new image. Unknown type ", 0x4000],
            ),
            (
                ("NAME=x\nSOURCE=a\nSIZE=1", 1),
                [
                    "[one.image.allocate] Error allocating a new image. SOURCE needs FORMAT to "
                    "be set.",
                    0x4000,
                ],
            ),
            (
                ("NAME=x\nTYPE=KERNEL\nPATH=/k", 1),
                [
                    "[one.image.allocate] Error allocating a new image. IMAGES of type KERNEL, "
                    "RAMDISK and CONTEXT cannot be registered in an IMAGE_DS datastore",
                    0x4000,
                ],
            ),
            (
                ("NAME=x\nTYPE=OS\nPATH=/k", 2),
                [
                    "[one.image.allocate] Error allocating a new image. Only IMAGES of type "
                    "KERNEL, RAMDISK and CONTEXT can be registered in a FILE_DS datastore",
                    0x4000,
                ],
            ),
            (("NAME=[", 1), None),
        ]
        for params, expected in cases:
            got = self.fail("one.image.allocate", *params)
            if expected is None:
                self.assertEqual(got[1], 0x2000)
                self.assertTrue(str(got[0]).startswith("[one.image.allocate] Parse error"))
            else:
                self.assertEqual(got, expected, params)
        self.assertEqual([i.oid for i in self.one.core.images], [0])

    def test_capacity(self) -> None:
        """Larger than FREE_MB: refused, unless an admin asks no_check_capacity."""
        text = "NAME=big\nTYPE=DATABLOCK\nSIZE=30000"
        self.assertEqual(
            self.fail("one.image.allocate", text, 1),
            ["[one.image.allocate] Not enough space in datastore", 0x800],
        )
        self.assertEqual(self.one.ok("one.image.allocate", text, 1, True), 0)
        alice = self.user()
        self.one.ok("one.datastore.chmod", 1, -1, -1, -1, 1, -1, -1, 1, -1, -1)
        got = self.fail(
            "one.image.allocate", "NAME=b\nTYPE=DATABLOCK\nSIZE=30000", 1, True, session=alice
        )
        self.assertEqual(got, ["[one.image.allocate] Not enough space in datastore", 0x800])
        self.one.ok("one.datastore.update", 1, "DATASTORE_CAPACITY_CHECK=NO", 1)
        self.assertEqual(
            self.one.ok("one.image.allocate", "NAME=c\nTYPE=DATABLOCK\nSIZE=30000", 1), 1
        )

    def test_no_driver(self) -> None:
        """Without a datastore driver an allocation is refused like oned does."""
        self.one.core.image_manager = None
        self.assertEqual(
            self.fail("one.image.allocate", T6, 1),
            [
                "[one.image.allocate] Cannot parse image SIZE: Could not get datastore driver",
                0x2000,
            ],
        )

    def test_driver_failures_put_image_in_error(self) -> None:
        """CP and MKFS failures move the image to ERROR with the driver's message."""
        a = self.one.ok("one.image.allocate", T6, 1)
        b = self.one.ok("one.image.allocate", T7, 1)
        self.drivers.reply("MKFS", a, "FAILURE", "disk full")
        self.drivers.reply("CP", b, "FAILURE", "-")
        self.settle()
        for oid, text in (
            (a, "Error creating datablock: disk full"),
            (b, "Error copying image in the datastore"),
        ):
            doc = etree.fromstring(self.info(oid))
            self.assertEqual(doc.findtext("STATE"), "5")
            self.assertTrue((doc.findtext("TEMPLATE/ERROR") or "").endswith(" : " + text))
        self.one.ok("one.image.enable", a, True)
        self.assertEqual(self.state(a), 1)


class StateMachineTests(ImageCase):
    def ready(self, text: str = T6) -> int:
        oid = int(self.one.ok("one.image.allocate", text, 1))
        self.answer()
        return oid

    def test_enable_disable(self) -> None:
        """READY <-> DISABLED; a LOCKED image cannot be disabled."""
        oid = self.ready()
        self.one.ok("one.image.enable", oid, False)
        self.assertEqual(self.state(oid), 3)
        self.one.ok("one.image.enable", oid, True)
        self.assertEqual(self.state(oid), 1)
        locked = self.one.ok("one.image.allocate", T7, 1)
        self.assertEqual(
            self.fail("one.image.enable", locked, False),
            [
                "[one.image.enable] Could not disable image: Image cannot be in state LOCKED.",
                0x2000,
            ],
        )

    def test_persistent_and_chtype(self) -> None:
        """persistent toggles PERSISTENT; chtype refuses incompatible and unknown types."""
        oid = self.ready()
        self.one.ok("one.image.persistent", oid, True)
        self.assertIn("<PERSISTENT>1</PERSISTENT>", self.info(oid))
        self.one.ok("one.image.chtype", oid, "cdrom")
        self.assertIn("<TYPE>1</TYPE>", self.info(oid))
        self.assertEqual(
            self.fail("one.image.chtype", oid, "KERNEL"),
            [
                "[one.image.chtype] Cannot change image type to an incompatible type for the "
                "current datastore.",
                0x800,
            ],
        )
        # oned's "Unknown type " + type (a char pointer moved by the current type)
        self.assertEqual(
            self.fail("one.image.chtype", oid, "FOO"), ["[one.image.chtype] nknown type ", 0x2000]
        )

    def test_delete_through_rm(self) -> None:
        """delete: DELETE until RM answers, then the row, IMAGES entry and quota go."""
        alice = self.user()
        self.one.ok("one.datastore.chmod", 1, -1, -1, -1, 1, -1, -1, 1, -1, -1)
        oid = self.one.ok("one.image.allocate", T6, 1, session=alice)
        self.answer()
        quota = etree.fromstring(self.one.ok("one.user.info", 2))
        self.assertEqual(quota.findtext("DATASTORE_QUOTA/DATASTORE/SIZE_USED"), "256")
        self.one.ok("one.image.delete", oid, session=alice)
        self.assertEqual(self.state(oid), 7)
        self.answer("RM")
        self.assertEqual(self.one.call("one.image.info", oid)[2], 1024)
        quota = etree.fromstring(self.one.ok("one.user.info", 2))
        self.assertIsNone(quota.find("DATASTORE_QUOTA/DATASTORE"))
        ds = etree.fromstring(self.one.ok("one.datastore.info", 1))
        self.assertEqual(ds.findall("IMAGES/ID"), [])

    def test_delete_locked_needs_force(self) -> None:
        """A LOCKED image is deleted only with force (FORCE_DELETE survives an RM failure)."""
        oid = self.one.ok("one.image.allocate", T6, 1)
        self.assertEqual(
            self.one.call("one.image.delete", oid),
            [
                False,
                "[one.image.delete] Image locked, use --force flag to remove the image. Force "
                "delete may leave some files on Datastore",
                0x2000,
                oid,
                -1,
            ],
        )
        self.one.ok("one.image.delete", oid, True)
        self.assertEqual(self.one.call("one.image.info", oid)[2], 1024)

    def test_clone_rules(self) -> None:
        """Cloning a LOCKED image is refused; a source with a clone cannot be deleted."""
        locked = self.one.ok("one.image.allocate", T6, 1)
        self.assertEqual(
            self.fail("one.image.clone", locked, "c1"),
            [
                "[one.image.clone] Error allocating a new image. Cannot clone image in state: "
                "LOCKED",
                0x4000,
            ],
        )
        self.answer()
        persistent = self.ready(T8)
        clone = self.one.ok("one.image.clone", persistent, "c2")
        self.assertEqual(self.state(persistent), 6)
        self.assertEqual(
            self.fail("one.image.delete", persistent),
            ["[one.image.delete] Cannot delete image. There are 1 active clone operations.", 0x800],
        )
        self.drivers.reply("CLONE", clone, "FAILURE", "no space")
        self.settle()
        self.assertEqual(self.state(persistent), 1)
        self.assertEqual(self.state(clone), 5)
        self.assertEqual(
            self.fail("one.image.clone", locked, "x", 0),
            ["[one.image.clone] Clone only supported for IMAGE_DS Datastores", 0x800],
        )

    def test_snapshots(self) -> None:
        """Snapshot calls check the snapshot list; flatten goes through LOCKED and back."""
        oid = self.ready(T8)
        self.assertEqual(
            self.fail("one.image.snapshotflatten", oid, 0),
            ["[one.image.snapshotflatten] Snapshot does not exist", 0x800],
        )
        with_snaps = self.one.core.images.get(oid)
        assert with_snaps is not None
        work = with_snaps.copy()
        work.snapshots.items = [
            {"ACTIVE": "YES", "DATE": "1", "ID": "0", "PARENT": "-1", "SIZE": "128"}
        ]
        work.snapshots.next_snapshot = 1
        unit = self.one.core.unit()
        unit.save(self.one.core.images, work)
        result_of(Deferred.fromCoroutine(unit.commit("test")))
        self.assertEqual(
            self.fail("one.image.snapshotdelete", oid, 0),
            ["[one.image.snapshotdelete] Cannot delete the active snapshot", 0x800],
        )
        self.one.ok("one.image.snapshotflatten", oid, 0)
        self.assertEqual(self.state(oid), 4)
        self.assertIn("<TARGET_SNAPSHOT>0</TARGET_SNAPSHOT>", self.info(oid))
        self.answer("SNAP_FLATTEN")
        doc = self.info(oid)
        self.assertIn("<STATE>1</STATE>", doc)
        self.assertNotIn("<SNAPSHOT>", doc)
        self.assertEqual(xsd.errors(doc), [])


class SnapshotTests(ImageCase):
    def test_revert_then_delete(self) -> None:
        """Revert makes a snapshot active (and the image its size); delete drops a leaf."""
        oid = int(self.one.ok("one.image.allocate", T8, 1))
        self.answer()
        stored = self.one.core.images.get(oid)
        assert stored is not None
        work = stored.copy()
        work.snapshots.items = [
            {"CHILDREN": "1", "DATE": "1", "ID": "0", "PARENT": "-1", "SIZE": "10"},
            {"ACTIVE": "YES", "DATE": "2", "ID": "1", "PARENT": "0", "SIZE": "20"},
        ]
        work.snapshots.next_snapshot = 2
        unit = self.one.core.unit()
        unit.save(self.one.core.images, work)
        result_of(Deferred.fromCoroutine(unit.commit("test")))
        self.assertEqual(
            self.fail("one.image.snapshotdelete", oid, 0),
            ["[one.image.snapshotdelete] Cannot delete snapshot with children", 0x800],
        )
        self.one.ok("one.image.snapshotrevert", oid, 0)
        self.assertEqual(
            self.fail("one.image.snapshotrevert", oid, 0),
            ["[one.image.snapshotrevert] Cannot revert to snapshot in state LOCKED", 0x800],
        )
        self.answer("SNAP_REVERT")
        img = self.one.core.images.get(oid)
        assert img is not None
        self.assertEqual((img.size, img.snapshots.get(0)), (10, img.snapshots.items[0]))
        self.assertEqual(img.snapshots.items[0].get("ACTIVE"), "YES")
        self.one.ok("one.image.snapshotdelete", oid, 1)
        self.answer("SNAP_DELETE")
        doc = self.info(oid)
        self.assertIn("<SNAPSHOT><ACTIVE><![CDATA[YES]]></ACTIVE><DATE>", doc)
        self.assertNotIn("CHILDREN", doc)
        self.assertEqual(doc.count("<SNAPSHOT>"), 1)
        self.assertEqual(xsd.errors(doc), [])


class QuotaTests(ImageCase):
    def test_datastore_quota(self) -> None:
        """IMAGES and SIZE limits refuse with oned's text; delete gives usage back."""
        alice = self.user()
        self.one.ok("one.datastore.chmod", 1, -1, -1, -1, 1, -1, -1, 1, -1, -1)
        self.one.ok("one.user.quota", 2, 'DATASTORE=[ID="1", IMAGES="1", SIZE="300"]')
        oid = self.one.ok("one.image.allocate", T6, 1, session=alice)
        self.assertEqual(
            self.fail("one.image.allocate", "NAME=two\nTYPE=DATABLOCK\nSIZE=1", 1, session=alice),
            [
                "[one.image.allocate] User [2] : user [2] limit of 1 reached for IMAGES quota in "
                "DATASTORE with ID: 1.",
                0x200,
            ],
        )
        self.answer()
        self.one.ok("one.image.delete", oid, session=alice)
        self.answer("RM")
        self.assertEqual(
            self.fail("one.image.allocate", "NAME=big\nTYPE=DATABLOCK\nSIZE=400", 1, session=alice),
            [
                "[one.image.allocate] User [2] : user [2] limit of 300 reached for SIZE quota in "
                "DATASTORE with ID: 1.",
                0x200,
            ],
        )
        user = etree.fromstring(self.one.ok("one.user.info", 2))
        self.assertEqual(user.findtext("DATASTORE_QUOTA/DATASTORE/IMAGES_USED"), "0")
        self.assertEqual(user.findtext("DATASTORE_QUOTA/DATASTORE/SIZE_USED"), "0")


class NameTests(ImageCase):
    def test_names_are_unique_per_owner(self) -> None:
        """Two owners may share a name; the same owner may not (whatever was made last)."""
        alice, bob = self.user("alice"), self.user("bob")
        self.one.ok("one.image.allocate", T6, 1, session=alice)
        self.one.ok("one.image.allocate", T6, 1, session=bob)
        self.assertEqual(
            self.fail("one.image.allocate", T6, 1, session=alice),
            [
                "[one.image.allocate] Error allocating a new image. NAME is already taken by "
                "IMAGE 0.",
                0x4000,
            ],
        )
        self.assertEqual(self.one.ok("one.image.allocate", T7, 1, session=alice), 2)
        ds = etree.fromstring(self.one.ok("one.datastore.info", 1))
        self.assertEqual([i.text for i in ds.findall("IMAGES/ID")], ["0", "1", "2"])


class RoundTripTests(SynchronousTestCase):
    def test_samples_read_back_byte_for_byte(self) -> None:
        """Every IMAGE oned answered (info and pool) is rendered back unchanged."""
        from oned.objects.image import Image

        docs = [p.read_text() for p in sorted(SAMPLES.glob("one.image.info.*.xml"))]
        pool = (SAMPLES / "one.imagepool.info.all.xml").read_text()
        inner = pool[len("<IMAGE_POOL>") : -len("</IMAGE_POOL>")]
        docs += ["<IMAGE><ID>" + part for part in inner.split("<IMAGE><ID>")[1:]]
        self.assertGreater(len(docs), 10)
        for doc in docs:
            self.assertEqual(Image.from_xml(doc).to_xml(), doc)


class UsageTests(ImageCase):
    def use(self, fn: Any, *args: Any) -> Any:
        stage = Stage(self.one.core)
        result = fn(stage, *args)
        result_of(Deferred.fromCoroutine(stage.commit("test")))
        return result

    def test_vms_acquire_and_release(self) -> None:
        """READY -> USED/USED_PERS with VMs; a second VM on a persistent image is refused;
        release brings READY back; a used image cannot be deleted."""
        plain = int(self.one.ok("one.image.allocate", T6, 1))
        pers = int(self.one.ok("one.image.allocate", T8, 1))
        self.answer()
        self.assertIsNone(self.use(usage.acquire, 7, plain, False))
        self.assertIsNone(self.use(usage.acquire, 8, plain, False))
        self.assertIsNone(self.use(usage.acquire, 7, pers, False))
        self.assertEqual(
            self.use(usage.acquire, 8, pers, False),
            f"Cannot acquire image {pers}, it is persistent and already in use",
        )
        doc = etree.fromstring(self.info(plain))
        self.assertEqual((doc.findtext("STATE"), doc.findtext("RUNNING_VMS")), ("2", "2"))
        self.assertEqual(self.state(pers), 8)
        self.assertEqual(
            self.fail("one.image.delete", plain),
            ["[one.image.delete] Cannot delete image. There are 2 VMs using it.", 0x800],
        )
        for vm in (7, 8):
            self.use(usage.release, vm, plain, False, 0)
        self.use(usage.release, 7, pers, False, 0)
        self.assertEqual((self.state(plain), self.state(pers)), (1, 1))
        self.assertEqual(xsd.errors(self.info(plain)), [])
        locked = int(self.one.ok("one.image.allocate", T7, 1))
        self.assertEqual(
            self.use(usage.acquire, 9, locked, True), f"Cannot acquire image {locked}, it is locked"
        )
        self.assertIsNone(self.use(usage.acquire, 9, locked, False))
        self.assertEqual(self.state(locked), 9)
        told: list[tuple[int, bool]] = []
        self.manager.disk_lock_listeners.append(lambda vm, ok: told.append((vm, ok)))
        self.answer()
        self.one.core.eventually.flush()
        self.assertEqual(self.state(locked), 2)
        self.assertEqual(told, [(9, True)])


class ChownTests(ImageCase):
    def test_chown_moves_datastore_quota(self) -> None:
        """chown moves IMAGES/SIZE usage to the new owner, refused past its limit."""
        alice, _ = self.user("alice"), self.user("bob")
        oid = self.one.ok("one.image.allocate", T6, 1, session=alice)
        self.answer()
        self.one.ok("one.user.quota", 3, 'DATASTORE=[ID="1", SIZE="100"]')
        self.assertEqual(
            self.fail("one.image.chown", oid, 3, -1),
            [
                "[one.image.chown] User [0] : user [3] limit of 100 reached for SIZE quota in "
                "DATASTORE with ID: 1.",
                0x200,
            ],
        )
        self.one.ok("one.user.quota", 3, 'DATASTORE=[ID="1", SIZE="1000"]')
        self.one.ok("one.image.chown", oid, 3, -1)
        alice_doc = etree.fromstring(self.one.ok("one.user.info", 2))
        bob_doc = etree.fromstring(self.one.ok("one.user.info", 3))
        self.assertIsNone(alice_doc.find("DATASTORE_QUOTA/DATASTORE"))
        self.assertEqual(bob_doc.findtext("DATASTORE_QUOTA/DATASTORE/SIZE_USED"), "256")
        self.assertEqual(bob_doc.findtext("DATASTORE_QUOTA/DATASTORE/IMAGES_USED"), "1")


class CrossDatastoreTests(ImageCase):
    def test_clone_into_another_datastore_and_restore(self) -> None:
        """Clone into another IMAGE_DS with the same DS_MAD (IMAGES of both kept);
        restore sends RESTORE for BACKUP images only."""
        other = self.one.ok(
            "one.datastore.allocate",
            'NAME="more"\nTYPE="IMAGE_DS"\nDS_MAD="dummy"\nTM_MAD="dummy"',
            -1,
        )
        self.one.ok("one.datastore.update", other, "DATASTORE_CAPACITY_CHECK=NO", 1)
        src = int(self.one.ok("one.image.allocate", T6, 1))
        self.answer()
        clone = self.one.ok("one.image.clone", src, "far", other)
        self.assertEqual(self.drivers.pending("CLONE")[0].oid, clone)
        self.answer("CLONE")
        doc = etree.fromstring(self.info(clone))
        self.assertEqual((doc.findtext("DATASTORE_ID"), doc.findtext("STATE")), (str(other), "1"))
        ds = etree.fromstring(self.one.ok("one.datastore.info", other))
        self.assertEqual([i.text for i in ds.findall("IMAGES/ID")], [str(clone)])
        self.assertEqual(
            self.fail("one.image.restore", src, 1, ""),
            ["[one.image.restore] Can only restore images of type BACKUP", 0x800],
        )
        self.assertEqual(self.one.call("one.image.restore", 999, 1, "")[:3], [True, "", 0])
        backups = self.one.ok(
            "one.datastore.allocate",
            'NAME="bk"\nTYPE="BACKUP_DS"\nDS_MAD="dummy"\nTM_MAD="-"',
            -1,
        )
        stage = Stage(self.one.core)
        oid = stage.allocate_oid()
        stage.add_image(
            Image(oid, "bk0", type=im.BACKUP, state=im.READY, datastore_id=backups, source="b")
        )
        result_of(Deferred.fromCoroutine(stage.commit("backup image")))
        self.assertEqual(self.one.ok("one.image.restore", oid, 1, "NO_NIC=YES"), "0 dummy_image")
        sent = self.drivers.requests[-1]
        self.assertEqual(sent.action, "RESTORE")
        self.assertIn("<DESTINATION_DS_ID>1</DESTINATION_DS_ID><TEMPLATE>", sent.document)
        self.assertIn("<USERNAME><![CDATA[oneadmin]]></USERNAME>", sent.document)
        self.assertEqual(
            self.fail("one.image.restore", oid, backups, ""),
            ["[one.image.restore] Destination can be only an image datastore", 0x800],
        )


class EncryptedTests(SynchronousTestCase):
    def test_encrypted_attributes_at_allocate(self) -> None:
        """IMAGE_ENCRYPTED_ATTR values are stored encrypted; admins may decrypt them."""
        one = OnedHarness('IMAGE_ENCRYPTED_ATTR = "SECRET"')
        self.addCleanup(one.close)
        one.ok("one.datastore.update", 1, 'DS_MAD="dummy"\nTM_MAD="dummy"', 1)
        manager = ImageManager(one.core, FakeDatastoreDrivers(), one.clock)
        one.core.image_manager = manager
        oid = one.ok(
            "one.image.allocate", "NAME=s\nSOURCE=/s\nFORMAT=raw\nSIZE=1\nSECRET=pw", 1, True
        )
        stored = etree.fromstring(one.ok("one.image.info", oid))
        self.assertNotIn(stored.findtext("TEMPLATE/SECRET"), ("pw", None))
        clear = etree.fromstring(one.ok("one.image.info", oid, True))
        self.assertEqual(clear.findtext("TEMPLATE/SECRET"), "pw")
