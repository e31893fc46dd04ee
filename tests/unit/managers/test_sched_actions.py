"""Scheduled actions: one.vm.schedadd/schedupdate/scheddelete with oned's checks and
texts, SCHED_ACTION vectors at allocate, and the ScheduledActionManager running due
actions on the fake clock (through the real request manager, scripted drivers)."""

from __future__ import annotations

import time

from lxml import etree
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from oned.core import Core
from oned.managers.lifecycle.testing import FakeVmDrivers
from oned.managers.lifecycle.wiring import use_drivers
from oned.managers.schedaction.manager import ScheduledActionManager, parse_args
from oned.objects.schedaction import ScheduledAction
from oned.objects.vm import LcmState as L
from oned.objects.vm import VmState as S
from oned.testing.rpc import OnedHarness, result_of

VM_TEMPLATE = 'NAME="v"\nCPU="0.5"\nVCPU="1"\nMEMORY="256"'
START = 1_700_000_000


class SchedCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = OnedHarness()
        self.addCleanup(self.h.close)
        self.h.ok("one.datastore.update", 0, 'TM_MAD="dummy"', 1)
        self.hid = self.h.ok("one.host.allocate", "host01", "dummy", "dummy", -1)
        self.drivers = FakeVmDrivers()
        self.start_managers(self.h.core)

    def start_managers(self, core: Core) -> None:
        lcm = use_drivers(core, self.drivers)
        result_of(Deferred.fromCoroutine(lcm.start()))
        self.addCleanup(lcm.log_writer.stop)
        self.sam = ScheduledActionManager(core, self.h.clock, timer=15)
        result_of(Deferred.fromCoroutine(self.sam.start()))
        self.addCleanup(lambda: result_of(Deferred.fromCoroutine(self.sam.stop())))
        core.eventually.flush()

    def settle(self) -> None:
        for _ in range(20):
            for _ in range(10):
                self.h.core.eventually.flush()
            if not self.drivers.answer_all():
                break
        self.h.core.eventually.flush()

    def vm(self, vid: int) -> etree._Element:
        return etree.fromstring(self.h.ok("one.vm.info", vid).encode())

    def states(self, vid: int) -> tuple[int, int]:
        vm = self.vm(vid)
        return int(vm.findtext("STATE") or -1), int(vm.findtext("LCM_STATE") or -1)

    def sched(self, vid: int, sa_id: int) -> etree._Element:
        found = self.vm(vid).find(f"TEMPLATE/SCHED_ACTION[ID='{sa_id}']")
        assert found is not None
        return found

    def running_vm(self) -> int:
        vid: int = self.h.ok("one.vm.allocate", VM_TEMPLATE)
        self.h.ok("one.vm.deploy", vid, self.hid)
        self.settle()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        return vid

    def tick(self, seconds: float = 15) -> None:
        self.h.clock.advance(seconds)
        self.settle()


