"""Backup jobs: one.backupjob.* with oned's texts and documents, and their runs by the
scheduled action manager on the fake clock (priority order, SEQUENTIAL/PARALLEL,
MAX_BACKUPS/MAX_BACKUPS_HOST, the VM lists, errors, retry, cancel, restart), through
the real request manager and LCM with scripted VM drivers."""

from __future__ import annotations

from pathlib import Path

from lxml import etree
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from oned.core import Core
from oned.managers.lifecycle.testing import FakeVmDrivers
from oned.managers.lifecycle.wiring import use_drivers
from oned.managers.schedaction.manager import ScheduledActionManager
from oned.objects.vm import LcmState as L
from oned.objects.vm import VmState as S
from oned.testing.rpc import OnedHarness, result_of
from tests.integration import xsd

VM_TEMPLATE = 'NAME="v"\nCPU="0.5"\nVCPU="1"\nMEMORY="256"'
BACKUP_DS = 'NAME="backups"\nTYPE="BACKUP_DS"\nDS_MAD="dummy"\nTM_MAD="-"'
SAMPLES = Path(__file__).resolve().parents[4] / "shared" / "samples"


def ids(doc: etree._Element, path: str) -> list[int]:
    return [int(i.text or -1) for i in doc.findall(f"{path}/ID")]


class JobCase(SynchronousTestCase):
    max_backups = 5
    max_host = 2

    def setUp(self) -> None:
        self.h = OnedHarness()
        self.addCleanup(self.h.close)
        self.h.ok("one.datastore.update", 0, 'TM_MAD="dummy"', 1)
        self.hid = self.h.ok("one.host.allocate", "host01", "dummy", "dummy", -1)
        self.bds = self.h.ok("one.datastore.allocate", BACKUP_DS, -1)
        self.start_managers(self.h.core)

    def start_managers(self, core: Core) -> None:
        self.drivers = FakeVmDrivers()
        lcm = use_drivers(core, self.drivers)
        result_of(Deferred.fromCoroutine(lcm.start()))
        self.addCleanup(lcm.log_writer.stop)
        self.sam = ScheduledActionManager(core, self.h.clock, 15, self.max_backups, self.max_host)
        result_of(Deferred.fromCoroutine(self.sam.start()))
        self.addCleanup(lambda: result_of(Deferred.fromCoroutine(self.sam.stop())))
        self.flush()

    def flush(self) -> None:
        for _ in range(10):
            self.h.core.eventually.flush()

    def settle(self, backups: bool = False) -> None:
        """Answer the drivers' pending actions (BACKUPs only when asked)."""
        for _ in range(20):
            self.flush()
            pending = [s for s in self.drivers.sent if backups or s.action != "BACKUP"]
            if not pending:
                break
            for s in pending:
                self.drivers.sent.remove(s)
                self.drivers.sent.insert(0, s)
                info = "-"
                if s.action == "DEPLOY":
                    root = etree.fromstring(s.document.encode())
                    info = f"{root.findtext('HOST')}:{root.findtext('VM/NAME')}:dummy"
                self.drivers.reply(s.action, s.oid, True, info)
        self.flush()

    def tick(self, seconds: float = 15) -> None:
        self.h.clock.advance(seconds)
        self.flush()

    def job(self, oid: int, valid: bool = True) -> etree._Element:
        body = self.h.ok("one.backupjob.info", oid)
        if valid and xsd.available():
            self.assertEqual(xsd.errors(body), [])
        return etree.fromstring(body.encode())

    def lists(self, oid: int) -> tuple[list[int], list[int], list[int], list[int]]:
        doc = self.job(oid)
        return (
            ids(doc, "OUTDATED_VMS"),
            ids(doc, "BACKING_UP_VMS"),
            ids(doc, "UPDATED_VMS"),
            ids(doc, "ERROR_VMS"),
        )

    def vm(self, vid: int) -> etree._Element:
        return etree.fromstring(self.h.ok("one.vm.info", vid).encode())

    def states(self, vid: int) -> tuple[int, int]:
        vm = self.vm(vid)
        return int(vm.findtext("STATE") or -1), int(vm.findtext("LCM_STATE") or -1)

    def poweroff_vm(self, hid: int | None = None) -> int:
        vid: int = self.h.ok("one.vm.allocate", VM_TEMPLATE)
        self.h.ok("one.vm.deploy", vid, self.hid if hid is None else hid)
        self.settle()
        self.h.ok("one.vm.action", "poweroff", vid)
        self.settle()
        self.assertEqual(self.states(vid)[0], S.POWEROFF)
        return vid

    def new_job(self, vms: list[int], extra: str = "", name: str = "job") -> int:
        text = f'NAME="{name}"\nBACKUP_VMS="{",".join(map(str, vms))}"\n'
        text += f'DATASTORE_ID="{self.bds}"\n{extra}'
        oid: int = self.h.ok("one.backupjob.allocate", text)
        return oid

    def user(self, name: str = "alice") -> str:
        self.h.ok("one.user.allocate", name, "pw", "core", [])
        return f"{name}:pw"


