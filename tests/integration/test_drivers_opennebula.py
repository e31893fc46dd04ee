"""OpenNebula's own Ruby drivers, unchanged, under our DriverManager.

Needs an extracted OpenNebula/one source tree in ``$ONE_SOURCE_TREE`` (at least
``src/mad src/*_mad src/oca/ruby share/rubygems``) and Ruby with the packages listed
in drivers.md §4.9 (ruby, ruby-nokogiri, ruby-xmlrpc, ruby-ffi-rzmq for one_hm ...).
Skipped otherwise. The test lays the drivers out in a throw-away ``ONE_LOCATION`` as
``install.sh`` would (drivers.md §4.9) and round-trips an action of every family.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest
import pytest_twisted

from oned.config import parse_config_text
from oned.drivers.families import Family
from oned.drivers.manager import DriverManager
from oned.drivers.message import DriverMessage, b64encode
from oned.drivers.process import DriverState
from oned.locations import Locations
from oned.managers.auth import AuthManager

from .drivers_common import (
    DS_DUMMY,
    MARKET_DUMMY,
    TM_PROLOG,
    VMM_DEPLOY,
    drivers_conf,
    install_opennebula,
    reply_of,
)

pytestmark = pytest.mark.slow

SOURCE = os.environ.get("ONE_SOURCE_TREE", "")

skip_reason = ""
if not SOURCE or not Path(SOURCE, "src", "mad", "ruby").is_dir():
    skip_reason = "ONE_SOURCE_TREE does not point at an OpenNebula source tree"
elif shutil.which("ruby") is None:
    skip_reason = "ruby is not installed"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def install(root: Path) -> None:
    """Every family of OpenNebula's drivers in a self-contained ONE_LOCATION."""
    install_opennebula(Path(SOURCE), root)
    (root / "one_auth").write_text("oneadmin:oneadmin\n")


def conf(pub: int, rep: int) -> str:
    return drivers_conf(hm_args=f"-p {pub} -l {rep} -b 127.0.0.1", market="http")


@pytest.mark.skipif(bool(skip_reason), reason=skip_reason or "-")
@pytest_twisted.ensureDeferred
async def test_opennebula_ruby_drivers(tmp_path: Path) -> None:
    """OpenNebula's drivers answer INIT and round-trip their actions through us."""
    from twisted.internet import reactor

    root = tmp_path / "one"
    install(root)
    env = dict(os.environ)
    env.update(
        ONE_LOCATION=str(root),
        RUBYLIB=str(root / "lib" / "ruby"),
        ONE_AUTH=str(root / "one_auth"),
    )
    locations = Locations.from_env({"ONE_LOCATION": str(root)})
    config = parse_config_text(conf(free_port(), free_port()), locations)
    manager = DriverManager(config, reactor, environ=env, fallback_mads=None, prefix_mads=None)
    await manager.start()
    try:
        assert all(d.state is DriverState.RUNNING for d in manager.drivers())

        msg = await reply_of(manager, Family.VMM, "DEPLOY", 7, VMM_DEPLOY, name="dummy")
        assert msg == DriverMessage("DEPLOY", "SUCCESS", 7, "host0:testvm:dummy")
        msg = await reply_of(manager, Family.VMM, "UPDATESG", 7, VMM_DEPLOY, name="dummy")
        assert msg.payload == "3"

        prolog = tmp_path / "transfer.0.prolog"
        prolog.write_text(TM_PROLOG)
        msg = await reply_of(manager, Family.TM, "TRANSFER", 7, str(prolog))
        assert msg == DriverMessage("TRANSFER", "SUCCESS", 7, "-")

        assert await manager.request(Family.IMAGE, "STAT", DS_DUMMY) == (True, "1024")
        msg = await reply_of(manager, Family.IMAGE, "MONITOR", 1, DS_DUMMY)
        assert msg.payload == "VVNFRF9NQj05NzIwClRPVEFMX01CPTIwNDgwCkZSRUVfTUI9MjA0ODAK"

        auth = AuthManager(manager)
        assert await auth.authenticate(-1, "dummy", "alice", "", "s3cret") == (
            True,
            "dummy alice s3cret",
        )

        vnet = b64encode("<VNET><ID>4</ID><VN_MAD>dummy</VN_MAD></VNET>")
        msg = await reply_of(manager, Family.IPAM, "VNET_CREATE", 4, vnet)
        assert msg == DriverMessage("VNET_CREATE", "SUCCESS", 4, "LQ==")

        msg = await reply_of(
            manager, Family.SCHED, "PLACE", -1, "<SCHEDULER_DRIVER_ACTION/>", reply_oid=0
        )
        assert msg == DriverMessage("PLACE", "SUCCESS", 0, "-")

        msg = await reply_of(manager, Family.MARKET, "MONITOR", 0, MARKET_DUMMY)
        assert msg.status == "FAILURE"
        assert msg.payload == "Marketplace driver 'dummy' not available"

        action = (
            "<MONITOR_DRIVER_ACTION><HOST><ID>0</ID><NAME>host0</NAME>"
            "<IM_MAD>dummy</IM_MAD></HOST><MONITOR_CONFIGURATION><NETWORK>"
            f"<MONITOR_ADDRESS>127.0.0.1</MONITOR_ADDRESS><PORT>{free_port()}</PORT>"
            "<PUBKEY/></NETWORK></MONITOR_CONFIGURATION></MONITOR_DRIVER_ACTION>"
        )
        # START_MONITOR starts the dummy monitord client and waits 10 s for it.
        msg = await reply_of(
            manager, Family.MONITOR, "START_MONITOR", 0, action, name="dummy", timeout=60
        )
        assert msg.success, msg
        assert msg.payload.startswith("<MONITOR_MESSAGES>")
        msg = await reply_of(
            manager, Family.MONITOR, "STOP_MONITOR", 0, action, name="dummy", timeout=60
        )
        assert msg.success, msg
    finally:
        await manager.stop()
    assert all(d.state is DriverState.STOPPED for d in manager.drivers())
