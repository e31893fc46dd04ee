"""The VM lifecycle through the real request manager and the DM/LCM/VMM/TM managers,
with scripted VMM/TM drivers (in-memory database, fake clock)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from lxml import etree
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from oned.core import Core
from oned.managers.lifecycle.testing import FakeVmDrivers
from oned.managers.lifecycle.wiring import use_drivers
from oned.objects.vm import LcmState as L
from oned.objects.vm import VmState as S
from oned.testing.rpc import OnedHarness, result_of

VM_TEMPLATE = 'NAME="v"\nCPU="0.5"\nVCPU="1"\nMEMORY="256"'


class LifecycleCase(SynchronousTestCase):
    """A harness with host 0 (dummy drivers), system datastore 0 on TM dummy."""

    def setUp(self) -> None:
        self.h = OnedHarness()
        self.addCleanup(self.h.close)
        self.h.ok("one.datastore.update", 0, 'TM_MAD="dummy"', 1)
        self.hid = self.h.ok("one.host.allocate", "host01", "dummy", "dummy", -1)
        self.drivers = FakeVmDrivers()
        self.start_managers(self.h.core, self.drivers)

    def start_managers(self, core: Core, drivers: FakeVmDrivers) -> None:
        lcm = use_drivers(core, drivers)
        result_of(Deferred.fromCoroutine(lcm.start()))
        self.addCleanup(lcm.log_writer.stop)
        core.eventually.flush()

    def flush(self) -> None:
        for _ in range(10):
            self.h.core.eventually.flush()

    def settle(self) -> None:
        """Answer every driver action (as the dummies do) until the VM rests."""
        for _ in range(20):
            self.flush()
            if not self.drivers.answer_all():
                break
        self.flush()

    def vm(self, vid: int = 0) -> etree._Element:
        return etree.fromstring(self.h.ok("one.vm.info", vid).encode())

    def states(self, vid: int = 0) -> tuple[int, int]:
        vm = self.vm(vid)
        return int(vm.findtext("STATE") or -1), int(vm.findtext("LCM_STATE") or -1)

    def running_vm(self) -> int:
        vid = self.h.ok("one.vm.allocate", VM_TEMPLATE)
        self.h.ok("one.vm.deploy", vid, self.hid)
        self.settle()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        return vid

    def share(self) -> tuple[int, int, int, str]:
        host = etree.fromstring(self.h.ok("one.host.info", self.hid).encode())
        return (
            int(host.findtext("HOST_SHARE/CPU_USAGE") or 0),
            int(host.findtext("HOST_SHARE/MEM_USAGE") or 0),
            int(host.findtext("HOST_SHARE/RUNNING_VMS") or 0),
            ",".join(i.text or "" for i in host.findall("VMS/ID")),
        )

    def action(self, name: str, vid: int = 0) -> list[object]:
        return list(self.h.call("one.vm.action", name, vid))


class DeployTests(LifecycleCase):
    def test_deploy_goes_through_prolog_boot_to_running(self) -> None:
        """deploy: PROLOG (TM TRANSFER of transfer.0.prolog), BOOT (VMM DEPLOY), RUNNING."""
        vid = self.h.ok("one.vm.allocate", VM_TEMPLATE)
        self.h.ok("one.vm.deploy", vid, self.hid)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.PROLOG))
        [transfer] = self.drivers.pending("TRANSFER")
        self.assertTrue(transfer.payload.endswith(f"vms/{vid}/transfer.0.prolog"))
        self.assertTrue(Path(transfer.payload).exists())
        self.assertEqual(self.share(), (50, 256 * 1024, 1, str(vid)))
        self.drivers.reply("TRANSFER", vid)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.BOOT))
        [deploy] = self.drivers.pending("DEPLOY")
        self.assertEqual(deploy.name, "dummy")
        doc = etree.fromstring(deploy.document.encode())
        self.assertEqual(doc.findtext("HOST"), "host01")
        deployment = doc.findtext("LOCAL_DEPLOYMENT_FILE") or ""
        self.assertTrue(deployment.endswith(f"vms/{vid}/deployment.0"))
        written = etree.fromstring(Path(deployment).read_bytes())
        self.assertEqual(written.findtext("LCM_STATE"), str(int(L.BOOT)))
        self.drivers.reply("DEPLOY", vid, info="host01:v:dummy")
        self.flush()
        vm = self.vm(vid)
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assertEqual(vm.findtext("DEPLOY_ID"), "host01:v:dummy")
        self.assertEqual(vm.findtext("TEMPLATE/TM_MAD_SYSTEM"), "dummy")
        record = vm.find("HISTORY_RECORDS/HISTORY")
        assert record is not None
        now = str(int(self.h.clock.seconds()))
        for tag in ("STIME", "PSTIME", "PETIME", "RSTIME"):
            self.assertEqual(record.findtext(tag), now, tag)
        self.assertEqual(
            [record.findtext(t) for t in ("HOSTNAME", "HID", "DS_ID", "VM_MAD", "TM_MAD")],
            ["host01", str(self.hid), "0", "dummy", "dummy"],
        )
        self.h.core.lifecycle_manager.log_writer.flush()
        log = (self.h.config.locations.var / "vms" / str(vid) / "vm.log").read_text()
        self.assertIn("[VM][I]: New state is PENDING", log)
        self.assertIn("[VM][I]: New LCM state is PROLOG", log)
        self.assertIn("[VMM][I]: Generating deployment file:", log)
        self.assertTrue(log.rstrip().endswith("[VM][I]: New LCM state is RUNNING"))

    def test_deploy_refusals(self) -> None:
        """Deploying a running VM, to a missing or offline host, or beyond capacity fails."""
        vid = self.running_vm()
        reply = self.h.call("one.vm.deploy", vid, self.hid)
        self.assertEqual(
            reply[1], "[one.vm.deploy] Deploy action is not available for state RUNNING"
        )
        self.assertEqual(reply[2], 0x0800)
        other = self.h.ok("one.vm.allocate", VM_TEMPLATE)
        self.assertEqual(
            self.h.call("one.vm.deploy", other, 99)[1], "[one.vm.deploy] Error getting host [99]."
        )
        self.assertEqual(
            self.h.call("one.vm.deploy", other, self.hid, True)[1],
            f"[one.vm.deploy] virtual machine [{other}] does not fit in host [{self.hid}]. "
            "Not enough CPU: 50/-50",
        )
        self.assertEqual(
            self.h.call("one.vm.deploy", other, self.hid, False, 1)[1],
            "[one.vm.deploy] Trying to use datastore [1] to deploy the VM, but it is not of "
            "type system datastore.",
        )
        self.h.ok("one.host.status", self.hid, 2)
        self.assertEqual(
            self.h.call("one.vm.deploy", other, self.hid)[1],
            "[one.vm.deploy] Host is offline, cannot use it to deploy VM",
        )
        self.assertEqual(self.states(other), (S.PENDING, 0))


class ActionTests(LifecycleCase):
    def test_poweroff_resume_suspend_stop_undeploy_terminate(self) -> None:
        """Every lifecycle action reaches its state; the host is released at the end."""
        vid = self.running_vm()
        steps = [
            ("poweroff", (S.POWEROFF, 0)),
            ("resume", (S.ACTIVE, L.RUNNING)),
            ("suspend", (S.SUSPENDED, 0)),
            ("resume", (S.ACTIVE, L.RUNNING)),
            ("reboot", (S.ACTIVE, L.RUNNING)),
            ("reboot-hard", (S.ACTIVE, L.RUNNING)),
            ("stop", (S.STOPPED, 0)),
            ("resume", (S.PENDING, 0)),
        ]
        for name, expected in steps:
            self.assertEqual(self.action(name, vid)[:2], [True, vid], name)
            self.settle()
            self.assertEqual(self.states(vid), expected, name)
        self.assertEqual(self.share(), (0, 0, 0, ""))
        self.h.ok("one.vm.deploy", vid, self.hid)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.PROLOG_RESUME))
        self.assertTrue(self.drivers.pending("TRANSFER")[0].payload.endswith(".resume"))
        self.settle()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        for name, expected in (("undeploy-hard", (S.UNDEPLOYED, 0)), ("terminate", (S.DONE, 0))):
            self.action(name, vid)
            self.settle()
            self.assertEqual(self.states(vid), expected, name)
        self.assertEqual(self.share(), (0, 0, 0, ""))
        records = self.vm(vid).findall("HISTORY_RECORDS/HISTORY")
        self.assertEqual([r.findtext("SEQ") for r in records], ["0", "1", "2", "3"])
        self.assertEqual(records[-1].findtext("ACTION"), "27")
        self.assertNotEqual(self.vm(vid).findtext("ETIME"), "0")

    def test_refusal_texts_by_state(self) -> None:
        """Actions outside their states answer oned's ACTION texts."""
        pending = self.h.ok("one.vm.allocate", VM_TEMPLATE)
        expected = {
            "resume": "This action is not available for state PENDING",
            "poweroff": "This action is not available for state PENDING",
            "suspend": "This action is not available for state PENDING",
            "stop": "This action is not available for state PENDING",
            "release": "This action is not available for state PENDING",
            "reboot": "This action is not available for state PENDING",
            "undeploy": "This action is not available for state PENDING",
            "resched": "This action is not available for state PENDING",
        }
        for name, text in expected.items():
            reply = self.action(name, pending)
            self.assertEqual(
                reply,
                [False, f'[one.vm.action] Error performing action "{name}": {text}', 2048, -1, -1],
            )
        vid = self.running_vm()
        for name in ("resume", "release", "hold"):
            self.assertEqual(
                self.action(name, vid)[1],
                f'[one.vm.action] Error performing action "{name}": '
                "This action is not available for state RUNNING",
            )
        self.action("poweroff", vid)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.SHUTDOWN_POWEROFF))
        self.assertEqual(
            self.action("terminate", vid)[1],
            f'[one.vm.action] Error performing action "terminate": Could not terminate VM {vid}, '
            "wrong state SHUTDOWN_POWEROFF.",
        )
        self.assertEqual(
            self.action("nope", vid)[1], '[one.vm.action] Action "nope" is not supported'
        )
        self.assertEqual(
            self.h.call("one.vm.action", "hold", 77)[1],
            "[one.vm.action] Error getting virtual machine [77].",
        )

    def test_hold_release_and_terminate_pending(self) -> None:
        """hold/release toggle PENDING/HOLD; terminate of a PENDING VM is DONE at once."""
        vid = self.h.ok("one.vm.allocate", VM_TEMPLATE)
        self.action("hold", vid)
        self.assertEqual(self.states(vid), (S.HOLD, 0))
        self.action("release", vid)
        self.assertEqual(self.states(vid), (S.PENDING, 0))
        self.action("terminate-hard", vid)
        self.assertEqual(self.states(vid), (S.DONE, 0))
        self.assertEqual(self.action("terminate", vid)[:2], [True, vid])
        self.assertEqual(self.drivers.sent, [])


