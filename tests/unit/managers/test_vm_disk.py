"""VM disk operations (attach, detach, disk snapshots, resize, saveas) through the real
request manager and the DM/LCM/VMM/TM and image managers, with scripted drivers
(in-memory database, fake clock)."""

from __future__ import annotations

import sys
from pathlib import Path

from lxml import etree
from twisted.internet.defer import Deferred

from managers.test_lifecycle import LifecycleCase
from oned.core import Core
from oned.managers.image.manager import ImageManager
from oned.managers.image.testing import FakeDatastoreDrivers
from oned.managers.lifecycle.testing import FakeVmDrivers
from oned.objects.vm import LcmState as L
from oned.objects.vm import VmState as S
from oned.testing.rpc import result_of

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "integration"))
import xsd  # noqa: E402

DATABLOCK = 'NAME="data"\nTYPE="DATABLOCK"\nSIZE="100"'
PERSISTENT = 'NAME="pers"\nTYPE="DATABLOCK"\nSIZE="128"\nPERSISTENT="YES"'


class DiskCase(LifecycleCase):
    """A running VM on host01 plus a dummy image datastore (1) with a fake DS driver."""

    def setUp(self) -> None:
        super().setUp()
        h = self.h
        h.ok("one.datastore.update", 1, 'DS_MAD="dummy"\nTM_MAD="dummy"', 1)
        self.ds_drivers = FakeDatastoreDrivers()
        self.images = ImageManager(h.core, self.ds_drivers, h.clock)
        h.core.image_manager = self.images
        result_of(Deferred.fromCoroutine(self.images.start()))
        self.ds_drivers.answer_all("MONITOR")
        self.settle_all()
        self.ds_drivers.sent.clear()

    def settle_all(self) -> None:
        for _ in range(10):
            self.h.clock.advance(0)
            self.h.clock.advance(1)
            self.ds_drivers.answer_all("MKFS")
            self.settle()

    def image(self, text: str) -> int:
        iid = self.h.ok("one.image.allocate", text, 1)
        self.settle_all()
        return iid

    def image_doc(self, iid: int) -> etree._Element:
        return etree.fromstring(self.h.ok("one.image.info", iid).encode())

    def check_xsd(self, vid: int) -> None:
        self.assertEqual(xsd.errors(self.h.ok("one.vm.info", vid)), [])

    def disk(self, vid: int, did: int) -> etree._Element:
        node = self.vm(vid).find(f"TEMPLATE/DISK[DISK_ID='{did}']")
        assert node is not None
        return node

    def attached(self, iid: int, persistent: bool = False) -> tuple[int, int]:
        vid = self.running_vm()
        self.h.ok("one.vm.attach", vid, f"DISK=[IMAGE_ID={iid}]")
        self.assertEqual(self.states(vid), (S.ACTIVE, L.HOTPLUG))
        self.settle()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        return vid, 0


