#!/usr/bin/env python3
"""Hosts, monitoring and images benchmark for an OpenNebula core daemon.

Usage::

    bench/infra.py --endpoint http://127.0.0.1:2633/RPC2 --session oneadmin:PASSWORD \
        [--hosts 2500] [--images 10000] [--procs 4] [--im-mad dummy] [--vm-mad dummy] \
        [--ds-id ID] [--monitor-wait 300] [--ready-wait 300] [--pid PID] [--no-cleanup]

Prints, using only standard OpenNebula XML-RPC calls (so it runs unchanged against
OpenNebula's own ``oned`` with dummy drivers):

- host creation rate (``one.host.allocate``) and ``one.hostpool.info`` p50 right after;
- the time from the last allocation until every host is MONITORED, ``one.hostpool.info``
  p50 then, ``one.host.info`` p50 while monitoring runs, the monitoring intake (host
  reports absorbed per second, from ``LAST_MON_TIME`` changes over a window), and the
  daemon's CPU use meanwhile (when it runs on this machine);
- image allocation rate (``one.image.allocate`` of DATABLOCK images), the time until all
  are READY, and ``one.imagepool.info`` p50.

Allocations run from ``--procs`` processes, each with its own keep-alive connection, so
that the Python client is not the bottleneck. Objects it created are deleted at the end
unless ``--no-cleanup``.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import re
import sys
import time
import xmlrpc.client
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from api import Endpoint, OneClient, find_listener_pid, percentile

HOST_PREFIX = "benchhost"
IMAGE_PREFIX = "benchimg"
DS_NAME = "bench-images"
_SAMPLE = b"&lt;MONITORING&gt;&lt;TIMESTAMP&gt;"


def samples_since(raw: bytes, since: float) -> int:
    """MONITORING samples of a raw ``one.hostpool.monitoring`` answer stamped at or after
    ``since`` (each is one host report the daemon absorbed)."""
    count = 0
    at = raw.find(_SAMPLE)
    while at >= 0:
        start = at + len(_SAMPLE)
        stamp = raw[start : raw.find(b"&lt;", start)]
        if stamp.isdigit() and int(stamp) >= since:
            count += 1
        at = raw.find(_SAMPLE, start)
    return count


def _proxy(url: str) -> xmlrpc.client.ServerProxy:
    return xmlrpc.client.ServerProxy(url, allow_none=False)


def _alloc_worker(
    url: str, session: str, method: str, args_list: list[tuple[Any, ...]], out: Any
) -> None:
    proxy = _proxy(url)
    fn = getattr(proxy, method)
    ids: list[int] = []
    errors: list[str] = []
    lat: list[float] = []
    for args in args_list:
        t0 = time.perf_counter()
        try:
            reply = fn(session, *args)
        except Exception as exc:  # transport trouble: count it, go on
            errors.append(str(exc))
            continue
        lat.append(time.perf_counter() - t0)
        if reply[0]:
            ids.append(int(reply[1]))
        else:
            errors.append(str(reply[1]))
    out.put((ids, errors, lat))


def parallel_allocate(
    url: str, session: str, method: str, args_list: list[tuple[Any, ...]], procs: int
) -> tuple[list[int], list[str], float, list[float]]:
    """Spread the calls over ``procs`` processes; returns ids, errors, seconds, latencies."""
    ctx = multiprocessing.get_context("fork")
    out: Any = ctx.Queue()
    shares = [args_list[i::procs] for i in range(procs)]
    workers = [
        ctx.Process(target=_alloc_worker, args=(url, session, method, share, out), daemon=True)
        for share in shares
        if share
    ]
    start = time.perf_counter()
    for w in workers:
        w.start()
    ids: list[int] = []
    errors: list[str] = []
    lat: list[float] = []
    for _ in workers:
        got_ids, got_errors, got_lat = out.get()
        ids += got_ids
        errors += got_errors
        lat += got_lat
    elapsed = time.perf_counter() - start
    for w in workers:
        w.join()
    return ids, errors, elapsed, sorted(lat)


class RawClient:
    """XML-RPC calls over one keep-alive HTTP connection, answers kept as raw bytes:
    listings are timed and scanned without a client-side XML parse (which takes
    seconds for a 75 MB host pool and would make the load generator the bottleneck)."""

    def __init__(self, endpoint: Endpoint, session: str) -> None:
        self.endpoint = endpoint
        self.session = session
        self.conn: http.client.HTTPConnection | None = None

    def call(self, method: str, *args: Any) -> bytes:
        body = xmlrpc.client.dumps((self.session, *args), method).encode()
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.endpoint.host, self.endpoint.port)
            try:
                self.conn.request("POST", self.endpoint.path, body, {"Content-Type": "text/xml"})
                reply = self.conn.getresponse()
                data = reply.read()
                if reply.getheader("connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return data
            except (http.client.HTTPException, OSError):
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def p50_ms(call: Callable[[], Any], samples: int) -> tuple[float, float]:
    lat = []
    for _ in range(samples):
        t0 = time.perf_counter()
        call()
        lat.append(time.perf_counter() - t0)
    lat.sort()
    return percentile(lat, 50) * 1000.0, percentile(lat, 99) * 1000.0


class CpuMeter:
    """CPU seconds of a local process, from /proc/<pid>/stat."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.tick = os.sysconf("SC_CLK_TCK")

    def cpu(self) -> float | None:
        if self.pid is None:
            return None
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / self.tick


