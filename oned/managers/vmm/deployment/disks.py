"""Disks, the context CD-ROM and the virtio-scsi controller of a libvirt domain (the
disk part of ``LibVirtDriver::deployment_description_kvm``)."""

from __future__ import annotations

from oned.managers.vmm.deployment.common import (
    DeploymentError,
    Domain,
    attr,
    set_queues,
    to_int,
    vector_int,
)

CEPH_DEFAULT_PORT = 6789
GLUSTER_DEFAULT_PORT = 24007
ISCSI_DEFAULT_PORT = 3260
_CDROMS = {"CDROM", "BLOCK_CDROM", "RBD_CDROM", "SHEEPDOG_CDROM", "GLUSTER_CDROM"}
_SEC = (
    "TOTAL_BYTES_SEC",
    "READ_BYTES_SEC",
    "WRITE_BYTES_SEC",
    "TOTAL_IOPS_SEC",
    "READ_IOPS_SEC",
    "WRITE_IOPS_SEC",
)
_SEC_KEYS = (
    *(f"{b}{s}" for b in _SEC for s in ("", "_MAX", "_MAX_LENGTH")),
    "SIZE_IOPS_SEC",
)


def disk_bus(kind: str, is_q35: bool, target: str, sd_default: str) -> str:
    """``get_disk_bus``: CD-ROMs on sata/ide, ``sd*`` on SD_DISK_BUS, ``vd*`` virtio."""
    if kind in _CDROMS:
        return "sata" if is_q35 else "ide"
    first = target[:1]
    if first == "s":
        return sd_default
    if first == "v":
        return "virtio"
    return "sata" if is_q35 else "ide"


def _network_hosts(d: Domain, hosts: str, transport: str, default_port: int) -> None:
    """``do_network_hosts``: close ``<source`` and list its ``<host>`` elements."""
    if not hosts:
        d.w("/>\n")
        return
    d.w(">\n")
    for host in hosts.split(" "):
        if not host:
            continue
        parts = host.split(":")
        line = f"\t\t\t\t<host name={attr(parts[0])}"
        if len(parts) > 1:
            line += f" port={attr(parts[1])}"
        elif default_port != -1:
            line += f" port={attr(default_port)}"
        if transport:
            line += f" transport={attr(transport)}"
        d.w(line + "/>\n")
    d.w("\t\t\t</source>\n")


def _unsigned(text: str) -> int:
    """``string_to_unsigned``: a leading number, 0 otherwise."""
    value = vector_int({"V": text}, "V")
    return value if value is not None and value >= 0 else 0


def _insert_sec(d: Domain, base: str, s: str, sm: str, sml: str) -> None:
    s_i = 0
    if s:
        s_i = _unsigned(s)
        d.w(f"\t\t\t\t<{base}_sec><![CDATA[{s_i}]]></{base}_sec>\n")
    if sm:
        sm_i = _unsigned(sm)
        if sm_i > s_i:
            d.w(f"\t\t\t\t<{base}_sec_max><![CDATA[{sm_i}]]></{base}_sec_max>\n")
            if sml:
                sml_i = _unsigned(sml)
                d.w(f"\t\t\t\t<{base}_sec_max_length><![CDATA[{sml_i}]]></{base}_sec_max_length>\n")


def _iotune(d: Domain, sec: dict[str, str]) -> None:
    def trio(base: str) -> tuple[str, str, str]:
        return sec[base], sec[f"{base}_MAX"], sec[f"{base}_MAX_LENGTH"]

    if not any(sec[f"{b}{s}"] for b in _SEC for s in ("", "_MAX")):
        return
    d.w("\t\t\t<iotune>\n")
    if not sec["TOTAL_BYTES_SEC"] and not sec["TOTAL_BYTES_SEC_MAX"]:
        _insert_sec(d, "read_bytes", *trio("READ_BYTES_SEC"))
        _insert_sec(d, "write_bytes", *trio("WRITE_BYTES_SEC"))
    else:
        _insert_sec(d, "total_bytes", *trio("TOTAL_BYTES_SEC"))
    if not sec["TOTAL_IOPS_SEC"] and not sec["TOTAL_IOPS_SEC_MAX"]:
        _insert_sec(d, "read_iops", *trio("READ_IOPS_SEC"))
        _insert_sec(d, "write_iops", *trio("WRITE_IOPS_SEC"))
    else:
        _insert_sec(d, "total_iops", *trio("TOTAL_IOPS_SEC"))
    if sec["SIZE_IOPS_SEC"] and (
        sec["TOTAL_IOPS_SEC"] or sec["READ_IOPS_SEC"] or sec["WRITE_IOPS_SEC"]
    ):
        _insert_sec(d, "size_iops", sec["SIZE_IOPS_SEC"], "", "")
    d.w("\t\t\t</iotune>\n")


