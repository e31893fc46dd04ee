#!/usr/bin/env python3
"""VM lifecycle and VM pool benchmark for an OpenNebula core daemon with dummy drivers.

Usage::

    bench/lifecycle.py --endpoint http://127.0.0.1:2633/RPC2 --session oneadmin:PASSWORD \
        [--vms 10000] [--nic-vms 1000] [--running 1000] [--hosts 100] [--clients 4] [--pid PID]

Only standard OpenNebula XML-RPC calls are made, so the same script measures this daemon
and OpenNebula's own ``oned``. It prints:

* ``one.vm.allocate`` (on hold) per second from ``--clients`` processes, until the pool
  holds ``--vms`` VMs, and with one NIC each (``--nic-vms`` more, on a dummy network);
* p50/p99 of ``one.vmpool.info``, ``one.vmpool.infoextended`` and ``one.vm.info``;
* the latency of ``one.vm.info`` made while a ``vmpool.infoextended`` is being answered,
  against its idle latency;
* the time to take ``--running`` VMs from allocate to RUNNING on ``--hosts`` dummy hosts and
  to terminate them. Placement is by ``one.vm.deploy`` (round robin over the hosts), not
  through the scheduler, so no scheduler throttle is involved;
* the daemon's RSS (``--pid``, read from /proc).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import statistics
import threading
import time
import xmlrpc.client
from typing import Any
from urllib.parse import urlsplit

TEMPLATE = 'NAME="bench-{i}"\nCPU="0.1"\nVCPU="1"\nMEMORY="64"\nDESCRIPTION="bench"'


def proxy(endpoint: str) -> xmlrpc.client.ServerProxy:
    return xmlrpc.client.ServerProxy(endpoint, allow_none=True)


def call(server: xmlrpc.client.ServerProxy, session: str, method: str, *args: Any) -> Any:
    reply = getattr(server, method)(session, *args)
    if not reply[0]:
        raise RuntimeError(f"{method}{args}: {reply[1]}")
    return reply[1]


def _allocator(endpoint: str, session: str, count: int, offset: int, extra: str) -> None:
    server = proxy(endpoint)
    for i in range(count):
        call(server, session, "one.vm.allocate", TEMPLATE.format(i=offset + i) + extra, True)


def allocate_rate(endpoint: str, session: str, total: int, clients: int, extra: str = "") -> float:
    per = max(1, total // clients)
    procs = [
        multiprocessing.Process(target=_allocator, args=(endpoint, session, per, c * per, extra))
        for c in range(clients)
    ]
    start = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return per * clients / (time.perf_counter() - start)


def raw_call(endpoint: str, session: str, method: str, *args: Any) -> int:
    """POST one call and read the whole answer without decoding it (a client's XML
    parser would dominate the figure); returns the answer size in bytes."""
    parts = urlsplit(endpoint)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 2633)
    body = xmlrpc.client.dumps((session, *args), method).encode()
    conn.request("POST", parts.path or "/RPC2", body, {"Content-Type": "text/xml"})
    data = conn.getresponse().read()
    conn.close()
    if b"<boolean>1</boolean>" not in data[:512]:
        raise RuntimeError(f"{method}{args}: {data[:300]!r}")
    return len(data)


def latencies(fn: Any, rounds: int) -> tuple[float, float]:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return statistics.median(times) * 1000, p99 * 1000


def small_during_big(endpoint: str, session: str, vid: int) -> tuple[float, float]:
    """Median vm.info latency while infoextended answers run, and idle."""
    idle = latencies(lambda: raw_call(endpoint, session, "one.vm.info", vid), 50)[0]
    stop = threading.Event()

    def big() -> None:
        while not stop.is_set():
            raw_call(endpoint, session, "one.vmpool.infoextended", -2, -1, -1, -1)

    thread = threading.Thread(target=big, daemon=True)
    thread.start()
    time.sleep(0.2)
    busy = latencies(lambda: raw_call(endpoint, session, "one.vm.info", vid), 50)[0]
    stop.set()
    thread.join()
    return idle, busy


def wait_states(server: Any, session: str, vids: list[int], state: int, lcm: int) -> None:
    pending = set(vids)
    while pending:
        doc = call(server, session, "one.vmpool.info", -2, min(pending), max(pending), -2)
        for vid in list(pending):
            marker = f"<ID>{vid}</ID>"
            cut = doc.find(marker)
            if cut < 0:
                continue
            body = doc[cut : doc.find("</VM>", cut)]
            if f"<STATE>{state}</STATE><LCM_STATE>{lcm}</LCM_STATE>" in body:
                pending.discard(vid)
        if pending:
            time.sleep(0.2)


def lifecycle(endpoint: str, session: str, running: int, hosts: int) -> tuple[float, float]:
    server = proxy(endpoint)
    hids = []
    for i in range(hosts):
        name = f"benchhost{i:03d}"
        try:
            hids.append(call(server, session, "one.host.allocate", name, "dummy", "dummy", -1))
        except RuntimeError:
            doc = call(server, session, "one.hostpool.info")
            cut = doc.find(f"<NAME>{name}</NAME>")
            hids.append(int(doc[doc.rfind("<ID>", 0, cut) + 4 : doc.rfind("</ID>", 0, cut)]))
    start = time.perf_counter()
    vids = []
    for i in range(running):
        vid = call(server, session, "one.vm.allocate", TEMPLATE.format(i=i))
        call(server, session, "one.vm.deploy", vid, hids[i % len(hids)])
        vids.append(vid)
    wait_states(server, session, vids, 3, 3)
    up = time.perf_counter() - start
    start = time.perf_counter()
    for vid in vids:
        call(server, session, "one.vm.action", "terminate-hard", vid)
    wait_states(server, session, vids, 6, 0)
    return up, time.perf_counter() - start


def bench_network(endpoint: str, session: str, size: int) -> int:
    """A dummy network with ``size`` leases, READY (created once)."""
    server = proxy(endpoint)
    doc = call(server, session, "one.vnpool.info", -2, -1, -1)
    cut = doc.find("<NAME>bench-net</NAME>")
    if cut >= 0:
        return int(doc[doc.rfind("<ID>", 0, cut) + 4 : doc.rfind("</ID>", 0, cut)])
    vnid = int(
        call(
            server,
            session,
            "one.vn.allocate",
            f'NAME="bench-net"\nVN_MAD="dummy"\nBRIDGE="br0"\n'
            f'AR=[TYPE="IP4", IP="10.128.0.1", SIZE="{size}"]',
            -1,
        )
    )
    deadline = time.monotonic() + 30
    while "<STATE><![CDATA[1]]></STATE>" not in call(server, session, "one.vn.info", vnid):
        if time.monotonic() > deadline:
            raise RuntimeError("bench-net did not become READY")
        time.sleep(0.1)
    return vnid


def rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--session", required=True)
    parser.add_argument("--vms", type=int, default=10_000)
    parser.add_argument("--running", type=int, default=1_000)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--nic-vms", type=int, default=1000, help="allocations with one NIC")
    parser.add_argument("--pid", type=int)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out: dict[str, Any] = {}
    server = proxy(args.endpoint)
    have = call(server, args.session, "one.vmpool.info", -2, -1, -1, -2).count("<VM>")
    if have < args.vms:
        out["allocate_per_s"] = round(
            allocate_rate(args.endpoint, args.session, args.vms - have, args.clients), 1
        )
    if args.nic_vms:
        vnid = bench_network(args.endpoint, args.session, args.nic_vms + args.clients)
        nic = f'\nNIC=[NETWORK_ID="{vnid}"]'
        out["allocate_nic_per_s"] = round(
            allocate_rate(args.endpoint, args.session, args.nic_vms, args.clients, nic), 1
        )
    listing = call(server, args.session, "one.vmpool.info", -2, -1, -1, -2)
    first = int(listing.split("<ID>")[1].split("<")[0])
    ep, ses = args.endpoint, args.session
    for name, fn, rounds in (
        ("vmpool.info", lambda: raw_call(ep, ses, "one.vmpool.info", -2, -1, -1, -1), 10),
        (
            "vmpool.infoextended",
            lambda: raw_call(ep, ses, "one.vmpool.infoextended", -2, -1, -1, -1),
            5,
        ),
        ("vm.info", lambda: raw_call(ep, ses, "one.vm.info", first), 200),
    ):
        p50, p99 = latencies(fn, rounds)
        out[f"{name}_ms"] = {"p50": round(p50, 2), "p99": round(p99, 2)}
    idle, busy = small_during_big(args.endpoint, args.session, first)
    out["small_call_ms"] = {"idle": round(idle, 2), "during_infoextended": round(busy, 2)}
    out["rss_mb"] = rss_mb(args.pid)
    if args.running:
        up, down = lifecycle(args.endpoint, args.session, args.running, args.hosts)
        out["to_running_s"] = round(up, 2)
        out["to_running_vms_per_s"] = round(args.running / up, 1)
        out["terminate_s"] = round(down, 2)
        out["rss_mb_after"] = rss_mb(args.pid)
    if args.json:
        print(json.dumps(out))
    else:
        for key, value in out.items():
            print(f"{key:24} {value}")


if __name__ == "__main__":
    main()
