"""Hosts end to end: pyone against a real oned with our IM driver and dummy probes."""

from __future__ import annotations

import base64
import socket
import time
import xmlrpc.client
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyone
import pytest

from . import xsd
from .conftest import Daemon

pytestmark = pytest.mark.slow

FAST_PROBES = (
    "PROBES_PERIOD = [ BEACON_HOST = 1, MONITOR_HOST = 1, SYSTEM_HOST = 3, MONITOR_VM = 30 ]\n"
    'MONITOR_NETWORK = [ ADDRESS = "127.0.0.1", PORT = 0 ]\n'
)


@pytest.fixture
def monitored(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(tmp_path / "one", extra_conf=FAST_PROBES)
    d.start()
    yield d
    if d.alive():
        d.stop()


def wait_for(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def valid(document: str) -> None:
    if xsd.available():
        assert xsd.errors(document) == []


def test_hosts_monitored_end_to_end(monitored: Daemon) -> None:
    """Hosts become MONITORED from our probes; documents validate; status and delete."""
    one = pyone.OneServer(monitored.url, session=monitored.session, timeout=30)
    raw = xmlrpc.client.ServerProxy(monitored.url)
    s = monitored.session
    h0 = one.host.allocate("host01", "dummy", "dummy", -1)
    h1 = one.host.allocate("host02", "dummy", "dummy", 0)
    assert (h0, h1) == (0, 1)
    assert wait_for(lambda: all(one.host.info(h).STATE == 2 for h in (h0, h1)))
    host = one.host.info(h0)
    assert host.HOST_SHARE.TOTAL_CPU == 800
    assert host.HOST_SHARE.MAX_MEM == 16777216
    assert host.TEMPLATE["HOSTNAME"] == "host01"
    assert host.MONITORING.ID == h0
    valid(raw.one.host.info(s, h0)[1])
    valid(raw.one.hostpool.info(s)[1])
    # (monitoring_data.xsd describes VM samples; oned's host samples do not follow it)
    # probes keep reporting over UDP: more samples arrive
    count = lambda: raw.one.host.monitoring(s, h0)[1].count("<MONITORING>")  # noqa: E731
    first = count()
    assert wait_for(lambda: count() > first, 15)
    last = raw.one.hostpool.monitoring(s, 0)[1]
    assert last.count("<MONITORING>") == 2
    # status: disable keeps capacity, offline resets it, enable monitors again
    one.host.status(h0, 1)
    assert one.host.info(h0).STATE == 4
    one.host.status(h0, 0)
    assert one.host.info(h0).STATE == 2
    one.host.status(h0, 2)
    info = one.host.info(h0)
    assert (info.STATE, info.HOST_SHARE.TOTAL_CPU) == (8, 0)
    one.host.status(h0, 0)
    assert wait_for(lambda: one.host.info(h0).STATE == 2)
    # a cluster holds its hosts; delete takes the host out
    cid = one.cluster.allocate("c1")
    one.cluster.addhost(cid, h1)
    assert one.host.info(h1).CLUSTER_ID == cid
    one.cluster.update(cid, 'RESERVED_CPU="25%"', 1)
    assert one.host.info(h1).HOST_SHARE.MAX_CPU == 600
    assert one.host.delete(h1) == h1
    with pytest.raises(pyone.OneNoExistsException):
        one.host.info(h1)
    assert monitored.alive()


def test_host_errors_and_garbage(monitored: Daemon) -> None:
    """oned's errors over the wire; garbage and unknown-host reports leave the daemon up."""
    one = pyone.OneServer(monitored.url, session=monitored.session, timeout=30)
    one.host.allocate("host01", "dummy", "dummy", -1)
    with pytest.raises(pyone.OneException, match="NAME is already taken by HOST 0"):
        one.host.allocate("host01", "dummy", "dummy", -1)
    with pytest.raises(pyone.OneNoExistsException, match=r"Error getting cluster \[42\]"):
        one.host.allocate("host09", "dummy", "dummy", 42)
    with pytest.raises(pyone.OneInternalException, match="Wrong status code"):
        one.host.status(0, 7)
    # an unknown IM driver is accepted, as by oned, and the host is never monitored
    bad = one.host.allocate("host03", "nosuch", "dummy", -1)
    port = int(
        monitored.log().split("Listening for monitoring reports on 127.0.0.1:")[1].split()[0]
    )
    packed = base64.b64encode(zlib.compress(b"USEDCPU=1")).decode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for data in (
            b"\x00garbage",
            f"MONITOR_HOST SUCCESS 999 1 {packed}".encode(),
            b"SYSTEM_HOST SUCCESS 0 1 not-base64",
            b"x" * 60000,
        ):
            sock.sendto(data, ("127.0.0.1", port))
    assert wait_for(lambda: one.host.info(0).STATE == 2)
    assert one.host.info(bad).STATE == 0
    assert "message ignored for unknown host 999" in monitored.log()
    assert monitored.alive()


def test_failing_and_hanging_probes(tmp_path: Path) -> None:
    """A probe that fails, one that prints garbage and one that hangs past the driver's
    timeout put their hosts in ERROR with oned's TEMPLATE/ERROR; the daemon stays up."""
    import shutil

    from oned.drivers.manager import CHECKOUT_MADS

    root = tmp_path / "one"
    im = root / "var" / "remotes" / "im"
    shutil.copytree(CHECKOUT_MADS.parent / "remotes" / "im", im)
    probes = {
        "failing": "#!/bin/sh\necho 'probe exploded' >&2\nexit 2\n",
        "garbage": "#!/bin/sh\necho '<<<not xml'\n",
        "hanging": "#!/bin/sh\nsleep 30\n",
    }
    for name, script in probes.items():
        (im / f"{name}.d").mkdir()
        probe = im / f"{name}.d" / "probe.sh"
        probe.write_text(script)
        probe.chmod(0o755)
    extra = FAST_PROBES + "".join(
        f'IM_MAD = [ NAME = "{n}", EXECUTABLE = "one_im_sh", ARGUMENTS = "-t 5 -w 3 {n}" ]\n'
        for n in probes
    )
    d = Daemon(root, extra_conf=extra)
    d.start()
    try:
        one = pyone.OneServer(d.url, session=d.session, timeout=30)
        ids = {n: one.host.allocate(f"{n}-host", n, "dummy", -1) for n in probes}
        ok = one.host.allocate("good-host", "dummy", "dummy", -1)
        assert wait_for(lambda: all(one.host.info(i).STATE == 3 for i in ids.values()), 30)
        for name, hid in ids.items():
            error = one.host.info(hid).TEMPLATE["ERROR"]
            assert error.endswith(f"Error monitoring Host {name}-host ({hid}): "), error
        assert wait_for(lambda: one.host.info(ok).STATE == 2)
        assert d.alive()
    finally:
        d.stop()