class AttachDetachTests(DiskCase):
    def test_attach_running_then_detach(self) -> None:
        iid = self.image(DATABLOCK)
        vid = self.running_vm()
        self.h.ok("one.vm.attach", vid, f"DISK=[IMAGE_ID={iid}]")
        sent = self.drivers.pending("ATTACHDISK")
        self.assertEqual(len(sent), 1)
        doc = etree.fromstring(sent[0].document.encode())
        self.assertTrue((doc.findtext("TM_COMMAND") or "").startswith("CLONE.dummy dummy "))
        self.assertTrue((doc.findtext("DISK_TARGET_PATH") or "").endswith(f"/{vid}/disk.0"))
        self.settle()
        disk = self.disk(vid, 0)
        self.assertIsNone(disk.find("ATTACH"))
        self.assertEqual(disk.findtext("IMAGE_ID"), str(iid))
        self.assertEqual(disk.findtext("TARGET"), "sda")
        img = self.image_doc(iid)
        self.assertEqual(img.findtext("STATE"), "2")
        self.assertEqual(img.findtext("RUNNING_VMS"), "1")
        vm = self.vm(vid)
        self.assertEqual(vm.findtext("HISTORY_RECORDS/HISTORY[SEQ='0']/ACTION"), "21")
        self.check_xsd(vid)
        self.h.ok("one.vm.detach", vid, 0)
        self.assertEqual(self.drivers.actions(), ["DETACHDISK"])
        self.settle()
        self.assertIsNone(self.vm(vid).find("TEMPLATE/DISK"))
        self.assertEqual(self.image_doc(iid).findtext("STATE"), "1")
        self.assertEqual(self.image_doc(iid).findtext("RUNNING_VMS"), "0")
        self.check_xsd(vid)

    def test_attach_failure_removes_disk(self) -> None:
        iid = self.image(DATABLOCK)
        vid = self.running_vm()
        self.h.ok("one.vm.attach", vid, f"DISK=[IMAGE_ID={iid}]")
        self.drivers.reply("ATTACHDISK", vid, success=False, info="boom")
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assertIsNone(self.vm(vid).find("TEMPLATE/DISK"))
        self.assertIn("ATTACHDISK: boom", self.vm(vid).findtext("USER_TEMPLATE/ERROR") or "")
        self.assertEqual(self.image_doc(iid).findtext("STATE"), "1")

    def test_attach_poweroff_uses_tm(self) -> None:
        vid = self.running_vm()
        self.action("poweroff", vid)
        self.settle()
        self.h.ok("one.vm.attach", vid, 'DISK=[TYPE="swap", SIZE="64"]')
        self.assertEqual(self.states(vid), (S.ACTIVE, L.HOTPLUG_PROLOG_POWEROFF))
        self.assertEqual(self.drivers.actions(), ["TRANSFER"])
        script = Path(self.drivers.sent[0].payload).read_text()
        self.assertRegex(script, r"^MKSWAP dummy 64 host01:\S+/disk\.0 \d+ 0\n$")
        self.settle()
        self.assertEqual(self.states(vid), (S.POWEROFF, L.LCM_INIT))
        self.assertEqual(self.disk(vid, 0).findtext("TYPE"), "swap")
        self.check_xsd(vid)

    def test_wrong_state_and_errors(self) -> None:
        vid = self.h.ok("one.vm.allocate", 'NAME="x"\nCPU="1"\nMEMORY="64"')
        err = self.h.call("one.vm.attach", vid, 'DISK=[TYPE="swap", SIZE="1"]')
        self.assertEqual(err[1], "[one.vm.attach] VM is not running in any host")
        running = self.running_vm()
        err = self.h.call("one.vm.attach", running, "DISK=[IMAGE_ID=99]")
        self.assertEqual(err[1], "[one.vm.attach] Image with ID: 99 does not exist")
        err = self.h.call("one.vm.detach", running, 7)
        self.assertEqual(err[1], "[one.vm.detach] VM disk does not exist")
        self.action("suspend", running)
        self.settle()
        err = self.h.call("one.vm.attach", running, 'DISK=[TYPE="swap", SIZE="1"]')
        self.assertEqual(
            err[1],
            f"[one.vm.attach] Could not attach a new disk to VM {running}, wrong state SUSPENDED.",
        )