class FailureTests(LifecycleCase):
    def test_prolog_failure_then_terminate(self) -> None:
        """A failing transfer leaves PROLOG_FAILURE with ERROR; terminate cleans up."""
        vid = self.h.ok("one.vm.allocate", VM_TEMPLATE)
        self.h.ok("one.vm.deploy", vid, self.hid)
        self.flush()
        self.drivers.reply("TRANSFER", vid, success=False, info="disk copy failed")
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.PROLOG_FAILURE))
        error = self.vm(vid).findtext("USER_TEMPLATE/ERROR") or ""
        self.assertTrue(error.endswith(": Error executing image transfer script: disk copy failed"))
        self.action("terminate", vid)
        self.settle()
        self.assertEqual(self.states(vid), (S.DONE, 0))
        self.assertEqual(self.share(), (0, 0, 0, ""))

    def test_boot_shutdown_and_epilog_failures(self) -> None:
        """DEPLOY failure: BOOT_FAILURE; SHUTDOWN failure: RUNNING; epilog: EPILOG_FAILURE."""
        vid = self.h.ok("one.vm.allocate", VM_TEMPLATE)
        self.h.ok("one.vm.deploy", vid, self.hid)
        self.flush()
        self.drivers.reply("TRANSFER", vid)
        self.flush()
        self.drivers.reply("DEPLOY", vid, success=False, info="no hypervisor")
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.BOOT_FAILURE))
        self.assertIn("DEPLOY: no hypervisor", self.vm(vid).findtext("USER_TEMPLATE/ERROR") or "")
        vid = self.running_vm()
        self.drivers.fail = {"shutdown"}
        self.action("poweroff", vid)
        self.settle()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.drivers.fail = set()
        self.action("terminate", vid)
        self.flush()
        self.drivers.reply("SHUTDOWN", vid)
        self.flush()
        self.drivers.reply("TRANSFER", vid, success=False)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.EPILOG_FAILURE))

    def test_empty_deploy_id_is_a_failure(self) -> None:
        """A DEPLOY SUCCESS without an id is a boot failure, as in oned."""
        vid = self.h.ok("one.vm.allocate", VM_TEMPLATE)
        self.h.ok("one.vm.deploy", vid, self.hid)
        self.flush()
        self.drivers.reply("TRANSFER", vid)
        self.flush()
        self.drivers.reply("DEPLOY", vid, info="")
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.BOOT_FAILURE))

    def test_late_reply_in_lcm_init_is_ignored(self) -> None:
        """A reply for a VM no longer ACTIVE changes nothing."""
        vid = self.running_vm()
        self.action("poweroff", vid)
        self.settle()
        self.drivers.sent = []
        handler = self.drivers.handlers
        from oned.drivers.families import Family
        from oned.drivers.message import DriverMessage

        handler[(Family.VMM, "DEPLOY")](DriverMessage("DEPLOY", "SUCCESS", vid, "x:y:z"))
        self.flush()
        self.assertEqual(self.states(vid), (S.POWEROFF, 0))


