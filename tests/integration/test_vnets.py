"""Virtual networks end to end: pyone over HTTP against a real oned with our IPAM driver
(``one_ipam`` running ``remotes/vnm/<VN_MAD>/vnet_create|vnet_delete``), XSD-valid
documents, and a ``kill -9`` while a network is in LOCK_CREATE."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pyone
import pytest

from . import xsd
from .conftest import Daemon, MakeDaemon

pytestmark = pytest.mark.slow

CHECKOUT_REMOTES = Path(__file__).resolve().parents[2] / "drivers" / "remotes"
NET = 'NAME="net"\nVN_MAD="dummy"\nBRIDGE="br0"\nAR=[TYPE="IP4", IP="10.0.0.10", SIZE="50"]\n'


def client(d: Daemon) -> pyone.OneServer:
    return pyone.OneServer(d.url, session=d.session, timeout=30)


def wait_state(one: pyone.OneServer, oid: int, state: int, timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if one.vn.info(oid).STATE == state:
            return
        time.sleep(0.05)
    raise AssertionError(f"network {oid} never reached state {state}")


def test_networks_through_pyone(daemon: Daemon) -> None:
    """allocate -> READY through the driver, leases, reservations, ranges, templates, delete."""
    one = client(daemon)
    cid = one.cluster.allocate("prod")
    oid = one.vn.allocate(NET, cid)
    wait_state(one, oid, 1)
    vn = one.vn.info(oid)
    assert vn.TEMPLATE.get("VLAN_ID") in ("", None) and vn.BRIDGE_TYPE == "linux"
    assert sorted(vn.CLUSTERS.ID) == [cid]
    assert one.cluster.info(cid).VNETS.ID == [oid]
    one.vn.hold(oid, 'LEASES=[IP="10.0.0.15"]')
    with pytest.raises(pyone.OneInternalException, match="not part of the address range or in use"):
        one.vn.hold(oid, 'LEASES=[IP="10.0.0.15"]')
    rid = one.vn.reserve(oid, 'NAME="mine"\nSIZE=4')
    wait_state(one, rid, 1)
    assert one.vn.info(oid).USED_LEASES == 5
    assert str(one.vn.info(rid).PARENT_NETWORK_ID) == str(oid)
    with pytest.raises(
        pyone.OneActionException, match="Cannot reserve addresses from a reserved VNET"
    ):
        one.vn.reserve(rid, 'NAME="x"\nSIZE=1')
    one.vn.add_ar(oid, 'AR=[TYPE="ETHER", SIZE="4"]')
    one.vn.update_ar(oid, 'AR=[AR_ID="1", SIZE="8"]')
    assert len(one.vn.info(oid).AR_POOL.AR) == 2
    one.vn.rm_ar(oid, 1)
    one.vn.release(oid, 'LEASES=[IP="10.0.0.15"]')
    pool = one.vnpool.info(-2, -1, -1)
    assert sorted(v.ID for v in pool.VNET) == [oid, rid]
    tid = one.vntemplate.allocate(
        'NAME="t"\nVN_MAD="dummy"\nBRIDGE="br9"\nAR=[TYPE="IP4", IP="172.16.0.1", SIZE="4"]'
    )
    nid = one.vntemplate.instantiate(tid, "from-t", 'DESCRIPTION="x"')
    wait_state(one, nid, 1)
    assert str(one.vn.info(nid).TEMPLATE_ID) == str(tid)
    one.vn.delete(rid)
    one.vn.delete(nid)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(one.vnpool.info(-2, -1, -1).VNET) > 1:
        time.sleep(0.05)
    assert [v.ID for v in one.vnpool.info(-2, -1, -1).VNET] == [oid]
    assert one.vn.info(oid).USED_LEASES == 0
    if xsd.available():
        import xmlrpc.client

        proxy = xmlrpc.client.ServerProxy(daemon.url)
        for method, args in (
            ("one.vn.info", (oid,)),
            ("one.vnpool.info", (-2, -1, -1)),
            ("one.vntemplate.info", (tid,)),
            ("one.vntemplatepool.info", (-2, -1, -1)),
        ):
            reply = getattr(proxy, method)(daemon.session, *args)
            assert reply[0], reply
            assert xsd.errors(reply[1]) == [], method


def test_kill_during_lock_create_resumes(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    """kill -9 while VNET_CREATE runs: the restart sends it again and the network gets READY."""
    root = tmp_path / "one"
    remotes = root / "var" / "remotes"
    for sub in ("ipam", "vnm"):
        shutil.copytree(CHECKOUT_REMOTES / sub, remotes / sub)
    slow = remotes / "vnm" / "slow"
    slow.mkdir()
    create = slow / "vnet_create"
    create.write_text("#!/bin/sh\nsleep 60\n")
    create.chmod(0o755)
    d = make_daemon(root, extra_conf='VN_MAD_CONF = [ NAME = "slow", BRIDGE_TYPE = "linux" ]')
    d.start(timeout=60)
    one = client(d)
    oid = one.vn.allocate(NET.replace('"dummy"', '"slow"'), -1)
    time.sleep(1)
    assert one.vn.info(oid).STATE == 2
    d.stop(signal.SIGKILL)
    create.write_text("#!/bin/sh\nexit 0\n")
    d.start(timeout=60)
    one = client(d)
    wait_state(one, oid, 1, timeout=60)
    assert str(one.vn.info(oid).AR_POOL.AR[0].SIZE) == "50"


RUBY_CLI = os.environ.get("ONE_RUBY_CLI", "")


@pytest.mark.skipif(not RUBY_CLI, reason="set ONE_RUBY_CLI to an installed Ruby CLI tree")
def test_ruby_cli(daemon: Daemon, tmp_path: Path) -> None:
    """onevnet/onevntemplate create, list, show, addar, updatear, rmar, hold, release,
    reserve, instantiate and delete through OpenNebula's Ruby CLI."""
    root = Path(RUBY_CLI)
    auth = tmp_path / "auth"
    auth.write_text(daemon.session + "\n")
    env = dict(
        os.environ,
        ONE_LOCATION=str(root),
        ONE_XMLRPC=daemon.url,
        ONE_AUTH=str(auth),
        HOME=str(tmp_path),
        RUBYLIB=f"{root}/lib/ruby:{root}/lib/ruby/cli",
    )
    net = tmp_path / "net"
    net.write_text(NET)
    vnt = tmp_path / "vnt"
    vnt.write_text(
        'NAME="t"\nVN_MAD="dummy"\nBRIDGE="b1"\nAR=[TYPE="IP4", IP="172.16.0.1", SIZE="9"]'
    )
    upd = tmp_path / "upd"
    upd.write_text('AR=[AR_ID="1", SIZE="8"]')

    def cli(*cmd: str) -> str:
        done = subprocess.run(
            [str(root / "bin" / cmd[0]), *cmd[1:]],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, (cmd, done.stdout, done.stderr)
        return done.stdout

    one = client(daemon)
    assert cli("onevnet", "create", str(net)).strip() == "ID: 0"
    wait_state(one, 0, 1)
    cli("onevnet", "addar", "0", "--size", "5", "--ip", "10.1.0.1")
    cli("onevnet", "updatear", "0", "1", str(upd))
    cli("onevnet", "hold", "0", "10.0.0.20")
    assert "Reservation VNET ID: 1" in cli("onevnet", "reserve", "0", "--name", "r", "--size", "3")
    cli("onevnet", "release", "0", "10.0.0.20")
    cli("onevnet", "rmar", "0", "1")
    shown = cli("onevnet", "show", "0")
    assert "N:1" in shown and "10.0.0.59" in shown
    assert "clinet" not in cli("onevnet", "list")
    cli("onevntemplate", "create", str(vnt))
    assert "t" in cli("onevntemplate", "list")
    cli("onevntemplate", "show", "0")
    assert "VN ID: 2" in cli("onevntemplate", "instantiate", "0", "--name", "fromt")
    wait_state(one, 1, 1)
    cli("onevnet", "delete", "1")


SOURCE = os.environ.get("ONE_SOURCE_TREE", "")


def _install_opennebula_ipam(src: Path, root: Path) -> None:
    """OpenNebula's one_ipam (Ruby) with its dummy IPAM and VNM remotes in ONE_LOCATION;
    every other driver stays ours."""
    mads = root / "lib" / "mads"
    mads.mkdir(parents=True)
    shutil.copy(src / "src/mad/sh/madcommon.sh", mads)
    for name in ("one_ipam", "one_ipam.rb"):
        shutil.copy(src / "src/ipamm_mad" / name, mads)
        (mads / name).chmod(0o755)
    ruby = root / "lib" / "ruby"
    shutil.copytree(src / "src/mad/ruby", ruby, ignore=shutil.ignore_patterns("test"))
    shutil.copytree(src / "src/oca/ruby/opennebula", ruby / "opennebula")
    shutil.copy(src / "src/oca/ruby/opennebula.rb", ruby)
    shutil.copy(src / "share/rubygems/load_opennebula_paths.rb", ruby)
    (root / "lib" / "sh").mkdir()
    shutil.copy(src / "src/mad/sh/scripts_common.sh", root / "lib" / "sh")
    remotes = root / "var" / "remotes"
    for source, target in (
        ("src/ipamm_mad/remotes/dummy", "ipam/dummy"),
        ("src/vnm_mad/remotes/dummy", "vnm/dummy"),
        ("src/vnm_mad/remotes/common", "vnm/common"),
    ):
        shutil.copytree(src / source, remotes / target, symlinks=True)
    (remotes / "datastore").mkdir()
    shutil.copy(src / "src/datastore_mad/remotes/xpath.rb", remotes / "datastore")
    shutil.copy(src / "src/mad/sh/scripts_common.sh", remotes)
    (root / "etc").mkdir()
    (root / "etc" / "defaultrc").write_text("PRIORITY=19\nONE_MAD_DEBUG=\n")


@pytest.mark.skipif(
    not SOURCE or not shutil.which("ruby"),
    reason="set ONE_SOURCE_TREE to an OpenNebula source tree (and install ruby)",
)
def test_opennebula_ipam_driver(
    make_daemon: MakeDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenNebula's own one_ipam: VNET_CREATE/DELETE and an IPAM_MAD range's calls."""
    root = tmp_path / "one"
    _install_opennebula_ipam(Path(SOURCE), root)
    monkeypatch.setenv("RUBYLIB", str(root / "lib" / "ruby"))
    d = make_daemon(root)
    d.start(timeout=60)
    one = client(d)
    oid = one.vn.allocate(NET, -1)
    wait_state(one, oid, 1)
    ipam = one.vn.allocate(
        'NAME="ipam"\nVN_MAD="dummy"\nBRIDGE="b"\n'
        'AR=[TYPE="IP4", IP="10.7.0.1", SIZE="20", IPAM_MAD="dummy"]',
        -1,
    )
    wait_state(one, ipam, 1)
    assert [str(a.IP) for a in one.vn.info(ipam).AR_POOL.AR] == ["10.7.0.1"]
    one.vn.hold(ipam, 'LEASES=[IP="10.7.0.3"]')
    assert one.vn.info(ipam).USED_LEASES == 1
    one.vn.release(ipam, 'LEASES=[IP="10.7.0.3"]')
    one.vn.rm_ar(ipam, 0)
    one.vn.delete(ipam)
    one.vn.delete(oid)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and one.vnpool.info(-2, -1, -1).VNET:
        time.sleep(0.1)
    assert not one.vnpool.info(-2, -1, -1).VNET


def test_kill_after_holds_keeps_every_lease(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    """kill -9 right after acknowledged holds (journal rows, body not yet rewritten):
    the restart replays them; release and the pool listing agree."""
    d = make_daemon(tmp_path / "one")
    d.start(timeout=60)
    one = client(d)
    oid = one.vn.allocate(NET, -1)
    wait_state(one, oid, 1)
    for i in range(30):
        one.vn.hold(oid, f'LEASES=[IP="10.0.0.{10 + i}"]')
    d.stop(signal.SIGKILL)
    d.start(timeout=60)
    one = client(d)
    assert one.vn.info(oid).USED_LEASES == 30
    assert one.vnpool.info(-2, -1, -1).VNET[0].USED_LEASES == 30
    with pytest.raises(pyone.OneInternalException):
        one.vn.hold(oid, 'LEASES=[IP="10.0.0.10"]')
    one.vn.release(oid, 'LEASES=[IP="10.0.0.10"]')
    assert one.vn.info(oid).USED_LEASES == 29
