"""Dummy host monitoring: fake probe data, once on START_MONITOR and then over UDP.

``dummy.d/monitord-client_control.sh`` prints the first reports on START_MONITOR and
registers the host (a ``<driver pid>-<hid>`` file holding its name and configuration);
this module is the sender it starts: one process for all registered hosts (not
one per host, so thousands of dummy hosts cost one process) that sends every host's
``TYPE SUCCESS <hid> <ts> <zlib+b64 data>`` datagrams to
NETWORK/MONITOR_ADDRESS:PORT (``auto`` = 127.0.0.1) at the PROBES_PERIOD rates. The
sender exits when no ``oned`` process is left or no host stayed registered for a
minute. ``lib/dummy_system_host.b64`` is :func:`system_host` without the HOSTNAME
line (padded with newlines to a multiple of 3 bytes), base64, for the shell script.

The figures are those of OpenNebula's dummy probes (``dummy-probes.d/host/*``):
HYPERVISOR=dummy, TOTALCPU=800, TOTALMEMORY=16777216, 2 NUMA nodes x 8 cores x 4
threads with 2 MiB and 1 GiB huge pages, the same fake PCI devices, random usage;
VM figures for every VM whose last history is on the host, read with
``one.vmpool.info`` over XML-RPC (once per period for all hosts).
"""

from __future__ import annotations

import base64
import fcntl
import heapq
import os
import random
import socket
import sys
import time
import xml.etree.ElementTree as ET
import zlib

TOTAL_MEMORY = 16777216
TOTAL_CPU = 800
NODES, CORES, THREADS = 2, 8, 4
PAGES = (2048, 1048576)
DEFAULT_PERIODS = {"BEACON_HOST": 30, "SYSTEM_HOST": 600, "MONITOR_HOST": 120, "MONITOR_VM": 30}
IDLE_EXIT = 60.0
SHEPHERD_PERIOD = 30.0

rnd = random.randrange  # fake monitoring figures, not security

_KVM_MODELS = (
    "486 pentium pentium2 pentium3 pentiumpro coreduo n270 core2duo qemu32 kvm32 "
    "cpu64-rhel5 cpu64-rhel6 kvm64 Conroe Penryn Nehalem Nehalem-IBRS Westmere "
    "Westmere-IBRS SandyBridge SandyBridge-IBRS IvyBridge IvyBridge-IBRS SapphireRapids "
    "SapphireRapids-noTSX Opteron_G1"
)
_KVM_FEATURES = (
    "vme,ds,acpi,ss,ht,tm,pbe,dtes64,monitor,ds_cpl,vmx,smx,est,tm2,xtpr,pdcm,osxsave,"
    "f16c,rdrand,arat,tsc_adjust,clflushopt,clwb,intel-pt,sha-ni,umip,pku,ospke,waitpkg,"
    "gfni,vaes,vpclmulqdq,rdpid,movdiri,movdir64b,pks,fsrm,md-clear,serialize,arch-lbr,"
    "stibp,arch-capabilities,core-capability,ssbd,avx-vnni,xsaveopt,xsavec,xgetbv1,xsaves,"
    "pdpe1gb,abm,invtsc,rdctl-no,ibrs-all,skip-l1dfl-vmentry,mds-no,pschange-mc-no"
)
_PROFILES = ",".join(
    f"{1145 + i} (NVIDIA L40S-{p})"
    for i, p in enumerate(
        "1B 2B 1Q 2Q 3Q 4Q 6Q 8Q 12Q 16Q 24Q 48Q 1A 2A 3A 4A 6A 8A 12A 16A 24A 48A".split()
    )
)
_MLX = "Mellanox Technologies"
_VF = "MT27710 Family [ConnectX-4 Lx Virtual Function]"
#: (address, class, class name, vendor, device, device name, vendor name, numa,
#:  sriov, ifname, extra attributes)
_PCI = [
    ("0000:02:00:0", "0302", "3D controller", "10de", "0863", "C79 [GeForce 9400M]",
     "NVIDIA Corporation", "1", "no", "-", {"PROFILES": _PROFILES}),
    ("0000:00:06:0", "0c03", "USB controller", "1b21", "0aa7",
     "MCP79 OHCI USB 1.1 Controller", "ASMedia Technology Inc.", "1", "no", "-", {}),
    ("0000:00:06:1", "0c03", "USB controller", "1022", "0aa9",
     "MCP79 EHCI USB 2.0 Controller", "Advanced Micro Devices, Inc.", "0", "no", "-", {}),
    ("0000:04:00:1", "0200", "Ethernet controller", "14e4", "165f",
     "NetXtreme BCM5720 Gigabit Ethernet PCIe", "Broadcom Inc. and subsidiaries", "0", "no",
     "eno8403", {}),
    ("0000:81:00:0", "0200", "Ethernet controller", "15b3", "1015",
     "MT27710 Family [ConnectX-4 Lx]", _MLX, "0", "pf", "pf0", {"SRIOV_NUM": "8"}),
    ("0000:81:00:1", "0200", "Ethernet controller", "15b3", "1015",
     "MT27710 Family [ConnectX-4 Lx]", _MLX, "0", "pf", "pf1", {"SRIOV_NUM": "8"}),
] + [
    (f"0000:81:0{slot}:{fn}", "0200", "Ethernet controller", "15b3", "1016", _VF, _MLX, "0",
     "vf", f"vf0{slot}{fn}", {})
    for slot, fn in [(0, f) for f in range(2, 8)] + [(1, f) for f in range(8)] + [(2, 0), (2, 1)]
]  # fmt: skip


