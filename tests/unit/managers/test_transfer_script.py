"""Transfer scripts as ``TransferManager.cc`` writes them, per TM_MAD (shared, ssh, local,
qcow2), and the deploy-time TM_MAD_SYSTEM check (``check_tm_mad_disks``)."""

from __future__ import annotations

import unittest
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

from oned.managers.transfer import script
from oned.objects.history import History
from oned.objects.vm import VirtualMachine
from oned.template import Template
from oned.template.parser import parse_text

FE = "frontend"
LOC = "/var/lib/one//datastores"
SYS = f"{LOC}/0/7"
IMG = f"{LOC}/1"


def make_vm(text: str, tm_mad: str, ds_id: int = 0, host: str = "host01") -> VirtualMachine:
    vm = VirtualMachine(7, "v")
    vm.template = parse_text(text)
    vm.history.append(History(7, 0, host, 3, 0, 1, 0, "kvm", tm_mad, ds_id))
    return vm


def disks(tm_mad: str) -> str:
    return (
        f'DISK=[DISK_ID="0",IMAGE_ID="3",SOURCE="{IMG}/aaa",CLONE="YES",TM_MAD="{tm_mad}",'
        'DATASTORE_ID="1",TYPE="FILE"]\n'
        f'DISK=[DISK_ID="1",IMAGE_ID="4",SOURCE="{IMG}/bbb",CLONE="NO",SAVE="YES",'
        f'TM_MAD="{tm_mad}",DATASTORE_ID="1",PERSISTENT="YES"]\n'
        'DISK=[DISK_ID="2",TYPE="swap",SIZE="1024"]\n'
        'DISK=[DISK_ID="3",TYPE="fs",SIZE="10",FORMAT="qcow2"]\n'
    )


