"""Dummy host monitoring: fake probe data, once on START_MONITOR and then over UDP.

``start`` (default): reads the base64 MONITOR_CONFIGURATION on stdin, prints a
``<MONITOR_MESSAGES>`` document (SYSTEM_HOST, MONITOR_HOST, STATE_VM, EXEC_VM,
MONITOR_VM, each base64, plus TIMESTAMP) and leaves a detached client that keeps
sending ``TYPE SUCCESS <hid> <ts> <zlib+b64 data>`` datagrams to
NETWORK/MONITOR_ADDRESS:PORT (``auto`` = 127.0.0.1) at the PROBES_PERIOD rates.
The client exits when no ``oned`` process is left. ``stop``: kills that client.

The figures follow OpenNebula's dummy probes: HYPERVISOR=dummy, TOTALCPU=800,
TOTALMEMORY=16777216, 2 NUMA nodes x 8 cores x 4 threads with 2 MiB and 1 GiB huge
pages, a few PCI devices, random usage; VM figures for every VM whose last history
is on this host, read with ``one.vmpool.info`` over XML-RPC.
"""

from __future__ import annotations

import base64
import os
import random
import signal
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

rnd = random.randrange  # fake monitoring figures, not security


def system_host(hostname: str) -> str:
    out = [
        "ARCH=x86_64",
        "HYPERVISOR=dummy",
        'MODELNAME="Dummy(R) Core @ 3.2GHz"',
        "CPUSPEED=3200",
        f"TOTALMEMORY={TOTAL_MEMORY}",
        f"TOTALCPU={TOTAL_CPU}",
        "DS_LOCATION_USED_MB=9720",
        "DS_LOCATION_TOTAL_MB=20480",
        "DS_LOCATION_FREE_MB=20480",
        'KVM_CPU_MODELS="qemu64 kvm64 Nehalem Westmere SandyBridge IvyBridge"',
        'KVM_CPU_FEATURES="vme,ds,acpi,ss,ht,tm,pbe,vmx,est,tm2,xtpr,pdcm,f16c,rdrand"',
        'MEMORY_ENCRYPTION="SEV"',
        f"HOSTNAME={hostname}",
    ]
    for node in range(NODES):
        for core in range(CORES):
            core_id = core + node * CORES
            cpus = ",".join(str(core_id + t * CORES * NODES) for t in range(THREADS))
            out.append(f'CORE = [ NODE_ID="{node}", ID="{core_id}", CPUS="{cpus}"]')
        out.extend(
            f'HUGEPAGE = [ SIZE = "{p}", PAGES = "1024", NODE_ID = "{node}" ]' for p in PAGES
        )
        others = " ".join(str(n) for n in range(NODES) if n != node)
        out.append(
            f'MEMORY_NODE = [ NODE_ID = "{node}", TOTAL = "{TOTAL_MEMORY // NODES}", '
            f'DISTANCE = "{node} {others} " ]'
        )
    devices = [
        ("0000:02:00:0", "02", "00", "0", "0302", "3D controller", "10de", "0863", "1"),
        ("0000:00:06:0", "00", "06", "0", "0c03", "USB controller", "1b21", "0aa7", "1"),
        ("0000:81:00:0", "81", "00", "0", "0200", "Ethernet controller", "15b3", "1015", "0"),
    ]
    for addr, bus, slot, func, cls, cls_name, vendor, device, numa in devices:
        out.append(
            f'PCI = [ ADDRESS = "{addr}", BUS = "{bus}", SLOT = "{slot}", '
            f'FUNCTION = "{func}", CLASS = "{cls}", CLASS_NAME = "{cls_name}", '
            f'VENDOR = "{vendor}", DEVICE = "{device}", DOMAIN = "0000", '
            f'NUMA_NODE = "{numa}", SHORT_ADDRESS = "{bus}:{slot}.{func}", '
            f'TYPE = "{vendor}:{device}:{cls}", SRIOV = "no", IFNAME = "-" ]'
        )
    return "\n".join(out) + "\n"


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