class SchedApiTests(SchedCase):
    def test_schedadd_stores_an_action_shown_at_the_end_of_the_template(self) -> None:
        vid = self.h.ok("one.vm.allocate", VM_TEMPLATE, True)
        stime = int(self.vm(vid).findtext("STIME") or 0)
        sa = self.h.ok(
            "one.vm.schedadd",
            vid,
            'SCHED_ACTION=[ACTION="reboot", TIME="+86400", REPEAT="0", DAYS="1,3,5", '
            'END_TYPE="1", END_VALUE="5"]',
        )
        self.assertEqual(sa, 0)
        vm = self.vm(vid)
        self.assertEqual([i.text for i in vm.findall("SCHED_ACTIONS/ID")], ["0"])
        template = vm.find("TEMPLATE")
        assert template is not None
        self.assertEqual(template[-1].tag, "SCHED_ACTION")
        self.assertIn(
            f"<SCHED_ACTION><ID>0</ID><PARENT_ID>{vid}</PARENT_ID><TYPE>VM</TYPE>"
            f"<ACTION>reboot</ACTION><ARGS></ARGS><TIME>{stime + 86400}</TIME><REPEAT>0</REPEAT>"
            "<DAYS>1,3,5</DAYS><END_TYPE>1</END_TYPE><END_VALUE>5</END_VALUE><DONE>-1</DONE>"
            "<MESSAGE></MESSAGE><WARNING>0</WARNING></SCHED_ACTION></TEMPLATE>",
            self.h.ok("one.vm.info", vid),
        )
        # The stored body (infoextended) and the short one carry no SCHED_ACTION.
        ext = self.h.ok("one.vmpool.infoextended", -2, -1, -1, -1)
        self.assertNotIn("<SCHED_ACTION>", ext)
        self.assertIn("<SCHED_ACTIONS><ID>0</ID></SCHED_ACTIONS>", ext)
        self.assertNotIn("SCHED_ACTION", self.h.ok("one.vmpool.info", -2, -1, -1, -1))

    def test_refusals_have_oneds_texts(self) -> None:
        vid = self.h.ok("one.vm.allocate", VM_TEMPLATE, True)
        cases = [
            ('SCHED_ACTION=[ACTION="foo", TIME="1"]', "foo is not supported.", 0x800),
            ('SCHED_ACTION=[TIME="1"]', "No ACTION in template for Scheduled Action.", 0x800),
            (
                'SCHED_ACTION=[ACTION="hold", TIME="x"]',
                "Unable to parse the time value or value is empty: x",
                0x800,
            ),
            (
                'SCHED_ACTION=[ACTION="hold"]',
                "Unable to parse the time value or value is empty: ",
                0x800,
            ),
            ('SCHED_ACTION=[ACTION="hold", TIME="1", REPEAT="4"]', "Wrong REPEAT value: 4", 0x800),
            (
                'SCHED_ACTION=[ACTION="hold", TIME="1", REPEAT="0"]',
                "Repeat set, but DAYS are empty",
                0x800,
            ),
            (
                'SCHED_ACTION=[ACTION="hold", TIME="1", REPEAT="1", DAYS="0"]',
                "Days in a month have to be in [1,31] range",
                0x800,
            ),
            (
                'SCHED_ACTION=[ACTION="hold", TIME="1", REPEAT="3", DAYS="1,2"]',
                "Hours have to be in [0,168] range",
                0x800,
            ),
            (
                'SCHED_ACTION=[ACTION="hold", TIME="1", END_TYPE="3"]',
                "Wrong END_TYPE value: 3",
                0x800,
            ),
            (
                'SCHED_ACTION=[ACTION="hold", TIME="1", END_TYPE="1", END_VALUE="-2"]',
                "Error parsing END_VALUE, times has to be greater or equal to 0",
                0x800,
            ),
            ('NAME="x"', "No SCHED_ACTION attribute in template", 0x800),
            (
                'SCHED_ACTION=[ACTION="hold", TIME="99999999999999999999"]',
                "Unable to parse the time value or value is empty: 99999999999999999999",
                0x800,
            ),
            (
                'SCHED_ACTION=[ACTION="hold", TIME="1", REPEAT="0", DAYS="99999999999"]',
                "Scheduled Action repeat set, but DAYS are empty",
                0x800,
            ),
        ]
        for text, message, code in cases:
            reply = self.h.call("one.vm.schedadd", vid, text)
            self.assertEqual(reply[:3], [False, f"[one.vm.schedadd] {message}", code], text)
        reply = self.h.call("one.vm.schedadd", 99, 'SCHED_ACTION=[ACTION="hold", TIME="1"]')
        self.assertEqual(
            reply, [False, "[one.vm.schedadd] Error getting virtual machine [99].", 0x400, 99, -1]
        )
        # Nothing was stored, no id was used.
        self.assertEqual(
            self.h.ok("one.vm.schedadd", vid, 'SCHED_ACTION=[ACTION="hold",TIME="1"]'), 0
        )

    def test_schedupdate_keeps_what_the_vector_does_not_name(self) -> None:
        vid = self.h.ok("one.vm.allocate", VM_TEMPLATE, True)
        stime = int(self.vm(vid).findtext("STIME") or 0)
        sa = self.h.ok(
            "one.vm.schedadd",
            vid,
            'SCHED_ACTION=[ACTION="reboot", TIME="+60", REPEAT="3", DAYS="2", ARGS=""]',
        )
        self.assertEqual(self.h.ok("one.vm.schedupdate", vid, sa, 'SCHED_ACTION=[TIME="+120"]'), sa)
        node = self.sched(vid, sa)
        self.assertEqual(node.findtext("TIME"), str(stime + 120))
        self.assertEqual(node.findtext("ACTION"), "reboot")
        self.assertEqual(node.findtext("REPEAT"), "3")
        self.assertEqual(node.findtext("DAYS"), "2")
        reply = self.h.call("one.vm.schedupdate", vid, sa, 'SCHED_ACTION=[REPEAT="9"]')
        self.assertEqual(reply[:3], [False, "[one.vm.schedupdate] Wrong REPEAT value: 9", 0x2000])
        self.assertEqual(self.sched(vid, sa).findtext("REPEAT"), "3")
        reply = self.h.call("one.vm.schedupdate", vid, 42, 'SCHED_ACTION=[TIME="1"]')
        self.assertEqual(
            reply[:3],
            [False, "[one.vm.schedupdate] SCHED_ACTION with id = 42 doesn't exist", 0x2000],
        )
        reply = self.h.call("one.vm.schedupdate", vid, sa, 'A="1"')
        self.assertEqual(
            reply[:3], [False, "[one.vm.schedupdate] No SCHED_ACTION attribute in template", 0x2000]
        )

    def test_scheddelete(self) -> None:
        vid = self.h.ok("one.vm.allocate", VM_TEMPLATE, True)
        sa = self.h.ok("one.vm.schedadd", vid, 'SCHED_ACTION=[ACTION="hold", TIME="1"]')
        self.assertEqual(self.h.ok("one.vm.scheddelete", vid, sa), vid)
        self.assertIsNone(self.vm(vid).find("TEMPLATE/SCHED_ACTION"))
        self.assertIsNone(self.vm(vid).find("SCHED_ACTIONS/ID"))
        reply = self.h.call("one.vm.scheddelete", vid, sa)
        self.assertEqual(
            reply,
            [False, f"[one.vm.scheddelete] Error getting scheduled action [{sa}].", 0x400, sa, -1],
        )

    def test_allocate_turns_sched_action_vectors_into_actions(self) -> None:
        vid = self.h.ok(
            "one.vm.allocate",
            VM_TEMPLATE + '\nSCHED_ACTION=[ACTION="poweroff", TIME="+30"]'
            '\nSCHED_ACTION=[ACTION="terminate", TIME="1900000000"]',
            True,
        )
        vm = self.vm(vid)
        self.assertEqual([i.text for i in vm.findall("SCHED_ACTIONS/ID")], ["0", "1"])
        self.assertIsNone(vm.find("USER_TEMPLATE/SCHED_ACTION"))
        times = [n.findtext("TIME") for n in vm.findall("TEMPLATE/SCHED_ACTION")]
        self.assertEqual(times, [str(int(vm.findtext("STIME") or 0) + 30), "1900000000"])
        # Ids come from one sequence: the next action gets 2.
        self.assertEqual(
            self.h.ok("one.vm.schedadd", vid, 'SCHED_ACTION=[ACTION="hold",TIME="1"]'), 2
        )
        reply = self.h.call("one.vm.allocate", VM_TEMPLATE + '\nSCHED_ACTION=[ACTION="x",TIME="1"]')
        self.assertEqual(reply[:3], [False, "[one.vm.allocate] x is not supported.", 0x2000])

    def test_done_vm_refuses_and_drops_its_actions(self) -> None:
        vid = self.h.ok("one.vm.allocate", VM_TEMPLATE + '\nSCHED_ACTION=[ACTION="hold",TIME="1"]')
        self.h.ok("one.vm.action", "terminate", vid)
        self.settle()
        self.assertIsNone(self.h.core.sched_actions.get(0))
        self.assertIsNone(self.vm(vid).find("TEMPLATE/SCHED_ACTION"))
        reply = self.h.call("one.vm.schedadd", vid, 'SCHED_ACTION=[ACTION="hold",TIME="1"]')
        self.assertEqual(
            reply,
            [
                False,
                f"[one.vm.schedadd] Unable to create Scheduled Action for Virtual Machine {vid}, "
                "it's in DONE state",
                0x2000,
                vid,
                -1,
            ],
        )


