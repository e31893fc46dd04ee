"""Pieces shared by the libvirt domain writer's modules (mirrors the helpers at the top
of ``LibVirtDriverKVM.cc``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from oned.managers.vmm.deployment.conf import Lookup
from oned.objects.vm import VirtualMachine
from oned.template import Template


class DeploymentError(Exception):
    """The deployment file cannot be generated; the message goes to the VM log."""


def attr(value: object) -> str:
    """``one_util::escape_xml_attr``: the value in single quotes, as is."""
    return f"'{value}'"


def cdata(value: object) -> str:
    """``one_util::escape_xml``: the value in a CDATA section, as is."""
    return f"<![CDATA[{value}]]>"


def to_int(text: str) -> int:
    """``to_int``: the whole string as an integer, -1 otherwise."""
    try:
        return int(text)
    except ValueError:
        return -1


def vector_int(vector: dict[str, str], key: str) -> int | None:
    """``VectorAttribute::vector_value(name, int&)``: None when absent, empty or not a
    number (a numeric prefix is read as ``istringstream`` reads it)."""
    text = vector.get(key, "").strip()
    digits = ""
    for i, ch in enumerate(text):
        if ch.isdigit() or (i == 0 and ch in "+-"):
            digits += ch
        else:
            break
    try:
        value = int(digits)
    except ValueError:
        return None
    return value if -(2**31) <= value < 2**31 else None  # istringstream >> int overflows


def set_queues(queue: str, vcpu: str) -> str:
    """``set_queues``: ``auto`` is the VCPU count, a non-number is dropped."""
    queue = queue.lower()
    if queue == "auto":
        return vcpu
    if queue:
        body = queue.lstrip()
        if body[:1] in "+-":
            body = body[1:]
        if not body or not body.isdigit():
            return ""
    return queue


@dataclass
class Domain:
    """What the writer's sections share while one domain document is written."""

    vm: VirtualMachine
    look: Lookup
    emulator: str
    system_dir: str
    ds_template: Template | None = None
    vcpu: str = ""
    arch: str = ""
    machine: str = ""
    sd_bus: str = ""
    is_q35: bool = False
    iothreads: int = 0
    iothread_actual: int = 1
    is_fs: bool = False
    nodes: list[dict[str, str]] = field(default_factory=list)
    topology: dict[str, str] | None = None
    pci_devices: str = ""
    password: str = ""
    iommu_mode: str = ""
    iommu_model: str = ""
    iommu_opt: str = ""
    warnings: list[str] = field(default_factory=list)
    out: list[str] = field(default_factory=list)

    def w(self, text: str) -> None:
        self.out.append(text)

    def warn(self, text: str) -> None:
        self.warnings.append(text)
