"""Our driver programs as real subprocesses under the real DriverManager and reactor."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred

from oned.config import OnedConfig, parse_config_text
from oned.drivers.families import Family
from oned.drivers.manager import CHECKOUT_MADS, DriverManager
from oned.drivers.message import DriverMessage, b64encode, zb64encode
from oned.drivers.process import DriverState
from oned.locations import Locations
from oned.managers.auth import AuthManager

from .drivers_common import DS_DUMMY, MARKET_DUMMY, TM_PROLOG, VMM_DEPLOY, drivers_conf, reply_of

pytestmark = pytest.mark.slow

REMOTES = CHECKOUT_MADS.parent / "remotes"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def conf(extra_tm_types: str = "") -> str:
    return drivers_conf(tm_types=f"dummy{extra_tm_types}", authn="dummy,plain")


def make_config(root: Path, text: str) -> OnedConfig:
    locations = Locations.from_env({"ONE_LOCATION": str(root)})
    return parse_config_text(text, locations)


@pytest_twisted.ensureDeferred
async def test_every_family_round_trips(tmp_path: Path) -> None:
    """Every driver starts, answers INIT and round-trips an action; stop is clean."""
    from twisted.internet import reactor

    manager = DriverManager(make_config(tmp_path, conf()), reactor)
    await manager.start()
    try:
        assert all(d.state is DriverState.RUNNING for d in manager.drivers())
        assert "SCRIPTS_REMOTE_DIR=/var/tmp/one" in (tmp_path / "var" / "config").read_text()

        msg = await reply_of(manager, Family.VMM, "DEPLOY", 7, VMM_DEPLOY, name="dummy")
        assert msg == DriverMessage("DEPLOY", "SUCCESS", 7, "host0:testvm:dummy")

        prolog = tmp_path / "transfer.0.prolog"
        prolog.write_text(TM_PROLOG)
        msg = await reply_of(manager, Family.TM, "TRANSFER", 7, str(prolog))
        assert msg == DriverMessage("TRANSFER", "SUCCESS", 7, "-")

        assert await manager.request(Family.IMAGE, "STAT", DS_DUMMY) == (True, "1024")
        msg = await reply_of(manager, Family.IMAGE, "CP", 3, DS_DUMMY)
        assert msg.payload == "dummy_path dummy_format"

        auth = AuthManager(manager)
        assert await auth.authenticate(-1, "dummy", "alice", "", "s3cret") == (
            True,
            "dummy alice s3cret",
        )
        ok, info = await auth.authenticate(2, "ldap", "bob", "pw", "x")
        assert (ok, info) == (False, "Authentication driver 'ldap' not available")

        ar = b64encode(
            "<IPAM_DRIVER_ACTION_DATA><AR><IP>10.0.0.1</IP><SIZE>100</SIZE>"
            "<IPAM_MAD>dummy</IPAM_MAD></AR><ADDRESS><SIZE>1</SIZE></ADDRESS>"
            "</IPAM_DRIVER_ACTION_DATA>"
        )
        ok, info = await manager.request(Family.IPAM, "GET_ADDRESS", ar)
        assert ok and info

        msg = await reply_of(manager, Family.MARKET, "MONITOR", 0, MARKET_DUMMY)
        assert msg.success

        msg = await reply_of(
            manager, Family.SCHED, "PLACE", -1, "<SCHEDULER_DRIVER_ACTION/>", reply_oid=0
        )
        assert msg == DriverMessage("PLACE", "SUCCESS", 0, "-")

        port = free_udp_port()
        action = (
            "<MONITOR_DRIVER_ACTION><HOST><ID>55</ID><NAME>host55</NAME>"
            "<IM_MAD>dummy</IM_MAD></HOST><MONITOR_CONFIGURATION><NETWORK>"
            f"<MONITOR_ADDRESS>127.0.0.1</MONITOR_ADDRESS><PORT>{port}</PORT>"
            "</NETWORK></MONITOR_CONFIGURATION></MONITOR_DRIVER_ACTION>"
        )
        msg = await reply_of(manager, Family.MONITOR, "START_MONITOR", 55, action, name="dummy")
        assert msg.success, msg
        assert msg.payload.startswith("<MONITOR_MESSAGES><SYSTEM_HOST>")
        msg = await reply_of(manager, Family.MONITOR, "STOP_MONITOR", 55, action, name="dummy")
        assert msg.success

        hook = manager.get(Family.HOOK)
        assert hook is not None
        hook.send("EXECUTE", -1, b64encode("<HOOK_MESSAGE><HOOK_TYPE>API</HOOK_TYPE>"))
    finally:
        await manager.stop()
    assert all(d.state is DriverState.STOPPED for d in manager.drivers())


@pytest_twisted.ensureDeferred
async def test_crash_fails_in_flight_and_restarts(tmp_path: Path) -> None:
    """A driver killed mid-action fails that action, restarts and works again."""
    from twisted.internet import reactor

    tm = tmp_path / "var" / "remotes" / "tm"
    shutil.copytree(REMOTES / "tm" / "dummy", tm / "dummy")
    (tm / "slow").mkdir()
    (tm / "slow" / "clone").write_text("#!/bin/sh\nsleep 30\n")
    (tm / "slow" / "clone").chmod(0o755)
    manager = DriverManager(make_config(tmp_path, conf(",slow")), reactor)
    await manager.start()
    try:
        driver = manager.get(Family.TM)
        assert driver is not None
        slow = tmp_path / "slow.prolog"
        slow.write_text("CLONE slow a b 9 1\n")
        waiter: Deferred[Any] = Deferred()
        manager.register_action(Family.TM, "TRANSFER", waiter.callback)
        manager.send(Family.TM, "TRANSFER", 9, str(slow))
        assert driver.in_flight() == 1
        process = driver._process
        assert process is not None
        process.signalProcess("KILL")
        waiter.addTimeout(10, reactor)
        msg = await waiter
        assert (msg.action, msg.status, msg.oid) == ("TRANSFER", "FAILURE", 9)
        assert "exited" in msg.payload
        for _ in range(100):
            if driver.state is DriverState.RUNNING:
                break
            await deferLater(reactor, 0.1)
        assert driver.state is DriverState.RUNNING
        fast = tmp_path / "fast.prolog"
        fast.write_text("")
        msg = await reply_of(manager, Family.TM, "TRANSFER", 10, str(fast))
        assert msg.success
    finally:
        await manager.stop()


@pytest_twisted.ensureDeferred
async def test_bad_drivers_do_not_hang_start(tmp_path: Path) -> None:
    """A driver that exits at start-up or never answers INIT fails start() in ~10 s."""
    from twisted.internet import reactor

    mads = tmp_path / "lib" / "mads"
    mads.mkdir(parents=True)
    (mads / "exits").write_text("#!/bin/sh\nexit 3\n")
    (mads / "silent").write_text("#!/bin/sh\nexec sleep 60\n")
    (mads / "garbage").write_text("#!/bin/sh\necho 'LOG I -1 hello'\nexec sleep 60\n")
    # oned adds a default SCHED_MAD to any configuration: a well-behaved stand-in.
    (mads / "sched").write_text("#!/bin/sh\necho 'INIT SUCCESS'\nexec cat >/dev/null\n")
    for exe in mads.iterdir():
        exe.chmod(0o755)
    for exe, error in (
        ("exits", "driver exited"),
        ("garbage", "expected INIT SUCCESS"),
        ("silent", "time out"),
    ):
        text = (
            f'VM_MAD = [ NAME = "x", EXECUTABLE = "{exe}" ]\n'
            'SCHED_MAD = [ EXECUTABLE = "sched" ]'
        )
        manager = DriverManager(
            make_config(tmp_path, text), reactor, fallback_mads=None, prefix_mads=None
        )
        start = reactor.seconds()
        with pytest.raises(Exception, match=error):
            await manager.start()
        assert reactor.seconds() - start < 15
        assert manager.get(Family.VMM).state is DriverState.STOPPED  # type: ignore[union-attr]


def deferLater(reactor: Any, seconds: float) -> Deferred[None]:
    from twisted.internet.task import deferLater as later

    return later(reactor, seconds, lambda: None)


def test_zb64_helper_matches_driver() -> None:
    """The codec's zlib+base64 equals what the IM driver writes for ``-``."""
    assert zb64encode("-") == "eNrTBQAALgAu"