class PerTmMadTests(unittest.TestCase):
    def test_shared(self) -> None:
        vm = make_vm(disks("shared"), "shared")
        self.assertEqual(
            script.prolog(vm, FE, SYS).lines,
            [
                f"CLONE shared {FE}:{IMG}/aaa host01:{SYS}/disk.0 7 1",
                f"LN shared {FE}:{IMG}/bbb host01:{SYS}/disk.1 7 1",
                f"MKSWAP shared 1024 host01:{SYS}/disk.2 7 0",
                f"MKIMAGE shared 10 qcow2 host01:{SYS}/disk.3 7 0",
            ],
        )
        self.assertEqual(
            script.epilog(vm, "host01", SYS).lines,
            [
                f"DELETE shared host01:{SYS}/disk.0 7 1",
                f"MVDS shared host01:{SYS}/disk.1 {IMG}/bbb 7 1",
                f"DELETE shared host01:{SYS}/disk.2 7 0",
                f"DELETE shared host01:{SYS}/disk.3 7 0",
                f"DELETE shared host01:{SYS} 7 0",
            ],
        )

    def test_ssh_system_with_shared_images(self) -> None:
        """The image datastore's TM_MAD (shared) with the system one (ssh) as suffix."""
        vm = make_vm(disks("shared"), "ssh")
        for disk in vm.template.vectors("DISK")[:2]:
            disk["TM_MAD_SYSTEM"] = "ssh"
        self.assertEqual(
            script.prolog(vm, FE, SYS).lines[:3],
            [
                f"CLONE.ssh shared {FE}:{IMG}/aaa host01:{SYS}/disk.0 7 1",
                f"LN.ssh shared {FE}:{IMG}/bbb host01:{SYS}/disk.1 7 1",
                f"MKSWAP ssh 1024 host01:{SYS}/disk.2 7 0",
            ],
        )
        self.assertEqual(
            script.epilog(vm, FE, SYS).lines,
            [
                f"DELETE.ssh shared {FE}:{SYS}/disk.0 7 1",
                f"MVDS.ssh shared {FE}:{SYS}/disk.1 {IMG}/bbb 7 1",
                f"DELETE ssh {FE}:{SYS}/disk.2 7 0",
                f"DELETE ssh {FE}:{SYS}/disk.3 7 0",
                f"DELETE ssh {FE}:{SYS} 7 0",
            ],
        )
        # stop and resume keep the suffix once a disk had it (as oned's loops do)
        self.assertEqual(
            script.epilog_stop(vm, FE, SYS).lines,
            [
                f"MV.ssh shared host01:{SYS}/disk.0 {FE}:{SYS}/disk.0 7 1",
                f"MV.ssh shared host01:{SYS}/disk.1 {FE}:{SYS}/disk.1 7 1",
                f"MV.ssh ssh host01:{SYS}/disk.2 {FE}:{SYS}/disk.2 7 0",
                f"MV.ssh ssh host01:{SYS}/disk.3 {FE}:{SYS}/disk.3 7 0",
                f"MV ssh host01:{SYS} {FE}:{SYS} 7 0",
            ],
        )

    def test_local_and_resume_from_previous_directory(self) -> None:
        vm = make_vm(disks("local"), "local", ds_id=100, host="host02")
        prev = f"{LOC}/0/7"
        new = f"{LOC}/100/7"
        self.assertEqual(
            script.prolog_resume(vm, FE, prev, new).lines,
            [
                f"MV local {FE}:{prev}/disk.0 host02:{new}/disk.0 7 1",
                f"MV local {FE}:{prev}/disk.1 host02:{new}/disk.1 7 1",
                f"MV local {FE}:{prev}/disk.2 host02:{new}/disk.2 7 100",
                f"MV local {FE}:{prev}/disk.3 host02:{new}/disk.3 7 100",
                f"MV local {FE}:{prev} host02:{new} 7 100",
            ],
        )
        self.assertEqual(
            script.epilog_delete(vm, "host02", new, "local", 100).lines,
            [
                f"DELETE local host02:{new}/disk.0 7 1",
                f"DELETE local host02:{new}/disk.1 7 1",
                f"DELETE local host02:{new}/disk.2 7 100",
                f"DELETE local host02:{new}/disk.3 7 100",
                f"DELETE local host02:{new} 7 100",
            ],
        )

    def test_qcow2_and_plugin_sources(self) -> None:
        """A SOURCE with a ``:`` is the TM plugin's own address and is not prefixed."""
        vm = make_vm(
            'DISK=[DISK_ID="0",SOURCE="nfs01:/exports/img",CLONE="yes",TM_MAD="qcow2",'
            'DATASTORE_ID="1",TM_MAD_SYSTEM="ssh"]',
            "ssh",
        )
        self.assertEqual(
            script.prolog(vm, FE, SYS).lines,
            [f"CLONE.ssh qcow2 nfs01:/exports/img host01:{SYS}/disk.0 7 1"],
        )

    def test_kernel_and_initrd_from_a_datastore(self) -> None:
        vm = make_vm(
            'OS=[KERNEL_DS="$FILE[IMAGE_ID=5]",KERNEL_DS_SOURCE="/f/k",KERNEL_DS_DSID="2",'
            'KERNEL_DS_TM="ssh",INITRD_DS="$FILE[IMAGE_ID=6]",INITRD_DS_SOURCE="/f/i"]',
            "ssh",
        )
        result = script.prolog(vm, FE, SYS)
        self.assertEqual(result.lines, [f"CLONE ssh {FE}:/f/k host01:{SYS}/kernel 7 2"])
        self.assertEqual(result.os_updates, {"KERNEL": f"{SYS}/kernel"})

    def test_skips_warnings_and_errors(self) -> None:
        vm = make_vm(
            'DISK=[DISK_ID="0",TYPE="swap"]\nDISK=[DISK_ID="1",TYPE="fs",SIZE="1"]\n'
            'DISK=[DISK_ID="2",TYPE="FILESYSTEM",SOURCE="/x"]',
            "shared",
        )
        result = script.prolog(vm, FE, SYS)
        self.assertEqual(result.lines, [])
        self.assertEqual(
            result.warnings,
            ["No size in swap image, skipping", "No size or format in FS, skipping"],
        )
        broken = make_vm('DISK=[DISK_ID="4",SOURCE="/x",TM_MAD="shared",CLONE="NO"]', "shared")
        with self.assertRaises(script.TransferError) as ctx:
            script.prolog(broken, FE, SYS)
        self.assertEqual(
            str(ctx.exception),
            "missing DISK mandatory attributes (SOURCE, TM_MAD, CLONE, DATASTORE_ID) "
            "for VM 7, DISK 4",
        )
        saved = make_vm('DISK=[DISK_ID="0",SAVE="YES",TM_MAD="shared",DATASTORE_ID="1"]', "shared")
        result = script.epilog(saved, "host01", SYS)
        self.assertEqual(result.lines, [f"DELETE shared host01:{SYS} 7 0"])
        self.assertEqual(result.errors, ["No SOURCE to save disk image"])


