"""one.vm.backup/backupcancel/restore through the real request manager and the
DM/LCM/VMM/TM managers with scripted drivers (in-memory database, fake clock)."""

from __future__ import annotations

from pathlib import Path

from lxml import etree
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from oned.core import Core
from oned.managers.image.manager import ImageManager
from oned.managers.image.testing import FakeDatastoreDrivers
from oned.managers.lifecycle.testing import FakeVmDrivers
from oned.managers.lifecycle.wiring import use_drivers
from oned.managers.vmm.backup_config import Backups, backup_disk_ids, backup_size
from oned.objects.vm import LcmState as L
from oned.objects.vm import VirtualMachine
from oned.objects.vm import VmState as S
from oned.template import parse_str_or_xml
from oned.testing.rpc import OnedHarness, result_of

VM_TEMPLATE = 'NAME="v"\nCPU="0.5"\nVCPU="1"\nMEMORY="256"'
BACKUP_DS = 'NAME="backups"\nTYPE="BACKUP_DS"\nDS_MAD="dummy"\nTM_MAD="-"'


class BackupCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = OnedHarness()
        self.addCleanup(self.h.close)
        self.h.ok("one.datastore.update", 0, 'TM_MAD="dummy"', 1)
        self.hid = self.h.ok("one.host.allocate", "host01", "dummy", "dummy", -1)
        self.bds = self.h.ok("one.datastore.allocate", BACKUP_DS, -1)
        self.drivers = FakeVmDrivers()
        self.start_managers(self.h.core)

    def start_managers(self, core: Core) -> None:
        lcm = use_drivers(core, self.drivers)
        result_of(Deferred.fromCoroutine(lcm.start()))
        self.addCleanup(lcm.log_writer.stop)
        self.flush()

    def flush(self) -> None:
        for _ in range(10):
            self.h.core.eventually.flush()

    def settle(self) -> None:
        for _ in range(20):
            self.flush()
            if not [s for s in self.drivers.sent if s.action != "BACKUP"]:
                break
            pending = [s for s in self.drivers.sent if s.action != "BACKUP"]
            for s in pending:
                self.drivers.reply(s.action, s.oid, True, _info(s))
        self.flush()

    def vm(self, vid: int) -> etree._Element:
        return etree.fromstring(self.h.ok("one.vm.info", vid).encode())

    def states(self, vid: int) -> tuple[int, int]:
        vm = self.vm(vid)
        return int(vm.findtext("STATE") or -1), int(vm.findtext("LCM_STATE") or -1)

    def running_vm(self) -> int:
        vid: int = self.h.ok("one.vm.allocate", VM_TEMPLATE)
        self.h.ok("one.vm.deploy", vid, self.hid)
        self.settle()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        return vid

    def poweroff_vm(self) -> int:
        vid = self.running_vm()
        self.h.ok("one.vm.action", "poweroff", vid)
        self.settle()
        self.assertEqual(self.states(vid)[0], S.POWEROFF)
        return vid

    def backup_done(self, vid: int, info: str = "dummy-backup-id 1024") -> None:
        self.drivers.reply("BACKUP", vid, True, info)
        self.flush()


def _info(s: object) -> str:
    if getattr(s, "action", "") == "DEPLOY":
        root = etree.fromstring(s.document.encode())  # type: ignore[attr-defined]
        return f"{root.findtext('HOST')}:{root.findtext('VM/NAME')}:dummy"
    return "-"