class SnapshotTests(DiskCase):
    def test_snapshot_cycle_running_and_poweroff(self) -> None:
        iid = self.image(PERSISTENT)
        vid, did = self.attached(iid)
        sid = self.h.ok("one.vm.disksnapshotcreate", vid, did, "first")
        self.assertEqual(sid, 0)
        self.assertEqual(self.states(vid), (S.ACTIVE, L.DISK_SNAPSHOT))
        self.assertEqual(self.drivers.actions(), ["DISKSNAPSHOTCREATE"])
        self.settle()
        vm = self.vm(vid)
        snap = vm.find("SNAPSHOTS")
        assert snap is not None
        self.assertEqual(snap.findtext("DISK_ID"), "0")
        self.assertEqual(snap.findtext("SNAPSHOT/ACTIVE"), "YES")
        self.assertEqual(snap.findtext("SNAPSHOT/NAME"), "first")
        self.assertEqual(self.disk(vid, 0).findtext("DISK_SNAPSHOT_TOTAL_SIZE"), "128")
        self.assertIsNone(self.disk(vid, 0).find("DISK_SNAPSHOT_ACTIVE"))
        self.check_xsd(vid)
        self.h.ok("one.vm.disksnapshotrename", vid, did, sid, "renamed")
        self.assertEqual(self.vm(vid).findtext("SNAPSHOTS/SNAPSHOT/NAME"), "renamed")
        err = self.h.call("one.vm.disksnapshotrevert", vid, did, sid)
        self.assertIn("Could not revert to disk snapshot for VM", err[1])
        self.h.ok("one.vm.disksnapshotcreate", vid, did, "second")
        self.settle()
        self.action("poweroff", vid)
        self.settle()
        self.h.ok("one.vm.disksnapshotrevert", vid, did, sid)
        self.assertEqual(self.states(vid), (S.ACTIVE, L.DISK_SNAPSHOT_REVERT_POWEROFF))
        script = Path(self.drivers.sent[0].payload).read_text()
        self.assertRegex(script, r"^SNAP_REVERT.dummy dummy host01:\S+/disk\.0 0 \d+ 1\n$")
        self.settle()
        self.assertEqual(self.states(vid), (S.POWEROFF, L.LCM_INIT))
        self.assertEqual(self.vm(vid).findtext("SNAPSHOTS/SNAPSHOT[ID='0']/ACTIVE"), "YES")
        self.h.ok("one.vm.disksnapshotdelete", vid, did, 1)
        self.assertEqual(self.states(vid), (S.ACTIVE, L.DISK_SNAPSHOT_DELETE_POWEROFF))
        self.settle()
        self.assertEqual(self.states(vid), (S.POWEROFF, L.LCM_INIT))
        self.assertEqual(len(self.vm(vid).findall("SNAPSHOTS/SNAPSHOT")), 1)
        err = self.h.call("one.vm.disksnapshotdelete", vid, did, 0)
        self.assertEqual(
            err[1],
            "[one.vm.disksnapshotdelete] Cannot delete snapshot 0 for persistent disk images",
        )
        self.check_xsd(vid)
        self.action("terminate", vid)
        self.settle()
        img = self.image_doc(iid)
        self.assertEqual(img.findtext("STATE"), "1")
        self.assertEqual(img.findtext("SNAPSHOTS/SNAPSHOT/NAME"), "renamed")
        self.assertEqual(xsd.errors(self.h.ok("one.image.info", iid)), [])

    def test_snapshot_failure_drops_it(self) -> None:
        iid = self.image(DATABLOCK)
        vid, did = self.attached(iid)
        self.h.ok("one.vm.disksnapshotcreate", vid, did, "")
        self.drivers.reply("DISKSNAPSHOTCREATE", vid, success=False)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assertEqual(self.vm(vid).findall("SNAPSHOTS/SNAPSHOT"), [])
        self.check_xsd(vid)


class ResizeSaveasTests(DiskCase):
    def test_resize(self) -> None:
        iid = self.image(DATABLOCK)
        vid, did = self.attached(iid)
        err = self.h.call("one.vm.diskresize", vid, did, "50")
        self.assertEqual(
            err[1], "[one.vm.diskresize] New disk size has to be greater than current one"
        )
        err = self.h.call("one.vm.diskresize", vid, did, "big")
        self.assertEqual(err[1], "[one.vm.diskresize] Disk SIZE is not a valid integer")
        self.h.ok("one.vm.diskresize", vid, did, "200")
        self.assertEqual(self.states(vid), (S.ACTIVE, L.DISK_RESIZE))
        self.assertEqual(self.drivers.actions(), ["RESIZEDISK"])
        self.drivers.reply("RESIZEDISK", vid, success=False)
        self.flush()
        self.assertEqual(self.disk(vid, did).findtext("SIZE"), "100")
        self.h.ok("one.vm.diskresize", vid, did, "200")
        self.settle()
        self.assertEqual(self.disk(vid, did).findtext("SIZE"), "200")
        self.assertIsNone(self.disk(vid, did).find("SIZE_PREV"))
        self.check_xsd(vid)

    def test_saveas(self) -> None:
        iid = self.image(DATABLOCK)
        vid, did = self.attached(iid)
        new = self.h.ok("one.vm.disksaveas", vid, did, "saved", "", -1)
        self.assertEqual(self.states(vid), (S.ACTIVE, L.HOTPLUG_SAVEAS))
        self.assertEqual(self.image_doc(new).findtext("STATE"), "4")
        self.h.clock.advance(0)
        self.ds_drivers.answer_all("MKFS")
        self.h.clock.advance(1)
        self.flush()
        self.assertEqual(self.image_doc(new).findtext("STATE"), "4")
        script = Path(self.drivers.pending("TRANSFER")[0].payload).read_text()
        self.assertRegex(script, r"^CPDS.dummy dummy host01:\S+/disk\.0 \S+ -1 \d+ 1\n$")
        self.settle()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        img = self.image_doc(new)
        self.assertEqual(img.findtext("STATE"), "1")
        self.assertIsNone(img.find("TEMPLATE/SAVE_AS_HOT"))
        self.assertEqual(img.findtext("TEMPLATE/SAVED_VM_ID"), str(vid))
        self.assertEqual(img.findtext("FORMAT"), "raw")
        self.check_xsd(vid)


