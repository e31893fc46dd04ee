"""What ``VirtualMachine::insert`` does to an allocate template (mirrors
``VirtualMachine.cc`` insert/parse_* and ``VirtualMachineParser.cc``).

The client's template becomes the VM's USER_TEMPLATE; the attributes the core
understands move to TEMPLATE (CPU, MEMORY, VCPU, OS, GRAPHICS, CONTEXT, DISK, NIC...)
with oned's checks and texts, and the core adds VMID, OS/UUID and the automatic
requirements. Disks and NICs are moved as given: images and leases are acquired by
the image/network seams once they exist (not here).
"""

from __future__ import annotations

import random
import re
import uuid

from oned.api import shared
from oned.errors import InternalError
from oned.managers.vmm.system_pci import parse_pci
from oned.template import Template

_WELL_KNOWN = (
    "INPUT",
    "RAW",
    "CLONING_TEMPLATE_ID",
    "TOPOLOGY",
    "NUMA_NODE",
    "HYPERV_OPTIONS",
    "SPICE_OPTIONS",
)
_MOVED_AS_IS = (
    "FEATURES",
    "CPU_MODEL",
    "PCI",
    "NIC_DEFAULT",
    "DISK",
    "NIC",
    "NIC_ALIAS",
    "CONTEXT",
    "GRAPHICS",
    "VIDEO",
    "TPM",
    "MEMORY_ENCRYPTION",
    "VMGROUP",
    "SNAPSHOT",
    "VROUTER_ID",
    "VROUTER_KEEPALIVED_ID",
    "VROUTER_KEEPALIVED_PASSWORD",
)


#: UUIDs from a generator seeded once (``os.urandom`` per VM is slow on some hosts).
_RANDOM = random.Random()  # noqa: S311 - an identifier, not a secret


def _float(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text.strip())
    except ValueError:
        return None


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def float_str(value: float) -> str:
    """A float as C++ streams print it (six significant digits)."""
    return f"{value:g}"


def _bool(text: str | None) -> bool | None:
    if text is None:
        return None
    up = text.strip().upper()
    if up in ("YES", "TRUE"):
        return True
    if up in ("NO", "FALSE"):
        return False
    return None


def _move(user: Template, tmpl: Template, name: str) -> None:
    values = [v for n, v in user.items if n == name]
    if not values:
        return
    user.erase(name)
    tmpl.erase(name)
    for value in values:
        tmpl.add(name, value)


def is_pinned(tmpl: Template) -> bool:
    topology = tmpl.get_vector("TOPOLOGY") or {}
    policy = topology.get("PIN_POLICY", "NONE").upper()
    return policy not in ("", "NONE")


def _cluster_set(value: str) -> set[int]:
    return {int(p) for p in value.split(",") if p.strip().lstrip("-").isdigit()}


def cluster_requirements(tmpl: Template) -> set[int]:
    """``get_cluster_requirements``: the clusters every DISK datastore and NIC network
    share (raises ``InternalError`` with oned's texts)."""
    clusters: set[int] = set()
    joined = ""
    for kind, word, vectors in (
        ("DISK", "Datastore", tmpl.vectors("DISK")),
        (
            "NIC",
            "Network",
            [n for n in tmpl.vectors("NIC") if n.get("NETWORK_MODE", "").upper() != "DUMMY"],
        ),
    ):
        for index, vector in enumerate(vectors):
            if "CLUSTER_ID" not in vector:
                continue
            own = _cluster_set(vector["CLUSTER_ID"])
            if not own:
                raise InternalError(
                    f"Missing clusters. {word} for {kind} {index} is not in any cluster"
                )
            if not clusters:
                clusters = own
                continue
            common = clusters & own
            if not common:
                joined = ",".join(str(c) for c in sorted(clusters))
                raise InternalError(
                    f"Incompatible clusters in {kind}. {word} for {kind} {index} is not in "
                    f"the same cluster as the one used by other VM elements (cluster {joined})"
                )
            clusters = common
    return clusters


def automatic_requirements(tmpl: Template, cluster_ids: set[int]) -> None:
    """``automatic_requirements``: host requirements from clusters and pinning."""
    for name in (
        "AUTOMATIC_REQUIREMENTS",
        "AUTOMATIC_DS_REQUIREMENTS",
        "AUTOMATIC_NIC_REQUIREMENTS",
    ):
        tmpl.erase(name)
    out = ""
    if cluster_ids:
        ids = sorted(cluster_ids)
        out = "(" + " | ".join(f"CLUSTER_ID = {c}" for c in ids) + ") & "
    out += "(PIN_POLICY = PINNED)" if is_pinned(tmpl) else "!(PIN_POLICY = PINNED)"
    cpu_model = tmpl.get_vector("CPU_MODEL") or {}
    for feature in [f for f in cpu_model.get("FEATURES", "").split(",") if f]:
        out += f' & (KVM_CPU_FEATURES = "*{feature}*")'
    tmpl.add("AUTOMATIC_REQUIREMENTS", out)
    if cluster_ids:
        ids = sorted(cluster_ids)
        ds = "(" + " | ".join(f'"CLUSTERS/ID" @> {c}' for c in ids) + ")"
        tmpl.add("AUTOMATIC_NIC_REQUIREMENTS", ds)
        system = tmpl.get("TM_MAD_SYSTEM")
        if system is not None:
            ds += f' & (TM_MAD = "{system.strip()}")'
        tmpl.add("AUTOMATIC_DS_REQUIREMENTS", ds)


