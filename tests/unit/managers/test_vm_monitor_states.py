"""VM states driven by host monitoring: STATE_VM reports (RUNNING, POWEROFF,
SUSPENDED, FAILURE, missing VMs with SYNC_STATE) and a host going to ERROR, through
the information manager's probe intake and the LifeCycleManager's monitor callbacks."""

from __future__ import annotations

from lxml import etree
from twisted.internet.defer import Deferred

from oned.managers.information.manager import FLUSH_DELAY, InformationManager
from oned.managers.lifecycle.monitor_states import vm_state
from oned.objects.history import VMAction
from oned.objects.vm import LcmState as L
from oned.objects.vm import VmState as S
from oned.testing.rpc import result_of

from .test_information import FakeDrivers, datagram, messages
from .test_lifecycle import VM_TEMPLATE, LifecycleCase


class MonitorStatesCase(LifecycleCase):
    """Host 0 monitored by an InformationManager on a fake IM driver."""

    def setUp(self) -> None:
        super().setUp()
        self.im_drivers = FakeDrivers()
        self.im = InformationManager(self.h.core, self.im_drivers, self.h.clock)
        self.h.core.information_manager = self.im
        result_of(Deferred.fromCoroutine(self.im.start()))
        self.addCleanup(lambda: result_of(Deferred.fromCoroutine(self.im.stop())))
        self.im_drivers.reply("START_MONITOR", "SUCCESS", self.hid, messages("host01"))
        self.h.clock.advance(FLUSH_DELAY)
        self.ts = 1000

    def report(self, text: str) -> None:
        """A STATE_VM datagram from host 0's probes, as monitord forwards it."""
        self.ts += 1
        self.im.reports.datagram(datagram("STATE_VM", self.hid, self.ts, text))
        self.flush()

    def apply(self, text: str) -> int:
        count: int = result_of(Deferred.fromCoroutine(vm_state(self.h.core, self.hid, text)))
        self.flush()
        return count

    def later(self) -> None:
        """Past the 30 s window in which reports are ignored."""
        self.h.clock.advance(31)

    def last_action(self, vid: int) -> str | None:
        return self.vm(vid).findall("HISTORY_RECORDS/HISTORY")[-1].findtext("ACTION")


