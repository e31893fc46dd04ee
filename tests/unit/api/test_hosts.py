"""one.host.* and one.hostpool.* through the real request manager (no drivers)."""

from __future__ import annotations

import base64
from pathlib import Path

from lxml import etree
from twisted.trial.unittest import SynchronousTestCase

from oned.objects.host import Host, reserved_metric
from oned.template import parse_text
from oned.testing.rpc import OnedHarness

SAMPLES = Path(__file__).resolve().parents[4] / "shared" / "samples"
LIB = Path(__file__).resolve().parents[3] / "drivers" / "remotes" / "im" / "lib"
SYSTEM = base64.b64decode((LIB / "dummy_system_host.b64").read_text()).decode()


def monitored(name: str = "host01") -> Host:
    host = Host.new(0, name, "dummy", "dummy", 0, "default")
    host.update_info(parse_text(SYSTEM + f"HOSTNAME={name}\n"), None)
    return host


class HostApiTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.one = OnedHarness()
        self.addCleanup(self.one.close)

    def test_allocate_and_info_as_oned(self) -> None:
        """A new host is INIT in cluster 0, byte for byte oned's document."""
        self.assertEqual(self.one.call("one.host.allocate", "host01", "dummy", "dummy", -1), [
            True, 0, 0,
        ])  # fmt: skip
        expected = (SAMPLES / "one.host.info.init.xml").read_text()
        self.assertEqual(self.one.ok("one.host.info", 0), expected)
        self.assertEqual(self.one.ok("one.hostpool.info"), f"<HOST_POOL>{expected}</HOST_POOL>")
        cluster = etree.fromstring(self.one.ok("one.cluster.info", 0))
        self.assertEqual([i.text for i in cluster.findall("HOSTS/ID")], ["0"])

    def test_allocate_errors(self) -> None:
        """Duplicates, bad host names, empty drivers and missing clusters: oned's texts."""
        self.one.ok("one.host.allocate", "host01", "dummy", "dummy", -1)
        pre = "[one.host.allocate] Error allocating a new host. "
        cases = [
            (("host01", "dummy", "dummy", -1), pre + "NAME is already taken by HOST 0.", -1),
            (("h", "dummy", "dummy", -1), pre + "Invalid HOSTNAME, HOSTNAME length should be "
             "greater than 1, but smaller than 64 characters", -1),
            (("-host", "dummy", "dummy", -1), pre + "Invalid HOSTNAME, first character can't "
             "be '-'", -1),
            (("ho st", "dummy", "dummy", -1), pre + "Invalid HOSTNAME, ' ' is invalid character "
             "for a HOSTNAME", -1),
            (("host.", "dummy", "dummy", -1), pre + "Invalid HOSTNAME, last character can't "
             "be '.'", -1),
            (("host02", "", "dummy", -1), pre + "IM_MAD_NAME cannot be empty.", -1),
            (("host02", "dummy", "", -1), pre + "VMM_MAD_NAME cannot be empty.", -1),
            (("host02", "dummy", "dummy", 77), "[one.host.allocate] Error getting cluster [77].",
             77),
        ]  # fmt: skip
        for args, message, resp_id in cases:
            reply = self.one.call("one.host.allocate", *args)
            self.assertEqual((reply[0], reply[1], reply[3]), (False, message, resp_id), args)
        self.assertEqual(self.one.call("one.host.info", 9999), [
            False, "[one.host.info] Error getting host [9999].", 1024, 9999, -1,
        ])  # fmt: skip

    def test_plain_user_refused(self) -> None:
        """A plain user gets oned's two refusals (CREATE HOST and ADMIN CLUSTER)."""
        self.one.ok("one.user.allocate", "sampleuser", "samplepass", "")
        reply = self.one.call(
            "one.host.allocate",
            "denied-host",
            "dummy",
            "dummy",
            -1,
            session="sampleuser:samplepass",
        )
        sample = (SAMPLES / "one.host.allocate.refused-plain-user.json").read_text()
        self.assertEqual(
            reply,
            [
                False,
                "[one.host.allocate] User [2] : Not authorized to perform CREATE HOST; "
                "Not authorized to perform ADMIN CLUSTER [0].",
                512,
                -1,
                -1,
            ],
        )
        self.assertIn("Not authorized to perform ADMIN CLUSTER [0].", sample)

    def test_status_machine(self) -> None:
        """Disable, enable (INIT without capacity), offline, bad codes."""
        self.one.ok("one.host.allocate", "host01", "dummy", "dummy", -1)

        def state() -> tuple[str, str]:
            doc = etree.fromstring(self.one.ok("one.host.info", 0))
            return doc.findtext("STATE") or "", doc.findtext("PREV_STATE") or ""

        self.one.ok("one.host.status", 0, 1)
        self.assertEqual(state(), ("4", "4"))
        self.one.ok("one.host.status", 0, 0)
        self.assertEqual(state(), ("0", "0"))
        self.one.ok("one.host.status", 0, 2)
        self.assertEqual(state(), ("8", "8"))
        self.assertEqual(
            self.one.call("one.host.status", 0, 3), [False, "[one.host.status] Wrong status code",
                                                     8192, -1, -1]
        )  # fmt: skip
        self.assertEqual(self.one.call("one.host.status", 5, 0)[1:4], [
            "[one.host.status] Error getting host [5].", 1024, 5,
        ])  # fmt: skip

    def test_update_rename_delete(self) -> None:
        """update keeps IM_MAD/VM_MAD, applies RESERVED_*; rename; delete leaves cluster 0."""
        self.one.ok("one.host.allocate", "host01", "dummy", "dummy", -1)
        self.one.ok("one.host.update", 0, 'RESERVED_CPU="10%"\nLABEL="x"', 0)
        doc = etree.fromstring(self.one.ok("one.host.info", 0))
        self.assertEqual(doc.findtext("TEMPLATE/IM_MAD"), "dummy")
        self.assertEqual(doc.findtext("TEMPLATE/LABEL"), "x")
        self.assertEqual(doc.findtext("TEMPLATE/RESERVED_CPU"), "10%")
        self.one.ok("one.host.update", 0, 'VM_MAD="kvm"', 1)
        doc = etree.fromstring(self.one.ok("one.host.info", 0))
        self.assertEqual(doc.findtext("VM_MAD"), "kvm")
        self.assertEqual(self.one.call("one.host.update", 0, "A=1", 2)[1],
                         "[one.host.update] Wrong update type")  # fmt: skip
        self.one.ok("one.host.allocate", "host02", "dummy", "dummy", 0)
        reply = self.one.call("one.host.rename", 1, "host01")
        self.assertEqual(reply[1], "[one.host.rename] host cannot be renamed to host01 because "
                         "it collides with host 0")  # fmt: skip
        self.one.ok("one.host.rename", 1, "host03")
        self.assertEqual(self.one.ok("one.host.delete", 0), 0)
        cluster = etree.fromstring(self.one.ok("one.cluster.info", 0))
        self.assertEqual([i.text for i in cluster.findall("HOSTS/ID")], ["1"])
        self.assertEqual(self.one.call("one.host.delete", 0)[1],
                         "[one.host.delete] Error getting host [0].")  # fmt: skip

    def test_monitoring_empty_without_samples(self) -> None:
        """No samples yet: both monitoring calls answer an empty MONITORING_DATA."""
        self.one.ok("one.host.allocate", "host01", "dummy", "dummy", -1)
        self.assertEqual(
            self.one.ok("one.host.monitoring", 0), "<MONITORING_DATA></MONITORING_DATA>"
        )
        self.assertEqual(self.one.ok("one.hostpool.monitoring", 0),
                         "<MONITORING_DATA></MONITORING_DATA>")  # fmt: skip


