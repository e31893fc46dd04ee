#!/usr/bin/env python3
"""VM lifecycle and VM pool benchmark for an OpenNebula core daemon with dummy drivers.

Usage::

    bench/lifecycle.py --endpoint http://127.0.0.1:2633/RPC2 --session oneadmin:PASSWORD \
        [--vms 10000] [--nic-vms 1000] [--running 1000] [--hosts 100] [--clients 4] \
        [--pid PID] [--json]

Only standard OpenNebula XML-RPC calls are made, so the same script measures this daemon
and OpenNebula's own ``oned``. Every call goes over raw keep-alive HTTP and answers are
read to the last byte without a client-side XML parse (parsing a 10,000-VM listing takes
the client longer than the daemon takes to write it). It prints, phase by phase:

* ``one.vm.allocate`` (on hold) per second from ``--clients`` processes until the pool
  holds ``--vms`` VMs, and with one NIC each (``--nic-vms`` more, on a dummy network);
* p50/p99 of ``one.vmpool.info``, ``one.vmpool.infoextended`` and ``one.vm.info``;
* p50/p99 of a small call (``one.user.info``) idle and while another process keeps a
  ``one.vmpool.infoextended`` of the whole pool in flight, and their ratio;
* the daemon's RSS (``--pid``, or the local process listening on the endpoint's port),
  and for a local daemon its CPU milliseconds per call of each kind (a figure that a
  busy machine does not distort the way it distorts latencies);
* the time to take ``--running`` VMs from allocate to RUNNING on ``--hosts`` dummy hosts
  (placed with ``one.vm.deploy``, round robin, not through the scheduler) and to
  terminate them;
* with ``--scheduler``: the time for ``--sched-vms`` VMs (1,000) allocated PENDING to reach
  RUNNING on the ``--hosts`` dummy hosts through the scheduler alone (no ``one.vm.deploy``),
  VMs/s, the scheduler settings in use, and the time to terminate them.

OpenNebula 7.5.80 (same machine class, 10,000 VMs): vmpool.info 585 ms, vmpool.infoextended
3.3 s; the targets are a third of those, vm.info under 1.3 ms, 380 allocations/s (140/s
with a NIC), the small call under twice its idle latency and RSS under 250 MB.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from api import Endpoint, find_listener_pid, percentile, read_rss_kib
from infra import CpuMeter, RawClient

TEMPLATE = 'NAME="bench-{i}"\nCPU="0.1"\nVCPU="1"\nMEMORY="64"\nDESCRIPTION="bench"'
_VALUE = re.compile(rb"<value>(?:<(?:i4|int)>)?(-?\d+)(?:</(?:i4|int)>)?</value>")
_OK = b"<boolean>1</boolean>"


class Failed(RuntimeError):
    """An OpenNebula failure answer."""


def ok(data: bytes, what: str) -> bytes:
    if _OK not in data[:400]:
        raise Failed(f"{what}: {data[:400]!r}")
    return data


def int_value(data: bytes, what: str) -> int:
    """The integer value of a ``[true, int, 0]`` answer."""
    ok(data, what)
    found = _VALUE.findall(data)
    if len(found) < 2:
        raise Failed(f"{what}: no id in {data[:300]!r}")
    return int(found[0])


def string_value(data: bytes, what: str) -> str:
    """The (unescaped) string value of a ``[true, string, 0]`` answer."""
    ok(data, what)
    start = data.index(b"<string>") + len(b"<string>")
    text = data[start : data.index(b"</string>", start)].decode()
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


class Bench:
    """The endpoint, the session and one keep-alive connection of this process, and
    the daemon's CPU meter (when it runs here)."""

    def __init__(self, endpoint: str, session: str, pid: int | None = None) -> None:
        self.endpoint = Endpoint.parse(endpoint)
        self.session = session
        self.raw = RawClient(self.endpoint, session)
        self.cpu = CpuMeter(pid)

    def cpu_ms(self, since: float | None, calls: int) -> float | None:
        """Daemon CPU milliseconds per call since ``since`` (load-independent)."""
        now = self.cpu.cpu()
        if since is None or now is None or not calls:
            return None
        return round((now - since) * 1000 / calls, 3)

    def call(self, method: str, *args: Any) -> bytes:
        return self.raw.call(method, *args)

    def text(self, method: str, *args: Any) -> str:
        return string_value(self.call(method, *args), method)

    def number(self, method: str, *args: Any) -> int:
        return int_value(self.call(method, *args), method)


# -- allocation ---------------------------------------------------------------------