class BackupJobApiTests(JobCase):
    def test_documents_have_oneds_shape(self) -> None:
        oid = self.h.ok(
            "one.backupjob.allocate",
            'NAME="sample-backupjob"\nBACKUP_VMS="1"\nDATASTORE_ID="102"\nKEEP_LAST="3"\n'
            'MODE="FULL"',
        )
        sample = (SAMPLES / "one.backupjob.info.xml").read_text().strip()
        self.assertEqual(self.h.ok("one.backupjob.info", oid), sample)
        pool = (SAMPLES / "one.backupjobpool.info.xml").read_text().strip()
        sa = self.h.ok(
            "one.backupjob.schedadd",
            oid,
            'SCHED_ACTION=[TIME="1798703391", REPEAT="2", DAYS="1", END_TYPE="0"]',
        )
        got_pool = self.h.ok("one.backupjobpool.info", -2, -1, -1)
        self.assertEqual(
            got_pool, pool.replace("<ID>1</ID></SCHED_ACTIONS>", f"<ID>{sa}</ID></SCHED_ACTIONS>")
        )
        with_sa = (SAMPLES / "one.backupjob.info.with-sched-action.xml").read_text().strip()
        self.assertEqual(
            self.h.ok("one.backupjob.info", oid), with_sa.replace("<ID>1</ID>", f"<ID>{sa}</ID>")
        )
        if xsd.available():
            self.assertEqual(xsd.errors(got_pool), [])
        self.assertEqual(
            self.h.call("one.backupjob.info", 9999),
            [False, "[one.backupjob.info] Error getting backup job [9999].", 1024, 9999, -1],
        )

    def test_template_is_normalised_as_oned_does(self) -> None:
        oid = self.h.ok(
            "one.backupjob.allocate",
            'NAME="n"\nBACKUP_VMS="3,3,1,x,2"\nKEEP_LAST="-4"\nBACKUP_VOLATILE="yes"\n'
            'FS_FREEZE="agent"\nMODE="increment"\nEXECUTION="parallel"\nPRIORITY="20"\n'
            'DISK_IDS="2,0,2"',
        )
        # oned writes INCREMENT_MODE, which its own backupjob.xsd does not list
        doc = self.job(oid, valid=False)
        node = doc.find("TEMPLATE")
        assert node is not None
        tmpl = {c.tag: c.text for c in node}
        self.assertEqual(
            tmpl,
            {
                "BACKUP_VMS": "3,1,2",
                "BACKUP_VOLATILE": "YES",
                "DISK_IDS": "0,2",
                "EXECUTION": "PARALLEL",
                "FS_FREEZE": "AGENT",
                "INCREMENT_MODE": "CBT",
                "KEEP_LAST": "0",
                "MODE": "INCREMENT",
            },
        )
        self.assertEqual(doc.findtext("PRIORITY"), "20")
        reply = self.h.call("one.backupjob.allocate", 'NAME="m"\nDISK_IDS="1,a"')
        self.assertEqual(reply[1], "[one.backupjob.allocate] Invalid DISK_IDS value: 1,a")
        reply = self.h.call("one.backupjob.allocate", 'NAME="n"')
        self.assertEqual(
            reply[1], "[one.backupjob.allocate] NAME is already taken by BACKUP JOB 0."
        )
        self.assertEqual(reply[2], 0x2000)

    def test_priority_limits(self) -> None:
        alice = self.user()
        reply = self.h.call("one.backupjob.allocate", 'NAME="a"\nPRIORITY="100"')
        self.assertEqual(
            reply[:3], [False, "[one.backupjob.allocate] Wrong priority value", 0x2000]
        )
        reply = self.h.call("one.backupjob.allocate", 'NAME="a"\nPRIORITY="51"', session=alice)
        self.assertEqual(
            reply[1],
            "[one.backupjob.allocate] User [2] not authorized to perform action on backup job.",
        )
        oid = self.h.ok("one.backupjob.allocate", 'NAME="a"\nPRIORITY="50"', session=alice)
        self.assertEqual(self.h.ok("one.backupjob.priority", oid, 49, session=alice), oid)
        reply = self.h.call("one.backupjob.priority", oid, 50, session=alice)
        self.assertEqual(reply[2], 0x200)
        reply = self.h.call("one.backupjob.priority", oid, 100)
        self.assertEqual(reply[:3], [False, "[one.backupjob.priority] Wrong priority value", 0x800])
        self.h.ok("one.backupjob.priority", oid, 99)
        self.assertEqual(self.job(oid).findtext("PRIORITY"), "99")
        # update cannot change it
        self.h.ok("one.backupjob.update", oid, 'PRIORITY="1"\nBACKUP_VMS=""', 0)
        self.assertEqual(self.job(oid).findtext("PRIORITY"), "99")

    def test_one_vm_belongs_to_one_job(self) -> None:
        vid = self.poweroff_vm()
        first = self.new_job([vid], name="first")
        config = self.vm(vid).find("BACKUPS/BACKUP_CONFIG")
        assert config is not None
        self.assertEqual(config.findtext("BACKUP_JOB_ID"), str(first))
        reply = self.h.call("one.backupjob.allocate", f'NAME="second"\nBACKUP_VMS="{vid}"')
        self.assertEqual(
            reply[1],
            f"[one.backupjob.allocate] Unable to add VM {vid} to Backup Job 1. "
            f"It's already in Backup Job {first}",
        )
        second = self.new_job([], name="second")
        reply = self.h.call("one.backupjob.update", second, f'BACKUP_VMS="{vid}"', 1)
        self.assertEqual(
            reply[1],
            f"[one.backupjob.update] Cannot update template. Unable to add VM {vid} to Backup "
            f"Job {second}. It's already in Backup Job {first}",
        )
        reply = self.h.call("one.vm.backup", vid, self.bds, False)
        self.assertEqual(
            reply[1],
            "[one.vm.backup] Unable to start an individual backup for the Virtual Machine, "
            "it is part of Backup Job ID -1",
        )
        self.h.ok("one.backupjob.update", first, 'BACKUP_VMS=""', 1)
        self.assertIsNone(self.vm(vid).findtext("BACKUPS/BACKUP_CONFIG/BACKUP_JOB_ID"))
        self.h.ok("one.backupjob.update", second, f'BACKUP_VMS="{vid}"', 1)
        self.assertEqual(self.vm(vid).findtext("BACKUPS/BACKUP_CONFIG/BACKUP_JOB_ID"), str(second))
        self.h.ok("one.backupjob.delete", second)
        self.assertIsNone(self.vm(vid).findtext("BACKUPS/BACKUP_CONFIG/BACKUP_JOB_ID"))

    def test_sched_actions_of_a_job(self) -> None:
        oid = self.new_job([])
        reply = self.h.call("one.backupjob.schedadd", oid, 'SCHED_ACTION=[TIME="+10"]')
        self.assertEqual(
            reply[:3],
            [
                False,
                "[one.backupjob.schedadd] Unable to parse the time value or value is empty: +10",
                0x800,
            ],
        )
        reply = self.h.call("one.backupjob.schedadd", oid, 'A="1"')
        self.assertEqual(reply[1], "[one.backupjob.schedadd] No SCHED_ACTION attribute in template")
        sa = self.h.ok("one.backupjob.schedadd", oid, 'SCHED_ACTION=[TIME="2000000000", ARGS="x"]')
        found = self.job(oid).find("TEMPLATE/SCHED_ACTION")
        assert found is not None
        self.assertEqual(found.findtext("ACTION"), "backup")
        self.assertEqual(found.findtext("TYPE"), "BACKUPJOB")
        self.assertEqual(
            self.h.ok("one.backupjob.schedupdate", oid, sa, 'SCHED_ACTION=[TIME="2000000100"]'), sa
        )
        self.assertEqual(self.job(oid).findtext("TEMPLATE/SCHED_ACTION/TIME"), "2000000100")
        reply = self.h.call("one.backupjob.schedupdate", oid, 77, 'SCHED_ACTION=[TIME="1"]')
        self.assertEqual(
            reply[1], "[one.backupjob.schedupdate] SCHED_ACTION with id = 77 doesn't exist"
        )
        reply = self.h.call("one.backupjob.scheddelete", oid, 77)
        self.assertEqual(
            reply[:4],
            [False, "[one.backupjob.scheddelete] Error getting scheduled action [77].", 0x400, 77],
        )
        self.assertEqual(self.h.ok("one.backupjob.scheddelete", oid, sa), sa)
        self.assertEqual(ids(self.job(oid), "SCHED_ACTIONS"), [])
        self.assertIsNone(self.h.core.sched_actions.get(sa))
        # allocate with actions (their ARGS dropped); delete drops them
        oid = self.h.ok(
            "one.backupjob.allocate", 'NAME="s"\nSCHED_ACTION=[TIME="2000000000", ARGS="1"]'
        )
        (sa,) = ids(self.job(oid), "SCHED_ACTIONS")
        self.assertEqual(self.job(oid).findtext("TEMPLATE/SCHED_ACTION/ARGS"), "")
        self.h.ok("one.backupjob.delete", oid)
        self.assertIsNone(self.h.core.sched_actions.get(sa))
        reply = self.h.call("one.backupjob.allocate", 'NAME="t"\nSCHED_ACTION=[REPEAT="9"]')
        self.assertEqual(reply[0], False)
        self.assertEqual(reply[2], 0x2000)
        self.assertEqual(self.h.call("one.backupjobpool.info", -2, -1, -1)[1].count("<NAME>t<"), 0)

    def test_pool_filters(self) -> None:
        alice = self.user()
        mine = self.new_job([], name="mine")
        hers = self.h.ok("one.backupjob.allocate", 'NAME="hers"', session=alice)

        def listed(*args: int, session: str | None = None) -> list[int]:
            body = self.h.ok("one.backupjobpool.info", *args, session=session)
            return sorted(ids(etree.fromstring(body.encode()), "BACKUPJOB"))

        self.assertEqual(listed(-2, -1, -1), [mine, hers])
        self.assertEqual(listed(-2, -1, -1, session=alice), [hers])
        self.assertEqual(listed(-3, -1, -1), [mine])
        self.assertEqual(listed(-2, hers, hers), [hers])
        reply = self.h.call("one.backupjobpool.info", -5, -1, -1)
        wrong = "[one.backupjobpool.info] Incorrect filter_flag"
        self.assertEqual(reply[:3], [False, wrong, 0x1000])

    def test_shared_methods(self) -> None:
        oid = self.new_job([])
        self.h.ok("one.backupjob.rename", oid, "renamed")
        self.h.ok("one.backupjob.chmod", oid, -1, -1, -1, 1, -1, -1, -1, -1, -1)
        self.h.ok("one.backupjob.lock", oid, 1)
        self.assertEqual(self.job(oid).findtext("LOCK/LOCKED"), "1")
        self.h.ok("one.backupjob.unlock", oid)
        doc = self.job(oid)
        self.assertEqual(doc.findtext("NAME"), "renamed")
        self.assertEqual(doc.findtext("PERMISSIONS/GROUP_U"), "1")
        self.h.ok("one.backupjob.chown", oid, -1, 1)
        self.assertEqual(self.job(oid).findtext("GNAME"), "users")
        self.assertEqual(
            self.h.call("one.backupjob.backup", 42)[1],
            "[one.backupjob.backup] Error getting backup job [42].",
        )