class QuotaTests(DiskCase):
    def test_system_disk_size_follows_volatile_disks(self) -> None:
        uid = self.h.ok("one.user.allocate", "u", "p", "", [])
        self.h.ok("one.user.quota", uid, "VM=[SYSTEM_DISK_SIZE=100]")
        vid = self.running_vm()
        self.h.ok("one.vm.chown", vid, uid, -1)

        def used() -> str:
            user = etree.fromstring(self.h.ok("one.user.info", uid).encode())
            return user.findtext("VM_QUOTA/VM/SYSTEM_DISK_SIZE_USED") or ""

        err = self.h.call("one.vm.attach", vid, 'DISK=[TYPE="swap", SIZE="128"]')
        self.assertFalse(err[0])
        self.assertIn("limit of 100 reached for SYSTEM_DISK_SIZE quota in VM", err[1])
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.h.ok("one.vm.attach", vid, 'DISK=[TYPE="fs", SIZE="60", FORMAT="raw"]')
        self.settle()
        self.assertEqual(used(), "60")
        self.h.ok("one.vm.diskresize", vid, 0, "90")
        self.drivers.reply("RESIZEDISK", vid, success=False)
        self.flush()
        self.assertEqual(used(), "60")
        self.h.ok("one.vm.detach", vid, 0)
        self.settle()
        self.assertEqual(used(), "0")


class DiskRestartTests(DiskCase):
    def test_disk_operations_resume_after_restart(self) -> None:
        """A kill -9 during each disk operation: the restart re-sends its driver step
        (or fails a saveas whose image was never made) and every VM settles."""
        iid = self.image(DATABLOCK)
        attach, cold, snap, saving = (self.running_vm() for _ in range(4))
        self.action("poweroff", cold)
        self.h.ok("one.vm.attach", snap, 'DISK=[TYPE="fs", SIZE="8", FORMAT="raw"]')
        self.h.ok("one.vm.attach", saving, f"DISK=[IMAGE_ID={iid}]")
        self.settle()
        self.h.ok("one.vm.attach", attach, f"DISK=[IMAGE_ID={iid}]")
        self.h.ok("one.vm.attach", cold, 'DISK=[TYPE="swap", SIZE="8"]')
        self.h.ok("one.vm.diskresize", snap, 0, "16")
        saved = self.h.ok("one.vm.disksaveas", saving, 0, "copy", "", -1)
        expected = {
            attach: L.HOTPLUG,
            cold: L.HOTPLUG_PROLOG_POWEROFF,
            snap: L.DISK_RESIZE,
            saving: L.HOTPLUG_SAVEAS,
        }
        for vid, lcm in expected.items():
            self.assertEqual(self.states(vid), (S.ACTIVE, lcm))
        core = Core.create(self.h.config, self.h.clock, self.h.db)
        result_of(Deferred.fromCoroutine(core.load()))
        self.h.core = core
        self.h.manager.core = core
        self.drivers = FakeVmDrivers()
        self.start_managers(core, self.drivers)
        self.flush()
        self.assertEqual(
            sorted((s.action, s.oid) for s in self.drivers.sent),
            sorted([("ATTACHDISK", attach), ("TRANSFER", cold), ("RESIZEDISK", snap)]),
        )
        self.settle()
        self.assertEqual(self.states(attach), (S.ACTIVE, L.RUNNING))
        self.assertEqual(self.states(cold), (S.POWEROFF, L.LCM_INIT))
        self.assertEqual(self.states(snap), (S.ACTIVE, L.RUNNING))
        self.assertEqual(self.states(saving), (S.ACTIVE, L.RUNNING))
        self.assertEqual(self.disk(snap, 0).findtext("SIZE"), "16")
        self.assertIsNone(self.disk(saving, 0).find("HOTPLUG_SAVE_AS_ACTIVE"))
        self.assertIn("interrupted", self.vm(saving).findtext("USER_TEMPLATE/ERROR") or "")
        self.assertEqual(self.image_doc(saved).findtext("STATE"), "4")


