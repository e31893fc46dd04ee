"""The libvirt domain document OpenNebula writes for VM_MAD types ``kvm`` and ``qemu``
(mirrors ``LibVirtDriver::deployment_description_kvm``): the same elements in the same
order, tab indentation, single-quoted attributes and CDATA bodies where oned uses
them, so the hypervisor drivers read the file they read under OpenNebula.
"""

from __future__ import annotations

import math

from oned.managers.vmm.deployment import devices, disks
from oned.managers.vmm.deployment.common import (
    DeploymentError,
    Domain,
    attr,
    cdata,
    to_int,
)
from oned.managers.vmm.deployment.conf import to_float
from oned.managers.vmm.deployment.numa import pin_cpu, single_int, vtopol
from oned.objects.vm import VirtualMachine

VERSION = "7.5.80"
_SEV_DEBUG_DISALLOWED = 1 << 0
_SEV_KEY_SHARING_DISALLOWED = 1 << 1
_SEV_ES_REQUIRED = 1 << 2


def _head(d: Domain) -> None:
    vm = d.vm
    d.w(
        f"<domain type={attr(d.emulator)} "
        "xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\n"
    )
    d.w(f"\t<name>one-{vm.oid}</name>\n")
    d.w(f"\t<title>{vm.name}</title>\n")
    os_vec = vm.template.get_vector("OS")
    if os_vec is not None and os_vec.get("UUID", ""):
        d.w(f"\t<uuid>{os_vec['UUID']}</uuid>\n")


def _cpu_memory(d: Domain) -> tuple[int, bool]:
    vm, look = d.vm, d.look
    vcpu = look.string("VCPU")
    vcpu_max = look.string("VCPU_MAX")
    if not vcpu:
        vcpu = vcpu_max
    d.vcpu = vcpu
    if vcpu_max:
        d.w(f"\t<vcpu current={attr(vcpu)}>{cdata(vcpu_max)}</vcpu>\n")
    elif vcpu:
        d.w(f"\t<vcpu>{cdata(vcpu)}</vcpu>\n")
    cpu = to_float(vm.template.get("CPU"), 1.0)
    d.topology = vm.template.get_vector("TOPOLOGY")
    d.nodes = vm.template.vectors("NUMA_NODE")
    base, low, high = 1024, 2, 262144
    if look.integer("CGROUPS_VERSION", 0, vm=False) == 2:
        base, low, high = 100, 1, 10000
    shares = min(max(math.ceil(base * cpu), low), high)
    d.w("\t<cputune>\n")
    d.w(f"\t\t<shares>{shares}</shares>\n")
    emulator_cpus = look.string("EMULATOR_CPUS", vm=False)
    pin_cpu(d, attr(emulator_cpus) if emulator_cpus else "")
    d.w("\t</cputune>\n")
    memory_value = single_int(vm.template.get("MEMORY"))
    if memory_value is None:
        raise DeploymentError("No MEMORY defined and no default provided.")
    memory = memory_value
    memory_max = single_int(vm.template.get("MEMORY_MAX"))
    has_max = memory_max is not None and memory < memory_max
    hotplug = False
    if not has_max:
        d.w(f"\t<memory>{memory * 1024}</memory>\n")
    elif (vm.template.get("MEMORY_RESIZE_MODE") or "") == "HOTPLUG":
        hotplug = True
        d.w(f"\t<memory>{memory * 1024}</memory>\n")
        if d.topology is None:
            slots = look.integer("MEMORY_SLOTS", 0)
            d.w(f"\t<maxMemory slots='{slots}'>{(memory_max or 0) * 1024}</maxMemory>\n")
    else:
        d.w(f"\t<memory>{(memory_max or 0) * 1024}</memory>\n")
        d.w(f"\t<currentMemory>{memory * 1024}</currentMemory>\n")
    return memory, hotplug


def _from_datastore(d: Domain, base: str) -> str:
    """The copy the prolog made of a kernel/initrd image (``set_kernel``/``set_initrd``
    write it in the VM's OS; this covers a VM document read before that update)."""
    os_vec = d.vm.template.get_vector("OS") or {}
    if os_vec.get(base) or not os_vec.get(f"{base}_DS"):
        return ""
    if all(os_vec.get(f"{base}_DS_{key}") for key in ("SOURCE", "DSID", "TM")):
        return f"{d.system_dir}/{base.lower()}"
    return ""


