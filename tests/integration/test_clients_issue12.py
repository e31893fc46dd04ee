"""Issue 12's families through OpenNebula's Ruby CLI, with OpenNebula's own drivers under
our core: one_market.rb (our dummy market remotes), one_datastore.rb (its dummy and fs
remotes: the fs export of an image, the dummy restore of a backup), one_vmm_dummy.rb
(BACKUP) and one_tm.rb.

One daemon, one test: onezone list/show/server-add; onevdc create/addgroup/addcluster/
show/list; onevmgroup create/role-add/list/show; onevrouter create/instantiate/nic-attach/
nic-detach/show/list; onemarket create/list; onemarketapp create (an image exported to a
market app by the drivers), list/show, export (the app imported into a datastore as an
image); onevm backup into a BACKUP datastore, oneimage restore; onebackupjob create/
backup/list/show. Every ``-x`` document validates against the XSD.

Local only: ``ONE_RUBY_CLI`` (an installed Ruby CLI tree: bin/, lib/ruby, etc/cli) and
``ONE_SOURCE_TREE`` (OpenNebula's source), ruby and qemu-img. Skipped otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from xml.etree import ElementTree

import pyone
import pytest

from . import xsd
from .conftest import Daemon

pytestmark = pytest.mark.slow

RUBY_CLI = os.environ.get("ONE_RUBY_CLI", "")
SOURCE = os.environ.get("ONE_SOURCE_TREE", "")
REPO = Path(__file__).resolve().parents[2]
ACTIVE, RUNNING, POWEROFF = 3, 3, 8
T = TypeVar("T")

skip_reason = ""
if not RUBY_CLI or not SOURCE:
    skip_reason = "set ONE_RUBY_CLI (a Ruby CLI tree) and ONE_SOURCE_TREE (OpenNebula's source)"
elif shutil.which("ruby") is None or shutil.which("qemu-img") is None:
    skip_reason = "ruby and qemu-img are needed"


class Issue12Daemon(Daemon):
    @property
    def env(self) -> dict[str, str]:
        return dict(super().env, RUBYLIB=str(self.root / "lib" / "ruby"))


def issue12_daemon(root: Path) -> Issue12Daemon:
    """OpenNebula's VMM dummy, TM, datastore and market drivers in ``root``; the market
    remotes are our dummy ones (OpenNebula ships none), the datastore remotes
    OpenNebula's dummy and fs (whose export prints the IMPORT_INFO one_market.rb
    parses; its dummy export prints a bare path, on which one_market.rb raises)."""
    from .drivers_common import install_opennebula

    source = Path(SOURCE)
    install_opennebula(source, root, ["vmm", "tm", "datastore", "market"])
    remotes = root / "var" / "remotes"
    shutil.copytree(REPO / "drivers/remotes/market/dummy", remotes / "market" / "dummy")
    shutil.copytree(source / "src/datastore_mad/remotes/fs", remotes / "datastore" / "fs")
    shutil.copy(source / "src/datastore_mad/remotes/downloader.sh", remotes / "datastore")
    (remotes / "etc" / "datastore" / "fs").mkdir(parents=True)
    shutil.copy(source / "src/datastore_mad/remotes/fs/fs.conf", remotes / "etc/datastore/fs")
    return Issue12Daemon(
        root,
        replace_conf={
            "-t 15 -d dummy -s dummy": "-t 15 -d dummy,fs -s dummy,fs",
            "MONITORING_INTERVAL_MARKET    = 600": "MONITORING_INTERVAL_MARKET    = 3",
        },
        extra_conf="SCHED_MAX_WND_TIME = 1\nSCHED_RETRY_TIME = 2\nMANAGER_TIMER = 1\n",
    )


def wait(check: Callable[[], T], d: Daemon, what: str, secs: float = 60) -> T:
    deadline = time.monotonic() + secs
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, (what, d.log()[-3000:])
        time.sleep(0.3)


@pytest.mark.skipif(bool(skip_reason), reason=skip_reason or "-")
def test_ruby_cli_issue12(tmp_path: Path) -> None:
    d = issue12_daemon(tmp_path / "one")
    d.start(timeout=90)
    try:
        _issue12(d, tmp_path)
    finally:
        d.stop()


def _issue12(d: Daemon, tmp: Path) -> None:  # noqa: PLR0915
    root = Path(RUBY_CLI)
    (tmp / "auth").write_text(d.session + "\n")
    env = dict(
        os.environ,
        ONE_LOCATION=str(root),
        ONE_XMLRPC=d.url,
        ONE_AUTH=str(tmp / "auth"),
        HOME=str(tmp),
        # onezone's helper requires CommandManager (src/mad/ruby)
        RUBYLIB=f"{root}/lib/ruby:{root}/lib/ruby/cli:{SOURCE}/src/mad/ruby",
    )

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

    def xml(*cmd: str) -> ElementTree.Element:
        body = cli(*cmd, "-x")
        assert not xsd.errors(body), (cmd, xsd.errors(body))
        return ElementTree.fromstring(body)

    def write(name: str, text: str) -> str:
        (tmp / name).write_text(text)
        return str(tmp / name)

    one = pyone.OneServer(d.url, session=d.session, timeout=30)

    # -- zones ---------------------------------------------------------------------------
    assert "OpenNebula" in cli("onezone", "list")
    assert "ZONE 0 INFORMATION" in cli("onezone", "show", "0")
    cli("onezone", "server-add", "0", "--name", "srv1", "--rpc", "http://127.0.0.1:2633/RPC2")
    shown = cli("onezone", "show", "0")
    assert "ZONE SERVERS" in shown and "srv1" in shown, shown
    zone = ElementTree.fromstring(cli("onezone", "show", "0", "-x"))
    assert zone.findtext("SERVER_POOL/SERVER/NAME") == "srv1"

    # -- VDCs ----------------------------------------------------------------------------
    assert cli("onevdc", "create", "vdc1").strip() == "ID: 100"
    cli("onegroup", "create", "g1")
    cli("onevdc", "addgroup", "vdc1", "g1")
    cli("onevdc", "addcluster", "vdc1", "0", "0")
    shown = cli("onevdc", "show", "vdc1")
    assert "GROUPS" in shown and "100" in shown and "CLUSTERS" in shown, shown
    vdc = xml("onevdc", "show", "vdc1")
    assert [g.text for g in vdc.findall("GROUPS/ID")] == ["100"]
    assert vdc.findtext("CLUSTERS/CLUSTER/CLUSTER_ID") == "0"
    assert " vdc1 " in cli("onevdc", "list")
    xml("onevdc", "list")

    # -- VM groups -----------------------------------------------------------------------
    cli(
        "onevmgroup",
        "create",
        write(
            "vmg",
            'NAME="grp"\nROLE=[NAME="web", POLICY="ANTI_AFFINED"]\n'
            'ROLE=[NAME="db", POLICY="AFFINED"]\n',
        ),
    )
    cli("onevmgroup", "role-add", "grp", write("role", 'NAME="cache"\nPOLICY="AFFINED"\n'))
    assert "web, db, cache" in cli("onevmgroup", "list")
    assert "cache" in cli("onevmgroup", "show", "grp")
    group = xml("onevmgroup", "show", "grp")
    assert [r.findtext("NAME") for r in group.findall("ROLES/ROLE")] == ["web", "db", "cache"]
    xml("onevmgroup", "list")

    # -- infrastructure for routers, apps and backups ------------------------------------
    cli("onehost", "create", "host0", "-i", "dummy", "-v", "dummy")
    cli("onedatastore", "update", "0", write("sys", 'TM_MAD="dummy"\n'), "--append")
    cli("onedatastore", "update", "1", write("img", 'DS_MAD="fs"\nTM_MAD="dummy"\n'), "--append")
    cli(
        "onedatastore",
        "create",
        write("dumds", 'NAME="dumds"\nTYPE="IMAGE_DS"\nDS_MAD="dummy"\nTM_MAD="dummy"\n'),
    )
    cli(
        "onedatastore",
        "create",
        write("bk", 'NAME="bk"\nTYPE="BACKUP_DS"\nDS_MAD="dummy"\nTM_MAD="-"\n'),
    )
    for name, net in (("net", "10.0.0.10"), ("net2", "10.1.0.10")):
        cli(
            "onevnet",
            "create",
            write(
                name,
                f'NAME="{name}"\nVN_MAD="dummy"\nBRIDGE="br-{name}"\n'
                f'AR=[TYPE="IP4", IP="{net}", SIZE="20"]\n',
            ),
        )
    wait(
        lambda: one.host.info(0).STATE == 2 and one.datastore.info(1).TOTAL_MB > 0,
        d,
        "host0 and datastore 1 monitored",
    )

    # a VM of the group's role "web", placed by our scheduler, in the role's VMS
    out = cli(
        "onevm",
        "create",
        write(
            "gv", 'NAME="gv"\nCPU="0.1"\nMEMORY="32"\nVMGROUP=[VMGROUP_NAME="grp", ROLE="web"]\n'
        ),
    )
    gv = int(out.split()[-1])
    wait(lambda: one.vm.info(gv).LCM_STATE == RUNNING, d, "the group's VM running")
    group = xml("onevmgroup", "show", "grp")
    assert group.findtext("ROLES/ROLE[NAME='web']/VMS") == str(gv)
    web = next(x for x in cli("onevmgroup", "show", "grp").splitlines() if x.startswith("0 "))
    assert web.split()[1:3] == ["web", "ANTI_AFFINED"] and web.split()[-1] == str(gv), web
    one.vm.action("terminate-hard", gv)

    # -- virtual routers -----------------------------------------------------------------
    cli(
        "onetemplate",
        "create",
        write("vrt", 'NAME="vrtpl"\nCPU="0.1"\nMEMORY="64"\nVROUTER="YES"\n'),
    )
    cli("onevrouter", "create", write("vr", 'NAME="vr1"\nNIC=[NETWORK="net", FLOATING_IP="YES"]\n'))
    cli("onevrouter", "instantiate", "vr1", "vrtpl", "-m", "2")
    router = xml("onevrouter", "show", "vr1")
    vms = [int(i.text or -1) for i in router.findall("VMS/ID")]
    assert len(vms) == 2
    for vid in vms:
        wait(
            lambda vid=vid: (
                (one.vm.info(vid).STATE, one.vm.info(vid).LCM_STATE)  # type: ignore[misc]
                == (ACTIVE, RUNNING)
            ),
            d,
            f"router VM {vid} running",
        )
    floating = router.findtext("TEMPLATE/NIC/IP")
    cli("onevrouter", "nic-attach", "vr1", "--network", "net2")
    for vid in vms:
        wait(lambda vid=vid: len(one.vm.info(vid).TEMPLATE["NIC"]) == 2, d, "NIC attached")  # type: ignore[misc]
        wait(
            lambda vid=vid: one.vm.info(vid).LCM_STATE == RUNNING,  # type: ignore[misc]
            d,
            "back to RUNNING",
        )
    shown = cli("onevrouter", "show", "vr1")
    assert "net2" in shown and f"{floating}" in shown, shown
    assert "10.0.0.10 (VRouter)" in cli("onevm", "show", str(vms[0]))
    cli("onevrouter", "nic-detach", "vr1", "1")
    for vid in vms:
        wait(lambda vid=vid: isinstance(one.vm.info(vid).TEMPLATE["NIC"], dict), d, "NIC detached")  # type: ignore[misc]
    assert len(xml("onevrouter", "show", "vr1").findall("TEMPLATE/NIC")) == 1
    assert " vr1" in cli("onevrouter", "list")
    xml("onevrouter", "list")

    # -- marketplaces and apps -----------------------------------------------------------
    cli("onemarket", "create", write("mk", 'NAME="dmk"\nMARKET_MAD="dummy"\n'))
    assert " dmk " in cli("onemarket", "list")
    # MONITOR through one_market.rb and our dummy monitor remote: the capacity
    market = wait(
        lambda: next(
            (m for m in one.marketpool.info().MARKETPLACE if m.NAME == "dmk" and m.TOTAL_MB),
            None,
        ),
        d,
        "the dummy market monitored",
    )
    assert (market.TOTAL_MB, market.FREE_MB, market.USED_MB) == (1048576, 1048576, 0)
    assert "1024G" in cli("onemarket", "list")
    xml("onemarket", "list")
    disk = Path("/var/tmp") / f"oned-issue12-{os.getpid()}.qcow2"  # under SAFE_DIRS
    subprocess.run(
        ["qemu-img", "create", "-f", "qcow2", str(disk), "10M"], check=True, capture_output=True
    )
    try:
        cli("oneimage", "create", "-d", "default", "--name", "img", "--path", str(disk))
        wait(lambda: one.image.info(0).STATE == 1, d, "image READY (fs cp)")
    finally:
        disk.unlink()
    assert cli("onemarketapp", "create", "--image", "img", "--market", "dmk", "--name", "app")
    wait(lambda: one.marketapp.info(0).STATE == 1, d, "app READY (fs export, dummy import)")
    app = xml("onemarketapp", "show", "app")
    assert app.findtext("SOURCE") == "dummy://apps/0"
    assert (app.findtext("FORMAT"), app.findtext("SIZE")) == ("qcow2", "10")
    assert one.image.info(0).STATE == 1  # unlocked again
    assert " app " in cli("onemarketapp", "list") and "rdy" in cli("onemarketapp", "list")
    assert "dummy://apps/0" in cli("onemarketapp", "show", "app")
    xml("onemarketapp", "list")
    cli("onemarketapp", "export", "app", "fromapp", "-d", "dumds")
    imported = wait(
        lambda: next(
            (i for i in one.imagepool.info(-2, -1, -1).IMAGE if i.NAME == "fromapp"), None
        ),
        d,
        "the app's image",
    )
    wait(lambda: one.image.info(imported.ID).STATE == 1, d, "imported image READY")
    assert one.image.info(imported.ID).DATASTORE == "dumds"

    # -- VM backups ----------------------------------------------------------------------
    cli(
        "onetemplate",
        "create",
        write("bt", 'NAME="btpl"\nCPU="0.1"\nMEMORY="64"\nDISK=[IMAGE="fromapp"]\n'),
    )
    vid = int(cli("onetemplate", "instantiate", "btpl", "--name", "bvm").split()[-1])
    wait(
        lambda: (one.vm.info(vid).STATE, one.vm.info(vid).LCM_STATE) == (ACTIVE, RUNNING), d, "bvm"
    )
    cli("onevm", "backup", "bvm", "-d", "bk")
    backups = wait(
        lambda: xml("onevm", "show", "bvm").findall("BACKUPS/BACKUP_IDS/ID"), d, "backup"
    )
    assert one.vm.info(vid).LCM_STATE == RUNNING
    backup = one.image.info(int(backups[0].text or -1))
    assert (backup.TYPE, backup.SOURCE, backup.DATASTORE) == (6, "dummy-backup-id", "bk")
    # one.image.restore through one_datastore.rb's dummy restore ("<template id> <images>")
    assert cli("oneimage", "restore", str(backup.ID), "-d", "dumds").split() == [
        "VM",
        "Template:",
        "0",
        "Images:",
        "dummy_image",
    ]

    # onevm restore (POWEROFF): one_tm.rb's dummy RESTORE, back to POWEROFF
    cli("onevm", "poweroff", "bvm")
    wait(lambda: one.vm.info(vid).STATE == POWEROFF, d, "bvm off")
    cli("onevm", "restore", "bvm", str(backup.ID))
    wait(
        lambda: one.vm.info(vid).STATE == POWEROFF and one.vm.info(vid).LCM_STATE == 0,
        d,
        "restored",
    )
    cli("onevm", "resume", "bvm")
    wait(lambda: one.vm.info(vid).LCM_STATE == RUNNING, d, "bvm resumed")
    # deleting the backup image (one_datastore.rb's dummy rm) leaves the VM's BACKUP_IDS
    cli("oneimage", "delete", str(backup.ID))
    wait(lambda: not xml("onevm", "show", "bvm").findall("BACKUPS/BACKUP_IDS/ID"), d, "rm")

    # -- backup jobs ---------------------------------------------------------------------
    bk = next(ds.ID for ds in one.datastorepool.info().DATASTORE if ds.NAME == "bk")
    cli(
        "onebackupjob",
        "create",
        write("bj", f'NAME="bj"\nBACKUP_VMS="{vid}"\nDATASTORE_ID="{bk}"\nMODE="FULL"\n'),
    )
    cli("onebackupjob", "backup", "bj")
    wait(lambda: len(xml("onevm", "show", "bvm").findall("BACKUPS/BACKUP_IDS/ID")) == 1, d, "job")
    job = wait(
        lambda: (j := xml("onebackupjob", "show", "bj")).findtext("LAST_BACKUP_TIME") != "0" and j,
        d,
        "the job's last run",
    )
    assert [i.text for i in job.findall("UPDATED_VMS/ID")] == [str(vid)]
    shown = cli("onebackupjob", "show", "bj")
    assert "LAST BACKUP JOB EXECUTION INFORMATION" in shown and "UPDATED" in shown
    assert " bj " in cli("onebackupjob", "list")
    xml("onebackupjob", "list")
