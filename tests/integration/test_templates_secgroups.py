"""VM templates and security groups end to end: pyone over HTTP against a real oned."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import xmlrpc.client
from collections.abc import Callable
from pathlib import Path

import pyone
import pytest

from . import xsd
from .conftest import Daemon, MakeDaemon

pytestmark = pytest.mark.slow

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "samples"

T9 = """NAME="sample-secgroup"
DESCRIPTION="web and ssh"
RULE=[PROTOCOL="TCP", RULE_TYPE="inbound", RANGE="22,80,443"]
RULE=[PROTOCOL="ICMP", RULE_TYPE="inbound", ICMP_TYPE="8"]
RULE=[PROTOCOL="UDP", RULE_TYPE="inbound", RANGE="53", IP="10.0.0.0", SIZE="256"]
RULE=[PROTOCOL="ALL", RULE_TYPE="outbound"]
"""

T17 = """NAME="sample-template"
CPU="0.5"
VCPU="1"
MEMORY="256"
DESCRIPTION="VM template with a disk, a NIC and context"
DISK=[IMAGE_ID="1"]
NIC=[NETWORK_ID="0"]
CONTEXT=[NETWORK="YES", SSH_PUBLIC_KEY="$USER[SSH_PUBLIC_KEY]", SAMPLE_VAR="hello"]
GRAPHICS=[TYPE="VNC", LISTEN="0.0.0.0"]
OS=[ARCH="x86_64", BOOT="disk0"]
SCHED_REQUIREMENTS="HYPERVISOR=\\"dummy\\""
LOGO="images/logos/linux.png"
"""


def client(d: Daemon, session: str | None = None) -> pyone.OneServer:
    return pyone.OneServer(d.url, session=session or d.session, timeout=30)


def raw(d: Daemon) -> xmlrpc.client.ServerProxy:
    return xmlrpc.client.ServerProxy(d.url)


def sample(name: str) -> str | None:
    path = SAMPLES / name
    return path.read_text(encoding="utf-8") if path.is_file() else None


def no_regtime(text: str) -> str:
    return re.sub(r"<REGTIME>\d+</REGTIME>", "<REGTIME/>", text)


def wait_for(check: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_secgroups_through_pyone(daemon: Daemon) -> None:
    """Every one.secgroup.* call through pyone; documents as oned writes them."""
    one = client(daemon)
    rpc = raw(daemon)
    s = daemon.session
    assert one.secgroup.allocate(T9) == 100
    expected = sample("one.secgroup.info.xml")
    if expected is not None:
        assert rpc.one.secgroup.info(s, 100)[1] == expected
        assert rpc.one.secgroup.info(s, 0)[1] == sample("one.secgroup.info.default-0.xml")
        assert rpc.one.secgrouppool.info(s, -2, -1, -1)[1] == sample("one.secgrouppool.info.xml")
    group = one.secgroup.info(100)
    assert (group.NAME, group.UNAME) == ("sample-secgroup", "oneadmin")
    assert [g.ID for g in one.secgrouppool.info(-2, -1, -1).SECURITY_GROUP] == [100, 0]
    with pytest.raises(pyone.OneInternalException, match="Wrong PROTOCOL in rule"):
        one.secgroup.allocate('NAME=bad\nRULE=[PROTOCOL="GRE",RULE_TYPE="inbound"]')
    with pytest.raises(pyone.OneInternalException, match="RANGE out of bounds 0-65536."):
        one.secgroup.update(100, 'RULE=[PROTOCOL=TCP,RULE_TYPE=inbound,RANGE="1:99999"]', 1)
    one.secgroup.update(100, 'RULE=[PROTOCOL=TCP,RULE_TYPE=inbound,RANGE="22"]', 1)
    assert one.secgroup.info(100).TEMPLATE["DESCRIPTION"] == "web and ssh"
    assert one.secgroup.commit(100, False) == 100
    copy = one.secgroup.clone(100, "copy")
    one.secgroup.rename(copy, "copy2")
    one.secgroup.chmod(copy, -1, -1, -1, 1, -1, -1, 1, -1, -1)
    uid = one.user.allocate("sam", "pw", "")
    one.secgroup.chown(copy, uid, 1)
    mine = client(daemon, "sam:pw")
    assert mine.secgroup.info(copy).NAME == "copy2"
    with pytest.raises(pyone.OneAuthorizationException):
        mine.secgroup.update(100, "A=1", 1)
    with pytest.raises(pyone.OneActionException, match="ID 0"):
        one.secgroup.delete(0)
    one.secgroup.delete(copy)
    with pytest.raises(pyone.OneNoExistsException):
        one.secgroup.info(copy)


def test_templates_through_pyone(daemon: Daemon) -> None:
    """Every one.template.* call but instantiate (the VM family's) through pyone."""
    one = client(daemon)
    rpc = raw(daemon)
    s = daemon.session
    assert one.template.allocate(T17) == 0
    expected = sample("one.template.info.xml")
    if expected is not None:
        assert no_regtime(rpc.one.template.info(s, 0)[1]) == no_regtime(expected)
        assert no_regtime(rpc.one.templatepool.info(s, -2, -1, -1)[1]) == no_regtime(
            sample("one.templatepool.info.xml") or ""
        )
    info = one.template.info(0)
    assert (info.NAME, info.TEMPLATE["MEMORY"]) == ("sample-template", "256")
    assert one.template.info(0, True).TEMPLATE["DISK"]["DISK_ID"] == "0"
    copy = one.template.clone(0, "copy")
    one.template.update(copy, 'MEMORY="512"', 1)
    assert one.template.info(copy).TEMPLATE["MEMORY"] == "512"
    one.template.rename(copy, "copy2")
    one.template.chmod(copy, -1, -1, -1, 1, -1, -1, -1, -1, -1)
    one.template.lock(copy, 1, False)
    with pytest.raises(pyone.OneAuthorizationException, match="locked"):
        one.template.update(copy, "A=1", 1)
    one.template.unlock(copy)
    uid = one.user.allocate("tim", "pw", "")
    one.template.chown(copy, uid, 1)
    tim = client(daemon, "tim:pw")
    assert [t.ID for t in tim.templatepool.info(-3, -1, -1).VMTEMPLATE] == [copy]
    with pytest.raises(pyone.OneAuthorizationException, match="restricted attribute MAC"):
        tim.template.allocate('NAME="n"\nNIC=[NETWORK_ID=0, MAC="02:00:00:00:00:01"]')
    with pytest.raises(pyone.OneInternalException, match="restricted attribute CPU_COST"):
        tim.template.update(copy, "CPU_COST=9", 1)
    one.template.delete(copy)
    with pytest.raises(pyone.OneNoExistsException):
        one.template.info(copy)


@pytest.mark.skipif(not xsd.available(), reason="../shared/xsd not present")
def test_documents_validate_against_xsd(daemon: Daemon) -> None:
    one = client(daemon)
    one.template.allocate(T17)
    one.template.lock(0, 2, False)
    one.secgroup.allocate("NAME=s\nDESCRIPTION=d\nRULE=[PROTOCOL=TCP,RULE_TYPE=inbound]")
    rpc = raw(daemon)
    for method, *args in (
        ("one.template.info", 0),
        ("one.template.info", 0, True),
        ("one.templatepool.info", -2, -1, -1),
        ("one.secgroup.info", 0),
        ("one.secgroup.info", 100),
        ("one.secgrouppool.info", -2, -1, -1),
    ):
        reply = getattr(rpc, method)(daemon.session, *args)
        assert reply[0], (method, reply)
        assert xsd.errors(reply[1]) == [], method


def test_recursive_clone_and_delete_with_images(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    """clone/delete recursive copy and remove the DISK images through the image family."""
    d = make_daemon(
        tmp_path / "one",
        replace_conf={"MONITORING_INTERVAL_DATASTORE = 300": "MONITORING_INTERVAL_DATASTORE = 1"},
    )
    d.start()
    one = client(d)
    one.datastore.update(1, 'DS_MAD="dummy"\nTM_MAD="dummy"', 1)
    wait_for(lambda: one.datastore.info(1).TOTAL_MB > 0, what="datastore monitoring")
    img = one.image.allocate('NAME="os"\nTYPE="OS"\nPATH="/tmp/os.img"', 1)
    wait_for(lambda: one.image.info(img).STATE == 1, what="image READY")
    tid = one.template.allocate(
        'NAME="t"\nCPU=1\nMEMORY=64\nDISK=[IMAGE="os"]\nDISK=[TYPE=fs,SIZE=1]'
    )
    ext = one.template.info(tid, True).TEMPLATE["DISK"]
    assert ext[0]["IMAGE_ID"] == str(img) and ext[0]["SOURCE"] == "dummy_path"
    copy = one.template.clone(tid, "t2", True)
    disks = one.template.info(copy).TEMPLATE["DISK"]
    new_img = int(disks[0]["IMAGE_ID"])
    assert new_img != img and "IMAGE" not in disks[0]
    assert one.image.info(new_img).NAME == "t2-disk-0"
    wait_for(lambda: one.image.info(new_img).STATE == 1, what="clone READY")
    one.template.chmod(copy, -1, -1, -1, 1, -1, -1, -1, -1, -1, True)
    assert one.image.info(new_img).PERMISSIONS.GROUP_U == 1
    one.template.delete(copy, True)
    wait_for(lambda: [i.ID for i in one.imagepool.info(-2, -1, -1).IMAGE] == [img], what="image RM")
    # instantiate with persistent=true: a private copy named after the VM, its images
    # cloned as persistent ones, the user's text merged into the copy.
    vid = one.template.instantiate(tid, "vm1", True, "MEMORY=128", True)
    copies = [t for t in one.templatepool.info(-2, -1, -1).VMTEMPLATE if t.NAME == "vm1"]
    assert len(copies) == 1 and copies[0].TEMPLATE["MEMORY"] == "128"
    disk_img = int(copies[0].TEMPLATE["DISK"][0]["IMAGE_ID"])
    assert one.image.info(disk_img).NAME == "vm1-disk-0"
    assert one.image.info(disk_img).PERSISTENT == 1
    vm = one.vm.info(vid)
    assert vm.TEMPLATE["TEMPLATE_ID"] == str(copies[0].ID)
    assert vm.TEMPLATE["CLONING_TEMPLATE_ID"] == str(tid)


def test_state_survives_kill9(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    """Acknowledged templates and groups are there after kill -9; group 0 stays single."""
    d = make_daemon(tmp_path / "one")
    d.start()
    one = client(d)
    tid = one.template.allocate(T17)
    sg = one.secgroup.allocate(T9)
    d.stop(signal.SIGKILL)
    d.start()
    one = client(d)
    assert one.template.info(tid).NAME == "sample-template"
    assert [g.ID for g in one.secgrouppool.info(-2, -1, -1).SECURITY_GROUP] == [sg, 0]
    assert one.secgroup.allocate("NAME=next") == sg + 1


RUBY_CLI = os.environ.get("ONE_RUBY_CLI", "")


def ruby(d: Daemon, home: Path, *cmd: str) -> subprocess.CompletedProcess[str]:
    root = Path(RUBY_CLI)
    auth = home / "ruby_auth"
    auth.write_text(d.session + "\n")
    env = dict(
        os.environ,
        ONE_LOCATION=str(root),
        ONE_XMLRPC=d.url,
        ONE_AUTH=str(auth),
        HOME=str(home),
        RUBYLIB=f"{root}/lib/ruby:{root}/lib/ruby/cli",
    )
    return subprocess.run(
        [str(root / "bin" / cmd[0]), *cmd[1:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.skipif(not RUBY_CLI, reason="set ONE_RUBY_CLI to an installed Ruby CLI tree")
def test_ruby_cli(daemon: Daemon, tmp_path: Path) -> None:
    """onesecgroup and onetemplate create/list/show/update/clone/delete."""
    sg = tmp_path / "sg.txt"
    sg.write_text(T9)
    extra = tmp_path / "rule.txt"
    extra.write_text('RULE=[PROTOCOL="UDP", RULE_TYPE="outbound", RANGE="53"]\n')
    tmpl = tmp_path / "t.txt"
    tmpl.write_text('NAME="tmpl"\nCPU=1\nMEMORY=64\nNIC=[NETWORK_ID=0]\n')
    more = tmp_path / "t2.txt"
    more.write_text("MEMORY=128\n")
    for cmd in (
        ("onesecgroup", "create", str(sg)),
        ("onesecgroup", "list"),
        ("onesecgroup", "show", "100"),
        ("onesecgroup", "update", "100", str(extra), "--append"),
        ("onesecgroup", "clone", "100", "web2"),
        ("onesecgroup", "commit", "100"),
        ("onesecgroup", "delete", "101"),
        ("onetemplate", "create", str(tmpl)),
        ("onetemplate", "list"),
        ("onetemplate", "show", "0"),
        ("onetemplate", "update", "0", str(more), "--append"),
        ("onetemplate", "clone", "0", "tmpl2"),
        ("onetemplate", "delete", "1"),
    ):
        done = ruby(daemon, tmp_path, *cmd)
        assert done.returncode == 0, (cmd, done.stdout, done.stderr)
    assert "sample-secgroup" in ruby(daemon, tmp_path, "onesecgroup", "list").stdout
    assert 'MEMORY="128"' in ruby(daemon, tmp_path, "onetemplate", "show", "0").stdout
    refused = ruby(daemon, tmp_path, "onesecgroup", "delete", "0")
    assert refused.returncode != 0
    assert "The default security group (ID 0) cannot be deleted." in refused.stdout + refused.stderr