def _allocator(endpoint: str, session: str, count: int, offset: int, extra: str, out: Any) -> None:
    bench = Bench(endpoint, session)
    errors: list[str] = []
    done = 0
    for i in range(count):
        try:
            bench.number("one.vm.allocate", TEMPLATE.format(i=offset + i) + extra, True)
            done += 1
        except Exception as exc:  # count and go on: the rate is of successful calls
            errors.append(str(exc))
    out.put((done, errors[:1]))


def allocate_rate(
    endpoint: str, session: str, total: int, clients: int, offset: int, extra: str = ""
) -> tuple[float, int, list[str]]:
    """VMs allocated on hold per second from ``clients`` processes."""
    ctx = multiprocessing.get_context("fork")
    out: Any = ctx.Queue()
    per = max(1, total // clients)
    procs = [
        ctx.Process(
            target=_allocator,
            args=(endpoint, session, per, offset + c * per, extra, out),
            daemon=True,
        )
        for c in range(clients)
    ]
    start = time.perf_counter()
    for p in procs:
        p.start()
    done, errors = 0, []
    for _ in procs:
        got, first = out.get()
        done += got
        errors += first
    elapsed = time.perf_counter() - start
    for p in procs:
        p.join()
    return done / elapsed, done, errors


def bench_network(bench: Bench, size: int) -> int:
    """A dummy network with ``size`` leases, READY (created once)."""
    doc = bench.text("one.vnpool.info", -2, -1, -1)
    cut = doc.find("<NAME>bench-net</NAME>")
    if cut >= 0:
        return int(doc[doc.rfind("<ID>", 0, cut) + 4 : doc.rfind("</ID>", 0, cut)])
    vnid = bench.number(
        "one.vn.allocate",
        f'NAME="bench-net"\nVN_MAD="dummy"\nBRIDGE="br0"\n'
        f'AR=[TYPE="IP4", IP="10.128.0.1", SIZE="{size}"]',
        -1,
    )
    deadline = time.monotonic() + 30
    while "<STATE><![CDATA[1]]></STATE>" not in bench.text("one.vn.info", vnid):
        if time.monotonic() > deadline:
            raise RuntimeError("bench-net did not become READY")
        time.sleep(0.1)
    return vnid


def vm_count(bench: Bench) -> int:
    return bench.call("one.vmpool.info", -2, -1, -1, -2).count(b"&lt;VM&gt;&lt;ID&gt;")


def phase_allocate(args: argparse.Namespace, bench: Bench, out: dict[str, Any]) -> None:
    have = vm_count(bench)
    if have < args.vms:
        cpu0 = bench.cpu.cpu()
        rate, done, errors = allocate_rate(
            args.endpoint, args.session, args.vms - have, args.clients, have
        )
        out["allocate_per_s"] = round(rate, 1)
        out["allocate_daemon_cpu_ms"] = bench.cpu_ms(cpu0, done)
        out["allocated"] = done
        if errors:
            out["allocate_error"] = errors[0]
    if args.nic_vms:
        vnid = bench_network(bench, args.nic_vms + args.clients)
        nic = f'\nNIC=[NETWORK_ID="{vnid}"]'
        cpu0 = bench.cpu.cpu()
        rate, done, errors = allocate_rate(
            args.endpoint, args.session, args.nic_vms, args.clients, args.vms, nic
        )
        out["allocate_nic_per_s"] = round(rate, 1)
        out["allocate_nic_daemon_cpu_ms"] = bench.cpu_ms(cpu0, done)
        if errors:
            out["allocate_nic_error"] = errors[0]
    out["pool_vms"] = vm_count(bench)


# -- listings and latency -----------------------------------------------------------


def latencies(fn: Callable[[], Any], rounds: int) -> dict[str, float]:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return {
        "p50": round(percentile(times, 50) * 1000, 2),
        "p99": round(percentile(times, 99) * 1000, 2),
    }


def phase_listings(args: argparse.Namespace, bench: Bench, out: dict[str, Any]) -> None:
    first = int(re.findall(r"<ID>(\d+)</ID>", bench.text("one.vmpool.info", -2, -1, -1, -1))[0])
    size = len(bench.call("one.vmpool.infoextended", -2, -1, -1, -1))
    out["infoextended_bytes"] = size
    for name, method, rounds in (
        ("vmpool.info", "one.vmpool.info", 10),
        ("vmpool.infoextended", "one.vmpool.infoextended", 5),
    ):
        cpu0 = bench.cpu.cpu()
        out[f"{name}_ms"] = latencies(lambda m=method: ok(bench.call(m, -2, -1, -1, -1), m), rounds)
        out[f"{name}_daemon_cpu_ms"] = bench.cpu_ms(cpu0, rounds)
    cpu0 = bench.cpu.cpu()
    out["vm.info_ms"] = latencies(lambda: ok(bench.call("one.vm.info", first), "vm.info"), 300)
    out["vm.info_daemon_cpu_ms"] = bench.cpu_ms(cpu0, 300)


def _big_loop(endpoint: str, session: str, stop: Any, started: Any) -> None:
    bench = Bench(endpoint, session)
    while not stop.is_set():
        bench.call("one.vmpool.infoextended", -2, -1, -1, -1)
        started.set()


def phase_small_during_big(args: argparse.Namespace, bench: Bench, out: dict[str, Any]) -> None:
    """``one.user.info`` idle, then while another process keeps a whole-pool
    ``vmpool.infoextended`` in flight (one after the other, no pause)."""

    def small() -> None:
        ok(bench.call("one.user.info", 0), "user.info")

    idle = latencies(small, 200)
    ctx = multiprocessing.get_context("fork")
    stop, started = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_big_loop, args=(args.endpoint, args.session, stop, started))
    proc.start()
    started.wait(60)
    busy = latencies(small, 200)
    stop.set()
    proc.join(120)
    out["small_call_ms"] = {"idle": idle, "during_infoextended": busy}
    out["small_call_ratio_p50"] = round(busy["p50"] / max(idle["p50"], 1e-6), 2)


