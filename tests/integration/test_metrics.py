"""``/metrics`` of a real ``oned -f`` with METRICS on a free port: pyone calls, a host
monitored by the dummy IM and a VM deployed by the dummy drivers show in the exporter's
families and in the daemon's own counters, parsed with prometheus_client's parser; scrapes
run concurrently with a burst of calls."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pyone
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import Daemon, MakeDaemon, free_port

pytestmark = pytest.mark.slow


def scrape(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as reply:
        assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = reply.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams: dict[str, Any], name: str, **labels: str) -> float | None:
    for sample in (s for f in fams.values() for s in f.samples):
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return float(sample.value)
    return None


def wait_metric(port: int, name: str, want: float, secs: float = 30, **labels: str) -> None:
    deadline = time.monotonic() + secs
    while True:
        got = value(scrape(port), name, **labels)
        if got == want:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}{labels} is {got}, not {want}")
        time.sleep(0.2)


def test_metrics_of_a_real_daemon(make_daemon: MakeDaemon, tmp_path: Any) -> None:
    """Exporter families and the daemon's instruments through HTTP, end to end."""
    port = free_port()
    daemon: Daemon = make_daemon(
        tmp_path / "one",
        extra_conf=f'METRICS = [ LISTEN_ADDRESS = "127.0.0.1", PORT = {port} ]',
    )
    daemon.start()
    one = pyone.OneServer(daemon.url, session=daemon.session, timeout=30)
    one.datastore.update(0, 'TM_MAD="dummy"', 1)
    hid = one.host.allocate("host00", "dummy", "dummy", -1)
    vid = one.vm.allocate('NAME="web"\nCPU="0.5"\nVCPU="2"\nMEMORY="256"', False)
    with pytest.raises(pyone.OneNoExistsException):
        one.vm.info(999)

    wait_metric(port, "opennebula_host_state", 2, one_host_id=str(hid))
    one.vm.deploy(vid, hid)
    wait_metric(port, "opennebula_vm_lcm_state", 3, one_vm_id=str(vid))
    fams = scrape(port)
    assert value(fams, "opennebula_vm_state", one_vm_id=str(vid)) == 3
    assert value(fams, "opennebula_vm_host_id", one_vm_id=str(vid)) == hid
    assert value(fams, "opennebula_vm_cpu_vcpus", one_vm_id=str(vid)) == 2
    assert value(fams, "opennebula_vm_mem_total_bytes", one_vm_id=str(vid)) == 256 * 2**20
    assert value(fams, "opennebula_host_vms", one_host_id=str(hid)) == 1
    assert value(fams, "opennebula_host_cpu_usage_ratio", one_host_id=str(hid)) == 50
    assert value(fams, "opennebula_vm_total") == 1
    assert value(fams, "opennebula_datastore_total") == 3
    assert value(fams, "opennebula_oned_state") == 1
    assert value(fams, "opennebula_scheduler_state") == 1
    calls = "oned_api_calls_total"
    assert value(fams, calls, method="one.vm.allocate", result="success") == 1
    assert value(fams, calls, method="one.vm.info", result="no_exists") == 1
    assert value(fams, "oned_api_call_duration_seconds_count", method="one.host.allocate") == 1
    assert (value(fams, "oned_db_transaction_duration_seconds_count") or 0) > 0
    assert (value(fams, "oned_monitoring_reports_total", type="SYSTEM_HOST") or 0) >= 1
    assert value(fams, "oned_driver_up", family="VMM", driver="dummy") == 1
    assert value(fams, "oned_driver_actions_in_flight", family="VMM", driver="dummy") == 0
    assert value(fams, "oned_hooks_pending") == 0

    # Concurrent scrapes during a burst of calls: every scrape parses, counts only grow.
    errors: list[BaseException] = []
    seen: list[float] = []

    def burst() -> None:
        client = pyone.OneServer(daemon.url, session=daemon.session, timeout=30)
        try:
            for _ in range(100):
                client.user.info(0)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def scraper() -> None:
        try:
            for _ in range(10):
                got = value(scrape(port), calls, method="one.user.info", result="success")
                seen.append(got or 0)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=burst) for _ in range(4)]
    threads += [threading.Thread(target=scraper) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert len(seen) == 20
    assert value(scrape(port), calls, method="one.user.info", result="success") == 400
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/nope", timeout=10)