def _pci() -> str:
    out = []
    for addr, cls, cls_name, vendor, device, dev_name, vendor_name, numa, sriov, ifn, extra in _PCI:
        _dom, bus, slot, func = addr.split(":")
        attrs = {
            "ADDRESS": addr,
            "BUS": bus,
            "CLASS": cls,
            "CLASS_NAME": cls_name,
            "DEVICE": device,
            "DEVICE_NAME": dev_name,
            "DOMAIN": "0000",
            "FUNCTION": func,
            "IFNAME": ifn,
            "NUMA_NODE": numa,
            "SRIOV": sriov,
            "SHORT_ADDRESS": f"{bus}:{slot}.{func}",
            "SLOT": slot,
            "TYPE": f"{vendor}:{device}:{cls}",
            "VENDOR": vendor,
            "VENDOR_NAME": vendor_name,
            **extra,
        }
        body = ",\n        ".join(f'{k} = "{v}"' for k, v in attrs.items())
        out.append(f"PCI = [ {body}\n]")
    return "\n".join(out) + "\n"


def _topology() -> str:
    out = []
    for node in range(NODES):
        for core in range(CORES):
            core_id = core + node * CORES
            cpus = ",".join(str(core_id + t * CORES * NODES) for t in range(THREADS))
            out.append(f'CORE = [ NODE_ID="{node}", ID="{core_id}", CPUS="{cpus}"]')
        out.extend(
            f'HUGEPAGE = [ SIZE = "{p}", PAGES = "1024", NODE_ID = "{node}" ]' for p in PAGES
        )
        others = "".join(f"{n} " for n in range(NODES) if n != node)
        out.append(
            f'MEMORY_NODE = [ NODE_ID = "{node}", TOTAL = "{TOTAL_MEMORY // NODES}", '
            f'DISTANCE = "{node} {others}" ]'
        )
    return "\n".join(out) + "\n"


_STATIC = (
    "ARCH=x86_64\nHYPERVISOR=dummy\n"
    'MODELNAME="Dummy(R) Core @ 3.2GHz"\nCPUSPEED=3200\n'
    f"TOTALMEMORY={TOTAL_MEMORY}\nTOTALCPU={TOTAL_CPU}\n"
    "DS_LOCATION_USED_MB=9720\nDS_LOCATION_TOTAL_MB=20480\nDS_LOCATION_FREE_MB=20480\n"
    f'KVM_CPU_MODELS="{_KVM_MODELS}"\nKVM_CPU_FEATURES="{_KVM_FEATURES}"\n'
    'MEMORY_ENCRYPTION="SEV"\n'
)
_SYSTEM_TAIL = _topology() + _pci()


def system_host(hostname: str) -> str:
    """The SYSTEM_HOST report; HOSTNAME comes last, as the shell script sends it."""
    return f"{_STATIC}{_SYSTEM_TAIL}HOSTNAME={hostname}\n"


def monitor_host() -> str:
    out = []
    for node in range(NODES):
        out.extend(f'HUGEPAGE = [ SIZE = "{p}", FREE = "1024",  NODE_ID = "{node}"]' for p in PAGES)
        per_node = TOTAL_MEMORY // NODES
        out.append(
            f'MEMORY_NODE = [ NODE_ID = "{node}", FREE = "{rnd(per_node)}", '
            f'USED = "{rnd(per_node)}"]'
        )
    used_memory, used_cpu = rnd(TOTAL_MEMORY), rnd(TOTAL_CPU)
    out += [
        f"USEDMEMORY={used_memory}",
        f"FREEMEMORY={TOTAL_MEMORY - used_memory}",
        f"USEDCPU={used_cpu}",
        f"FREECPU={TOTAL_CPU - used_cpu}",
        "NETTX=1241307203246698",
        "NETRX=50104108822222",
    ]
    return "\n".join(out) + "\n"


