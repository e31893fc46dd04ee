"""``one.cluster.optimize/planexecute/plandelete`` and the PLAN in ``one.cluster.info``,
with a fake scheduler driver on the fake clock."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from lxml import etree
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from oned.drivers.families import Family
from oned.managers.lifecycle.testing import FakeVmDrivers
from oned.managers.lifecycle.wiring import use_drivers
from oned.objects.vm import LcmState as L
from oned.objects.vm import VmState as S
from oned.testing.rpc import OnedHarness, result_of

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "integration"))
import xsd  # noqa: E402

VM = 'NAME="v"\nCPU="1"\nVCPU="1"\nMEMORY="128"'


def run(coro: Any) -> Any:
    return result_of(Deferred.fromCoroutine(coro))


class ClusterPlanTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = OnedHarness()
        self.addCleanup(self.h.close)
        core = self.core = self.h.core
        self.h.ok("one.datastore.update", 0, 'TM_MAD="dummy"', 1)
        self.hid = self.h.ok("one.host.allocate", "h0", "dummy", "dummy", -1)
        host = core.hosts.get(self.hid).copy()
        host.state = 2
        host.share.max_cpu = host.share.total_cpu = 400
        host.share.max_mem = host.share.total_mem = 4 << 20
        ds = core.datastores.get(0).copy()
        ds.total_mb, ds.free_mb = 10000, 9000  # a monitored shared system datastore
        unit = core.unit()
        unit.save(core.hosts, host)
        unit.save(core.datastores, ds)
        run(unit.commit("monitored"))
        self.drivers = FakeVmDrivers()
        lcm = use_drivers(core, self.drivers)
        run(lcm.start())
        self.addCleanup(lcm.log_writer.stop)
        self.sm = core.scheduler_manager
        run(self.sm.start())
        self.addCleanup(lambda: run(self.sm.stop()))

    def flush(self) -> None:
        for _ in range(10):
            self.core.eventually.flush()

    def settle(self) -> None:
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

    def running_vm(self) -> int:
        vid = self.h.ok("one.vm.allocate", VM)
        self.h.ok("one.vm.deploy", vid, self.hid)
        self.settle()
        return vid

    def fail(self, method: str, *args: Any) -> tuple[str, int]:
        reply = self.h.call(method, *args)
        self.assertFalse(reply[0], reply)
        return reply[1], reply[2]

    def test_missing_cluster(self) -> None:
        for method in ("optimize", "planexecute", "plandelete"):
            self.assertEqual(
                self.fail(f"one.cluster.{method}", 42),
                (f"[one.cluster.{method}] Error getting cluster [42].", 1024),
            )

    def test_no_plan_yet(self) -> None:
        self.assertEqual(
            self.fail("one.cluster.planexecute", 0),
            ("[one.cluster.planexecute] Plan is not ready", 2048),
        )
        self.assertEqual(
            self.fail("one.cluster.plandelete", 0),
            ("[one.cluster.plandelete] Plan for cluster 0 does not exist", 2048),
        )
        self.assertNotIn("<PLAN>", self.h.ok("one.cluster.info", 0))

    def test_optimize_stores_a_ready_plan_then_execute_and_delete(self) -> None:
        vid = self.running_vm()
        self.assertEqual(self.h.ok("one.cluster.optimize", 0), 0)
        self.flush()
        [sent] = [s for s in self.drivers.sent if s.action == "OPTIMIZE"]
        self.assertEqual(sent.oid, 0)
        doc = etree.fromstring(sent.payload.encode())
        self.assertEqual(doc.xpath("VM_POOL/VM/ID/text()"), [str(vid)])
        self.assertEqual(doc.xpath("CLUSTER_POOL/CLUSTER/ID/text()"), ["0"])
        plan = (
            f"<PLAN><ID>0</ID><ACTION><VM_ID>{vid}</VM_ID><OPERATION>poweroff</OPERATION>"
            f"<HOST_ID>{self.hid}</HOST_ID><DS_ID>0</DS_ID></ACTION></PLAN>"
        )
        self.drivers.reply("OPTIMIZE", 0, True, plan)
        self.flush()
        info = self.h.ok("one.cluster.info", 0)
        self.assertIn(
            f"</TEMPLATE><PLAN><ID>0</ID><STATE>0</STATE><ACTION><ID>0</ID><VM_ID>{vid}</VM_ID>"
            f"<STATE>0</STATE><OPERATION>poweroff</OPERATION><HOST_ID>{self.hid}</HOST_ID>"
            "<DS_ID>0</DS_ID><TIMESTAMP>0</TIMESTAMP></ACTION></PLAN></CLUSTER>",
            info,
        )
        if xsd.available():
            self.assertEqual(xsd.errors(info), [])
        self.assertNotIn("<PLAN>", self.h.ok("one.clusterpool.info"))
        self.assertEqual(self.h.ok("one.cluster.planexecute", 0), 0)
        self.settle()
        vm = self.core.vms.get(vid)
        self.assertEqual(vm.state, S.POWEROFF)
        plan_doc = etree.fromstring(self.h.ok("one.cluster.info", 0).encode()).find("PLAN")
        self.assertEqual(plan_doc.findtext("STATE"), "2")  # DONE
        self.assertEqual(
            self.fail("one.cluster.planexecute", 0),
            ("[one.cluster.planexecute] Plan is already done", 2048),
        )
        self.assertEqual(self.h.ok("one.cluster.plandelete", 0), 0)
        self.assertNotIn("<PLAN>", self.h.ok("one.cluster.info", 0))

    def test_optimize_refused_while_applying_and_full_automation(self) -> None:
        vid = self.running_vm()
        self.h.ok("one.cluster.update", 0, 'ONE_DRS=[AUTOMATION="full"]', 1)
        self.h.ok("one.cluster.optimize", 0)
        self.flush()
        plan = (
            f"<PLAN><ID>0</ID><ACTION><VM_ID>{vid}</VM_ID><OPERATION>poweroff</OPERATION>"
            f"<HOST_ID>{self.hid}</HOST_ID><DS_ID>0</DS_ID></ACTION></PLAN>"
        )
        self.drivers.reply("OPTIMIZE", 0, True, plan)
        self.flush()  # full automation: applied at once, the VM is shutting down
        self.assertEqual(self.core.vms.get(vid).lcm_state, L.SHUTDOWN_POWEROFF)
        self.assertEqual(
            self.fail("one.cluster.optimize", 0),
            (
                "[one.cluster.optimize] Can't optimize cluster. A previous plan is currently "
                "being applied.",
                2048,
            ),
        )
        self.assertEqual(
            self.fail("one.cluster.planexecute", 0),
            ("[one.cluster.planexecute] Plan is already applying", 2048),
        )

    def test_optimize_without_vms_sends_nothing(self) -> None:
        self.assertEqual(self.h.ok("one.cluster.optimize", 0), 0)
        self.flush()
        self.assertEqual([s for s in self.drivers.sent if s.action == "OPTIMIZE"], [])

    def test_optimize_without_system_datastore_notes_it_in_the_cluster(self) -> None:
        self.running_vm()
        self.h.ok("one.datastore.enable", 0, False)
        self.h.ok("one.cluster.optimize", 0)
        self.flush()
        self.assertEqual([s for s in self.drivers.sent if s.action == "OPTIMIZE"], [])
        tmpl = etree.fromstring(self.h.ok("one.cluster.info", 0).encode()).find("TEMPLATE")
        self.assertRegex(
            tmpl.findtext("SCHED_MESSAGE") or "",
            r" : Optimize: No system datastores found in cluster$",
        )

    def test_one_drs_plan_migrates_to_balance(self) -> None:
        from oned.managers.scheduler.drs import optimize

        other = self.h.ok("one.host.allocate", "h1", "dummy", "dummy", -1)
        host = self.core.hosts.get(other).copy()
        host.state = 2
        host.share.max_cpu = host.share.total_cpu = 400
        host.share.max_mem = host.share.total_mem = 4 << 20
        unit = self.core.unit()
        unit.save(self.core.hosts, host)
        run(unit.commit("monitored"))
        vids = [self.running_vm() for _ in range(2)]  # both on host 0
        self.h.ok("one.cluster.optimize", 0)
        self.flush()
        [sent] = [s for s in self.drivers.sent if s.action == "OPTIMIZE"]
        plan = optimize(sent.payload, 0)
        self.drivers.reply("OPTIMIZE", 0, True, plan)
        self.flush()
        self.assertEqual(self.h.ok("one.cluster.planexecute", 0), 0)
        self.settle()
        hosts = sorted(self.core.vms.get(v).current.hid for v in vids)
        self.assertEqual(hosts, [self.hid, other])
        self.assertEqual([self.core.vms.get(v).lcm_state for v in vids], [L.RUNNING] * 2)

    def test_drs_interval_optimizes_automated_clusters(self) -> None:
        self.running_vm()
        self.h.clock.advance(700)
        self.flush()
        self.assertEqual([s for s in self.drivers.sent if s.action == "OPTIMIZE"], [])  # manual
        self.h.ok("one.cluster.update", 0, 'ONE_DRS=[AUTOMATION="partial"]', 1)
        self.h.clock.advance(700)  # DRS_INTERVAL (600 s) passed again
        self.flush()
        self.assertEqual([s.oid for s in self.drivers.sent if s.action == "OPTIMIZE"], [0])
