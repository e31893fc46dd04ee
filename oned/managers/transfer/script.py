"""Transfer script lines as ``TransferManager.cc`` writes them (``prolog_transfer_command``,
``prolog_os_transfer_commands``, ``epilog_transfer_command``, ``trigger_epilog_stop``,
``trigger_prolog_resume``, ``epilog_delete_commands``) and the deploy-time
``VirtualMachine::check_tm_mad_disks``.

Each line is ``<OP>[.<TM_MAD_SYSTEM>] <tm_mad> <args> <vid> <ds_id>``: image disks name
their image datastore's TM_MAD and id (with the system datastore's TM_MAD as a suffix
when the two differ), volatile disks and the VM directory the system datastore's; paths
are ``host:path`` with the front-end's name for local copies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from oned.objects.vm import VirtualMachine

if TYPE_CHECKING:
    from oned.core import Core
    from oned.template import Template


class TransferError(Exception):
    """The script cannot be written; the message goes to the VM log (TrM, E)."""


@dataclass
class Script:
    """Lines of one transfer file plus what oned logs while writing it."""

    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: OS attributes the prolog sets (KERNEL/INITRD copied from a datastore).
    os_updates: dict[str, str] = field(default_factory=dict)


def nebula_hostname(core: Core) -> str:
    """``Nebula::get_nebula_hostname``: HOSTNAME from oned.conf, else this machine's
    canonical name (``getaddrinfo`` with AI_CANONNAME), else its plain host name."""
    import socket

    configured = core.config.get("HOSTNAME") or ""
    if configured:
        return configured
    name = socket.gethostname()
    try:
        infos = socket.getaddrinfo(name, None, flags=socket.AI_CANONNAME)
    except OSError:
        return name
    return next((info[3] for info in infos if info[3]), name)


def _volatile(disk: dict[str, str]) -> bool:
    return disk.get("TYPE", "").upper() in ("SWAP", "FS")


def _filesystem(disk: dict[str, str]) -> bool:
    return disk.get("TYPE", "").upper() == "FILESYSTEM"


def _int(text: str) -> int | None:
    """``vector_value(name, int&)``: None when absent, not a number or out of range."""
    try:
        value = int(text.strip())
    except ValueError:
        return None
    return value if -(2**31) <= value < 2**31 else None


def _disk_id(disk: dict[str, str]) -> str:
    return disk.get("DISK_ID", "")


def _image_tm(disk: dict[str, str]) -> tuple[str, int] | None:
    """TM_MAD and DATASTORE_ID of an image disk (None when either is missing)."""
    tm_mad = disk.get("TM_MAD", "")
    ds_id = _int(disk.get("DATASTORE_ID", ""))
    if not tm_mad or ds_id is None:
        return None
    return tm_mad, ds_id


# -- prolog ------------------------------------------------------------------------


def prolog(vm: VirtualMachine, frontend: str, system_dir: str) -> Script:
    """``trigger_prolog``: MKSWAP/MKIMAGE for volatile disks, CLONE/LN for images, then
    the kernel and initrd kept in a datastore (raises ``TransferError``)."""
    current = vm.current
    assert current is not None
    host, vid, vm_tm, vm_ds = current.hostname, vm.oid, current.tm_mad, current.ds_id
    script = Script()
    for disk in vm.template.vectors("DISK"):
        disk_id = _disk_id(disk)
        kind = disk.get("TYPE", "").upper()
        target = f"{host}:{system_dir}/disk.{disk_id}"
        if kind == "SWAP":
            size = disk.get("SIZE", "")
            if not size:
                script.warnings.append("No size in swap image, skipping")
                continue
            script.lines.append(f"MKSWAP {vm_tm} {size} {target} {vid} {vm_ds}")
        elif kind == "FS":
            size, fmt = disk.get("SIZE", ""), disk.get("FORMAT", "")
            if not size or not fmt:
                script.warnings.append("No size or format in FS, skipping")
                continue
            script.lines.append(f"MKIMAGE {vm_tm} {size} {fmt} {target} {vid} {vm_ds}")
        elif kind == "FILESYSTEM":
            continue
        else:
            tm_mad, ds_id = disk.get("TM_MAD", ""), disk.get("DATASTORE_ID", "")
            source, clone = disk.get("SOURCE", ""), disk.get("CLONE", "")
            if not (source and tm_mad and ds_id and clone):
                raise TransferError(
                    "missing DISK mandatory attributes (SOURCE, TM_MAD, CLONE, "
                    f"DATASTORE_ID) for VM {vid}, DISK {disk_id}"
                )
            system = disk.get("TM_MAD_SYSTEM", "")
            word = "CLONE" if clone.upper() == "YES" else "LN"
            word += f".{system}" if system else ""
            src = source if ":" in source else f"{frontend}:{source}"
            script.lines.append(f"{word} {tm_mad} {src} {target} {vid} {ds_id}")
    os_vec = vm.template.get_vector("OS")
    if os_vec is not None:
        for base in ("KERNEL", "INITRD"):
            path = _os_line(script, os_vec, base, frontend, f"{host}:{system_dir}", vid)
            if path:
                script.os_updates[base] = f"{system_dir}/{base.lower()}"
    return script


def _os_line(
    script: Script, os_vec: dict[str, str], base: str, frontend: str, target: str, vid: int
) -> bool:
    """``prolog_os_transfer_commands``: CLONE a kernel/initrd image from its datastore."""
    if not os_vec.get(f"{base}_DS", ""):
        return False
    source = os_vec.get(f"{base}_DS_SOURCE", "")
    ds_id = os_vec.get(f"{base}_DS_DSID", "")
    tm_mad = os_vec.get(f"{base}_DS_TM", "")
    if not (source and ds_id and tm_mad):
        return False
    script.lines.append(f"CLONE {tm_mad} {frontend}:{source} {target}/{base.lower()} {vid} {ds_id}")
    return True


def save_os_updates(core: Core, vm: VirtualMachine, updates: dict[str, str]) -> None:
    """``set_kernel``/``set_initrd`` + ``vmpool->update``: the copies the prolog makes of
    a kernel/initrd image become the VM's OS/KERNEL and OS/INITRD."""
    if not updates:
        return
    os_vec = vm.template.get_vector("OS")
    if os_vec is not None:
        os_vec.update(updates)
    from oned._async import background
    from oned.managers.lifecycle.tx import Tx, transition

    def step(tx: Tx) -> bool:
        target = tx.vm.template.get_vector("OS")
        if target is None:
            return False
        target.update(updates)
        return True

    vid = vm.oid
    core.eventually(lambda: background(transition(core, vid, step, f"OS of VM {vid}"), ""))


