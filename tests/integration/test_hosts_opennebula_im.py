"""OpenNebula's own IM driver (``one_im_exec``) and dummy probes monitor hosts of our daemon.

Needs ``$ONE_SOURCE_TREE`` and Ruby, like ``test_drivers_opennebula.py``, whose ``install``
lays OpenNebula's drivers out in a throw-away ``ONE_LOCATION``, plus Debian's ruby-sqlite3
and ruby-treetop for the probes' client. Skipped otherwise.
"""

from __future__ import annotations

import time
from pathlib import Path

import pyone
import pytest

from .conftest import Daemon
from .test_drivers_opennebula import install, skip_reason

pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(skip_reason), reason=skip_reason or "-")]

PROBES = (
    'IM_MAD = [ NAME = "dummy", SUNSTONE_NAME = "Testing", EXECUTABLE = "one_im_sh", '
    'ARGUMENTS = "-r 3 -t 15 -w 90 dummy" ]\n'
    "PROBES_PERIOD = [ BEACON_HOST = 2, MONITOR_HOST = 2, SYSTEM_HOST = 4, MONITOR_VM = 30 ]\n"
    'MONITOR_NETWORK = [ ADDRESS = "127.0.0.1", PORT = 0 ]\n'
)


def test_opennebula_im_driver_monitors_our_hosts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "one"
    install(root)
    keep = {"one_im_sh", "one_im_exec", "one_im_exec.rb", "madcommon.sh"}
    for program in (root / "lib" / "mads").iterdir():
        if program.name not in keep:
            program.unlink()  # every other family: our own drivers
    monkeypatch.setenv("RUBYLIB", str(root / "lib" / "ruby"))
    # The VM probes load all of OpenNebula's Ruby OCA (OneFlow's gems included); hosts
    # are monitored without them.
    for kind in ("execution", "monitor"):
        probes = root / "var" / "remotes" / "im" / "dummy-probes.d" / "vm" / kind
        for probe in probes.iterdir() if probes.is_dir() else ():
            probe.unlink()
    from oned.locations import packaged_share

    text = (packaged_share() / "etc" / "oned.conf").read_text()
    text = text.replace("-p 2101 -l 2102", "-p 0 -l 0")
    start = text.index("IM_MAD = [")
    end = text.index("]", start) + 1
    (root / "etc" / "oned.conf").write_text(text[:start] + text[end:] + "\n" + PROBES)
    daemon = Daemon(root, password="oneadmin")
    daemon.start()
    try:
        one = pyone.OneServer(daemon.url, session=daemon.session, timeout=30)
        hid = one.host.allocate("onehost01", "dummy", "dummy", -1)
        deadline = time.monotonic() + 60
        while one.host.info(hid).STATE != 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        host = one.host.info(hid)
        assert host.STATE == 2, (host.TEMPLATE.get("ERROR"), daemon.log()[-3000:])
        assert host.HOST_SHARE.TOTAL_CPU > 0
        assert host.TEMPLATE["HYPERVISOR"] == "dummy"
        one.host.status(hid, 2)  # offline: STOP_MONITOR through OpenNebula's driver
        assert one.host.info(hid).STATE == 8
        one.host.delete(hid)
    finally:
        daemon.stop()