@dataclass
class _Ds:
    template: Template = field(default_factory=Template)


class CheckTmMadTests(unittest.TestCase):
    def core(self, ds_text: str) -> Any:
        ds = _Ds(parse_text(ds_text))
        return SimpleNamespace(datastores=SimpleNamespace(get=lambda oid: ds if oid == 1 else None))

    def test_disks_take_the_system_mode_targets(self) -> None:
        core = self.core(
            'TM_MAD="shared"\nLN_TARGET="NONE"\nCLONE_TARGET="SYSTEM"\nTM_MAD_SYSTEM="ssh"\n'
            'LN_TARGET_SSH="SYSTEM"\nCLONE_TARGET_SSH="SYSTEM"\nDISK_TYPE_SSH="FILE"'
        )
        tmpl = parse_text(disks("shared"))
        self.assertEqual(script.check_tm_mad_disks(core, tmpl, "ssh"), "")
        first, second, swap, _fs = tmpl.vectors("DISK")
        for disk in (first, second):
            self.assertEqual(
                [disk[k] for k in ("CLONE_TARGET", "LN_TARGET", "DISK_TYPE", "TM_MAD_SYSTEM")],
                ["SYSTEM", "SYSTEM", "FILE", "ssh"],
            )
        self.assertNotIn("TM_MAD_SYSTEM", swap)
        self.assertEqual(tmpl.get("TM_MAD_SYSTEM"), "ssh")
        # once set, later deploys keep it and touch no disk
        self.assertEqual(script.check_tm_mad_disks(core, tmpl, "shared"), "")
        self.assertEqual(tmpl.get("TM_MAD_SYSTEM"), "ssh")

    def test_same_tm_mad_and_refusals(self) -> None:
        core = self.core('TM_MAD="shared"\nLN_TARGET="NONE"\nCLONE_TARGET="SYSTEM"')
        tmpl = parse_text(disks("shared"))
        self.assertEqual(script.check_tm_mad_disks(core, tmpl, "shared"), "")
        self.assertNotIn("TM_MAD_SYSTEM", tmpl.vectors("DISK")[0])
        tmpl = parse_text(disks("shared"))
        self.assertEqual(
            script.check_tm_mad_disks(core, tmpl, "ssh"),
            "Image Datastore does not support transfer mode: ssh",
        )
        self.assertIsNone(tmpl.get("TM_MAD_SYSTEM"))
        tmpl = parse_text(disks("shared").replace('DATASTORE_ID="1"', 'DATASTORE_ID="9"'))
        self.assertEqual(script.check_tm_mad_disks(core, tmpl, "ssh"), "Datastore does not exist")
        huge = disks("shared").replace('DATASTORE_ID="1"', 'DATASTORE_ID="99999999999999999999"')
        tmpl = parse_text(huge)
        self.assertEqual(script.check_tm_mad_disks(core, tmpl, "ssh"), "")  # not a number
        vm = make_vm(huge, "shared")
        self.assertEqual(
            script.epilog(vm, "h", SYS).lines,
            [  # disk 0 is skipped (no DATASTORE_ID number); MVDS copies the text as oned
                f"MVDS shared h:{SYS}/disk.1 {IMG}/bbb 7 99999999999999999999",
                f"DELETE shared h:{SYS}/disk.2 7 0",
                f"DELETE shared h:{SYS}/disk.3 7 0",
                f"DELETE shared h:{SYS} 7 0",
            ],
        )


def FE_NAME(h: Any) -> str:  # noqa: N802
    return str(h.core.lifecycle_manager.tm.frontend)