def _source(d: Domain, disk: dict[str, str], kind: str, disk_id: str) -> bool:
    """The ``<disk>`` opening and ``<source>``; False for a FILESYSTEM (already written)."""
    vm = d.vm
    dtype = disk.get("DISK_TYPE", "")
    source = disk.get("SOURCE", "")
    clone = disk.get("CLONE", "")
    path = f"{d.system_dir}/disk.{disk_id}"
    if kind in ("BLOCK", "BLOCK_CDROM"):
        device = "cdrom" if kind == "BLOCK_CDROM" else "disk"
        d.w(f"\t\t<disk type='block' device='{device}'>\n")
        d.w(f"\t\t\t<source dev={attr(path)}/>\n")
    elif kind == "ISCSI":
        d.w("\t\t<disk type='network' device='disk'>\n")
        name = disk.get("ISCSI_IQN", "") or source
        d.w(f"\t\t\t<source protocol='iscsi' name={attr(name)}")
        _network_hosts(d, disk.get("ISCSI_HOST", ""), "", ISCSI_DEFAULT_PORT)
        user, usage = disk.get("ISCSI_USER", ""), disk.get("ISCSI_USAGE", "")
        if user and usage:
            d.w(
                f"\t\t\t<auth username={attr(user)}>\n"
                f"\t\t\t\t<secret type='iscsi' usage={attr(usage)}/>\n\t\t\t</auth>\n"
            )
    elif kind in ("RBD", "RBD_CDROM") or dtype == "RBD":
        device = "cdrom" if kind == "RBD_CDROM" else "disk"
        d.w(f"\t\t<disk type='network' device='{device}'>\n")
        name = source or (disk.get("POOL_NAME", "") or "one") + "/one-sys"
        if clone == "YES" or not source:
            name += f"-{vm.oid}-{disk_id}"
        d.w(f"\t\t\t<source protocol='rbd' name={attr(name)}")
        _network_hosts(d, disk.get("CEPH_HOST", ""), "", CEPH_DEFAULT_PORT)
        secret, user = disk.get("CEPH_SECRET", ""), disk.get("CEPH_USER", "")
        if secret and user:
            d.w(
                f"\t\t\t<auth username={attr(user)}>\n"
                f"\t\t\t\t<secret type='ceph' uuid={attr(secret)}/>\n\t\t\t</auth>\n"
            )
    elif kind in ("SHEEPDOG", "SHEEPDOG_CDROM"):
        device = "disk" if kind == "SHEEPDOG" else "cdrom"
        d.w(f"\t\t<disk type='network' device='{device}'>\n")
        name = source + (f"-{vm.oid}-{disk_id}" if clone == "YES" else "")
        d.w(f"\t\t\t<source protocol='sheepdog' name={attr(name)}")
        _network_hosts(d, disk.get("SHEEPDOG_HOST", ""), "tcp", -1)
    elif kind in ("GLUSTER", "GLUSTER_CDROM"):
        device = "disk" if kind == "GLUSTER" else "cdrom"
        d.w(f"\t\t<disk type='network' device='{device}'>\n")
        name = disk.get("GLUSTER_VOLUME", "") + "/"
        if clone == "YES":
            name += f"{vm.oid}/disk.{disk_id}"
        else:
            name += source.split("/")[-1] if source else ""
        d.w(f"\t\t\t<source protocol='gluster' name={attr(name)}")
        _network_hosts(d, disk.get("GLUSTER_HOST", ""), "tcp", GLUSTER_DEFAULT_PORT)
    elif kind == "CDROM":
        cd_type, cd_source = ("block", "dev") if dtype == "BLOCK" else ("file", "file")
        d.w(f"\t\t<disk type='{cd_type}' device='cdrom'>\n")
        d.w(f"\t\t\t<source {cd_source}={attr(path)}/>\n")
    elif kind == "FILESYSTEM":
        _filesystem(d, disk, source)
        return False
    else:
        d.w("\t\t<disk type='file' device='disk'>\n")
        d.w(f"\t\t\t<source file={attr(path)}/>\n")
    return True


