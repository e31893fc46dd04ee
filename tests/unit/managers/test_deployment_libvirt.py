"""The libvirt deployment file for VM_MAD types kvm/qemu (``LibVirtDriverKVM.cc``):
golden documents derived from OpenNebula's writer, element by element, and the
driver-configuration precedence (VM > host > cluster > vmm_exec_kvm.conf)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import unittest
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from oned.managers.vmm.deployment import DeploymentError, deployment, driver_type
from oned.objects.history import History
from oned.objects.vm import VirtualMachine
from oned.template import Template
from oned.template.parser import parse_text
from oned.testing import rpc

KVM = """
VM_MAD = [ NAME = "kvm", SUNSTONE_NAME = "KVM", EXECUTABLE = "one_vmm_exec",
  ARGUMENTS = "-t 15 -r 0 kvm -p", DEFAULT = "vmm_exec/vmm_exec_kvm.conf", TYPE = "kvm",
  KEEP_SNAPSHOTS = "yes" ]
VM_MAD = [ NAME = "qemu", EXECUTABLE = "one_vmm_exec", ARGUMENTS = "-t 15 -r 0 kvm",
  DEFAULT = "vmm_exec/vmm_exec_kvm.conf", TYPE = "qemu" ]
VM_MAD = [ NAME = "bare", EXECUTABLE = "one_vmm_exec", TYPE = "KVM" ]
DATASTORE_LOCATION = "/var/lib/one//datastores"
"""

NOW = 1_700_000_123
SYS = "/var/lib/one//datastores/0/7"


@dataclass
class _Obj:
    template: Template = field(default_factory=Template)


def make_core(root: Path, hosts: str = "", clusters: str = "", ds: str = "") -> Any:
    def pool(text: str) -> Any:
        obj = _Obj(parse_text(text))
        return SimpleNamespace(get=lambda oid: obj)

    return SimpleNamespace(
        config=rpc.test_config(root, KVM),
        hosts=pool(hosts),
        clusters=pool(clusters),
        datastores=pool(ds),
        now=lambda: NOW,
    )


def make_vm(text: str, vm_mad: str = "kvm") -> VirtualMachine:
    vm = VirtualMachine(7, "v", uid=2, gid=1, uname="alice", gname="users", stime=1_700_000_000)
    vm.template = parse_text(text)
    vm.history.append(History(7, 0, "host01", 3, 0, NOW, 0, vm_mad, "shared", 0))
    return vm


BASE = 'NAME="v"\nCPU="0.5"\nVCPU="2"\nMEMORY="512"\n'

FULL = (
    BASE + 'DISK=[DISK_ID="0",TARGET="vda",SOURCE="/var/lib/one//datastores/1/abc",CLONE="YES",'
    'TM_MAD="shared",DATASTORE_ID="1",TYPE="FILE",DRIVER="qcow2",IMAGE_ID="0"]\n'
    'DISK=[DISK_ID="1",TARGET="sda",TYPE="CDROM",SOURCE="/x/iso",CLONE="NO",READONLY="YES"]\n'
    'CONTEXT=[DISK_ID="2",TARGET="sdb",NETWORK="YES"]\n'
    'NIC=[NIC_ID="0",BRIDGE="br0",MAC="02:00:c0:a8:00:02",IP="192.168.0.2",TARGET="one-7-0",'
    'BRIDGE_TYPE="linux"]\n'
    'GRAPHICS=[TYPE="VNC",LISTEN="0.0.0.0",PORT="5907"]\n'
)

ROOT_PORTS = "".join(
    f"\t\t<controller type='pci' index='{i}' model='pcie-root-port'/>\n" for i in range(1, 17)
)

METADATA = (
    "\t<metadata>\n"
    '\t\t<one:vm xmlns:one="http://opennebula.org/xmlns/libvirt/1.0">\n'
    f"\t\t\t<one:system_datastore><![CDATA[{SYS}]]></one:system_datastore>\n"
    "\t\t\t<one:name><![CDATA[v]]></one:name>\n"
    "\t\t\t<one:uname><![CDATA[alice]]></one:uname>\n"
    "\t\t\t<one:uid>2</one:uid>\n"
    "\t\t\t<one:gname><![CDATA[users]]></one:gname>\n"
    "\t\t\t<one:gid>1</one:gid>\n"
    "\t\t\t<one:opennebula_version>7.5.80</one:opennebula_version>\n"
    "\t\t\t<one:stime>1700000000</one:stime>\n"
    f"\t\t\t<one:deployment_time>{NOW}</one:deployment_time>\n"
    "\t\t\t<one:pci_devices></one:pci_devices>\n"
    "\t\t</one:vm>\n"
    "\t</metadata>\n"
    "</domain>\n"
)

GOLDEN_FULL = (
    "<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\n"
    "\t<name>one-7</name>\n"
    "\t<title>v</title>\n"
    "\t<vcpu><![CDATA[2]]></vcpu>\n"
    "\t<cputune>\n"
    "\t\t<shares>512</shares>\n"
    "\t</cputune>\n"
    "\t<memory>524288</memory>\n"
    "\t<os>\n"
    "\t\t<type arch='x86_64' machine='q35'>hvm</type>\n"
    "\t</os>\n"
    "\t<devices>\n"
    "\t\t<emulator><![CDATA[/usr/bin/qemu-kvm-one]]></emulator>\n"
    "\t\t<disk type='file' device='disk'>\n"
    f"\t\t\t<source file='{SYS}/disk.0'/>\n"
    "\t\t\t<target dev='vda' bus='virtio'/>\n"
    "\t\t\t<driver name='qemu' type='qcow2' cache='none' discard='unmap'/>\n"
    "\t\t</disk>\n"
    "\t\t<disk type='file' device='cdrom'>\n"
    f"\t\t\t<source file='{SYS}/disk.1'/>\n"
    "\t\t\t<target dev='sda' bus='sata'/>\n"
    "\t\t\t<readonly/>\n"
    "\t\t\t<driver name='qemu' type='raw' cache='none' discard='unmap'/>\n"
    "\t\t\t<address type='drive' controller='1' bus='0' target='0' unit='0'/>\n"
    "\t\t</disk>\n"
    "\t\t<controller type='sata' index='1'/>\n"
    "\t\t<disk type='file' device='cdrom'>\n"
    f"\t\t\t<source file='{SYS}/disk.2'/>\n"
    "\t\t\t<target dev='sdb' bus='sata'/>\n"
    "\t\t\t<readonly/>\n"
    "\t\t\t<driver name='qemu' type='raw' cache='none'/>\n"
    "\t\t</disk>\n"
    "\t\t<controller type='scsi' index='0' model='virtio-scsi'>\n"
    "\t\t\t<driver queues='2'/>\n"
    "\t\t</controller>\n"
    "\t\t<interface type='bridge'>\n"
    "\t\t\t<source bridge='br0'/>\n"
    "\t\t\t<mac address='02:00:c0:a8:00:02'/>\n"
    "\t\t\t<target dev='one-7-0'/>\n"
    "\t\t\t<model type='virtio'/>\n"
    "\t\t\t<driver name='vhost' queues='2'/>\n"
    "\t\t</interface>\n"
    "\t\t<graphics type='vnc' listen='0.0.0.0' port='5907'/>\n"
    "\t\t<controller index='0' type='pci' model='pcie-root'/>\n"
    + ROOT_PORTS
    + "\t\t<controller type='pci' index='17' model='pcie-to-pci-bridge'/>\n"
    "\t</devices>\n"
    "\t<features>\n"
    "\t\t<acpi/>\n"
    "\t</features>\n"
    "\t<devices>\n"
    "\t\t<channel type='unix'>\n"
    "\t\t\t<source mode='bind'/><target type='virtio' name='org.qemu.guest_agent.0'/>\n"
    "\t\t</channel>\n"
    "\t</devices>\n" + METADATA
)


class LibvirtGoldenTests(unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory(prefix="oned-deploy-")
        self.addCleanup(tmp.cleanup)
        self.root = Path(tmp.name)
        self.core = make_core(self.root)

    def render(self, text: str, vm_mad: str = "kvm", **pools: str) -> str:
        core = make_core(self.root, **pools) if pools else self.core
        return deployment(core, make_vm(text, vm_mad)).text

    def test_full_document_matches_oned(self) -> None:
        """Defaults from vmm_exec_kvm.conf (q35, ACPI, guest agent, virtio NIC with
        queues=VCPU, raw/none/unmap disks), a cloned qcow2 disk, a CD-ROM on a SATA
        controller, the context CD-ROM, a bridged NIC, VNC and the PCIe ports."""
        self.assertEqual(self.render(FULL), GOLDEN_FULL)

    def test_driver_types(self) -> None:
        self.assertEqual(driver_type(self.core, "kvm"), "kvm")
        self.assertEqual(driver_type(self.core, "qemu"), "qemu")
        self.assertEqual(driver_type(self.core, "dummy"), "xml")
        self.assertEqual(driver_type(self.core, "missing"), "xml")
        vm = make_vm(BASE, "dummy")
        self.assertEqual(deployment(self.core, vm).text, vm.to_xml())

    def test_qemu_type_and_no_default_file(self) -> None:
        """TYPE qemu writes domain type qemu; a VM_MAD without DEFAULT has no ARCH, so
        the file is not written (oned's text goes to the VM log)."""
        doc = self.render(BASE + 'OS=[ARCH="x86_64"]', "qemu")
        self.assertTrue(doc.startswith("<domain type='qemu' "))
        with self.assertRaisesRegex(DeploymentError, "No ARCH defined and no default provided."):
            self.render(BASE, "bare")
        doc = self.render(BASE + 'OS=[ARCH="x86_64"]\nDISK=[DISK_ID="0",TARGET="hda"]', "bare")
        self.assertIn("\t\t<type arch='x86_64'>hvm</type>\n", doc)
        self.assertNotIn("<features>", doc)
        self.assertNotIn("pcie-root", doc)
        self.assertIn(
            "\t\t\t<target dev='hda' bus='ide'/>\n"
            "\t\t\t<driver name='qemu' type='raw' cache='default'/>\n",
            doc,
        )
        with self.assertRaisesRegex(DeploymentError, "No MEMORY defined"):
            self.render('NAME="v"\nOS=[ARCH="x86_64"]', "bare")

    def test_missing_target_is_an_error(self) -> None:
        with self.assertRaisesRegex(DeploymentError, "^Wrong target value in DISK.$"):
            self.render(BASE + 'DISK=[DISK_ID="0",TYPE="FILE"]')

    def test_precedence_vm_host_cluster_conf(self) -> None:
        """VM > host > cluster > conf for EMULATOR and OS; DISK/NIC defaults skip the VM."""
        doc = self.render(
            BASE + 'DISK=[DISK_ID="0",TARGET="vda"]\nNIC=[NIC_ID="0",BRIDGE="br0"]',
            hosts='EMULATOR="/host/qemu"\nDISK=[CACHE="writeback"]',
            clusters='EMULATOR="/cluster/qemu"\nNIC=[MODEL="e1000"]\nOS=[MACHINE="pc"]',
        )
        self.assertIn("<emulator><![CDATA[/host/qemu]]></emulator>", doc)
        self.assertIn("<type arch='x86_64' machine='pc'>hvm</type>", doc)
        self.assertIn("<driver name='qemu' type='raw' cache='writeback' discard='unmap'/>", doc)
        self.assertIn("\t\t\t<model type='e1000'/>\n\t\t</interface>\n", doc)
        self.assertIn("<target dev='vda' bus='virtio'/>", doc)
        self.assertNotIn("pcie-root", doc)  # machine pc: no q35 controllers
        vm_first = self.render(
            BASE + 'EMULATOR="/vm/qemu"\nOS=[MACHINE="pc-i440fx"]\nFEATURES=[ACPI="no"]',
            hosts='EMULATOR="/host/qemu"',
        )
        self.assertIn("<emulator><![CDATA[/vm/qemu]]></emulator>", vm_first)
        self.assertNotIn("<acpi/>", vm_first)
        self.assertNotIn("<features>", vm_first)

    def test_kernel_boot_cpu_model_and_features(self) -> None:
        doc = self.render(
            BASE + 'OS=[KERNEL="/k",INITRD="/i",ROOT="vda",KERNEL_CMD="ro console=ttyS0",'
            'MACHINE="pc"]\nCPU_MODEL=[MODEL="host-passthrough"]\n'
            'FEATURES=[PAE="yes",APIC="yes",LOCALTIME="yes",GUEST_AGENT="no"]\n'
            'RAW=[TYPE="kvm",DATA="<devices><serial type=\'pty\'/></devices>"]\n'
            'RAW=[TYPE="xen",DATA="<nope/>"]\n'
        )
        self.assertIn(
            "\t<os>\n\t\t<type arch='x86_64' machine='pc'>hvm</type>\n"
            "\t\t<kernel><![CDATA[/k]]></kernel>\n\t\t<initrd><![CDATA[/i]]></initrd>\n"
            "\t\t<cmdline><![CDATA[root=/dev/vda ro console=ttyS0]]></cmdline>\n\t</os>\n"
            "\t<cpu mode='host-passthrough'>\n\t</cpu>\n",
            doc,
        )
        self.assertIn(
            "\t<features>\n\t\t<pae/>\n\t\t<acpi/>\n\t\t<apic/>\n\t</features>\n"
            "\t<clock offset='localtime'>\n\n    <timer name='rtc' tickpolicy='catchup'/>\n"
            "    <timer name='pit' tickpolicy='delay'/>\n    <timer name='hpet' present='no'/>\n"
            "    <timer name='hypervclock' present='yes'/>\n\t</clock>\n"
            "\t<devices><serial type='pty'/></devices>\n\t<metadata>\n",
            doc,
        )
        self.assertNotIn("guest_agent", doc)
        self.assertNotIn("<nope/>", doc)
        custom = self.render(BASE + 'CPU_MODEL=[MODEL="Haswell",FEATURES="vmx,aes"]')
        self.assertIn(
            "\t<cpu mode='custom'>\n\t\t<model fallback='forbid'><![CDATA[Haswell]]></model>\n"
            "\t\t<feature policy='require' name='vmx'/>\n"
            "\t\t<feature policy='require' name='aes'/>\n\t</cpu>\n",
            custom,
        )

    def test_memory_max_vcpu_max_and_shares(self) -> None:
        doc = self.render(
            'NAME="v"\nCPU="200"\nVCPU="1"\nVCPU_MAX="4"\nMEMORY="128"\nMEMORY_MAX="1024"'
        )
        self.assertIn("\t<vcpu current='1'><![CDATA[4]]></vcpu>\n", doc)
        self.assertIn("\t\t<shares>204800</shares>\n", doc)
        self.assertIn("\t<memory>1048576</memory>\n\t<currentMemory>131072</currentMemory>\n", doc)
        hot = self.render(BASE + 'MEMORY_MAX="1024"\nMEMORY_RESIZE_MODE="HOTPLUG"')
        self.assertIn(
            "\t<memory>524288</memory>\n\t<maxMemory slots='16'>1048576</maxMemory>\n", hot
        )
        self.assertIn(
            "\t<cpu>\n\t\t<numa>\n\t\t\t<cell id='0' cpus='0-1' memory='524288' unit='KiB'/>\n"
            "\t\t</numa>\n\t</cpu>\n",
            hot,
        )
        cg2 = self.render(BASE, hosts='CGROUPS_VERSION="2"')
        self.assertIn("\t\t<shares>50</shares>\n", cg2)
        tiny = self.render('NAME="v"\nCPU="0.001"\nMEMORY="1"\n')
        self.assertIn("\t\t<shares>2</shares>\n", tiny)
        self.assertNotIn("<vcpu", tiny)

    def test_network_disks_and_volatile(self) -> None:
        doc = self.render(
            BASE + 'DISK=[DISK_ID="0",TARGET="vda",TYPE="RBD",SOURCE="one/one-3",CLONE="YES",'
            'CEPH_HOST="mon1 mon2:3300",CEPH_USER="libvirt",CEPH_SECRET="uuid-1"]\n'
            'DISK=[DISK_ID="1",TARGET="vdb",TYPE="swap",DISK_TYPE="BLOCK",SIZE="10"]\n'
            'DISK=[DISK_ID="2",TARGET="vdc",TYPE="GLUSTER",GLUSTER_VOLUME="vol",'
            'GLUSTER_HOST="g1",SOURCE="/gv/ab12",CLONE="NO",CACHE="writethrough",IO="native"]\n'
        )
        self.assertIn(
            "\t\t<disk type='network' device='disk'>\n"
            "\t\t\t<source protocol='rbd' name='one/one-3-7-0'>\n"
            "\t\t\t\t<host name='mon1' port='6789'/>\n"
            "\t\t\t\t<host name='mon2' port='3300'/>\n"
            "\t\t\t</source>\n"
            "\t\t\t<auth username='libvirt'>\n"
            "\t\t\t\t<secret type='ceph' uuid='uuid-1'/>\n"
            "\t\t\t</auth>\n"
            "\t\t\t<target dev='vda' bus='virtio'/>\n",
            doc,
        )
        self.assertIn(
            "\t\t<disk type='block' device='disk'>\n"
            f"\t\t\t<source dev='{SYS}/disk.1'/>\n\t\t\t<target dev='vdb' bus='virtio'/>\n",
            doc,
        )
        self.assertIn(
            "\t\t\t<source protocol='gluster' name='vol/ab12'>\n"
            "\t\t\t\t<host name='g1' port='24007' transport='tcp'/>\n\t\t\t</source>\n"
            "\t\t\t<target dev='vdc' bus='virtio'/>\n"
            "\t\t\t<driver name='qemu' type='raw' cache='writethrough' io='native' "
            "discard='unmap'/>\n",
            doc,
        )

    def test_iotune_boot_order_and_scsi(self) -> None:
        doc = self.render(
            BASE + 'DISK=[DISK_ID="0",TARGET="sdc",ORDER="1",TOTAL_BYTES_SEC="100",'
            'TOTAL_BYTES_SEC_MAX="50",READ_IOPS_SEC="10",READ_IOPS_SEC_MAX="20",'
            'READ_IOPS_SEC_MAX_LENGTH="5",SIZE_IOPS_SEC="4096",SERIAL="abc"]\n'
            'OS=[SD_DISK_BUS="scsi",MACHINE="pc"]',
        )
        self.assertIn(
            "\t\t\t<target dev='sdc' bus='scsi'/>\n"
            "\t\t\t<boot order='1'/>\n"
            "\t\t\t<serial>abc</serial>\n"
            "\t\t\t<driver name='qemu' type='raw' cache='none' discard='unmap'/>\n"
            "\t\t\t<iotune>\n"
            "\t\t\t\t<total_bytes_sec><![CDATA[100]]></total_bytes_sec>\n"
            "\t\t\t\t<read_iops_sec><![CDATA[10]]></read_iops_sec>\n"
            "\t\t\t\t<read_iops_sec_max><![CDATA[20]]></read_iops_sec_max>\n"
            "\t\t\t\t<read_iops_sec_max_length><![CDATA[5]]></read_iops_sec_max_length>\n"
            "\t\t\t\t<size_iops_sec><![CDATA[4096]]></size_iops_sec>\n"
            "\t\t\t</iotune>\n"
            "\t\t\t<address type='drive' controller='0' bus='0' target='2' unit='0'/>\n"
            "\t\t</disk>\n",
            doc,
        )

    def test_nic_variants_graphics_video_input(self) -> None:
        doc = self.render(
            BASE + 'NIC=[NIC_ID="0",MAC="m0",TARGET="t0",MODEL="e1000",ORDER="2"]\n'
            'NIC=[NIC_ID="1",BRIDGE="ovsbr",BRIDGE_TYPE="openvswitch",IP="10.0.0.1",'
            'FILTER="clean-traffic",VIRTIO_QUEUES="4",INBOUND_AVG_BW="100",'
            'OUTBOUND_PEAK_KB="9"]\n'
            'GRAPHICS=[TYPE="spice",KEYMAP="es",PASSWD="pw"]\n'
            'VIDEO=[TYPE="virtio",IOMMU="yes",VRAM="16384",RESOLUTION="1280x720"]\n'
            'INPUT=[TYPE="tablet",BUS="usb"]\n',
        )
        self.assertIn(
            "\t\t<interface type='ethernet'>\n\t\t\t<mac address='m0'/>\n"
            "\t\t\t<target dev='t0'/>\n\t\t\t<boot order='2'/>\n"
            "\t\t\t<model type='e1000'/>\n\t\t</interface>\n"
            "\t\t<interface type='bridge'>\n\t\t\t<virtualport type='openvswitch'/>\n"
            "\t\t\t<source bridge='ovsbr'/>\n\t\t\t<model type='virtio'/>\n"
            "\t\t\t<driver name='vhost' queues='4'/>\n"
            "\t\t\t<filterref filter='clean-traffic'>\n"
            "\t\t\t\t<parameter name='IP' value='10.0.0.1'/>\n\t\t\t</filterref>\n"
            "\t\t\t<bandwidth>\n\t\t\t\t<inbound average='100'/>\n"
            "\t\t\t\t<outbound burst='9'/>\n\t\t\t</bandwidth>\n\t\t</interface>\n"
            "\t\t<graphics type='spice' passwd='pw' keymap='es'/>\n"
            "\t\t\n    <video>\n",
            doc,
        )
        self.assertIn(
            "\t\t<video>\n\t\t\t<driver iommu='on'/>\n"
            "\t\t\t<model type='virtio' vram='16384'>\n"
            "\t\t\t\t<resolution x='1280' y='720'/>\n\t\t\t</model>\n\t\t</video>\n"
            "\t\t<input type='tablet' bus='usb'/>\n",
            doc,
        )

    def test_context_on_block_datastore_and_warnings(self) -> None:
        vm = make_vm(BASE + 'CONTEXT=[DISK_ID="1"]\nGRAPHICS=[TYPE="rdp"]')
        result = deployment(make_core(self.root, ds='CONTEXT_DISK_TYPE="BLOCK"'), vm)
        self.assertNotIn("cdrom", result.text)
        self.assertEqual(
            result.warnings,
            [
                "Could not find target device to attach context, will continue without it.",
                "Graphics not supported or undefined, ignored.",
            ],
        )
        doc = self.render(
            BASE + 'CONTEXT=[DISK_ID="1",TARGET="hda"]\nOS=[MACHINE="pc"]',
            ds='CONTEXT_DISK_TYPE="BLOCK"',
        )
        self.assertIn(
            "\t\t<disk type='block' device='cdrom'>\n"
            f"\t\t\t<source dev='{SYS}/disk.1'/>\n"
            "\t\t\t<target dev='hda' bus='ide'/>\n",
            doc,
        )

    def test_kernel_from_a_datastore(self) -> None:
        doc = self.render(
            BASE + 'OS=[KERNEL_DS="$FILE[IMAGE_ID=5]",KERNEL_DS_SOURCE="/f/k",KERNEL_DS_DSID="2",'
            'KERNEL_DS_TM="ssh",KERNEL_CMD="quiet"]'
        )
        self.assertIn(
            f"\t\t<kernel><![CDATA[{SYS}/kernel]]></kernel>\n"
            "\t\t<cmdline><![CDATA[quiet]]></cmdline>\n",
            doc,
        )

    def test_pinned_numa_topology(self) -> None:
        doc = self.render(
            BASE + 'TOPOLOGY=[PIN_POLICY="CORE",SOCKETS="1",CORES="2",THREADS="1"]\n'
            'NUMA_NODE=[TOTAL_CPUS="2",CPUS="3,5",MEMORY="524288",MEMORY_NODE_ID="0"]'
        )
        self.assertIn(
            "\t<cputune>\n\t\t<shares>512</shares>\n"
            "\t\t<vcpupin vcpu='0' cpuset='3'/>\n\t\t<vcpupin vcpu='1' cpuset='5'/>\n"
            "\t\t<emulatorpin cpuset='3,5'/>\n\t</cputune>\n",
            doc,
        )
        self.assertIn(
            "\t<cpu>\n\t\t<topology sockets='1' cores='2' threads='1'/>\n"
            "\t\t<numa>\n\t\t\t<cell id='0' memory='524288' cpus='0-1'/>\n\t\t</numa>\n"
            "\t</cpu>\n\t<numatune>\n\t\t<memnode cellid='0' mode='strict' nodeset='0'/>\n"
            "\t\t<memory mode='strict' nodeset='0'/>\n\t</numatune>\n\t<devices>\n",
            doc,
        )
        self.assertIn(
            "\t\t<controller type='pci' index='1' model='pcie-root-port'/>\n"
            "\t\t<controller type='pci' index='2' model='pcie-to-pci-bridge'/>\n"
            "\t\t<controller type='pci' index='3' model='pcie-expander-bus'>\n"
            "\t\t\t<target busNr='0x20'>\n\t\t\t\t<node>0</node>\n\t\t\t</target>\n"
            "\t\t</controller>\n"
            "\t\t<controller type='pci' index='4' model='pcie-root-port'>\n"
            "\t\t\t<address type='pci' bus='3' slot='0' function='0' multifunction='on'/>\n"
            "\t\t</controller>\n",
            doc,
        )
        self.assertNotIn("index='12'", doc)

    def test_memory_encryption_and_uefi(self) -> None:
        doc = self.render(
            BASE + 'MEMORY_ENCRYPTION=[TYPE="SEV-ES"]\n'
            'OS=[FIRMWARE="/usr/share/OVMF/OVMF_CODE.fd",FIRMWARE_SECURE="YES"]',
            clusters='MEMORY_TUNE_OFFSET="1"',
        )
        self.assertIn(
            "\t\t<type arch='x86_64' machine='q35'>hvm</type>\n"
            '\t\t<loader readonly="yes" type="pflash" secure="yes">'
            "/usr/share/OVMF/OVMF_CODE.fd</loader>\n"
            f"\t\t<nvram>{SYS}/v_VARS.fd</nvram>\n\t</os>\n"
            '\t<pm>\n\t\t<suspend-to-disk enabled="no"/>\n\t\t<suspend-to-mem enabled="no"/>\n'
            "\t</pm>\n",
            doc,
        )
        self.assertIn('\t\t<acpi/>\n\t\t<smm state="on"/>\n\t</features>\n', doc)
        self.assertIn(
            "\t<launchSecurity type='sev'>\n\t\t<policy>0x00000007</policy>\n"
            "\t</launchSecurity>\n\t<memtune>\n\t\t<hard_limit unit='MiB'>768</hard_limit>\n"
            "\t</memtune>\n\t<metadata>\n",
            doc,
        )
        auto = self.render(BASE + 'OS=[FIRMWARE="UEFI"]\nMEMORY_ENCRYPTION=[TYPE="SEV-SNP"]')
        self.assertIn(
            "\t<os firmware='efi'>\n\t\t<type arch='x86_64' machine='q35'>hvm</type>\n"
            "\t\t<firmware>\n\t\t\t<feature enabled='no' name='secure-boot'/>\n"
            "\t\t</firmware>\n\t</os>\n\t<devices>\n",
            auto,
        )
        self.assertNotIn("launchSecurity", auto)

    def test_iommu_options(self) -> None:
        doc = self.render(
            BASE + 'IOMMU=[MODE="single",MODEL="intel",OPTIONS="intremap=on caching_mode=on"]'
        )
        self.assertIn(
            "\t\t<iommu model='intel'>\n\t\t\t<driver caching_mode='on' intremap='on'/>\n"
            "\t\t</iommu>\n",
            doc,
        )

    def test_absurd_numbers_do_not_hang_or_crash(self) -> None:
        """Overflowing numbers are not numbers (istringstream); a huge CPU count is capped;
        vCPUs beyond a pinned node's CPUS list take the whole list instead of crashing."""
        doc = self.render(
            BASE + 'TOPOLOGY=[PIN_POLICY="SHARED"]\n'
            'NUMA_NODE=[TOTAL_CPUS="99999999999999999999",CPUS="1",MEMORY="1"]\n'
            'DISK=[DISK_ID="0",TARGET="vda",ORDER="99999999999"]'
        )
        self.assertNotIn("vcpupin", doc)
        self.assertNotIn("<boot order", doc)
        big = self.render(
            BASE + 'TOPOLOGY=[PIN_POLICY="CORE"]\nNUMA_NODE=[TOTAL_CPUS="2000000",CPUS="1,2"]'
        )
        self.assertEqual(big.count("<vcpupin "), 16384)

    def test_random_vnc_password(self) -> None:
        vm = make_vm(BASE + 'GRAPHICS=[TYPE="vnc",RANDOM_PASSWD="YES"]')
        text = deployment(self.core, vm).text
        graphics = vm.template.get_vector("GRAPHICS") or {}
        self.assertEqual(len(graphics["PASSWD"]), 8)
        self.assertIn(f"<graphics type='vnc' passwd='{graphics['PASSWD']}'/>", text)


@unittest.skipUnless(
    shutil.which("virt-xml-validate") and shutil.which("xmllint"),
    "libvirt-clients (virt-xml-validate) and libxml2-utils (xmllint) not installed",
)
class VirtXmlValidateTests(unittest.TestCase):
    """The documents validate against libvirt's own domain schema. oned writes the guest
    agent channel in a second ``<devices>`` element, which libvirt's parser reads but its
    RelaxNG schema does not allow: the copy that is validated has it merged into the
    first one."""

    @staticmethod
    def merged(text: str) -> str:
        from lxml import etree

        root = etree.fromstring(text.encode())
        first, *rest = root.findall("devices")
        for extra in rest:
            first.extend(list(extra))
            root.remove(extra)
        return etree.tostring(root).decode()

    def test_documents_validate(self) -> None:
        tmp = tempfile.TemporaryDirectory(prefix="oned-deploy-")
        self.addCleanup(tmp.cleanup)
        root = Path(tmp.name)
        docs = {
            "full": GOLDEN_FULL,
            "kernel": deployment(
                make_core(root),
                make_vm(
                    BASE + 'OS=[KERNEL="/k",INITRD="/i",ROOT="vda"]\nFEATURES=[HYPERV="yes"]\n'
                    'CPU_MODEL=[MODEL="host-passthrough"]\nVIDEO=[TYPE="virtio"]\n'
                    'DISK=[DISK_ID="0",TARGET="vda",TYPE="RBD",SOURCE="one/a",CEPH_HOST="m"]'
                ),
            ).text,
        }
        for name, text in docs.items():
            path = root / f"{name}.xml"
            path.write_text(self.merged(text), encoding="utf-8")
            run = subprocess.run(
                ["virt-xml-validate", str(path), "domain"],
                capture_output=True,
                text=True,
                check=False,
            )
            self.assertEqual(run.returncode, 0, f"{name}: {run.stdout}{run.stderr}")


class DeployThroughTheManagersTests(unittest.TestCase):
    """one.vm.deploy on a kvm host: the VMM writes the libvirt domain and sends it (fake
    clock, scripted drivers); a writer error fails the boot with oned's log lines."""

    def setUp(self) -> None:
        from twisted.internet.defer import Deferred

        from oned.managers.lifecycle.testing import FakeVmDrivers
        from oned.managers.lifecycle.wiring import use_drivers
        from oned.testing.rpc import OnedHarness, result_of

        self.h = OnedHarness(KVM)
        self.addCleanup(self.h.close)
        self.h.ok("one.datastore.update", 0, 'TM_MAD="dummy"', 1)
        self.drivers = FakeVmDrivers()
        lcm = use_drivers(self.h.core, self.drivers)
        result_of(Deferred.fromCoroutine(lcm.start()))
        self.addCleanup(lcm.log_writer.stop)
        self.lcm = lcm

    def flush(self) -> None:
        for _ in range(10):
            self.h.core.eventually.flush()

    def boot(self, vm_mad: str, extra: str = "") -> tuple[int, Path]:
        hid = self.h.ok("one.host.allocate", f"h-{vm_mad}", "dummy", vm_mad, -1)
        vid = self.h.ok("one.vm.allocate", 'NAME="v"\nCPU="1"\nVCPU="1"\nMEMORY="64"\n' + extra)
        self.h.ok("one.vm.deploy", vid, hid)
        self.flush()
        self.drivers.reply("TRANSFER", vid)
        self.flush()
        return vid, self.h.config.locations.var / "vms" / str(vid)

    def test_kvm_host_gets_the_domain(self) -> None:
        vid, vm_dir = self.boot("kvm")
        [deploy] = self.drivers.pending("DEPLOY")
        self.assertEqual(deploy.name, "kvm")
        text = (vm_dir / "deployment.0").read_text()
        self.assertTrue(text.startswith("<domain type='kvm' "))
        self.assertIn(f"\t<name>one-{vid}</name>\n", text)
        self.assertIn(str(vm_dir / "deployment.0"), deploy.document)

    def test_random_graphics_password_is_kept(self) -> None:
        import re

        vid, vm_dir = self.boot("kvm", 'GRAPHICS=[TYPE="vnc",RANDOM_PASSWD="YES"]')
        self.flush()
        text = (vm_dir / "deployment.0").read_text()
        match = re.search(r"passwd='([0-9a-f]{8})'", text)
        assert match is not None, text
        doc = self.h.ok("one.vm.info", vid)
        self.assertIn(f"<PASSWD><![CDATA[{match.group(1)}]]></PASSWD>", doc)

    def test_firmware_must_be_an_allowed_uefi(self) -> None:
        hid = self.h.ok("one.host.allocate", "h-uefi", "dummy", "kvm", -1)
        vm = 'NAME="v"\nCPU="1"\nMEMORY="64"\nOS=[FIRMWARE="%s"]'
        vid = self.h.ok("one.vm.allocate", vm % "/opt/evil.fd")
        reply = self.h.call("one.vm.deploy", vid, hid)
        self.assertEqual(
            reply[:3], [False, "[one.vm.deploy] FIRMWARE '/opt/evil.fd' not allowed.", 2048]
        )
        allowed = self.h.ok("one.vm.allocate", vm % "/usr/share/OVMF/OVMF_CODE.fd")
        self.h.ok("one.vm.deploy", allowed, hid)
        self.h.ok("one.host.update", hid, 'OVMF_UEFIS=""', 1)
        vid = self.h.ok("one.vm.allocate", vm % "/usr/share/OVMF/OVMF_CODE.fd")
        reply = self.h.call("one.vm.deploy", vid, hid)
        self.assertEqual(reply[1], "[one.vm.deploy] No OVMF_UEFIS defined in configuration.")

    def test_writer_error_is_a_boot_failure(self) -> None:
        from oned.objects.vm import LcmState

        vid, vm_dir = self.boot("bare")
        self.assertEqual(self.drivers.pending("DEPLOY"), [])
        self.flush()
        self.lcm.log_writer.flush()
        log = (vm_dir / "vm.log").read_text()
        self.assertIn("[VMM][E]: No ARCH defined and no default provided.\n", log)
        self.assertIn(
            f"[VMM][E]: deploy_action, error generating deployment file: {vm_dir}/deployment.0\n",
            log,
        )
        self.assertTrue(log.rstrip().endswith("New LCM state is BOOT_FAILURE"))
        doc = self.h.ok("one.vm.info", vid)
        self.assertIn(f"<LCM_STATE>{int(LcmState.BOOT_FAILURE)}</LCM_STATE>", doc)
