"""What only the daemon itself sees, in a prometheus_client registry of its own.

Counted as it happens (the request manager and the database call in):

* ``oned_api_calls_total{method,result}``: every XML-RPC call by method and result
  (``success``, the failure's ErrorCode name in lower case, or ``fault`` for xmlrpc-c
  faults); names not in the registry count as ``method="unknown"`` so that a fuzzer
  cannot grow the label set;
* ``oned_api_call_duration_seconds{method}``: their latency (histogram);
* ``oned_db_transaction_duration_seconds``: each transaction's time on the DB thread.

Read from the managers at scrape time (``_Snapshot``):

* ``oned_api_calls_in_flight``;
* ``oned_driver_up``, ``oned_driver_actions_in_flight``,
  ``oned_driver_actions_timed_out_total``, ``oned_driver_actions_failed_total`` and
  ``oned_driver_restarts_total``, by ``family`` and ``driver``;
* ``oned_monitoring_reports_total{type}`` (reports absorbed) and
  ``oned_monitoring_reports_ignored_total``;
* ``oned_hooks_pending`` (hook executions whose result has not arrived) and
  ``oned_hooks_failed_total`` (``EXECUTE FAILURE`` results from HM_MAD).

A registry per daemon (never prometheus_client's global one), so several daemons and
the unit tests in one process do not collide.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from oned.drivers.families import Family
from oned.errors import ErrorCode

if TYPE_CHECKING:
    from oned.core import Core

#: Seconds: API calls run from a fraction of a millisecond to listings of many seconds.
API_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
DB_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)

_RESULTS = {int(code): code.name.lower() for code in ErrorCode}


class DaemonMetrics:
    """The daemon's own instruments and snapshot collector.

    Args:
        core: Where in-flight hooks and monitoring counters are read.
        known: Whether a method name may be a label value (the registry's names).
        timer: Monotonic seconds (latencies).
    """

    def __init__(
        self,
        core: Core,
        known: Callable[[str], bool],
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.core = core
        self.known = known
        self.timer = timer
        self.drivers: Any = None
        self.in_flight = 0
        # The ``*_created`` series would double every counter and histogram, and nothing
        # else in the process uses prometheus_client (the switch is process-wide).
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=False)
        self.calls = Counter(
            "oned_api_calls",
            "XML-RPC calls served, by method and result",
            ["method", "result"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "oned_api_call_duration_seconds",
            "Time to answer an XML-RPC call, by method",
            ["method"],
            buckets=API_BUCKETS,
            registry=self.registry,
        )
        self.db_latency = Histogram(
            "oned_db_transaction_duration_seconds",
            "Time of each database transaction on the DB thread",
            buckets=DB_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_Snapshot(self))

    # -- the request manager's seam (``RequestManager.metrics``) ---------------------

    def call_started(self) -> float:
        self.in_flight += 1
        return self.timer()

    def call_done(self, method: str, result: list[Any] | None, started: float) -> None:
        """A call ended with ``result`` (the reply array; None when it raised a fault)."""
        self.in_flight -= 1
        if result is None:
            outcome = "fault"
        elif result[0]:
            outcome = "success"
        else:
            outcome = _RESULTS.get(result[2], "error") if len(result) > 2 else "error"
        label = method if self.known(method) else "unknown"
        self.calls.labels(label, outcome).inc()
        self.latency.labels(label).observe(self.timer() - started)

    # -- the database's seam (``Database.on_transaction``, called on the DB thread) ----

    def transaction(self, seconds: float) -> None:
        self.db_latency.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Snapshot(Collector):
    """Gauges and counters read from the managers when scraped."""

    def __init__(self, metrics: DaemonMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        in_flight = GaugeMetricFamily(
            "oned_api_calls_in_flight", "XML-RPC calls being served", value=m.in_flight
        )
        yield in_flight
        yield from self._drivers(m.drivers)
        yield from self._monitoring(m.core)
        yield from self._hooks(m.core, m.drivers)

    @staticmethod
    def _drivers(drivers: Any) -> Iterator[Metric]:
        keys = ["family", "driver"]
        up = GaugeMetricFamily("oned_driver_up", "Whether the driver is running", labels=keys)
        flight = GaugeMetricFamily(
            "oned_driver_actions_in_flight",
            "Driver requests sent and not answered yet",
            labels=keys,
        )
        timed_out = CounterMetricFamily(
            "oned_driver_actions_timed_out",
            "Driver requests that got no reply in time",
            labels=keys,
        )
        failed = CounterMetricFamily(
            "oned_driver_actions_failed",
            "Driver replies with FAILURE (from the driver, or for a timeout or a dead driver)",
            labels=keys,
        )
        restarts = CounterMetricFamily(
            "oned_driver_restarts", "Times the driver was started again", labels=keys
        )
        for driver in drivers.drivers() if drivers is not None else []:
            lab = [driver.family.name, driver.name]
            up.add_metric(lab, int(driver.is_running))
            flight.add_metric(lab, driver.in_flight())
            timed_out.add_metric(lab, getattr(driver, "timed_out", 0))
            failed.add_metric(lab, sum(getattr(driver, "failed", {}).values()))
            restarts.add_metric(lab, driver.restarts)
        yield from (up, flight, timed_out, failed, restarts)

    @staticmethod
    def _monitoring(core: Core) -> Iterator[Metric]:
        absorbed = CounterMetricFamily(
            "oned_monitoring_reports",
            "Monitoring reports taken in, by type (SYSTEM_HOST, MONITOR_HOST, STATE_VM ...)",
            labels=["type"],
        )
        ignored = CounterMetricFamily(
            "oned_monitoring_reports_ignored",
            "Monitoring messages dropped (malformed, unknown type or host, out of order)",
        )
        reports = getattr(core.information_manager, "reports", None)
        for kind, count in sorted(getattr(reports, "absorbed", {}).items()):
            absorbed.add_metric([kind], count)
        ignored.add_metric([], getattr(reports, "ignored", 0))
        yield absorbed
        yield ignored

    @staticmethod
    def _hooks(core: Core, drivers: Any) -> Iterator[Metric]:
        # Seam: a core without a hook manager (or one without ``pending``) shows 0.
        manager = getattr(core, "hook_manager", None)
        pending = getattr(manager, "pending", None) or {}
        waiting = sum(len(getattr(p, "hooks", ())) for p in pending.values())
        yield GaugeMetricFamily(
            "oned_hooks_pending",
            "Hook executions sent to HM_MAD whose result has not arrived",
            value=waiting,
        )
        failed = 0
        for driver in drivers.drivers(Family.HOOK) if drivers is not None else []:
            failed += getattr(driver, "failed", {}).get("EXECUTE", 0)
        yield CounterMetricFamily(
            "oned_hooks_failed", "Hook executions reported failed by HM_MAD", value=failed
        )
