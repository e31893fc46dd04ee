"""``one.vm.migrate``: oned's checks and texts, and the cold, poweroff and live
migration paths through the DM/LCM/VMM/TM managers with scripted drivers (history
records, host capacity on both hosts, failures, recover and retry)."""

from __future__ import annotations

from pathlib import Path
from xmlrpc.client import Fault

from lxml import etree

from oned.managers.transfer.manager import ds_location
from oned.objects.history import VMAction
from oned.objects.vm import LcmState as L
from oned.objects.vm import VmState as S

from .test_lifecycle import VM_TEMPLATE, LifecycleCase


class MigrateCase(LifecycleCase):
    """Two dummy hosts in cluster 0 (host01, host02) on system datastore 0."""

    def setUp(self) -> None:
        super().setUp()
        self.hid2 = self.h.ok("one.host.allocate", "host02", "dummy", "dummy", -1)

    def migrate(self, vid: int, hid: int, *args: object) -> list[object]:
        return list(self.h.call("one.vm.migrate", vid, hid, *args))

    def share_of(self, hid: int) -> tuple[int, int, int, str]:
        host = etree.fromstring(self.h.ok("one.host.info", hid).encode())
        return (
            int(host.findtext("HOST_SHARE/CPU_USAGE") or 0),
            int(host.findtext("HOST_SHARE/MEM_USAGE") or 0),
            int(host.findtext("HOST_SHARE/RUNNING_VMS") or 0),
            ",".join(i.text or "" for i in host.findall("VMS/ID")),
        )

    def records(self, vid: int) -> list[etree._Element]:
        return self.vm(vid).findall("HISTORY_RECORDS/HISTORY")

    def doc(self, action: str) -> etree._Element:
        [sent] = self.drivers.pending(action)
        return etree.fromstring(sent.document.encode())

    def now(self) -> str:
        return str(int(self.h.clock.seconds()))

    def assert_on(self, vid: int, hid: int) -> None:
        """Capacity of ``vid`` held by ``hid`` only."""
        held = (50, 256 * 1024, 1, str(vid))
        other = self.hid2 if hid == self.hid else self.hid
        self.assertEqual(self.share_of(hid), held)
        self.assertEqual(self.share_of(other), (0, 0, 0, ""))