class RestartTests(LifecycleCase):
    def restart(self) -> FakeVmDrivers:
        """A new Core on the same database, as after a kill -9."""
        core = Core.create(self.h.config, self.h.clock, self.h.db)
        result_of(Deferred.fromCoroutine(core.load()))
        self.h.core = core
        self.h.manager.core = core
        drivers = FakeVmDrivers()
        self.drivers = drivers
        self.start_managers(core, drivers)
        return drivers

    def test_every_transient_state_is_resumed(self) -> None:
        """After a restart each in-flight driver step is sent again and completes."""
        shutdown = self.running_vm()
        saving = self.running_vm()
        epilog = self.running_vm()
        self.action("terminate-hard", shutdown)
        self.action("suspend", saving)
        self.action("terminate", epilog)
        self.flush()
        self.drivers.reply("SHUTDOWN", epilog)
        self.flush()
        prolog = self.h.ok("one.vm.allocate", VM_TEMPLATE)
        self.h.ok("one.vm.deploy", prolog, self.hid)
        boot = self.h.ok("one.vm.allocate", VM_TEMPLATE)
        self.h.ok("one.vm.deploy", boot, self.hid)
        self.flush()
        self.drivers.reply("TRANSFER", boot)
        self.flush()
        expected = {
            prolog: L.PROLOG,
            boot: L.BOOT,
            shutdown: L.SHUTDOWN,
            saving: L.SAVE_SUSPEND,
            epilog: L.EPILOG,
        }
        for vid, lcm in expected.items():
            self.assertEqual(self.states(vid), (S.ACTIVE, lcm))
        drivers = self.restart()
        self.flush()
        self.assertEqual(
            sorted((s.action, s.oid) for s in drivers.sent),
            sorted(
                [
                    ("TRANSFER", prolog),
                    ("DEPLOY", boot),
                    ("CANCEL", shutdown),
                    ("SAVE", saving),
                    ("TRANSFER", epilog),
                ]
            ),
        )
        self.settle()
        self.assertEqual(self.states(prolog), (S.ACTIVE, L.RUNNING))
        self.assertEqual(self.states(boot), (S.ACTIVE, L.RUNNING))
        self.assertEqual(self.states(shutdown), (S.DONE, 0))
        self.assertEqual(self.states(saving), (S.SUSPENDED, 0))
        self.assertEqual(self.states(epilog), (S.DONE, 0))
        self.assertEqual(self.share()[2], 3)


