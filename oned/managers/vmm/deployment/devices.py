"""NICs, graphics, video, input, IOMMU, PCI passthrough and the PCIe controllers of a
libvirt domain (the device part of ``LibVirtDriver::deployment_description_kvm``)."""

from __future__ import annotations

import hashlib
import re
import secrets

from oned.managers.vmm.deployment.common import Domain, attr, set_queues, vector_int

VHOST_DIR = "/var/run/one/vhost-socks"
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_VALUE = re.compile(r"^[^\s<>&'\"]+$")
Q35_ROOT_DEFAULT_PORTS = 16
MAX_VNC_PASSWD_LENGTH = 8
MAX_SPICE_PASSWD_LENGTH = 59
_BANDWIDTH = (
    ("inbound", "INBOUND_AVG_BW", "INBOUND_PEAK_BW", "INBOUND_PEAK_KB"),
    ("outbound", "OUTBOUND_AVG_BW", "OUTBOUND_PEAK_BW", "OUTBOUND_PEAK_KB"),
)


def random_password() -> str:
    """``one_util::random_password``: the SHA-256 hex digest of a random number."""
    return hashlib.sha256(str(secrets.randbelow(2**31)).encode()).hexdigest()


def _nic(d: Domain, nic: dict[str, str], defaults: tuple[str, str, str]) -> None:
    default_filter, default_model, default_queues = defaults
    bridge = nic.get("BRIDGE", "")
    target = nic.get("TARGET", "")
    if not bridge or nic.get("NETWORK_MODE", "").upper() == "DUMMY":
        d.w("\t\t<interface type='ethernet'>\n")
    else:
        kind = nic.get("BRIDGE_TYPE", "")
        if kind == "openvswitch":
            d.w(
                "\t\t<interface type='bridge'>\n\t\t\t<virtualport type='openvswitch'/>\n"
                f"\t\t\t<source bridge={attr(bridge)}/>\n"
            )
        elif kind == "openvswitch_dpdk":
            d.w(
                "\t\t<interface type='vhostuser'>\n"
                f"\t\t\t<source type='unix' mode='server' path='{VHOST_DIR}/{target}' />\n"
            )
        else:
            d.w(f"\t\t<interface type='bridge'>\n\t\t\t<source bridge={attr(bridge)}/>\n")
    if nic.get("MAC", ""):
        d.w(f"\t\t\t<mac address={attr(nic['MAC'])}/>\n")
    if target:
        d.w(f"\t\t\t<target dev={attr(target)}/>\n")
    order = vector_int(nic, "ORDER")
    if order is not None:
        d.w(f"\t\t\t<boot order={attr(order)}/>\n")
    if nic.get("SCRIPT", ""):
        d.w(f"\t\t\t<script path={attr(nic['SCRIPT'])}/>\n")
    model = nic.get("MODEL", "") or default_model
    if model:
        d.w(f"\t\t\t<model type={attr(model)}/>\n")
        queues = nic.get("VIRTIO_QUEUES", "")
        if queues:
            queues = set_queues(queues, d.vcpu)
        elif default_queues:
            queues = set_queues(default_queues, d.vcpu)
        if queues and model == "virtio":
            d.w(f"\t\t\t<driver name='vhost' queues={attr(queues)}/>\n")
    ip = nic.get("IP", "")
    nic_filter = nic.get("FILTER", "") or default_filter
    if ip and nic_filter:
        d.w(
            f"\t\t\t<filterref filter={attr(nic_filter)}>\n"
            f"\t\t\t\t<parameter name='IP' value={attr(ip)}/>\n"
        )
        if nic.get("VROUTER_IP", ""):
            d.w(f"\t\t\t\t<parameter name='IP' value={attr(nic['VROUTER_IP'])}/>\n")
        d.w("\t\t\t</filterref>\n")
    if any(nic.get(key, "") for group in _BANDWIDTH for key in group[1:]):
        d.w("\t\t\t<bandwidth>\n")
        for name, avg, peak, burst in _BANDWIDTH:
            values = [nic.get(avg, ""), nic.get(peak, ""), nic.get(burst, "")]
            if not any(values):
                continue
            line = f"\t\t\t\t<{name}"
            for word, value in zip(("average", "peak", "burst"), values, strict=True):
                if value:
                    line += f" {word}={attr(value)}"
            d.w(line + "/>\n")
        d.w("\t\t\t</bandwidth>\n")
    d.w("\t\t</interface>\n")


