"""What only the daemon sees: API calls by method and result, latency histograms, calls in
flight, driver counters, DB transactions, monitoring reports, hooks; the endpoint's
resource and the METRICS setting."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

import oned.metrics.exporter
import oned.pools.vm
from oned.config import ConfigError
from oned.drivers.families import Family
from oned.drivers.message import DriverMessage
from oned.managers.hook.manager import Pending
from oned.managers.information.protocol import HostRecord, Reports
from oned.metrics.http import MetricsResource, Scrape
from oned.metrics.instruments import DaemonMetrics
from oned.metrics.services import ServiceStates
from oned.metrics.settings import MetricsSettings
from oned.testing.rpc import OnedHarness, result_of


def parse(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams: dict[str, Any], name: str, **labels: str) -> float:
    """A sample by its own name (the parser names counter families without _total)."""
    for sample in (s for f in fams.values() for s in f.samples):
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return float(sample.value)
    raise AssertionError(f"no sample {name} {labels}")


@dataclass
class FakeDriver:
    name: str
    family: Family
    is_running: bool = True
    restarts: int = 0
    timed_out: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    pending: int = 0

    def in_flight(self) -> int:
        return self.pending


class FakeDrivers:
    def __init__(self, *drivers: FakeDriver) -> None:
        self._drivers = list(drivers)

    def drivers(self, family: Family | None = None) -> list[FakeDriver]:
        return [d for d in self._drivers if family is None or d.family is family]


class InstrumentTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = OnedHarness()
        self.addCleanup(self.h.close)
        methods = self.h.manager.registry.methods
        self.ticks = iter(range(1000))
        self.metrics = DaemonMetrics(
            self.h.core, lambda n: n in methods, timer=lambda: next(self.ticks) * 0.001
        )
        self.h.manager.metrics = self.metrics
        self.h.db.on_transaction = self.metrics.transaction

    def render(self) -> dict[str, Any]:
        return parse(self.metrics.render().decode())

    def test_calls_by_method_and_result(self) -> None:
        """Successes, oned's failures by ErrorCode name, authentication failures and
        xmlrpc-c faults; unknown method names do not become labels."""
        self.h.ok("one.user.info", 0)
        self.h.ok("one.user.info", 0)
        self.h.call("one.user.info", 999)
        self.h.call("one.user.info", 0, session="oneadmin:wrong")
        with self.assertRaises(Exception):
            self.h.raw("one.no.such.method", "x")
        fams = self.render()
        name = "oned_api_calls_total"
        self.assertEqual(value(fams, name, method="one.user.info", result="success"), 2)
        self.assertEqual(value(fams, name, method="one.user.info", result="no_exists"), 1)
        self.assertEqual(value(fams, name, method="one.user.info", result="authentication"), 1)
        self.assertEqual(value(fams, name, method="unknown", result="fault"), 1)
        self.assertNotIn(
            "one.no.such.method", {s.labels.get("method") for s in fams["oned_api_calls"].samples}
        )

    def test_latency_histogram_and_in_flight(self) -> None:
        """Each call is observed once in its method's histogram; none is left in flight."""
        self.h.ok("one.user.info", 0)
        self.h.ok("one.userpool.info")
        fams = self.render()
        hist = "oned_api_call_duration_seconds"
        self.assertEqual(value(fams, hist + "_count", method="one.user.info"), 1)
        self.assertEqual(value(fams, hist + "_count", method="one.userpool.info"), 1)
        self.assertEqual(value(fams, hist + "_bucket", method="one.user.info", le="+Inf"), 1)
        self.assertAlmostEqual(value(fams, hist + "_sum", method="one.user.info"), 0.001)
        self.assertEqual(value(fams, "oned_api_calls_in_flight"), 0)

    def test_a_call_in_flight_is_counted(self) -> None:
        """While a handler waits, the call counts as in flight."""
        started = self.metrics.call_started()
        self.assertEqual(value(self.render(), "oned_api_calls_in_flight"), 1)
        self.metrics.call_done("one.user.info", [True, "", 0], started)
        self.assertEqual(value(self.render(), "oned_api_calls_in_flight"), 0)

    def test_db_transactions_are_timed(self) -> None:
        """Every committed unit is one observation of the DB histogram."""
        before = value(self.render(), "oned_db_transaction_duration_seconds_count")
        self.h.ok("one.user.allocate", "alice", "pw", "")
        after = value(self.render(), "oned_db_transaction_duration_seconds_count")
        self.assertGreaterEqual(after, before + 1)

    def test_driver_counters_by_family_and_driver(self) -> None:
        """In flight, timed out, failed, restarts and up, per driver."""
        vmm = FakeDriver("kvm", Family.VMM, restarts=2, timed_out=1, pending=3)
        vmm.failed.update({"DEPLOY": 4, "SHUTDOWN": 1})
        down = FakeDriver("transfer_exe", Family.TM, is_running=False)
        self.metrics.drivers = FakeDrivers(vmm, down)
        fams = self.render()
        lab = {"family": "VMM", "driver": "kvm"}
        self.assertEqual(value(fams, "oned_driver_actions_in_flight", **lab), 3)
        self.assertEqual(value(fams, "oned_driver_actions_timed_out_total", **lab), 1)
        self.assertEqual(value(fams, "oned_driver_actions_failed_total", **lab), 5)
        self.assertEqual(value(fams, "oned_driver_restarts_total", **lab), 2)
        self.assertEqual(value(fams, "oned_driver_up", family="TM", driver="transfer_exe"), 0)

    def test_hooks_pending_and_failed(self) -> None:
        """Pending: executions awaited in the hook manager's queue; failed: EXECUTE
        FAILURE results of HM_MAD."""
        fams = self.render()
        self.assertEqual(value(fams, "oned_hooks_pending"), 0)
        self.assertEqual(value(fams, "oned_hooks_failed_total"), 0)
        self.h.core.hook_manager.pending = {0: Pending("m", {1, 2}), 1: Pending("n", {3})}
        hook = FakeDriver("hook_exe", Family.HOOK)
        hook.failed["EXECUTE"] = 2
        self.metrics.drivers = FakeDrivers(hook)
        fams = self.render()
        self.assertEqual(value(fams, "oned_hooks_pending"), 3)
        self.assertEqual(value(fams, "oned_hooks_failed_total"), 2)

    def test_monitoring_reports_absorbed_by_type(self) -> None:
        """Reports taken by the information manager, by type; the dropped ones apart."""

        class Batch:
            def queue_system(self, *a: Any) -> None: ...
            def queue_error(self, *a: Any) -> None: ...
            def queue_sample(self, *a: Any) -> None: ...

        reports = Reports(Batch(), lambda: 0.0, lambda _h: None)  # type: ignore[arg-type]
        reports.hosts[0] = HostRecord()
        reports.dispatch(DriverMessage("BEACON_HOST", "SUCCESS", 0, "", 0))
        reports.dispatch(DriverMessage("BEACON_HOST", "SUCCESS", 0, "", 0))
        reports.dispatch(DriverMessage("NOT_A_REPORT", "SUCCESS", 0, "", 0))

        class InM:
            pass

        inm = InM()
        inm.reports = reports  # type: ignore[attr-defined]
        self.h.core.information_manager = inm  # type: ignore[assignment]
        fams = self.render()
        self.assertEqual(value(fams, "oned_monitoring_reports_total", type="BEACON_HOST"), 2)
        self.assertEqual(value(fams, "oned_monitoring_reports_ignored_total"), 1)

    def test_registries_are_per_daemon(self) -> None:
        """Two daemons in one process keep separate counts."""
        other = DaemonMetrics(self.h.core, lambda _n: True)
        self.h.ok("one.user.info", 0)
        fams = parse(other.render().decode())
        self.assertEqual(fams["oned_api_calls"].samples, [])


class EndpointTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = OnedHarness()
        self.addCleanup(self.h.close)
        metrics = DaemonMetrics(self.h.core, lambda _n: True)
        self.resource = MetricsResource(Scrape(self.h.core, metrics, self.h.clock, None, "f"))

    def get(self, path: bytes) -> tuple[int, bytes, DummyRequest]:
        request = DummyRequest([])
        request.path = path
        body = self.resource.render_GET(request)
        if body == NOT_DONE_YET:
            for _ in range(100):
                if request.finished:
                    break
                self.h.clock.advance(0)
            self.assertTrue(request.finished)
            body = b"".join(request.written)
        assert isinstance(body, bytes)
        return request.responseCode or 200, body, request

    def test_metrics_and_index(self) -> None:
        """GET /metrics is the text format; / the exporter's page; anything else 404."""
        code, body, request = self.get(b"/metrics")
        self.assertEqual(code, 200)
        self.assertIn(
            b"text/plain; version=0.0.4", request.responseHeaders.getRawHeaders(b"content-type")[0]
        )
        self.assertIn("opennebula_vm_total", parse(body.decode()))
        self.assertIn(b"OpenNebula Exporter", self.get(b"/")[1])
        self.assertEqual(self.get(b"/nope")[0], 404)

    def test_vms_are_rendered_a_block_at_a_time(self) -> None:
        """A scrape that must render many VMs gives the reactor back between blocks,
        and its answer has them all."""
        self.patch(oned.metrics.exporter, "VM_BLOCK", 1)
        self.patch(oned.pools.vm, "BLOCK", 1)
        for i in range(3):
            self.h.ok("one.vm.allocate", f'NAME="v{i}"\nCPU="1"\nMEMORY="64"', True)
        scrape = self.resource.scrape
        pauses: list[int] = []
        pause = scrape._pause
        self.patch(scrape, "_pause", lambda: (pauses.append(1), pause())[1])
        request = DummyRequest([])
        request.path = b"/metrics"
        self.assertEqual(self.resource.render_GET(request), NOT_DONE_YET)
        self.assertFalse(request.finished)
        self.h.clock.advance(0)
        self.assertTrue(request.finished)
        self.assertEqual(len(pauses), 3)
        fams = parse(b"".join(request.written).decode())
        self.assertEqual(value(fams, "opennebula_vm_total"), 3)

    def test_a_client_gone_mid_scrape_is_not_written_to(self) -> None:
        """The scraper disconnecting before the answer is ready costs nothing else."""
        self.h.ok("one.vm.allocate", 'NAME="v"\nCPU="1"\nMEMORY="64"', True)
        request = DummyRequest([])
        request.path = b"/metrics"
        self.resource.render_GET(request)
        request.processingFailed(Failure(ConnectionDone("gone")))  # fires notifyFinish
        self.h.clock.advance(0)
        self.assertEqual(request.written, [])