# -- epilog ------------------------------------------------------------------------


def epilog(vm: VirtualMachine, host: str, system_dir: str) -> Script:
    """``trigger_epilog``: MVDS for SAVE=YES disks, DELETE for the others, then the VM
    directory on ``host`` (the front-end's name for a VM that was not on a host)."""
    current = vm.current
    assert current is not None
    vid = vm.oid
    script = Script()
    for disk in vm.template.vectors("DISK"):
        if _filesystem(disk):
            continue
        path = f"{host}:{system_dir}/disk.{_disk_id(disk)}"
        system = disk.get("TM_MAD_SYSTEM", "")
        suffix = f".{system}" if system else ""
        if disk.get("SAVE", "").upper() == "YES":
            tm_mad, ds_id = disk.get("TM_MAD", ""), disk.get("DATASTORE_ID", "")
            source = disk.get("SOURCE", "")
            if not ds_id or not tm_mad:
                script.errors.append("No DS_ID or TM_MAD to save disk image")
                continue
            if not source:
                script.errors.append("No SOURCE to save disk image")
                continue
            script.lines.append(f"MVDS{suffix} {tm_mad} {path} {source} {vid} {ds_id}")
            continue
        if _volatile(disk):
            pair: tuple[str, int] | None = (current.tm_mad, current.ds_id)
        else:
            pair = _image_tm(disk)
        if pair is not None:
            script.lines.append(f"DELETE{suffix} {pair[0]} {path} {vid} {pair[1]}")
    script.lines.append(f"DELETE {current.tm_mad} {host}:{system_dir} {vid} {current.ds_id}")
    return script