def _states(raw: bytes, tag: str) -> list[int]:
    """STATE of each top-level object in a raw (escaped) listing answer."""
    pattern = rf"&lt;{tag}&gt;&lt;ID&gt;\d+&lt;/ID&gt;.*?&lt;STATE&gt;(\d+)&lt;/STATE&gt;"
    return [int(m.group(1)) for m in re.finditer(pattern.encode(), raw, re.S)]


def bench_hosts(args: argparse.Namespace, raw: RawClient, cpu: CpuMeter) -> list[int]:
    n = args.hosts
    names = [(f"{HOST_PREFIX}{i:05d}", args.im_mad, args.vm_mad, -1) for i in range(n)]
    ids, errors, elapsed, lat = parallel_allocate(
        args.endpoint, args.session, "one.host.allocate", names, args.procs
    )
    last_alloc = time.monotonic()
    print(
        f"hosts: created {len(ids)}/{n} in {elapsed:.1f} s = {len(ids) / elapsed:.0f} hosts/s "
        f"(allocate p50 {percentile(lat, 50) * 1000:.1f} ms), errors {len(errors)}"
        + (f" first: {errors[0]}" if errors else ""),
        flush=True,
    )
    p50, p99 = p50_ms(lambda: raw.call("one.hostpool.info"), 5)
    print(f"hostpool.info with {len(ids)} hosts (before monitoring): p50 {p50:.0f} ms", flush=True)
    wanted = set(ids)
    monitored = 0
    cpu0, t0 = cpu.cpu(), time.monotonic()
    deadline = last_alloc + args.monitor_wait
    while time.monotonic() < deadline:
        doc = raw.call("one.hostpool.info")
        monitored = sum(1 for s in _states(doc, "HOST") if s == 2)
        if monitored >= len(wanted):
            break
        time.sleep(1.0)
    took = time.monotonic() - last_alloc
    ramp = took + elapsed
    print(
        f"hosts MONITORED: {monitored}/{len(wanted)} "
        f"{'after' if monitored >= len(wanted) else 'not all within'} {took:.1f} s "
        f"from the last allocation (first reports absorbed: {monitored / ramp:.0f} hosts/s "
        "since the first allocation)",
        flush=True,
    )
    p50, p99 = p50_ms(lambda: raw.call("one.hostpool.info"), 10)
    print(f"hostpool.info with {len(ids)} monitored hosts: p50 {p50:.0f} ms p99 {p99:.0f} ms")
    some = ids[len(ids) // 2] if ids else 0
    p50, p99 = p50_ms(lambda: raw.call("one.host.info", some), 200)
    print(f"host.info while monitoring runs: p50 {p50:.2f} ms p99 {p99:.2f} ms", flush=True)
    window = args.window
    w0, c0, t_start = time.monotonic(), cpu.cpu(), time.time()
    time.sleep(window)
    w1, c1 = time.monotonic(), cpu.cpu()
    absorbed = samples_since(raw.call("one.hostpool.monitoring", int(window) + 1), t_start)
    print(
        f"monitoring intake: {absorbed} host reports stored within {w1 - w0:.0f} s "
        f"= {absorbed / (w1 - w0):.1f} reports/s",
        flush=True,
    )
    if c0 is not None and c1 is not None and cpu0 is not None:
        print(
            f"daemon CPU while monitoring {len(ids)} hosts: {(c1 - c0) / (w1 - w0):.2f} cores "
            f"(during ramp-up: {(c0 - cpu0) / max(w0 - t0, 1e-9):.2f} cores)",
            flush=True,
        )
    else:
        print("daemon CPU: n/a (pass --pid for a local daemon)")
    return ids


def image_datastore(args: argparse.Namespace, one: OneClient) -> tuple[int, bool]:
    if args.ds_id is not None:
        return args.ds_id, False
    doc = one.call("one.datastorepool.info")
    match = re.search(rf"<ID>(\d+)</ID>(?:(?!<DATASTORE>).)*?<NAME>{DS_NAME}</NAME>", doc, re.S)
    if match:
        return int(match.group(1)), False
    template = f'NAME="{DS_NAME}"\nTYPE="IMAGE_DS"\nDS_MAD="dummy"\nTM_MAD="dummy"'
    return int(one.call("one.datastore.allocate", template, -1)), True


def bench_images(
    args: argparse.Namespace, one: OneClient, raw: RawClient
) -> tuple[list[int], int, bool]:
    ds_id, created_ds = image_datastore(args, one)
    n = args.images
    calls = [
        (f'NAME="{IMAGE_PREFIX}{i:05d}"\nTYPE="DATABLOCK"\nSIZE="1"', ds_id, True)
        for i in range(n)
    ]
    ids, errors, elapsed, lat = parallel_allocate(
        args.endpoint, args.session, "one.image.allocate", calls, args.procs
    )
    last = time.monotonic()
    print(
        f"images: allocated {len(ids)}/{n} in {elapsed:.1f} s = {len(ids) / elapsed:.0f} "
        f"images/s (allocate p50 {percentile(lat, 50) * 1000:.1f} ms), errors {len(errors)}"
        + (f" first: {errors[0]}" if errors else ""),
        flush=True,
    )
    ready = 0
    deadline = last + args.ready_wait
    while time.monotonic() < deadline:
        doc = raw.call("one.imagepool.info", -2, -1, -1)
        ready = sum(1 for s in _states(doc, "IMAGE") if s == 1)
        if ready >= len(ids):
            break
        time.sleep(1.0)
    took = time.monotonic() - last
    total = time.monotonic() - last + elapsed
    print(
        f"images READY: {ready}/{len(ids)} {took:.1f} s after the last allocation "
        f"({total:.1f} s after the first)",
        flush=True,
    )
    p50, p99 = p50_ms(lambda: raw.call("one.imagepool.info", -2, -1, -1), 10)
    print(f"imagepool.info with {len(ids)} images: p50 {p50:.0f} ms p99 {p99:.0f} ms")
    return ids, ds_id, created_ds


def cleanup(one: OneClient, hosts: list[int], images: list[int], ds: int | None) -> None:
    for hid in hosts:
        try:
            one.call("one.host.delete", hid)
        except Exception as exc:  # keep going: report once at the end
            print(f"cleanup: host {hid}: {exc}")
            break
    for iid in images:
        try:
            one.call("one.image.delete", iid)
        except Exception as exc:
            print(f"cleanup: image {iid}: {exc}")
            break
    if ds is not None and images:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if "<IMAGES></IMAGES>" in one.call("one.datastore.info", ds):
                break
            time.sleep(1)
    if ds is not None:
        try:
            one.call("one.datastore.delete", ds)
        except Exception as exc:
            print(f"cleanup: datastore {ds}: {exc}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--session", required=True)
    parser.add_argument("--hosts", type=int, default=2500)
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--im-mad", default="dummy")
    parser.add_argument("--vm-mad", default="dummy")
    parser.add_argument("--ds-id", type=int, default=None)
    parser.add_argument("--monitor-wait", type=float, default=300.0)
    parser.add_argument("--ready-wait", type=float, default=300.0)
    parser.add_argument(
        "--window",
        type=float,
        default=130.0,
        help="steady-state intake window in seconds (at least one MONITOR_HOST period)",
    )
    parser.add_argument("--pid", type=int, default=None)
    parser.add_argument("--no-cleanup", action="store_true")
    args = parser.parse_args()
    endpoint = Endpoint.parse(args.endpoint)
    one = OneClient(endpoint, args.session)
    raw = RawClient(endpoint, args.session)
    pid = args.pid or find_listener_pid(endpoint.port)
    cpu = CpuMeter(pid)
    hosts: list[int] = []
    images: list[int] = []
    ds: int | None = None
    try:
        if args.hosts > 0:
            hosts = bench_hosts(args, raw, cpu)
        if args.images > 0:
            images, ds_id, created = bench_images(args, one, raw)
            ds = ds_id if created else None
    finally:
        if not args.no_cleanup:
            cleanup(one, hosts, images, ds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
