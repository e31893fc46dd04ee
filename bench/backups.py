#!/usr/bin/env python3
"""Backup job throughput: how many VM backups per minute a backup job of N VMs completes.

Usage::

    bench/backups.py --endpoint http://127.0.0.1:2633/RPC2 --session oneadmin:PASSWORD \
        [--vms 500] [--hosts 5] [--execution PARALLEL] [--json]

Only standard OpenNebula XML-RPC calls are made, so the same script measures this daemon
and OpenNebula's own ``oned``, run with the dummy drivers (IM/VMM ``dummy``, system
datastore TM_MAD ``dummy``). It creates ``--hosts`` dummy hosts, a BACKUP datastore and
``--vms`` VMs deployed round-robin on the hosts (RUNNING), then one backup job over all of
them, runs it with ``one.backupjob.backup`` and polls the job until every VM is in
UPDATED_VMS (or ERROR_VMS). It prints backups per minute and the largest number of
backups seen running at once, against ``MAX_BACKUPS`` and ``MAX_BACKUPS_HOST`` read from
``one.system.config``. Backups start on the scheduled action timer (oned's
``MANAGER_TIMER``): at most ``MAX_BACKUPS`` per tick, so the rate is about
``60 * MAX_BACKUPS / MANAGER_TIMER`` when the drivers keep up. ``--cleanup`` terminates
the VMs and deletes the job, images, datastore and hosts afterwards.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import xml.etree.ElementTree as ET
import xmlrpc.client
from typing import Any

TAG = "benchbk"


class Client:
    def __init__(self, endpoint: str, session: str) -> None:
        self.proxy = xmlrpc.client.ServerProxy(endpoint, allow_none=False)
        self.session = session

    def ok(self, method: str, *args: Any) -> Any:
        fn: Any = self.proxy
        for part in method.split("."):
            fn = getattr(fn, part)
        reply: list[Any] = fn(self.session, *args)
        if not reply[0]:
            raise RuntimeError(f"{method}{args[:2]} failed: {reply[1]}")
        return reply[1]

    def xml(self, method: str, *args: Any) -> ET.Element:
        return ET.fromstring(self.ok(method, *args))


def config_int(client: Client, name: str, default: int) -> int:
    found = client.xml("one.system.config").findall(name)
    text = found[-1].text if found else None  # the last definition wins
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def ids(doc: ET.Element, path: str) -> list[int]:
    return [int(i.text or -1) for i in doc.findall(f"{path}/ID")]


def wait_vms(client: Client, vids: list[int], states: set[tuple[int, int]], secs: float) -> None:
    wanted = set(vids)
    deadline = time.monotonic() + secs
    while True:
        pool = client.xml("one.vmpool.info", -2, min(vids), max(vids), -1)
        done = {
            int(vm.findtext("ID") or -1)
            for vm in pool.findall("VM")
            if (int(vm.findtext("STATE") or 0), int(vm.findtext("LCM_STATE") or 0)) in states
        }
        if wanted <= done:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(wanted - done)} VMs did not reach {states} in {secs}s")
        time.sleep(0.5)


def setup(client: Client, nvms: int, nhosts: int) -> tuple[list[int], list[int], int]:
    client.ok("one.datastore.update", 0, 'TM_MAD="dummy"', 1)
    hosts = [
        client.ok("one.host.allocate", f"{TAG}-h{n}", "dummy", "dummy", -1) for n in range(nhosts)
    ]
    bds = client.ok(
        "one.datastore.allocate",
        f'NAME="{TAG}-ds"\nTYPE="BACKUP_DS"\nDS_MAD="dummy"\nTM_MAD="-"',
        -1,
    )
    vids = []
    for n in range(nvms):
        vid = client.ok("one.vm.allocate", f'NAME="{TAG}-{n}"\nCPU="0.01"\nMEMORY="16"', False)
        client.ok("one.vm.deploy", vid, hosts[n % nhosts], False, -1)
        vids.append(vid)
    wait_vms(client, vids, {(3, 3)}, 60 + nvms * 0.5)
    return hosts, vids, bds


def run(
    client: Client, vids: list[int], bds: int, execution: str, timeout: float
) -> dict[str, Any]:
    job = client.ok(
        "one.backupjob.allocate",
        f'NAME="{TAG}-job"\nBACKUP_VMS="{",".join(map(str, vids))}"\nDATASTORE_ID="{bds}"\n'
        f'EXECUTION="{execution}"',
    )
    start = time.monotonic()
    client.ok("one.backupjob.backup", job)
    peak = 0
    first_done = None
    while True:
        doc = client.xml("one.backupjob.info", job)
        running = len(ids(doc, "BACKING_UP_VMS"))
        peak = max(peak, running)
        updated, errors = ids(doc, "UPDATED_VMS"), ids(doc, "ERROR_VMS")
        if updated and first_done is None:
            first_done = time.monotonic() - start
        if not ids(doc, "OUTDATED_VMS") and not running:
            break
        if time.monotonic() - start > timeout:
            raise RuntimeError(f"job not done after {timeout}s: {len(updated)} backed up")
        time.sleep(0.1)
    elapsed = time.monotonic() - start
    return {
        "job": job,
        "vms": len(vids),
        "updated": len(updated),
        "errors": len(errors),
        "elapsed_s": round(elapsed, 2),
        "backups_per_minute": round(len(updated) * 60 / elapsed, 1),
        "peak_concurrent": peak,
        "first_backup_s": round(first_done or 0.0, 2),
        "error": doc.findtext("TEMPLATE/ERROR") or "",
    }


def cleanup(client: Client, hosts: list[int], vids: list[int], bds: int, job: int) -> None:
    client.ok("one.backupjob.delete", job)
    for vid in vids:
        client.ok("one.vm.action", "terminate-hard", vid)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pool = client.xml("one.vmpool.info", -2, min(vids), max(vids), -1)
        if not pool.findall("VM"):
            break
        time.sleep(0.5)
    for image in client.xml("one.datastore.info", bds).findall("IMAGES/ID"):
        try:
            client.ok("one.image.delete", int(image.text or -1), True)
        except RuntimeError:
            pass
    for hid in hosts:
        try:
            client.ok("one.host.delete", hid)
        except RuntimeError:
            pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--endpoint", default="http://127.0.0.1:2633/RPC2")
    parser.add_argument("--session", required=True)
    parser.add_argument("--vms", type=int, default=500)
    parser.add_argument("--hosts", type=int, default=5)
    parser.add_argument("--execution", default="PARALLEL", choices=["PARALLEL", "SEQUENTIAL"])
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--cleanup", action="store_true")
    args = parser.parse_args()
    client = Client(args.endpoint, args.session)
    max_backups = config_int(client, "MAX_BACKUPS", 5)
    max_host = config_int(client, "MAX_BACKUPS_HOST", 2)
    timer = config_int(client, "MANAGER_TIMER", 15)
    t0 = time.monotonic()
    hosts, vids, bds = setup(client, args.vms, args.hosts)
    setup_s = time.monotonic() - t0
    result = run(client, vids, bds, args.execution, args.timeout)
    limit = min(max_backups or args.vms, (max_host or args.vms) * args.hosts)
    result.update(
        max_backups=max_backups,
        max_backups_host=max_host,
        manager_timer=timer,
        hosts=args.hosts,
        limit_respected=result["peak_concurrent"] <= limit,
        setup_s=round(setup_s, 1),
    )
    if args.cleanup:
        cleanup(client, hosts, vids, bds, result["job"])
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['updated']}/{result['vms']} VM backups ({result['errors']} errors) in "
            f"{result['elapsed_s']} s: {result['backups_per_minute']} backups/minute"
        )
        print(
            f"peak concurrent backups {result['peak_concurrent']} "
            f"(MAX_BACKUPS {max_backups}, MAX_BACKUPS_HOST {max_host} x {args.hosts} hosts: "
            f"{'respected' if result['limit_respected'] else 'EXCEEDED'}); "
            f"MANAGER_TIMER {timer} s; setup {result['setup_s']} s"
        )
    return 0 if result["limit_respected"] and result["updated"] == result["vms"] else 1


if __name__ == "__main__":
    sys.exit(main())