class HostShareTests(SynchronousTestCase):
    def test_monitored_share_as_oned(self) -> None:
        """The dummy SYSTEM_HOST gives oned's HOST_SHARE and TEMPLATE exactly."""
        host = monitored()
        sample = (SAMPLES / "one.host.info.monitored.xml").read_text()
        start = sample.index("<HOST_SHARE>")
        end = sample.index("<MONITORING>")
        body = host.to_xml()
        self.assertEqual(body[body.index("<HOST_SHARE>") : body.index("<MONITORING/>")],
                         sample[start:end].replace("<STATE>2</STATE>", ""))  # fmt: skip
        self.assertEqual(host.state, 2)

    def test_reserved_metric(self) -> None:
        """Absolute and N% reservations; garbage leaves the total."""
        self.assertEqual(reserved_metric(800, ""), 800)
        self.assertEqual(reserved_metric(800, "100"), 700)
        self.assertEqual(reserved_metric(800, "-100"), 900)
        self.assertEqual(reserved_metric(800, "10%"), 720)
        self.assertEqual(reserved_metric(16777216, "33%"), 11240734)
        self.assertEqual(reserved_metric(800, "10.5%"), 800)
        self.assertEqual(reserved_metric(800, "abc"), 800)

    def test_cluster_reservation_and_offline(self) -> None:
        """Cluster RESERVED_* apply unless the host sets its own; OFFLINE resets capacity."""
        host = monitored()
        self.assertTrue(host.update_reserved_capacity("50%", "1048576"))
        self.assertEqual((host.share.max_cpu, host.share.max_mem), (400, 15728640))
        host.template.set("RESERVED_CPU", "100")
        host.template.set("RESERVED_MEM", "0")
        self.assertFalse(host.update_reserved_capacity("50%", "1048576"))
        host.offline()
        self.assertEqual((host.share.total_cpu, host.share.max_cpu), (0, 0))
        self.assertIsNone(host.template.get("TOTALCPU"))
        self.assertEqual(host.share.pci, [])
        host.enable()
        self.assertEqual(host.state, 0)

    def test_round_trip(self) -> None:
        """A stored body loads back to an equal body."""
        host = monitored()
        host.error("boom", 0)
        self.assertEqual(Host.from_xml(host.to_xml()).to_xml(), host.to_xml())
        self.assertEqual(host.state, 3)
        self.assertIn("Error monitoring Host host01 (0): boom", host.template.get("ERROR") or "")