class SameImageTests(DiskCase):
    def test_same_image_twice(self) -> None:
        iid = self.image(DATABLOCK)
        vid, _ = self.attached(iid)
        self.h.ok("one.vm.attach", vid, f"DISK=[IMAGE_ID={iid}]")
        self.settle()
        self.assertEqual(self.disk(vid, 1).findtext("TARGET"), "sdb")
        self.h.ok("one.vm.detach", vid, 0)
        self.settle()
        self.assertEqual(self.image_doc(iid).findtext("RUNNING_VMS"), "1")
        self.h.ok("one.vm.detach", vid, 1)
        self.settle()
        self.assertEqual(self.image_doc(iid).findtext("STATE"), "1")


class RecoverTests(DiskCase):
    def test_recover_success_and_failure_of_an_attach(self) -> None:
        ok, failed = self.running_vm(), self.running_vm()
        for vid in (ok, failed):
            self.h.ok("one.vm.attach", vid, 'DISK=[TYPE="swap", SIZE="8"]')
        self.h.ok("one.vm.recover", ok, 1)
        self.h.ok("one.vm.recover", failed, 0)
        self.flush()
        self.assertEqual(self.states(ok), (S.ACTIVE, L.RUNNING))
        self.assertEqual(self.states(failed), (S.ACTIVE, L.RUNNING))
        self.assertIsNone(self.disk(ok, 0).find("ATTACH"))
        self.assertIsNone(self.vm(failed).find("TEMPLATE/DISK"))


class SaveasErrorTests(DiskCase):
    def test_refusals_leave_the_vm_running(self) -> None:
        iid = self.image(DATABLOCK)
        vid, did = self.attached(iid)
        err = self.h.call("one.vm.disksaveas", vid, did, "data", "", -1)
        self.assertEqual(
            err[1],
            "[one.vm.disksaveas] Error allocating a new image. NAME is already taken by "
            f"IMAGE {iid}.",
        )
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assertIsNone(self.disk(vid, did).find("HOTPLUG_SAVE_AS_ACTIVE"))
        err = self.h.call("one.vm.disksaveas", vid, 5, "x", "", -1)
        self.assertEqual(err[1], "[one.vm.disksaveas] Cannot use DISK. DISK does not exist.")
        err = self.h.call("one.vm.disksaveas", vid, did, "x", "", 3)
        self.assertEqual(err[1], "[one.vm.disksaveas] Cannot use DISK. Snapshot does not exist.")
        held = self.h.ok("one.vm.allocate", 'NAME="h"\nCPU="1"\nMEMORY="8"', True)
        err = self.h.call("one.vm.disksaveas", held, 0, "x", "", -1)
        self.assertEqual(
            err[1],
            "[one.vm.disksaveas] VM has to be RUNNING, POWEROFF or SUSPENDED to save disks.",
        )
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))


class ImageQuotaTests(DiskCase):
    def test_persistent_disk_snapshots_count_on_the_image_owner(self) -> None:
        uid = self.h.ok("one.user.allocate", "owner", "p", "", [])
        iid = self.image(PERSISTENT)
        self.h.ok("one.image.chown", iid, uid, -1)

        def size_used() -> str:
            user = etree.fromstring(self.h.ok("one.user.info", uid).encode())
            return user.findtext("DATASTORE_QUOTA/DATASTORE[ID='1']/SIZE_USED") or ""

        self.assertEqual(size_used(), "128")
        vid, did = self.attached(iid)
        self.h.ok("one.vm.disksnapshotcreate", vid, did, "a")
        self.settle()
        self.assertEqual(size_used(), "256")
        self.h.ok("one.vm.disksnapshotcreate", vid, did, "b")
        self.drivers.reply("DISKSNAPSHOTCREATE", vid, success=False)
        self.flush()
        self.assertEqual(size_used(), "256")
        self.h.ok("one.user.quota", uid, "DATASTORE=[ID=1, SIZE=300]")
        err = self.h.call("one.vm.disksnapshotcreate", vid, did, "c")
        self.assertIn("limit of 300 reached for SIZE quota in DATASTORE with ID: 1", err[1])
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assertEqual(size_used(), "256")