def _graphics(d: Domain) -> None:
    graphics = d.vm.template.get_vector("GRAPHICS")
    if graphics is None:
        return
    look = d.look
    kind = look.vstring("GRAPHICS", "TYPE").lower()
    listen = look.vstring("GRAPHICS", "LISTEN")
    passwd = look.vstring("GRAPHICS", "PASSWD")
    keymap = look.vstring("GRAPHICS", "KEYMAP")
    port = graphics.get("PORT", "")
    if look.vbool("GRAPHICS", "RANDOM_PASSWD") and not passwd:
        passwd = random_password()
        if kind == "spice":
            passwd = passwd[:MAX_SPICE_PASSWD_LENGTH]
        elif kind == "vnc":
            passwd = passwd[:MAX_VNC_PASSWD_LENGTH]
        graphics["PASSWD"] = passwd
        d.password = passwd
    if kind not in ("vnc", "spice"):
        d.warn("Graphics not supported or undefined, ignored.")
        return
    line = f"\t\t<graphics type={attr(kind)}"
    for word, value in (("listen", listen), ("port", port), ("passwd", passwd)):
        if value:
            line += f" {word}={attr(value)}"
    if keymap:
        line += f" keymap={attr(keymap)}"
    d.w(line + "/>\n")
    if kind == "spice":
        options = look.string("SPICE_OPTIONS")
        if options:
            d.w(f"\t\t{options}\n")


def _video(d: Domain) -> None:
    if d.vm.template.get_vector("VIDEO") is None:
        return
    look = d.look
    iommu = look.vbool("VIDEO", "IOMMU")
    ats = look.vbool("VIDEO", "ATS")
    kind = look.vstring("VIDEO", "TYPE")
    vram = look.vint("VIDEO", "VRAM", 0)
    resolution = look.vstring("VIDEO", "RESOLUTION")
    d.w("\t\t<video>\n")
    if kind == "virtio" and (iommu or ats):
        d.w(
            "\t\t\t<driver"
            + (" iommu='on'" if iommu else "")
            + (" ats='on'" if ats else "")
            + "/>\n"
        )
    kind = kind.lower()
    line = f"\t\t\t<model type={attr(kind)}"
    if vram >= 1024 and kind != "none":
        line += f" vram={attr(vram)}"
    d.w(line + ">\n")
    if resolution and kind not in ("none", "cirrus"):
        dims = resolution.split("x")
        y = dims[1] if len(dims) > 1 else ""
        d.w(f"\t\t\t\t<resolution x={attr(dims[0])} y={attr(y)}/>\n")
    d.w("\t\t\t</model>\n\t\t</video>\n")


def _input_iommu(d: Domain) -> None:
    vec = d.vm.template.get_vector("INPUT")
    if vec is not None and vec.get("TYPE", ""):
        bus = vec.get("BUS", "")
        d.w(f"\t\t<input type={attr(vec['TYPE'])}" + (f" bus={attr(bus)}" if bus else "") + "/>\n")
    iommu = d.vm.template.get_vector("IOMMU")
    if iommu is None:
        return
    d.iommu_mode = iommu.get("MODE", "")
    d.iommu_model = iommu.get("MODEL", "")
    options: dict[str, str] = {}
    for token in iommu.get("OPTIONS", "").split():  # string_to_options: stops at a bad one
        kv = [part for part in token.split("=") if part]
        if len(kv) != 2 or not _KEY.match(kv[0]) or not _VALUE.match(kv[1]):
            break
        options[kv[0]] = kv[1]
    d.iommu_opt = "".join(f" {k}='{_xml_escape(v)}'" for k, v in sorted(options.items()))
    if d.iommu_mode == "single":
        d.w(f"\t\t<iommu model='{d.iommu_model}'>\n\t\t\t<driver{d.iommu_opt}/>\n\t\t</iommu>\n")


def _hex(value: int) -> str:
    """``showbase << setfill('0') << hex << setw(4)``."""
    return f"{value:#x}".rjust(4, "0")


def _xml_escape(text: str) -> str:
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("'", "&apos;")
        .replace('"', "&quot;")
    )


def _pci(d: Domain) -> None:
    devices: list[str] = []
    for pci in d.vm.template.vectors("PCI"):
        domain, bus = pci.get("DOMAIN", ""), pci.get("BUS", "")
        slot, func = pci.get("SLOT", ""), pci.get("FUNCTION", "")
        uuid, mdev = pci.get("UUID", ""), pci.get("MDEV_MODE", "").lower()
        ident = ":".join(pci.get(k, "").lower() for k in ("VENDOR", "DEVICE", "CLASS"))
        devices.append(ident)
        if not (domain and bus and slot and func):
            d.warn("DOMAIN, BUS, SLOT and FUNC must be defined for PCI passthrough. Ignored.")
            continue
        if uuid and mdev in ("legacy", ""):
            d.w(
                "\t\t<hostdev mode='subsystem' type='mdev' model='vfio-pci'>\n"
                f"\t\t\t<source>\n\t\t\t\t<address  uuid={attr(uuid)}/>\n\t\t\t</source>\n"
            )
        else:
            managed = "no" if mdev == "nvidia" else "yes"
            d.w(
                f"\t\t<hostdev mode='subsystem' type='pci' managed='{managed}'>\n"
                "\t\t\t<source>\n\t\t\t\t<address "
                f" domain={attr('0x' + domain)} bus={attr('0x' + bus)}"
                f" slot={attr('0x' + slot)} function={attr('0x' + func)}/>\n"
                "\t\t\t</source>\n"
            )
        if pci.get("IOMMUFD", "").upper() == "YES":
            d.w("\t\t\t<driver iommufd='yes'/>\n")
        if pci.get("ACPI_NODES", ""):
            d.w(f"\t\t\t<acpi nodeset={attr(pci['ACPI_NODES'])}/>\n")
        vm_addr = [pci.get(f"VM_{k}", "") for k in ("DOMAIN", "BUS", "SLOT", "FUNCTION")]
        if pci.get("VM_BUS_INDEX", ""):
            d.w(
                "\t\t\t<address type='pci' domain='0x0000' slot='0x00' function='0x0' "
                f" bus={attr(pci['VM_BUS_INDEX'])}/>\n"
            )
        elif all(vm_addr):
            d.w(
                f"\t\t\t<address type='pci' domain={attr(vm_addr[0])} bus={attr(vm_addr[1])}"
                f" slot={attr(vm_addr[2])} function={attr(vm_addr[3])}/>\n"
            )
        d.w("\t\t</hostdev>\n")
    d.pci_devices = ",".join(devices)