class RecoverTests(LifecycleCase):
    def failed_prolog(self) -> int:
        vid = self.h.ok("one.vm.allocate", VM_TEMPLATE)
        self.h.ok("one.vm.deploy", vid, self.hid)
        self.flush()
        self.drivers.reply("TRANSFER", vid, success=False)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.PROLOG_FAILURE))
        return vid

    def test_retry_success_failure_delete(self) -> None:
        """retry re-sends the failed step; success/failure pretend a reply; delete is DONE."""
        vid = self.failed_prolog()
        self.h.ok("one.vm.recover", vid, 2)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.PROLOG))
        self.assertEqual(self.drivers.actions(), ["TRANSFER"])
        self.drivers.sent = []
        self.h.ok("one.vm.recover", vid, 1)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.BOOT))
        self.drivers.sent = []
        self.h.ok("one.vm.recover", vid, 0)
        self.assertEqual(self.states(vid), (S.ACTIVE, L.BOOT_FAILURE))
        self.h.ok("one.vm.recover", vid, 1)
        vm = self.vm(vid)
        self.assertEqual((vm.findtext("LCM_STATE"), vm.findtext("DEPLOY_ID")), ("3", f"one-{vid}"))
        self.h.ok("one.vm.recover", vid, 3)
        self.flush()
        self.assertEqual(self.states(vid), (S.DONE, 0))
        self.assertEqual(self.drivers.actions(), ["CLEANUP"])
        self.assertEqual(self.share(), (0, 0, 0, ""))
        self.assertEqual(
            self.h.call("one.vm.recover", vid, 2)[1],
            f"[one.vm.recover] Could not perform a retry on VM {vid}, wrong state DONE.",
        )
        self.assertEqual(
            self.h.call("one.vm.recover", vid, 0)[1],
            f"[one.vm.recover] Could not perform a recover operation on VM {vid}, "
            "wrong state DONE.",
        )
        self.assertEqual(
            self.h.call("one.vm.recover", vid, 9)[1],
            "[one.vm.recover] Wrong recovery operation code",
        )
        self.assertEqual(
            self.h.call("one.vm.recover", vid, 4)[1],
            "[one.vm.recover] Cannot delete-recreate a VM already in DONE state",
        )

    def test_delete_db_and_recreate(self) -> None:
        """delete-db frees the host without drivers; delete-recreate goes back to PENDING."""
        vid = self.running_vm()
        self.h.ok("one.vm.recover", vid, 4)
        self.flush()
        self.assertEqual(self.states(vid), (S.PENDING, 0))
        self.assertEqual(self.share(), (0, 0, 0, ""))
        self.h.ok("one.vm.deploy", vid, self.hid)
        self.settle()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.drivers.sent = []
        self.h.ok("one.vm.recover", vid, 5)
        self.assertEqual(self.states(vid), (S.DONE, 0))
        self.assertEqual(self.drivers.sent, [])
        self.assertEqual(self.share(), (0, 0, 0, ""))