class BackupInterplayTests(DiskCase):
    def test_incremental_backups_and_disk_ids(self) -> None:
        iid = self.image(DATABLOCK)
        vid = self.h.ok(
            "one.vm.allocate",
            'NAME="b"\nCPU="1"\nMEMORY="64"\nBACKUP_CONFIG=[MODE="INCREMENT"]',
        )
        self.h.ok("one.vm.deploy", vid, self.hid)
        self.settle()
        self.h.ok("one.vm.attach", vid, f"DISK=[IMAGE_ID={iid}]")
        self.settle()
        err = self.h.call("one.vm.disksnapshotcreate", vid, 0, "s")
        self.assertEqual(
            err[1],
            '[one.vm.disksnapshotcreate] Action "disk-snapshot-create" is not compatible '
            "with incremental backups",
        )
        config = self.vm(vid).find("BACKUPS/BACKUP_CONFIG")
        assert config is not None
        self.assertEqual(config.findtext("LAST_INCREMENT_ID"), "-1")
        self.assertEqual(config.findtext("INCREMENTAL_BACKUP_ID"), "-1")
        self.h.ok("one.vm.detach", vid, 0)
        self.settle()
        self.check_xsd(vid)

    def test_mkfs_failure_and_cpds_failure(self) -> None:
        iid = self.image(DATABLOCK)
        vid, did = self.attached(iid)
        new = self.h.ok("one.vm.disksaveas", vid, did, "s1", "", -1)
        self.h.clock.advance(0)
        self.ds_drivers.reply("MKFS", new, "FAILURE", "no space")
        self.h.clock.advance(1)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assertEqual(self.image_doc(new).findtext("STATE"), "5")
        new = self.h.ok("one.vm.disksaveas", vid, did, "s2", "", -1)
        self.h.clock.advance(0)
        self.ds_drivers.answer_all("MKFS")
        self.h.clock.advance(1)
        self.flush()
        self.drivers.reply("TRANSFER", vid, success=False, info="copy failed")
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assertEqual(self.image_doc(new).findtext("STATE"), "5")
        self.assertIn("copy failed", self.vm(vid).findtext("USER_TEMPLATE/ERROR") or "")


class ImageRvmsTests(DiskCase):
    def test_rvms_follows_the_disks(self) -> None:
        uid = self.h.ok("one.user.allocate", "rv", "p", "", [])
        iid = self.image(DATABLOCK)
        vid = self.h.ok("one.vm.allocate", f'NAME="r"\nCPU="1"\nMEMORY="64"\nDISK=[IMAGE_ID={iid}]')
        self.h.ok("one.vm.chown", vid, uid, -1)

        def rvms() -> str | None:
            user = etree.fromstring(self.h.ok("one.user.info", uid).encode())
            return user.findtext(f"IMAGE_QUOTA/IMAGE[ID='{iid}']/RVMS_USED")

        self.assertEqual(rvms(), "1")
        self.h.ok("one.vm.deploy", vid, self.hid)
        self.settle()
        self.h.ok("one.vm.attach", vid, f"DISK=[IMAGE_ID={iid}]")
        self.settle()
        self.assertEqual(rvms(), "2")
        self.h.ok("one.user.quota", uid, f"IMAGE=[ID={iid}, RVMS=2]")
        err = self.h.call("one.vm.attach", vid, f"DISK=[IMAGE_ID={iid}]")
        self.assertIn(f"limit of 2 reached for RVMS quota in IMAGE with ID: {iid}", err[1])
        self.h.ok("one.vm.detach", vid, 1)
        self.settle()
        self.assertEqual(rvms(), "1")
        self.h.ok("one.user.quota", uid, f"IMAGE=[ID={iid}, RVMS=-1]")
        self.action("terminate-hard", vid)
        self.settle()
        self.assertIsNone(rvms())


class SelfTargetTests(DiskCase):
    def test_self_target_disks_count_in_the_vm_owner_datastore_quota(self) -> None:
        uid = self.h.ok("one.user.allocate", "self", "p", "", [])
        iid = self.image(DATABLOCK)

        def size_used() -> str | None:
            user = etree.fromstring(self.h.ok("one.user.info", uid).encode())
            return user.findtext("DATASTORE_QUOTA/DATASTORE[ID='1']/SIZE_USED")

        vid = self.running_vm()
        self.h.ok("one.vm.chown", vid, uid, -1)
        self.h.ok("one.vm.attach", vid, f'DISK=[IMAGE_ID={iid}, CLONE_TARGET="SELF"]')
        self.settle()
        self.assertEqual(self.disk(vid, 0).findtext("CLONE_TARGET"), "SELF")
        self.assertEqual(size_used(), "100")
        self.h.ok("one.vm.disksnapshotcreate", vid, 0, "s")
        self.settle()
        self.assertEqual(size_used(), "200")
        self.action("terminate-hard", vid)
        self.settle()
        self.assertIsNone(size_used())