class MigrateChecksTests(MigrateCase):
    def test_refusals_with_oned_texts(self) -> None:
        """Missing host/VM/DS, same host, wrong state and capacity answer as oned."""
        vid = self.running_vm()
        self.assertEqual(
            self.migrate(vid, 99, False),
            [False, "[one.vm.migrate] Error getting host [99].", 0x0400, 99, -1],
        )
        self.assertEqual(
            self.migrate(77, self.hid2, False)[1],
            "[one.vm.migrate] Error getting virtual machine [77].",
        )
        self.assertEqual(
            self.migrate(vid, self.hid2, False, False, 55)[1],
            "[one.vm.migrate] Error getting datastore [55].",
        )
        reply = self.migrate(vid, self.hid, False)
        self.assertEqual(
            reply[1],
            f"[one.vm.migrate] VM is already running on host [{self.hid}] and datastore [0]",
        )
        self.assertEqual(reply[2], 0x0800)
        self.assertEqual(
            self.migrate(vid, self.hid2, False, False, 1)[1],
            "[one.vm.migrate] Trying to use datastore [1] to deploy the VM, but it is not of "
            "type system datastore.",
        )
        other = self.h.ok(
            "one.datastore.allocate", 'NAME="s2"\nTYPE="SYSTEM_DS"\nTM_MAD="dummy"', -1
        )
        self.assertEqual(
            self.migrate(vid, self.hid2, True, False, other)[1],
            "[one.vm.migrate] Cannot live migrate host and datastore at the same time.",
        )
        self.assertEqual(
            self.migrate(vid, self.hid2, False, True)[1],
            f"[one.vm.migrate] virtual machine [{vid}] does not fit in host [{self.hid2}]. "
            "Not enough CPU: 50/0",
        )
        pending = self.h.ok("one.vm.allocate", VM_TEMPLATE)
        self.assertEqual(
            self.migrate(pending, self.hid2, False)[1],
            "[one.vm.migrate] Migrate action is not available for state PENDING",
        )
        self.h.ok("one.host.status", self.hid2, 2)
        self.assertEqual(
            self.migrate(vid, self.hid2, False)[1],
            "[one.vm.migrate] Host is offline, cannot use it to deploy VM",
        )
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assertEqual(len(self.records(vid)), 1)

    def test_host_in_a_cluster_without_the_datastore(self) -> None:
        """The system datastore must be in the target host's cluster (oned's text)."""
        vid = self.running_vm()
        cid = self.h.ok("one.cluster.allocate", "c2")
        self.h.ok("one.cluster.addhost", cid, self.hid2)
        self.assertEqual(
            self.migrate(vid, self.hid2, False),
            [
                False,
                f"[one.vm.migrate] Cannot migrate VM [{vid}] to host [{self.hid2}] and system "
                f"datastore [0]. Host is in cluster [{cid}], and the datastore is in cluster [0]",
                0x0800,
                -1,
                -1,
            ],
        )

    def test_wrong_parameter_types_are_faults(self) -> None:
        """live is required and boolean (xmlrpc-c's -501 text for a wrong type)."""
        vid = self.running_vm()
        with self.assertRaises(Fault) as missing:
            self.h.call("one.vm.migrate", vid, self.hid2)
        self.assertEqual(missing.exception.faultCode, -501)
        with self.assertRaises(Fault) as caught:
            self.h.call("one.vm.migrate", vid, self.hid2, "yes")
        self.assertIn("boolean", str(caught.exception))

    def test_non_admin_needs_admin_rights(self) -> None:
        """migrate is a VM_ADMIN_OPERATIONS action and needs HOST:MANAGE."""
        uid = self.h.ok("one.user.allocate", "u", "p", "")
        self.h.ok("one.user.chgrp", uid, 1)
        vid = self.h.ok("one.vm.allocate", VM_TEMPLATE, False, session="u:p")
        self.h.ok("one.vm.deploy", vid, self.hid)
        self.settle()
        reply = self.h.call("one.vm.migrate", vid, self.hid2, False, session="u:p")
        self.assertEqual(reply[2], 0x0200)
        self.assertEqual(
            reply[1], f"[one.vm.migrate] User [{uid}] : Not authorized to perform ADMIN VM [{vid}]."
        )

    def test_change_of_system_datastore_needs_same_tm(self) -> None:
        """A new system DS with another TM_MAD is refused; the same family is moved
        (a volatile disk takes the new datastore)."""
        vid = self.h.ok("one.vm.allocate", VM_TEMPLATE + '\nDISK=[TYPE="fs",SIZE="16"]')
        self.h.ok("one.vm.deploy", vid, self.hid)
        self.settle()
        other = self.h.ok("one.datastore.allocate", 'NAME="s2"\nTYPE="SYSTEM_DS"\nTM_MAD="ssh"', -1)
        self.assertEqual(
            self.migrate(vid, self.hid2, False, False, other)[1],
            "[one.vm.migrate] Cannot migrate to a system datastore with a different driver",
        )
        same = self.h.ok(
            "one.datastore.allocate", 'NAME="s3"\nTYPE="SYSTEM_DS"\nTM_MAD="dummy"', -1
        )
        self.h.ok("one.vm.migrate", vid, self.hid, False, False, same)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.SAVE_MIGRATE))
        self.drivers.reply("SAVE", vid)
        self.flush()
        [transfer] = self.drivers.pending("TRANSFER")
        lines = Path(transfer.payload).read_text().splitlines()
        base = ds_location(self.h.core)
        self.assertEqual(
            lines,
            [
                f"MV dummy host01:{base}/0/{vid}/disk.0 host01:{base}/{same}/{vid}/disk.0 "
                f"{vid} {same}",
                f"MV dummy host01:{base}/0/{vid} host01:{base}/{same}/{vid} {vid} {same}",
            ],
        )
        self.assertEqual(self.vm(vid).findtext("TEMPLATE/DISK/DATASTORE_ID"), str(same))
        self.settle()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assertEqual(self.records(vid)[-1].findtext("DS_ID"), str(same))
        self.assertEqual(self.share_of(self.hid), (50, 256 * 1024, 1, str(vid)))


