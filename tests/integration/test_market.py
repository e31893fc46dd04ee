"""Marketplaces end to end: pyone over HTTP against a real oned with our market driver
(one_market + remotes/market/dummy) and datastore driver: a private marketplace, an image
exported as an app, imported back as a new image and VM template (what the Ruby CLI's
``onemarketapp export`` does), the app disabled/enabled and deleted."""

from __future__ import annotations

import base64
import os
import subprocess
import time
import xmlrpc.client
from collections.abc import Callable
from pathlib import Path

import pyone
import pytest

from . import xsd
from .conftest import MakeDaemon

pytestmark = pytest.mark.slow

FAST_MONITOR = {"MONITORING_INTERVAL_DATASTORE = 300": "MONITORING_INTERVAL_DATASTORE = 1"}


def wait_for(check: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_private_marketplace_export_import(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    d = make_daemon(tmp_path / "one", replace_conf=FAST_MONITOR)
    d.start(timeout=90)  # a loaded CI machine starts the drivers slowly
    one = pyone.OneServer(d.url, session=d.session, timeout=30)
    raw = xmlrpc.client.ServerProxy(d.url)
    one.datastore.update(1, 'DS_MAD="dummy"\nTM_MAD="dummy"', 1)
    wait_for(lambda: one.datastore.info(1).TOTAL_MB == 20480, what="datastore monitoring")

    # oned's own marketplaces: the public one is refused apps, nothing stalls
    pool = one.marketpool.info()
    assert [m.NAME for m in pool.MARKETPLACE] == ["Linux Containers", "OpenNebula Public"]

    img = one.image.allocate('NAME="os"\nTYPE="OS"\nPATH="https://example.org/os.qcow2"', 1)
    wait_for(lambda: one.image.info(img).STATE == 1, what="image READY")

    market = one.market.allocate('NAME="private"\nMARKET_MAD="dummy"\nDESCRIPTION="ours"')
    assert market == 100
    one.market.enable(market, False)
    one.market.enable(market, True)  # monitored at once: the dummy's capacity
    wait_for(lambda: one.market.info(market).TOTAL_MB == 1048576, what="market monitoring")

    vm64 = b64("CPU=1\nMEMORY=128")
    app_tmpl = (
        f'NAME="os-app"\nORIGIN_ID="{img}"\nTYPE="IMAGE"\nVERSION="1.0"\n'
        f'APPTEMPLATE64="{b64("DEV_PREFIX=vd")}"\n'
        f'VMTEMPLATE64="{vm64}"\n'
    )
    app = one.marketapp.allocate(app_tmpl, market)
    wait_for(lambda: one.marketapp.info(app).STATE == 1, what="app READY")
    info = one.marketapp.info(app)
    assert (info.SOURCE, info.SIZE, info.FORMAT) == (f"dummy://apps/{app}", 1024, "raw")
    assert one.image.info(img).STATE == 1  # released after the export
    assert [int(i) for i in one.market.info(market).MARKETPLACEAPPS.ID] == [app]
    for doc in (
        raw.one.marketapp.info(d.session, app)[1],
        raw.one.market.info(d.session, market)[1],
        raw.one.marketapppool.info(d.session, -2, -1, -1)[1],
        raw.one.marketpool.info(d.session)[1],
    ):
        if xsd.available():
            assert xsd.errors(doc) == []

    # onemarketapp export: an image FROM_APP, then the VM template with its DISK
    tmpl = base64.b64decode(info.APPTEMPLATE64).decode() + f'\nNAME="imported"\nFROM_APP="{app}"'
    new_img = one.image.allocate(tmpl, 1)
    wait_for(lambda: one.image.info(new_img).STATE == 1, what="imported image READY")
    imported = one.image.info(new_img)
    assert imported.PATH == f"dummy://apps/{app}"
    assert imported.TEMPLATE["FROM_APP_NAME"] == "os-app"
    vm_tmpl = base64.b64decode(info.TEMPLATE["VMTEMPLATE64"]).decode()
    vm_tmpl += f'\nNAME="imported"\nDISK=[IMAGE_ID="{new_img}"]'
    tpl = one.template.allocate(vm_tmpl)
    assert one.template.info(tpl).TEMPLATE["DISK"]["IMAGE_ID"] == str(new_img)

    # bad input: an import into the system datastore, an app of a public marketplace
    assert raw.one.image.allocate(d.session, f'NAME="x"\nFROM_APP="{app}"', 0)[0] is False
    refused = raw.one.marketapp.allocate(d.session, 'NAME="t"\nTYPE="VMTEMPLATE"\nORIGIN_ID=-1', 0)
    assert refused[1] == "[one.marketapp.allocate] Create disabled for market: OpenNebula Public"

    one.marketapp.enable(app, False)
    assert one.marketapp.info(app).STATE == 4
    one.marketapp.enable(app, True)
    assert one.marketapp.info(app).STATE == 1

    one.marketapp.delete(app)
    wait_for(
        lambda: raw.one.marketapp.info(d.session, app)[0] is False, what="app dropped by DELETE"
    )
    assert one.market.info(market).MARKETPLACEAPPS.ID == []
    one.market.delete(market)
    assert raw.one.market.info(d.session, market)[0] is False
    assert d.alive()


RUBY_CLI = os.environ.get("ONE_RUBY_CLI", "")


@pytest.mark.skipif(not RUBY_CLI, reason="set ONE_RUBY_CLI to an installed Ruby CLI tree")
def test_ruby_cli_onemarketapp(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    """onemarket create/list, onemarketapp create/list/show/export/disable/enable/delete."""
    d = make_daemon(tmp_path / "one", replace_conf=FAST_MONITOR)
    d.start(timeout=90)
    auth = tmp_path / "ruby_auth"
    auth.write_text(d.session + "\n")
    root = Path(RUBY_CLI)
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
            [str(root / "bin" / cmd[0]), *cmd[1:]],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, (cmd, done.stdout, done.stderr)
        return done.stdout

    one = pyone.OneServer(d.url, session=d.session, timeout=30)
    one.datastore.update(1, 'DS_MAD="dummy"\nTM_MAD="dummy"', 1)
    wait_for(lambda: one.datastore.info(1).TOTAL_MB == 20480, what="datastore monitoring")
    market_tpl = tmp_path / "market.tpl"
    market_tpl.write_text('NAME="private"\nMARKET_MAD="dummy"\n')
    assert "ID: 100" in cli("onemarket", "create", str(market_tpl))
    assert "OpenNebula Publ" in cli("onemarket", "list")
    cli("oneimage", "create", "-d", "1", "--name", "os", "--type", "OS", "--path", "/tmp/os")
    wait_for(lambda: one.image.info(0).STATE == 1, what="image READY")
    cli("onemarketapp", "create", "--name", "osapp", "--image", "os", "-m", "private")
    wait_for(lambda: one.marketapp.info(0).STATE == 1, what="app READY")
    assert "dummy://apps/0" in cli("onemarketapp", "show", "osapp")
    assert "osapp" in cli("onemarketapp", "list")
    cli("onemarketapp", "export", "osapp", "imported", "-d", "1")
    wait_for(lambda: one.image.info(1).STATE == 1, what="exported image READY")
    assert one.image.info(1).PATH == "dummy://apps/0"
    cli("onemarketapp", "disable", "osapp")
    assert one.marketapp.info(0).STATE == 4
    cli("onemarketapp", "enable", "osapp")
    cli("onemarketapp", "delete", "osapp")
    wait_for(lambda: "osapp" not in cli("onemarketapp", "list"), what="app deleted")
    cli("onemarket", "delete", "private")