class DiskTests(LifecycleCase):
    """Images used as DISKs, with the image manager on a scripted datastore driver."""

    def setUp(self) -> None:
        super().setUp()
        from oned.managers.image.manager import ImageManager
        from oned.managers.image.testing import FakeDatastoreDrivers

        self.h.ok("one.datastore.update", 1, 'DS_MAD="dummy"\nTM_MAD="dummy"', 1)
        self.ds_drivers = FakeDatastoreDrivers()
        manager = ImageManager(self.h.core, self.ds_drivers, self.h.clock)
        self.h.core.image_manager = manager
        result_of(Deferred.fromCoroutine(manager.start()))
        self.ds_drivers.answer_all("MONITOR")
        self.h.clock.advance(0)
        self.h.clock.advance(0)

    def image(self, text: str) -> int:
        iid = self.h.ok("one.image.allocate", text, 1)
        self.ds_drivers.answer_all()
        self.h.clock.advance(0)
        self.h.clock.advance(0)
        return int(iid)

    def image_state(self, iid: int) -> tuple[str, str]:
        doc = etree.fromstring(self.h.ok("one.image.info", iid).encode())
        return doc.findtext("STATE") or "", doc.findtext("RUNNING_VMS") or ""

    def test_disks_take_images_and_give_them_back(self) -> None:
        """DISKs are completed from their images, which are USED while the VM lives;
        the prolog clones/links them; a persistent image in use refuses a second VM."""
        img = self.image('NAME="os"\nTYPE="DATABLOCK"\nSIZE="128"')
        pers = self.image('NAME="p"\nTYPE="DATABLOCK"\nSIZE="64"\nPERSISTENT="YES"')
        self.assertEqual(self.image_state(img), ("1", "0"))
        vid = self.h.ok(
            "one.vm.allocate",
            f'{VM_TEMPLATE}\nDISK=[IMAGE_ID={img}]\nDISK=[IMAGE="p"]\nCONTEXT=[A="1"]',
        )
        disks = self.vm(vid).findall("TEMPLATE/DISK")
        self.assertEqual([d.findtext("TARGET") for d in disks], ["sdb", "sdc"])
        tmpl = self.vm(vid).find("TEMPLATE")
        assert tmpl is not None
        self.assertEqual(
            [tmpl.findtext(f"AUTOMATIC_{k}REQUIREMENTS") for k in ("", "DS_", "NIC_")],
            [
                "(CLUSTER_ID = 0) & !(PIN_POLICY = PINNED)",
                '("CLUSTERS/ID" @> 0)',
                '("CLUSTERS/ID" @> 0)',
            ],
        )
        self.assertEqual(
            [self.vm(vid).findtext(f"TEMPLATE/CONTEXT/{k}") for k in ("DISK_ID", "TARGET")],
            ["2", "sda"],
        )
        self.assertEqual([d.findtext("DISK_ID") for d in disks], ["0", "1"])
        self.assertEqual([d.findtext("IMAGE_ID") for d in disks], [str(img), str(pers)])
        self.assertEqual(self.image_state(img), ("2", "1"))
        self.assertEqual(self.image_state(pers), ("8", "1"))
        self.assertEqual(
            self.h.call("one.vm.allocate", f"{VM_TEMPLATE}\nDISK=[IMAGE_ID={pers}]")[1],
            f"[one.vm.allocate] Cannot acquire image {pers}, it is persistent and already in use",
        )
        self.assertEqual(
            self.h.call("one.vm.allocate", f"{VM_TEMPLATE}\nDISK=[IMAGE_ID=99]")[1],
            "[one.vm.allocate] Image with ID: 99 does not exist",
        )
        self.assertEqual(self.image_state(img), ("2", "1"))
        self.h.ok("one.vm.deploy", vid, self.hid)
        self.flush()
        [transfer] = self.drivers.pending("TRANSFER")
        lines = Path(transfer.payload).read_text().splitlines()
        self.assertEqual([line.split()[0] for line in lines], ["CLONE", "LN"])
        self.assertTrue(lines[0].endswith(f"/0/{vid}/disk.0 {vid} 1"))
        self.settle()
        self.action("terminate-hard", vid)
        self.settle()
        self.assertEqual(self.states(vid), (S.DONE, 0))
        epilog = (self.h.config.locations.var / "vms" / str(vid) / "transfer.0.epilog").read_text()
        self.assertEqual(
            [line.split()[0] for line in epilog.splitlines()], ["DELETE", "MVDS", "DELETE"]
        )
        self.assertEqual(self.image_state(img), ("1", "0"))
        self.assertEqual(self.image_state(pers), ("1", "0"))