class ColdMigrateTests(MigrateCase):
    def test_cold_migrate_save_prolog_boot(self) -> None:
        """SAVE_MIGRATE (SAVE on the source) -> PROLOG_MIGRATE (MV) -> BOOT_MIGRATE
        (RESTORE on the target) -> RUNNING, capacity moving host01 -> host02."""
        vid = self.running_vm()
        self.h.clock.advance(100)
        self.assertEqual(self.h.ok("one.vm.migrate", vid, self.hid2, False), vid)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.SAVE_MIGRATE))
        self.assertEqual(self.share_of(self.hid)[2], 1)
        self.assertEqual(self.share_of(self.hid2), (50, 256 * 1024, 1, str(vid)))
        save = self.doc("SAVE")
        self.assertEqual(save.findtext("HOST"), "host01")
        self.assertTrue((save.findtext("CHECKPOINT_FILE") or "").endswith(f"/0/{vid}/checkpoint"))
        old, new = self.records(vid)
        self.assertEqual(old.findtext("ACTION"), str(VMAction.MIGRATE))
        self.assertEqual(new.findtext("ACTION"), str(VMAction.MIGRATE))
        self.assertEqual(old.findtext("ETIME"), "0")
        self.assertEqual((new.findtext("HOSTNAME"), new.findtext("SEQ")), ("host02", "1"))
        self.h.clock.advance(5)
        self.drivers.reply("SAVE", vid)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.PROLOG_MIGRATE))
        self.assert_on(vid, self.hid2)
        old, new = self.records(vid)
        self.assertEqual(old.findtext("ETIME"), self.now())
        self.assertEqual(old.findtext("RETIME"), self.now())
        self.assertEqual(new.findtext("PSTIME"), self.now())
        [transfer] = self.drivers.pending("TRANSFER")
        self.assertTrue(transfer.payload.endswith(f"vms/{vid}/transfer.1.migrate"))
        base = f"{ds_location(self.h.core)}/0/{vid}"
        self.assertEqual(
            Path(transfer.payload).read_text(),
            f"MV dummy host01:{base} host02:{base} {vid} 0\n",
        )
        self.drivers.reply("TRANSFER", vid)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.BOOT_MIGRATE))
        restore = self.doc("RESTORE")
        self.assertEqual(restore.findtext("HOST"), "host02")
        self.drivers.reply("RESTORE", vid)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        old, new = self.records(vid)
        self.assertEqual(new.findtext("ACTION"), "0")
        self.assertEqual(new.findtext("PETIME"), self.now())
        self.assertEqual(new.findtext("RSTIME"), self.now())
        self.assert_on(vid, self.hid2)

    def test_poweroff_migrate_uses_shutdown_then_deploy(self) -> None:
        """Mode 1: SHUTDOWN on the source, MV, then BOOT with DEPLOY on the target;
        mode 2 sends CANCEL."""
        vid = self.running_vm()
        self.h.ok("one.vm.migrate", vid, self.hid2, False, False, -1, 1)
        self.flush()
        self.assertEqual(self.doc("SHUTDOWN").findtext("HOST"), "host01")
        self.assertEqual(self.records(vid)[-1].findtext("ACTION"), str(VMAction.POWEROFF_MIGRATE))
        self.drivers.reply("SHUTDOWN", vid)
        self.flush()
        self.drivers.reply("TRANSFER", vid)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.BOOT))
        self.assertEqual(self.doc("DEPLOY").findtext("HOST"), "host02")
        self.settle()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assert_on(vid, self.hid2)
        self.h.ok("one.vm.migrate", vid, self.hid, False, False, -1, 2)
        self.flush()
        self.assertEqual(self.doc("CANCEL").findtext("HOST"), "host02")
        self.settle()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assert_on(vid, self.hid)
        self.assertEqual(len(self.records(vid)), 3)

    def test_save_failure_reverts_to_the_source(self) -> None:
        """A failed SAVE: RUNNING on the source in a record copied from the previous
        one, the target's capacity given back."""
        vid = self.running_vm()
        self.h.ok("one.vm.migrate", vid, self.hid2, False)
        self.flush()
        self.drivers.reply("SAVE", vid, success=False, info="disk full")
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assert_on(vid, self.hid)
        records = self.records(vid)
        self.assertEqual([r.findtext("HOSTNAME") for r in records], ["host01", "host02", "host01"])
        self.assertEqual(records[1].findtext("ETIME"), self.now())
        self.assertEqual(records[2].findtext("RSTIME"), self.now())
        self.assertIn("SAVE: disk full", self.vm(vid).findtext("USER_TEMPLATE/ERROR") or "")

    def test_off_vms_move_with_the_prolog_only(self) -> None:
        """POWEROFF and SUSPENDED VMs go through PROLOG_MIGRATE_POWEROFF/SUSPEND (capacity
        moved at once) and come back to their state on the target."""
        for action, state, lcm in (
            ("poweroff", S.POWEROFF, L.PROLOG_MIGRATE_POWEROFF),
            ("suspend", S.SUSPENDED, L.PROLOG_MIGRATE_SUSPEND),
        ):
            vid = self.running_vm()
            self.action(action, vid)
            self.settle()
            self.assertEqual(self.states(vid), (state, 0))
            self.h.ok("one.vm.migrate", vid, self.hid2, False)
            self.flush()
            self.assertEqual(self.states(vid), (S.ACTIVE, lcm))
            self.assert_on(vid, self.hid2)
            self.assertEqual(self.records(vid)[0].findtext("ETIME"), self.now())
            self.drivers.reply("TRANSFER", vid)
            self.flush()
            self.assertEqual(self.states(vid), (state, 0))
            self.assert_on(vid, self.hid2)
            self.action("terminate", vid)
            self.settle()
            self.assertEqual(self.states(vid), (S.DONE, 0))

    def test_unknown_vm_is_redeployed(self) -> None:
        """UNKNOWN: PROLOG_MIGRATE_UNKNOWN, then BOOT with DEPLOY on the target."""
        vid = self.running_vm()
        lcm = self.h.core.lifecycle_manager
        self.h.core.eventually(lcm.monitor_done, vid)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.UNKNOWN))
        self.h.ok("one.vm.migrate", vid, self.hid2, True)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.PROLOG_MIGRATE_UNKNOWN))
        self.drivers.reply("TRANSFER", vid)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.BOOT))
        self.settle()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assert_on(vid, self.hid2)