class VmsThreadTests(SynchronousTestCase):
    def test_vms_thread_scales_core_slots(self) -> None:
        """VMS_THREAD in the template sets HOST_SHARE/VMS_THREAD and each core's FREE."""
        host = monitored()
        host.template.set("VMS_THREAD", "2")
        host.post_update_template(None)
        self.assertEqual(host.share.vms_thread, 2)
        self.assertEqual({c["FREE"] for n in host.share.numa.values() for c in n.cores}, {"8"})
        host.template.set("VMS_THREAD", "0")
        host.post_update_template(None)
        self.assertEqual((host.share.vms_thread, host.template.get("VMS_THREAD")), (1, "1"))


class HostWithVmTests(SynchronousTestCase):
    def test_vm_blocks_delete_and_follows_rename(self) -> None:
        """A host running a VM cannot be deleted; renaming it renames the VM's HOSTNAME."""
        from twisted.internet.defer import Deferred

        from oned.managers.lifecycle.testing import FakeVmDrivers
        from oned.managers.lifecycle.wiring import use_drivers
        from oned.testing.rpc import result_of

        one = OnedHarness()
        self.addCleanup(one.close)
        one.ok("one.datastore.update", 0, 'TM_MAD="dummy"', 1)
        hid = one.ok("one.host.allocate", "host01", "dummy", "dummy", -1)
        drivers = FakeVmDrivers()
        lcm = use_drivers(one.core, drivers)
        result_of(Deferred.fromCoroutine(lcm.start()))
        self.addCleanup(lcm.log_writer.stop)
        vid = one.ok("one.vm.allocate", 'NAME="v"\nCPU="0.5"\nVCPU="1"\nMEMORY="256"')
        one.ok("one.vm.deploy", vid, hid)
        for _ in range(20):
            for _ in range(10):
                one.core.eventually.flush()
            if not drivers.answer_all():
                break
        doc = etree.fromstring(one.ok("one.host.info", hid))
        self.assertEqual(doc.findtext("HOST_SHARE/RUNNING_VMS"), "1")
        self.assertEqual(one.call("one.host.delete", hid)[1:3], [
            "[one.host.delete] Cannot delete host. Can not remove a host with running VMs", 2048,
        ])  # fmt: skip
        one.ok("one.host.rename", hid, "host99")
        vm = etree.fromstring(one.ok("one.vm.info", vid))
        self.assertEqual(vm.findall("HISTORY_RECORDS/HISTORY/HOSTNAME")[-1].text, "host99")
