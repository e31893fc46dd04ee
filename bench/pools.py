#!/usr/bin/env python3
"""Pool listings with N objects per family: one line per family's pool info.

Usage::

    bench/pools.py --endpoint http://127.0.0.1:2633/RPC2 --session oneadmin:PASSWORD \
        [--objects 1000] [--duration 5] [--clients 1] [--families vdc,vmgroup,...] [--cleanup]

For each family it makes sure ``--objects`` objects named ``benchpool-<family>-NNNN`` exist
(created with the family's plain ``allocate``, so it runs unchanged against OpenNebula's
``oned``), then measures the family's pool info call (calls/s, p50/p99) with the same
multi-process raw-HTTP load generator as ``bench/api.py``. Families whose allocation needs
infrastructure this endpoint may lack (images need an image datastore driver, markets a
reachable market driver) are opt-in with ``--families``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import xml.etree.ElementTree as ET
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from api import Endpoint, OneClient, default_session, measure

PREFIX = "benchpool"


@dataclass(frozen=True)
class PoolFamily:
    name: str
    #: allocate method and its arguments for the object called ``n``
    allocate: str
    args: Callable[[str], tuple[Any, ...]]
    #: pool info method, its arguments, the element of each object, and the delete method
    pool: str
    pool_args: tuple[Any, ...]
    element: str
    delete: str


def _ar(name: str) -> str:
    return f'NAME="{name}"\nVN_MAD="dummy"\nBRIDGE="br0"\nAR=[TYPE="ETHER", SIZE="2"]'


FAMILIES: dict[str, PoolFamily] = {
    f.name: f
    for f in (
        PoolFamily(
            "user",
            "one.user.allocate",
            lambda n: (n, "pw", "", []),
            "one.userpool.info",
            (),
            "USER",
            "one.user.delete",
        ),
        PoolFamily(
            "group",
            "one.group.allocate",
            lambda n: (n,),
            "one.grouppool.info",
            (),
            "GROUP",
            "one.group.delete",
        ),
        PoolFamily(
            "cluster",
            "one.cluster.allocate",
            lambda n: (n,),
            "one.clusterpool.info",
            (),
            "CLUSTER",
            "one.cluster.delete",
        ),
        PoolFamily(
            "host",
            "one.host.allocate",
            lambda n: (n, "dummy", "dummy", -1),
            "one.hostpool.info",
            (),
            "HOST",
            "one.host.delete",
        ),
        PoolFamily(
            "vnet",
            "one.vn.allocate",
            lambda n: (_ar(n), -1),
            "one.vnpool.info",
            (-2, -1, -1),
            "VNET",
            "one.vn.delete",
        ),
        PoolFamily(
            "template",
            "one.template.allocate",
            lambda n: (f'NAME="{n}"\nCPU="1"\nMEMORY="64"',),
            "one.templatepool.info",
            (-2, -1, -1),
            "VMTEMPLATE",
            "one.template.delete",
        ),
        PoolFamily(
            "vntemplate",
            "one.vntemplate.allocate",
            lambda n: (f'NAME="{n}"\nVN_MAD="dummy"',),
            "one.vntemplatepool.info",
            (-2, -1, -1),
            "VNTEMPLATE",
            "one.vntemplate.delete",
        ),
        PoolFamily(
            "secgroup",
            "one.secgroup.allocate",
            lambda n: (f'NAME="{n}"\nRULE=[PROTOCOL="TCP", RULE_TYPE="inbound"]',),
            "one.secgrouppool.info",
            (-2, -1, -1),
            "SECURITY_GROUP",
            "one.secgroup.delete",
        ),
        PoolFamily(
            "document",
            "one.document.allocate",
            lambda n: (f'NAME="{n}"', 100),
            "one.documentpool.info",
            (-2, -1, -1, 100),
            "DOCUMENT",
            "one.document.delete",
        ),
        PoolFamily(
            "vdc",
            "one.vdc.allocate",
            lambda n: (f'NAME="{n}"',),
            "one.vdcpool.info",
            (),
            "VDC",
            "one.vdc.delete",
        ),
        PoolFamily(
            "vmgroup",
            "one.vmgroup.allocate",
            lambda n: (f'NAME="{n}"\nROLE=[NAME="a"]',),
            "one.vmgrouppool.info",
            (-2, -1, -1),
            "VM_GROUP",
            "one.vmgroup.delete",
        ),
        PoolFamily(
            "vrouter",
            "one.vrouter.allocate",
            lambda n: (f'NAME="{n}"',),
            "one.vrouterpool.info",
            (-2, -1, -1),
            "VROUTER",
            "one.vrouter.delete",
        ),
        PoolFamily(
            "backupjob",
            "one.backupjob.allocate",
            lambda n: (f'NAME="{n}"',),
            "one.backupjobpool.info",
            (-2, -1, -1),
            "BACKUPJOB",
            "one.backupjob.delete",
        ),
        PoolFamily(
            "hook",
            "one.hook.allocate",
            lambda n: (f'NAME="{n}"\nTYPE="api"\nCOMMAND="true"\nCALL="one.user.allocate"',),
            "one.hookpool.info",
            (-2, -1, -1),
            "HOOK",
            "one.hook.delete",
        ),
        PoolFamily(
            "datastore",
            "one.datastore.allocate",
            lambda n: (f'NAME="{n}"\nDS_MAD="dummy"\nTM_MAD="dummy"', -1),
            "one.datastorepool.info",
            (),
            "DATASTORE",
            "one.datastore.delete",
        ),
        PoolFamily(
            "market",
            "one.market.allocate",
            lambda n: (
                f'NAME="{n}"\nMARKET_MAD="http"\nBASE_URL="http://127.0.0.1:9/"\nPUBLIC_DIR="/tmp"',
            ),
            "one.marketpool.info",
            (),
            "MARKETPLACE",
            "one.market.delete",
        ),
    )
}
DEFAULT_FAMILIES = [f for f in FAMILIES if f not in ("datastore", "market")]


def existing(one: OneClient, family: PoolFamily) -> dict[str, int]:
    root = ET.fromstring(one.call(family.pool, *family.pool_args))
    found: dict[str, int] = {}
    for obj in root.iter(family.element):
        name = obj.findtext("NAME") or ""
        if name.startswith(f"{PREFIX}-{family.name}-"):
            found[name] = int(obj.findtext("ID") or "-1")
    return found


def ensure(one: OneClient, family: PoolFamily, count: int) -> dict[str, int]:
    have = existing(one, family)
    wanted = [f"{PREFIX}-{family.name}-{i:04d}" for i in range(count)]
    missing = [n for n in wanted if n not in have]
    t0 = time.monotonic()
    failures = created = 0
    for name in missing:
        try:
            have[name] = int(one.call(family.allocate, *family.args(name)))
            created += 1
        except (RuntimeError, xmlrpc.client.Error, OSError) as exc:
            failures += 1
            if failures == 1:
                print(f"{family.name}: allocate failed: {exc}", file=sys.stderr)
            if failures >= 10:
                break
    if missing:
        print(
            f"{family.name}: created {created} in {time.monotonic() - t0:.1f} s"
            + (f" ({failures} failed)" if failures else ""),
            flush=True,
        )
    return have


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Pool info latency with N objects per family.")
    ap.add_argument("--endpoint", default="http://127.0.0.1:2633/RPC2")
    ap.add_argument("--session", help="user:password (default: $ONE_AUTH or ~/.one/one_auth)")
    ap.add_argument("--objects", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--processes", type=int, default=2 * (os.cpu_count() or 1))
    ap.add_argument(
        "--families",
        default=",".join(DEFAULT_FAMILIES),
        help=f"comma list of {', '.join(FAMILIES)}",
    )
    ap.add_argument("--cleanup", action="store_true", help="delete the benchpool-* objects")
    args = ap.parse_args(argv)
    session = args.session or default_session()
    if not session:
        ap.error("--session is required (no $ONE_AUTH or ~/.one/one_auth)")
    names = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        ap.error(f"unknown families {unknown}")
    endpoint = Endpoint.parse(args.endpoint)
    one = OneClient(endpoint, session)
    print(
        f"{'family':<11} {'objects':>7} {'method':<26} {'calls/s':>9} {'p50 ms':>9} {'p99 ms':>9}"
    )
    made: dict[str, dict[str, int]] = {}
    for name in names:
        family = FAMILIES[name]
        try:
            made[name] = ensure(one, family, args.objects)
        except (RuntimeError, xmlrpc.client.Error, OSError) as exc:
            print(f"{name:<11} unavailable: {exc}", flush=True)
            continue
        m = measure(
            endpoint,
            family.pool,
            (session, *family.pool_args),
            args.clients,
            args.processes,
            args.duration,
        )
        error = f"  ({m.errors} errors: {m.first_error})" if m.errors else ""
        print(
            f"{name:<11} {len(made[name]):>7} {family.pool:<26} {m.calls_per_s:>9.1f} "
            f"{m.p50_ms:>9.2f} {m.p99_ms:>9.2f}{error}",
            flush=True,
        )
    if args.cleanup:
        for name, objs in made.items():
            for oid in sorted(objs.values(), reverse=True):
                try:
                    one.call(FAMILIES[name].delete, oid)
                except (RuntimeError, xmlrpc.client.Error, OSError):
                    pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
