#!/usr/bin/env python3
"""Virtual network benchmark for an OpenNebula core daemon.

Usage::

    bench/network.py --endpoint http://127.0.0.1:2633/RPC2 --session oneadmin:PASSWORD \
        [--nets 20] [--leases 20000] [--procs 4] [--pool-nets 1000] [--templates 10000] \
        [--samples 30] [--ready-wait 120] [--no-cleanup]

Prints, using only standard OpenNebula XML-RPC calls (so it runs unchanged against
OpenNebula's own ``oned`` with dummy drivers):

- ``one.vn.allocate`` of networks with a 65,536-address IP4 range per second, and the
  time from the first allocation until every one is READY;
- lease holds per second (``one.vn.hold`` of distinct IPs) from ``--procs`` processes on
  one 65,536-address IP4 range, ``--leases`` in all; then leases taken by VMs allocated on
  hold with one NIC (``--leases``/10 VMs), when the daemon has VMs;
- ``one.vn.info`` p50 of that network (then holding ``--leases`` leases);
- ``one.vnpool.info`` p50 with ``--pool-nets`` networks;
- ``one.templatepool.info`` p50 with ``--templates`` VM templates;
- ``one.vn.hold`` p50 in an empty 65,536-address range and in one with 60,000 leases.

Objects it created are deleted at the end unless ``--no-cleanup``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
import xmlrpc.client
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import socket

from api import Endpoint, OneClient, frame_response, http_request, percentile, rpc_body

_URL: list[str] = []
PREFIX = "benchnet"
TPL_PREFIX = "benchtpl"
BIG_AR = 'AR=[TYPE="IP4", IP="10.{b}.0.0", SIZE="65536"]'


def _net(name: str, ar: str) -> str:
    return f'NAME="{name}"\nVN_MAD="dummy"\nBRIDGE="br0"\n{ar}\n'


def _call(proxy: Any, method: str, session: str, *args: Any) -> Any:
    reply = getattr(proxy, method)(session, *args)
    if not reply[0]:
        raise RuntimeError(f"{method}: {reply[1]}")
    return reply[1]


class RawClient:
    """One keep-alive connection; answers are framed, not parsed (the client's XML
    decoding is not what is measured)."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.sock = socket.create_connection((endpoint.host, endpoint.port))
        self.buf = bytearray()

    def call(self, method: str, *params: Any) -> bytes:
        self.sock.sendall(http_request(self.endpoint, rpc_body(method, params)))
        while True:
            framed = frame_response(self.buf, False)
            if framed is not None:
                body = bytes(self.buf[framed.body_start : framed.end])
                del self.buf[: framed.end]
                if framed.close:
                    self.sock.close()
                    self.sock = socket.create_connection((self.endpoint.host, self.endpoint.port))
                return body
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise RuntimeError("connection closed")
            self.buf += chunk


def _hold_worker(url: str, session: str, vnet: int, ips: list[str], out: Any) -> None:
    raw = RawClient(Endpoint.parse(url))
    errors = 0
    for ip in ips:
        reply = raw.call("one.vn.hold", session, vnet, f'LEASES=[IP="{ip}"]')
        if b"<boolean>1</boolean>" not in reply:
            errors += 1
    out.put(errors)


def _vm_worker(url: str, session: str, text: str, count: int, out: Any) -> None:
    raw = RawClient(Endpoint.parse(url))
    ids = []
    for _ in range(count):
        reply = raw.call("one.vm.allocate", session, text, True)
        if b"<boolean>1</boolean>" in reply:
            start = reply.index(b"<i4>") + 4
            ids.append(int(reply[start : reply.index(b"</i4>", start)]))
    out.put(ids)


def _alloc_worker(url: str, session: str, method: str, texts: list[str], out: Any) -> None:
    proxy = xmlrpc.client.ServerProxy(url)
    fn = getattr(proxy, method)
    ids = []
    for text in texts:
        reply = fn(session, text) if method != "one.vn.allocate" else fn(session, text, -1)
        if reply[0]:
            ids.append(reply[1])
    out.put(ids)


