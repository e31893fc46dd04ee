#!/usr/bin/env python3
"""What a Prometheus scrape of ``/metrics`` costs the API, against one ``one.vmpool.info``.

Usage::

    bench/metrics.py [--endpoint http://127.0.0.1:2633/RPC2 --session oneadmin:PASSWORD \
        --metrics http://127.0.0.1:9925/metrics] [--vms 10000] [--clients 4] \
        [--samples 20] [--pid PID]

Without ``--endpoint`` it starts a local ``oned -f`` (temporary ONE_LOCATION, METRICS and
the API on free ports) and stops it at the end. It allocates VMs on hold (one 1 GiB
volatile disk each) until the pool holds ``--vms``, then prints:

* the first scrape (every VM's lines rendered) and the following ones (p50/p99), the
  scrape's size and sample count;
* ``one.vmpool.info`` of the whole pool (p50/p99), answer read to the last byte;
* for a local daemon, its CPU milliseconds per scrape and per ``vmpool.info``: the daemon
  serves both on its one reactor thread, so this is what each costs the API;
* p50/p99 of a small call (``one.user.info``) while another thread keeps a scrape in
  flight, and while it keeps a ``vmpool.info`` in flight.

The scrape has to cost less than one ``vmpool.info`` (issue 11).
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from api import Endpoint, find_listener_pid, percentile
from infra import CpuMeter, RawClient
from lifecycle import allocate_rate

DISK = '\nDISK=[TYPE="fs", SIZE="1024"]'


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalDaemon:
    """A temporary ``oned -f`` with METRICS on a free port."""

    def __init__(self) -> None:
        from oned.locations import packaged_share

        self.root = Path(tempfile.mkdtemp(prefix="bench-metrics-"))
        self.port, self.metrics_port = _free_port(), _free_port()
        conf = (packaged_share() / "etc" / "oned.conf").read_text()
        conf = conf.replace("-p 2101 -l 2102", "-p 0 -l 0")
        conf += f'\nMETRICS = [ LISTEN_ADDRESS = "127.0.0.1", PORT = {self.metrics_port} ]\n'
        (self.root / "etc").mkdir()
        (self.root / "etc" / "oned.conf").write_text(conf)
        (self.root / "one_auth").write_text("oneadmin:bench-pw\n")
        env = dict(os.environ, ONE_LOCATION=str(self.root), ONE_AUTH=str(self.root / "one_auth"))
        env.pop("NOTIFY_SOCKET", None)
        with open(self.root / "stdout.log", "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "oned", "-f", "--port", str(self.port)],
                env=env, cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit((self.root / "stdout.log").read_text()[-2000:])
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.1)
        raise SystemExit("oned did not start")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.root, ignore_errors=True)


class Scraper:
    """GET /metrics over one keep-alive connection."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.path = parts.path or "/metrics"
        self.conn: http.client.HTTPConnection | None = None

    def get(self) -> bytes:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        self.conn.request("GET", self.path)
        reply = self.conn.getresponse()
        data = reply.read()
        if reply.status != 200:
            raise RuntimeError(f"/metrics answered {reply.status}")
        return data


def timed(call: Callable[[], Any], samples: int) -> list[float]:
    out = []
    for _ in range(samples):
        t0 = time.perf_counter()
        call()
        out.append(time.perf_counter() - t0)
    return sorted(out)


def ms(values: list[float]) -> str:
    return (
        f"p50 {percentile(values, 50) * 1000:8.1f} ms  p99 {percentile(values, 99) * 1000:8.1f} ms"
    )


def cpu_ms_per_call(cpu: CpuMeter, call: Callable[[], Any], samples: int) -> float | None:
    before = cpu.cpu()
    for _ in range(samples):
        call()
    after = cpu.cpu()
    if before is None or after is None:
        return None
    return (after - before) * 1000.0 / samples


