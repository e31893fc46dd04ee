#!/usr/bin/env python3
"""Event bus, hook delay and audit-trail cost benchmark.

Usage::

    bench/events.py --endpoint http://127.0.0.1:2633/RPC2 --session oneadmin:PASSWORD \
        [--bus tcp://127.0.0.1:2101] [--replier tcp://127.0.0.1:2102] [--calls 5000] \
        [--procs 4] [--vms 50] [--hem start|running] [--duration 5] [--no-audit]

Prints three things:

1. **Bus rate**: a burst of ``--calls`` API calls (``one.system.version`` from ``--procs``
   client processes); one pyzmq subscriber on ``--bus`` counts their ``EVENT API`` messages:
   events/s from the first call to the last event, and how many never arrived.
2. **Hook delay**: a state hook ``ON=RUNNING`` whose command records when it starts;
   ``--vms`` VMs (on hold, then ``one.vm.deploy`` to a dummy host) reach RUNNING, and the
   delay from each VM's ``EVENT STATE VM/ACTIVE/RUNNING`` on the bus to its hook's start
   is reported as p50/p99. With ``--hem start`` (default) the benchmark runs ``oned-hem``
   itself against the endpoint; with ``--hem running`` it relies on one already running
   (ours or OpenNebula's onehem-server) on this machine. Hook, VMs and host are removed.
3. **Audit trail cost**: one local daemon (this package's ``oned -f`` on a free port)
   switched by SIGHUP between ``AUDIT = [ MODE = off | writes | all ]``, each mode driven
   for ``--duration`` seconds (in ``--rounds`` alternating slices) by ``--procs`` clients
   calling ``one.user.info`` and ``one.user.update`` alternately: calls/s and the change
   from ``off``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xmlrpc.client
from pathlib import Path
from typing import Any

import zmq

HOOK_SCRIPT = """#!/bin/sh
now=$(date +%s.%N)
id=$(echo "$1" | base64 -d 2>/dev/null | sed -n 's:^ *<ID>\\([0-9]*\\)</ID>.*:\\1:p' | head -1)
echo "$id $now" >> {out}
"""


def call(proxy: Any, session: str, method: str, *args: Any) -> Any:
    answer = getattr(proxy, method)(session, *args)
    if not answer[0]:
        raise RuntimeError(f"{method}: {answer[1]}")
    return answer[1]


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


# ------------------------------------------------------------------------- load
def _burst(endpoint: str, session: str, calls: int) -> int:
    proxy = xmlrpc.client.ServerProxy(endpoint)
    ok = 0
    for _ in range(calls):
        if proxy.one.system.version(session)[0]:
            ok += 1
    return ok


def _mixed(endpoint: str, session: str, seconds: float) -> int:
    proxy = xmlrpc.client.ServerProxy(endpoint)
    done = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        proxy.one.user.info(session, -1)
        proxy.one.user.update(session, 0, f'BENCH="{done}"', 1)
        done += 2
    return done


def run_procs(fn: Any, args: list[tuple[Any, ...]]) -> list[int]:
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(len(args)) as pool:
        return list(pool.starmap(fn, args))


# ------------------------------------------------------------------------- bus rate
def bus_rate(args: argparse.Namespace, zctx: zmq.Context[Any]) -> None:
    proxy = xmlrpc.client.ServerProxy(args.endpoint)
    sub = zctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(args.bus)
    sub.setsockopt(zmq.SUBSCRIBE, b"EVENT API one.system.version ")
    try:
        deadline = time.monotonic() + 10
        while not sub.poll(200):  # the subscription is live once our calls show up
            if time.monotonic() > deadline:
                print(f"bus rate                 n/a (no event on {args.bus})")
                return
            call(proxy, args.session, "one.system.version")
        while sub.poll(300):
            sub.recv_multipart()
        per = max(1, args.calls // args.procs)
        total = per * args.procs
        received = 0
        last = 0.0
        results: list[int] = []
        worker = threading.Thread(
            target=lambda: results.extend(
                run_procs(_burst, [(args.endpoint, args.session, per)] * args.procs)
            )
        )
        start = time.monotonic()
        worker.start()
        while received < total:
            if not sub.poll(3000 if not worker.is_alive() else 30000):
                break
            sub.recv_multipart()
            received += 1
            last = time.monotonic()
        worker.join()
        calls_s = total / max(1e-9, last - start) if received else 0.0
        print(
            f"bus rate                 {received / max(1e-9, last - start):9.0f} events/s "
            f"({received}/{total} events of {total} calls, {sum(results)} answered; "
            f"{calls_s:.0f} calls/s)"
        )
    finally:
        sub.close()


# ------------------------------------------------------------------------- hook delay
def hook_delay(args: argparse.Namespace, zctx: zmq.Context[Any]) -> None:
    proxy = xmlrpc.client.ServerProxy(args.endpoint)
    s = args.session
    work = Path(tempfile.mkdtemp(prefix="bench-events-"))
    out = work / "ran"
    script = work / "on_running.sh"
    script.write_text(HOOK_SCRIPT.format(out=out))
    script.chmod(0o755)
    tag = f"bench-events-{os.getpid()}"
    hem: subprocess.Popen[bytes] | None = None
    hkid = hid = None
    vids: list[int] = []
    sub = zctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(args.bus)
    sub.setsockopt(zmq.SUBSCRIBE, b"EVENT STATE VM/ACTIVE/RUNNING/")
    seen: dict[int, float] = {}
    stop = threading.Event()

    def listen() -> None:
        while not stop.is_set():
            if sub.poll(100):
                key, _content = sub.recv_multipart()
                vid = int(key.decode().rstrip().rsplit("/", 1)[1])
                seen.setdefault(vid, time.time())

    listener = threading.Thread(target=listen, daemon=True)
    try:
        hkid = call(
            proxy, s, "one.hook.allocate",
            f'NAME="{tag}"\nTYPE="state"\nRESOURCE="VM"\nON="RUNNING"\n'
            f'COMMAND="{script}"\nARGUMENTS="$TEMPLATE"',
        )
        hid = call(proxy, s, "one.host.allocate", tag, "dummy", "dummy", -1)
        if args.hem == "start":
            hem = subprocess.Popen(
                [sys.executable, "-m", "oned.hem", "--endpoint", args.endpoint,
                 "--session", s, "--subscriber", args.bus, "--replier", args.replier,
                 "--log", str(work / "onehem.log"), "--concurrency", "20"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 20
            while "Hooks successfully loaded" not in _read(work / "onehem.log"):
                if time.monotonic() > deadline or hem.poll() is not None:
                    print("hook delay               n/a (oned-hem did not start)")
                    return
                time.sleep(0.1)
            time.sleep(0.5)  # its subscriptions reach the publisher
        listener.start()
        time.sleep(0.3)
        for i in range(args.vms):
            vid = call(proxy, s, "one.vm.allocate", f'NAME="{tag}-{i}"\nCPU="0.01"\nMEMORY="8"',
                       True)
            vids.append(vid)
            call(proxy, s, "one.vm.deploy", vid, hid)
        deadline = time.monotonic() + 60 + args.vms
        ran: dict[int, float] = {}
        while time.monotonic() < deadline and len(ran) < len(vids):
            for line in _read(out).splitlines():
                vid_s, _, when = line.partition(" ")
                if vid_s.isdigit():
                    ran.setdefault(int(vid_s), float(when))
            time.sleep(0.2)
        delays = [(ran[v] - seen[v]) * 1000 for v in vids if v in ran and v in seen]
        if not delays:
            print("hook delay               n/a (no hook ran: is a Hook Execution Manager up?)")
            return
        print(
            f"hook delay (state->run)  p50 {percentile(delays, 50):7.1f} ms   "
            f"p99 {percentile(delays, 99):7.1f} ms   ({len(delays)}/{len(vids)} VMs)"
        )
    finally:
        stop.set()
        if listener.is_alive():
            listener.join(2)
        sub.close()
        if hem is not None and hem.poll() is None:
            hem.send_signal(signal.SIGTERM)
            try:
                hem.wait(20)
            except subprocess.TimeoutExpired:
                hem.kill()
        for vid in vids:
            _quiet(proxy, s, "one.vm.recover", vid, 3)
        if hid is not None:
            _quiet(proxy, s, "one.host.delete", hid)
        if hkid is not None:
            _quiet(proxy, s, "one.hook.delete", hkid)
        shutil.rmtree(work, ignore_errors=True)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _quiet(proxy: Any, session: str, method: str, *args: Any) -> None:
    try:
        call(proxy, session, method, *args)
    except (RuntimeError, OSError, xmlrpc.client.Error):
        pass


# ------------------------------------------------------------------------- audit
AUDIT_MODES = (("off", "off"), ("writes", "on for writes"), ("all", "on for all"))


def audit_rows(args: argparse.Namespace) -> None:
    """One local daemon (``api.AuditedOned``) switched between the three AUDIT modes by
    SIGHUP, measured in alternating rounds, so a change of load on the machine weighs
    on all three alike and nothing else differs between them."""
    if args.no_audit:
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from api import SETTLE, AuditedOned, round_order

    rates: dict[str, float] = {}
    daemon = AuditedOned("bench-pw")
    try:
        endpoint = daemon.endpoint.url
        _mixed(endpoint, "oneadmin:bench-pw", 1.0)  # warm up
        slice_s = args.duration / args.rounds
        for turn in range(args.rounds):
            order = round_order(turn, AUDIT_MODES)
            for mode, _ in order:
                if daemon.switch(mode):  # measure the steady state, not the reload
                    _mixed(endpoint, "oneadmin:bench-pw", SETTLE)
                work = [(endpoint, "oneadmin:bench-pw", slice_s)] * args.procs
                counts = run_procs(_mixed, work)
                rates[mode] = rates.get(mode, 0.0) + sum(counts) / args.duration
    finally:
        daemon.stop()
    base = rates.get("off")
    for mode, label in AUDIT_MODES:
        rate = rates[mode]
        change = f"  ({(rate / base - 1) * 100:+.1f}% vs off)" if base and mode != "off" else ""
        print(f"API, audit {label:<14} {rate:9.0f} calls/s{change}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--endpoint", required=True)
    p.add_argument("--session", required=True)
    p.add_argument("--bus", default="tcp://127.0.0.1:2101")
    p.add_argument("--replier", default="tcp://127.0.0.1:2102")
    p.add_argument("--calls", type=int, default=5000)
    p.add_argument("--procs", type=int, default=4)
    p.add_argument("--vms", type=int, default=50)
    p.add_argument("--hem", choices=("start", "running"), default="start")
    p.add_argument("--duration", type=float, default=6.0, help="seconds per audit mode")
    p.add_argument("--rounds", type=int, default=3, help="alternating audit rounds")
    p.add_argument("--no-audit", action="store_true", help="skip the local audit daemons")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    proxy = xmlrpc.client.ServerProxy(args.endpoint)
    try:
        version = call(proxy, args.session, "one.system.version")
    except (RuntimeError, OSError, xmlrpc.client.Error) as exc:
        print(f"cannot reach {args.endpoint}: {exc}", file=sys.stderr)
        return 2
    print(f"endpoint: {args.endpoint} (OpenNebula {version}); bus {args.bus}", flush=True)
    zctx = zmq.Context()
    try:
        bus_rate(args, zctx)
        hook_delay(args, zctx)
    finally:
        zctx.term()
    audit_rows(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