def _parallel(target: Any, chunks: list[tuple[Any, ...]]) -> tuple[float, list[Any]]:
    queue: Any = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=target, args=(*c, queue)) for c in chunks]
    t0 = time.monotonic()
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return time.monotonic() - t0, results


def _p50(client: OneClient, samples: int, method: str, *args: Any) -> float:
    raw = RawClient(Endpoint.parse(_URL[0]))
    lat = []
    for _ in range(samples):
        t0 = time.perf_counter()
        reply = raw.call(method, client.session, *args)
        lat.append(time.perf_counter() - t0)
        if b"<boolean>1</boolean>" not in reply[:200]:
            raise RuntimeError(f"{method} failed: {reply[:300]!r}")
    return percentile(sorted(lat), 0.5) * 1000


def _state_of(client: OneClient, oid: int) -> int:
    doc = client.call("one.vn.info", oid)
    start = doc.index("<STATE>") + len("<STATE>")
    raw = doc[start : doc.index("</STATE>")]
    return int(raw.replace("<![CDATA[", "").replace("]]>", ""))


def _wait_ready(client: OneClient, ids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    pending = set(ids)
    while pending and time.monotonic() < deadline:
        pending = {i for i in pending if _state_of(client, i) != 1}
        if pending:
            time.sleep(0.02)
    return not pending


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--endpoint", default="http://127.0.0.1:2633/RPC2")
    parser.add_argument("--session", default=os.environ.get("ONE_SESSION", ""))
    parser.add_argument("--nets", type=int, default=20)
    parser.add_argument("--leases", type=int, default=20000)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--pool-nets", type=int, default=1000)
    parser.add_argument("--templates", type=int, default=10000)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--ready-wait", type=float, default=120.0)
    parser.add_argument("--no-cleanup", action="store_true")
    args = parser.parse_args(argv)
    if not args.session:
        raise SystemExit("--session user:password is required")
    endpoint = Endpoint.parse(args.endpoint)
    url = endpoint.url
    _URL[:] = [url]
    client = OneClient(endpoint, args.session)
    created_nets: list[int] = []
    created_tpls: list[int] = []
    created_vms: list[int] = []
    try:
        # 1. allocate networks with a 65,536-address range, then wait for READY
        t0 = time.monotonic()
        for i in range(args.nets):
            name = f"{PREFIX}-big-{os.getpid()}-{i}"
            created_nets.append(
                client.call("one.vn.allocate", _net(name, BIG_AR.format(b=i % 250)), -1)
            )
        alloc = time.monotonic() - t0
        ready = _wait_ready(client, created_nets, args.ready_wait)
        to_ready = time.monotonic() - t0
        print(
            f"vn.allocate (65,536-address AR): {args.nets / alloc:.1f}/s; "
            f"all READY after {to_ready:.2f}s{'' if ready else ' (TIMEOUT)'}",
            flush=True,
        )

        # 2. lease holds from several processes on one 65,536-address range
        vnet = created_nets[0]
        ips = [f"10.0.{i >> 8}.{i & 255}" for i in range(args.leases)]
        chunks = [(url, args.session, vnet, ips[p :: args.procs]) for p in range(args.procs)]
        elapsed, errors = _parallel(_hold_worker, chunks)
        print(
            f"vn.hold: {args.leases / elapsed:.0f} leases/s from {args.procs} clients "
            f"({sum(errors)} errors)",
            flush=True,
        )

        # 2b. leases through VMs with one NIC, allocated on hold (when VMs exist)
        nic_net = created_nets[1] if len(created_nets) > 1 else vnet
        vm_tmpl = f'NAME="{PREFIX}-vm"\nCPU="0.1"\nMEMORY="16"\nNIC=[NETWORK_ID="{nic_net}"]'
        vm_count = max(args.leases // 10, args.procs)
        vm_chunks = [
            (url, args.session, vm_tmpl, vm_count // args.procs) for _ in range(args.procs)
        ]
        elapsed, vm_results = _parallel(_vm_worker, vm_chunks)
        vm_ids = [i for chunk in vm_results for i in chunk]
        if vm_ids:
            print(
                f"vm.allocate (on hold, one NIC): {len(vm_ids) / elapsed:.0f} VMs (leases)/s "
                f"from {args.procs} clients ({vm_count - len(vm_ids)} errors)",
                flush=True,
            )
        else:
            print("vm.allocate with a NIC: not supported by this daemon", flush=True)
        created_vms.extend(vm_ids)

        # 3. vn.info with the leases
        p50 = _p50(client, args.samples, "one.vn.info", vnet)
        print(f"vn.info p50 with {args.leases} leases: {p50:.1f} ms", flush=True)

        # 4. vnpool.info with --pool-nets networks
        missing = max(args.pool_nets - len(created_nets), 0)
        texts = [
            _net(f"{PREFIX}-pool-{os.getpid()}-{i}", 'AR=[TYPE="IP4", IP="192.168.0.1", SIZE="10"]')
            for i in range(missing)
        ]
        chunks2 = [
            (url, args.session, "one.vn.allocate", texts[p :: args.procs])
            for p in range(args.procs)
        ]
        _, ids = _parallel(_alloc_worker, chunks2)
        for chunk in ids:
            created_nets.extend(chunk)
        _wait_ready(client, created_nets, args.ready_wait)
        p50 = _p50(client, args.samples, "one.vnpool.info", -2, -1, -1)
        print(f"vnpool.info p50 with {len(created_nets)} networks: {p50:.1f} ms", flush=True)

        # 5. templatepool.info with --templates templates
        tpls = [
            f'NAME="{TPL_PREFIX}-{os.getpid()}-{i}"\nCPU="1"\nMEMORY="128"\n'
            for i in range(args.templates)
        ]
        chunks3 = [
            (url, args.session, "one.template.allocate", tpls[p :: args.procs])
            for p in range(args.procs)
        ]
        _, ids = _parallel(_alloc_worker, chunks3)
        for chunk in ids:
            created_tpls.extend(chunk)
        p50 = _p50(client, max(args.samples // 3, 5), "one.templatepool.info", -2, -1, -1)
        print(f"templatepool.info p50 with {len(created_tpls)} templates: {p50:.1f} ms", flush=True)
        # 6. a hold in a 65,536-address range with 60,000 leases vs an empty one
        pair = []
        for label, b in (("empty", 251), ("full", 252)):
            name = f"{PREFIX}-{label}-{os.getpid()}"
            pair.append(client.call("one.vn.allocate", _net(name, BIG_AR.format(b=b)), -1))
        created_nets.extend(pair)
        _wait_ready(client, pair, args.ready_wait)
        created_nets.append(
            client.call("one.vn.reserve", pair[1], f'NAME="{PREFIX}-r-{os.getpid()}"\nSIZE=60000')
        )
        raw = RawClient(Endpoint.parse(url))
        cost = {}
        for oid, b in ((pair[0], 251), (pair[1], 252)):
            lat = []
            for i in range(args.samples * 10):
                ip = f"10.{b}.{(61000 + i) >> 8}.{(61000 + i) & 255}"
                t0 = time.perf_counter()
                raw.call("one.vn.hold", args.session, oid, f'LEASES=[IP="{ip}"]')
                lat.append(time.perf_counter() - t0)
            cost[oid] = percentile(sorted(lat), 0.5) * 1000
        print(
            f"vn.hold p50: {cost[pair[0]]:.2f} ms empty range, "
            f"{cost[pair[1]]:.2f} ms with 60,000 leases",
            flush=True,
        )
    finally:
        if not args.no_cleanup:
            for vid in created_vms:
                try:
                    client.call("one.vm.recover", vid, 3)
                except Exception:
                    continue
            for tid in created_tpls:
                try:
                    client.call("one.template.delete", tid)
                except Exception:
                    continue
            for oid in created_nets:
                try:
                    for ar in range(2):
                        client.call("one.vn.rm_ar", oid, ar, True)
                except Exception:
                    pass
                try:
                    client.call("one.vn.delete", oid)
                except Exception:
                    continue
    return 0


if __name__ == "__main__":
    sys.exit(main())