def _os(d: Domain) -> tuple[bool, bool, bool]:
    look = d.look
    firmware = look.vstring("OS", "FIRMWARE")
    fw_format = look.vstring("OS", "FIRMWARE_FORMAT") or "raw"
    boot_secure = look.vbool("OS", "FIRMWARE_SECURE")
    efi_auto = firmware.upper() == "UEFI"
    uefi = bool(firmware) and firmware.upper() != "BIOS" and not efi_auto
    d.w("\t<os firmware='efi'>\n" if efi_auto else "\t<os>\n")
    d.arch = look.vstring("OS", "ARCH")
    d.machine = look.vstring("OS", "MACHINE")
    kernel = _from_datastore(d, "KERNEL") or look.vstring("OS", "KERNEL")
    initrd = _from_datastore(d, "INITRD") or look.vstring("OS", "INITRD")
    bootloader = look.vstring("OS", "BOOTLOADER")
    root = look.vstring("OS", "ROOT")
    kernel_cmd = look.vstring("OS", "KERNEL_CMD")
    d.sd_bus = look.vstring("OS", "SD_DISK_BUS")
    if not d.arch:
        raise DeploymentError("No ARCH defined and no default provided.")
    machine = f" machine={attr(d.machine)}" if d.machine else ""
    d.w(f"\t\t<type arch={attr(d.arch)}{machine}>hvm</type>\n")
    if kernel:
        d.w(f"\t\t<kernel>{cdata(kernel)}</kernel>\n")
        if initrd:
            d.w(f"\t\t<initrd>{cdata(initrd)}</initrd>\n")
        if root:
            kernel_cmd = f"root=/dev/{root} {kernel_cmd}"
        if kernel_cmd:
            d.w(f"\t\t<cmdline>{cdata(kernel_cmd)}</cmdline>\n")
    elif bootloader:
        d.w(f"\t\t<bootloader>{cdata(bootloader)}</bootloader>\n")
    if efi_auto:
        state = "yes" if boot_secure else "no"
        d.w("\t\t<firmware>\n")
        d.w(f"\t\t\t<feature enabled='{state}' name='secure-boot'/>\n")
        d.w("\t\t</firmware>\n")
    elif uefi:
        secure = "yes" if boot_secure else "no"
        nvram = ' format="qcow2"' if fw_format.lower() == "qcow2" else ""
        d.w(f'\t\t<loader readonly="yes" type="pflash" secure="{secure}">{firmware}</loader>\n')
        d.w(f"\t\t<nvram{nvram}>{d.system_dir}/{d.vm.name}_VARS.fd</nvram>\n")
    d.w("\t</os>\n")
    if uefi and d.arch != "aarch64":
        d.w(
            "\t<pm>\n"
            '\t\t<suspend-to-disk enabled="no"/>\n'
            '\t\t<suspend-to-mem enabled="no"/>\n'
            "\t</pm>\n"
        )
    return efi_auto, uefi, boot_secure


def _cpu(d: Domain, memory: int, hotplug: bool) -> int:
    look = d.look
    model = look.vstring("CPU_MODEL", "MODEL")
    features = look.vstring("CPU_MODEL", "FEATURES")
    evc = look.string("EVC_MODE", vm=False, host=False)
    if evc:
        model = evc
    mode = "host-passthrough" if model == "host-passthrough" else "custom"
    tune, hpsz_kb = "", 0
    if model or d.topology is not None or hotplug:
        if model:
            d.w(f"\t<cpu mode={attr(mode)}>\n")
            if mode == "custom":
                d.w(f"\t\t<model fallback='forbid'>{cdata(model)}</model>\n")
        else:
            d.w("\t<cpu>\n")
        if features and model:
            for feature in features.split(","):
                d.w(f"\t\t<feature policy='require' name={attr(feature)}/>\n")
        if not d.nodes and hotplug:
            cpus = max(to_int(d.vcpu) - 1, 0)
            d.w(
                f"\t\t<numa>\n\t\t\t<cell id='0' cpus='0-{cpus}' memory="
                f"{attr(memory * 1024)} unit='KiB'/>\n\t\t</numa>\n"
            )
        tune, hpsz_kb = vtopol(d)
        d.w("\t</cpu>\n")
    if tune:
        d.w(tune)
    d.iothreads = look.vint("FEATURES", "IOTHREADS", 0)
    if d.iothreads > 0:
        d.w(f"\t<iothreads>{d.iothreads}</iothreads>\n")
    return hpsz_kb


def _features(d: Domain, efi_auto: bool, uefi: bool, boot_secure: bool) -> None:
    look = d.look
    pae = look.vbool("FEATURES", "PAE")
    acpi = look.vbool("FEATURES", "ACPI")
    apic = look.vbool("FEATURES", "APIC")
    hyperv = look.vbool("FEATURES", "HYPERV")
    localtime = look.vbool("FEATURES", "LOCALTIME")
    guest_agent = look.vbool("FEATURES", "GUEST_AGENT")
    gic = look.vstring("FEATURES", "GIC")
    ras = look.vbool("FEATURES", "RAS")
    if acpi or pae or apic or hyperv or boot_secure or gic:
        d.w("\t<features>\n")
        if pae:
            d.w("\t\t<pae/>\n")
        if acpi and (d.arch != "aarch64" or uefi or efi_auto):
            d.w("\t\t<acpi/>\n")
        if apic:
            d.w("\t\t<apic/>\n")
        if hyperv:
            d.w(f"\t\t<hyperv>\n{look.string('HYPERV_OPTIONS')}\n\t\t</hyperv>\n")
        if boot_secure:
            d.w('\t\t<smm state="on"/>\n')
        if gic:
            d.w(f'\t\t<gic version="{gic}"/>\n')
        if ras:
            d.w('\t\t<ras state="on"/>\n')
        d.w("\t</features>\n")
    if localtime or hyperv:
        timers = look.string("HYPERV_TIMERS")
        d.w("\t<clock offset='localtime'>\n" if localtime else "\t<clock offset='utc'>\n")
        if timers:
            d.w(timers + "\n")
        d.w("\t</clock>\n")
    if guest_agent:
        d.w(
            "\t<devices>\n\t\t<channel type='unix'>\n\t\t\t<source mode='bind'/>"
            "<target type='virtio' name='org.qemu.guest_agent.0'/>\n"
            "\t\t</channel>\n\t</devices>\n"
        )


