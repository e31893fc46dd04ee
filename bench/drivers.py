"""Driver round-trip benchmark: our DriverManager driving our one_vmm_dummy.

Keeps 1, then 100, DEPLOY requests in flight (one host per slot, so the dummy's
per-host serialisation does not hide the pipe) and prints replies/s, p50/p99
request-to-reply latency, the manager's CPU time per message (this process; the
driver is a child), how late a 10 ms reactor timer ran meanwhile, and, when
``--endpoint`` answers, the latency of ``one.system.version`` calls made during the
100-in-flight run.

    python bench/drivers.py [--endpoint http://127.0.0.1:2633/RPC2 --session u:p]
"""

from __future__ import annotations

import argparse
import base64
import statistics
import sys
import tempfile
import threading
import time
import xmlrpc.client
from pathlib import Path
from typing import Any

from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall, deferLater

from oned.config import parse_config_text
from oned.drivers.families import Family
from oned.drivers.manager import DriverManager
from oned.drivers.message import DriverMessage
from oned.locations import Locations

CONF = 'VM_MAD = [ NAME = "dummy", EXECUTABLE = "one_vmm_dummy", TYPE = "xml" ]\n'


def payload(slot: int) -> str:
    doc = (
        f"<VMM_DRIVER_ACTION_DATA><HOST>host{slot}</HOST><MIGR_HOST/><DEPLOY_ID/>"
        f"<LOCAL_DEPLOYMENT_FILE>/var/lib/one/vms/{slot}/deployment.0</LOCAL_DEPLOYMENT_FILE>"
        f"<VM><ID>{slot}</ID><NAME>bench-{slot}</NAME><TEMPLATE><CPU>1</CPU>"
        "<MEMORY>128</MEMORY></TEMPLATE></VM><DATASTORE><ID>0</ID></DATASTORE>"
        "</VMM_DRIVER_ACTION_DATA>"
    )
    return base64.b64encode(doc.encode()).decode()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Phase:
    """Keep ``inflight`` DEPLOYs outstanding for ``duration`` seconds."""

    def __init__(self, manager: DriverManager, inflight: int, duration: float) -> None:
        self.manager = manager
        self.inflight = inflight
        self.duration = duration
        self.latencies: list[float] = []
        self.sent: dict[int, float] = {}
        self.payloads = [payload(i) for i in range(inflight)]
        self.stop_at = 0.0
        self.done: Deferred[None] = Deferred()
        self.outstanding = 0
        self.failures = 0

    def handle(self, msg: DriverMessage) -> None:
        now = time.perf_counter()
        self.latencies.append(now - self.sent.pop(msg.oid))
        self.outstanding -= 1
        if not msg.success:
            self.failures += 1
        if now < self.stop_at:
            self.send(msg.oid)
        elif self.outstanding == 0 and not self.done.called:
            self.done.callback(None)

    def send(self, slot: int) -> None:
        self.sent[slot] = time.perf_counter()
        self.outstanding += 1
        self.manager.send(Family.VMM, "DEPLOY", slot, self.payloads[slot], name="dummy")

    async def run(self) -> dict[str, float]:
        self.manager.register_action(Family.VMM, "DEPLOY", self.handle)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        self.stop_at = wall0 + self.duration
        for slot in range(self.inflight):
            self.send(slot)
        await self.done
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        count = len(self.latencies)
        return {
            "replies": count,
            "seconds": wall,
            "rate": count / wall,
            "p50_ms": pct(self.latencies, 0.50) * 1000,
            "p99_ms": pct(self.latencies, 0.99) * 1000,
            "cpu_us": cpu / max(1, count) * 1e6 / 2,  # a request and a reply per round trip
            "failures": self.failures,
        }


