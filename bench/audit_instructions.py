"""``bench/api.py --compare-audit --instructions N``: what the audit trail costs the daemon,
in instructions per call, counted by callgrind (valgrind): the figure that a busy or
virtual machine cannot distort (two identical runs differ by about 0.1%, where calls/s
and CPU time per call differ by several percent on a 2-core VM).

For each method and AUDIT MODE (off, writes, all) a local ``oned -f`` from this checkout
runs under ``valgrind --tool=callgrind --instr-atstart=no``; after a warm-up, counting is
switched on (``callgrind_control -i on``) for N calls from one keep-alive client and off
again, and the daemon's count is divided by N. Only the daemon is counted, not its
children (the audit scribe, drivers): ``--compare-audit`` prints the scribe's CPU time.
Every mode runs with ``WRITE_DELAY = 2``, so that a batch holds about as many records
under valgrind (some 40 times slower) as in 50 ms at full speed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import xmlrpc.client
from pathlib import Path
from typing import Any

from api import AUDIT_MODES, AuditedOned, OneClient

WARM_UP = 200


def count_audit_instructions(args: argparse.Namespace) -> int:
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        print("--instructions needs valgrind (apt install valgrind)")
        return 2
    password = args.session.split(":", 1)[1]
    header = f"{'method':<18} {'audit':>7} {'instructions/call':>18} {'vs off':>7}"
    print(header)
    print("-" * len(header), flush=True)
    for method in args.method_list:
        counts = {mode: count(method, mode, args.instructions, password) for mode in AUDIT_MODES}
        for mode, n in counts.items():
            print(f"{method:<18} {mode:>7} {n:>18,.0f} {(n / counts['off'] - 1) * 100:>+6.1f}%",
                  flush=True)  # fmt: skip
    print("instructions the daemon ran per call (callgrind; its children not counted)")
    return 0


def count(method: str, mode: str, calls: int, password: str) -> float:
    """The daemon's instructions per ``method`` call in AUDIT MODE ``mode``."""
    out = Path(f"/tmp/bench-callgrind-{method}-{mode}.out")
    out.unlink(missing_ok=True)
    wrapper = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
               f"--callgrind-out-file={out}"]  # fmt: skip
    daemon = AuditedOned(password, mode, 'WRITE_DELAY = "2"', wrapper, start_timeout=600)
    try:
        session = f"oneadmin:{password}"
        client = OneClient(daemon.endpoint, session)
        client.call("one.user.allocate", "benchuser0000", "pw", "", [])
        target = client.bench_users()["benchuser0000"]
        params: dict[str, tuple[Any, ...]] = {
            "user.info": (session, target),
            "userpool.info": (session,),
            "system.version": (session,),
            "user.update": (session, target, 'BENCH="1"', 1),
        }
        proxy = xmlrpc.client.ServerProxy(daemon.endpoint.url)
        call = getattr(proxy, f"one.{method}")
        for _ in range(WARM_UP):
            call(*params[method])
        control = ["callgrind_control", "-i"]
        subprocess.run([*control, "on", str(daemon.proc.pid)], check=True, capture_output=True)
        for _ in range(calls):
            call(*params[method])
        subprocess.run([*control, "off", str(daemon.proc.pid)], check=True, capture_output=True)
    finally:
        daemon.stop(timeout=300)  # callgrind writes its counts as oned exits
    totals = [line for line in out.read_text().splitlines() if line.startswith("totals:")]
    out.unlink(missing_ok=True)
    return int(totals[0].split()[1]) / calls
