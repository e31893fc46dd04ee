"""Pieces shared by the driver round-trip tests (ours and OpenNebula's Ruby drivers)."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

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


# OpenNebula's driver programs (source directory -> wrappers with their .rb) and remotes
# (source directory -> var/remotes target), keyed by family, as install.sh lays them out.
MADS = {
    "vmm": ("src/vmm_mad/dummy", ["one_vmm_dummy"]),
    "tm": ("src/tm_mad", ["one_tm"]),
    "datastore": ("src/datastore_mad", ["one_datastore"]),
    "ipam": ("src/ipamm_mad", ["one_ipam"]),
    "auth": ("src/authm_mad", ["one_auth_mad"]),
    "sched": ("src/schedm_mad", ["one_sched"]),
    "hm": ("src/hm_mad", ["one_hm"]),
    "market": ("src/market_mad", ["one_market"]),
    "im": ("src/im_mad/im_exec", ["one_im_exec", "one_im_sh"]),
}

REMOTES = {
    "tm": {"src/tm_mad/dummy": "tm/dummy", "src/tm_mad/common": "tm/common"},
    "datastore": {"src/datastore_mad/remotes/dummy": "datastore/dummy"},
    "ipam": {
        "src/ipamm_mad/remotes/dummy": "ipam/dummy",
        "src/vnm_mad/remotes/dummy": "vnm/dummy",
        "src/vnm_mad/remotes/common": "vnm/common",
    },
    "auth": {"src/authm_mad/remotes/dummy": "auth/dummy"},
    "sched": {"src/schedm_mad/remotes/dummy": "scheduler/dummy"},
    "im": {"src/im_mad/remotes": "im"},
}


def install_opennebula(source: Path, root: Path, families: Iterable[str] = tuple(MADS)) -> None:
    """Lay OpenNebula's drivers of ``families`` out in ``root`` (a ONE_LOCATION) as
    install.sh does (drivers.md §4.9). Families left out are not installed, so a daemon
    running in ``root`` falls back to our own programs for them."""
    families = list(families)
    mads = root / "lib" / "mads"
    mads.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / "src/mad/sh/madcommon.sh", mads)
    for family in families:
        directory, programs = MADS[family]
        for program in programs:
            shutil.copy(source / directory / program, mads)
            if (source / directory / f"{program}.rb").exists():
                shutil.copy(source / directory / f"{program}.rb", mads)
    for exe in mads.iterdir():
        exe.chmod(0o755)
    ruby = root / "lib" / "ruby"
    shutil.copytree(source / "src/mad/ruby", ruby, ignore=shutil.ignore_patterns("test"))
    shutil.copytree(source / "src/oca/ruby/opennebula", ruby / "opennebula")
    shutil.copy(source / "src/oca/ruby/opennebula.rb", ruby)
    # Distro gems: the no-op variant instead of share/misc's Gem.use_paths one.
    shutil.copy(source / "share/rubygems/load_opennebula_paths.rb", ruby)
    (root / "lib" / "sh").mkdir(exist_ok=True)
    shutil.copy(source / "src/mad/sh/scripts_common.sh", root / "lib" / "sh")
    remotes = root / "var" / "remotes"
    for family in families:
        for src, target in REMOTES.get(family, {}).items():
            shutil.copytree(source / src, remotes / target, symlinks=True)
    remotes.mkdir(parents=True, exist_ok=True)
    if "datastore" in families or "ipam" in families:
        for name in ("xpath.rb", "libfs.sh", "datastore.conf"):
            (remotes / "datastore").mkdir(exist_ok=True)
            shutil.copy(source / "src/datastore_mad/remotes" / name, remotes / "datastore")
    shutil.copy(source / "src/mad/sh/scripts_common.sh", remotes)
    if "im" in families:
        for empty in ("vm/status", "vm/snapshot"):
            (remotes / "im" / "dummy-probes.d" / empty).mkdir(parents=True, exist_ok=True)
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc" / "defaultrc").write_text("PRIORITY=19\nONE_MAD_DEBUG=\n")
    (root / "share" / "gems").mkdir(parents=True, exist_ok=True)
