"""System snapshots, resize, updateconf, PCI attach/detach and guest exec through the
real request manager and DM/LCM/VMM managers, with scripted VMM drivers (fake clock)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from lxml import etree
from twisted.internet.defer import Deferred

from oned.core import Core
from oned.managers.lifecycle.testing import FakeVmDrivers
from oned.objects.vm import LcmState as L
from oned.objects.vm import VmState as S
from oned.testing.rpc import OnedHarness, result_of

from .test_lifecycle import VM_TEMPLATE, LifecycleCase

CTX_TEMPLATE = VM_TEMPLATE + '\nCONTEXT=[ VAR1="a", NETWORK="YES" ]\nOS=[ ARCH="x86_64" ]'
ACTION = 0x0800
GONE = "it does not exist."
PCI_DEVICE = {
    "ADDRESS": "0000:00:02:0",
    "SHORT_ADDRESS": "00:02.0",
    "DOMAIN": "0x0000",
    "BUS": "0x00",
    "SLOT": "0x02",
    "FUNCTION": "0x0",
    "VENDOR": "8086",
    "DEVICE": "0a0c",
    "CLASS": "0403",
    "VMID": "-1",
}


def _xsd() -> ModuleType:
    """``tests/integration/xsd.py`` (this package cannot import ``tests``)."""
    path = Path(__file__).resolve().parents[2] / "integration" / "xsd.py"
    spec = importlib.util.spec_from_file_location("vm_system_xsd", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


XSD = _xsd()


class SystemCase(LifecycleCase):
    def valid(self, vid: int) -> None:
        if XSD.available():
            self.assertEqual(XSD.errors(self.h.ok("one.vm.info", vid)), [])

    def restart(self) -> None:
        """A new Core and managers on the same database, as after a kill -9."""
        core = Core.create(self.h.config, self.h.clock, self.h.db)
        result_of(Deferred.fromCoroutine(core.load()))
        self.h.core = core
        self.h.manager.core = core
        self.drivers = FakeVmDrivers()
        self.start_managers(core, self.drivers)

    def err(self, method: str, *params: object) -> tuple[str, int]:
        reply = list(self.h.call(method, *params))
        self.assertFalse(reply[0], reply)
        return str(reply[1]), int(reply[2])

    def template(self, vid: int) -> etree._Element:
        node = self.vm(vid).find("TEMPLATE")
        assert node is not None
        return node

    def host_capacity(self, cpu: int, mem: int, pci: list[dict[str, str]] | None = None) -> None:
        host = self.h.core.hosts.get(self.hid)
        assert host is not None
        host = host.copy()
        host.share.max_cpu, host.share.max_mem = cpu, mem
        if pci is not None:
            host.share.pci = [dict(d) for d in pci]
        self.h.core.hosts._remember(host)

    def poweroff_vm(self, template: str = VM_TEMPLATE) -> int:
        vid = int(self.h.ok("one.vm.allocate", template))
        self.h.ok("one.vm.deploy", vid, self.hid)
        self.settle()
        self.action("poweroff", vid)
        self.settle()
        self.assertEqual(self.states(vid), (S.POWEROFF, L.LCM_INIT))
        return vid


class SnapshotTests(SystemCase):
    def test_create_revert_delete(self) -> None:
        """HOTPLUG_SNAPSHOT around each VMM action; the SNAPSHOT vector as oned writes it."""
        vid = self.running_vm()
        self.assertEqual(self.h.ok("one.vm.snapshotcreate", vid, "first"), 0)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.HOTPLUG_SNAPSHOT))
        self.valid(vid)
        [sent] = self.drivers.pending("SNAPSHOTCREATE")
        doc = etree.fromstring(sent.document.encode())
        self.assertEqual(doc.findtext("DEPLOY_ID"), self.vm(vid).findtext("DEPLOY_ID"))
        self.assertEqual(doc.findtext("VM/TEMPLATE/SNAPSHOT/ACTIVE"), "YES")
        self.assertEqual(doc.findtext("VM/TEMPLATE/SNAPSHOT/ACTION"), "CREATE")
        self.drivers.reply("SNAPSHOTCREATE", vid, info="dummy-snap")
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        snap = self.template(vid).find("SNAPSHOT")
        assert snap is not None
        self.assertEqual(
            [c.tag for c in snap],
            ["HYPERVISOR_ID", "NAME", "SNAPSHOT_ID", "SYSTEM_DISK_SIZE", "TIME"],
        )
        self.assertEqual(snap.findtext("HYPERVISOR_ID"), "dummy-snap")
        self.assertEqual(snap.findtext("NAME"), "first")
        self.assertEqual(snap.findtext("SYSTEM_DISK_SIZE"), "256")
        self.assertEqual(snap.findtext("TIME"), str(int(self.h.clock.seconds())))
        self.assertEqual(self.h.ok("one.vm.snapshotcreate", vid, ""), 1)
        self.settle()
        self.valid(vid)
        names = [s.findtext("NAME") for s in self.template(vid).findall("SNAPSHOT")]
        self.assertEqual(names, ["first", "snapshot-1"])
        self.assertEqual(self.h.ok("one.vm.snapshotrevert", vid, 0), vid)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.HOTPLUG_SNAPSHOT))
        self.assertEqual(self.drivers.actions(), ["SNAPSHOTREVERT"])
        self.settle()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assertEqual(self.h.ok("one.vm.snapshotdelete", vid, 0), vid)
        self.settle()
        ids = [s.findtext("SNAPSHOT_ID") for s in self.template(vid).findall("SNAPSHOT")]
        self.assertEqual(ids, ["1"])
        self.assertEqual(len(self.vm(vid).findall("HISTORY_RECORDS/HISTORY")), 1)

    def test_refusals_and_failures(self) -> None:
        vid = self.running_vm()
        self.assertEqual(
            self.err("one.vm.snapshotrevert", vid, 3),
            (
                f"[one.vm.snapshotrevert] Could not revert VM {vid} to snapshot 3, {GONE}",
                ACTION,
            ),
        )
        self.assertEqual(
            self.err("one.vm.snapshotdelete", vid, 3)[0],
            f"[one.vm.snapshotdelete] Could not delete snapshot 3 for VM {vid}, it does not exist.",
        )
        self.assertEqual(
            self.err("one.vm.snapshotcreate", 99, "x"),
            ("[one.vm.snapshotcreate] Error getting virtual machine [99].", 0x0400),
        )
        self.drivers.fail.add("snapshotcreate")
        self.h.ok("one.vm.snapshotcreate", vid, "bad")
        self.flush()
        self.drivers.reply("SNAPSHOTCREATE", vid, success=False, info="no space")
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assertIsNone(self.template(vid).find("SNAPSHOT"))
        self.assertIn(
            "SNAPSHOTCREATE: no space", self.vm(vid).findtext("USER_TEMPLATE/ERROR") or ""
        )
        self.action("poweroff", vid)
        self.settle()
        self.assertEqual(
            self.err("one.vm.snapshotcreate", vid, "x")[0],
            f"[one.vm.snapshotcreate] Could not create a new snapshot for VM {vid}, "
            "wrong state POWEROFF.",
        )
        self.assertEqual(
            self.err("one.vm.snapshotdelete", vid, 0)[0],
            f"[one.vm.snapshotdelete] Could not delete snapshot 0 for VM {vid}, "
            "wrong state POWEROFF.",
        )

    def test_quota_system_disk_size(self) -> None:
        """Each snapshot counts its SYSTEM_DISK_SIZE; deleting gives it back."""
        uid = self.h.ok("one.user.allocate", "q", "pw", "", [1])
        vid = self.running_vm()
        self.h.ok("one.vm.chown", vid, uid, -1)
        self.h.ok("one.user.quota", uid, 'VM=[SYSTEM_DISK_SIZE="300"]')
        self.h.ok("one.vm.snapshotcreate", vid, "a")
        self.settle()
        reply = self.err("one.vm.snapshotcreate", vid, "b")
        self.assertEqual(reply[1], 0x0200)
        self.assertIn("SYSTEM_DISK_SIZE", reply[0])
        user = self.h.ok("one.user.info", uid)
        self.assertIn("<SYSTEM_DISK_SIZE_USED><![CDATA[256]]></SYSTEM_DISK_SIZE_USED>", user)
        self.h.ok("one.vm.snapshotdelete", vid, 0)
        self.settle()
        user = self.h.ok("one.user.info", uid)
        self.assertIn("<SYSTEM_DISK_SIZE_USED><![CDATA[0]]></SYSTEM_DISK_SIZE_USED>", user)

    def test_poweroff_drops_snapshots(self) -> None:
        """The dummy VM_MAD keeps no snapshots: poweroff drops them and their quota."""
        uid = self.h.ok("one.user.allocate", "q", "pw", "", [1])
        vid = self.running_vm()
        self.h.ok("one.vm.chown", vid, uid, -1)
        self.h.ok("one.vm.snapshotcreate", vid, "a")
        self.settle()
        self.h.ok("one.vm.exec", vid, "sleep 100", "")
        self.settle()
        self.action("poweroff", vid)
        self.settle()
        self.assertIsNone(self.template(vid).find("SNAPSHOT"))
        self.assertEqual(self.template(vid).findtext("QEMU_GA_EXEC/STATUS"), "CANCELLED")
        user = self.h.ok("one.user.info", uid)
        self.assertIn("<SYSTEM_DISK_SIZE_USED><![CDATA[0]]></SYSTEM_DISK_SIZE_USED>", user)

    def test_keep_snapshots_delete_in_poweroff(self) -> None:
        """With KEEP_SNAPSHOTS a POWEROFF VM keeps its snapshots and may delete them
        (HOTPLUG_SNAPSHOT with STATE POWEROFF, as oned leaves it), even across a restart."""
        self.h.config.template.add(
            "VM_MAD", {"NAME": "dummy", "KEEP_SNAPSHOTS": "yes", "EXECUTABLE": "one_vmm_dummy"}
        )
        vid = self.running_vm()
        self.h.ok("one.vm.snapshotcreate", vid, "a")
        self.settle()
        self.action("poweroff", vid)
        self.settle()
        self.assertEqual(self.template(vid).findtext("SNAPSHOT/NAME"), "a")
        self.h.ok("one.vm.snapshotdelete", vid, 0)
        self.assertEqual(self.states(vid), (S.POWEROFF, L.HOTPLUG_SNAPSHOT))
        self.restart()
        self.assertEqual(self.drivers.actions(), ["SNAPSHOTDELETE"])
        self.settle()
        self.assertIsNone(self.template(vid).find("SNAPSHOT"))

    def test_monitor_poweroff_drops_snapshots(self) -> None:
        vid = self.running_vm()
        self.h.ok("one.vm.snapshotcreate", vid, "a")
        self.settle()
        lcm = self.h.core.lifecycle_manager
        result_of(Deferred.fromCoroutine(lcm.monitor_poweroff(vid)))
        self.flush()
        self.assertEqual(self.states(vid), (S.POWEROFF, L.LCM_INIT))
        self.assertIsNone(self.template(vid).find("SNAPSHOT"))

    def test_restart_reissues_snapshot(self) -> None:
        vid = self.running_vm()
        self.h.ok("one.vm.snapshotcreate", vid, "a")
        self.restart()
        self.assertEqual(self.drivers.actions(), ["SNAPSHOTCREATE"])
        self.drivers.reply("SNAPSHOTCREATE", vid, info="snap-x")
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assertEqual(self.template(vid).findtext("SNAPSHOT/HYPERVISOR_ID"), "snap-x")

    def test_recover_failure_drops_snapshot(self) -> None:
        vid = self.running_vm()
        self.h.ok("one.vm.snapshotcreate", vid, "a")
        self.flush()
        self.h.ok("one.vm.recover", vid, 0)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assertIsNone(self.template(vid).find("SNAPSHOT"))


class ResizeTests(SystemCase):
    def test_poweroff_resize_updates_host_and_history(self) -> None:
        vid = self.poweroff_vm()
        self.host_capacity(400, 4 * 1024 * 1024)
        self.assertEqual(self.share(), (50, 256 * 1024, 1, str(vid)))
        self.h.ok("one.vm.resize", vid, 'CPU="1.5"\nVCPU="2"\nMEMORY="512"', True)
        self.assertEqual(self.share(), (150, 512 * 1024, 1, str(vid)))
        tmpl = self.template(vid)
        self.assertEqual([tmpl.findtext(n) for n in ("CPU", "VCPU", "MEMORY")], ["1.5", "2", "512"])
        records = self.vm(vid).findall("HISTORY_RECORDS/HISTORY")
        self.assertEqual([r.findtext("ACTION") for r in records], ["35", "19"])
        self.assertEqual(self.states(vid), (S.POWEROFF, L.LCM_INIT))
        self.assertEqual(
            self.err("one.vm.resize", vid, 'CPU="8"', True),
            ("[one.vm.resize] Not enough CPU: 800/400", ACTION),
        )
        self.h.ok("one.vm.resize", vid, 'CPU="8"', False)
        self.assertEqual(self.share()[0], 800)

    def test_states_and_values(self) -> None:
        pending = self.h.ok("one.vm.allocate", VM_TEMPLATE)
        self.h.ok("one.vm.resize", pending, 'MEMORY="1024"')
        self.assertEqual(self.template(pending).findtext("MEMORY"), "1024")
        self.assertEqual(self.template(pending).findtext("CPU"), "0.5")
        self.assertEqual(
            self.err("one.vm.resize", pending, 'CPU="-1"'),
            ("[one.vm.resize] CPU must be a positive float or integer value.", 0x2000),
        )
        running = self.running_vm()
        self.assertEqual(
            self.err("one.vm.resize", running, 'CPU="1"')[0],
            "[one.vm.resize] Hotplug resize not supported by driver dummy",
        )
        self.action("suspend", running)
        self.settle()
        self.assertEqual(
            self.err("one.vm.resize", running, 'CPU="1"')[0],
            "[one.vm.resize] Cannot resize a VM in state SUSPENDED",
        )

    def test_quota_refusal(self) -> None:
        uid = self.h.ok("one.user.allocate", "q", "pw", "", [1])
        vid = self.h.ok("one.vm.allocate", VM_TEMPLATE)
        self.h.ok("one.vm.chown", vid, uid, -1)
        self.h.ok("one.user.quota", uid, 'VM=[MEMORY="300"]')
        reply = self.err("one.vm.resize", vid, 'MEMORY="512"')
        self.assertEqual(reply[1], 0x0200)
        self.assertIn("MEMORY", reply[0])
        self.assertEqual(self.template(vid).findtext("MEMORY"), "256")


class LiveResizeTests(SystemCase):
    def setUp(self) -> None:
        self.h = OnedHarness(
            'VM_MAD=[ NAME="live", EXECUTABLE="one_vmm_dummy", TYPE="xml", LIVE_RESIZE="yes" ]'
        )
        self.addCleanup(self.h.close)
        self.h.ok("one.datastore.update", 0, 'TM_MAD="dummy"', 1)
        self.hid = self.h.ok("one.host.allocate", "host01", "dummy", "live", -1)
        self.drivers = FakeVmDrivers()
        self.start_managers(self.h.core, self.drivers)

    def test_hotplug_resize_success_and_failure(self) -> None:
        vid = self.running_vm()
        self.host_capacity(400, 4 * 1024 * 1024)
        self.h.ok("one.vm.resize", vid, 'CPU="1"\nMEMORY="512"')
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.HOTPLUG_RESIZE))
        self.assertEqual(self.template(vid).findtext("RESIZE/MEMORY"), "256")
        self.assertEqual(self.share()[:2], (100, 512 * 1024))
        self.drivers.reply("RESIZE", vid)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assertIsNone(self.template(vid).find("RESIZE"))
        self.h.ok("one.vm.resize", vid, 'CPU="2"\nMEMORY="1024"')
        self.flush()
        self.drivers.reply("RESIZE", vid, success=False, info="-")
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assertEqual(self.template(vid).findtext("CPU"), "1")
        self.assertEqual(self.template(vid).findtext("MEMORY"), "512")
        self.assertEqual(self.share()[:2], (100, 512 * 1024))
        self.h.ok("one.vm.resize", vid, 'VCPU="4"')
        self.restart()
        self.assertEqual(self.drivers.actions(), ["RESIZE"])
        self.settle()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assertEqual(self.template(vid).findtext("VCPU"), "4")


class UpdateConfTests(SystemCase):
    def test_running_context_change_goes_live(self) -> None:
        vid = self.h.ok("one.vm.allocate", CTX_TEMPLATE)
        self.h.ok("one.vm.deploy", vid, self.hid)
        self.settle()
        self.h.ok("one.vm.updateconf", vid, 'OS=[ BOOT="" , ARCH="aarch64" ]\nMEMORY="9"', 1)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assertEqual(self.template(vid).findtext("OS/ARCH"), "aarch64")
        self.assertEqual(self.template(vid).findtext("MEMORY"), "256")
        self.assertEqual(self.drivers.actions(), [])
        self.h.ok("one.vm.updateconf", vid, 'CONTEXT=[ VAR1="b", NETWORK="YES" ]', 1)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.HOTPLUG))
        [sent] = self.drivers.pending("UPDATECONF")
        doc = etree.fromstring(sent.document.encode())
        self.assertTrue((doc.findtext("TM_COMMAND") or "").startswith("CONTEXT dummy "))
        self.assertTrue((doc.findtext("DISK_TARGET_PATH") or "").endswith(f"/{vid}/disk.0"))
        self.drivers.reply("UPDATECONF", vid)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        ctx = self.template(vid).find("CONTEXT")
        assert ctx is not None
        self.assertEqual(ctx.findtext("VAR1"), "b")
        self.assertEqual(ctx.findtext("TARGET"), "sda")
        self.assertEqual(ctx.findtext("DISK_ID"), "0")

    def test_restart_reissues_updateconf_and_exec(self) -> None:
        conf = self.h.ok("one.vm.allocate", CTX_TEMPLATE)
        self.h.ok("one.vm.deploy", conf, self.hid)
        self.settle()
        run = self.running_vm()
        self.h.ok("one.vm.updateconf", conf, 'CONTEXT=[ VAR1="c" ]', 1)
        self.h.ok("one.vm.exec", run, "ls", "")
        self.restart()
        self.assertEqual(sorted(self.drivers.actions()), ["EXEC", "UPDATECONF"])
        self.settle()
        self.assertEqual(self.states(conf), (S.ACTIVE, L.RUNNING))
        self.assertEqual(self.template(run).findtext("QEMU_GA_EXEC/STATUS"), "EXECUTING")
        self.h.ok("one.vm.cancelexec", run)
        self.restart()
        self.assertEqual(self.drivers.actions(), ["EXEC_CANCEL"])
        self.settle()
        self.assertEqual(self.template(run).findtext("QEMU_GA_EXEC/STATUS"), "CANCELLED")

    def test_backup_config(self) -> None:
        """BACKUP_CONFIG goes to BACKUPS as Backups::parse writes it."""
        vid = self.running_vm()
        self.h.ok("one.vm.updateconf", vid, 'BACKUP_CONFIG=[ KEEP_LAST="3", MODE="increment" ]', 0)
        config = self.vm(vid).find("BACKUPS/BACKUP_CONFIG")
        assert config is not None
        self.assertEqual(
            [(c.tag, c.text) for c in config],
            [
                ("BACKUP_VOLATILE", "NO"),
                ("FS_FREEZE", "NONE"),
                ("INCREMENTAL_BACKUP_ID", "-1"),
                ("INCREMENT_MODE", "CBT"),
                ("INTERACTIVE", "NO"),
                ("KEEP_LAST", "3"),
                ("LAST_INCREMENT_ID", "-1"),
                ("MODE", "INCREMENT"),
            ],
        )
        self.assertIsNotNone(self.vm(vid).find("BACKUPS/BACKUP_IDS"))
        self.valid(vid)
        self.assertEqual(
            self.err("one.vm.snapshotcreate", vid, "s")[0],
            '[one.vm.snapshotcreate] Action "snapshot-create" is not compatible with '
            "incremental backups",
        )
        self.h.ok("one.vm.updateconf", vid, 'BACKUP_CONFIG=[ MODE="FULL" ]', 1)
        self.h.ok("one.vm.snapshotcreate", vid, "s")
        self.settle()
        self.assertEqual(
            self.err("one.vm.updateconf", vid, 'BACKUP_CONFIG=[ MODE="INCREMENT" ]', 1)[0],
            "[one.vm.updateconf] VM cannot use backup increment mode, it has snapshots.",
        )
        self.assertEqual(
            self.err("one.vm.updateconf", vid, 'BACKUP_CONFIG=[ DISK_IDS="4" ]', 1)[0],
            "[one.vm.updateconf] Invalid DISK_IDS, disk 4 cannot be backed up",
        )

    def test_refusals(self) -> None:
        vid = self.h.ok("one.vm.allocate", VM_TEMPLATE)
        self.assertEqual(
            self.err("one.vm.updateconf", vid, 'OS=[ARCH="x"]', 2),
            ("[one.vm.updateconf] Wrong update type", 0x1000),
        )
        self.assertEqual(
            self.err("one.vm.updateconf", vid, 'CONTEXT=[A="1"]', 0),
            (
                "[one.vm.updateconf] Virtual machine does not have context, cannot add a new one.",
                0x2000,
            ),
        )
        self.assertEqual(
            self.err("one.vm.updateconf", vid, 'OS=[BOOT="disk7"]', 0)[0],
            "[one.vm.updateconf] Wrong OS/BOOT value. Device with DISK_ID 7 not found",
        )
        self.h.ok("one.vm.updateconf", vid, 'GRAPHICS=[TYPE="VNC", PASSWD="0123456789"]', 0)
        self.assertEqual(self.template(vid).findtext("GRAPHICS/TYPE"), "VNC")
        self.assertEqual(self.template(vid).findtext("GRAPHICS/PASSWD"), "01234567")
        self.assertEqual(
            self.err("one.vm.updateconf", vid, 'VIDEO=[TYPE="vga", RESOLUTION="big"]', 0)[0],
            "[one.vm.updateconf] Invalid RESOLUTION string format",
        )
        self.assertIsNone(self.template(vid).find("OS"))
        running = self.running_vm()
        self.action("suspend", running)
        self.settle()
        self.assertEqual(
            self.err("one.vm.updateconf", running, 'OS=[ARCH="x"]', 0)[0],
            "[one.vm.updateconf] configuration cannot be updated in state SUSPENDED",
        )


class PciTests(SystemCase):
    def test_attach_detach_in_poweroff(self) -> None:
        vid = self.poweroff_vm()
        self.host_capacity(400, 4 * 1024 * 1024, [PCI_DEVICE])
        self.h.ok("one.vm.attachpci", vid, 'PCI=[ SHORT_ADDRESS="00:02.0" ]')
        self.valid(vid)
        pci = self.template(vid).find("PCI")
        assert pci is not None
        self.assertEqual(pci.findtext("PCI_ID"), "0")
        self.assertEqual(pci.findtext("ADDRESS"), "0000:00:02:0")
        self.assertEqual(pci.findtext("VM_BUS"), "0x01")
        self.assertEqual(pci.findtext("VM_SLOT"), "0x01")
        self.assertEqual(pci.findtext("VM_ADDRESS"), "01:01.0")
        host = etree.fromstring(self.h.ok("one.host.info", self.hid).encode())
        self.assertEqual(host.findtext("HOST_SHARE/PCI_DEVICES/PCI/VMID"), str(vid))
        records = self.vm(vid).findall("HISTORY_RECORDS/HISTORY")
        self.assertEqual(records[-2].findtext("ACTION"), "58")
        self.assertEqual(
            self.err("one.vm.attachpci", vid, 'PCI=[ SHORT_ADDRESS="00:02.0" ]')[0],
            "[one.vm.attachpci] Cannot assign PCI device in host. Check address and free devices",
        )
        self.h.ok("one.vm.detachpci", vid, 0)
        self.assertIsNone(self.template(vid).find("PCI"))
        host = etree.fromstring(self.h.ok("one.host.info", self.hid).encode())
        self.assertEqual(host.findtext("HOST_SHARE/PCI_DEVICES/PCI/VMID"), "-1")
        self.assertEqual(
            self.err("one.vm.detachpci", vid, 0)[0], "[one.vm.detachpci] PCI device not found"
        )

    def host_pci_vmid(self) -> str | None:
        host = etree.fromstring(self.h.ok("one.host.info", self.hid).encode())
        return host.findtext("HOST_SHARE/PCI_DEVICES/PCI/VMID")

    def test_device_follows_host_capacity(self) -> None:
        """Undeploy frees the host device, the next deploy takes it again, terminate frees it."""
        vid = self.poweroff_vm()
        self.host_capacity(400, 4 * 1024 * 1024, [PCI_DEVICE])
        self.h.ok("one.vm.attachpci", vid, 'PCI=[ VENDOR="8086" ]')
        self.assertEqual(self.host_pci_vmid(), str(vid))
        self.action("undeploy", vid)
        self.settle()
        self.assertEqual(self.states(vid), (S.UNDEPLOYED, L.LCM_INIT))
        self.assertEqual(self.host_pci_vmid(), "-1")
        self.h.ok("one.vm.deploy", vid, self.hid)
        self.settle()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assertEqual(self.host_pci_vmid(), str(vid))
        self.assertEqual(self.template(vid).findtext("PCI/ADDRESS"), "0000:00:02:0")
        self.action("terminate-hard", vid)
        self.settle()
        self.assertEqual(self.host_pci_vmid(), "-1")

    def test_allocated_pci_is_placed_at_deploy(self) -> None:
        """PCI devices of the allocate template get PCI_IDs; deploy takes host devices."""
        self.host_capacity(400, 4 * 1024 * 1024, [PCI_DEVICE])
        vid = self.h.ok("one.vm.allocate", VM_TEMPLATE + '\nPCI=[ CLASS="0403" ]')
        pci = self.template(vid).find("PCI")
        assert pci is not None
        self.assertEqual((pci.findtext("PCI_ID"), pci.findtext("VM_BUS")), ("0", "0x01"))
        self.h.ok("one.vm.deploy", vid, self.hid)
        self.settle()
        pci = self.template(vid).find("PCI")
        assert pci is not None
        self.assertEqual(pci.findtext("ADDRESS"), "0000:00:02:0")
        self.assertEqual(pci.findtext("VM_ADDRESS"), "01:01.0")
        self.assertEqual(self.host_pci_vmid(), str(vid))
        self.valid(vid)
        self.assertEqual(
            self.err("one.vm.allocate", VM_TEMPLATE + '\nPCI=[ ROOT="x", CLASS="1" ]')[0],
            "[one.vm.allocate] Unknown PCI root mode, has to be SHARED or DEDICATED",
        )

    def test_refusals(self) -> None:
        vid = self.running_vm()
        self.assertEqual(
            self.err("one.vm.attachpci", vid, 'PCI=[ SHORT_ADDRESS="00:02.0" ]')[0],
            "[one.vm.attachpci] VM in wrong state, it has to be in poweroff",
        )
        self.assertEqual(
            self.err("one.vm.attachpci", vid, 'DISK=[ A="1" ]')[0],
            "[one.vm.attachpci] PCI attribute not found",
        )
        self.assertEqual(
            self.err("one.vm.attachpci", vid, 'PCI=[ A="1" ]')[0],
            "[one.vm.attachpci] SHORT_ADDRESS, DEVICE, VENDOR or CLASS must be defined for PCI.",
        )
        self.assertEqual(
            self.err("one.vm.attachpci", vid, 'PCI=[ VENDOR="zz" ]')[0],
            "[one.vm.attachpci] Wrong Hex value for PCI attribute VENDOR",
        )


class ExecTests(SystemCase):
    def test_exec_cancel_retry(self) -> None:
        vid = self.running_vm()
        self.h.ok("one.vm.exec", vid, "ls -l", "in")
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.HOTPLUG))
        self.assertEqual(self.template(vid).findtext("QEMU_GA_EXEC/COMMAND"), "ls -l")
        self.drivers.reply("EXEC", vid)
        self.flush()
        self.assertEqual(self.states(vid), (S.ACTIVE, L.RUNNING))
        self.assertEqual(self.template(vid).findtext("QEMU_GA_EXEC/STATUS"), "EXECUTING")
        self.valid(vid)
        self.assertEqual(
            self.err("one.vm.exec", vid, "x", ""),
            (
                "[one.vm.exec] Could not execute command, a command is already being executed",
                ACTION,
            ),
        )
        self.h.ok("one.vm.cancelexec", vid)
        self.flush()
        self.drivers.reply("EXEC_CANCEL", vid)
        self.flush()
        self.assertEqual(self.template(vid).findtext("QEMU_GA_EXEC/STATUS"), "CANCELLED")
        self.assertEqual(
            self.err("one.vm.cancelexec", vid)[0],
            "[one.vm.cancelexec] Could not cancel command, there is no command being executed",
        )
        self.h.ok("one.vm.retryexec", vid)
        self.flush()
        [sent] = self.drivers.pending("EXEC")
        doc = etree.fromstring(sent.document.encode())
        self.assertEqual(doc.findtext("VM/TEMPLATE/QEMU_GA_EXEC/COMMAND"), "ls -l")
        self.assertEqual(doc.findtext("VM/TEMPLATE/QEMU_GA_EXEC/STDIN"), "in")
        self.drivers.reply("EXEC", vid, success=False, info="guest agent down")
        self.flush()
        self.assertEqual(self.template(vid).findtext("QEMU_GA_EXEC/STATUS"), "ERROR")
        actions = [r.findtext("ACTION") for r in self.vm(vid).findall("HISTORY_RECORDS/HISTORY")]
        self.assertEqual(actions, ["61", "63", "61", "0"])
        self.action("poweroff", vid)
        self.settle()
        self.assertEqual(
            self.err("one.vm.exec", vid, "ls", "")[0],
            "[one.vm.exec] Could not execute command, VM must be in running",
        )


class ExecReportTests(SystemCase):
    def test_exec_vm_report_updates_qemu_ga_exec(self) -> None:
        """An EXEC_VM probe report through the information manager's intake."""
        from oned.managers.information.manager import FLUSH_DELAY, InformationManager

        from .test_information import FakeDrivers, datagram, messages

        im_drivers = FakeDrivers()
        im = InformationManager(self.h.core, im_drivers, self.h.clock)
        self.h.core.information_manager = im
        result_of(Deferred.fromCoroutine(im.start()))
        self.addCleanup(lambda: result_of(Deferred.fromCoroutine(im.stop())))
        im_drivers.reply("START_MONITOR", "SUCCESS", self.hid, messages("host01"))
        self.h.clock.advance(FLUSH_DELAY)
        vid = self.running_vm()
        self.h.ok("one.vm.exec", vid, "hostname", "")
        self.settle()
        text = f'VM=[ ID="{vid}", STATUS="DONE", RETURN_CODE="0", STDOUT="aG9zdDAx" ]\n'
        text += 'VM=[ ID="999", STATUS="DONE" ]\n'
        im.reports.datagram(datagram("EXEC_VM", self.hid, 1001, text))
        self.flush()
        exec_block = self.template(vid).find("QEMU_GA_EXEC")
        assert exec_block is not None
        self.assertEqual(
            {c.tag: c.text for c in exec_block},
            {
                "COMMAND": "hostname",
                "RETURN_CODE": "0",
                "STATUS": "DONE",
                "STDIN": "",
                "STDOUT": "aG9zdDAx",
            },
        )
        self.h.ok("one.vm.exec", vid, "uptime", "")
        self.flush()
        self.assertEqual(self.drivers.actions(), ["EXEC"])
