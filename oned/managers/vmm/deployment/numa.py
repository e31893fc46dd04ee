"""CPU pinning and the guest NUMA topology of a libvirt domain (``pin_cpu``, ``vtopol``
and ``numa_distances`` of ``LibVirtDriverKVM.cc``)."""

from __future__ import annotations

from oned.managers.vmm.deployment.common import Domain, to_int, vector_int

_PIN = {"CORE", "THREAD", "SHARED"}
#: More virtual CPUs than any hypervisor runs: a bigger TOTAL_CPUS is not looped over.
MAX_VCPUS = 16384


def pin_cpu(d: Domain, emulator_cpus: str) -> None:
    """``pin_cpu``: vcpupin per NUMA node CPU and the emulator pin."""
    topology = d.topology
    policy, affinity, hpsz = "NONE", -1, 0
    if topology is not None:
        policy = topology.get("PIN_POLICY", "").upper()
        policy = policy if policy in _PIN else "NONE"
        affinity = _vint(topology, "NODE_AFFINITY", -1)
        hpsz = max(_vint(topology, "HUGEPAGE_SIZE", 0), 0)
    if policy == "NONE" and affinity == -1 and hpsz == 0:
        if emulator_cpus:
            d.w(f"\t\t<emulatorpin cpuset={emulator_cpus}/>\n")
        return
    vcpu_id = 0
    joined: list[str] = []
    for index, node in enumerate(d.nodes):
        total = min(max(_vint(node, "TOTAL_CPUS", 0), 0), MAX_VCPUS)
        cpus = node.get("CPUS", "")
        if total == 0 or not cpus:
            continue
        cpus_a = cpus.split(",")
        for i in range(total):
            cpuset = cpus if policy in ("SHARED", "NONE") or i >= len(cpus_a) else cpus_a[i]
            d.w(f"\t\t<vcpupin vcpu='{vcpu_id}' cpuset='{cpuset}'/>\n")
            vcpu_id += 1
        joined.append(("," if index != 0 else "") + cpus)
    if emulator_cpus:
        d.w(f"\t\t<emulatorpin cpuset={emulator_cpus}/>\n")
    else:
        d.w(f"\t\t<emulatorpin cpuset='{''.join(joined)}'/>\n")


def single_int(text: str | None) -> int | None:
    """``Template::get(name, int&)``."""
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def _vint(vector: dict[str, str], key: str, default: int) -> int:
    value = vector_int(vector, key)
    return default if value is None else value


def vtopol(d: Domain) -> tuple[str, int]:
    """``vtopol``: topology, NUMA cells and the numatune section."""
    topology, hpsz_kb, access = d.topology, 0, ""
    if topology is not None:
        sockets = _vint(topology, "SOCKETS", 1)
        cores = _vint(topology, "CORES", 1)
        threads = _vint(topology, "THREADS", 1)
        hpsz_kb = _vint(topology, "HUGEPAGE_SIZE", 0) * 1024
        access = topology.get("MEMORY_ACCESS", "")
        if access and hpsz_kb != 0:
            access = access.lower()
            access = access if access in ("private", "shared") else ""
        d.w(f"\t\t<topology sockets='{sockets}' cores='{cores}' threads='{threads}'/>\n")
    if not d.nodes:
        return "", hpsz_kb
    tune = ["\t<numatune>\n"]
    mem_nodes: list[str] = []
    cpuid = 0
    total = len(d.nodes)
    d.w("\t\t<numa>\n")
    for cid, node in enumerate(d.nodes):
        ncpu = max(_vint(node, "TOTAL_CPUS", 0), 0)
        mem_id = node.get("MEMORY_NODE_ID", "")
        dist = node.get("DISTANCE", "")
        cell = f"\t\t\t<cell id='{cid}' memory='{node.get('MEMORY', '')}'"
        if ncpu > 0:
            cell += f" cpus='{cpuid}-{cpuid + ncpu - 1}'"
        if access:
            cell += f" memAccess='{access}'"
        if not dist:
            d.w(cell + "/>\n")
        else:
            d.w(cell + ">\n")
            _distances(d, cid, total, dist)
            d.w("\t\t\t</cell>\n")
        cpuid += ncpu
        if mem_id:
            tune.append(f"\t\t<memnode cellid='{cid}' mode='strict' nodeset='{mem_id}'/>\n")
            mem_nodes.append(mem_id)
    d.w("\t\t</numa>\n")
    if mem_nodes:
        tune.append(f"\t\t<memory mode='strict' nodeset='{','.join(mem_nodes)}'/>\n")
    tune.append("\t</numatune>\n")
    return "".join(tune), hpsz_kb


def _distances(d: Domain, node_id: int, total: int, text: str) -> None:
    dist = [20] * total
    dist[node_id] = 10
    for entry in text.split(","):
        kv = entry.split(":")
        if len(kv) != 2:
            continue
        value = max(to_int(kv[1]), 0)
        bounds = kv[0].split("-")
        if len(bounds) == 1:
            low = high = max(to_int(bounds[0]), 0)
        elif len(bounds) == 2:
            low, high = sorted((max(to_int(bounds[0]), 0), max(to_int(bounds[1]), 0)))
        else:
            continue
        if low >= total:
            continue
        high = min(high, total - 1)
        for i in range(low, high + 1):
            dist[i] = value
    d.w("\t\t\t\t<distances>\n")
    for i in range(total):
        d.w(f"\t\t\t\t\t<sibling id='{i}' value='{dist[i]}'/>\n")
    d.w("\t\t\t\t</distances>\n")
