"""Pieces shared by the driver round-trip tests (ours and OpenNebula's Ruby drivers)."""

from __future__ import annotations

from twisted.internet.defer import Deferred

from oned.drivers.families import Family
from oned.drivers.manager import DriverManager
from oned.drivers.message import DriverMessage, b64encode

VMM_DEPLOY = b64encode(
    "<VMM_DRIVER_ACTION_DATA><HOST>host0</HOST><DEPLOY_ID/>"
    "<SECURITY_GROUP_ID>3</SECURITY_GROUP_ID>"
    "<VM><ID>7</ID><NAME>testvm</NAME></VM></VMM_DRIVER_ACTION_DATA>"
)
DS_DUMMY = b64encode(
    "<DS_DRIVER_ACTION_DATA><IMAGE/><DATASTORE><DS_MAD>dummy</DS_MAD>"
    "<TM_MAD>dummy</TM_MAD><TYPE>0</TYPE></DATASTORE></DS_DRIVER_ACTION_DATA>"
)
MARKET_DUMMY = b64encode(
    "<MARKET_DRIVER_ACTION_DATA><MARKETPLACE><MARKET_MAD>dummy</MARKET_MAD>"
    "</MARKETPLACE></MARKET_DRIVER_ACTION_DATA>"
)
TM_PROLOG = "CLONE dummy fe:/a host0:/d/0/7/disk.0 7 1\n"


def drivers_conf(
    *,
    tm_types: str = "dummy",
    authn: str = "dummy",
    hm_args: str = "-p 0 -l 0 -b 127.0.0.1",
    market: str = "dummy",
) -> str:
    """oned.conf driver sections for a dummy set of every family."""
    return f"""
VM_MAD = [ NAME = "dummy", EXECUTABLE = "one_vmm_dummy", TYPE = "xml" ]
IM_MAD = [ NAME = "dummy", EXECUTABLE = "one_im_sh", ARGUMENTS = "-r 3 -t 15 -w 90 dummy" ]
TM_MAD = [ EXECUTABLE = "one_tm", ARGUMENTS = "-t 15 -d {tm_types}" ]
DATASTORE_MAD = [ EXECUTABLE = "one_datastore", ARGUMENTS = "-t 15 -d dummy -s dummy" ]
AUTH_MAD = [ EXECUTABLE = "one_auth_mad", AUTHN = "{authn}" ]
IPAM_MAD = [ EXECUTABLE = "one_ipam", ARGUMENTS = "-t 1 -i dummy" ]
SCHED_MAD = [ EXECUTABLE = "one_sched", ARGUMENTS = "-t 15 -p dummy -o dummy" ]
HM_MAD = [ EXECUTABLE = "one_hm", ARGUMENTS = "{hm_args}" ]
MARKET_MAD = [ EXECUTABLE = "one_market", ARGUMENTS = "-t 15 -m {market}" ]
"""


async def reply_of(
    manager: DriverManager,
    family: Family,
    action: str,
    oid: int,
    payload: str,
    *,
    name: str | None = None,
    reply_oid: int | None = None,
    timeout: float = 30,
) -> DriverMessage:
    """Send one action and wait for its reply (matched by id)."""
    from twisted.internet import reactor

    waiter: Deferred[DriverMessage] = Deferred()

    def handle(msg: DriverMessage) -> None:
        if msg.oid == (oid if reply_oid is None else reply_oid) and not waiter.called:
            waiter.callback(msg)

    manager.register_action(family, action, handle)
    manager.send(family, action, oid, payload, name=name)
    waiter.addTimeout(timeout, reactor)
    return await waiter