class MonitoringTests(LifecycleCase):
    def test_monitor_vm_report_becomes_samples(self) -> None:
        """A MONITOR_VM report sets MONITORING/LAST_POLL and stores samples."""
        import base64

        from oned.managers.lifecycle.monitor import monitor_vms

        vid = self.running_vm()
        mon = base64.b64encode(b"CPU=5\nMEMORY=1024\nNETRX=10\nNETTX=20\n").decode()
        report = f'VM=[ID="{vid}", DEPLOY_ID="x", MONITOR="{mon}"]\nVM=[ID="99", MONITOR="{mon}"]'
        stamp = self.h.core.now()  # older samples than VM_MONITORING_EXPIRATION_TIME are gone
        done = result_of(Deferred.fromCoroutine(monitor_vms(self.h.core, self.hid, report, stamp)))
        self.assertEqual(done, 1)
        expected = (
            "<MONITORING><CPU><![CDATA[5]]></CPU><ID><![CDATA[0]]></ID><MEMORY><![CDATA[1024]]>"
            "</MEMORY><NETRX><![CDATA[10]]></NETRX><NETTX><![CDATA[20]]></NETTX><TIMESTAMP>"
            f"<![CDATA[{stamp}]]></TIMESTAMP></MONITORING>"
        ).replace("<![CDATA[0]]></ID>", f"<![CDATA[{vid}]]></ID>")
        info = self.h.ok("one.vm.info", vid)
        self.assertIn(f"<LAST_POLL>{stamp}</LAST_POLL>", info)
        self.assertIn(expected, info)
        self.assertEqual(
            self.h.ok("one.vm.monitoring", vid), f"<MONITORING_DATA>{expected}</MONITORING_DATA>"
        )
        self.assertEqual(
            self.h.ok("one.vmpool.monitoring", -2, 0),
            f"<MONITORING_DATA>{expected}</MONITORING_DATA>",
        )
        self.assertIn(
            "<MONITORING><CPU><![CDATA[5]]></CPU><MEMORY><![CDATA[1024]]></MEMORY></MONITORING>",
            self.h.ok("one.vmpool.info", -2, -1, -1, -1),
        )


