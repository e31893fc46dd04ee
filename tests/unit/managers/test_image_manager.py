"""ImageManager: resuming actions after a restart, batched replies, datastore monitoring
(scripted datastore driver, in-memory database, fake clock)."""

from __future__ import annotations

from typing import Any

from lxml import etree
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from oned.core import Core
from oned.drivers.message import b64encode
from oned.managers.image.manager import MONITOR_DEBOUNCE, ImageManager
from oned.managers.image.testing import FakeDatastoreDrivers
from oned.testing.rpc import OnedHarness, result_of

T6 = 'NAME="db"\nTYPE="DATABLOCK"\nSIZE="256"'
T7 = 'NAME="os"\nTYPE="OS"\nPATH="http://example.org/os.img"'
T8 = 'NAME="pers"\nTYPE="DATABLOCK"\nSIZE="128"\nPERSISTENT="YES"'


class ManagerCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.one = OnedHarness("MONITORING_INTERVAL_DATASTORE = 60")
        self.addCleanup(self.one.close)
        self.one.ok("one.datastore.update", 1, 'DS_MAD="dummy"\nTM_MAD="dummy"', 1)
        self.one.ok("one.datastore.update", 0, 'TM_MAD="dummy"\nSHARED="YES"', 1)
        self.drivers, self.manager = self.start_manager(self.one.core)
        self.drivers.answer_all("MONITOR")
        self.settle()
        self.drivers.sent.clear()

    def start_manager(self, core: Core) -> tuple[FakeDatastoreDrivers, ImageManager]:
        drivers = FakeDatastoreDrivers()
        manager = ImageManager(core, drivers, self.one.clock)
        core.image_manager = manager
        result_of(Deferred.fromCoroutine(manager.start()))
        self.addCleanup(lambda: result_of(Deferred.fromCoroutine(manager.stop())))
        return drivers, manager

    def settle(self) -> None:
        self.one.clock.advance(0)
        self.one.clock.advance(0)

    def restart(self) -> tuple[Core, FakeDatastoreDrivers]:
        """A new core read back from the database (what a restart after kill -9 sees)."""
        result_of(Deferred.fromCoroutine(self.manager.stop()))
        core = Core.create(self.one.config, self.one.clock, self.one.db)
        result_of(Deferred.fromCoroutine(core.load()))
        drivers, self.manager = self.start_manager(core)
        return core, drivers

    def doc(self, core: Core, oid: int) -> Any:
        return etree.fromstring(core.images.body(oid))


class ResumeTests(ManagerCase):
    def test_restart_reissues_each_action_in_flight(self) -> None:
        """CP, MKFS, CLONE and RM that had no reply are sent again after a restart."""
        self.one.ok("one.image.allocate", T8, 1)
        self.drivers.answer_all()
        self.settle()
        cp = self.one.ok("one.image.allocate", T7, 1)
        mkfs = self.one.ok("one.image.allocate", T6, 1)
        clone = self.one.ok("one.image.clone", 0, "copy")
        ready = self.one.ok("one.image.allocate", "NAME=r\nTYPE=DATABLOCK\nSIZE=1", 1)
        self.drivers.reply("MKFS", ready)
        self.settle()
        self.one.ok("one.image.delete", ready)
        core, drivers = self.restart()
        sent = sorted((s.action, s.oid) for s in drivers.sent if s.action != "MONITOR")
        self.assertEqual(
            sent, sorted([("CP", cp), ("MKFS", mkfs), ("CLONE", clone), ("RM", ready)])
        )
        clone_doc = drivers.pending("CLONE")[0].document
        self.assertIn("<DS_DRIVER_ACTION_DATA><IMAGE><ID>", clone_doc)
        self.assertIn("<DATASTORE><ID>1</ID>", clone_doc)
        drivers.answer_all()
        self.settle()
        states = {i.oid: i.state for i in core.images}
        self.assertEqual(states, {0: 1, cp: 1, mkfs: 1, clone: 1})
        self.assertEqual(self.doc(core, 0).findtext("CLONING_OPS"), "0")

    def test_unknown_action_goes_to_error(self) -> None:
        """A LOCKED image whose action cannot be told (a snapshot) ends in ERROR."""
        oid = self.one.ok("one.image.allocate", T8, 1)
        self.drivers.answer_all()
        self.settle()
        img = self.one.core.images.get(oid)
        assert img is not None
        work = img.copy()
        work.snapshots.items = [{"DATE": "1", "ID": "0", "PARENT": "-1", "SIZE": "1"}]
        unit = self.one.core.unit()
        unit.save(self.one.core.images, work)
        result_of(Deferred.fromCoroutine(unit.commit("test")))
        self.one.ok("one.image.snapshotdelete", oid, 0)
        core, drivers = self.restart()
        self.assertEqual(drivers.pending("SNAP_DELETE"), [])
        doc = self.doc(core, oid)
        self.assertEqual((doc.findtext("STATE"), doc.findtext("TARGET_SNAPSHOT")), ("5", "-1"))
        self.assertIn("Operation interrupted by a restart of oned", doc.findtext("TEMPLATE/ERROR"))


