"""Deployment files (mirrors ``VirtualMachineManagerDriver::deployment_description`` and
its writers): the VM_MAD's ``TYPE`` in oned.conf picks the format, ``xml`` the VM's own
document (``XMLDriver``), ``kvm``/``qemu`` a libvirt domain (``LibVirtDriver``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oned.managers.vmm.deployment.common import DeploymentError, Domain
from oned.managers.vmm.deployment.conf import Lookup, driver_conf, vm_mad_section
from oned.managers.vmm.deployment.libvirt import domain_xml

if TYPE_CHECKING:
    from oned.core import Core
    from oned.objects.vm import VirtualMachine

__all__ = [
    "Deployment",
    "DeploymentError",
    "deployment",
    "driver_type",
    "validate_template",
    "write_deployment",
]

LIBVIRT_TYPES = ("kvm", "qemu")


class Deployment:
    """A generated deployment file: its text and the warnings for the VM log."""

    def __init__(self, text: str, warnings: list[str], password: str = "") -> None:
        self.text = text
        self.warnings = warnings
        self.password = password


def driver_type(core: Core, vm_mad: str) -> str:
    """The VM_MAD's ``TYPE`` in lower case ("xml" when the section is missing)."""
    section = vm_mad_section(core, vm_mad)
    if section is None:
        return "xml"
    return section.get("TYPE", "xml").strip().lower()


def deployment(core: Core, vm: VirtualMachine) -> Deployment:
    """The deployment file for ``vm``'s current placement (raises ``DeploymentError``
    with the text oned logs when it cannot be written)."""
    from oned.managers.transfer.manager import system_dir

    current = vm.current
    if current is None:
        raise DeploymentError("VM has no history")
    section = vm_mad_section(core, current.vm_mad) or {}
    kind = section.get("TYPE", "xml").strip().lower()
    if kind not in LIBVIRT_TYPES:
        return Deployment(vm.to_xml(), [])
    host = core.hosts.get(current.hid)
    cluster = core.clusters.get(current.cid)
    ds = core.datastores.get(current.ds_id)
    look = Lookup(
        vm.template,
        host.template if host is not None else None,
        cluster.template if cluster is not None else None,
        driver_conf(core, section),
    )
    domain = Domain(
        vm=vm,
        look=look,
        emulator=kind,
        system_dir=system_dir(core, vm),
        ds_template=ds.template if ds is not None else None,
    )
    try:
        text = domain_xml(domain, core.now())
    except (IndexError, KeyError, ValueError) as exc:  # malformed NUMA/PCI input
        raise DeploymentError(f"Could not generate the deployment file: {exc}") from exc
    return Deployment(text, domain.warnings, domain.password)


def validate_template(core: Core, vm: VirtualMachine, vm_mad: str, hid: int, cid: int) -> str:
    """``LibVirtDriver::validate_template`` at deploy: a FIRMWARE other than BIOS/UEFI must
    be one of OVMF_UEFIS (host, cluster or driver defaults). Returns oned's text, logged
    to the VM log too ("" when fine or for other driver types)."""
    section = vm_mad_section(core, vm_mad)
    if section is None or section.get("TYPE", "").strip().lower() not in LIBVIRT_TYPES:
        return ""
    host = core.hosts.get(hid)
    cluster = core.clusters.get(cid)
    look = Lookup(
        vm.template,
        host.template if host is not None else None,
        cluster.template if cluster is not None else None,
        driver_conf(core, section),
    )
    firmware = look.vstring("OS", "FIRMWARE", host=False, cluster=False)
    if not firmware or firmware.upper() in ("BIOS", "UEFI"):
        return ""
    uefis = look.string("OVMF_UEFIS", vm=False)
    if not uefis:
        error = "No OVMF_UEFIS defined in configuration."
    elif firmware not in uefis.split(" "):
        error = f"FIRMWARE '{firmware}' not allowed."
    else:
        return ""
    from oned.managers.lifecycle.vmlog import write_vm_log

    write_vm_log(core, vm.oid, [("VMM", "E", error)], core.now())
    return error


def write_deployment(core: Core, vm: VirtualMachine, path: str) -> None:
    """Write ``vm``'s deployment file at ``path`` (``vms/<vid>/deployment.<seq>``);
    warnings and the reason of a failure go to the VM log. Raises ``OSError`` or
    ``DeploymentError`` when the file cannot be written."""
    from pathlib import Path

    from oned.managers.lifecycle.vmlog import write_vm_log

    try:
        result = deployment(core, vm)
    except DeploymentError as exc:
        write_vm_log(core, vm.oid, [("VMM", "E", str(exc))], core.now())
        raise
    if result.warnings:
        lines = [("VMM", "W", text) for text in result.warnings]
        write_vm_log(core, vm.oid, lines, core.now())
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(result.text, encoding="utf-8")
    graphics = vm.template.get_vector("GRAPHICS") or {}
    if result.password and graphics.get("PASSWD") == result.password:
        _save_password(core, vm.oid, result.password)


def _save_password(core: Core, vid: int, password: str) -> None:
    """``vmpool->update`` after the deployment file: a RANDOM_PASSWD generated for the
    graphics is kept in the VM's GRAPHICS/PASSWD."""
    from oned._async import background
    from oned.managers.lifecycle.tx import Tx, transition

    def step(tx: Tx) -> bool:
        graphics = tx.vm.template.get_vector("GRAPHICS")
        if graphics is None:
            return False
        graphics["PASSWD"] = password
        return True

    core.eventually(
        lambda: background(transition(core, vid, step, f"graphics password of VM {vid}"), "")
    )