def _session() -> str:
    paths = [os.environ.get("ONE_AUTH"), os.path.expanduser("~/.one/one_auth")]
    paths.append("/var/lib/one/.one/one_auth")
    for path in paths:
        if path and os.path.isfile(path):
            with open(path, encoding="utf-8") as fh:
                return fh.read().strip()
    return ""


def vm_lines() -> dict[str, str]:
    """``VM = [...]`` lines per host id, from one ``one.vmpool.info`` call."""
    import xmlrpc.client

    endpoint = os.environ.get("ONE_XMLRPC", "http://localhost:2633/RPC2")
    try:
        proxy = xmlrpc.client.ServerProxy(endpoint)
        resp = proxy.one.vmpool.info(_session(), -2, -1, -1, -1)
        if not resp[0]:
            return {}
        pool = ET.fromstring(resp[1])
    except Exception:
        return {}
    out: dict[str, list[str]] = {}
    for vm in pool.findall("VM"):
        hids = vm.findall("HISTORY_RECORDS/HISTORY/HID")
        if not hids:
            continue
        memory = vm.findtext("TEMPLATE/MEMORY")
        cpu = vm.findtext("TEMPLATE/CPU")
        max_memory = int(float(memory)) * 1024 if memory else 256
        max_cpu = int(float(cpu) * 100) if cpu else 100
        base_net = int(time.time()) % 10000
        mon = (
            f"NETTX={base_net + rnd(1, 4) * 50}\nNETRX={base_net + rnd(1, 5) * 100}\n"
            f"MEMORY={max_memory * rnd(20, 101) // 100}\nCPU={max_cpu * rnd(5, 101) // 100}\n"
            f"DISKRDBYTES={rnd(1, 1001)}\nDISKWRBYTES={rnd(1, 1001)}\n"
            f"DISKRDIOPS={rnd(1, 1001)}\nDISKWRIOPS={rnd(1, 1001)}\n"
        )
        out.setdefault((hids[-1].text or "").strip(), []).append(
            f'VM = [ ID="{vm.findtext("ID")}", DEPLOY_ID="{vm.findtext("DEPLOY_ID") or ""}",'
            f' MONITOR="{_b64(mon)}"]'
        )
    return {hid: "\n".join(lines) + "\n" for hid, lines in out.items()}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def monitor_messages(hostname: str) -> str:
    parts = [
        ("SYSTEM_HOST", system_host(hostname)),
        ("MONITOR_HOST", monitor_host()),
        ("STATE_VM", ""),
        ("EXEC_VM", ""),
        ("MONITOR_VM", ""),
    ]
    body = "".join(f"<{k}>{_b64(v)}</{k}>\n" for k, v in parts)
    return f"<MONITOR_MESSAGES>{body}<TIMESTAMP>{int(time.time())}</TIMESTAMP></MONITOR_MESSAGES>"


# -- the shared sender ---------------------------------------------------------------


def _oned_running() -> bool:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                if b"oned" in fh.read():
                    return True
        except OSError:
            continue
    return False


def _host_info(text: str) -> dict[str, object]:
    """A registration file: the host name, then its base64 MONITOR_CONFIGURATION."""
    hostname, _, coded = text.partition("\n")
    try:
        xml = base64.b64decode(coded.strip()).decode("utf-8", "replace")
    except ValueError:
        xml = ""
    info: dict[str, object] = {"hostname": hostname.strip(), "address": "127.0.0.1"}
    periods = {k: float(v) for k, v in DEFAULT_PERIODS.items()}
    port = 4124
    try:
        config = ET.fromstring(xml)
        address = (config.findtext("NETWORK/MONITOR_ADDRESS") or "auto").strip()
        if address != "auto":
            info["address"] = address
        port = int((config.findtext("NETWORK/PORT") or "4124").strip())
        for name in periods:
            text = (config.findtext(f"PROBES_PERIOD/{name}") or "").strip()
            if text:
                periods[name] = max(float(text), 1.0)
    except (ET.ParseError, ValueError):
        pass
    info["port"] = port
    info["periods"] = periods
    return info