class TimerLag:
    """How late a 10 ms LoopingCall fires: the reactor's responsiveness."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.lags: list[float] = []
        self._last = 0.0
        self._loop = LoopingCall(self._tick)
        self._loop.clock = clock

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last:
            self.lags.append(max(0.0, now - self._last - 0.01))
        self._last = now

    def start(self) -> None:
        self._loop.start(0.01, now=False)

    def stop(self) -> None:
        self._loop.stop()


class ApiProbe(threading.Thread):
    """Calls one.system.version every 50 ms from a thread while the load runs."""

    def __init__(self, endpoint: str, session: str) -> None:
        super().__init__(daemon=True)
        self.proxy = xmlrpc.client.ServerProxy(endpoint)
        self.session = session
        self.latencies: list[float] = []
        self.errors = 0
        self.running = threading.Event()
        self.running.set()

    def reachable(self) -> bool:
        try:
            self.proxy.one.system.version(self.session)
        except Exception:
            return False
        return True

    def run(self) -> None:
        while self.running.is_set():
            start = time.perf_counter()
            try:
                self.proxy.one.system.version(self.session)
                self.latencies.append(time.perf_counter() - start)
            except Exception:
                self.errors += 1
            time.sleep(0.05)


async def bench(args: argparse.Namespace, reactor: Any) -> int:
    root = Path(tempfile.mkdtemp(prefix="oned-bench-drivers-"))
    config = parse_config_text(CONF, Locations.from_env({"ONE_LOCATION": str(root)}))
    manager = DriverManager(config, reactor)
    await manager.start()
    probe = None
    if args.endpoint:
        candidate = ApiProbe(args.endpoint, args.session)
        if candidate.reachable():
            probe = candidate
        else:
            print(f"api: {args.endpoint} not reachable, no API latency measured")
    try:
        await Phase(manager, 1, 0.5).run()  # warm-up
        results = []
        for inflight in (1, 100):
            lag = TimerLag(reactor)
            if inflight == 100 and probe is not None:
                probe.start()
            lag.start()
            res = await Phase(manager, inflight, args.duration).run()
            lag.stop()
            res["lag_p99_ms"] = pct(lag.lags, 0.99) * 1000
            res["lag_max_ms"] = max(lag.lags, default=0.0) * 1000
            results.append((inflight, res))
            await deferLater(reactor, 0.2, lambda: None)
        if probe is not None:
            probe.running.clear()
        for inflight, res in results:
            print(
                f"in_flight={inflight:<3} replies={res['replies']:<7.0f} "
                f"throughput={res['rate']:,.0f} msgs/s  p50={res['p50_ms']:.3f} ms  "
                f"p99={res['p99_ms']:.3f} ms  manager_cpu={res['cpu_us']:.1f} us/msg  "
                f"reactor_timer_lag_p99={res['lag_p99_ms']:.2f} ms "
                f"(max {res['lag_max_ms']:.2f} ms)  failures={res['failures']:.0f}"
            )
        if probe is not None:
            lat = probe.latencies
            print(
                f"api one.system.version during 100 in flight: calls={len(lat)} "
                f"errors={probe.errors} p50={pct(lat, 0.5) * 1000:.2f} ms "
                f"p99={pct(lat, 0.99) * 1000:.2f} ms "
                f"mean={statistics.mean(lat) * 1000 if lat else float('nan'):.2f} ms"
            )
        best = results[-1][1]["rate"]
        target = "met" if best >= 10_000 else "NOT met"
        print(f"target >= 10,000 replies/s at 100 in flight: {target} ({best:,.0f})")
    finally:
        await manager.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default="", help="oned XML-RPC URL to probe")
    parser.add_argument("--session", default="oneadmin:oneadmin", help="user:password")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per phase")
    args = parser.parse_args(argv)
    reactor: Any = global_reactor
    status: list[int] = [1]

    async def run() -> None:
        try:
            status[0] = await bench(args, reactor)
        finally:
            reactor.stop()

    reactor.callWhenRunning(lambda: Deferred.fromCoroutine(run()).addErrback(print))
    reactor.run()
    return status[0]


if __name__ == "__main__":
    sys.exit(main())