def rss_mb(pid: int | None) -> float | None:
    got = read_rss_kib(pid) if pid is not None else None
    return None if got is None else round(got[0] / 1024, 1)


# -- lifecycle ----------------------------------------------------------------------


def wait_states(bench: Bench, vids: list[int], state: int, lcm: int) -> None:
    pending = set(vids)
    while pending:
        doc = bench.text("one.vmpool.info", -2, min(pending), max(pending), -2)
        for vid in list(pending):
            cut = doc.find(f"<VM><ID>{vid}</ID>")
            if cut < 0:
                continue
            body = doc[cut : doc.find("</VM>", cut)]
            if f"<STATE>{state}</STATE><LCM_STATE>{lcm}</LCM_STATE>" in body:
                pending.discard(vid)
        if pending:
            time.sleep(0.2)


def bench_hosts(bench: Bench, hosts: int) -> list[int]:
    hids = []
    for i in range(hosts):
        name = f"benchhost{i:03d}"
        try:
            hids.append(bench.number("one.host.allocate", name, "dummy", "dummy", -1))
        except Failed:
            doc = bench.text("one.hostpool.info")
            cut = doc.find(f"<NAME>{name}</NAME>")
            hids.append(int(doc[doc.rfind("<ID>", 0, cut) + 4 : doc.rfind("</ID>", 0, cut)]))
    return hids


def phase_lifecycle(args: argparse.Namespace, bench: Bench, out: dict[str, Any]) -> None:
    hids = bench_hosts(bench, args.hosts)
    start = time.perf_counter()
    vids = []
    for i in range(args.running):
        # on hold, so the scheduler does not race this explicit placement
        vid = bench.number("one.vm.allocate", TEMPLATE.format(i=i), True)
        bench.number("one.vm.deploy", vid, hids[i % len(hids)])
        vids.append(vid)
    wait_states(bench, vids, 3, 3)
    up = time.perf_counter() - start
    start = time.perf_counter()
    for vid in vids:
        bench.number("one.vm.action", "terminate-hard", vid)
    left = wait_done(bench, vids, 120)
    down = time.perf_counter() - start
    out["to_running_s"] = round(up, 2)
    out["to_running_vms_per_s"] = round(args.running / up, 1)
    out["terminate_s"] = round(down, 2) if not left else f"{left} VMs not DONE"


# -- scheduler ----------------------------------------------------------------------

SCHED_KNOBS = (
    "SCHED_MAX_WND_TIME",
    "SCHED_MAX_WND_LENGTH",
    "SCHED_RETRY_TIME",
    "MAX_ACTIONS_PER_HOST",
    "MAX_ACTIONS_PER_CLUSTER",
    "ACTION_TIMEOUT",
)


def sched_knobs(bench: Bench) -> str:
    """The scheduler settings ``one.system.config`` shows (oned's defaults if absent)."""
    try:
        conf = bench.text("one.system.config")
    except Failed:
        conf = ""
    found = []
    for name in SCHED_KNOBS:
        m = re.search(rf"<{name}>(?:<!\[CDATA\[)?([^<\]]*)", conf)
        found.append(f"{name}={m.group(1) if m else '?'}")
    m = re.search(r"<SCHED_MAD>.*?<ARGUMENTS>(?:<!\[CDATA\[)?([^<\]]*)", conf, re.S)
    found.append(f"SCHED_MAD ARGUMENTS={m.group(1) if m else '?'}")
    return " ".join(found)


