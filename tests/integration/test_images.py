"""Images end to end: pyone over HTTP against a real oned with our datastore driver
(one_datastore + remotes/datastore/dummy), including a kill -9 in the middle of a copy."""

from __future__ import annotations

import os
import shutil
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

FAST_MONITOR = {"MONITORING_INTERVAL_DATASTORE = 300": "MONITORING_INTERVAL_DATASTORE = 1"}


def client(d: Daemon, session: str | None = None) -> pyone.OneServer:
    return pyone.OneServer(d.url, session=session or d.session, timeout=30)


def raw(d: Daemon) -> xmlrpc.client.ServerProxy:
    return xmlrpc.client.ServerProxy(d.url)


def wait_for(check: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def dummy_datastore(d: Daemon) -> None:
    """Datastore 1 on the dummy drivers, monitored (so it has free space)."""
    one = client(d)
    one.datastore.update(1, 'DS_MAD="dummy"\nTM_MAD="dummy"', 1)
    wait_for(lambda: one.datastore.info(1).TOTAL_MB == 20480, what="datastore monitoring")


def state(one: pyone.OneServer, oid: int) -> int:
    return int(one.image.info(oid).STATE)


def test_image_lifecycle_through_pyone(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    """allocate (MKFS, CP), clone, persistent, chtype, enable, delete: all through
    the driver, documents XSD-valid."""
    d = make_daemon(tmp_path / "one", replace_conf=FAST_MONITOR)
    d.start()
    dummy_datastore(d)
    one = client(d)
    one.datastore.update(0, 'TM_MAD="dummy"', 1)  # shared: monitored through tm/dummy/monitor
    wait_for(lambda: one.datastore.info(0).TOTAL_MB == 4796800, what="system DS monitoring")
    datablock = one.image.allocate('NAME="db"\nTYPE="DATABLOCK"\nSIZE="256"', 1)
    os_img = one.image.allocate(
        'NAME="os"\nTYPE="OS"\nPATH="https://example.org/os.qcow2"\nDEV_PREFIX="vd"', 1
    )
    assert (datablock, os_img) == (0, 1)
    wait_for(lambda: state(one, 0) == 1 and state(one, 1) == 1, what="images READY")
    img = one.image.info(1)
    assert (img.SOURCE, img.FORMAT, img.SIZE) == ("dummy_path", "dummy_format", 1024)
    clone = one.image.clone(1, "os-clone")
    wait_for(lambda: state(one, clone) == 1, what="clone READY")
    assert one.image.info(1).STATE == 1
    one.image.persistent(0, True)
    assert one.image.info(0).PERSISTENT == 1
    one.image.chtype(0, "OS")
    one.image.enable(0, False)
    assert state(one, 0) == 3
    one.image.enable(0, True)
    for method, params in (
        ("one.image.info", (0,)),
        ("one.imagepool.info", (-2, -1, -1)),
        ("one.datastore.info", (1,)),
    ):
        doc = getattr(raw(d), method)(d.session, *params)[1]
        assert xsd.errors(doc) == [], method
    pool = one.imagepool.info(-2, -1, -1)
    assert [i.ID for i in pool.IMAGE] == [2, 1, 0]
    assert one.datastore.info(1).IMAGES.ID == [0, 1, 2]
    with pytest.raises(pyone.OneException):
        one.image.chtype(0, "KERNEL")
    one.image.delete(clone)
    wait_for(lambda: len(one.imagepool.info(-2, -1, -1).IMAGE) == 2, what="RM")
    assert one.datastore.info(1).IMAGES.ID == [0, 1]
    reply = raw(d).one.image.allocate(d.session, 'NAME="big"\nTYPE=DATABLOCK\nSIZE=99999', 1)
    assert reply[:3] == [False, "[one.image.allocate] Not enough space in datastore", 0x800]
    reply = raw(d).one.image.allocate(d.session, 'NAME="x"\nTYPE=DATABLOCK\nSIZE=1', 0)
    assert reply[2] == 0x4000


def test_kill9_during_copy_resumes(
    make_daemon: MakeDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 while the dummy driver copies: the restart re-issues CP, nothing stays LOCKED."""
    monkeypatch.setenv("ONE_DUMMY_DS_DELAY", "30")
    d = make_daemon(tmp_path / "one", replace_conf=FAST_MONITOR)
    d.start()
    one = client(d)
    one.datastore.update(1, 'DS_MAD="dummy"\nTM_MAD="dummy"', 1)
    wait_for(lambda: one.datastore.info(1).TOTAL_MB == 20480, what="datastore monitoring")
    oid = one.image.allocate('NAME="slow"\nTYPE=OS\nPATH="http://example.org/a.img"', 1)
    db = one.image.allocate('NAME="slow-db"\nTYPE=DATABLOCK\nSIZE=10', 1)
    assert state(one, oid) == 4 and state(one, db) == 4
    d.stop(signal.SIGKILL)
    monkeypatch.delenv("ONE_DUMMY_DS_DELAY")
    d.start()
    one = client(d)
    wait_for(lambda: state(one, oid) == 1 and state(one, db) == 1, what="resumed actions")
    assert one.image.info(oid).SOURCE == "dummy_path"
    assert "Resuming CP of image 0" in d.log()
    assert one.datastore.info(1).IMAGES.ID == [0, 1]


def test_driver_death_fails_the_copy(
    make_daemon: MakeDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The datastore driver dies during a copy: the image goes to ERROR (not LOCKED for
    ever) and images work again once the driver is restarted."""
    monkeypatch.setenv("ONE_DUMMY_DS_DELAY", "30")
    d = make_daemon(tmp_path / "one", replace_conf=FAST_MONITOR)
    d.start()
    dummy_datastore(d)
    one = client(d)
    oid = one.image.allocate('NAME="slow"\nTYPE=OS\nPATH="http://example.org/a.img"', 1)
    assert d.proc is not None
    ps = subprocess.run(
        ["ps", "-ww", "-o", "pid=,args=", "--ppid", str(d.proc.pid)],
        check=False,
        capture_output=True,
        text=True,
    )
    pids = [int(line.split()[0]) for line in ps.stdout.splitlines() if "one_datastore" in line]
    assert pids, ps.stdout
    os.kill(pids[0], signal.SIGKILL)
    wait_for(lambda: state(one, oid) == 5, what="image in ERROR")
    assert "Error copying image in the datastore" in one.image.info(oid).TEMPLATE["ERROR"]
    assert d.alive()


SOURCE = os.environ.get("ONE_SOURCE_TREE", "")
NO_RUBY_DRIVER = (
    "ONE_SOURCE_TREE does not point at an OpenNebula source tree"
    if not SOURCE or not Path(SOURCE, "src", "datastore_mad", "one_datastore").exists()
    else "ruby is not installed"
    if shutil.which("ruby") is None
    else ""
)


def install_one_datastore(root: Path) -> None:
    """OpenNebula's one_datastore and its dummy remotes in ``root`` (drivers.md 4.9);
    every other family keeps our drivers (found in the checkout)."""
    src = Path(SOURCE)
    mads = root / "lib" / "mads"
    mads.mkdir(parents=True)
    shutil.copy(src / "src/mad/sh/madcommon.sh", mads)
    for name in ("one_datastore", "one_datastore.rb"):
        shutil.copy(src / "src/datastore_mad" / name, mads)
        (mads / name).chmod(0o755)
    ruby = root / "lib" / "ruby"
    shutil.copytree(src / "src/mad/ruby", ruby, ignore=shutil.ignore_patterns("test"))
    shutil.copy(src / "share/rubygems/load_opennebula_paths.rb", ruby)
    remotes = root / "var" / "remotes" / "datastore"
    shutil.copytree(src / "src/datastore_mad/remotes/dummy", remotes / "dummy")
    for name in ("xpath.rb", "libfs.sh", "datastore.conf"):
        shutil.copy(src / "src/datastore_mad/remotes" / name, remotes)
    shutil.copy(src / "src/mad/sh/scripts_common.sh", root / "var" / "remotes")
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc" / "defaultrc").write_text("PRIORITY=19\nONE_MAD_DEBUG=\n")
    (root / "share" / "gems").mkdir(parents=True)


@pytest.mark.skipif(bool(NO_RUBY_DRIVER), reason=NO_RUBY_DRIVER or "-")
def test_opennebula_one_datastore_under_our_daemon(
    make_daemon: MakeDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenNebula's own one_datastore (Ruby, dummy remotes), unchanged, drives our images."""
    root = tmp_path / "one"
    install_one_datastore(root)
    monkeypatch.setenv("RUBYLIB", str(root / "lib" / "ruby"))
    d = make_daemon(root, replace_conf=FAST_MONITOR)
    d.start()
    assert d.proc is not None
    ps = subprocess.run(
        ["ps", "-o", "args=", "--ppid", str(d.proc.pid)], check=False, capture_output=True
    )
    assert b"one_datastore.rb" in ps.stdout or b"ruby" in ps.stdout, ps.stdout
    dummy_datastore(d)
    one = client(d)
    a = one.image.allocate('NAME="db"\nTYPE="DATABLOCK"\nSIZE="64"', 1)
    b = one.image.allocate('NAME="os"\nTYPE="OS"\nPATH="http://example.org/x.img"', 1)
    wait_for(lambda: state(one, a) == 1 and state(one, b) == 1, what="READY")
    assert one.image.info(b).SIZE == 1024  # from the Ruby dummy's STAT
    assert (one.image.info(b).SOURCE, one.image.info(b).FORMAT) == ("dummy_path", "dummy_format")
    c = one.image.clone(b, "os-copy")
    wait_for(lambda: state(one, c) == 1, what="clone READY")
    one.image.delete(c)
    wait_for(lambda: len(one.imagepool.info(-2, -1, -1).IMAGE) == 2, what="RM")


RUBY_CLI = os.environ.get("ONE_RUBY_CLI", "")


@pytest.mark.skipif(not RUBY_CLI, reason="set ONE_RUBY_CLI to an installed Ruby CLI tree")
def test_ruby_cli_oneimage(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    """oneimage create/list/show/clone/persistent/enable/disable/chtype/delete."""
    d = make_daemon(tmp_path / "one", replace_conf=FAST_MONITOR)
    d.start()
    dummy_datastore(d)
    root = Path(RUBY_CLI)
    auth = tmp_path / "ruby_auth"
    auth.write_text(d.session + "\n")
    env = dict(
        os.environ,
        ONE_LOCATION=str(root),
        ONE_XMLRPC=d.url,
        ONE_AUTH=str(auth),
        HOME=str(tmp_path),
        RUBYLIB=f"{root}/lib/ruby:{root}/lib/ruby/cli",
    )

    def cli(*cmd: str) -> str:
        done = subprocess.run(
            [str(root / "bin" / "oneimage"), *cmd],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, (cmd, done.stdout, done.stderr)
        return done.stdout

    assert cli("create", "-d", "1", "--name", "db", "--type", "DATABLOCK", "--size", "100")
    cli("create", "-d", "default", "--name", "os", "--type", "OS", "--path", "http://e.org/x")
    one = client(d)
    wait_for(lambda: state(one, 0) == 1 and state(one, 1) == 1, what="READY")
    cli("clone", "os", "os-copy")
    for cmd in (("persistent", "db"), ("nonpersistent", "db"), ("disable", "db")):
        cli(*cmd)
    assert " disa " in cli("list")
    cli("enable", "db")
    cli("chtype", "db", "OS")
    assert "dummy_format" in cli("show", "os")
    wait_for(lambda: state(one, 2) == 1, what="clone READY")
    cli("delete", "os-copy")
    wait_for(lambda: "os-copy" not in cli("list"), what="RM")