class ReplyTests(ManagerCase):
    def test_replies_share_one_transaction(self) -> None:
        """Replies arriving together are applied in a single database transaction."""
        oids = [
            self.one.ok("one.image.allocate", f"NAME=i{i}\nTYPE=DATABLOCK\nSIZE=1", 1)
            for i in range(20)
        ]
        calls: list[str] = []
        real = self.one.db.transact

        async def counting(desc: str, statements: Any) -> None:
            calls.append(desc)
            await real(desc, statements)

        self.one.db.transact = counting  # type: ignore[method-assign]
        self.drivers.answer_all("MKFS")
        self.settle()
        self.assertEqual(calls, ["20 datastore driver replies"])
        self.assertEqual({self.one.core.images.get(o).state for o in oids}, {1})  # type: ignore[union-attr]

    def test_rm_failure_and_force(self) -> None:
        """RM failure: ERROR with oned's text; with FORCE_DELETE the image goes anyway."""
        a = self.one.ok("one.image.allocate", T6, 1)
        b = self.one.ok("one.image.allocate", "NAME=b\nTYPE=DATABLOCK\nSIZE=1", 1)
        self.drivers.answer_all()
        self.settle()
        self.one.ok("one.image.delete", a)
        self.one.ok("one.image.lock", b, 1)
        self.one.ok("one.image.unlock", b)
        self.one.ok("one.image.delete", b)
        self.drivers.reply("RM", a, "FAILURE", "busy")
        self.settle()
        error = self.doc(self.one.core, a).findtext("TEMPLATE/ERROR")
        self.assertTrue(
            error.endswith(
                " : Error removing image from datastore. Retry the operation or manually "
                "remove image source  and run the delete --force operation to completely "
                "delete the image"
            )
        )
        self.one.ok("one.image.delete", a, True)
        self.drivers.reply("RM", a, "FAILURE", "busy")
        self.drivers.reply("RM", b)
        self.settle()
        self.assertEqual(list(self.one.core.images), [])

    def test_reply_for_missing_image_is_dropped(self) -> None:
        """A reply about an image that no longer exists changes nothing."""
        self.drivers.reply("CP", 42, "SUCCESS", "src fmt")
        self.settle()
        self.assertEqual(len(self.one.core.images), 0)

    def test_cp_without_format_is_an_error(self) -> None:
        """CP must return SOURCE and FORMAT (7.x contract)."""
        oid = self.one.ok("one.image.allocate", T7, 1)
        self.drivers.reply("CP", oid, "SUCCESS", "only_source")
        self.settle()
        doc = self.doc(self.one.core, oid)
        self.assertEqual(doc.findtext("STATE"), "5")
        self.assertTrue(
            doc.findtext("TEMPLATE/ERROR").endswith(
                "CP operation succeeded but image FORMAT was not returned."
            )
        )