def wait_hosts_monitored(bench: Bench, hids: list[int], secs: float = 300) -> None:
    deadline = time.monotonic() + secs
    while True:
        doc = bench.text("one.hostpool.info")
        states = dict(re.findall(r"<HOST><ID>(\d+)</ID>.*?<STATE>(\d+)</STATE>", doc, re.S))
        if all(states.get(str(h)) == "2" for h in hids):
            return
        if time.monotonic() > deadline:
            raise SystemExit("hosts are not MONITORED: the scheduler only uses those")
        time.sleep(0.5)


def phase_scheduler(args: argparse.Namespace, bench: Bench, out: dict[str, Any]) -> None:
    """``--sched-vms`` VMs allocated PENDING reach RUNNING through SCHED_MAD alone (no
    ``one.vm.deploy``) on ``--hosts`` dummy hosts, then are terminated."""
    hids = bench_hosts(bench, args.hosts)
    wait_hosts_monitored(bench, hids)
    out["scheduler_knobs"] = sched_knobs(bench)
    start = time.perf_counter()
    vids = [
        bench.number("one.vm.allocate", TEMPLATE.format(i=f"s{i}")) for i in range(args.sched_vms)
    ]
    wait_states(bench, vids, 3, 3)
    up = time.perf_counter() - start
    out["scheduler_to_running_s"] = round(up, 2)
    out["scheduler_vms_per_s"] = round(args.sched_vms / up, 1)
    start = time.perf_counter()
    for vid in vids:
        bench.number("one.vm.action", "terminate-hard", vid)
    left = wait_done(bench, vids, 120)
    down = time.perf_counter() - start
    out["scheduler_terminate_s"] = round(down, 2) if not left else f"{left} VMs not DONE"


def wait_done(bench: Bench, vids: list[int], secs: float) -> int:
    """Wait until the VMs are DONE; how many are not after ``secs`` (a system datastore
    whose TM_MAD the daemon lacks leaves them in EPILOG_FAILURE)."""
    pending, deadline = set(vids), time.monotonic() + secs
    while pending and time.monotonic() < deadline:
        for vid in list(pending):
            if "<STATE>6</STATE>" in bench.text("one.vm.info", vid):
                pending.discard(vid)
        if pending:
            time.sleep(0.5)
    return len(pending)


# -- main ---------------------------------------------------------------------------

Phase = Callable[[argparse.Namespace, Bench, dict[str, Any]], None]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--session", required=True)
    parser.add_argument("--vms", type=int, default=10_000, help="VMs in the pool (on hold)")
    parser.add_argument("--nic-vms", type=int, default=1000, help="more VMs with one NIC each")
    parser.add_argument("--running", type=int, default=1_000, help="VMs taken to RUNNING")
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--clients", type=int, default=4, help="allocating processes")
    parser.add_argument("--pid", type=int, help="daemon pid (default: the local listener)")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of lines")
    parser.add_argument(
        "--scheduler", action="store_true", help="also time placement through SCHED_MAD"
    )
    parser.add_argument("--sched-vms", type=int, default=1_000, help="VMs the scheduler places")
    parser.add_argument(
        "--dummy-datastores",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="switch datastores 0 and 1 to TM_MAD/DS_MAD dummy first, as OpenNebula's "
        "reference setup does (the bootstrap ones use local/fs drivers a dummy install lacks)",
    )
    return parser.parse_args(argv)


def dummy_datastores(bench: Bench) -> str:
    """``one.datastore.update`` (merge) of datastores 0 and 1 to the dummy drivers."""
    for ds in (0, 1):
        bench.number("one.datastore.update", ds, 'TM_MAD="dummy"\nDS_MAD="dummy"', 1)
    return "0 and 1 switched to TM_MAD/DS_MAD dummy"


def phases(args: argparse.Namespace) -> list[tuple[str, Phase]]:
    """The phases to run, in order (a new phase is one function and one line here)."""
    chosen: list[tuple[str, Phase]] = [
        ("allocate", phase_allocate),
        ("listings", phase_listings),
        ("small call during a big answer", phase_small_during_big),
    ]
    if args.running:
        chosen.append(("lifecycle", phase_lifecycle))
    if args.scheduler:
        chosen.append(("scheduler", phase_scheduler))
    return chosen


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    port = Endpoint.parse(args.endpoint).port
    pid = args.pid if args.pid is not None else find_listener_pid(port)
    bench = Bench(args.endpoint, args.session, pid)
    out: dict[str, Any] = {}
    if args.dummy_datastores:
        out["datastores"] = dummy_datastores(bench)
    for name, phase in phases(args):
        before = len(out)
        phase(args, bench, out)
        out[f"rss_mb_after_{name.split()[0]}"] = rss_mb(pid)
        if not args.json:
            for key in list(out)[before:]:
                print(f"{key:32} {out[key]}", flush=True)
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