class BackupTests(BackupCase):
    def test_backup_of_a_running_vm_creates_the_backup_image(self) -> None:
        vid = self.running_vm()
        self.assertEqual(self.h.ok("one.vm.backup", vid, self.bds, False), vid)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.BACKUP))
        sent = self.drivers.pending("BACKUP")
        self.assertEqual(len(sent), 1)
        doc = etree.fromstring(sent[0].document.encode())
        self.assertEqual(doc.findtext("DATASTORE/ID"), str(self.bds))
        command = doc.findtext("TM_COMMAND") or ""
        self.assertTrue(command.startswith("BACKUP dummy host01:"), command)
        self.assertTrue(command.strip().endswith(f"- {vid} 0"), command)
        self.assertEqual(doc.findtext("VM/BACKUPS/BACKUP_CONFIG/LAST_DATASTORE_ID"), str(self.bds))
        self.backup_done(vid)
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        vm = self.vm(vid)
        ids = [i.text for i in vm.findall("BACKUPS/BACKUP_IDS/ID")]
        self.assertEqual(len(ids), 1)
        self.assertIn("<BACKUPS><BACKUP_CONFIG/><BACKUP_IDS>", self.h.ok("one.vm.info", vid))
        history = vm.findall("HISTORY_RECORDS/HISTORY")
        self.assertEqual([h.findtext("ACTION") for h in history][-2:], ["50", "0"])
        image = etree.fromstring(self.h.ok("one.image.info", int(ids[0] or -1)).encode())
        self.assertEqual(image.findtext("TYPE"), "6")
        self.assertEqual(image.findtext("STATE"), "1")
        self.assertEqual(image.findtext("PERSISTENT"), "1")
        self.assertEqual(image.findtext("SOURCE"), "dummy-backup-id")
        self.assertEqual(image.findtext("SIZE"), "1024")
        self.assertEqual(image.findtext("FORMAT"), "raw")
        self.assertEqual(image.findtext("DATASTORE_ID"), str(self.bds))
        self.assertEqual([i.text for i in image.findall("VMS/ID")], [str(vid)])
        self.assertTrue((image.findtext("NAME") or "").startswith(f"{vid} "))
        ds = etree.fromstring(self.h.ok("one.datastore.info", self.bds).encode())
        self.assertEqual([i.text for i in ds.findall("IMAGES/ID")], ids)

    def test_backup_of_a_poweroff_vm_comes_back_to_poweroff(self) -> None:
        vid = self.poweroff_vm()
        self.h.ok("one.vm.backup", vid, self.bds)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.BACKUP_POWEROFF))
        self.backup_done(vid, "bk-2 10 qcow2")
        self.assertEqual(self.states(vid), (S.POWEROFF, L.LCM_INIT))
        image_id = int(self.vm(vid).findtext("BACKUPS/BACKUP_IDS/ID") or -1)
        image = etree.fromstring(self.h.ok("one.image.info", image_id).encode())
        self.assertEqual(image.findtext("FORMAT"), "qcow2")
        # Quotas untouched by the ACTIVE detour.
        user = etree.fromstring(self.h.ok("one.user.info", 0).encode())
        self.assertIsNotNone(user)

    def test_failure_goes_back_with_the_error(self) -> None:
        vid = self.running_vm()
        self.h.ok("one.vm.backup", vid, self.bds)
        self.flush()
        self.drivers.reply("BACKUP", vid, False, "disk busy")
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        vm = self.vm(vid)
        self.assertIn("BACKUP: disk busy", vm.findtext("USER_TEMPLATE/ERROR") or "")
        self.assertIsNone(vm.find("BACKUPS/BACKUP_IDS/ID"))
        self.assertIsNone(vm.find("BACKUPS/BACKUP_CONFIG/LAST_DATASTORE_ID"))

    def test_refusals(self) -> None:
        held = self.h.ok("one.vm.allocate", VM_TEMPLATE, True)
        reply = self.h.call("one.vm.backup", held, self.bds, False)
        self.assertEqual(
            reply[:3],
            [
                False,
                f"[one.vm.backup] Could not create a new backup for VM {held}, wrong state HOLD.",
                0x2000,
            ],
        )
        reply = self.h.call("one.vm.backup", held, -1, False)
        self.assertEqual(
            reply, [False, "[one.vm.backup] Error getting datastore Pool.", 0x400, -1, -1]
        )  # oned says "Pool." for id -1
        reply = self.h.call("one.vm.backup", held, 1, False)
        self.assertEqual(
            reply[:3], [False, "[one.vm.backup] Datastore needs to be of type BACKUP", 0x800]
        )
        reply = self.h.call("one.vm.backup", 77, self.bds, False)
        self.assertEqual(
            reply[:4], [False, "[one.vm.backup] Error getting virtual machine [77].", 0x400, 77]
        )
        reply = self.h.call("one.vm.backupcancel", held)
        self.assertEqual(
            reply[:3],
            [
                False,
                "[one.vm.backupcancel] Could not cancel backup for VM "
                f"{held}, no backup in progress",
                0x2000,
            ],
        )

    def test_backupcancel_sends_backupcancel(self) -> None:
        vid = self.running_vm()
        self.h.ok("one.vm.backup", vid, self.bds)
        self.flush()
        self.assertEqual(self.h.ok("one.vm.backupcancel", vid), vid)
        cancel = self.drivers.pending("BACKUPCANCEL")
        self.assertEqual(len(cancel), 1)
        doc = etree.fromstring(cancel[0].document.encode())
        self.assertTrue((doc.findtext("TM_COMMAND") or "").startswith("BACKUPCANCEL dummy host01:"))