class BackupJobRunTests(JobCase):
    max_backups = 2

    def test_parallel_job_within_max_backups(self) -> None:
        vms = [self.poweroff_vm() for _ in range(3)]
        oid = self.new_job(vms, 'EXECUTION="PARALLEL"\nKEEP_LAST="2"')
        self.h.ok("one.backupjob.backup", oid)
        self.assertEqual(self.lists(oid), (vms, [], [], []))
        reply = self.h.call("one.backupjob.backup", oid)
        self.assertEqual(
            reply[:3],
            [
                False,
                "[one.backupjob.backup] Unable to execute Backup Job, pending backups in progress",
                0x800,
            ],
        )
        self.tick()
        self.assertEqual(self.lists(oid), (vms[2:], vms[:2], [], []))
        self.assertEqual(self.states(vms[0]), (S.ACTIVE, L.BACKUP_POWEROFF))
        self.assertEqual(len(self.drivers.pending("BACKUP")), 2)
        config = self.vm(vms[0]).find("BACKUPS/BACKUP_CONFIG")
        assert config is not None
        self.assertEqual(config.findtext("KEEP_LAST"), "2")
        self.settle(backups=True)
        self.assertEqual(self.lists(oid), ([vms[2]], [], vms[:2], []))
        self.tick()
        self.settle(backups=True)
        self.assertEqual(self.lists(oid), ([], [], vms, []))
        for vid in vms:
            self.assertEqual(self.states(vid), (S.POWEROFF, L.LCM_INIT))
            image_id = int(self.vm(vid).findtext("BACKUPS/BACKUP_IDS/ID") or -1)
            image = etree.fromstring(self.h.ok("one.image.info", image_id).encode())
            self.assertEqual(image.findtext("DATASTORE_ID"), str(self.bds))
            self.assertEqual(image.findtext("TEMPLATE/BACKUP_JOB_ID"), str(oid))
        doc = self.job(oid)
        self.assertNotEqual(doc.findtext("LAST_BACKUP_TIME"), "0")
        # the run started at the backup call, the last VM finished two ticks later
        self.assertEqual(doc.findtext("LAST_BACKUP_DURATION"), "30")

    def test_sequential_job_one_at_a_time(self) -> None:
        vms = [self.poweroff_vm() for _ in range(2)]
        oid = self.new_job(vms)
        self.h.ok("one.backupjob.backup", oid)
        self.tick()
        self.assertEqual(self.lists(oid), (vms[1:], vms[:1], [], []))
        self.tick()
        self.assertEqual(self.lists(oid), (vms[1:], vms[:1], [], []))
        self.settle(backups=True)
        self.tick()
        self.assertEqual(self.lists(oid), ([], vms[1:], vms[:1], []))

    def test_jobs_run_in_priority_order(self) -> None:
        low_vms = [self.poweroff_vm()]
        high_vms = [self.poweroff_vm() for _ in range(3)]
        low = self.new_job(low_vms, 'EXECUTION="PARALLEL"\nPRIORITY="10"', name="low")
        high = self.new_job(high_vms, 'EXECUTION="PARALLEL"\nPRIORITY="90"', name="high")
        self.h.ok("one.backupjob.backup", low)
        self.h.ok("one.backupjob.backup", high)
        self.tick()
        self.assertEqual(self.lists(high)[1], high_vms[:2])
        self.assertEqual(self.lists(low), (low_vms, [], [], []))
        self.settle(backups=True)
        self.tick()  # high still has an outdated VM: low waits though a slot is free
        self.assertEqual(self.lists(high)[1], high_vms[2:])
        self.assertEqual(self.lists(low), (low_vms, [], [], []))
        self.settle(backups=True)
        self.tick()
        self.assertEqual(self.lists(low), ([], low_vms, [], []))

    def test_max_backups_host(self) -> None:
        other = self.h.ok("one.host.allocate", "host02", "dummy", "dummy", -1)
        self.sam.max_backups = 0
        self.sam.max_backups_host = 1
        vms = [self.poweroff_vm(), self.poweroff_vm(), self.poweroff_vm(other)]
        oid = self.new_job(vms, 'EXECUTION="PARALLEL"')
        self.h.ok("one.backupjob.backup", oid)
        self.tick()
        # the second VM of host01 stops the run (oned breaks, it does not skip)
        self.assertEqual(self.lists(oid)[:2], (vms[1:], vms[:1]))

    def test_wrong_state_and_no_datastore_go_to_error_vms(self) -> None:
        vid = self.h.ok("one.vm.allocate", VM_TEMPLATE)
        self.h.ok("one.vm.deploy", vid, self.hid)
        self.settle()
        self.h.ok("one.vm.action", "suspend", vid)
        self.settle()
        bad_ds = self.poweroff_vm()
        oid = self.new_job([vid], 'EXECUTION="PARALLEL"')
        nods: int = self.h.ok(
            "one.backupjob.allocate", f'NAME="nods"\nBACKUP_VMS="{bad_ds}"\nEXECUTION="PARALLEL"'
        )
        self.h.ok("one.backupjob.backup", oid)
        self.h.ok("one.backupjob.backup", nods)
        self.tick()
        self.assertEqual(self.lists(oid), ([], [], [], [vid]))
        error = self.job(oid).findtext("TEMPLATE/ERROR") or ""
        self.assertTrue(
            error.endswith(
                f" : [backup] Could not create a new backup for VM {vid}, wrong state SUSPENDED."
            ),
            error,
        )
        self.assertEqual(self.lists(nods), ([], [], [], [bad_ds]))
        error = self.job(nods).findtext("TEMPLATE/ERROR") or ""
        # oned's failure_message: resp_id -1 reads "Pool."
        self.assertTrue(error.endswith(" : [backup] Error getting datastore Pool."), error)
        # retry: back to OUTDATED, ERROR cleared; with a datastore it works
        self.h.ok("one.backupjob.update", nods, f'DATASTORE_ID="{self.bds}"', 1)
        self.h.ok("one.backupjob.retry", nods)
        self.assertEqual(self.lists(nods), ([bad_ds], [], [], []))
        self.assertIsNone(self.job(nods).findtext("TEMPLATE/ERROR"))
        self.tick()
        self.settle(backups=True)
        self.assertEqual(self.lists(nods), ([], [], [bad_ds], []))

    def test_failed_backup_and_cancel(self) -> None:
        vms = [self.poweroff_vm() for _ in range(2)]
        oid = self.new_job(vms, 'EXECUTION="PARALLEL"')
        self.h.ok("one.backupjob.backup", oid)
        self.tick()
        self.drivers.reply("BACKUP", vms[0], False, "BACKUP: disk full")
        self.flush()
        self.assertEqual(self.lists(oid), ([], [vms[1]], [], [vms[0]]))
        self.assertEqual(self.h.ok("one.backupjob.cancel", oid), oid)
        self.assertEqual(self.lists(oid), ([], [], [], [vms[0]]))
        self.assertIn("BACKUPCANCEL", self.drivers.actions())
        # a cancel with nothing running is accepted, as oned does
        self.assertEqual(self.h.ok("one.backupjob.cancel", oid), oid)

    def test_done_and_missing_vms_leave_the_job(self) -> None:
        vid = self.poweroff_vm()
        oid = self.new_job([vid, 999], 'EXECUTION="PARALLEL"')
        self.h.ok("one.backupjob.backup", oid)
        self.tick()
        self.assertEqual(self.job(oid).findtext("TEMPLATE/BACKUP_VMS"), str(vid))

    def test_the_jobs_scheduled_action_runs_it(self) -> None:
        vid = self.poweroff_vm()
        now = int(self.h.clock.seconds())
        oid = self.new_job([vid], f'SCHED_ACTION=[TIME="{now + 5}", REPEAT="3", DAYS="1"]')
        self.tick()
        self.settle(backups=True)
        self.assertEqual(self.lists(oid), ([], [], [vid], []))
        sa = self.job(oid).find("TEMPLATE/SCHED_ACTION")
        assert sa is not None
        self.assertEqual(sa.findtext("TIME"), str(now + 5 + 3600))
        self.assertEqual(sa.findtext("MESSAGE"), "")
        self.tick(3600)
        self.settle(backups=True)
        self.assertEqual(len(self.vm(vid).findall("BACKUPS/BACKUP_IDS/ID")), 2)

    def test_a_vm_of_a_job_gets_no_scheduled_backup_of_its_own(self) -> None:
        vid = self.poweroff_vm()
        oid = self.new_job([vid])
        now = int(self.h.clock.seconds())
        sa = self.h.ok(
            "one.vm.schedadd",
            vid,
            f'SCHED_ACTION=[ACTION="backup", TIME="{now + 5}", ARGS="{self.bds}"]',
        )
        self.tick()
        self.assertEqual(self.drivers.pending("BACKUP"), [])
        vm = self.vm(vid)
        self.assertTrue(
            (vm.findtext("USER_TEMPLATE/ERROR") or "").endswith(
                f": Unable to launch scheduled backup for VM {vid}, the VM is part of "
                f"Backup Job ID {oid}"
            )
        )
        node = vm.find(f"TEMPLATE/SCHED_ACTION[ID='{sa}']")
        assert node is not None
        self.assertEqual(node.findtext("DONE"), "-1")