class MonitorTests(ManagerCase):
    def test_monitoring_updates_capacity(self) -> None:
        """MONITOR at start and every interval; the reply sets TOTAL/FREE/USED_MB."""
        self.one.clock.advance(60)
        monitored = sorted(s.oid for s in self.drivers.pending("MONITOR"))
        self.assertEqual(monitored, [0, 1, 2])
        info = b64encode("USED_MB=10\nTOTAL_MB=500\nFREE_MB=490\n")
        self.drivers.reply("MONITOR", 1, "SUCCESS", info)
        self.drivers.reply("MONITOR", 2, "FAILURE", b64encode("boom"))
        self.settle()
        ds = etree.fromstring(self.one.ok("one.datastore.info", 1))
        self.assertEqual(
            [ds.findtext(t) for t in ("TOTAL_MB", "FREE_MB", "USED_MB")], ["500", "490", "10"]
        )

    def test_non_shared_system_datastore_is_skipped(self) -> None:
        """A system datastore with SHARED=NO is left to host monitoring."""
        self.one.ok("one.datastore.update", 0, "TM_MAD=local\nSHARED=NO", 1)
        self.drivers.sent.clear()
        self.one.clock.advance(60)
        self.assertEqual(sorted(s.oid for s in self.drivers.pending("MONITOR")), [1, 2])

    def test_burst_of_replies_monitors_once(self) -> None:
        """Many MKFS replies lead to one MONITOR of their datastore shortly after."""
        for i in range(5):
            self.one.ok("one.image.allocate", f"NAME=m{i}\nTYPE=DATABLOCK\nSIZE=1", 1)
        self.drivers.answer_all("MKFS")
        self.settle()
        self.one.clock.advance(MONITOR_DEBOUNCE)
        self.assertEqual([s.oid for s in self.drivers.pending("MONITOR")], [1])
        system = self.drivers  # system DS document carries DATASTORE_LOCATION
        self.one.clock.advance(60)
        docs = [s.document for s in system.pending("MONITOR") if s.oid == 0]
        self.assertIn("<DATASTORE_LOCATION>", docs[0])


class UnsentTests(ManagerCase):
    def test_action_that_cannot_be_sent_fails_the_image(self) -> None:
        """No datastore driver to send to: the image goes to ERROR, not LOCKED for ever."""
        self.drivers.send = lambda *args, **kwargs: False  # type: ignore[method-assign]
        oid = self.one.ok("one.image.allocate", T6, 1)
        self.settle()
        doc = self.doc(self.one.core, oid)
        self.assertEqual(doc.findtext("STATE"), "5")
        self.assertTrue(
            doc.findtext("TEMPLATE/ERROR").endswith(
                "Error creating datablock: Could not get datastore driver"
            )
        )


class VmDiskMonitorTests(SynchronousTestCase):
    def test_monitor_vm_disks_every_n_intervals(self) -> None:
        """DS_MONITOR_VM_DISK=2: a shared system datastore's MONITOR asks for VM disks
        every second time."""
        one = OnedHarness("MONITORING_INTERVAL_DATASTORE = 10\nDS_MONITOR_VM_DISK = 2")
        self.addCleanup(one.close)
        one.ok("one.datastore.update", 0, 'TM_MAD="dummy"\nSHARED="YES"', 1)
        drivers = FakeDatastoreDrivers()
        manager = ImageManager(one.core, drivers, one.clock)
        result_of(Deferred.fromCoroutine(manager.start()))
        self.addCleanup(lambda: result_of(Deferred.fromCoroutine(manager.stop())))
        for _ in range(3):
            one.clock.advance(10)
        flags = [
            s.document.split("<MONITOR_VM_DISKS>")[1][:1]
            for s in drivers.pending("MONITOR")
            if s.oid == 0
        ]
        self.assertEqual(flags, ["1", "0", "1", "0"])


class DriverDocumentTests(ManagerCase):
    def test_large_images_list_is_left_out_of_driver_documents(self) -> None:
        """Past DRIVER_IMAGES_LIMIT ids the datastore copy sent to the driver has an
        empty IMAGES (no driver reads it); the stored document keeps them all."""
        from oned.managers.image import manager as manager_module

        self.patch(manager_module, "DRIVER_IMAGES_LIMIT", 2)
        for i in range(3):
            self.one.ok("one.image.allocate", f"NAME=l{i}\nTYPE=DATABLOCK\nSIZE=1", 1)
        docs = [s.document for s in self.drivers.pending("MKFS")]
        self.assertIn("<IMAGES><ID>0</ID><ID>1</ID></IMAGES>", docs[1])
        self.assertIn("<IMAGES></IMAGES><TEMPLATE>", docs[2])
        stored = self.one.core.datastores.body(1)
        self.assertIn("<IMAGES><ID>0</ID><ID>1</ID><ID>2</ID></IMAGES>", stored)