class LiveMigrateTests(MigrateCase):
    def test_live_migrate(self) -> None:
        """MIGRATE: VMM MIGRATE to the source with MIGR_HOST, the TM MIGRATE command;
        RUNNING on the target, the source released."""
        vid = self.running_vm()
        self.h.ok("one.vm.migrate", vid, self.hid2, True)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.MIGRATE))
        self.assertEqual(self.share_of(self.hid)[2], 1)
        self.assertEqual(self.share_of(self.hid2)[2], 1)
        doc = self.doc("MIGRATE")
        base = f"{ds_location(self.h.core)}/0/{vid}"
        self.assertEqual(doc.findtext("HOST"), "host01")
        self.assertEqual(doc.findtext("MIGR_HOST"), "host02")
        self.assertEqual(doc.findtext("TM_COMMAND"), f"MIGRATE dummy host01 host02 {base} {vid} 0")
        self.assertEqual(doc.findtext("DISK_TARGET_PATH"), base)
        old, new = self.records(vid)
        self.assertEqual(old.findtext("ACTION"), str(VMAction.LIVE_MIGRATE))
        self.assertEqual(new.findtext("ACTION"), "0")
        self.drivers.reply("MIGRATE", vid)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assert_on(vid, self.hid2)
        old, new = self.records(vid)
        self.assertEqual(old.findtext("ETIME"), self.now())
        self.assertEqual(new.findtext("RSTIME"), self.now())

    def test_live_migrate_failure_and_recover(self) -> None:
        """A failed MIGRATE puts the VM back on the source; recover --success of a
        MIGRATE completes it on the target."""
        vid = self.running_vm()
        self.h.ok("one.vm.migrate", vid, self.hid2, True)
        self.flush()
        self.drivers.reply("MIGRATE", vid, success=False)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assert_on(vid, self.hid)
        self.assertEqual(len(self.records(vid)), 3)
        self.h.ok("one.vm.migrate", vid, self.hid2, True)
        self.flush()
        self.h.ok("one.vm.recover", vid, 1)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assert_on(vid, self.hid2)

    def test_graphics_port_moves_to_the_new_cluster(self) -> None:
        """A cold migration to another cluster gets a port there (PREVIOUS_PORT kept
        until the source is released)."""
        cid = self.h.ok("one.cluster.allocate", "c2")
        self.h.ok("one.cluster.addhost", cid, self.hid2)
        self.h.ok("one.cluster.adddatastore", cid, 0)
        vid = self.h.ok("one.vm.allocate", VM_TEMPLATE + '\nGRAPHICS=[TYPE="VNC"]')
        self.h.ok("one.vm.deploy", vid, self.hid)
        self.settle()
        self.assertEqual(self.vm(vid).findtext("TEMPLATE/GRAPHICS/PORT"), str(5900 + vid))
        self.h.ok("one.vm.migrate", vid, self.hid2, False)
        self.flush()
        graphics = self.vm(vid).find("TEMPLATE/GRAPHICS")
        assert graphics is not None
        self.assertEqual(graphics.findtext("PREVIOUS_PORT"), str(5900 + vid))
        self.settle()
        graphics = self.vm(vid).find("TEMPLATE/GRAPHICS")
        assert graphics is not None
        self.assertIsNone(graphics.find("PREVIOUS_PORT"))
        self.assertEqual(self.records(vid)[-1].findtext("CID"), str(cid))