class SchedManagerTests(SchedCase):
    def test_due_poweroff_runs_and_is_done(self) -> None:
        vid = self.running_vm()
        sa = self.h.ok(
            "one.vm.schedadd", vid, f'SCHED_ACTION=[ACTION="poweroff", TIME="{START + 20}"]'
        )
        self.tick()  # not due yet
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.tick()
        self.assertEqual(self.states(vid)[0], S.POWEROFF)
        node = self.sched(vid, sa)
        done = int(node.findtext("DONE") or -1)
        self.assertGreaterEqual(done, int(node.findtext("TIME") or 0))
        self.assertEqual(node.findtext("MESSAGE"), "")
        self.tick()  # done: not run again
        self.assertEqual(int(self.sched(vid, sa).findtext("DONE") or -1), done)

    def test_failure_is_recorded_and_retried(self) -> None:
        vid = self.h.ok("one.vm.allocate", VM_TEMPLATE, True)
        sa = self.h.ok("one.vm.schedadd", vid, f'SCHED_ACTION=[ACTION="poweroff", TIME="{START}"]')
        self.tick()
        node = self.sched(vid, sa)
        self.assertEqual(node.findtext("DONE"), "-1")
        message = node.findtext("MESSAGE") or ""
        self.assertEqual(
            message,
            f'{time.ctime(START + 15)} : [poweroff] Error performing action "poweroff": '
            "This action is not available for state HOLD",
        )
        self.h.ok("one.vm.action", "release", vid)
        self.tick()
        self.assertIn(time.ctime(START + 30), self.sched(vid, sa).findtext("MESSAGE") or "")

    def test_bad_args_are_reported(self) -> None:
        vid = self.running_vm()
        sa = self.h.ok(
            "one.vm.schedadd", vid, f'SCHED_ACTION=[ACTION="disk-snapshot-create", TIME="{START}"]'
        )
        self.tick()
        self.assertTrue(
            (self.sched(vid, sa).findtext("MESSAGE") or "").endswith(
                "Missing or malformed ARGS for: disk-snapshot-create. "
                "Format: disk-id, snapshot-name"
            )
        )

    def test_hourly_action_is_rearmed_until_its_end(self) -> None:
        vid = self.running_vm()
        now = int(self.h.clock.seconds())
        sa = self.h.ok(
            "one.vm.schedadd",
            vid,
            f'SCHED_ACTION=[ACTION="reboot", TIME="{now + 5}", REPEAT="3", DAYS="1", '
            'END_TYPE="1", END_VALUE="1"]',
        )
        self.tick()
        self.assertIn("REBOOT", [s.action for s in self.drivers.sent] or ["REBOOT"])
        node = self.sched(vid, sa)
        self.assertEqual(node.findtext("TIME"), str(now + 5 + 3600))
        self.assertEqual(node.findtext("END_VALUE"), "0")
        self.tick(3600)
        node = self.sched(vid, sa)
        self.assertEqual(node.findtext("TIME"), str(now + 5 + 3600))  # no more repetitions
        self.assertGreater(int(node.findtext("DONE") or 0), now + 3600)
        self.tick(3600)
        self.assertEqual(self.sched(vid, sa).findtext("DONE"), node.findtext("DONE"))

    def test_one_action_per_vm_per_tick(self) -> None:
        vid = self.running_vm()
        for _ in range(2):
            self.h.ok("one.vm.schedadd", vid, f'SCHED_ACTION=[ACTION="reboot", TIME="{START}"]')
        self.tick()
        done = [self.sched(vid, i).findtext("DONE") != "-1" for i in (0, 1)]
        self.assertEqual(done, [True, False])
        self.tick()
        self.assertNotEqual(self.sched(vid, 1).findtext("DONE"), "-1")

    def test_action_due_during_downtime_runs_once_after_a_restart(self) -> None:
        vid = self.running_vm()
        sa = self.h.ok(
            "one.vm.schedadd", vid, f'SCHED_ACTION=[ACTION="poweroff", TIME="{START + 100}"]'
        )
        result_of(Deferred.fromCoroutine(self.sam.stop()))
        self.h.clock.advance(1000)  # down while it fell due
        core = Core.create(self.h.config, self.h.clock, self.h.db)
        result_of(Deferred.fromCoroutine(core.load()))
        self.assertEqual(core.sched_actions.get(sa), self.h.core.sched_actions.get(sa))
        self.h.core = core
        self.h.manager.core = core
        self.drivers = FakeVmDrivers()
        self.start_managers(core)
        self.tick()
        self.assertEqual(self.states(vid)[0], S.POWEROFF)
        self.assertNotEqual(self.sched(vid, sa).findtext("DONE"), "-1")


class ScheduledActionUnitTests(SynchronousTestCase):
    def test_weekly_next_time(self) -> None:
        # Monday 2026-11-30 12:00 local; weekly on Wednesday (3) and Friday (5).
        now = int(time.mktime((2026, 11, 30, 12, 0, 0, 0, 0, -1)))
        sa = ScheduledAction(0, 0, action="reboot", time=now - 10, repeat=0, days="3,5")
        self.assertEqual(sa.next_action(now), now - 10 + 2 * 86400)
        self.assertEqual(sa.done, now)

    def test_monthly_after_last_day_wraps(self) -> None:
        now = int(time.mktime((2026, 11, 30, 12, 0, 0, 0, 0, -1)))
        sa = ScheduledAction(0, 0, action="reboot", time=now, repeat=1, days="1,15")
        self.assertEqual(sa.next_action(now), now + (30 - 30 + 1) * 86400)

    def test_parse_args(self) -> None:
        self.assertEqual(parse_args("1,snap", "is"), [1, "snap"])
        self.assertEqual(parse_args("100,1", "ib"), [100, True])
        self.assertIsNone(parse_args("x", "i"))
        self.assertIsNone(parse_args("", "s"))
        self.assertIsNone(parse_args("1,2", "ib") and None)