def _filesystem(d: Domain, disk: dict[str, str], source: str) -> None:
    d.is_fs = True
    d.w(
        "\t\t<filesystem type='mount' accessmode='passthrough'>\n"
        "\t\t\t<driver type='virtiofs' queue='1024'/>\n"
        "\t\t\t<binary path='/var/tmp/one/vmm/kvm/virtiofsd.sh' xattr='on'>\n"
        "\t\t\t\t<cache mode='always'/>\n"
        "\t\t\t\t<sandbox mode='namespace'/>\n"
        "\t\t\t</binary>\n"
        f"\t\t\t<source dir={attr(source)}/>\n"
        f"\t\t\t<target dir={attr(disk.get('MOUNT_TAG', ''))}/>\n"
    )
    if disk.get("READONLY", "").upper() == "YES":
        d.w("\t\t\t<readonly/>\n")
    uid_map = d.look.vstring("DISK", "UID_MAP", vm=False) or "100000"
    gid_map = d.look.vstring("DISK", "GID_MAP", vm=False) or "100000"
    d.w(
        "\t\t\t<idmap>\n"
        f"\t\t\t\t<uid start='0' target='{uid_map}' count='65536'/>\n"
        f"\t\t\t\t<gid start='0' target='{gid_map}' count='65536'/>\n"
        "\t\t\t</idmap>\n"
        "\t\t</filesystem>\n"
    )