class SampleTests(LifecycleCase):
    def test_running_document_matches_the_sample(self) -> None:
        """A deployed VM is oned's RUNNING document (devices, times and ids aside)."""
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
        from test_vms import T18_NO_DEVICES, sample, strip_devices

        vid = self.h.ok("one.vm.allocate", T18_NO_DEVICES, True)
        self.h.ok("one.vm.action", "release", vid)
        self.h.ok("one.vm.deploy", vid, self.hid)
        self.settle()

        def norm(doc: str) -> str:
            doc = re.sub(r"<(\w*TIME)>\d+</\1>", r"<\1>T</\1>", doc)
            return re.sub(r"<UUID><!\[CDATA\[[-0-9a-f]+\]\]></UUID>", "<UUID>U</UUID>", doc)

        theirs = strip_devices(sample("one.vm.info.running.xml"))
        self.assertEqual(norm(self.h.ok("one.vm.info", vid)), norm(theirs))


class RunningQuotaTests(LifecycleCase):
    def test_running_quota_follows_power_state(self) -> None:
        """POWEROFF gives RUNNING_* back; resume past the limit is refused with its text."""
        uid = self.h.ok("one.user.allocate", "q", "pw", "", [1])
        self.h.ok("one.user.quota", uid, 'VM=[RUNNING_VMS="1"]')
        first = self.h.ok("one.vm.allocate", VM_TEMPLATE, session="q:pw")
        self.h.ok("one.vm.deploy", first, self.hid)
        self.settle()
        self.action("poweroff", first)
        self.settle()

        def used() -> str:
            user = etree.fromstring(self.h.ok("one.user.info", uid).encode())
            return user.findtext("VM_QUOTA/VM/RUNNING_VMS_USED") or ""

        self.assertEqual(used(), "0")
        second = self.h.ok("one.vm.allocate", VM_TEMPLATE, session="q:pw")
        self.assertEqual(used(), "1")
        self.assertEqual(
            self.action("resume", first),
            [
                False,
                f"[one.vm.action] user [{uid}] limit of 1 reached for RUNNING_VMS quota in VM",
                2048,
                -1,
                -1,
            ],
        )
        self.action("terminate", second)
        self.assertEqual(used(), "0")
        self.assertEqual(self.action("resume", first)[:2], [True, first])
        self.settle()
        self.assertEqual(self.states(first), (S.ACTIVE, L.RUNNING))
        self.assertEqual(used(), "1")


class ContextTests(LifecycleCase):
    def test_deploy_writes_context_sh_and_the_context_command(self) -> None:
        """DEPLOY carries the TM CONTEXT command; context.sh is written as oned does."""
        vid = self.h.ok("one.vm.allocate", f'{VM_TEMPLATE}\nCONTEXT=[SAMPLE_VAR="it\'s", A="1"]')
        self.h.ok("one.vm.deploy", vid, self.hid)
        self.flush()
        self.drivers.reply("TRANSFER", vid)
        self.flush()
        [deploy] = self.drivers.pending("DEPLOY")
        command = etree.fromstring(deploy.document.encode()).findtext("TM_COMMAND") or ""
        vm_dir = self.h.config.locations.var / "vms" / str(vid)
        self.assertEqual(command.split()[:3], ["CONTEXT", "dummy", str(vm_dir / "context.sh")])
        self.assertTrue(command.endswith(f"/0/{vid}/disk.0 {vid} 0"))
        self.assertEqual(
            (vm_dir / "context.sh").read_text(),
            "# Context variables generated by OpenNebula\nA='1'\nDISK_ID='0'\n"
            "SAMPLE_VAR='it'\\''s'\nTARGET='sda'\n",
        )