class MonitorStatesTests(MonitorStatesCase):
    def test_poweroff_vm_found_running_again(self) -> None:
        """RUNNING for a POWEROFF VM: ACTIVE/RUNNING in a new record, running quota back."""
        vid = self.running_vm()
        self.action("poweroff", vid)
        self.settle()
        self.assertEqual(self.states(vid), (S.POWEROFF, 0))
        self.report(f'VM=[ID="{vid}",DEPLOY_ID="one-{vid}",STATE="RUNNING"]')
        self.assertEqual(self.states(vid), (S.POWEROFF, 0), "inside the 30 s window")
        self.later()
        self.report(f'VM=[ID="{vid}",DEPLOY_ID="one-{vid}",STATE="RUNNING"]')
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        vm = self.vm(vid)
        self.assertEqual(vm.findtext("DEPLOY_ID"), f"one-{vid}")
        records = vm.findall("HISTORY_RECORDS/HISTORY")
        self.assertEqual(len(records), 2)
        self.assertEqual(records[0].findtext("ETIME"), records[1].findtext("STIME"))
        self.assertEqual(self.share()[2], 1)

    def test_running_vm_reported_off_paused_or_failed(self) -> None:
        """POWEROFF -> POWEROFF (action monitor), SUSPENDED -> SUSPENDED, FAILURE ->
        UNKNOWN, and RUNNING brings UNKNOWN back."""
        off, paused, failed = self.running_vm(), self.running_vm(), self.running_vm()
        self.later()
        self.report(
            f'VM=[ID="{off}",DEPLOY_ID="a",STATE="POWEROFF"]\n'
            f'VM=[ID="{paused}",DEPLOY_ID="b",STATE="SUSPENDED"]\n'
            f'VM=[ID="{failed}",DEPLOY_ID="c",STATE="FAILURE"]'
        )
        self.assertEqual(self.states(off), (S.POWEROFF, 0))
        self.assertEqual(self.last_action(off), str(VMAction.MONITOR))
        self.assertEqual(self.states(paused), (S.SUSPENDED, 0))
        self.assertEqual(self.states(failed), (S.ACTIVE, L.UNKNOWN))
        self.assertEqual(self.share()[2], 3, "POWEROFF and SUSPENDED keep the host")
        self.report(f'VM=[ID="{failed}",DEPLOY_ID="c",STATE="RUNNING"]')
        self.assertEqual(self.states(failed), (S.ACTIVE, L.RUNNING))

    def test_missing_vms_with_sync_state(self) -> None:
        """SYNC_STATE: a VM the host holds but did not report gets MISSING_STATE."""
        gone, lost, seen = self.running_vm(), self.running_vm(), self.running_vm()
        self.later()
        self.assertEqual(
            self.apply(
                f'VM=[ID="{seen}",DEPLOY_ID="x",STATE="RUNNING"]\n'
                f'VM=[ID="{lost}",DEPLOY_ID="y",STATE="RUNNING"]\n'
                'SYNC_STATE="YES"\nMISSING_STATE="POWEROFF"'
            ),
            1,
        )
        self.assertEqual(self.states(gone), (S.POWEROFF, 0))
        self.assertEqual(self.states(seen), (S.ACTIVE, L.RUNNING))
        self.apply(f'VM=[ID="{seen}",STATE="RUNNING"]\nSYNC_STATE="YES"\nMISSING_STATE="UNKNOWN"')
        self.assertEqual(self.states(lost), (S.ACTIVE, L.UNKNOWN))
        self.assertEqual(self.states(gone), (S.POWEROFF, 0))
        self.apply(f'VM=[ID="{seen}",STATE="RUNNING"]')
        self.assertEqual(self.states(lost), (S.ACTIVE, L.UNKNOWN), "no SYNC_STATE: no change")

    def test_boot_completed_and_shutdown_finished_by_reports(self) -> None:
        """RUNNING completes a BOOT (deploy id from the report); POWEROFF finishes a
        shutdown in progress."""
        vid = self.h.ok("one.vm.allocate", VM_TEMPLATE)
        self.h.ok("one.vm.deploy", vid, self.hid)
        self.flush()
        self.drivers.reply("TRANSFER", vid)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.BOOT))
        self.later()
        self.report(f'VM=[ID="{vid}",DEPLOY_ID="dom-{vid}",STATE="RUNNING"]')
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assertEqual(self.vm(vid).findtext("DEPLOY_ID"), f"dom-{vid}")
        self.action("poweroff", vid)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.SHUTDOWN_POWEROFF))
        self.later()
        self.report(f'VM=[ID="{vid}",DEPLOY_ID="dom-{vid}",STATE="POWEROFF"]')
        self.assertEqual(self.states(vid), (S.POWEROFF, 0))

    def test_reports_for_other_hosts_and_unknown_ids_are_ignored(self) -> None:
        """A VM whose current record is on another host, or no VM at all: no change."""
        vid = self.running_vm()
        self.later()
        other = self.h.ok("one.host.allocate", "host02", "dummy", "dummy", -1)
        result_of(
            Deferred.fromCoroutine(
                vm_state(self.h.core, other, f'VM=[ID="{vid}",STATE="POWEROFF"]\nVM=[ID="99"]')
            )
        )
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assertEqual(self.apply("VM=[ID=garbage"), 0)

    def test_host_error_makes_running_vms_unknown(self) -> None:
        """A host going to ERROR sends monitor_done: RUNNING VMs are UNKNOWN, others
        stay; when seen again they are RUNNING."""
        running, off = self.running_vm(), self.running_vm()
        self.action("poweroff", off)
        self.settle()
        self.im.reports.datagram(datagram("BEACON_HOST", self.hid, 2000, "down", "FAILURE"))
        self.h.clock.advance(FLUSH_DELAY)
        self.flush()
        host = etree.fromstring(self.h.ok("one.host.info", self.hid).encode())
        self.assertEqual(host.findtext("STATE"), "3")
        self.assertEqual(self.states(running), (S.ACTIVE, L.UNKNOWN))
        self.assertEqual(self.states(off), (S.POWEROFF, 0))
        self.later()
        self.report(f'VM=[ID="{running}",DEPLOY_ID="d",STATE="RUNNING"]')
        self.assertEqual(self.states(running), (S.ACTIVE, L.RUNNING))