def _memory_backing(d: Domain, hpsz_kb: int) -> None:
    if hpsz_kb == 0 and not d.is_fs:
        return
    d.w("\t<memoryBacking>\n")
    if hpsz_kb != 0:
        d.w(f"\t\t<hugepages>\n\t\t\t<page size={attr(hpsz_kb)}/>\n\t\t</hugepages>\n")
    else:
        d.w("\t\t<source type='memfd'/>\n")
    if d.is_fs:
        d.w("\t\t<access mode='shared'/>\n")
    d.w("\t</memoryBacking>\n")


def _encryption(d: Domain, memory: int) -> None:
    for vector in d.vm.template.vectors("MEMORY_ENCRYPTION"):
        kind = vector.get("TYPE", "")
        if "SEV" in kind and kind.upper() != "SEV-SNP":
            policy = _SEV_DEBUG_DISALLOWED | _SEV_KEY_SHARING_DISALLOWED
            if kind.upper() == "SEV-ES":
                policy |= _SEV_ES_REQUIRED
            offset = d.look.integer("MEMORY_TUNE_OFFSET", 256, host=False, cluster=False)
            d.w(
                f"\t<launchSecurity type='sev'>\n\t\t<policy>0x{policy:08x}</policy>\n"
                "\t</launchSecurity>\n"
                f"\t<memtune>\n\t\t<hard_limit unit='MiB'>{memory + offset}</hard_limit>\n"
                "\t</memtune>\n"
            )
        else:
            d.warn(f"Memory encryption {kind} is not supported or undefined, ignored.")


def _raw_and_metadata(d: Domain, now: int) -> None:
    vm = d.vm
    for raw in vm.template.vectors("RAW"):
        if raw.get("TYPE", "").upper() == "KVM":
            d.w(f"\t{raw.get('DATA', '')}\n")
    default_raw = d.look.string("RAW", vm=False)
    if default_raw:
        d.w(f"\t{default_raw}\n")
    d.w(
        "\t<metadata>\n"
        '\t\t<one:vm xmlns:one="http://opennebula.org/xmlns/libvirt/1.0">\n'
        f"\t\t\t<one:system_datastore>{cdata(d.system_dir)}</one:system_datastore>\n"
        f"\t\t\t<one:name>{cdata(vm.name)}</one:name>\n"
        f"\t\t\t<one:uname>{cdata(vm.uname)}</one:uname>\n"
        f"\t\t\t<one:uid>{vm.uid}</one:uid>\n"
        f"\t\t\t<one:gname>{cdata(vm.gname)}</one:gname>\n"
        f"\t\t\t<one:gid>{vm.gid}</one:gid>\n"
        f"\t\t\t<one:opennebula_version>{VERSION}</one:opennebula_version>\n"
        f"\t\t\t<one:stime>{vm.stime}</one:stime>\n"
        f"\t\t\t<one:deployment_time>{now}</one:deployment_time>\n"
        f"\t\t\t<one:pci_devices>{d.pci_devices}</one:pci_devices>\n"
        "\t\t</one:vm>\n"
        "\t</metadata>\n"
    )
    d.w("</domain>\n")


def domain_xml(d: Domain, now: int) -> str:
    """The whole domain document for ``d.vm`` (raises ``DeploymentError``)."""
    _head(d)
    memory, hotplug = _cpu_memory(d)
    efi_auto, uefi, boot_secure = _os(d)
    hpsz_kb = _cpu(d, memory, hotplug)
    d.w("\t<devices>\n")
    emulator = d.look.string("EMULATOR") or "/usr/bin/qemu-kvm-one"
    d.w(f"\t\t<emulator>{cdata(emulator)}</emulator>\n")
    d.is_q35 = "q35" in d.machine or "virt" in d.machine
    disks.write_disks(d)
    devices.write_devices(d)
    d.w("\t</devices>\n")
    _memory_backing(d, hpsz_kb)
    _features(d, efi_auto, uefi, boot_secure)
    _encryption(d, memory)
    _raw_and_metadata(d, now)
    return "".join(d.out)


def vm_name(vm: VirtualMachine) -> str:
    return f"one-{vm.oid}"