class MigrateRecoveryTests(MigrateCase):
    def test_prolog_failure_retry_and_rollback(self) -> None:
        """PROLOG_MIGRATE_FAILURE: retry re-sends the MV; recover --failure takes the
        VM back to the source host and boots it there."""
        vid = self.running_vm()
        self.h.ok("one.vm.migrate", vid, self.hid2, False)
        self.flush()
        self.drivers.reply("SAVE", vid)
        self.flush()
        self.drivers.reply("TRANSFER", vid, success=False)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.PROLOG_MIGRATE_FAILURE))
        self.h.ok("one.vm.recover", vid, 2)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.PROLOG_MIGRATE))
        self.drivers.reply("TRANSFER", vid, success=False)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.PROLOG_MIGRATE_FAILURE))
        self.h.ok("one.vm.recover", vid, 0)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.BOOT_MIGRATE))
        self.assertEqual(self.doc("RESTORE").findtext("HOST"), "host01")
        self.assert_on(vid, self.hid)
        self.settle()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assertEqual(
            [r.findtext("HOSTNAME") for r in self.records(vid)], ["host01", "host02", "host01"]
        )

    def test_delete_in_the_middle_releases_both_hosts(self) -> None:
        """recover --delete of a VM in SAVE_MIGRATE frees the capacity of both hosts."""
        vid = self.running_vm()
        self.h.ok("one.vm.migrate", vid, self.hid2, False)
        self.flush()
        self.h.ok("one.vm.recover", vid, 3)
        self.flush()
        self.assertEqual(self.states(vid), (S.DONE, 0))
        self.assertEqual(self.share_of(self.hid), (0, 0, 0, ""))
        self.assertEqual(self.share_of(self.hid2), (0, 0, 0, ""))
        source, target = self.records(vid)
        self.assertEqual((source.findtext("ETIME"), source.findtext("RETIME")), (self.now(),) * 2)
        self.assertEqual(target.findtext("ETIME"), self.now())

    def test_scheduler_entry_point(self) -> None:
        """DispatchManager.migrate takes a placement as deploy does (the scheduler's
        call for resched VMs)."""
        from twisted.internet.defer import Deferred

        from oned.managers.dispatch.manager import Requester
        from oned.testing.rpc import result_of

        vid = self.running_vm()
        self.action("resched", vid)
        self.assertEqual(self.vm(vid).findtext("RESCHED"), "1")
        dm = self.h.core.dispatch_manager
        placement = (self.hid2, "host02", 0, "dummy", "dummy", -1)
        result_of(
            Deferred.fromCoroutine(dm.migrate(vid, placement, True, False, 0, Requester(0, 0)))
        )
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.MIGRATE))
        self.assertEqual(self.vm(vid).findtext("RESCHED"), "0")
        self.settle()
        self.assert_on(vid, self.hid2)