class BackupJobRestartTests(JobCase):
    def restart(self) -> None:
        """A ``kill -9``: the memory is lost, a new core reads the database."""
        result_of(Deferred.fromCoroutine(self.sam.stop()))
        core = Core.create(self.h.config, self.h.clock, self.h.db)
        result_of(Deferred.fromCoroutine(core.load()))
        self.h.core = core
        self.h.manager.core = core
        self.start_managers(core)

    def test_backups_in_flight_finish_after_a_restart(self) -> None:
        vms = [self.poweroff_vm() for _ in range(3)]
        oid = self.new_job(vms, 'EXECUTION="PARALLEL"')
        self.h.ok("one.backupjob.backup", oid)
        self.tick()
        self.assertEqual(self.lists(oid)[1], vms[:2])
        self.restart()
        # the LCM sent the BACKUPs again; their replies complete the job
        self.assertEqual(len(self.drivers.pending("BACKUP")), 2)
        self.settle(backups=True)
        self.tick()
        self.settle(backups=True)
        self.assertEqual(self.lists(oid), ([], [], vms, []))

    def test_lost_job_update_is_settled_at_start(self) -> None:
        vms = [self.poweroff_vm() for _ in range(2)]
        oid = self.new_job(vms, 'EXECUTION="PARALLEL"')
        self.h.ok("one.backupjob.backup", oid)
        self.tick()
        # the VM replies commit, the job's own update is lost with the process
        core = self.h.core
        saved = core.backupjobs.get(oid)
        assert saved is not None
        self.drivers.reply("BACKUP", vms[0], True, "bk 1")
        self.drivers.reply("BACKUP", vms[1], False, "BACKUP: failed")
        self.flush()
        unit = core.unit()
        unit.save(core.backupjobs, saved)
        result_of(Deferred.fromCoroutine(unit.commit("rewind")))
        self.assertEqual(self.lists(oid)[1], vms)
        self.restart()
        outdated, backing, updated, errors = self.lists(oid)
        self.assertEqual((outdated, backing, updated, errors), ([], [], [vms[0]], [vms[1]]))

    def test_a_started_backup_lost_by_the_job_is_adopted(self) -> None:
        vid = self.poweroff_vm()
        oid = self.new_job([vid])
        self.h.ok("one.backupjob.backup", oid)
        before = self.h.core.backupjobs.get(oid)
        assert before is not None
        self.tick()
        self.assertEqual(self.lists(oid)[1], [vid])
        core = self.h.core
        unit = core.unit()
        unit.save(core.backupjobs, before)  # the run's update never reached the disk
        result_of(Deferred.fromCoroutine(unit.commit("rewind")))
        self.restart()
        self.tick()
        self.assertEqual(self.lists(oid), ([], [vid], [], []))
        self.assertEqual(len(self.drivers.pending("BACKUP")), 1)  # re-sent once, not twice
        self.settle(backups=True)
        self.assertEqual(self.lists(oid), ([], [], [vid], []))