def monitor_vm(host_id: str) -> str:
    """One ``VM = [...]`` line per VM on this host (nothing if the API is down)."""
    import xmlrpc.client

    endpoint = os.environ.get("ONE_XMLRPC", "http://localhost:2633/RPC2")
    try:
        proxy = xmlrpc.client.ServerProxy(endpoint)
        resp = proxy.one.vmpool.info(_session(), -2, -1, -1, -1)
        if not resp[0]:
            return ""
        pool = ET.fromstring(resp[1])
    except Exception:
        return ""
    lines = []
    for vm in pool.findall("VM"):
        hids = vm.findall("HISTORY_RECORDS/HISTORY/HID")
        if not hids or (hids[-1].text or "").strip() != host_id:
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
        mon64 = base64.b64encode(mon.encode()).decode()
        lines.append(
            f'VM = [ ID="{vm.findtext("ID")}", DEPLOY_ID="{vm.findtext("DEPLOY_ID") or ""}",'
            f' MONITOR="{mon64}"]'
        )
    return "\n".join(lines) + ("\n" if lines else "")


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def monitor_messages(host_id: str, hostname: str) -> str:
    parts = [
        ("SYSTEM_HOST", system_host(hostname)),
        ("MONITOR_HOST", monitor_host()),
        ("STATE_VM", ""),
        ("EXEC_VM", ""),
        ("MONITOR_VM", monitor_vm(host_id)),
    ]
    body = "".join(f"<{k}>{_b64(v)}</{k}>\n" for k, v in parts)
    return f"<MONITOR_MESSAGES>{body}<TIMESTAMP>{int(time.time())}</TIMESTAMP></MONITOR_MESSAGES>"


def _pid_file(host_id: str) -> str:
    return f"/tmp/one-monitord-{host_id}.pid"


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


def _client_loop(config: ET.Element, host_id: str, hostname: str) -> None:
    address = config.findtext("NETWORK/MONITOR_ADDRESS") or "auto"
    if address == "auto":
        address = "127.0.0.1"
    port = int(config.findtext("NETWORK/PORT") or 4124)
    periods = {}
    for name, default in DEFAULT_PERIODS.items():
        text = (config.findtext(f"PROBES_PERIOD/{name}") or "").strip()
        periods[name] = float(text) if text else float(default)
    probes = {
        "BEACON_HOST": lambda: str(int(time.time())),
        "SYSTEM_HOST": lambda: system_host(hostname),
        "MONITOR_HOST": monitor_host,
        "MONITOR_VM": lambda: monitor_vm(host_id),
    }
    due = {name: time.time() + period for name, period in periods.items()}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    while True:
        now = time.time()
        for name, when in due.items():
            if when > now:
                continue
            due[name] = now + periods[name]
            if name == "BEACON_HOST" and not _oned_running():
                return
            data = probes[name]()
            if not data.strip():
                continue
            packed = base64.b64encode(zlib.compress(data.encode(), 9)).decode()
            msg = f"{name} SUCCESS {host_id} {int(now)} {packed}"
            try:
                sock.sendto(msg.encode(), (address, port))
            except OSError:
                pass
        time.sleep(max(0.5, min(due.values()) - time.time()))


def stop(host_id: str) -> None:
    try:
        with open(_pid_file(host_id), encoding="utf-8") as fh:
            pid = int(fh.read().strip() or 0)
        if pid > 0:
            os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        pass
    try:
        os.unlink(_pid_file(host_id))
    except OSError:
        pass


def start(host_id: str, hostname: str) -> None:
    text = base64.b64decode(sys.stdin.read().strip()).decode("utf-8", "replace")
    config = ET.fromstring(text)
    host_id = config.findtext("HOST_ID") or host_id
    stop(host_id)
    print(monitor_messages(host_id, hostname), flush=True)
    child = os.fork()
    if child > 0:
        os.waitpid(child, 0)  # returns once the client's pid file is written
        return
    os.setsid()
    grandchild = os.fork()
    if grandchild > 0:
        with open(_pid_file(host_id), "w", encoding="utf-8") as fh:
            fh.write(str(grandchild))
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    try:
        _client_loop(config, host_id, hostname)
    finally:
        os._exit(0)


def main(argv: list[str]) -> None:
    action = "start"
    if argv and argv[0] == "stop":
        action, argv = "stop", argv[1:]
    host_id = argv[1] if len(argv) > 1 else "0"
    hostname = argv[2] if len(argv) > 2 else "localhost"
    if action == "stop":
        stop(host_id)
    else:
        start(host_id, hostname)


if __name__ == "__main__":
    main(sys.argv[1:])