class RestoreTests(BackupCase):
    def backup_image(self, vid: int) -> int:
        self.h.ok("one.vm.backup", vid, self.bds)
        self.flush()
        self.backup_done(vid)
        return int(self.vm(vid).findtext("BACKUPS/BACKUP_IDS/ID") or -1)

    def test_restore_of_a_poweroff_vm(self) -> None:
        vid = self.poweroff_vm()
        image = self.backup_image(vid)
        self.assertEqual(self.h.ok("one.vm.restore", vid, image, -1, -1), vid)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RESTORE))
        transfer = self.drivers.pending("TRANSFER")
        self.assertEqual(len(transfer), 1)
        script = Path(transfer[0].payload).read_text(encoding="utf-8")
        self.assertTrue(script.startswith("RESTORE dummy host01:"), script)
        self.assertIn(f" {vid} {image} -1 -1 ", script)
        self.assertTrue(transfer[0].payload.endswith(".restore"))
        self.drivers.reply("TRANSFER", vid, True)
        self.flush()
        self.assertEqual(self.states(vid), (S.POWEROFF, L.LCM_INIT))
        actions = [h.findtext("ACTION") for h in self.vm(vid).findall("HISTORY_RECORDS/HISTORY")]
        self.assertEqual(actions[-2:], ["60", "0"])

    def test_restore_failure_goes_back_to_poweroff(self) -> None:
        vid = self.poweroff_vm()
        image = self.backup_image(vid)
        self.h.ok("one.vm.restore", vid, image, -1, -1)
        self.flush()
        self.drivers.reply("TRANSFER", vid, False, "no space")
        self.flush()
        self.assertEqual(self.states(vid), (S.POWEROFF, L.LCM_INIT))

    def test_refusals(self) -> None:
        vid = self.running_vm()
        image = self.backup_image(vid)
        reply = self.h.call("one.vm.restore", vid, image, -1, -1)
        self.assertEqual(
            reply[:3],
            [False, "[one.vm.restore] Could not restore VM, it must be in poweroff", 0x800],
        )
        reply = self.h.call("one.vm.restore", vid, image, -1, 5)
        self.assertEqual(reply[:3], [False, "[one.vm.restore] VM disk does not exist", 0x800])
        reply = self.h.call("one.vm.restore", vid, 99, -1, -1)
        self.assertEqual(
            reply, [False, "[one.vm.restore] Error getting image [99].", 0x400, 99, -1]
        )
        reply = self.h.call("one.vm.restore", vid, image, 0, -1)
        self.assertEqual(reply[:3], [False, "[one.vm.restore] Wrong increment", 0x800])