def epilog_delete(vm: VirtualMachine, host: str, system_dir: str, vm_tm: str, vm_ds: int) -> Script:
    """``epilog_delete_commands`` (recover --delete): DELETE every disk, saved or not,
    then the VM directory. The TM_MAD_SYSTEM suffix, once seen, stays for the next
    disks, as in oned."""
    vid = vm.oid
    script = Script()
    suffix = ""
    for disk in vm.template.vectors("DISK"):
        if _filesystem(disk):
            continue
        pair = (vm_tm, vm_ds) if _volatile(disk) else _image_tm(disk)
        if pair is None:
            continue
        system = disk.get("TM_MAD_SYSTEM", "")
        if system:
            suffix = f".{system}"
        script.lines.append(
            f"DELETE{suffix} {pair[0]} {host}:{system_dir}/disk.{_disk_id(disk)} {vid} {pair[1]}"
        )
    script.lines.append(f"DELETE {vm_tm} {host}:{system_dir} {vid} {vm_ds}")
    return script


def epilog_stop(vm: VirtualMachine, frontend: str, system_dir: str) -> Script:
    """``trigger_epilog_stop``: MV each disk and the VM directory to the front-end."""
    current = vm.current
    assert current is not None
    vid, host = vm.oid, current.hostname
    script = Script()
    suffix = ""
    for disk in vm.template.vectors("DISK"):
        if _filesystem(disk):
            continue
        pair = (current.tm_mad, current.ds_id) if _volatile(disk) else _image_tm(disk)
        if pair is None:
            continue
        system = disk.get("TM_MAD_SYSTEM", "")
        if system:
            suffix = f".{system}"
        disk_path = f"{system_dir}/disk.{_disk_id(disk)}"
        script.lines.append(
            f"MV{suffix} {pair[0]} {host}:{disk_path} {frontend}:{disk_path} {vid} {pair[1]}"
        )
    script.lines.append(
        f"MV {current.tm_mad} {host}:{system_dir} {frontend}:{system_dir} {vid} {current.ds_id}"
    )
    return script


def prolog_resume(vm: VirtualMachine, frontend: str, previous_dir: str, system_dir: str) -> Script:
    """``trigger_prolog_resume``: MV each disk and the VM directory from the front-end
    (the previous record's directory) to the new host."""
    current = vm.current
    assert current is not None
    vid, host = vm.oid, current.hostname
    script = Script()
    suffix = ""
    for disk in vm.template.vectors("DISK"):
        volatile = _volatile(disk) or _filesystem(disk)
        pair = (current.tm_mad, current.ds_id) if volatile else _image_tm(disk)
        if pair is None:
            continue
        system = disk.get("TM_MAD_SYSTEM", "")
        if system:
            suffix = f".{system}"
        name = f"disk.{_disk_id(disk)}"
        script.lines.append(
            f"MV{suffix} {pair[0]} {frontend}:{previous_dir}/{name} "
            f"{host}:{system_dir}/{name} {vid} {pair[1]}"
        )
    script.lines.append(
        f"MV {current.tm_mad} {frontend}:{previous_dir} {host}:{system_dir} {vid} {current.ds_id}"
    )
    return script


# -- deploy ------------------------------------------------------------------------


def check_tm_mad_disks(core: Core, template: Template, tm_mad: str) -> str:
    """``VirtualMachine::check_tm_mad_disks``: on the first deploy, disks whose image
    datastore's TM_MAD differs from the system datastore's take that datastore's
    ``CLONE_TARGET_<TM>``, ``LN_TARGET_<TM>``, ``DISK_TYPE_<TM>`` and ``TM_MAD_SYSTEM``,
    and the VM records TM_MAD_SYSTEM. Returns oned's error text ("" when fine)."""
    if template.get("TM_MAD_SYSTEM"):
        return ""
    wanted = tm_mad.upper()
    for disk in template.vectors("DISK"):
        if disk.get("TM_MAD", "").upper() == wanted or _filesystem(disk):
            continue
        ds_id = _int(disk.get("DATASTORE_ID", ""))
        if ds_id is None:
            continue
        ds = core.datastores.get(ds_id)
        if ds is None:
            return "Datastore does not exist"
        key = tm_mad.strip().upper()
        if tm_mad:
            targets = [ds.template.get(f"{name}_{key}") or "" for name in _TARGETS]
            if not all(targets):
                return f"Image Datastore does not support transfer mode: {tm_mad}"
        else:
            targets = ["", "", ""]
        for name, value in zip(_TARGETS, targets, strict=True):
            disk[name] = value
        disk["TM_MAD_SYSTEM"] = tm_mad
    template.add("TM_MAD_SYSTEM", tm_mad)
    return ""


_TARGETS = ("CLONE_TARGET", "LN_TARGET", "DISK_TYPE")