def write_disks(d: Domain) -> None:
    """Every DISK, the SATA controllers they need, the context CD-ROM and the
    virtio-scsi controller."""
    look = d.look
    default_driver = look.vstring("DISK", "DRIVER", vm=False) or "raw"
    default_cache = look.vstring("DISK", "CACHE", vm=False) or "default"
    default_io = look.vstring("DISK", "IO", vm=False)
    default_discard = look.vstring("DISK", "DISCARD", vm=False)
    defaults = {key: look.vstring("DISK", key, vm=False) for key in _SEC_KEYS}
    default_queues = look.vstring("FEATURES", "VIRTIO_BLK_QUEUES")
    sata_index = 1 if d.is_q35 else 0
    sata: list[str] = []
    for disk in d.vm.template.vectors("DISK"):
        kind = disk.get("TYPE", "")
        target = disk.get("TARGET", "")
        disk_id = disk.get("DISK_ID", "")
        readonly = disk.get("READONLY", "").upper() == "YES"
        sec = {key: disk.get(key, "") or defaults[key] for key in _SEC_KEYS}
        if not target and kind != "FILESYSTEM":
            raise DeploymentError("Wrong target value in DISK.")
        if kind.upper() in ("SWAP", "FS"):
            kind = disk.get("DISK_TYPE", "")
        if not _source(d, disk, kind, disk_id):
            continue
        bus = disk_bus(kind, d.is_q35, target, d.sd_bus)
        d.w(f"\t\t\t<target dev={attr(target)}" + (f" bus={attr(bus)}" if bus else "") + "/>\n")
        luks = disk.get("LUKS_SECRET", "")
        if luks:
            d.w(
                "\t\t\t<encryption format='luks'>\n"
                f"\t\t\t\t<secret type='passphrase' uuid={attr(luks)}/>\n"
                "\t\t\t</encryption>\n"
            )
        order = vector_int(disk, "ORDER")
        if order is not None:
            d.w(f"\t\t\t<boot order={attr(order)}/>\n")
        if readonly:
            d.w("\t\t\t<readonly/>\n")
        if disk.get("SHAREABLE", "") == "YES":
            d.w("\t\t\t<shareable/>\n")
        serial = disk.get("SERIAL", "")
        if serial:
            if kind == "BLOCK" and bus == "scsi":
                d.warn("Serial attribute ignored: not supported for SCSI block devices.")
            else:
                d.w(f"\t\t\t<serial>{serial}</serial>\n")
        fmt = "raw" if kind == "CDROM" else (disk.get("DRIVER", "") or default_driver)
        line = f"\t\t\t<driver name='qemu' type={attr(fmt)}"
        line += f" cache={attr(disk.get('CACHE', '') or default_cache)}"
        io = disk.get("IO", "") or default_io
        if io:
            line += f" io={attr(io)}"
        discard = disk.get("DISCARD", "") or default_discard
        if discard:
            line += f" discard={attr(discard)}"
        if d.iothreads > 0 and bus == "virtio":
            wanted = to_int(disk.get("IOTHREAD", ""))
            if 0 < wanted <= d.iothreads:
                line += f" iothread={attr(wanted)}"
            else:
                line += f" iothread={attr(d.iothread_actual)}"
                d.iothread_actual = (d.iothread_actual % d.iothreads) + 1
        queues = disk.get("VIRTIO_BLK_QUEUES", "")
        if queues:
            queues = set_queues(queues, d.vcpu)
        elif default_queues:
            default_queues = set_queues(default_queues, d.vcpu)
            queues = default_queues
        if queues and bus == "virtio":
            line += f" queues={attr(queues)}"
        d.w(line + "/>\n")
        _iotune(d, sec)
        if target[:2] == "sd":
            number = 0
            for ch in target[2:]:
                number = number * 26 + (ord(ch) - ord("a") + 1)
            number -= 1
            if bus == "sata":
                sata.append(f"\t\t<controller type='sata' index='{sata_index}'/>\n")
                d.w(
                    f"\t\t\t<address type='drive' controller='{sata_index}' bus='0' "
                    "target='0' unit='0'/>\n"
                )
                sata_index += 1
            elif 0 <= number < 256:
                d.w(
                    "\t\t\t<address type='drive' controller='0' bus='0'"
                    f" target='{number}' unit='0'/>\n"
                )
        d.w("\t\t</disk>\n")
    d.w("".join(sata))
    _context(d)
    _scsi_controller(d)


def _context(d: Domain) -> None:
    context = d.vm.template.get_vector("CONTEXT")
    if context is None:
        return
    target = context.get("TARGET", "")
    if not target:
        d.warn("Could not find target device to attach context, will continue without it.")
        return
    ctype = ""
    if d.ds_template is not None:
        ctype = (d.ds_template.get("CONTEXT_DISK_TYPE") or "").upper()
    kind, src = ("block", "dev") if ctype == "BLOCK" else ("file", "file")
    path = f"{d.system_dir}/disk.{context.get('DISK_ID', '')}"
    bus = disk_bus("CDROM", d.is_q35, target, d.sd_bus)
    d.w(
        f"\t\t<disk type='{kind}' device='cdrom'>\n"
        f"\t\t\t<source {src}={attr(path)}/>\n"
        f"\t\t\t<target dev={attr(target)}" + (f" bus={attr(bus)}" if bus else "") + "/>\n"
        "\t\t\t<readonly/>\n"
        "\t\t\t<driver name='qemu' type='raw' cache='none'/>\n"
        "\t\t</disk>\n"
    )


def _scsi_controller(d: Domain) -> None:
    queues = set_queues(d.look.vstring("FEATURES", "VIRTIO_SCSI_QUEUES"), d.vcpu)
    line = "\t\t<controller type='scsi' index='0' model='virtio-scsi'>\n\t\t\t<driver"
    line += f" queues={attr(queues)}" if queues else " queues='1'"
    if d.iothreads > 0:
        line += f" iothread={attr(d.iothread_actual)}"
    d.w(line + "/>\n\t\t</controller>\n")