class MigrateRestartTests(MigrateCase):
    def restart(self) -> None:
        """A new Core on the same database, as after a kill -9."""
        from twisted.internet.defer import Deferred

        from oned.core import Core
        from oned.managers.lifecycle.testing import FakeVmDrivers
        from oned.testing.rpc import result_of

        core = Core.create(self.h.config, self.h.clock, self.h.db)
        result_of(Deferred.fromCoroutine(core.load()))
        self.h.core = core
        self.h.manager.core = core
        self.drivers = FakeVmDrivers()
        self.start_managers(core, self.drivers)
        self.flush()

    def test_restart_resends_each_migration_step(self) -> None:
        """SAVE (to the source), MIGRATE and the PROLOG_MIGRATE_POWEROFF transfer are
        sent again after a restart, and each migration completes on the target."""
        saving, live, off = self.running_vm(), self.running_vm(), self.running_vm()
        self.action("poweroff", off)
        self.settle()
        self.h.ok("one.vm.migrate", saving, self.hid2, False, False, -1, 0)
        self.h.ok("one.vm.migrate", live, self.hid2, True)
        self.h.ok("one.vm.migrate", off, self.hid2, False)
        self.flush()
        self.restart()
        sent = {(s.action, s.oid) for s in self.drivers.sent}
        self.assertEqual(sent, {("SAVE", saving), ("MIGRATE", live), ("TRANSFER", off)})
        self.assertEqual(self.doc("SAVE").findtext("HOST"), "host01")
        self.assertEqual(self.doc("MIGRATE").findtext("MIGR_HOST"), "host02")
        self.settle()
        self.assertEqual(self.states(saving), (S.ACTIVE, L.RUNNING))
        self.assertEqual(self.states(live), (S.ACTIVE, L.RUNNING))
        self.assertEqual(self.states(off), (S.POWEROFF, 0))
        self.assertEqual(self.share_of(self.hid), (0, 0, 0, ""))
        self.assertEqual(self.share_of(self.hid2)[2], 3)

    def test_poweroff_prolog_failure_rolls_back(self) -> None:
        """recover --failure of PROLOG_MIGRATE_POWEROFF_FAILURE: POWEROFF again on the
        source host, its capacity moved back."""
        vid = self.running_vm()
        self.action("poweroff", vid)
        self.settle()
        self.h.ok("one.vm.migrate", vid, self.hid2, False)
        self.flush()
        self.drivers.reply("TRANSFER", vid, success=False)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.PROLOG_MIGRATE_POWEROFF_FAILURE))
        self.assert_on(vid, self.hid2)
        self.h.ok("one.vm.recover", vid, 0)
        self.flush()
        self.assertEqual(self.states(vid), (S.POWEROFF, 0))
        self.assert_on(vid, self.hid)
        self.assertEqual(
            [r.findtext("HOSTNAME") for r in self.records(vid)], ["host01", "host02", "host01"]
        )