class RestartTests(BackupCase):
    def restart(self) -> None:
        core = Core.create(self.h.config, self.h.clock, self.h.db)
        result_of(Deferred.fromCoroutine(core.load()))
        self.h.core = core
        self.h.manager.core = core
        self.drivers = FakeVmDrivers()
        self.start_managers(core)

    def test_backup_in_flight_is_sent_again(self) -> None:
        vid = self.running_vm()
        self.h.ok("one.vm.backup", vid, self.bds)
        self.flush()
        self.restart()
        self.assertEqual(len(self.drivers.pending("BACKUP")), 1)
        self.backup_done(vid)
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assertIsNotNone(self.vm(vid).find("BACKUPS/BACKUP_IDS/ID"))

    def test_restore_in_flight_fails_back_to_poweroff(self) -> None:
        vid = self.poweroff_vm()
        self.h.ok("one.vm.backup", vid, self.bds)
        self.flush()
        self.backup_done(vid)
        image = int(self.vm(vid).findtext("BACKUPS/BACKUP_IDS/ID") or -1)
        self.h.ok("one.vm.restore", vid, image, -1, -1)
        self.flush()
        self.restart()
        self.flush()
        self.assertEqual(self.states(vid), (S.POWEROFF, L.LCM_INIT))
        self.assertIn("restart", self.vm(vid).findtext("USER_TEMPLATE/ERROR") or "")


class ConfigTests(BackupCase):
    def start_images(self) -> FakeDatastoreDrivers:
        drivers = FakeDatastoreDrivers()
        manager = ImageManager(self.h.core, drivers, self.h.clock)
        self.h.core.image_manager = manager
        result_of(Deferred.fromCoroutine(manager.start()))
        self.addCleanup(lambda: result_of(Deferred.fromCoroutine(manager.stop())))
        drivers.answer_all()
        self.flush()
        return drivers

    def test_allocate_moves_backup_config_into_backups(self) -> None:
        vid = self.h.ok("one.vm.allocate", VM_TEMPLATE + '\nBACKUP_CONFIG=[KEEP_LAST="2"]', True)
        info = self.h.ok("one.vm.info", vid)
        vm = etree.fromstring(info.encode())
        self.assertIsNone(vm.find("USER_TEMPLATE/BACKUP_CONFIG"))
        self.assertEqual(vm.findtext("BACKUPS/BACKUP_CONFIG/KEEP_LAST"), "2")
        self.assertEqual(vm.findtext("BACKUPS/BACKUP_CONFIG/MODE"), "FULL")
        self.assertIn("<KEEP_LAST><![CDATA[2]]></KEEP_LAST>", info)
        self.assertIn("<BACKUP_IDS></BACKUP_IDS></BACKUPS>", info)
        reply = self.h.call("one.vm.allocate", VM_TEMPLATE + '\nBACKUP_CONFIG=[DISK_IDS="x"]')
        self.assertEqual(reply[:3], [False, "[one.vm.allocate] Invalid DISK_IDS value: x", 0x2000])

    def test_keep_last_removes_the_oldest_backups(self) -> None:
        ds_drivers = self.start_images()
        vid = self.h.ok("one.vm.allocate", VM_TEMPLATE + '\nBACKUP_CONFIG=[KEEP_LAST="1"]')
        self.h.ok("one.vm.deploy", vid, self.hid)
        self.settle()
        images = []
        for n in range(2):
            self.h.clock.advance(1)  # backup images are named after the second
            self.h.ok("one.vm.backup", vid, self.bds)
            self.flush()
            self.backup_done(vid, f"bk-{n} 10")
            ids = [int(i.text or -1) for i in self.vm(vid).findall("BACKUPS/BACKUP_IDS/ID")]
            images.append(ids[-1])
        self.flush()
        rm = ds_drivers.pending("RM")
        self.assertEqual([s.oid for s in rm], [images[0]])
        ds_drivers.answer_all("RM")
        self.h.clock.advance(1)  # replies are applied in batches
        self.flush()
        self.assertIsNone(self.h.core.images.get(images[0]))
        ids = [int(i.text or -1) for i in self.vm(vid).findall("BACKUPS/BACKUP_IDS/ID")]
        self.assertEqual(ids, [images[1]])