class ServiceStateTests(SynchronousTestCase):
    def test_systemd_units_are_read_in_the_background(self) -> None:
        """systemctl runs at most every 15 s; its answer shows from the next scrape; the
        hook manager is up with either unit."""
        h = OnedHarness()
        self.addCleanup(h.close)
        clock = Clock()
        calls: list[list[str]] = []
        answer: Deferred[tuple[bytes, bytes, int]] = Deferred()

        def runner(args: list[str]) -> Deferred[tuple[bytes, bytes, int]]:
            calls.append(args)
            return answer if len(calls) == 1 else succeed((b"", b"", 0))

        states = ServiceStates(h.core, None, clock, "f", runner)
        first = parse("".join(states.render()))
        self.assertEqual(value(first, "opennebula_hem_state"), 0)
        units = calls[0][4:]
        self.assertIn("oned-hem.service", units)
        replies = ["inactive"] * len(units)
        replies[units.index("oned-hem.service")] = "active"
        answer.callback(("\n\n".join(replies).encode() + b"\n", b"", 0))
        states.render()
        self.assertEqual(len(calls), 1)
        fams = parse("".join(states.render()))
        self.assertEqual(value(fams, "opennebula_hem_state"), 1)
        self.assertEqual(value(fams, "opennebula_flow_state"), 0)
        clock.advance(15)
        states.render()
        self.assertEqual(len(calls), 2)


class SettingsTests(SynchronousTestCase):
    def test_off_unless_configured(self) -> None:
        """No METRICS section: no endpoint; the section alone: 127.0.0.1:9925."""
        h = OnedHarness()
        self.addCleanup(h.close)
        self.assertIsNone(h.config.metrics)
        self.assertEqual(MetricsSettings.from_vector({}), MetricsSettings("127.0.0.1", 9925))
        self.assertEqual(
            MetricsSettings.from_vector({"LISTEN_ADDRESS": "0.0.0.0", "PORT": "9100"}),
            MetricsSettings("0.0.0.0", 9100),
        )

    def test_bad_port_is_a_config_error(self) -> None:
        """A PORT that is not a port stops the daemon with a message naming it."""
        with self.assertRaises(ConfigError) as caught:
            OnedHarness('METRICS = [ PORT = "many" ]')
        self.assertIn("METRICS PORT", str(caught.exception))
        self.assertRaises(ValueError, MetricsSettings.from_vector, {"PORT": "70000"})


__all__ = ["result_of"]