class Sender:
    """Sends the periodic reports of every registered host (``<pid>-<hid>`` files)."""

    def __init__(self, state: str) -> None:
        self.hosts_dir = os.path.join(state, "hosts")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.hosts: dict[str, tuple[int, dict[str, object]]] = {}
        self.queue: list[tuple[float, str, str, int]] = []
        self.vms: dict[str, str] = {}
        self.vms_at = 0.0

    def scan(self, now: float) -> None:
        seen = set()
        with os.scandir(self.hosts_dir) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                seen.add(entry.name)
                try:
                    mtime = entry.stat().st_mtime_ns
                    known = self.hosts.get(entry.name)
                    if known is not None and known[0] == mtime:
                        continue
                    with open(entry.path, encoding="utf-8") as fh:
                        text = fh.read()
                except OSError:
                    continue
                if not text.endswith("\n") or "\n" not in text[:-1]:
                    continue  # being written: read it again at the next scan
                info = _host_info(text)
                self.hosts[entry.name] = (mtime, info)
                periods: dict[str, float] = info["periods"]  # type: ignore[assignment]
                for kind, period in periods.items():
                    heapq.heappush(self.queue, (now + period, entry.name, kind, mtime))
        for gone in set(self.hosts) - seen:
            del self.hosts[gone]
        self._dedup()

    def _dedup(self) -> None:
        """Keep the newest registration of each (port, host id): a restarted driver
        registers its hosts again under its new pid."""
        newest: dict[tuple[int, str], tuple[int, str]] = {}
        for key, (mtime, info) in list(self.hosts.items()):
            ident = (int(info["port"]), key.partition("-")[2])  # type: ignore[call-overload]
            other = newest.get(ident)
            if other is None:
                newest[ident] = (mtime, key)
                continue
            stale = key if mtime < other[0] else other[1]
            if stale == other[1]:
                newest[ident] = (mtime, key)
            try:
                os.unlink(os.path.join(self.hosts_dir, stale))
            except OSError:
                pass
            del self.hosts[stale]

    def send(self, now: float) -> None:
        while self.queue and self.queue[0][0] <= now:
            _due, key, kind, mtime = heapq.heappop(self.queue)
            known = self.hosts.get(key)
            if known is None or known[0] != mtime:
                continue
            info = known[1]
            periods: dict[str, float] = info["periods"]  # type: ignore[assignment]
            heapq.heappush(self.queue, (now + periods[kind], key, kind, mtime))
            hid = key.partition("-")[2]
            data = self.probe(kind, hid, str(info["hostname"]), now)
            if not data.strip():
                continue
            packed = base64.b64encode(zlib.compress(data.encode(), 6)).decode()
            msg = f"{kind} SUCCESS {hid} {int(now)} {packed}"
            try:
                self.sock.sendto(msg.encode(), (str(info["address"]), int(info["port"])))  # type: ignore[call-overload]
            except (OSError, ValueError):
                pass

    def probe(self, kind: str, hid: str, hostname: str, now: float) -> str:
        if kind == "BEACON_HOST":
            return str(int(now))
        if kind == "SYSTEM_HOST":
            return system_host(hostname)
        if kind == "MONITOR_HOST":
            return monitor_host()
        if now - self.vms_at >= DEFAULT_PERIODS["MONITOR_VM"] / 2:
            self.vms, self.vms_at = vm_lines(), now
        return self.vms.get(hid, "")

    def reap(self) -> None:
        """Unregister hosts of local ports nobody listens on any more (their oned
        stopped without STOP_MONITOR): binding the port succeeds only when it is free."""
        targets = {(str(i["address"]), int(i["port"])) for _m, i in self.hosts.values()}  # type: ignore[call-overload]
        for address, port in targets:
            if not address.startswith("127."):
                continue
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                probe.bind((address, port))
            except OSError:
                continue  # in use: a daemon listens there
            finally:
                probe.close()
            for key in [k for k, (_m, i) in self.hosts.items() if i["port"] == port]:
                try:
                    os.unlink(os.path.join(self.hosts_dir, key))
                except OSError:
                    pass
                del self.hosts[key]

    def loop(self) -> None:
        idle_since = time.time()
        shepherd_at = scan_at = 0.0
        while True:
            now = time.time()
            if now - scan_at < 1.0:
                self.send(now)  # reports spread over the second, not in one burst
                time.sleep(0.1)
                continue
            scan_at = now
            self.scan(now)
            if self.hosts:
                idle_since = now
            elif now - idle_since > IDLE_EXIT:
                return
            if now - shepherd_at >= SHEPHERD_PERIOD:
                shepherd_at = now
                if not _oned_running():
                    return
                self.reap()
            self.send(now)
            time.sleep(0.1)


def run_sender(state: str) -> None:
    """Become the sender of ``state`` unless another process already is."""
    os.makedirs(os.path.join(state, "hosts"), exist_ok=True)
    lock = open(os.path.join(state, "sender.lock"), "w")  # held for life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return
    with open(os.path.join(state, "sender.pid"), "w", encoding="utf-8") as fh:
        fh.write(str(os.getpid()))
    Sender(state).loop()


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--sender":
        run_sender(sys.argv[2])
    else:
        print(monitor_messages(sys.argv[3] if len(sys.argv) > 3 else "localhost"))