class PrologThroughTheManagersTests(unittest.TestCase):
    """one.vm.deploy with a disk the prolog cannot transfer: oned's text in the VM log,
    PROLOG_FAILURE, and no TRANSFER sent (fake clock, scripted drivers)."""

    def setUp(self) -> None:
        from twisted.internet.defer import Deferred

        from oned.managers.lifecycle.testing import FakeVmDrivers
        from oned.managers.lifecycle.wiring import use_drivers
        from oned.testing.rpc import OnedHarness, result_of

        self.h = h = OnedHarness()
        self.addCleanup(h.close)
        h.ok("one.datastore.update", 0, 'TM_MAD="dummy"', 1)
        self.drivers = FakeVmDrivers()
        self.lcm = use_drivers(h.core, self.drivers)
        result_of(Deferred.fromCoroutine(self.lcm.start()))
        self.addCleanup(self.lcm.log_writer.stop)
        self.hid = h.ok("one.host.allocate", "host01", "dummy", "dummy", -1)

    def test_kernel_copied_from_a_datastore_becomes_os_kernel(self) -> None:
        h = self.h
        vid = h.ok(
            "one.vm.allocate",
            'NAME="v"\nCPU="1"\nMEMORY="64"\nOS=[KERNEL_DS="$FILE[IMAGE_ID=5]",'
            'KERNEL_DS_SOURCE="/f/k",KERNEL_DS_DSID="2",KERNEL_DS_TM="dummy"]',
        )
        h.ok("one.vm.deploy", vid, self.hid)
        for _ in range(10):
            h.core.eventually.flush()
        [transfer] = self.drivers.pending("TRANSFER")
        lines = Path(transfer.payload).read_text().splitlines()
        sysdir = f"{h.config.locations.var}//datastores/0/{vid}"
        self.assertEqual(lines, [f"CLONE dummy {FE_NAME(h)}:/f/k host01:{sysdir}/kernel {vid} 2"])
        doc = h.ok("one.vm.info", vid)
        self.assertIn(f"<KERNEL><![CDATA[{sysdir}/kernel]]></KERNEL>", doc)

    def test_missing_disk_attributes_fail_the_prolog(self) -> None:
        from oned.objects.vm import LcmState

        h, drivers, lcm, hid = self.h, self.drivers, self.lcm, self.hid
        vid = h.ok(
            "one.vm.allocate",
            'NAME="v"\nCPU="1"\nMEMORY="64"\nDISK=[SOURCE="/x",TM_MAD="dummy",DATASTORE_ID="1"]',
        )
        h.ok("one.vm.deploy", vid, hid)
        for _ in range(10):
            h.core.eventually.flush()
        self.assertEqual(drivers.pending("TRANSFER"), [])
        doc = h.ok("one.vm.info", vid)
        self.assertIn(f"<LCM_STATE>{int(LcmState.PROLOG_FAILURE)}</LCM_STATE>", doc)
        lcm.log_writer.flush()
        log = (h.config.locations.var / "vms" / str(vid) / "vm.log").read_text()
        self.assertIn(
            "[TrM][E]: missing DISK mandatory attributes (SOURCE, TM_MAD, CLONE, "
            f"DATASTORE_ID) for VM {vid}, DISK 0\n",
            log,
        )
        self.assertTrue(log.rstrip().endswith("New LCM state is PROLOG_FAILURE"))


class FrontendNameTests(unittest.TestCase):
    def test_hostname_from_oned_conf_or_the_canonical_name(self) -> None:
        import socket

        conf = {"HOSTNAME": "fe.example"}
        core = SimpleNamespace(config=SimpleNamespace(get=lambda n, d=None: conf.get(n, d)))
        self.assertEqual(script.nebula_hostname(core), "fe.example")
        conf.clear()
        canon = [(socket.AF_INET, socket.SOCK_STREAM, 6, "node1.lan", ("127.0.0.1", 0))]
        with (
            mock.patch("socket.gethostname", return_value="node1"),
            mock.patch("socket.getaddrinfo", return_value=canon) as lookup,
        ):
            self.assertEqual(script.nebula_hostname(core), "node1.lan")
        self.assertEqual(lookup.call_args.args[0], "node1")
        with (
            mock.patch("socket.gethostname", return_value="node1"),
            mock.patch("socket.getaddrinfo", side_effect=socket.gaierror("no")),
        ):
            self.assertEqual(script.nebula_hostname(core), "node1")
