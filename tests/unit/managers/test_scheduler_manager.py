"""The SchedulerManager and PlanManager on the fake clock: the window and retry timer,
the PLACE document, plans applied through the DispatchManager (MAX_ACTIONS_PER_HOST),
SCHED_MESSAGE, driver failures, and the placement plan kept in plan_pool."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from lxml import etree
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from oned.drivers.families import Family
from oned.drivers.message import DriverMessage
from oned.managers.lifecycle.testing import FakeVmDrivers
from oned.managers.lifecycle.wiring import use_drivers
from oned.managers.scheduler.manager import SchedulerManager
from oned.managers.scheduler.rank import place
from oned.objects.vm import LcmState as L
from oned.objects.vm import VmState as S
from oned.testing.rpc import OnedHarness, result_of

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "integration"))
import xsd  # noqa: E402

KNOBS = "SCHED_MAX_WND_TIME = 10\nSCHED_MAX_WND_LENGTH = 3\nSCHED_RETRY_TIME = 30\n"


def schema_errors(document: str) -> list[str]:
    """scheduler_driver_action.xsd errors, but for what oned itself sends against it: the
    hosts' CLUSTER_TEMPLATE (merge_cluster_to_host) and VM templates in oned's order."""
    schema = xsd._schema_for("SCHEDULER_DRIVER_ACTION")  # noqa: SLF001
    schema.validate(xsd._into_ns(etree.fromstring(document.encode())))  # noqa: SLF001
    known = ("CLUSTER_TEMPLATE", "}VCPU'")
    return [e.message for e in schema.error_log if not any(k in e.message for k in known)]


VM = 'NAME="v"\nCPU="1"\nVCPU="1"\nMEMORY="128"'


def run(coro: Any) -> Any:
    return result_of(Deferred.fromCoroutine(coro))


class SchedulerCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = OnedHarness(KNOBS)
        self.addCleanup(self.h.close)
        self.core = self.h.core
        self.h.ok("one.datastore.update", 0, 'TM_MAD="dummy"', 1)
        self.hosts = [self.h.ok("one.host.allocate", f"h{i}", "dummy", "dummy", -1) for i in (0, 1)]
        for hid in self.hosts:
            self.monitored(hid)
        self.system_ds_capacity()
        self.drivers = FakeVmDrivers()
        lcm = use_drivers(self.core, self.drivers)
        run(lcm.start())
        self.addCleanup(lcm.log_writer.stop)
        self.sm: SchedulerManager = self.core.scheduler_manager
        run(self.sm.start())
        self.addCleanup(lambda: run(self.sm.stop()))
        self.flush()

    def monitored(self, hid: int, cpu: int = 200) -> None:
        host = self.core.hosts.get(hid).copy()
        host.state = 2
        host.share.max_cpu = host.share.total_cpu = cpu
        host.share.max_mem = host.share.total_mem = 4 << 20
        unit = self.core.unit()
        unit.save(self.core.hosts, host)
        run(unit.commit("monitored"))

    def system_ds_capacity(self) -> None:
        ds = self.core.datastores.get(0).copy()
        ds.total_mb, ds.free_mb = 10000, 9000
        unit = self.core.unit()
        unit.save(self.core.datastores, ds)
        run(unit.commit("capacity"))

    def flush(self) -> None:
        for _ in range(10):
            self.core.eventually.flush()

    def places(self) -> list[Any]:
        return [s for s in self.drivers.sent if s.family is Family.SCHED and s.action == "PLACE"]

    def answer_place(self) -> str:
        """Run the rank placer on the pending PLACE and deliver its plan."""
        [sent] = self.places()
        plan, logs = place(sent.payload)
        self.drivers.reply("PLACE", -1, True, plan)
        for line in logs:
            m = re.match(r"ERROR: (\d+) (.*)", line)
            assert m is not None
            log = self.drivers.handlers[(Family.SCHED, "LOG")]
            log(DriverMessage("LOG", "E", int(m.group(1)), m.group(2)))
        self.flush()
        return plan

    def settle_vms(self) -> None:
        for _ in range(20):
            self.flush()
            others = [s for s in self.drivers.sent if s.family is not Family.SCHED]
            if not others:
                break
            for s in others:
                info = "-"
                if s.action == "DEPLOY":
                    root = etree.fromstring(s.document.encode())
                    info = f"{root.findtext('HOST')}:{root.findtext('VM/NAME')}:dummy"
                self.drivers.reply(s.action, s.oid, True, info)
        self.flush()

    def states(self, vid: int) -> tuple[int, int]:
        vm = self.core.vms.get(vid)
        return vm.state, vm.lcm_state


class WindowTests(SchedulerCase):
    def test_window_closes_on_length_and_time(self) -> None:
        self.h.ok("one.vm.allocate", VM)
        self.h.ok("one.vm.allocate", VM)
        self.flush()
        self.assertEqual(self.places(), [])  # 2 < SCHED_MAX_WND_LENGTH, 0 s < 10 s
        self.h.ok("one.vm.allocate", VM)
        self.flush()
        self.assertEqual(len(self.places()), 1)
        doc = etree.fromstring(self.places()[0].payload.encode())
        self.assertEqual(
            [e.tag for e in doc],
            [
                "VM_POOL",
                "HOST_POOL",
                "DATASTORE_POOL",
                "VNET_POOL",
                "VM_GROUP_POOL",
                "CLUSTER_POOL",
                "REQUIREMENTS",
            ],
        )
        self.assertEqual(doc.xpath("VM_POOL/VM/ID/text()"), ["0", "1", "2"])
        if xsd.available():
            self.assertEqual(schema_errors(self.places()[0].payload), [])
        self.assertEqual(doc.xpath("REQUIREMENTS/VM[ID=1]/HOSTS/ID/text()"), ["0", "1"])
        self.assertEqual(doc.xpath("REQUIREMENTS/VM[ID=1]/DATASTORES/ID/text()"), ["0"])
        # each host carries its cluster's template (merge_cluster_to_host)
        self.assertEqual(len(doc.xpath("HOST_POOL/HOST/CLUSTER_TEMPLATE/RESERVED_CPU")), 2)

    def test_window_time_and_on_hold_vms(self) -> None:
        self.h.ok("one.vm.allocate", VM, True)  # on hold: not a candidate
        self.h.ok("one.vm.allocate", VM)
        self.h.clock.advance(5)
        self.flush()
        self.assertEqual(self.places(), [])
        self.h.clock.advance(5)  # the 5 s timer sees the window 10 s old
        self.flush()
        [sent] = self.places()
        self.assertEqual(
            etree.fromstring(sent.payload.encode()).xpath("VM_POOL/VM/ID/text()"), ["1"]
        )

    def test_release_opens_the_window_and_retry_timer(self) -> None:
        vid = self.h.ok("one.vm.allocate", VM, True)
        self.h.ok("one.vm.action", "release", vid)
        self.h.clock.advance(10)
        self.flush()
        self.assertEqual(len(self.places()), 1)
        self.drivers.reply("PLACE", -1, False, "placer crashed")  # FAILURE: only logged
        self.flush()
        self.assertEqual(self.states(vid), (S.PENDING, 0))
        self.h.clock.advance(25)
        self.flush()
        self.assertEqual(self.places(), [])
        self.h.clock.advance(10)  # SCHED_RETRY_TIME since the last PLACE
        self.flush()
        self.assertEqual(len(self.places()), 1)

    def test_one_place_in_flight(self) -> None:
        for _ in range(3):
            self.h.ok("one.vm.allocate", VM)
        self.flush()
        for _ in range(3):
            self.h.ok("one.vm.allocate", VM)
        self.flush()
        self.h.clock.advance(60)
        self.flush()
        self.assertEqual(len(self.places()), 1)

    def test_lost_reply_after_a_driver_restart_is_retried(self) -> None:
        vid = self.h.ok("one.vm.allocate", VM)
        self.h.clock.advance(10)
        self.flush()
        self.assertEqual(len(self.places()), 1)
        self.drivers.sent.clear()  # the driver died with the PLACE
        self.sm._driver_restarted()
        self.h.clock.advance(60)
        self.flush()
        self.assertEqual(len(self.places()), 1)
        self.assertEqual(self.states(vid), (S.PENDING, 0))


class PlacementTests(SchedulerCase):
    def test_vms_reach_running_through_plans(self) -> None:
        vids = [self.h.ok("one.vm.allocate", VM) for _ in range(3)]
        self.flush()
        plan = self.answer_place()
        self.assertEqual(plan.count("<ACTION>"), 2)  # MAX_HOST = 1 per host and round
        self.assertEqual(self.sm.planner.plans.get(-1).state, 1)  # APPLYING
        self.settle_vms()
        # the plan ended: the scheduler places what is left at once
        self.assertEqual(self.sm.planner.plans.get(-1).state, 2)  # DONE
        self.answer_place()
        self.settle_vms()
        self.assertEqual([self.states(v) for v in vids], [(S.ACTIVE, L.RUNNING)] * 3)
        hids = [self.core.vms.get(v).current.hid for v in vids]
        self.assertEqual(sorted(hids), [0, 0, 1])
        record = self.core.vms.get(vids[0]).current
        self.assertEqual((record.plan_id, record.action_id), (-1, 0))
        info = etree.fromstring(self.h.ok("one.host.info", hids[0]).encode())
        self.assertGreaterEqual(int(info.findtext("HOST_SHARE/RUNNING_VMS")), 1)
        # the plan is in plan_pool
        rows = run(
            self.core.db.run(
                "q", lambda c: c.execute("SELECT cid, state FROM plan_pool").fetchall()
            )
        )
        self.assertIn((-1, 2), rows)

    def test_max_actions_per_host(self) -> None:
        vid = self.h.ok("one.vm.allocate", VM)
        other = self.h.ok("one.vm.allocate", VM)
        self.h.clock.advance(10)
        self.flush()
        [sent] = self.places()
        plan = (
            "<PLAN><ID>-1</ID>"
            f"<ACTION><VM_ID>{vid}</VM_ID><HOST_ID>0</HOST_ID><DS_ID>0</DS_ID>"
            "<OPERATION>deploy</OPERATION></ACTION>"
            f"<ACTION><VM_ID>{other}</VM_ID><HOST_ID>0</HOST_ID><DS_ID>0</DS_ID>"
            "<OPERATION>deploy</OPERATION></ACTION></PLAN>"
        )
        self.drivers.reply("PLACE", -1, True, plan)
        self.flush()
        self.assertEqual(self.states(vid)[0], S.ACTIVE)
        self.assertEqual(self.states(other), (S.PENDING, 0))  # waits for the first one
        self.settle_vms()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assertEqual(self.states(other), (S.ACTIVE, L.RUNNING))

    def test_refused_action_is_an_error_and_plan_ends(self) -> None:
        vid = self.h.ok("one.vm.allocate", 'NAME="big"\nCPU="8"\nMEMORY="128"')
        self.h.clock.advance(10)
        self.flush()
        plan = (
            f"<PLAN><ID>-1</ID><ACTION><VM_ID>{vid}</VM_ID><HOST_ID>0</HOST_ID><DS_ID>0</DS_ID>"
            "<OPERATION>deploy</OPERATION></ACTION></PLAN>"
        )
        self.drivers.reply("PLACE", -1, True, plan)
        self.flush()
        self.assertEqual(self.states(vid), (S.PENDING, 0))
        stored = self.sm.planner.plans.get(-1)
        self.assertEqual((stored.state, stored.actions[0].state), (3, 3))  # ERROR
        error = self.core.vms.get(vid).user_template.get("ERROR") or ""
        self.assertIn("does not fit in host [0]. Not enough CPU: 800/200", error)

    def test_bad_plans_change_nothing(self) -> None:
        vid = self.h.ok("one.vm.allocate", VM)
        self.h.clock.advance(10)
        self.flush()
        for bad in ("-", "<PLAN><ACTION/></PLAN>", "<PLAN><ID>-1</ID></PLAN>", "<nope/>"):
            self.drivers.reply("PLACE", -1, True, bad)  # logged, nothing stored
            self.flush()
            self.assertEqual(self.sm.planner.plans.get(-1).state, -1)
            run(self.sm.place())  # the VM still waits: PLACE again
        actions = "".join(
            f"<ACTION><VM_ID>{v}</VM_ID><OPERATION>{op}</OPERATION><HOST_ID>0</HOST_ID>"
            "<DS_ID>0</DS_ID></ACTION>"
            for v, op in ((vid, "bogus"), (99, "deploy"))
        )
        self.drivers.reply("PLACE", -1, True, f"<PLAN><ID>-1</ID>{actions}</PLAN>")
        self.flush()
        plan = self.sm.planner.plans.get(-1)
        self.assertEqual([a.state for a in plan.actions], [3, 3])
        self.assertEqual(plan.state, 3)
        self.assertEqual(self.states(vid), (S.PENDING, 0))
        self.assertIn(
            'Action "bogus" is not supported', self.core.vms.get(vid).user_template.get("ERROR")
        )

    def test_unmet_requirements_and_rank_errors_become_sched_message(self) -> None:
        stuck = self.h.ok("one.vm.allocate", VM + '\nSCHED_REQUIREMENTS="HOSTNAME = \\"nohost*\\""')
        bad = self.h.ok("one.vm.allocate", VM + '\nSCHED_REQUIREMENTS="CPU >"')
        huge = self.h.ok("one.vm.allocate", 'NAME="huge"\nCPU="50"\nMEMORY="128"')
        self.flush()
        message = self.core.vms.get(stuck).user_template.get("SCHED_MESSAGE") or ""
        self.assertRegex(message, r" : Cannot dispatch VM: No host meets SCHED_REQUIREMENTS$")
        message = self.core.vms.get(bad).user_template.get("SCHED_MESSAGE") or ""
        self.assertIn(
            "Cannot dispatch VM: Error in SCHED_REQUIREMENTS: '!(PIN_POLICY = PINNED) & "
            "( CPU > )', error: syntax error",
            message,
        )
        [sent] = self.places()  # only the VM that matched goes to the placer
        doc = etree.fromstring(sent.payload.encode())
        self.assertEqual(doc.xpath("VM_POOL/VM/ID/text()"), [str(huge)])
        self.answer_place()
        message = self.core.vms.get(huge).user_template.get("SCHED_MESSAGE") or ""
        self.assertRegex(message, r" : \[HOST\] Not enough CPU on hosts: 0,1$")

    def test_acl_only_usable_hosts(self) -> None:
        uid = self.h.ok("one.user.allocate", "alice", "pw", "")
        gid = self.h.ok("one.group.allocate", "team")  # not "users" (@1 HOST/* MANAGE)
        self.h.ok("one.user.chgrp", uid, gid)
        acls = etree.fromstring(self.h.ok("one.acl.info").encode())
        for rule in acls.findall("ACL"):  # its VDC lets the group manage every host
            if rule.findtext("STRING") == f"@{gid} HOST/* MANAGE #0":
                self.h.ok("one.acl.delrule", int(rule.findtext("ID") or -1))
        unit = self.core.unit()
        self.core.stage_rule(unit, f"@{gid} VM/* CREATE")
        run(unit.commit("rules"))
        unit = self.core.unit()
        self.core.stage_rule(unit, f"#{uid} HOST/#1 MANAGE")
        run(unit.commit("rule"))
        vid = self.h.ok("one.vm.allocate", VM, session="alice:pw")
        self.h.clock.advance(10)
        self.flush()
        [sent] = self.places()
        doc = etree.fromstring(sent.payload.encode())
        self.assertEqual(doc.xpath(f"REQUIREMENTS/VM[ID={vid}]/HOSTS/ID/text()"), ["1"])

    def test_no_enabled_host(self) -> None:
        for hid in self.hosts:
            self.h.ok("one.host.status", hid, 1)  # disabled
        vid = self.h.ok("one.vm.allocate", VM)
        self.h.clock.advance(10)
        self.flush()
        self.assertEqual(self.places(), [])
        message = self.core.vms.get(vid).user_template.get("SCHED_MESSAGE") or ""
        self.assertTrue(message.endswith("Cannot dispatch VM: No hosts enabled to run VMs"))

    def test_applying_plan_survives_a_restart(self) -> None:
        vid = self.h.ok("one.vm.allocate", VM)
        self.h.clock.advance(10)
        self.flush()
        self.answer_place()
        self.assertEqual(self.sm.planner.by_vm, {vid: (-1, 0)})
        fresh = SchedulerManager(self.core, self.drivers)
        run(fresh.planner.load())
        self.assertEqual(fresh.planner.by_vm, {vid: (-1, 0)})
        self.assertEqual(fresh.planner.plans.get(-1).state, 1)


class ReschedTests(SchedulerCase):
    def test_resched_vm_migrates_to_another_host(self) -> None:
        vid = self.h.ok("one.vm.allocate", VM, True)
        self.h.ok("one.vm.deploy", vid, 0)
        self.settle_vms()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.h.ok("one.vm.action", "resched", vid)
        self.h.clock.advance(10)
        self.flush()
        [sent] = self.places()
        doc = etree.fromstring(sent.payload.encode())
        # a rescheduled VM never goes back to its host and keeps its system datastore
        self.assertEqual(doc.xpath(f"REQUIREMENTS/VM[ID={vid}]/HOSTS/ID/text()"), ["1"])
        self.assertEqual(doc.xpath(f"REQUIREMENTS/VM[ID={vid}]/DATASTORES/ID/text()"), ["0"])
        plan = self.answer_place()
        self.assertIn("<OPERATION>migrate</OPERATION>", plan)
        self.settle_vms()
        vm = self.core.vms.get(vid)
        self.assertEqual((vm.state, vm.lcm_state, vm.current.hid), (S.ACTIVE, L.RUNNING, 1))
        self.assertEqual(vm.resched, 0)  # no longer a candidate
        self.assertEqual(self.sm.planner.plans.get(-1).state, 2)


NET = (
    'NAME="net"\nVN_MAD="dummy"\nBRIDGE="br0"\nAR=[TYPE="IP4", IP="10.0.0.10", SIZE="5"]\n'
    'NETWORK_ADDRESS="10.0.0.0"\nNETWORK_MASK="255.255.255.0"\n'
)


class AutoNicTests(SchedulerCase):
    def test_auto_nic_gets_the_planned_network_and_a_lease(self) -> None:
        from oned.managers.ipam.manager import IPAMManager
        from oned.managers.ipam.testing import FakeIPAMDrivers

        ipam = FakeIPAMDrivers()
        manager = IPAMManager(self.core, ipam, self.h.clock)
        self.core.ipam_manager = manager
        run(manager.start())
        net = self.h.ok("one.vn.allocate", NET, -1)
        while ipam.answer_all():
            self.h.clock.advance(0)
        self.h.clock.advance(0)
        vid = self.h.ok(
            "one.vm.allocate", VM + '\nNIC=[NETWORK_MODE="auto"]\nCONTEXT=[NETWORK="YES"]'
        )
        self.h.clock.advance(10)
        self.flush()
        [sent] = self.places()
        doc = etree.fromstring(sent.payload.encode())
        self.assertEqual(doc.xpath(f"REQUIREMENTS/VM[ID={vid}]/NIC/VNETS/ID/text()"), [str(net)])
        self.assertEqual(doc.xpath("VNET_POOL/VNET/ID/text()"), [str(net)])
        plan = self.answer_place()
        self.assertIn(f"<NETWORK_ID>{net}</NETWORK_ID>", plan)
        self.settle_vms()
        vm = self.core.vms.get(vid)
        self.assertEqual((vm.state, vm.lcm_state), (S.ACTIVE, L.RUNNING))
        [nic] = vm.template.vectors("NIC")
        self.assertEqual((nic.get("NETWORK_ID"), nic.get("IP")), (str(net), "10.0.0.10"))
        context = vm.template.get_vector("CONTEXT") or {}
        self.assertEqual(context.get("ETH0_IP"), "10.0.0.10")  # the auto NIC's context
        self.assertEqual(context.get("ETH0_MASK"), "255.255.255.0")
        groups = {r.get("SECURITY_GROUP_ID") for r in vm.template.vectors("SECURITY_GROUP_RULE")}
        self.assertEqual(groups, {"0"})
        info = etree.fromstring(self.h.ok("one.vn.info", net).encode())
        self.assertEqual(info.findtext("USED_LEASES"), "1")
        self.h.ok("one.vm.action", "terminate-hard", vid)
        self.settle_vms()
        info = etree.fromstring(self.h.ok("one.vn.info", net).encode())
        self.assertEqual(info.findtext("USED_LEASES"), "0")


class VmGroupTests(SchedulerCase):
    def test_group_members_and_rules_reach_the_placer(self) -> None:
        gid = self.h.ok("one.vmgroup.allocate", 'NAME="g"\nROLE=[NAME="db", POLICY="ANTI_AFFINED"]')
        member = VM + f'\nVMGROUP=[VMGROUP_ID="{gid}", ROLE="db"]'
        first = self.h.ok("one.vm.allocate", member, True)
        self.h.ok("one.vm.deploy", first, 0)
        self.settle_vms()
        packing = member + '\nSCHED_RANK="RUNNING_VMS"'
        second = self.h.ok("one.vm.allocate", packing)
        self.h.clock.advance(10)
        self.flush()
        [sent] = self.places()
        doc = etree.fromstring(sent.payload.encode())
        self.assertEqual(doc.xpath("VM_POOL/VM/ID/text()"), [str(first), str(second)])
        self.assertEqual(doc.xpath("VM_GROUP_POOL/VM_GROUP/ID/text()"), [str(gid)])
        self.assertEqual(doc.xpath("REQUIREMENTS/VM/ID/text()"), [str(second)])
        self.answer_place()
        self.settle_vms()
        # packing prefers host 0, the role's anti-affinity sends it to host 1
        self.assertEqual(self.core.vms.get(second).current.hid, 1)
