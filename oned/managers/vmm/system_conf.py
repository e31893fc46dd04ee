"""``one.vm.updateconf`` on the VM template (mirrors
``VirtualMachineTemplate::get_updateconf_template``, ``VirtualMachine::updateconf``,
``set_boot_order``, ``parse_features``, ``parse_graphics``/``parse_video`` and
``VirtualMachineManager::validate_raw``).

Only OS, FEATURES, INPUT, GRAPHICS, VIDEO, RAW, CPU_MODEL, BACKUP_CONFIG (the
attributes oned lists for each) and CONTEXT are taken; mode 0 replaces each section,
mode 1 merges it. A changed CONTEXT is parsed again (variables, network context).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import TYPE_CHECKING

from oned.api.vm_context import parse_context
from oned.errors import InternalError
from oned.managers.lifecycle.tx import state_str
from oned.managers.vmm.system_backup_conf import backup_config
from oned.objects.vm import LcmState as L
from oned.objects.vm import VmState as S
from oned.template import Template

if TYPE_CHECKING:
    from oned.core import Core
    from oned.objects.vm import VirtualMachine

#: ``VirtualMachineTemplate::UPDATECONF_ATTRS``.
UPDATECONF_ATTRS: dict[str, tuple[str, ...]] = {
    "OS": (
        "ARCH",
        "MACHINE",
        "KERNEL",
        "INITRD",
        "BOOTLOADER",
        "BOOT",
        "KERNEL_CMD",
        "ROOT",
        "SD_DISK_BUS",
        "UUID",
        "FIRMWARE",
        "FIRMWARE_FORMAT",
    ),
    "FEATURES": (
        "PAE",
        "ACPI",
        "APIC",
        "LOCALTIME",
        "HYPERV",
        "GUEST_AGENT",
        "VIRTIO_SCSI_QUEUES",
        "VIRTIO_BLK_QUEUES",
        "IOTHREADS",
        "GIC",
        "RAS",
        "MIGRATE_AUTO_CONVERGE",
        "MIGRATE_COMPRESSED",
    ),
    "INPUT": ("TYPE", "BUS"),
    "GRAPHICS": ("TYPE", "LISTEN", "PASSWD", "KEYMAP", "COMMAND"),
    "VIDEO": ("IOMMU", "ATS", "TYPE", "VRAM", "RESOLUTION"),
    "RAW": ("TYPE", "DATA", "VALIDATE", "DATA_VMX"),
    "CPU_MODEL": ("MODEL", "FEATURES"),
    "BACKUP_CONFIG": (
        "FS_FREEZE",
        "KEEP_LAST",
        "BACKUP_VOLATILE",
        "INCREMENT_MODE",
        "MODE",
        "DISK_IDS",
        "INTERACTIVE",
    ),
}
_SECTIONS = ("OS", "FEATURES", "INPUT", "GRAPHICS", "VIDEO", "RAW", "CPU_MODEL")
_BOOL_FEATURES = (
    "PAE",
    "ACPI",
    "APIC",
    "HYPERV",
    "LOCALTIME",
    "GUEST_AGENT",
    "RAS",
    "MIGRATE_COMPRESSED",
)
MAX_VNC_PASSWD_LENGTH = 8
MAX_SPICE_PASSWD_LENGTH = 59
_ETH = re.compile(r"^ETH\d+_\w+$")

#: ``VirtualMachine::updateconf``: ACTIVE sub-states whose configuration may change.
_UPDATECONF_LCM = {
    L.LCM_INIT,
    L.PROLOG,
    L.RUNNING,
    L.EPILOG,
    L.SHUTDOWN,
    L.CLEANUP_RESUBMIT,
    L.SHUTDOWN_POWEROFF,
    L.CLEANUP_DELETE,
    L.HOTPLUG_SAVEAS_POWEROFF,
    L.SHUTDOWN_UNDEPLOY,
    L.EPILOG_UNDEPLOY,
    L.PROLOG_UNDEPLOY,
    L.HOTPLUG_PROLOG_POWEROFF,
    L.HOTPLUG_EPILOG_POWEROFF,
    L.BOOT_FAILURE,
    L.PROLOG_FAILURE,
    L.EPILOG_FAILURE,
    L.EPILOG_UNDEPLOY_FAILURE,
    L.PROLOG_MIGRATE_POWEROFF,
    L.PROLOG_MIGRATE_POWEROFF_FAILURE,
    L.BOOT_UNDEPLOY_FAILURE,
    L.PROLOG_UNDEPLOY_FAILURE,
    L.DISK_SNAPSHOT_POWEROFF,
    L.DISK_SNAPSHOT_REVERT_POWEROFF,
    L.DISK_SNAPSHOT_DELETE_POWEROFF,
}
_UPDATECONF_STATES = {
    S.PENDING,
    S.HOLD,
    S.POWEROFF,
    S.UNDEPLOYED,
    S.CLONING,
    S.CLONING_FAILURE,
}


def updateconf_template(tmpl: Template) -> Template:
    """``get_updateconf_template``: the known keys of each section, and CONTEXT."""
    out = Template()
    for name, keys in UPDATECONF_ATTRS.items():
        old = tmpl.get_vector(name)
        if old is None:
            continue
        new = {}
        for key in keys:
            if key not in old:
                continue
            if old[key] or (name == "BACKUP_CONFIG" and key == "DISK_IDS"):
                new[key] = old[key]
        if new:
            out.add(name, new)
    context = tmpl.get_vector("CONTEXT")
    if context is not None:
        out.add("CONTEXT", dict(context))
    return out


def _replace_vector(old_tmpl: Template, new_tmpl: Template, name: str, append: bool) -> None:
    new = new_tmpl.get_vector(name)
    old = old_tmpl.get_vector(name)
    if new is None:
        if not append:
            old_tmpl.erase(name)
    elif old is None:
        old_tmpl.add(name, dict(new))
    else:
        for key in UPDATECONF_ATTRS[name]:
            if key not in new:
                if not append:
                    old.pop(key, None)
            else:
                old[key] = new[key]


def _bool(text: str) -> bool:
    """``VectorAttribute::vector_value(name, bool&)``: only YES (any case) is true."""
    return text.upper() == "YES"


def _boot_order(tmpl: Template) -> None:
    """``set_boot_order``: ORDER of the DISKs/NICs named by OS/BOOT."""
    disks, nics = tmpl.vectors("DISK"), tmpl.vectors("NIC")
    for dev in (*disks, *nics):
        dev.pop("ORDER", None)
    order = (tmpl.get_vector("OS") or {}).get("BOOT", "")
    if not order:
        return
    index = 1
    for raw in order.split(","):
        dev_name = raw.upper()
        match = re.match(r"^(DISK|NIC)(\d+)$", dev_name)
        if match is None:
            raise InternalError(
                f'Wrong OS/BOOT value: "{order}" should be a comma-separated list of disk# or nic#'
            )
        devices, id_name = (disks, "DISK_ID") if match.group(1) == "DISK" else (nics, "NIC_ID")
        wanted = int(match.group(2))
        found = False
        for dev in devices:
            if dev.get(id_name, "").strip() == str(wanted):
                dev["ORDER"] = str(index)
                index += 1
                found = True
        if not found:
            raise InternalError(f"Wrong OS/BOOT value. Device with {id_name} {wanted} not found")


def _features(tmpl: Template) -> None:
    features = tmpl.get_vector("FEATURES")
    if features is None:
        return
    for name in _BOOL_FEATURES:
        if features.get(name):
            features[name] = "YES" if _bool(features[name]) else "NO"
    gic = features.get("GIC", "")
    if gic and gic not in ("2", "3"):
        features["GIC"] = "host"
    converge = features.get("MIGRATE_AUTO_CONVERGE", "")
    if converge:
        wrong = f'Wrong FEATURES/MIGRATE_AUTO_CONVERGE value: "{converge}". '
        parts = [p.strip() for p in converge.split(",")]
        if len(parts) > 2:
            raise InternalError(wrong + "Expected initial[,increment]")
        for part in parts:
            if not re.match(r"^[0-9]+$", part):
                raise InternalError(wrong + "Expected initial[,increment]")
            if int(part) > 100:
                raise InternalError(
                    wrong + "Initial and increment values must be between 0 and 100"
                )
        features["MIGRATE_AUTO_CONVERGE"] = ",".join(parts)


def _graphics(tmpl: Template) -> None:
    """``parse_graphics``: PORT range, RANDOM_PASSWD, VNC/SPICE password lengths."""
    graphics = tmpl.get_vector("GRAPHICS")
    if graphics is None:
        return
    if graphics.get("PORT", ""):
        port = graphics["PORT"].strip()
        if not port.isdigit() or int(port) > 65535:
            raise InternalError("Wrong PORT number in GRAPHICS attribute")
    password = graphics.get("PASSWD", "")
    if _bool(graphics.get("RANDOM_PASSWD", "")) and not password:
        password = hashlib.sha256(str(secrets.randbelow(2**31)).encode()).hexdigest()
        graphics["PASSWD"] = password
    kind = graphics.get("TYPE", "").lower()
    if kind == "spice" and len(password) > MAX_SPICE_PASSWD_LENGTH:
        graphics["PASSWD"] = password[:MAX_SPICE_PASSWD_LENGTH]
    elif kind == "vnc" and len(password) > MAX_VNC_PASSWD_LENGTH:
        graphics["PASSWD"] = password[:MAX_VNC_PASSWD_LENGTH]


def _graphics_video(tmpl: Template) -> None:
    _graphics(tmpl)
    video = tmpl.get_vector("VIDEO")
    if video is None:
        return
    vtype = video.get("TYPE", "")
    if not vtype:
        raise InternalError("Video TYPE is required")
    vtype = vtype.lower()
    if vtype not in ("vga", "cirrus", "none", "virtio"):
        raise InternalError("Invalid video TYPE, should be either: none, vga, cirrus, or virtio")
    video["TYPE"] = vtype
    if (_bool(video.get("IOMMU", "")) or _bool(video.get("ATS", ""))) and vtype != "virtio":
        raise InternalError("IOMMU and ATS are only available for virtio TYPE")
    vram = video.get("VRAM", "")
    if vram and (not vram.strip().isdigit() or int(vram) < 1024):
        raise InternalError("Invalid VRAM value in VIDEO attribute, must be >= 1024")
    resolution = video.get("RESOLUTION", "")
    if resolution and not re.match(r"^[0-9]+x[0-9]+$", resolution):
        raise InternalError("Invalid RESOLUTION string format")


def validate_raw(core: Core, tmpl: Template) -> None:
    """``validate_raw``: RAW/TYPE must name a VM_MAD unless VALIDATE is false."""
    raw = tmpl.get_vector("RAW")
    if raw is None:
        return
    flag = raw.get("VALIDATE")
    if flag is not None and not _bool(flag):
        return
    drivers = {(v.get("NAME") or "").lower() for v in core.config.template.vectors("VM_MAD")}
    if raw.get("TYPE", "").lower() not in drivers:
        raise InternalError("Invalid RAW section: unsupported TYPE")


def _context(core: Core, vm: VirtualMachine, new_ctx: dict[str, str], append: bool) -> bool:
    """Update CONTEXT (ETHx_* refused unless CONTEXT_ALLOW_ETH_UPDATES); True when
    something changed."""
    tmpl = vm.template
    old = tmpl.get_vector("CONTEXT")
    if old is None:
        raise InternalError("Virtual machine does not have context, cannot add a new one.")
    allow_eth = _bool(core.config.get("CONTEXT_ALLOW_ETH_UPDATES") or "")
    changed = False
    equal: dict[str, str] = {}
    eth: dict[str, str] = {}
    for key, value in new_ctx.items():
        if key in old and old[key] == value:
            equal[key] = value
            continue
        if _ETH.match(key):
            if not allow_eth:
                verb = "update" if key in old else "add"
                raise InternalError(f"Unable to {verb} {key}, update NIC to update network context")
            eth[key] = value
        changed = True
    if not append and any(k not in new_ctx for k in old):
        changed = True
    fresh = {k: v for k, v in new_ctx.items() if k not in equal or (not append and k == "NETWORK")}
    fresh["TARGET"] = old.get("TARGET", "")
    fresh["DISK_ID"] = old.get("DISK_ID", "")
    work = tmpl.copy()
    work.set("CONTEXT", fresh)
    owner = {
        "UID": str(vm.uid),
        "UNAME": vm.uname,
        "GID": str(vm.gid),
        "GNAME": vm.gname,
        "NAME": vm.name,
        "VMID": str(vm.oid),
    }
    parse_context(core, work, vm.user_template, owner)
    parsed = work.get_vector("CONTEXT") or {}
    parsed.update(eth)
    if append:
        merged = dict(old)
        merged.update(parsed)
        tmpl.set("CONTEXT", merged)
    else:
        parsed.update({k: v for k, v in equal.items() if k != "NETWORK" or k not in parsed})
        tmpl.set("CONTEXT", parsed)
    return changed


def updateconf(core: Core, vm: VirtualMachine, new: Template, append: bool) -> bool:
    """``VirtualMachine::updateconf``: True when CONTEXT changed.

    Raises:
        InternalError: with oned's text.
    """
    lcm_ok = vm.state == S.ACTIVE and vm.lcm_state in _UPDATECONF_LCM
    if vm.state not in _UPDATECONF_STATES and not lcm_ok:
        raise InternalError(f"configuration cannot be updated in state {state_str(vm)}")
    validate_raw(core, new)
    _features(new)
    tmpl = vm.template
    _replace_vector(tmpl, new, "OS", append)
    _boot_order(tmpl)
    for name in _SECTIONS[1:]:
        _replace_vector(tmpl, new, name, append)
    changed = False
    new_ctx = new.get_vector("CONTEXT")
    if new_ctx is not None:
        changed = _context(core, vm, new_ctx, append)
    _graphics_video(tmpl)
    backup = new.get_vector("BACKUP_CONFIG")
    if backup is not None:
        backup_config(vm, backup, append)
    secret = core.attr_list("VM_ENCRYPTED_ATTR")
    if secret:  # ``encrypt()``: e.g. a new CONTEXT/PASSWORD is stored encrypted
        vm.template = core.one_key.encrypt_template(vm.template, secret)
    return changed