class IncrementTests(BackupCase):
    def backup(self, vid: int, info: str, reset: bool = False) -> None:
        self.h.clock.advance(1)
        self.h.ok("one.vm.backup", vid, self.bds, reset)
        self.flush()
        self.backup_done(vid, info)

    def test_a_chain_grows_on_one_image_until_reset(self) -> None:
        vid = self.h.ok("one.vm.allocate", VM_TEMPLATE + '\nBACKUP_CONFIG=[MODE="INCREMENT"]')
        self.h.ok("one.vm.deploy", vid, self.hid)
        self.settle()
        self.backup(vid, "full-0 100")
        self.backup(vid, "inc-1 7")
        vm = self.vm(vid)
        ids = [int(i.text or -1) for i in vm.findall("BACKUPS/BACKUP_IDS/ID")]
        self.assertEqual(len(ids), 1)
        config = vm.find("BACKUPS/BACKUP_CONFIG")
        assert config is not None
        self.assertEqual(config.findtext("INCREMENTAL_BACKUP_ID"), str(ids[0]))
        self.assertEqual(config.findtext("LAST_INCREMENT_ID"), "1")
        info = self.h.ok("one.image.info", ids[0])
        image = etree.fromstring(info.encode())
        self.assertEqual(image.findtext("SIZE"), "107")
        incs = image.findall("BACKUP_INCREMENTS/INCREMENT")
        self.assertEqual(
            [(i.findtext("ID"), i.findtext("PARENT_ID"), i.findtext("TYPE")) for i in incs],
            [("0", "-1", "FULL"), ("1", "0", "INCREMENT")],
        )
        self.assertIn("<SOURCE><![CDATA[inc-1]]></SOURCE><TYPE><![CDATA[INCREMENT]]>", info)
        # The chain's datastore is used whatever the call names; reset starts a new image.
        self.h.clock.advance(1)
        self.h.ok("one.vm.backup", vid, 1, False)
        self.flush()
        self.backup_done(vid, "inc-2 1")
        self.backup(vid, "full-3 50", reset=True)
        ids = [int(i.text or -1) for i in self.vm(vid).findall("BACKUPS/BACKUP_IDS/ID")]
        self.assertEqual(len(ids), 2)
        reply = self.h.call("one.vm.restore", vid, ids[0], 3, -1)
        self.assertEqual(reply[:2], [False, "[one.vm.restore] Wrong increment"])


class QuotaTests(BackupCase):
    def test_backups_count_in_the_owners_datastore_quota(self) -> None:
        uid = self.h.ok("one.user.allocate", "alice", "pw", "", [])
        self.h.ok("one.user.quota", uid, f'DATASTORE=[ID="{self.bds}", IMAGES="1", SIZE="-1"]')
        vid = self.running_vm()
        self.h.ok("one.vm.chown", vid, uid, -1)
        self.h.ok("one.vm.backup", vid, self.bds)
        self.flush()
        self.backup_done(vid, "bk 300")
        user = etree.fromstring(self.h.ok("one.user.info", uid).encode())
        entry = user.find(f"DATASTORE_QUOTA/DATASTORE[ID='{self.bds}']")
        assert entry is not None
        self.assertEqual((entry.findtext("IMAGES_USED"), entry.findtext("SIZE_USED")), ("1", "300"))
        self.h.clock.advance(1)
        reply = self.h.call("one.vm.backup", vid, self.bds)
        self.assertEqual(reply[0], False)
        self.assertTrue(str(reply[1]).startswith(f"[one.vm.backup] User [0] : user [{uid}] "))
        self.assertEqual(reply[2], 0x200)
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))

    def test_a_failed_backup_gives_its_reservation_back(self) -> None:
        uid = self.h.ok("one.user.allocate", "bob", "pw", "", [])
        self.h.ok("one.user.quota", uid, f'DATASTORE=[ID="{self.bds}", IMAGES="1", SIZE="-1"]')
        vid = self.running_vm()
        self.h.ok("one.vm.chown", vid, uid, -1)
        self.h.ok("one.vm.backup", vid, self.bds)
        self.flush()
        self.drivers.reply("BACKUP", vid, False, "boom")
        self.flush()
        user = etree.fromstring(self.h.ok("one.user.info", uid).encode())
        entry = user.find(f"DATASTORE_QUOTA/DATASTORE[ID='{self.bds}']")
        assert entry is not None
        self.assertEqual(entry.findtext("IMAGES_USED"), "0")