def build_templates(oid: int, source: Template, hold: bool) -> tuple[str, Template, Template, bool]:
    """Split and check an allocate template.

    Returns:
        ``(name, template, user_template, on_hold)``.

    Raises:
        InternalError: with oned's text when an attribute is wrong.
    """
    user = source.copy()
    tmpl = Template()
    user.erase("VMID")
    tmpl.add("VMID", str(oid))
    template_id = user.get("TEMPLATE_ID")
    user.erase("TEMPLATE_ID")
    if template_id:
        tmpl.add("TEMPLATE_ID", template_id)
    name = user.get("NAME") or ""
    user.erase("NAME")
    prefix = user.get("TEMPLATE_NAME") or "one"
    user.erase("TEMPLATE_NAME")
    if not name:
        name = f"{prefix}-{oid}"
    problem = shared.validate_name(name)
    if problem:
        raise InternalError(problem)
    for attr in _WELL_KNOWN:
        _move(user, tmpl, attr)
    emulator = user.get("EMULATOR")
    if emulator:
        user.erase("EMULATOR")
        tmpl.add("EMULATOR", emulator)
    memory = _int(user.get("MEMORY"))
    if memory is None or memory <= 0:
        raise InternalError("MEMORY attribute must be a positive integer value.")
    user.erase("MEMORY")
    tmpl.add("MEMORY", str(memory))
    mode = user.get("MEMORY_RESIZE_MODE")
    if mode is not None:
        if mode.upper() not in ("HOTPLUG", "BALLOONING"):
            raise InternalError(
                f"Invalid MEMORY_RESIZE_MODE value: {mode}. Valid values are HOTPLUG or BALLOONING"
            )
        user.erase("MEMORY_RESIZE_MODE")
        tmpl.add("MEMORY_RESIZE_MODE", mode)
    for attr in ("MEMORY_MAX", "MEMORY_SLOTS"):
        value = _int(user.get(attr))
        if value is not None and value > 0:
            user.erase(attr)
            tmpl.add(attr, str(value))
    cpu = _float(user.get("CPU"))
    if cpu is None or cpu <= 0:
        raise InternalError("CPU attribute must be a positive float or integer value.")
    user.erase("CPU")
    tmpl.add("CPU", float_str(cpu))
    vcpu_text = user.get("VCPU")
    if vcpu_text:
        vcpu = _int(vcpu_text)
        if vcpu is None or vcpu <= 0:
            raise InternalError("VCPU attribute must be a positive integer value.")
        user.erase("VCPU")
        tmpl.add("VCPU", str(vcpu))
    vcpu_max = _int(user.get("VCPU_MAX"))
    if vcpu_max is not None and vcpu_max > 0:
        user.erase("VCPU_MAX")
        tmpl.add("VCPU_MAX", str(vcpu_max))
    for attr in ("CPU_COST", "MEMORY_COST", "DISK_COST"):
        cost = _float(user.get(attr))
        if cost is None:
            continue
        if cost < 0:
            raise InternalError(f"{attr} attribute must be a positive float or integer value.")
        user.erase(attr)
        tmpl.add(attr, float_str(cost))
    oses = user.vectors("OS")
    if len(oses) > 1:
        raise InternalError("Only one OS attribute can be defined.")
    os_vector = dict(oses[0]) if oses else {}
    user.erase("OS")
    if not os_vector.get("UUID"):
        os_vector["UUID"] = str(uuid.UUID(int=_RANDOM.getrandbits(128), version=4))
    tmpl.add("OS", os_vector)
    for attr in _MOVED_AS_IS:
        _move(user, tmpl, attr)
    problem = parse_pci(tmpl)
    if problem:
        raise InternalError(problem)
    on_hold = _bool(user.get("SUBMIT_ON_HOLD"))
    if on_hold is not None or hold:
        user.erase("SUBMIT_ON_HOLD")
        tmpl.set("SUBMIT_ON_HOLD", "YES" if (hold or on_hold) else "NO")
    context = tmpl.get_vector("CONTEXT")
    if context is not None:
        context.setdefault("DISK_ID", str(len(tmpl.vectors("DISK"))))
    deploy_id = user.get("DEPLOY_ID")
    user.erase("DEPLOY_ID")
    if deploy_id and re.match(r"^one-\d+$", deploy_id):
        raise InternalError("Trying to import an OpenNebula VM: 'one-*'.")
    if deploy_id:
        tmpl.add("IMPORTED", "YES")
    return name, tmpl, user, bool(hold or on_hold)