def _pcie(d: Domain) -> None:
    if not (d.is_q35 or d.arch == "aarch64"):
        return
    look = d.look
    ports = look.integer("Q35_ROOT_PORTS", 0, vm=False) or Q35_ROOT_DEFAULT_PORTS
    numa_topo = look.single("Q35_NUMA_PCIE", vm=False)
    numa_topo_on = numa_topo is not None and numa_topo.upper() == "YES"
    hole = max(look.vint("FEATURES", "PCIHOLE64", 0), 0)
    if hole > 0:
        d.w(
            "\t\t<controller index='0' type='pci' model='pcie-root'>\n"
            f"\t\t\t<pcihole64 unit='KiB'>{hole}</pcihole64>\n\t\t</controller>\n"
        )
    else:
        d.w("\t\t<controller index='0' type='pci' model='pcie-root'/>\n")
    if not d.nodes or not numa_topo_on:
        for idx in range(1, ports + 1):
            d.w(f"\t\t<controller type='pci' index='{idx}' model='pcie-root-port'/>\n")
        d.w(f"\t\t<controller type='pci' index='{ports + 1}' model='pcie-to-pci-bridge'/>\n")
        return
    d.w("\t\t<controller type='pci' index='1' model='pcie-root-port'/>\n")
    d.w("\t\t<controller type='pci' index='2' model='pcie-to-pci-bridge'/>\n")
    total = 0
    for i, node in enumerate(d.nodes):
        if not (vector_int(node, "TOTAL_CPUS") or 0) or not (vector_int(node, "MEMORY") or 0):
            continue
        total += 1
        bus_i = 3 + i * 9
        d.w(
            f"\t\t<controller type='pci' index='{bus_i}' model='pcie-expander-bus'>\n"
            f"\t\t\t<target busNr='{_hex(0x20 + 0x10 * i)}'>\n\t\t\t\t<node>{i}</node>\n"
            "\t\t\t</target>\n\t\t</controller>\n"
        )
        for j in range(8):
            multi = " multifunction='on'" if j == 0 else ""
            d.w(
                f"\t\t<controller type='pci' index='{bus_i + 1 + j}' model='pcie-root-port'>\n"
                f"\t\t\t<address type='pci' bus='{bus_i}' slot='0' function='{j}'{multi}/>\n"
                "\t\t</controller>\n"
            )
    bus_i, ddev = 3 + total * 9, 0
    for pci in d.vm.template.vectors("PCI"):
        if pci.get("ROOT", "") != "dedicated":
            continue
        d.w(
            f"\t\t<controller type='pci' index='{bus_i}' model='pcie-expander-bus'>\n"
            f"\t\t\t<target busNr='{_hex(0xA0 + 0x08 * ddev)}'>\n"
            f"\t\t\t\t<node>{pci.get('NUMA_NODE', '')}</node>\n"
            "\t\t\t</target>\n\t\t</controller>\n"
            f"\t\t<controller type='pci' index='{bus_i + 1}' model='pcie-root-port'>\n"
            f"\t\t\t<address type='pci' bus='{bus_i}' slot='0' function='0x0'/>\n"
            "\t\t</controller>\n"
        )
        if pci.get("IOMMU", "").upper() == "YES" and d.iommu_mode == "device":
            d.w(
                f"\t\t<iommu model='{d.iommu_model}'>\n"
                f"\t\t\t<driver pciBus='{bus_i}'{d.iommu_opt}/>\n\t\t</iommu>\n"
            )
        bus_i += 2
        ddev += 1


def write_devices(d: Domain) -> None:
    look = d.look
    defaults = (
        look.vstring("NIC", "FILTER", vm=False),
        look.vstring("NIC", "MODEL", vm=False),
        look.vstring("NIC", "VIRTIO_QUEUES", vm=False),
    )
    for nic in d.vm.template.vectors("NIC"):
        _nic(d, nic, defaults)
    _graphics(d)
    _video(d)
    _input_iommu(d)
    _pci(d)
    _pcie(d)
    tpm = look.vstring("TPM", "MODEL")
    if tpm:
        d.w(
            f"\t\t<tpm model='{tpm}'>\n\t\t\t<backend type='emulator' version='2.0'/>\n\t\t</tpm>\n"
        )