class RecoverTests(BackupCase):
    def test_recover_success_and_failure(self) -> None:
        vid = self.running_vm()
        self.h.ok("one.vm.backup", vid, self.bds)
        self.flush()
        self.h.ok("one.vm.recover", vid, 0)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assertIsNone(self.vm(vid).find("BACKUPS/BACKUP_IDS/ID"))
        self.h.clock.advance(1)
        self.h.ok("one.vm.backup", vid, self.bds)
        self.flush()
        self.h.ok("one.vm.recover", vid, 1)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        image_id = int(self.vm(vid).findtext("BACKUPS/BACKUP_IDS/ID") or -1)
        image = etree.fromstring(self.h.ok("one.image.info", image_id).encode())
        self.assertEqual((image.findtext("SOURCE"), image.findtext("SIZE")), ("", "0"))
        self.h.ok("one.vm.action", "poweroff", vid)
        self.settle()
        self.h.ok("one.vm.restore", vid, image_id, -1, -1)
        self.flush()
        self.h.ok("one.vm.recover", vid, 1)
        self.flush()
        self.assertEqual(self.states(vid), (S.POWEROFF, L.LCM_INIT))


class ScheduledBackupTests(BackupCase):
    def test_a_scheduled_backup_runs_within_max_backups(self) -> None:
        from oned.managers.schedaction.manager import ScheduledActionManager

        sam = ScheduledActionManager(self.h.core, self.h.clock, timer=10, max_backups=1)
        result_of(Deferred.fromCoroutine(sam.start()))
        self.addCleanup(lambda: result_of(Deferred.fromCoroutine(sam.stop())))
        vids = [self.running_vm() for _ in range(2)]
        now = int(self.h.clock.seconds())
        for vid in vids:
            self.h.ok(
                "one.vm.schedadd",
                vid,
                f'SCHED_ACTION=[ACTION="backup", TIME="{now}", ARGS="{self.bds}"]',
            )
        self.h.clock.advance(10)
        self.flush()
        self.assertEqual(
            [self.states(v) for v in vids], [(S.ACTIVE, L.BACKUP), (S.ACTIVE, L.RUNNING)]
        )
        self.backup_done(vids[0])
        self.h.clock.advance(10)
        self.flush()
        self.assertEqual(self.states(vids[1]), (S.ACTIVE, L.BACKUP))
        sent = self.drivers.pending("BACKUP")
        self.assertEqual([s.oid for s in sent], [vids[1]])


class DiskSelectionTests(SynchronousTestCase):
    def vm(self, config: str = "") -> VirtualMachine:
        vm = VirtualMachine(3, "v")
        vm.template = parse_str_or_xml(
            'DISK=[DISK_ID="0", IMAGE_ID="4", SIZE="100"]\n'
            'DISK=[DISK_ID="1", TYPE="fs", SIZE="20"]\n'
            'DISK=[DISK_ID="2", IMAGE_ID="5", TYPE="CDROM", SIZE="5"]\n'
            'DISK=[DISK_ID="3", IMAGE_ID="6", SIZE="7"]'
        )
        if config:
            vm.backups_xml = (
                f"<BACKUPS><BACKUP_CONFIG>{config}</BACKUP_CONFIG><BACKUP_IDS/></BACKUPS>"
            )
        return vm

    def test_image_disks_without_cdroms(self) -> None:
        vm = self.vm()
        backups = Backups.of(vm)
        self.assertEqual(backup_disk_ids(vm, backups), [0, 3])
        self.assertEqual(backup_size(vm, backups), 107)

    def test_volatile_and_disk_ids(self) -> None:
        vm = self.vm("<BACKUP_VOLATILE>YES</BACKUP_VOLATILE>")
        self.assertEqual(backup_disk_ids(vm, Backups.of(vm)), [0, 1, 3])
        vm = self.vm("<DISK_IDS>3</DISK_IDS>")
        self.assertEqual(backup_disk_ids(vm, Backups.of(vm)), [3])
        self.assertEqual(
            Backups.of(vm).to_xml(),
            "<BACKUPS><BACKUP_CONFIG><DISK_IDS><![CDATA[3]]></DISK_IDS></BACKUP_CONFIG>"
            "<BACKUP_IDS></BACKUP_IDS></BACKUPS>",
        )