def small_call_under(
    endpoint: Endpoint, session: str, background: Callable[[], Any], samples: int
) -> list[float]:
    """Latencies of one.user.info while ``background`` runs in a loop in another thread."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            background()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    time.sleep(0.05)
    small = RawClient(endpoint, session)
    try:
        return timed(lambda: small.call("one.user.info", 0), samples)
    finally:
        stop.set()
        thread.join(120)


def count_vms(raw: RawClient) -> int:
    return raw.call("one.vmpool.info", -2, -1, -1, -1).count(b"&lt;VM&gt;&lt;ID&gt;")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint")
    parser.add_argument("--session")
    parser.add_argument("--metrics", help="URL of /metrics (default: the local daemon's)")
    parser.add_argument("--vms", type=int, default=10000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--pid", type=int)
    args = parser.parse_args(argv)
    local: LocalDaemon | None = None
    if args.endpoint is None:
        local = LocalDaemon()
        args.endpoint = f"http://127.0.0.1:{local.port}/RPC2"
        args.session = "oneadmin:bench-pw"
        args.metrics = f"http://127.0.0.1:{local.metrics_port}/metrics"
        args.pid = local.proc.pid
    if not args.session or not args.metrics:
        parser.error("--session and --metrics are needed with --endpoint")
    try:
        run(args)
    finally:
        if local is not None:
            local.stop()
    return 0


def run(args: argparse.Namespace) -> None:
    endpoint = Endpoint.parse(args.endpoint)
    raw = RawClient(endpoint, args.session)
    have = count_vms(raw)
    if have < args.vms:
        rate, done, errors = allocate_rate(
            args.endpoint, args.session, args.vms - have, args.clients, have, DISK
        )
        print(f"allocated {done} VMs on hold ({rate:.0f}/s){' ' + errors[0] if errors else ''}")
    total = count_vms(raw)
    pid = args.pid or (
        find_listener_pid(endpoint.port) if endpoint.host in ("127.0.0.1", "localhost") else None
    )
    cpu = CpuMeter(pid)
    scraper = Scraper(args.metrics)

    t0 = time.perf_counter()
    body = scraper.get()
    first = time.perf_counter() - t0
    samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    print(f"VMs in the pool: {total}")
    size = f"{len(body) / 1e6:.1f} MB, {samples} samples"
    print(f"/metrics first scrape      {first * 1000:8.1f} ms  ({size})")
    scrapes = timed(scraper.get, args.samples)
    listings = timed(lambda: raw.call("one.vmpool.info", -2, -1, -1, -1), args.samples)
    print(f"/metrics scrape            {ms(scrapes)}")
    print(f"one.vmpool.info            {ms(listings)}")
    scrape_cpu = cpu_ms_per_call(cpu, scraper.get, args.samples)
    list_cpu = cpu_ms_per_call(
        cpu, lambda: raw.call("one.vmpool.info", -2, -1, -1, -1), args.samples
    )
    if scrape_cpu is not None and list_cpu is not None:
        print(f"daemon CPU per scrape      {scrape_cpu:8.1f} ms")
        print(f"daemon CPU per vmpool.info {list_cpu:8.1f} ms")
        print(f"scrape / vmpool.info CPU   {scrape_cpu / list_cpu:8.2f}")
    idle = timed(lambda: raw.call("one.user.info", 0), args.samples * 5)
    bg_scraper = Scraper(args.metrics)
    during_scrape = small_call_under(endpoint, args.session, bg_scraper.get, args.samples * 5)
    bg_raw = RawClient(endpoint, args.session)
    during_list = small_call_under(
        endpoint,
        args.session,
        lambda: bg_raw.call("one.vmpool.info", -2, -1, -1, -1),
        args.samples * 5,
    )
    print(f"one.user.info idle         {ms(idle)}")
    print(f"  while scraping           {ms(during_scrape)}")
    print(f"  while vmpool.info        {ms(during_list)}")
    verdict = percentile(scrapes, 50) < percentile(listings, 50)
    print(f"scrape cheaper than one vmpool.info: {'yes' if verdict else 'NO'}")


if __name__ == "__main__":
    raise SystemExit(main())
